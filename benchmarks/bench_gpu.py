"""The GPU benchmark of issue 21: exact search against the card's own floor, and a study cell.

One run measures, on one card and beside each other:

- the card (name, torch version) and its float32 matrix-product rate (no TF32);
- exact ``MLEDimension`` and ``TwoNNDimension`` (backend torch) at n = 100,000 with
  D = 784 and D = 3,072 against the float32 X·Xᵀ floor on the same card (target 2x),
  with peak GPU memory;
- n = 1,000,000, D = 64: the search and the floor (the share of the search outside
  the products: selection, re-measuring, certification);
- the fast mode (``n_queries=5000``) at 100,000 x 784;
- a study cell's measurement on 10,000 images of 3 x 224 x 224: one search shared by
  the MLE and TwoNN, K_F, and d_repr at two layers of a ResNet-18;
- a paper-sized cell (ResNet-18, 224 x 224, N = 500, mixed precision, a few epochs,
  then d_data, K_F, d_repr, FGSM and PGD) on images it makes itself, phase by phase,
  and from it an estimate of the whole ``paper`` preset;
- the Trainer's data loading: images per second from a CPU TensorDataset (as studies
  give it) against the same tensors already on the GPU.

Every section runs on its own: one that fails is recorded with its error and the
others go on. ``--smoke`` runs every section at tiny sizes (on the CPU too): the
tests run it, so that the GPU run does not fail on a typo.

    python benchmarks/bench_gpu.py --out gpu-results            # on a GPU machine
    python benchmarks/bench_gpu.py --smoke --device cpu --out /tmp/smoke
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import tomllib

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the project from this folder, not an installed copy

import torch  # noqa: E402

from idprops import LabelSharpness, MLEDimension, ReprDimension, TwoNNDimension  # noqa: E402
from idprops.data.manifolds import sample_sphere  # noqa: E402
from idprops.neighbors import kneighbors  # noqa: E402
from idprops.nn.attacks import FGSM, PGD, robust_accuracy  # noqa: E402
from idprops.nn.models import resnet18  # noqa: E402
from idprops.nn.training import Trainer  # noqa: E402

K = 20
# Forward GFLOPs at 224 x 224 (torchvision's model documentation): the paper preset's
# other models are estimated from ResNet-18's measured time by these ratios.
GFLOPS_224 = {"resnet18": 1.81, "resnet34": 3.66, "resnet50": 4.09, "vgg13": 11.31, "vgg16": 15.47, "vgg19": 19.63}

FULL = {
    "exact": [(100_000, 784), (100_000, 3072)],
    "million": (1_000_000, 64),
    "fast": (100_000, 784, 5000),
    "study_images": 10_000,
    "image_size": 224,
    "cell_n": 500,
    "cell_test": 750,
    "cell_epochs": 3,
    "batch_size": 32,
    "repeats": 2,
}
SMOKE = {
    "exact": [(600, 16), (600, 200)],
    "million": (3000, 16),
    "fast": (1000, 16, 300),
    "study_images": 60,
    "image_size": 16,
    "cell_n": 24,
    "cell_test": 16,
    "cell_epochs": 1,
    "batch_size": 8,
    "repeats": 1,
}


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats=1):
    """(result of the last call, best wall-clock seconds, peak GPU MiB over the calls)."""
    best, out = math.inf, None
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    return out, best, peak


def floor(X: np.ndarray, device) -> None:
    """Chunked float32 X @ X.T on the device, nothing kept: the products of a search of X."""
    Xt = torch.from_numpy(X).to(device)
    chunk = max(1, min(256 * 2**20 // (4 * len(X)), -(-len(X) // 2)))
    for start in range(0, len(X), chunk):
        Xt[start : start + chunk] @ Xt.T
    del Xt


def matmul_rate(device) -> float:
    """The device's float32 matrix-product rate in TFLOP/s (no TF32), median of 10."""
    size = 8192 if torch.device(device).type == "cuda" else 512
    torch.backends.cuda.matmul.allow_tf32 = False
    a, b = (torch.randn(size, size, device=device) for _ in range(2))
    times = []
    for _ in range(12):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / float(np.median(times[2:])) / 1e12


