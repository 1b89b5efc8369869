"""Running the missing cells of a study into its results store: claims, failures, progress.

:func:`run_cells` is the loop behind every study's ``run``. It

- claims each cell in the store before starting it (:meth:`ResultsStore.claim`), so that
  several processes, or machines sharing the store's file system, split a study and
  never compute one cell twice; cells another live run holds are waited for;
- stores each finished cell as soon as it arrives, so a killed run loses only the cells
  in flight;
- records a cell whose training diverged (it raised :class:`FloatingPointError`, as
  :class:`idprops.nn.TrainingDiverged` is) as failed, with the reason, goes on with the
  other cells and ends with a :class:`CellError` listing them; any other error stops the
  run at once. Failed cells are never results: the next run tries them again;
- shows progress a log can read: on a terminal, one bar over the cells (the work
  inside a cell stays silent; a cell run in this process shows where its training
  stands beside the bar); otherwise one line per finished cell (its number, time,
  description and first numbers) and, every :data:`PROGRESS_EVERY` seconds, a line
  from a long cell (epoch, step, loss, accuracy);
- on Ctrl-C (or SIGTERM through the command line) raises :class:`StudyInterrupted`,
  which says how many cells are saved where;
- stops its worker processes when it dies: a cell running in a child process exits
  as soon as its parent is gone, so that nothing keeps computing (and holding joblib's
  temporary folders) after a kill.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from joblib import Parallel, delayed, effective_n_jobs

from ..utils import cell_progress, progress_bar, progress_enabled
from .plan import describe_cell
from .store import ResultsStore, StoreError, config_key, dotted_items

__all__ = ["PROGRESS_EVERY", "CellError", "StudyInterrupted", "run_cells"]

#: Seconds between two progress lines of one long cell, when output is not a terminal.
PROGRESS_EVERY = 60.0

#: Result fields that :func:`run_cells` adds to every cell's result.
RESERVED_RESULT_FIELDS = ("seconds", "study_file")

# Characters of a cell's description in its progress line.
_LINE_CELL_CHARS = 100

# Seconds between two looks at cells that another run holds.
_POLL = 2.0


class CellError(RuntimeError):
    """A cell of a study failed; the message names the cell and the original error.

    The cells finished before it are in the store, so fixing the cause and running
    the study again resumes it. The original exception is the ``__cause__``.

    Examples
    --------
    >>> from idprops.studies import ScalingLawStudy
    >>> study = ScalingLawStudy(datasets=[{"name": "digits", "classes": [0, 1]}],
    ...                         sizes=[10_000], training={"epochs": 1}, device="cpu")
    >>> study.run()
    Traceback (most recent call last):
    ...
    idprops.studies.runner.CellError: cell {...} failed: ValueError: n=10000 samples requested but 269 are available ...
    """


class StudyInterrupted(KeyboardInterrupt):
    """A study stopped by Ctrl-C (or SIGTERM); the message says what is saved where.

    Attributes
    ----------
    saved, total : int
        Cells in the store, and cells in the study.
    store : pathlib.Path or None
        The store, None when it was temporary (then nothing is kept).

    Examples
    --------
    >>> from pathlib import Path
    >>> str(StudyInterrupted(12, 24, Path("results.sqlite")))
    '12 of 24 cells saved in results.sqlite; run the same command to resume'
    """

    def __init__(self, saved: int, total: int, store: Path | None) -> None:
        self.saved, self.total, self.store = saved, total, store
        if store is None:
            message = f"{saved} of {total} cells were done, in a temporary store now deleted; pass a store to keep them"
        else:
            message = f"{saved} of {total} cells saved in {store}; run the same command to resume"
        super().__init__(message)


# -- in the worker -----------------------------------------------------------------------

_watching_parent = False


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    # The parent that would store this cell is gone: its work is lost either way, and
    # a worker left running holds a CPU (and joblib's temporary folders) for nothing.
    os._exit(1)


def _watch_parent(parent: int) -> None:
    """In a child process of ``parent`` (a joblib worker), exit once ``parent`` dies."""
    global _watching_parent
    if _watching_parent or os.getpid() == parent or os.getppid() != parent:
        return  # this process, or one that is not our child (a dask worker elsewhere)
    _watching_parent = True
    threading.Thread(target=_exit_with_parent, args=(parent,), name="idprops-parent-watch", daemon=True).start()


# In-process sinks of progress lines, by token: a cell run in this process reports beside
# the bar; one in a worker process cannot reach it and prints lines when it should.
_SINKS: dict[int, Callable[[str], None]] = {}


def _run_one(
    run_cell: Callable[[dict[str, Any]], Mapping[str, Any]],
    config: dict[str, Any],
    label: str,
    parent: int,
    sink: int | None,
    every: float | None,
) -> tuple[dict[str, Any], dict[str, Any] | str, float]:
    """Run one cell where joblib sends it: its config, its result (or why it diverged),
    and the seconds it took."""
    _watch_parent(parent)
    write = _SINKS.get(sink) if os.getpid() == parent else None
    if write is None and every is not None:

        def write(line: str) -> None:
            print(f"{label} ... {line}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    try:
        with cell_progress(write, every if every is not None else 1.0):
            result = run_cell(config)
    except FloatingPointError as exc:
        return config, f"{type(exc).__name__}: {exc}", time.perf_counter() - start
    except Exception as exc:
        raise CellError(f"cell {describe_cell(config)} failed: {type(exc).__name__}: {exc}") from exc
    clash = sorted(set(RESERVED_RESULT_FIELDS) & set(result))
    if clash:
        raise CellError(
            f"cell {describe_cell(config)} returned {clash}, which run adds to every result; rename them in run_cell."
        )
    return config, dict(result), time.perf_counter() - start


# -- in the main process -----------------------------------------------------------------


def _key_numbers(result: Mapping[str, Any], n: int = 4) -> str:
    """The first ``n`` numbers of a result (nested names dotted), for a log line."""
    parts = []
    for name, value in dotted_items(result):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and name not in RESERVED_RESULT_FIELDS:
            parts.append(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}")
            if len(parts) == n:
                break
    return " ".join(parts)


class _Progress:
    """A bar on a terminal, lines otherwise (``progress=False``: nothing)."""

    def __init__(self, total: int, done: int, progress: bool | None, kind: str) -> None:
        self.total, self.done, self.kind = total, done, kind
        self.bar_on = progress_enabled(progress)
        self.lines_on = not self.bar_on and progress is not False
        self.bar = progress_bar(total=total, initial=done, progress=self.bar_on, desc=f"{kind} cells")
        self.sink = id(self)
        _SINKS[self.sink] = self.beside_bar
        if self.lines_on and done < total:
            self.line(f"{kind}: {total - done} of {total} cells to run ({done} in the store)")

    def beside_bar(self, text: str) -> None:
        if self.bar_on:
            self.bar.set_postfix_str(text)
        elif self.lines_on:
            self.line(f"{self.kind} cell {self.done + 1}/{self.total} ... {text}")

    def line(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def finished(self, config: Mapping[str, Any], outcome: Mapping[str, Any] | str, seconds: float) -> None:
        self.done += isinstance(outcome, Mapping)
        self.bar.set_postfix_str("")
        self.bar.update(isinstance(outcome, Mapping))
        if self.lines_on:
            what = _key_numbers(outcome) if isinstance(outcome, Mapping) else f"FAILED: {outcome}"
            # The numbers first: a cell's full description runs to a few hundred characters.
            cell = describe_cell(config)
            cell = cell if len(cell) <= _LINE_CELL_CHARS else cell[: _LINE_CELL_CHARS - 4] + "...}"
            self.line(f"{self.kind} cell {self.done}/{self.total} {seconds:.1f} s: {what} {cell}")

    def waiting(self, n: int) -> None:
        if self.lines_on:
            self.line(f"{self.kind}: waiting for {n} cell(s) that another run is computing")

    def close(self) -> None:
        _SINKS.pop(self.sink, None)
        self.bar.close()


def run_cells(
    store: ResultsStore,
    cells: list[dict[str, Any]],
    run_cell: Callable[[dict[str, Any]], Mapping[str, Any]],
    *,
    kind: str,
    n_jobs: int = 1,
    progress: bool | None = None,
    study_file: str | None = None,
    temporary: bool = False,
) -> int:
    """Run the cells ``store`` lacks through joblib, storing each as it finishes.

    Parameters
    ----------
    store : ResultsStore
    cells : list of dict
        Every cell's configuration; cells already stored are skipped, a cell listed
        twice runs once.
    run_cell : callable
        ``run_cell(config) -> dict``, picklable (a module-level function or a
        staticmethod) so that joblib's processes and dask can ship it.
    kind : str
        The study's name: the store's ``study`` label and the progress's.
    n_jobs : int, default=1
        Cells at once (``-1``: one per core); under ``joblib.parallel_config(backend=
        "dask")`` the cluster decides.
    progress : bool, optional
        None: a bar on a terminal, lines otherwise; False: nothing.
    study_file : str, optional
        Recorded in every result.
    temporary : bool, default=False
        The store is deleted afterwards (for the interrupt message).

    Returns
    -------
    int
        The cells this call computed.

    Raises
    ------
    CellError
        A cell failed (at once), or some diverged (after every other cell ran).
    StudyInterrupted
        On Ctrl-C.
    StoreError
        Cells are missing and the store cannot be written (before any cell runs).

    Examples
    --------
    >>> import os, tempfile
    >>> from idprops.studies.store import ResultsStore
    >>> def square(config):
    ...     return {"square": config["x"] ** 2}
    >>> store = ResultsStore(os.path.join(tempfile.mkdtemp(), "results.sqlite"))
    >>> cells = [{"x": 1}, {"x": 2}, {"x": 1}]
    >>> run_cells(store, cells, square, kind="squares", progress=False)
    2
    >>> run_cells(store, cells, square, kind="squares", progress=False)  # resumed: nothing left
    0
    >>> [r["square"] for r in store.records()]
    [1, 4]
    """
    unique = list({config_key(cfg): cfg for cfg in cells}.values())
    todo = store.missing(unique)
    if todo and not store.writable:
        raise StoreError(
            f"the results store {store.path} is read-only (the file or its folder), and "
            f"{len(todo)} of {len(unique)} cells are missing: make it writable or pass another store"
        )
    report = _Progress(len(unique), len(unique) - len(todo), progress, kind)
    computed, failed = 0, {}
    try:
        while todo:
            computed += _run_pass(store, todo, run_cell, kind, n_jobs, study_file, report, failed)
            todo = [cfg for cfg in store.missing(unique) if config_key(cfg) not in failed]
            held = store.claimed_elsewhere(todo)
            if todo and len(held) == len(todo):
                report.waiting(len(held))
                while held and len(held) == len(todo):
                    time.sleep(_POLL)
                    todo = [cfg for cfg in store.missing(unique) if config_key(cfg) not in failed]
                    held = store.claimed_elsewhere(todo)
    except KeyboardInterrupt as exc:
        saved = len(unique) - len(store.missing(unique))
        raise StudyInterrupted(saved, len(unique), None if temporary else store.path) from exc
    finally:
        report.close()
        try:
            store.release()
        except StoreError:
            pass  # the claims expire on their own
    if failed:
        listed = "; ".join(f"cell {describe_cell(cfg)}: {reason}" for cfg, reason in failed.values())
        raise CellError(
            f"{len(failed)} of {len(unique)} cells failed and are not results: {listed}. They are "
            f"recorded as failed in {store.path} and tried again by the next run; "
            f"the other {len(unique) - len(store.missing(unique))} are saved there."
        )
    return computed


def _run_pass(store, todo, run_cell, kind, n_jobs, study_file, report, failed) -> int:
    """One joblib run over ``todo``, each cell started only once this process claims it."""
    n_jobs = min(effective_n_jobs(n_jobs), len(todo))
    every = PROGRESS_EVERY if report.lines_on else None
    parent = os.getpid()
    tasks = (
        delayed(_run_one)(run_cell, cfg, f"{kind} cell {describe_cell(cfg)}", parent, report.sink, every)
        for cfg in todo
        if store.claim(cfg)
    )
    computed = 0
    for config, outcome, seconds in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(tasks):
        if isinstance(outcome, str):
            store.put_failure(config, outcome, study=kind)
            failed[config_key(config)] = (config, outcome)
        else:
            store.put(config, {**outcome, "seconds": seconds, "study_file": study_file}, study=kind)
            computed += 1
        report.finished(config, outcome, seconds)
    return computed
