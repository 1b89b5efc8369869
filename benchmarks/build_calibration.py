"""Build ``idprops/estimators/ball_reference.npz``, the table of CalibratedDimension.

Not part of the test suite (tests/test_calibrated.py reruns one entry of each part).
Two parts, both deterministic:

1. ``ratio``: ``expected_ratio(d, n, k)`` (idprops.estimators.ball_reference) for
   k = 2..20 on a grid of 64 dimensions log-spaced from 0.5 to 200 and 23 sample
   sizes log-spaced from 32 to 10^7, by quadrature (no simulation: the cost of an
   entry does not depend on n, so the table reaches 10^7 for the price of 10^2).
2. ``inflation``: how much the overlap of neighbourhoods widens the naive standard
   error of the mean statistic, simulated: for d in {1, 2, 4, ..., 128} and n in
   {100, 316, 1000, 3162, 10000}, 40 independent uniform balls each (seeds from
   ``SeedSequence([d, n, replicate])``), exact neighbours, the spread of the 40 means
   divided by the mean within-ball ``std(u_k) / sqrt(n)``.

It then checks that the expected statistic falls strictly with d at every (n, k) (the
estimator inverts it) and measures the interpolation error at points between the
grid's nodes against direct quadrature.

Usage (from the repository root, about 10 minutes on 2 cores)::

    python benchmarks/build_calibration.py
    python benchmarks/build_calibration.py --output /tmp/table.npz
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from idprops.data import sample_ball
from idprops.estimators.ball_reference import TABLE_PATH, BallReference, expected_log_distances
from idprops.neighbors import kneighbors

K_MAX = 20
DIMS = np.geomspace(0.5, 200, 64)
SIZES = np.unique(np.round(np.geomspace(32, 10**7, 23)).astype(np.int64))
SPREAD_DIMS = np.array([1, 2, 4, 8, 16, 32, 64, 128])
SPREAD_SIZES = np.array([100, 316, 1000, 3162, 10000])
REPLICATES = 40


def ratio_entry(d: float, n: int) -> np.ndarray:
    """``expected_ratio(d, n, k)`` for k = 2..K_MAX from one quadrature."""
    m = expected_log_distances(d, n, K_MAX)
    k = np.arange(2, K_MAX + 1)
    mean_below = np.cumsum(m)[:-1] / (k - 1)  # mean of log T_j over j < k
    return d * (m[1:] - mean_below)


def local_statistics(log_distances: np.ndarray) -> np.ndarray:
    """u_k(x) = mean over j < k of log(T_k / T_j), for every point and k = 2..K_MAX."""
    k = np.arange(2, K_MAX + 1)
    mean_below = np.cumsum(log_distances, axis=1)[:, :-1] / (k - 1)
    return log_distances[:, 1:] - mean_below


def inflation_entry(i_dim: int, i_size: int) -> np.ndarray:
    """Overlap inflation of the standard error for k = 2..K_MAX at one grid cell."""
    d, n = int(SPREAD_DIMS[i_dim]), int(SPREAD_SIZES[i_size])
    means, naive = [], []
    for rep in range(REPLICATES):
        seed = int(np.random.SeedSequence([d, n, rep]).generate_state(1)[0])
        distances, _ = kneighbors(sample_ball(n, d, random_state=seed), K_MAX, backend="faiss")
        u = local_statistics(np.log(distances))
        means.append(u.mean(axis=0))
        naive.append(u.std(axis=0, ddof=1) / np.sqrt(n))
    return np.std(means, axis=0, ddof=1) / np.mean(naive, axis=0)


def build() -> dict[str, np.ndarray]:
    start = time.perf_counter()
    ratio = np.array([[ratio_entry(d, n) for n in SIZES] for d in DIMS])
    quadrature_s = time.perf_counter() - start
    start = time.perf_counter()
    inflation = np.array([[inflation_entry(i, j) for j in range(len(SPREAD_SIZES))] for i in range(len(SPREAD_DIMS))])
    print(f"quadrature: {quadrature_s:.0f} s; simulations: {time.perf_counter() - start:.0f} s")
    return {
        "dims": DIMS,
        "sizes": SIZES,
        "ratio": ratio,
        "spread_dims": SPREAD_DIMS,
        "spread_sizes": SPREAD_SIZES,
        "inflation": inflation,
    }


def check(table: dict[str, np.ndarray]) -> None:
    """The inverse must exist, and the interpolation must be close to the quadrature."""
    log_mean = np.log(table["ratio"]) - np.log(table["dims"])[:, None, None]
    if not np.all(np.diff(log_mean, axis=0) < 0):
        raise SystemExit("the expected statistic does not fall strictly with d: refine the grid")
    ref = BallReference(**table)
    worst = 0.0
    rng = np.random.default_rng(0)
    for _ in range(12):
        d = float(np.exp(rng.uniform(np.log(1), np.log(150))))
        n = int(np.exp(rng.uniform(np.log(100), np.log(10**6))))
        exact = ratio_entry(d, n)
        for k in (2, 3, 5, 10, 20):
            worst = max(worst, abs(ref.ratio_at(d, n, k) / exact[k - 2] - 1))
    print(f"largest relative interpolation error at 60 off-grid points: {worst:.1e}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=TABLE_PATH)
    args = parser.parse_args(argv)
    table = build()
    check(table)
    np.savez_compressed(args.output, **table)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