def images(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n synthetic images of 3 x size x size on the paper's 0..255 scale, and two classes.

    Smooth random images (a few low-frequency patterns mixed per class), so that they
    have a low intrinsic dimension and the classes can be learned, as real ones.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    grid = torch.linspace(0, 1, size)
    patterns = torch.stack(
        [torch.sin(math.pi * (i + 1) * grid[:, None] + j * grid[None, :]) for i in range(4) for j in range(4)]
    )  # (16, size, size)
    weights = torch.randn(n, 3, 16, generator=g) + labels[:, None, None].float()
    x = torch.einsum("ncp,phw->nchw", weights, patterns)
    x -= x.amin(dim=(1, 2, 3), keepdim=True)
    x *= 255 / x.amax(dim=(1, 2, 3), keepdim=True)
    return x.floor_(), labels


def section_machine(cfg, device) -> dict:
    out = {"torch": torch.__version__, "python": platform.python_version(), "numpy": np.__version__}
    if torch.device(device).type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update(card=props.name, memory_gib=props.total_memory / 2**30)
    else:
        out["card"] = "cpu (smoke run)"
    out["fp32_tflops"] = matmul_rate(device)
    return out


def section_exact(cfg, device) -> list[dict]:
    rows = []
    for n, D in cfg["exact"]:
        X = sample_sphere(n, 10, ambient_dim=D, random_state=0).astype(np.float32)
        _, t_floor, _ = timed(lambda X=X: floor(X, device), device, cfg["repeats"])
        row = {"n": n, "D": D, "floor_s": t_floor}
        estimators = {
            "mle": MLEDimension(k=K, unbiased=False, backend="torch"),
            "twonn": TwoNNDimension(backend="torch"),
        }
        for name, est in estimators.items():
            fitted, t, peak = timed(lambda est=est, X=X: est.fit(X), device, cfg["repeats"])
            row[name] = {"seconds": t, "x_floor": t / t_floor, "gpu_peak_mib": peak, "dimension": fitted.dimension_}
        rows.append(row)
    return rows


def section_million(cfg, device) -> dict:
    n, D = cfg["million"]
    X = sample_sphere(n, 10, ambient_dim=D, random_state=0).astype(np.float32)
    _, t_floor, _ = timed(lambda: floor(X, device), device)
    (dist, _), t_search, peak = timed(lambda: kneighbors(X, K, backend="torch", device=device), device)
    est = MLEDimension(k=K)
    est._estimate(dist)  # the fit's own search would repeat this one
    return {
        "n": n,
        "D": D,
        "floor_s": t_floor,
        "search_s": t_search,
        "gpu_peak_mib": peak,
        # The products are the floor; the rest of the search is selection (top-k),
        # re-measuring, certification and transfers.
        "search_share_outside_products": 1 - t_floor / t_search,
        "dimension": est.dimension_,
    }


def section_fast(cfg, device) -> dict:
    n, D, m = cfg["fast"]
    X = sample_sphere(n, 10, ambient_dim=D, random_state=0).astype(np.float32)
    est, t, peak = timed(lambda: MLEDimension(k=K, n_queries=m, backend="torch", random_state=0).fit(X), device)
    return {"n": n, "D": D, "n_queries": m, "seconds": t, "gpu_peak_mib": peak, "dimension": est.dimension_}


def section_study_measure(cfg, device) -> dict:
    x, y = images(cfg["study_images"], cfg["image_size"])
    X = x.reshape(len(x), -1).numpy()
    out = {"n": len(x), "shape": list(x.shape[1:])}
    (dist, _), out["search_s"], out["search_gpu_peak_mib"] = timed(
        lambda: kneighbors(X, K, backend="torch", device=device), device
    )
    start = time.perf_counter()
    mle, twonn = MLEDimension(k=K), TwoNNDimension()
    mle._estimate(dist.copy())  # the shared search's distances: no search of their own
    twonn._estimate(dist[:, :2].copy())
    out["estimators_from_shared_search_s"] = time.perf_counter() - start
    out["mle"], out["twonn"] = mle.dimension_, twonn.dimension_
    _, out["k_f_s"], _ = timed(lambda: LabelSharpness(backend="torch").fit(X, y.numpy()), device)
    model = resnet18(num_classes=2, input_size=cfg["image_size"]).to(device).eval()
    for layer in ("layer3", "layer4"):
        rep, t, peak = timed(
            lambda layer=layer: ReprDimension(model, layer, TwoNNDimension(backend="torch"), device=device).fit(x),
            device,
        )
        out[f"d_repr_{layer}_s"], out[f"d_repr_{layer}_gpu_peak_mib"] = t, peak
        out[f"d_repr_{layer}"] = rep.dimension_
    out["total_s"] = sum(v for k, v in out.items() if k.endswith("_s"))
    return out


def _trainer(model, cfg, device, epochs) -> Trainer:
    return Trainer(
        model,
        epochs=epochs,
        optimizer="adam",
        lr=1e-3,
        weight_decay=1e-4,
        batch_size=cfg["batch_size"],
        seed=1337,
        device=device,
        mixed_precision=True,
        progress=False,
    )


def section_paper_cell(cfg, device) -> dict:
    from torch.utils.data import TensorDataset

    size, n, epochs = cfg["image_size"], cfg["cell_n"], cfg["cell_epochs"]
    x, y = images(n + cfg["cell_test"], size)
    train = TensorDataset(x[:n], y[:n])
    test = TensorDataset(x[n:], y[n:])
    X = x[:n].reshape(n, -1).numpy()
    out = {"n": n, "image_size": size, "epochs": epochs, "batch_size": cfg["batch_size"]}
    torch.manual_seed(0)
    model = resnet18(num_classes=2, input_size=size)
    _trainer(model, cfg, device, 1).fit(train)  # kernels' first load, cuDNN's choices
    model = resnet18(num_classes=2, input_size=size)
    _, out["train_s"], out["train_gpu_peak_mib"] = timed(
        lambda: _trainer(model, cfg, device, epochs).fit(train), device
    )
    out["train_s_per_epoch"] = out["train_s"] / epochs
    _, out["d_data_s"], _ = timed(
        lambda: (MLEDimension(k=K, backend="torch").fit(X), TwoNNDimension(backend="torch").fit(X)), device
    )
    _, out["k_f_s"], _ = timed(lambda: LabelSharpness(backend="torch").fit(X, y[:n].numpy()), device)
    _, out["d_repr_s"], _ = timed(
        lambda: ReprDimension(model, "layer4", TwoNNDimension(backend="torch"), device=device).fit(x[:n]), device
    )
    for name, attack in (
        ("fgsm", FGSM(2.0, clip_min=0.0, clip_max=255.0)),
        ("pgd", PGD(2.0, steps=10, clip_min=0.0, clip_max=255.0)),
    ):
        _, out[f"{name}_s"], _ = timed(
            lambda attack=attack: robust_accuracy(model, test, attack, device=device), device
        )
    out["measure_s"] = sum(out[f"{p}_s"] for p in ("d_data", "k_f", "d_repr", "fgsm", "pgd"))
    out["paper_preset_estimate"] = paper_estimate(out)
    return out


def paper_estimate(cell: dict) -> dict:
    """The whole ``paper`` preset's time from one ResNet-18 cell: training scales with
    N x epochs and the model's forward FLOPs, the measurements with the model's FLOPs."""
    preset = tomllib.loads((HERE.parent / "idprops/studies/presets/paper.toml").read_text())
    epochs = preset["training"]["epochs"]
    per_image_epoch = cell["train_s_per_epoch"] / cell["n"]
    at_224 = (224 / cell["image_size"]) ** 2  # a smoke run's small images, scaled up
    per_cell, total = {}, 0.0
    for model in preset["models"]:
        ratio = GFLOPS_224[model] / GFLOPS_224["resnet18"]
        seconds = sum(
            (per_image_epoch * n * epochs + cell["measure_s"]) * ratio * at_224
            for n in preset["sizes"]
            for _ in preset["datasets"]
            for _ in preset["seeds"]
        )
        per_cell[model] = seconds
        total += seconds
    cells = len(preset["models"]) * len(preset["sizes"]) * len(preset["datasets"]) * len(preset["seeds"])
    return {
        "cells": cells,
        "epochs": epochs,
        "hours": total / 3600,
        "hours_by_model": {m: s / 3600 for m, s in per_cell.items()},
    }


def section_loading(cfg, device) -> dict:
    """Training throughput from CPU tensors (as studies give them) against tensors on the device."""
    from torch.utils.data import TensorDataset

    n, size = cfg["cell_n"], cfg["image_size"]
    x, y = images(n, size)
    out = {}
    for where, data in (
        ("cpu_tensors", TensorDataset(x, y)),
        ("device_tensors", TensorDataset(x.to(device), y.to(device))),
    ):
        model = resnet18(num_classes=2, input_size=size)
        _trainer(model, cfg, device, 1).fit(data)  # warm-up
        _, t, _ = timed(lambda model=model, data=data: _trainer(model, cfg, device, 2).fit(data), device)
        out[f"{where}_images_per_s"] = 2 * n / t
    out["cpu_over_device"] = out["cpu_tensors_images_per_s"] / out["device_tensors_images_per_s"]
    return out


# The slowest (n = 1,000,000: many small batches) last: results.json is written after
# each section, so a run stopped at its time limit keeps the others.
SECTIONS = {
    "machine": section_machine,
    "exact": section_exact,
    "study_measure": section_study_measure,
    "paper_cell": section_paper_cell,
    "loading": section_loading,
    "fast": section_fast,
    "million": section_million,
}


def report(results: dict) -> str:
    """A short Markdown summary of the results (the JSON has everything)."""
    lines = ["# idprops GPU benchmark", ""]
    m = results.get("machine", {})
    lines.append(
        f"Card: {m.get('card')}; torch {m.get('torch')}; float32 product rate "
        f"{m.get('fp32_tflops', float('nan')):.1f} TFLOP/s; {results['config']}."
    )
    lines += [
        "",
        "| n | D | floor s | MLE s (÷ floor) | TwoNN s (÷ floor) | GPU MiB | within 2x |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in results.get("exact", []) if isinstance(results.get("exact"), list) else []:
        ok = max(row["mle"]["x_floor"], row["twonn"]["x_floor"]) <= 2
        lines.append(
            f"| {row['n']:,} | {row['D']:,} | {row['floor_s']:.3f} | {row['mle']['seconds']:.3f} "
            f"({row['mle']['x_floor']:.2f}) | {row['twonn']['seconds']:.3f} ({row['twonn']['x_floor']:.2f}) | "
            f"{row['mle']['gpu_peak_mib']} | {'pass' if ok else 'FAIL'} |"
        )
    for name in ("million", "fast", "study_measure", "paper_cell", "loading"):
        lines += ["", f"## {name}", "", "```", json.dumps(results.get(name), indent=1, default=str), "```"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--smoke", action="store_true", help="every section at tiny sizes")
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    p.add_argument("--out", default=str(HERE / "gpu-results"), help="folder for results.json and RESULTS.md")
    args = p.parse_args(argv)
    cfg = SMOKE if args.smoke else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"config": "smoke" if args.smoke else "full", "device": args.device, "errors": {}}
    for name in args.sections:
        start = time.perf_counter()
        try:
            results[name] = SECTIONS[name](cfg, args.device)
        except Exception:  # one failed section must not cost the others' figures
            results["errors"][name] = traceback.format_exc()
            print(results["errors"][name], file=sys.stderr)
        print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "RESULTS.md").write_text(report(results))
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
