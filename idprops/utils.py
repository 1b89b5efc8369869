"""Small helpers shared across idprops: progress bars, and progress lines of a study's cells."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["cell_progress", "progress_bar", "progress_enabled", "report_progress"]


class _CellState:
    """The study cell running in this process, if any (cells of one process run one at a time)."""

    active = False
    sink: Callable[[str], None] | None = None
    every = 30.0
    due = 0.0


@contextlib.contextmanager
def cell_progress(sink: Callable[[str], None] | None = None, every: float = 30.0) -> Iterator[None]:
    """Run a study cell's work: its own progress bars stay off, and :func:`report_progress`
    sends a line to ``sink`` at most once every ``every`` seconds (none without a sink).

    A study shows one bar (or one line per cell) for its cells; bars of the work inside
    a cell (reading data, epochs) would overwrite it, or leave a line per cell in a log.

    Examples
    --------
    >>> lines = []
    >>> with cell_progress(lines.append, every=0):
    ...     progress_enabled(True), report_progress(step=10, loss=0.123456)
    (False, None)
    >>> lines
    ['step 10 loss 0.1235']
    """
    state = (_CellState.active, _CellState.sink, _CellState.every, _CellState.due)
    _CellState.active, _CellState.sink, _CellState.every = True, sink, every
    _CellState.due = time.monotonic() + every
    try:
        yield
    finally:
        _CellState.active, _CellState.sink, _CellState.every, _CellState.due = state


def report_progress(**values: Any) -> None:
    """Report where a long computation stands (``step=120, loss=0.31``) to the study cell
    running it, if any, when a line is due (see :func:`cell_progress`); else nothing.

    Floats are written with 4 significant digits, other values as they are.

    Examples
    --------
    >>> report_progress(step=3, loss=0.5)  # outside a study's cell: nothing
    >>> with cell_progress(print, every=0):
    ...     report_progress(epoch="2/10", step=3, loss=0.5)
    epoch 2/10 step 3 loss 0.5
    """
    if _CellState.sink is None or time.monotonic() < _CellState.due:
        return
    _CellState.due = time.monotonic() + _CellState.every
    _CellState.sink(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()))


def progress_enabled(progress: bool | None) -> bool:
    """Decide whether to show a progress bar.

    ``None`` means automatic: on when standard error is a terminal and we are not in
    CI, off otherwise. ``TQDM_DISABLE=1`` always turns bars off, and so does running
    inside a study's cell (:func:`cell_progress`): the study shows its own progress.

    Examples
    --------
    >>> progress_enabled(False)
    False
    """
    if _CellState.active or os.environ.get("TQDM_DISABLE", "").strip().lower() in {"1", "true", "yes"}:
        return False
    if progress is not None:
        return bool(progress)
    if os.environ.get("CI"):
        return False
    return sys.stderr.isatty()


def progress_bar(iterable: Iterable | None = None, progress: bool | None = None, **kwargs: Any):
    """Wrap ``iterable`` in a ``tqdm.auto`` bar when :func:`progress_enabled` says so.

    Examples
    --------
    >>> list(progress_bar(range(3), progress=False))
    [0, 1, 2]
    """
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not progress_enabled(progress), **kwargs)
