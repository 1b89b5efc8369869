"""Accuracy of every dimension estimator on scikit-dimension's 24 benchmark manifolds.

Not part of the test suite. One run fits idprops' estimators, scikit-dimension's and
dadapy's on ``skdim.datasets.BenchmarkManifolds(random_state=seed).generate(n=n)`` for
seeds 0-2 and n in {1,000, 2,500, 10,000} (72 fits per estimator and n), and writes
the relative errors |d_hat - d| / d as a table (ACCURACY.md) and raw (accuracy.json),
with the targets of issue 20 evaluated for CalibratedDimension at n = 2,500.

dadapy runs in its own interpreter (``--dadapy-python``, see README.md: dadapy 0.3.4
needs numpy < 2). scikit-dimension's DANCo, ESS, FisherS and PH take 30 s to minutes
per fit at n = 2,500 on 2 cores (hours for the whole grid) and run only with
``--slow``; its other estimators run at n = 2,500, and TwoNN and GRIDE (the best) at every n.

Usage (from the repository root; about 15 minutes on 2 quiet cores)::

    python benchmarks/bench_accuracy.py
    python benchmarks/bench_accuracy.py --n 2500 --no-peers      # idprops only
    python benchmarks/bench_accuracy.py --report-only            # table from the JSON
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEEDS = (0, 1, 2)
SIZES = (1000, 2500, 10000)

IDPROPS = {
    "idprops CalibratedDimension (defaults: k=3)": ("CalibratedDimension", {}),
    "idprops CalibratedDimension (k=2)": ("CalibratedDimension", {"k": 2}),
    "idprops TwoNNDimension (regression)": ("TwoNNDimension", {}),
    "idprops TwoNNDimension (mle)": ("TwoNNDimension", {"method": "mle"}),
    "idprops MLEDimension (defaults)": ("MLEDimension", {}),
    "idprops MLEDimension (unbiased=False)": ("MLEDimension", {"unbiased": False}),
}
# scikit-dimension: name -> the sizes it runs at by default (all of them at 2,500; the
# two best, TwoNN and GRIDE, at every n).
SKDIM = {
    "TwoNN": SIZES,
    "GRIDE": SIZES,
    "MLE": (2500,),
    "MiND_ML": (2500,),
    "TLE": (2500,),
    "MOM": (2500,),
    "CorrInt": (2500,),
    "MADA": (2500,),
    "KNN": (2500,),
}
SKDIM_SLOW = ("DANCo", "ESS", "FisherS", "PH")
DADAPY = ("dadapy compute_id_2NN", "dadapy Gride (n1=1)")

DADAPY_SCRIPT = """
import json, sys, time, warnings
import numpy as np
from dadapy import Data
warnings.simplefilter("ignore")
out = {}
with np.load(sys.argv[1]) as data:
    for key in data.files:
        X = data[key]
        start = time.perf_counter()
        est = float(Data(X, verbose=False).compute_id_2NN()[0])
        out[key + "|dadapy compute_id_2NN"] = (est, time.perf_counter() - start)
        start = time.perf_counter()
        ids = Data(X, verbose=False).return_id_scaling_gride(range_max=4)[0]
        out[key + "|dadapy Gride (n1=1)"] = (float(ids[0]), time.perf_counter() - start)
