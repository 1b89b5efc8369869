"""Small helpers shared across idprops: progress bars."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["progress_bar", "progress_enabled"]


def progress_enabled(progress: bool | None) -> bool:
    """Decide whether to show a progress bar.

    ``None`` means automatic: on when standard error is a terminal and we are not in
    CI, off otherwise. ``TQDM_DISABLE=1`` always turns bars off.

    Examples
    --------
    >>> progress_enabled(False)
    False
    """
    if os.environ.get("TQDM_DISABLE", "").strip().lower() in {"1", "true", "yes"}:
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
