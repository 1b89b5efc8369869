"""Worker threads kept between searches, and native libraries kept out of their way."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from threadpoolctl import ThreadpoolController

__all__ = ["n_cores", "row_parts", "single_threaded_native", "thread_pool"]

# threadpoolctl's limits are process-wide: the first search to enter sets them and the
# last to leave restores them, so that searches in several threads run together.
_LIMITS_LOCK = threading.Lock()
_limits: dict[str, Any] = {"users": 0, "limiter": None}


def n_cores() -> int:
    """The cores this process may run on (its affinity where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def row_parts(n_rows: int) -> list[slice]:
    """``n_rows`` rows as one run of consecutive rows per core (fewer for fewer rows).

    Examples
    --------
    >>> parts = row_parts(10)
    >>> parts[0].start, parts[-1].stop, len(parts) <= n_cores()
    (0, 10, True)
    """
    n_parts = max(1, min(n_cores(), n_rows))
    bounds = [n_rows * i // n_parts for i in range(n_parts + 1)]
    return [slice(top, bottom) for top, bottom in zip(bounds[:-1], bounds[1:])]


@functools.cache
def thread_pool(n_threads: int) -> ThreadPoolExecutor:
    """A pool of ``n_threads`` workers, made once per size and process.

    Starting threads for every search costs a visible share of a small one. Workers
    start when first needed, so a pool sent fewer tasks than it has workers starts
    only as many; idle ones wait on a queue and use no CPU. Tasks must not wait on
    other tasks of the same pool.
    """
    return ThreadPoolExecutor(n_threads, thread_name_prefix=f"idprops-{n_threads}")


# A forked child inherits the pools but not their threads: work sent there would wait
# forever, so the child starts its own.
os.register_at_fork(after_in_child=thread_pool.cache_clear)


@functools.cache
def _controller() -> ThreadpoolController:
    # Finding the loaded BLAS and OpenMP libraries once scikit-learn, scipy and faiss
    # are imported takes a noticeable share of a small search: once a process. The
    # libraries the searches call (numpy's BLAS, faiss') are loaded before the first one.
    return ThreadpoolController()


@contextlib.contextmanager
def single_threaded_native() -> Iterator[None]:
    """BLAS and OpenMP on one thread each, process-wide, while our own threads run.

    Their threads inside ours would oversubscribe the cores: on a busy machine
    that made a few thousand vector products of 32,768 features 50 times slower.
    Searches in several threads share the limits: the libraries get their own
    thread counts back when the last one leaves.
    """
    with _LIMITS_LOCK:
        if _limits["users"] == 0:
            _limits["limiter"] = _controller().limit(limits=1)
        _limits["users"] += 1
    try:
        yield
    finally:
        with _LIMITS_LOCK:
            _limits["users"] -= 1
            if _limits["users"] == 0:
                _limits["limiter"].restore_original_limits()
