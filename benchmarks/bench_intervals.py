"""Coverage of the 95 % intervals of idprops' dimension estimators.

For each dataset, 40 independent samples are drawn and every estimator is fitted on
each. An interval covers when it holds the mean of the 40 estimates (the target the
interval is for: its sampling spread, not the estimator's bias). Two intervals are
compared: the Fisher one, d +- 1.96 x the standard error that treats neighbourhoods as
independent (what ``dimension_std_`` was before), and ``dimension_interval_``
(:func:`idprops.uncertainty.neighbour_variance`).

The digits (scikit-learn's ``load_digits``, 1,797 images) have no independent
samples: each of the 40 is a class-balanced subsample without replacement, 45 images
of each class (450). Subsamples of one finite set spread less than independent
samples would, by the finite-population factor sqrt(1 - 450 / 1,797) = 0.87; the
intervals of the digits are multiplied by it.

    .venv/bin/python benchmarks/bench_intervals.py          # about 5 minutes on 2 cores
    .venv/bin/python benchmarks/bench_intervals.py --quick  # 10 samples, for a try

Writes benchmarks/intervals.json (raw) and benchmarks/INTERVALS.md (the table).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from idprops import CalibratedDimension, MLEDimension, TwoNNDimension
from idprops.base import DuplicatesWarning
from idprops.data import sample_cube, sample_sphere, sample_swiss_roll
from idprops.neighbors import kneighbors
from idprops.uncertainty import neighbour_variance

HERE = Path(__file__).resolve().parent
N = 5000
DIGITS_PER_CLASS = 45

ESTIMATORS = {
    "MLE k=20 (inverse)": lambda: MLEDimension(),
    "MLE k=20 (mean)": lambda: MLEDimension(aggregation="mean"),
    "TwoNN regression": lambda: TwoNNDimension(),
    "TwoNN mle": lambda: TwoNNDimension(method="mle"),
    "Calibrated k=3": lambda: CalibratedDimension(),
}


def _digits_sampler():
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float64)

    def sample(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        rows = [rng.choice(np.flatnonzero(y == c), DIGITS_PER_CLASS, replace=False) for c in range(10)]
        return X[np.concatenate(rows)]

    return sample, float(np.sqrt(1 - 10 * DIGITS_PER_CLASS / len(X)))


def datasets() -> dict:
    """Name -> (sampler of seed, interval factor)."""
    digits, fpc = _digits_sampler()
    return {
        f"10-sphere in 50-D, n={N}": (lambda s: sample_sphere(N, 10, ambient_dim=50, random_state=s), 1.0),
        f"5-cube, n={N}": (lambda s: sample_cube(N, 5, random_state=s), 1.0),
        f"swiss roll, n={N}": (lambda s: sample_swiss_roll(N, random_state=s), 1.0),
        f"20-D Gaussian, n={N}": (lambda s: np.random.default_rng(s).standard_normal((N, 20)), 1.0),
        f"digits, {10 * DIGITS_PER_CLASS} of 1,797 (class-balanced)": (digits, fpc),
    }


def fisher_std(est) -> float:
    """The standard error that treats neighbourhoods as independent."""
    d, n = est.dimension_, est.n_samples_fit_
    if isinstance(est, CalibratedDimension):  # no Fisher error of its own: TwoNN's
        return d / np.sqrt(n)
    if isinstance(est, MLEDimension):
        if est.aggregation == "mean":
            return float(np.std(est.local_dimensions_, ddof=1) / np.sqrt(n))
        return d / np.sqrt(n * (est.k - 1))
    return d / np.sqrt(n)


def measure(n_samples: int) -> list[dict]:
    rows = []
    for data_name, (sample, factor) in datasets().items():
        fits = {name: [] for name in ESTIMATORS}
        for seed in range(n_samples):
            X = sample(seed)
            for name, make in ESTIMATORS.items():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DuplicatesWarning)
                    est = make().fit(X)
                low, high = est.dimension_interval_
                # The finite-population factor shrinks the interval about the estimate.
                fits[name].append(
                    (
                        est.dimension_,
                        factor * fisher_std(est),
                        est.dimension_ - factor * (est.dimension_ - low),
                        est.dimension_ + factor * (high - est.dimension_),
                    )
                )
        for name, values in fits.items():
            d, fisher, low, high = np.array(values).T
            centre, spread = d.mean(), d.std(ddof=1)
            row = {"dataset": data_name, "estimator": name, "mean": centre, "spread": spread}
            for label, (lo, hi) in (("fisher", (d - 1.96 * fisher, d + 1.96 * fisher)), ("neighbour", (low, high))):
                row[f"{label}_coverage"] = float(np.mean((lo <= centre) & (centre <= hi)))
                row[f"{label}_width"] = float(np.mean(hi - lo))
                row[f"{label}_std_over_spread"] = float(np.mean(hi - lo) / (2 * 1.96) / spread)
            rows.append(row)
            print(
                f"{data_name:45s} {name:20s} spread {spread:.4f} "
                f"fisher {row['fisher_coverage']:.2f} ours {row['neighbour_coverage']:.2f} "
                f"(std/spread {row['neighbour_std_over_spread']:.2f})",
                flush=True,
            )
    return rows


def interval_cost(n: int = 20000, repeats: int = 5) -> list[dict]:
    """Time of the interval (influence + shared-neighbour sum) against the whole fit."""
    X = sample_sphere(n, 10, ambient_dim=50, random_state=0)
    out = []
    for name, make in ESTIMATORS.items():
        est = make()
        if not hasattr(est, "_influence"):  # an interval of its own, inside _estimate
            continue
        k = est._n_neighbors()
        distances, indices = kneighbors(X, k + 1)
        fit_times, interval_times = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            est.fit(X)
            fit_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            phi, without = est._influence(distances)
            neighbour_variance(phi, without, indices[:, :k])
            interval_times.append(time.perf_counter() - start)
        out.append({"estimator": name, "n": n, "fit_s": min(fit_times), "interval_s": min(interval_times)})
    return out


def report(rows: list[dict], cost: list[dict], n_samples: int) -> str:
    lines = [
        "# Coverage of the 95 % intervals",
        "",
        f"Written by `benchmarks/bench_intervals.py` ({n_samples} independent samples per dataset; "
        f"{platform.machine()}, {platform.python_version()}). An interval covers when it holds the mean "
        "of the estimates over all samples. **Fisher**: d ± 1.96 × the standard error that treats "
        "neighbourhoods as independent (the `dimension_std_` of earlier versions). **neighbour**: "
        "`dimension_interval_`, which adds the covariance of points that share neighbours "
        "(`idprops.uncertainty.neighbour_variance`; CalibratedDimension's is its own, mapped through "
        "the ball's curve, and its Fisher column is TwoNN's d/sqrt(n)). *spread*: standard deviation of the estimates; "
        "*std / spread*: mean interval width / 3.92 over that spread (1 is exact, below 1 under-covers). "
        f"Digits: class-balanced subsamples of {10 * DIGITS_PER_CLASS} of the 1,797 images, intervals times "
        "the finite-population factor sqrt(1 - 450/1797).",
        "",
        "| dataset | estimator | mean d | spread | Fisher coverage | Fisher width | Fisher std / spread "
        "| neighbour coverage | neighbour width | neighbour std / spread |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['estimator']} | {r['mean']:.2f} | {r['spread']:.4f} "
            f"| {r['fisher_coverage']:.0%} | {r['fisher_width']:.3f} | {r['fisher_std_over_spread']:.2f} "
            f"| **{r['neighbour_coverage']:.0%}** | {r['neighbour_width']:.3f} | {r['neighbour_std_over_spread']:.2f} |"
        )
    lines += [
        "",
        "## Cost of the interval",
        "",
        "Influence of every point and the shared-neighbour sum, on the neighbours of one fit "
        "(10-sphere in 50-D), against that whole fit (best of 5):",
        "",
        "| estimator | n | fit (s) | interval (s) | share |",
        "|---|---|---|---|---|",
    ]
    for c in cost:
        lines.append(
            f"| {c['estimator']} | {c['n']:,} | {c['fit_s']:.3f} | {c['interval_s']:.4f} "
            f"| {c['interval_s'] / c['fit_s']:.0%} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 samples per dataset, no files written")
    args = parser.parse_args()
    n_samples = 10 if args.quick else 40
    rows = measure(n_samples)
    cost = interval_cost()
    text = report(rows, cost, n_samples)
    print(text)
    if not args.quick:
        (HERE / "intervals.json").write_text(json.dumps({"rows": rows, "cost": cost}, indent=1) + "\n")
        (HERE / "INTERVALS.md").write_text(text)


if __name__ == "__main__":
    main()
