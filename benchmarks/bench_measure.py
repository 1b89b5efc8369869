"""measure() with one shared kNN search against the same estimators fitted one by one.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_measure.py

Prints, per dataset, the searches each way and the best of three wall-clock times.
"""

from __future__ import annotations

import time
import warnings

import idprops.base
from idprops.base import DuplicatesWarning, as_matrix
from idprops.data import load_dataset
from idprops.registry import resolve_estimator
from idprops.studies.measure import measure

ESTIMATORS = ["mle", "mle:k=10", "twonn", "twonn:method=mle"]


def counting(calls):
    search = idprops.base.kneighbors

    def counted(X, k, **kwargs):
        calls.append(k)
        return search(X, k, **kwargs)

    return counted


def best_of_three(run, calls):
    best = float("inf")
    for _ in range(3):
        calls.clear()
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best, list(calls)


def main() -> None:
    calls: list[int] = []
    idprops.base.kneighbors = counting(calls)
    warnings.simplefilter("ignore", DuplicatesWarning)
    for name in ("digits", "mnist5k"):
        data = load_dataset(name, train=None)
        X = as_matrix(data)

        def separately(X=X):
            for spec in ESTIMATORS:
                resolve_estimator(spec).fit(X)

        def shared(X=X):
            measure((X, None), estimators=ESTIMATORS, sharpness=False)

        for label, run in (("separate fits", separately), ("measure, shared", shared)):
            seconds, searches = best_of_three(run, calls)
            print(f"{name:8} {X.shape}  {label:16} searches at k={searches}  {seconds:.2f} s")


if __name__ == "__main__":
    main()
