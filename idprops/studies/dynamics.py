"""Training dynamics: the intrinsic dimension of activations under a sweep of regularizers.

Brown et al. (2022, arXiv:2211.13239) find that regularization (dropout, weight decay, ...)
uniformly LOWERS the last hidden layer's intrinsic dimension (LLID), that validation
accuracy tracks ``log(PID / LLID)`` (PID: the peak ID over layers), and that too much
regularization collapses PID and accuracy together. :class:`DynamicsStudy` trains the
same model under each regularizer at each strength (one at a time, the others at their
baseline) and seed, tracks every chosen layer's ID through training with
:class:`~idprops.nn.callbacks.ActivationIDTracker`, and reports the correlations and
figures of the paper.

Regularizers (keys of ``regularizers``; 0 is "none" for each):

- ``weight_decay``: the optimizer's (L2 for Adam and SGD, decoupled for AdamW);
- ``dropout``: the model factory's ``dropout`` argument (``small_cnn``: before the
  classifier), always passed, 0 included, so it is never given in the model's
  parameters;
- ``label_smoothing``: of the training loss;
- ``shift``: data augmentation by random translations of up to this many pixels
  (:class:`~idprops.data.transforms.RandomShift`).
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .reporting import contradictions, finite, new_axes, save_figure, write_study_report
from .specs import Tracking, check_training, integers, parse_datasets, parse_device, single_setting
from .steps import (
    build_network,
    cell_session,
    check_layers,
    download_data,
    epoch_history,
    id_history,
    id_tracker,
    load_data,
    train_model,
)
from .study import Study

__all__ = ["REGULARIZERS", "DynamicsStudy", "dynamics_cell"]

#: The regularizers a sweep may vary, with their "none" value.
REGULARIZERS = {"weight_decay": 0.0, "dropout": 0.0, "label_smoothing": 0.0, "shift": 0}

_DEFAULT_TRAINING = {"optimizer": "adam", "lr": 1e-3, "epochs": 30, "batch_size": 64}
# Brown et al. (2022): validation accuracy rises with log(PID / LLID).
_CLAIMS = (("vs log(PID / LLID)", +1, "validation accuracy rises with log(PID / LLID)"),)
_DEFAULT_TRACKING = {"layers": None, "estimator": "twonn", "n_samples": 1000, "every": 1, "data": "test"}


# --------------------------------------------------------------------------- one cell


def dynamics_cell(config: Mapping[str, Any]) -> dict[str, Any]:
    """Train one model under one regularization setting, tracking layer IDs.

    ``config`` holds ``data`` (:meth:`~idprops.studies.specs.DataSpec.config`), ``model`` (``name``, ``params``),
    ``regularization`` (a value for every key of :data:`REGULARIZERS`), ``seed``,
    ``training`` (Trainer arguments and ``threads``), ``tracking`` (``layers``,
    ``estimator`` spec, ``n_samples``, ``every`` in epochs, ``data``: ``"test"`` or
    ``"train"``, the split the fixed ID sample comes from, without augmentation) and
    ``device``.

    Returns
    -------
    dict
        Final ``val_accuracy``, ``val_loss``, ``train_accuracy``, ``train_loss``,
        ``best_val_accuracy``, ``llid``, ``pid``, ``log_pid_llid``, ``ids`` (per
        layer); ``history`` (per epoch: ``epoch``, ``step``, ``train_loss``,
        ``train_accuracy``, ``val_loss``, ``val_accuracy``) and ``id_history``
        (:func:`id_history`); ``n_train``, ``n_val``, ``id_seconds`` (total),
        ``id_seconds_per_evaluation`` and ``id_share`` (of the run's time).

    Examples
    --------
    One cell of a tiny sweep: 100 digits, one epoch, IDs before and after it.

    >>> study = DynamicsStudy(sizes=[100], regularizers={"dropout": [0.0]}, seeds=[0],
    ...                       training={"epochs": 1}, tracking={"n_samples": 100}, device="cpu")
    >>> out = dynamics_cell(study.cells()[0])
    >>> out["n_train"], [r["epoch"] for r in out["id_history"]], list(out["ids"])
    (100, [0, 1], ['features.relu1', 'features.relu2', 'features.pool', 'relu'])
    """
    import torch

    from ..data.transforms import RandomShift

    reg = config["regularization"]
    training = dict(config["training"])
    threads = training.pop("threads", None)
    device = config.get("device", "auto")  # "auto" is read where it is used
    seed = int(config["seed"])
    data = config["data"]
    with cell_session(seed, device, threads):
        train = load_data(data, train=True, n=data.get("n"), seed=seed)
        val = load_data(data, train=False, n=data.get("n_test"), seed=0)  # one fixed validation set
        channels, *size = tuple(train[0][0].shape)
        model = build_network(
            config["model"],
            reg["dropout"],
            in_channels=channels,
            num_classes=int(np.max(train.targets)) + 1,
            input_size=tuple(size),
        )
        tracking = config["tracking"]
        tracker = id_tracker(
            tracking, seed=seed, every=int(tracking["every"]), data=val if tracking["data"] == "test" else train
        )
        fit_data = train
        if reg["shift"]:
            fit_data = torch.utils.data.Subset(RandomShift(train, reg["shift"]), range(len(train)))
        training.update(weight_decay=float(reg["weight_decay"]), label_smoothing=float(reg["label_smoothing"]))
        trainer = train_model(model, fit_data, val, training=training, seed=seed, device=device, callbacks=[tracker])

    last = trainer.history[-1]
    final = tracker.records_[-1]
    history = epoch_history(trainer.history, ("train_loss", "train_accuracy", "val_loss", "val_accuracy"))
    return {
        "val_accuracy": last["val_accuracy"],
        "val_loss": last["val_loss"],
        "train_accuracy": last["train_accuracy"],
        "train_loss": last["train_loss"],
        "best_val_accuracy": max(h["val_accuracy"] for h in history),
        "llid": final["llid"],
        "pid": final["pid"],
        "log_pid_llid": final["log_pid_llid"],
        "ids": final["ids"],
        "history": history,
        "id_history": id_history(tracker.records_),
        "n_train": len(train),
        "n_val": len(val),
        "id_seconds": tracker.seconds_,
        "id_seconds_per_evaluation": tracker.seconds_ / len(tracker.records_),
        "id_share": tracker.share_,
    }


# --------------------------------------------------------------------------- the study


class DynamicsStudy(Study):
    """A regularization sweep with the intrinsic dimension of activations tracked throughout.

    Cells: for each regularizer in ``regularizers`` and each of its values, the
    baseline setting with that one regularizer changed, x ``seeds``. The baseline
    itself (every regularizer at its ``baseline`` value) belongs to every sweep and
    runs once per seed. Each cell runs :func:`dynamics_cell`.

    :meth:`report` gives the correlations over cells (bootstrap 95 % CIs, Pearson and
    Spearman) of the final validation accuracy with ``log(PID / LLID)`` and with LLID,
    and the paper's figures: LLID and PID against each regularizer's strength (with
    accuracy), accuracy against ``log(PID / LLID)`` and against LLID, LLID through
    training per strength, and every layer's ID through training for the baseline.

    Parameters
    ----------
    datasets : str, DataSpec or mapping, default="digits"
        One dataset entry (:func:`~idprops.studies.specs.parse_datasets`): its training
        split trains, its test split validates.
    models : str or mapping, default="small_cnn"
        One registered model name, or a table ``{"name": ..., **factory arguments}``.
    sizes : int or sequence of one int, default=None
        Training images (a seeded, stratified subset); None: all.
    regularizers : mapping of str to sequence, optional
        Values swept per regularizer (keys of :data:`REGULARIZERS`); default
        ``weight_decay`` 0 .. 0.1, ``dropout`` 0 .. 0.9, ``label_smoothing`` 0 .. 0.9,
        ``shift`` 0 .. 3 pixels, spanning too little to too much.
    baseline : mapping, optional
        The value of each regularizer when another is swept; default 0 for all.
    seeds : sequence of int, default=(0, 1)
    training : mapping, optional
        Trainer arguments over Adam lr 1e-3, 30 epochs, batch 64; ``threads`` sets
        torch's threads per cell.
    tracking : mapping, optional
        ``layers`` (default per model, e.g. small_cnn's two conv ReLUs, the pool and
        the hidden ReLU; the last is the LLID layer; names are checked against the
        model when the grid is built), ``estimator`` (default
        ``"twonn"``), ``n_samples`` (1000), ``every`` (epochs, 1), ``data``
        (``"test"``, as the paper's validation images, or ``"train"``),
        ``min_distinct`` (the tracker's share of distinct activations below which a
        layer's ID is flagged, 0.5).
    device : str, default="auto"

    Examples
    --------
    >>> study = DynamicsStudy(regularizers={"dropout": [0, 0.5], "weight_decay": [0, 0.01]}, seeds=[0])
    >>> [c["regularization"] for c in study.cells()]  # doctest: +NORMALIZE_WHITESPACE
    [{'weight_decay': 0.0, 'dropout': 0.0, 'label_smoothing': 0.0, 'shift': 0},
     {'weight_decay': 0.0, 'dropout': 0.5, 'label_smoothing': 0.0, 'shift': 0},
     {'weight_decay': 0.01, 'dropout': 0.0, 'label_smoothing': 0.0, 'shift': 0}]
    """

    kind = "dynamics"
    rough_cell_seconds = 30.0  # dynamics-digits: 20 epochs on 1,347 images, IDs every 4

    def __init__(
        self,
        datasets: Any = "digits",
        models: Any = "small_cnn",
        sizes: Any = None,
        regularizers: Mapping[str, Sequence[float]] | None = None,
        baseline: Mapping[str, float] | None = None,
        seeds: Sequence[int] = (0, 1),
        training: Mapping[str, Any] | None = None,
        tracking: Mapping[str, Any] | None = None,
        device: str = "auto",
    ) -> None:
        self.datasets = datasets
        self.models = models
        self.sizes = sizes
        self.regularizers = regularizers
        self.baseline = baseline
        self.seeds = seeds
        self.training = training
        self.tracking = tracking
        self.device = device

    run_cell = staticmethod(dynamics_cell)

    def _regularizers(self) -> dict[str, list]:
        regs = self.regularizers
        if regs is None:
            regs = {
                "weight_decay": [0.0, 1e-3, 1e-2, 3e-2, 1e-1],
                "dropout": [0.0, 0.25, 0.5, 0.75, 0.9],
                "label_smoothing": [0.0, 0.1, 0.3, 0.6, 0.9],
                "shift": [0, 1, 2, 3],
            }
        unknown = sorted(set(regs) - set(REGULARIZERS))
        if unknown or not regs:
            raise ValueError(f"regularizers: unknown {unknown}; sweep some of {sorted(REGULARIZERS)}")
        out = {}
        for name, values in regs.items():
            values = [values] if isinstance(values, (int, float)) else list(values)
            if not values:
                raise ValueError(f"regularizers.{name} is empty")
            out[name] = (
                integers(values, "regularizers.shift", minimum=0) if name == "shift" else [float(v) for v in values]
            )
        return out

    def _baseline(self) -> dict[str, Any]:
        base = dict(REGULARIZERS)
        extra = dict(self.baseline or {})
        unknown = sorted(set(extra) - set(REGULARIZERS))
        if unknown:
            raise ValueError(f"baseline: unknown {unknown}; use keys of {sorted(REGULARIZERS)}")
        base.update(extra)
        return {k: integers([v], "baseline.shift", minimum=0)[0] if k == "shift" else float(v) for k, v in base.items()}

    def _tracking(self, model_name: str) -> Tracking:
        tracking = Tracking.parse(self.tracking, _DEFAULT_TRACKING, model_name)
        if tracking.extra["data"] not in ("test", "train"):
            raise ValueError(f"tracking.data must be 'test' or 'train', got {tracking.extra['data']!r}")
        return tracking

    def settings(self) -> list[tuple[dict[str, Any], list[str]]]:
        """Every distinct regularization setting with the sweeps it belongs to."""
        base = self._baseline()
        seen: dict[str, tuple[dict[str, Any], list[str]]] = {}
        for name, values in self._regularizers().items():
            for value in values:
                setting = {**base, name: value}
                key = repr(sorted(setting.items()))
                seen.setdefault(key, (setting, []))[1].append(name)
        return list(seen.values())

    def fetch_data(self) -> None:
        """Download the datasets whose entries say ``download = true``
        (:func:`~idprops.studies.steps.download_data`)."""
        download_data(parse_datasets(self.datasets))

    def cells(self) -> list[dict[str, Any]]:
        """One configuration per distinct regularization setting x seed."""
        data, model, n = single_setting(self.datasets, self.models, self.sizes, "dynamics")
        training = {**_DEFAULT_TRAINING, **dict(self.training or {})}
        check_training(
            training,
            forbidden=("weight_decay", "label_smoothing"),
            hint="sweep them through regularizers (or set baseline)",
        )
        if "dropout" in model.params:
            # Every cell has a dropout (the baseline's when another regularizer is swept),
            # and it is the one reported: a second value in the model would contradict it.
            raise ValueError(
                "models: dropout is set by the study; sweep it through regularizers.dropout "
                "(or set baseline.dropout) and leave it out of the model's parameters"
            )
        settings = self.settings()
        tracking = self._tracking(model.name).config()
        # The largest dropout swept: a model that cannot take it fails here.
        dropout = max(setting["dropout"] for setting, _ in settings)
        tracking["layers"] = check_layers(data.config(n), model.config(), tracking["layers"], dropout)
        seeds = integers(self.seeds, "seeds", minimum=0)
        device = parse_device(self.device)
        return [
            self._cell(
                data=data.config(n),
                model=model.config(),
                regularization=setting,
                seed=seed,
                training=training,
                tracking=tracking,
                device=device,
            )
            for setting, _ in settings
            for seed in seeds
        ]

    # ------------------------------------------------------------------ report

    def _sweeps(self, results) -> dict[str, list[dict[str, Any]]]:
        """Regularizer -> its cells' records (the baseline in each), sorted by strength."""
        base = self._baseline()
        out: dict[str, list[dict[str, Any]]] = {}
        for name in self._regularizers():
            rows = []
            for r in results:  # a record per distinct cell
                others_at_base = all(r[f"regularization.{k}"] == v for k, v in base.items() if k != name)
                if others_at_base:
                    rows.append(r)
            out[name] = sorted(rows, key=lambda r: (r[f"regularization.{name}"], r["seed"]))
        return out

    def report(self, results: Sequence[Mapping[str, Any]], outdir) -> Path:
        """Write ``report.md`` (and ``.html``), ``results.csv`` and the figures of
        ``results`` (what :meth:`run` returned) into ``outdir``.

        Figures: ``id_vs_regularization.png``, ``accuracy_vs_log_pid_llid.png``,
        ``accuracy_vs_llid.png``, ``llid_curves.png`` and ``id_curves_baseline.png``.
        """
        from ..analysis import correlation

        outdir = Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        rows = results  # a record per distinct cell, though cells() repeats the baseline
        sweeps = self._sweeps(rows)
        correlations: dict[str, Any] = {}
        figures = [_id_vs_regularization_figure(sweeps, outdir / "id_vs_regularization.png")]
        for field, label, name in (
            ("log_pid_llid", "log(PID / LLID)", "accuracy_vs_log_pid_llid.png"),
            ("llid", "LLID", "accuracy_vs_llid.png"),
        ):
            ok = [r for r in rows if finite(r, field, "val_accuracy")]
            x, y = [r[field] for r in ok], [r["val_accuracy"] for r in ok]
            if len(ok) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
                correlations[f"validation accuracy vs {label}"] = f"not computed: {len(ok)} usable cells"
                continue
            for method in ("pearson", "spearman"):
                correlations[f"validation accuracy vs {label} ({method})"] = correlation(x, y, method=method)
            figures.append(
                _scatter_figure(
                    ok, field, label, correlations[f"validation accuracy vs {label} (pearson)"], outdir / name
                )
            )
        figures.append(_llid_curves_figure(sweeps, outdir / "llid_curves.png"))
        base = [r for r in rows if not _changed(r, self._baseline())]
        if base:
            figures.append(
                _baseline_id_curves_figure(min(base, key=lambda r: r["seed"]), outdir / "id_curves_baseline.png")
            )
        table = [
            {
                "regularizer": ", ".join(_changed(r, self._baseline())) or "baseline",
                **{k: r[f"regularization.{k}"] for k in REGULARIZERS},
                "seed": r["seed"],
                "val_accuracy": r["val_accuracy"],
                "train_accuracy": r["train_accuracy"],
                "llid": r["llid"],
                "pid": r["pid"],
                "log_pid_llid": r["log_pid_llid"],
                "seconds": r["seconds"],
                "id_s_per_eval": r["id_seconds_per_evaluation"],
                "id_share": r["id_share"],
            }
            for r in rows
        ]
        lines = _summary(sweeps, rows) + contradictions(correlations, _CLAIMS)
        n_finite = sum(finite(r, "llid") for r in rows)
        if n_finite < len(rows):
            lines.append(
                f"correlations over the {n_finite} cells with a finite LLID; "
                f"{len(rows) - n_finite} collapsed cell(s) left out."
            )
        return write_study_report(
            outdir,
            rows,
            title="Training-dynamics study: regularization and activation ID",
            table=table,
            correlations=correlations,
            figures=figures,
            summary=lines,
        )


def _changed(r: Mapping[str, Any], base: Mapping[str, Any]) -> list[str]:
    return [k for k, v in base.items() if r[f"regularization.{k}"] != v]


def _by_value(rows: Sequence[Mapping[str, Any]], name: str, field: str) -> tuple[list, np.ndarray, np.ndarray]:
    """Strength values and the mean and std over seeds of ``field``."""
    groups = defaultdict(list)
    for r in rows:
        groups[r[f"regularization.{name}"]].append(r[field])
    values = sorted(groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a collapsed setting: every seed NaN
        means = np.array([np.nanmean(groups[v]) for v in values])
        stds = np.array([np.nanstd(groups[v]) for v in values])
    return values, means, stds


def _summary(sweeps: Mapping[str, Sequence[Mapping[str, Any]]], unique) -> list[str]:
    lines = []
    for name, rows in sweeps.items():
        values, llid, _ = _by_value(rows, name, "llid")
        _, pid, _ = _by_value(rows, name, "pid")
        _, acc, _ = _by_value(rows, name, "val_accuracy")
        if len(values) < 2:
            continue
        collapsed = [v for v, x in zip(values, llid) if math.isnan(x)]
        lowest = (
            ""
            if len(collapsed) == len(values)
            else (f" (lowest {np.nanmin(llid):.3g} at {values[int(np.nanargmin(llid))]})")
        )
        dead = f"; LLID undefined at {collapsed}: every activation of the layer equal (collapsed)" if collapsed else ""
        lines.append(
            f"{name} {values[0]} -> {values[-1]}: LLID {llid[0]:.3g} -> {llid[-1]:.3g}{lowest}, PID "
            f"{pid[0]:.3g} -> {pid[-1]:.3g}, validation accuracy {acc[0]:.3f} -> {acc[-1]:.3f} (best "
            f"{np.nanmax(acc):.3f} at {values[int(np.nanargmax(acc))]}){dead}."
        )
    seconds = sum(r["seconds"] for r in unique)
    per_eval = np.mean([r["id_seconds_per_evaluation"] for r in unique])
    share = np.mean([r["id_share"] for r in unique])
    lines.append(
        f"{len(unique)} distinct cells, {seconds:.0f} s of cell time; the ID tracker took "
        f"{per_eval:.3f} s per evaluation, {share:.0%} of a cell's time on average."
    )
    return lines


def _id_vs_regularization_figure(sweeps, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sweeps), figsize=(4.2 * len(sweeps), 3.8), squeeze=False)
    for ax, (name, rows) in zip(axes[0], sweeps.items()):
        values, llid, llid_sd = _by_value(rows, name, "llid")
        _, pid, pid_sd = _by_value(rows, name, "pid")
        _, acc, acc_sd = _by_value(rows, name, "val_accuracy")
        xs = np.arange(len(values))  # strengths span decades and include 0: evenly spaced ticks
        ax.errorbar(xs, llid, yerr=llid_sd, fmt="o-", color="C0", label="LLID")
        ax.errorbar(xs, pid, yerr=pid_sd, fmt="s--", color="C3", label="PID")
        for x, v in zip(xs, llid):
            if math.isnan(v):  # a dead LLID layer: no ID to draw, say so where it would be
                ax.annotate("LLID\ncollapsed", (x, np.nanmin(pid)), ha="center", va="top", fontsize=7, color="C0")
        ax.set_xticks(xs, [f"{v:g}" for v in values])
        ax.set_xlabel(name)
        ax.set_ylabel("intrinsic dimension")
        twin = ax.twinx()
        twin.errorbar(xs, acc, yerr=acc_sd, fmt="^:", color="k", label="val. accuracy")
        twin.set_ylabel("validation accuracy")
        lines = [*ax.containers, *twin.containers]
        ax.legend(lines, [c.get_label() for c in lines], fontsize=7, loc="best")
    fig.suptitle("final ID against regularization strength (mean ± std over seeds)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _scatter_figure(rows, field: str, label: str, corr, path: Path) -> Path:
    from ..plotting import plot_correlation

    fig, ax = new_axes()
    plot_correlation([r[field] for r in rows], [r["val_accuracy"] for r in rows], corr, ax=ax)
    ax.set_xlabel(f"{label} (end of training)")
    ax.set_ylabel("validation accuracy")
    return save_figure(fig, path)


def _llid_curves_figure(sweeps, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sweeps), figsize=(4.2 * len(sweeps), 3.8), squeeze=False)
    for ax, (name, rows) in zip(axes[0], sweeps.items()):
        seed = min(r["seed"] for r in rows)
        for r in rows:
            if r["seed"] == seed:
                h = r["id_history"]
                ax.plot(
                    [e["epoch"] for e in h], [e["llid"] for e in h], label=f"{name} = {r[f'regularization.{name}']:g}"
                )
        ax.set_xlabel("epoch")
        ax.set_ylabel("LLID")
        ax.set_title(f"seed {seed}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("LLID through training", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _baseline_id_curves_figure(base: Mapping[str, Any], path: Path) -> Path:
    from ..plotting import plot_id_curves

    fig, ax = new_axes()
    # The tracked layers, input side first: the last is the LLID layer.
    plot_id_curves(base["id_history"], x="epoch", last_hidden=base["tracking.layers"][-1], ax=ax)
    ax.set_title(f"every layer's ID through training (baseline, seed {base['seed']})", fontsize=9)
    return save_figure(fig, path)