json.dump(out, open(sys.argv[2], "w"))
"""


def manifolds(n: int, seed: int) -> dict[str, tuple[int, np.ndarray]]:
    import skdim

    bench = skdim.datasets.BenchmarkManifolds(random_state=seed)
    truth = bench.truth["Intrinsic Dimension"]
    return {name: (int(truth[name]), np.asarray(X, dtype=np.float64)) for name, X in bench.generate(n=n).items()}


def fit_idprops(cls_name: str, params: dict, X: np.ndarray) -> float:
    import idprops

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(getattr(idprops, cls_name)(**params).fit(X).dimension_)


def fit_skdim(name: str, X: np.ndarray) -> float:
    import skdim

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(getattr(skdim.id, name)().fit(X).dimension_)


def timed(fn, *args) -> tuple[float, float]:
    start = time.perf_counter()
    try:
        value = fn(*args)
    except Exception as error:  # a peer that fails on a manifold is recorded, not fatal
        print(f"    failed: {type(error).__name__}: {error}"[:200], flush=True)
        value = float("nan")
    return value, time.perf_counter() - start


def run(sizes, peers: bool, slow: bool, dadapy_python: str | None) -> list[dict]:
    rows = []
    for n in sizes:
        datasets = {(name, seed): item for seed in SEEDS for name, item in manifolds(n, seed).items()}
        print(f"n = {n}: {len(datasets)} data sets", flush=True)
        for (name, seed), (d, X) in datasets.items():
            print(f"  {name} seed {seed}", flush=True)
            fits = {label: timed(fit_idprops, *spec, X) for label, spec in IDPROPS.items()}
            if peers:
                for est, sizes in SKDIM.items():
                    if n in sizes:
                        fits[f"skdim {est}"] = timed(fit_skdim, est, X)
                for est in SKDIM_SLOW if slow else ():
                    fits[f"skdim {est}"] = timed(fit_skdim, est, X)
            for label, (value, seconds) in fits.items():
                rows.append(dict(n=n, manifold=name, seed=seed, d=d, estimator=label, estimate=value, seconds=seconds))
        if peers and dadapy_python:
            rows += run_dadapy(n, datasets, dadapy_python)
    return rows


def run_dadapy(n: int, datasets: dict, python: str) -> list[dict]:
    if not Path(python).exists():
        print(f"dadapy skipped: no interpreter at {python} (see benchmarks/README.md)", flush=True)
        return []
    with tempfile.TemporaryDirectory() as tmp:
        arrays = {f"{name}|{seed}": X for (name, seed), (_, X) in datasets.items()}
        np.savez(Path(tmp) / "data.npz", **arrays)
        subprocess.run([python, "-c", DADAPY_SCRIPT, f"{tmp}/data.npz", f"{tmp}/out.json"], check=True)
        results = json.loads((Path(tmp) / "out.json").read_text())
    rows = []
    for key, (value, seconds) in results.items():
        name, seed, label = key.split("|")
        d = datasets[(name, int(seed))][0]
        rows.append(dict(n=n, manifold=name, seed=int(seed), d=d, estimator=label, estimate=value, seconds=seconds))
    return rows


def summarise(rows: list[dict]) -> dict:
    """Median, mean, share within 10 %, and the same on d <= 5 and d >= 15, per (n, estimator)."""
    out: dict = {}
    for row in rows:
        out.setdefault(row["n"], {}).setdefault(row["estimator"], []).append(row)
    summary = {}
    for n, by_est in out.items():
        for est, group in by_est.items():
            d = np.array([r["d"] for r in group], dtype=float)
            estimate = np.array([r["estimate"] for r in group], dtype=float)
            err = np.abs(estimate - d) / d
            err = np.where(np.isfinite(err), err, np.inf)  # a failed fit is a miss
            signed = (estimate - d) / d
            summary.setdefault(str(n), {})[est] = {
                "fits": len(group),
                "failed": int(np.sum(~np.isfinite(estimate))),
                "median": float(np.median(err)),
                "mean": float(np.mean(err[np.isfinite(err)])),
                "within_10pct": float(np.mean(err <= 0.1)),
                "median_d_le_5": float(np.median(err[d <= 5])),
                "median_signed_d_ge_15": float(np.nanmedian(signed[d >= 15])),
                "seconds_per_fit": float(np.mean([r["seconds"] for r in group])),
            }
    return summary


def targets(summary: dict) -> list[tuple[str, bool, str]]:
    at = summary.get("2500", {})
    cal, plain = at.get("idprops CalibratedDimension (defaults: k=3)"), at.get("idprops TwoNNDimension (regression)")
    if cal is None or plain is None:
        return []
    return [
        ("median relative error <= 0.035 (n = 2,500)", cal["median"] <= 0.035, f"{cal['median']:.4f}"),
        ("within 10 % >= 85 % (n = 2,500)", cal["within_10pct"] >= 0.85, f"{cal['within_10pct']:.1%}"),
        (
            "median on d <= 5 no worse than plain TwoNN + 0.01",
            cal["median_d_le_5"] <= plain["median_d_le_5"] + 0.01,
            f"{cal['median_d_le_5']:.4f} vs {plain['median_d_le_5']:.4f}",
        ),
    ]


def report(data: dict) -> str:
    summary = data["summary"]
    lines = [
        "# Accuracy of intrinsic-dimension estimators",
        "",
        f"Generated by `benchmarks/bench_accuracy.py` ({data['started']} to {data['finished']}); "
        "raw numbers in `benchmarks/accuracy.json`.",
        "",
        "Data: scikit-dimension's 24 benchmark manifolds (`skdim.datasets.BenchmarkManifolds(random_state=seed)"
        ".generate(n=n)`, seeds 0-2), d from 1 to 70 in up to 96 ambient dimensions: 72 fits per estimator "
        "and n. Relative error |d_hat - d| / d; a failed fit counts as a miss. "
        "`bias d >= 15`: the median signed error on the 7 manifolds with d >= 15.",
        "",
        f"Versions: {data['versions']}",
        "",
    ]
    if data.get("notes"):
        lines += [data["notes"], ""]
    checks = targets(summary)
    if checks:
        lines += ["## Targets (issue 20), CalibratedDimension with its defaults", ""]
        lines += [f"- {'PASS' if ok else 'FAIL'}: {what}: {value}" for what, ok, value in checks]
        lines.append("")
    for n in sorted(summary, key=int):
        lines += [
            f"## n = {int(n):,}",
            "",
            "| estimator | median | mean | within 10 % | median d <= 5 | bias d >= 15 | s per fit |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for est, s in sorted(summary[n].items(), key=lambda item: item[1]["median"]):
            failed = f" ({s['failed']} failed)" if s["failed"] else ""
            if s["fits"] < 72:
                failed += f" (only {s['fits']} of 72 fits: not comparable)"
            lines.append(
                f"| {est}{failed} | {s['median']:.3f} | {s['mean']:.3f} | {s['within_10pct']:.0%} | "
                f"{s['median_d_le_5']:.3f} | {s['median_signed_d_ge_15']:+.3f} | {s['seconds_per_fit']:.2f} |"
            )
        lines.append("")
    lines += per_manifold(data["rows"], 2500)
    return "\n".join(lines) + "\n"


def rst_table(summary: dict) -> str:
    """The summary as reStructuredText, for docs/guide/accuracy.rst (an include file)."""
    lines = [
        ".. Written by benchmarks/bench_accuracy.py from the run in benchmarks/accuracy.json.",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - estimator",
    ]
    sizes = sorted(summary, key=int)
    lines += [f"     - median, n = {int(n):,}" for n in sizes]
    lines += ["     - within 10 %, n = 2,500", "     - bias d >= 15, n = 2,500"]
    at = summary.get("2500", summary[sizes[-1]])
    for est in sorted(at, key=lambda e: at[e]["median"]):
        lines.append(f"   * - {est}")
        for n in sizes:
            s = summary[n].get(est)
            partial = f" ({s['fits']} of 72 fits)" if s and s["fits"] < 72 else ""
            lines.append(f"     - {s['median']:.3f}{partial}" if s else "     - not run")
        lines += [f"     - {at[est]['within_10pct']:.0%}", f"     - {at[est]['median_signed_d_ge_15']:+.3f}"]
    return "\n".join(lines) + "\n"


def per_manifold(rows: list[dict], n: int) -> list[str]:
    shown = (
        "idprops CalibratedDimension (defaults: k=3)",
        "idprops TwoNNDimension (regression)",
        "idprops MLEDimension (defaults)",
    )
    table: dict = {}
    for r in rows:
        if r["n"] == n and r["estimator"] in shown:
            table.setdefault((r["d"], r["manifold"]), {}).setdefault(r["estimator"], []).append(r["estimate"])
    if not table:
        return []
    lines = [
        f"## Per manifold at n = {n:,}: mean estimate over the 3 seeds",
        "",
        "| manifold | d | " + " | ".join(s.replace("idprops ", "") for s in shown) + " |",
        "|---|---:|" + "---:|" * len(shown),
    ]
    for (d, name), by_est in sorted(table.items()):
        lines.append(f"| {name} | {d} | " + " | ".join(f"{np.mean(by_est[s]):.2f}" for s in shown) + " |")
    return lines + [""]


def versions() -> str:
    import skdim
    import sklearn

    import idprops

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout
    return (
        f"python {platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
        f"scikit-dimension {skdim.__version__}, idprops {idprops.__version__} (commit {commit.strip()}), "
        "dadapy 0.3.4 (numpy < 2, own interpreter)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--no-peers", action="store_true", help="idprops only")
    parser.add_argument("--slow", action="store_true", help="also " + ", ".join(SKDIM_SLOW))
    parser.add_argument("--dadapy-python", default="/tmp/dadapy-venv/bin/python")
    parser.add_argument("--json", type=Path, default=HERE / "accuracy.json")
    parser.add_argument("--output", type=Path, default=HERE / "ACCURACY.md")
    parser.add_argument("--rst", type=Path, default=HERE.parent / "docs" / "guide" / "accuracy_table.txt")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    if args.report_only:
        data = json.loads(args.json.read_text())
    else:
        started = time.strftime("%Y-%m-%d %H:%M")
        rows = run(args.n, not args.no_peers, args.slow, args.dadapy_python)
        data = {
            "started": started,
            "finished": time.strftime("%Y-%m-%d %H:%M"),
            "versions": versions(),
            "rows": rows,
            "summary": summarise(rows),
        }
        args.json.write_text(json.dumps(data, indent=1))
    args.output.write_text(report(data))
    args.rst.write_text(rst_table(data["summary"]))
    print(report(data))


if __name__ == "__main__":
    sys.exit(main())
