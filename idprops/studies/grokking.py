"""Grokking on modular division, with the intrinsic dimension of the residual stream.

Brown et al. (2022, arXiv:2211.13239) train a small GPT-2-style transformer on ``a / b mod p``
and track, every 500 steps, the intrinsic dimension (ID) of each block's attention and
MLP outputs (the residual increments, all token positions concatenated). In runs that
grok, the late jump of validation accuracy coincides with a sharp drop of the last
layer's ID (LLID). :class:`GrokkingStudy` runs that experiment as a grid of cells
(weight decay x seed): each cell trains once, and every ``eval_every`` steps records
train and validation accuracy (exact, in eval mode) and the per-layer IDs, LLID and PID
(:class:`~idprops.nn.callbacks.ActivationIDTracker`), then marks the grokking step.

Two steps summarise a run (:func:`mark_grokking`, with ``threshold`` 0.9 by default):
the *memorisation step*, the first evaluation at which training accuracy reaches the
threshold, and the *generalisation step*, the first at which validation accuracy does.
One evaluation's LLID is noisy, so the report gives the median LLID of each phase:
*memorised* (from the memorisation step up to the generalisation step) and
*generalised* (from the generalisation step on), the drop between them (positive when
LLID falls as the model generalises), the peak while memorised, the lowest LLID from
memorisation on, and the LLID at the two steps themselves.

Defaults (the CPU preset ``grokking-cpu``): p = 31, 60 % of the equations for
training, width 128, 2 layers, full-batch AdamW (lr 1e-3, betas (0.9, 0.98), weight
decay 1, 10 warm-up steps). The paper used Adam with an L2 penalty of 1e-4, 10,000
warm-up steps, batch 512 and millions of steps; decoupled weight decay of 1 (AdamW,
as in Nanda et al. 2023) groks in hundreds of steps instead, which is what a CPU can
show. ``training = {preset = "brown2022_grokking"}`` restores the paper's optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .reporting import save_figure, write_study_report
from .specs import Tracking, check_training, integers, parse_device, parse_model
from .steps import cell_session, first_step_at_least, id_history, id_tracker, merge_by_step, train_model
from .study import Study

__all__ = ["GrokkingStudy", "grokking_cell", "mark_grokking"]

_DEFAULT_MODEL = {"width": 128, "depth": 2, "heads": 4, "mlp_width": 512, "dropout": 0.0}
_DEFAULT_TRAINING = {
    "optimizer": "adamw",
    "lr": 1e-3,
    "betas": [0.9, 0.98],
    "warmup_steps": 10,
    "batch_size": None,  # None: the whole training split in every step
    "max_steps": 1500,
}
_DEFAULT_TRACKING = {"estimator": "twonn", "n_samples": 1000, "layers": None}


def mark_grokking(
    steps: Sequence[int],
    train_accuracy: Sequence[float],
    val_accuracy: Sequence[float],
    *,
    threshold: float = 0.9,
    min_ratio: float = 2.0,
) -> dict[str, Any]:
    """Find when training and validation accuracy first reach ``threshold``.

    A run *groks* when validation accuracy reaches the threshold at a step at least
    ``min_ratio`` times the step at which training accuracy did (and not at the
    first evaluation after step 0 for both, which would be plain learning).

    Parameters
    ----------
    steps, train_accuracy, val_accuracy : sequences of the same length
        One entry per evaluation, steps increasing.
    threshold : float, default=0.9
    min_ratio : float, default=2.0

    Returns
    -------
    dict
        ``train_step`` and ``grok_step`` (None if never reached), ``delay``
        (``grok_step - train_step``), ``grokked`` (bool).

    Examples
    --------
    >>> mark_grokking([0, 100, 200, 300, 400], [0.0, 0.95, 1.0, 1.0, 1.0], [0.0, 0.1, 0.2, 0.5, 0.93])
    {'train_step': 100, 'grok_step': 400, 'delay': 300, 'grokked': True}
    """
    train_step = first_step_at_least(steps, train_accuracy, threshold)
    grok_step = first_step_at_least(steps, val_accuracy, threshold)
    delay = None if train_step is None or grok_step is None else grok_step - train_step
    grokked = bool(delay is not None and train_step > 0 and grok_step >= min_ratio * train_step)
    return {"train_step": train_step, "grok_step": grok_step, "delay": delay, "grokked": grokked}


def _llid_val_spearman(steps, llid, val, from_step: int | None) -> float | None:
    """Spearman correlation of LLID with validation accuracy over the evaluations from
    ``from_step`` on (after memorization); None when there are fewer than 3 or one is constant."""
    from scipy.stats import spearmanr

    if from_step is None:
        return None
    pairs = [(a, b) for s, a, b in zip(steps, llid, val) if s >= from_step and math.isfinite(a)]
    if len(pairs) < 3 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return None
    return float(spearmanr([a for a, _ in pairs], [b for _, b in pairs])[0])


def _llid_marks(steps: Sequence[int], llid: Sequence[float], marks: Mapping[str, Any]) -> dict[str, Any]:
    """LLID around the memorisation step m and the generalisation step g of ``marks``.

    One evaluation's LLID is noisy (in the CPU preset it is 11.0 at both steps while the
    curve rises to 16.6 between them and settles near 10.8), so the phases are
    summarised by their median: memorised, the evaluations in [m, g); generalised,
    those from g on. The drop is the first median minus the second.
    """
    llid_at = dict(zip(steps, llid))
    m, g = marks["train_step"], marks["grok_step"]

    def phase(lo, hi):
        return [(v, s) for s, v in zip(steps, llid) if lo <= s < hi and math.isfinite(v)]

    memorised = phase(m, g) if m is not None and g is not None and m < g else []
    generalised = phase(g, math.inf) if g is not None else []
    # Before memorisation (at initialisation) a low LLID says nothing about generalisation.
    after = phase(m or 0, math.inf)
    out: dict[str, Any] = {
        "llid_at_train_step": llid_at.get(m),
        "llid_at_grok_step": llid_at.get(g),
        "llid_memorised": float(np.median([v for v, _ in memorised])) if memorised else None,
        "llid_generalised": float(np.median([v for v, _ in generalised])) if generalised else None,
        "llid_peak": None,
        "llid_peak_step": None,
        "llid_drop": None,
    }
    if memorised:
        out["llid_peak"], out["llid_peak_step"] = max(memorised)
    if memorised and generalised:
        out["llid_drop"] = out["llid_memorised"] - out["llid_generalised"]
    out["llid_min"], out["llid_min_step"] = min(after) if after else (math.nan, None)
    return out


def grokking_cell(config: Mapping[str, Any]) -> dict[str, Any]:
    """Train one transformer on modular division; a pure function of ``config``.

    ``config`` holds ``p``, ``train_fraction``, ``split_seed``, ``seed``, ``model``
    (transformer arguments), ``training`` (Trainer arguments with ``threads`` and
    ``batch_size`` None for full batch), ``eval_every``, ``tracking``
    (``estimator`` spec, ``n_samples``, ``layers``), ``threshold`` and ``device``.

    Returns
    -------
    dict
        ``curves`` (one record per evaluation: ``step``, ``train_accuracy``,
        ``train_loss``, ``val_accuracy``, ``val_loss``, and the tracker's ``epoch``,
        ``ids`` per layer, ``llid``, ``pid``, ``log_pid_llid``, ``seconds``), the :func:`mark_grokking` fields, ``final_train_accuracy``,
        ``final_val_accuracy``, ``llid_at_train_step`` and ``llid_at_grok_step``
        (LLID at the memorisation and generalisation steps), ``llid_memorised`` and
        ``llid_generalised`` (the median LLID from the first up to the second, and
        from the second on), ``llid_drop`` (the first median minus the second),
        ``llid_peak`` and ``llid_peak_step`` (the highest LLID while memorised),
        ``llid_min`` and ``llid_min_step`` (the lowest LLID from the memorisation step
        on, from step 0 when there is none), ``llid_final``,
        ``llid_val_spearman`` (Spearman correlation
        of LLID with validation accuracy over the evaluations from ``train_step`` on:
        negative when LLID falls as the model generalizes), ``n_train``, ``n_val``, ``id_seconds``,
        ``id_share`` (the tracker's share of the run's time).

    Examples
    --------
    One tiny cell: division modulo 7, a narrow transformer, 20 steps.

    >>> study = GrokkingStudy(p=7, training={"max_steps": 20}, eval_every=10,
    ...                       models={"width": 32, "mlp_width": 64}, device="cpu")
    >>> out = grokking_cell(study.cells()[0])
    >>> out["n_train"], out["n_val"], [r["step"] for r in out["curves"]]
    (25, 17, [0, 10, 20])
    >>> list(out["curves"][-1]["ids"])
    ['blocks.0.attn', 'blocks.0.mlp', 'blocks.1.attn', 'blocks.1.mlp']
    """
    from ..data.modular import load_modular_division
    from ..nn.models import transformer_classifier

    training = dict(config["training"])
    threads = training.pop("threads", None)
    device = config.get("device", "auto")  # "auto" is read where it is used
    seed = int(config["seed"])
    p, fraction, split = int(config["p"]), float(config["train_fraction"]), int(config["split_seed"])
    with cell_session(seed, device, threads):
        train = load_modular_division(p=p, train_fraction=fraction, train=True, seed=split)
        val = load_modular_division(p=p, train_fraction=fraction, train=False, seed=split)
        model = transformer_classifier(vocab_size=p + 2, num_classes=p, **config["model"])
        tracking = config["tracking"]
        layers = tracking["layers"] or [
            f"blocks.{i}.{part}" for i in range(len(model.blocks)) for part in ("attn", "mlp")
        ]
        tracker = id_tracker({**tracking, "layers": layers}, seed=seed, batch_size=4096)
        probe = _AccuracyProbe(train, val)
        training["steps_per_epoch"] = int(config["eval_every"])
        trainer = train_model(model, train, training=training, seed=seed, device=device, callbacks=[probe, tracker])

    rows = merge_by_step(probe.records_, id_history(tracker.records_))
    col = {key: [r.get(key, math.nan) for r in rows] for key in ("step", "train_accuracy", "val_accuracy", "llid")}
    steps = col["step"]
    marks = mark_grokking(steps, col["train_accuracy"], col["val_accuracy"], threshold=config["threshold"])
    return {
        "curves": rows,
        **marks,
        "final_train_accuracy": col["train_accuracy"][-1],
        "final_val_accuracy": col["val_accuracy"][-1],
        **_llid_marks(steps, col["llid"], marks),
        "llid_final": col["llid"][-1],
        "llid_val_spearman": _llid_val_spearman(steps, col["llid"], col["val_accuracy"], marks["train_step"]),
        "n_train": len(train),
        "n_val": len(val),
        "steps": trainer.step,
        "id_seconds": tracker.seconds_,
        "id_share": tracker.share_,
    }


class _AccuracyProbe:
    """Exact train and validation accuracy (eval mode) before training and after every epoch.

    The Trainer's own ``train_accuracy`` is a running mean over the epoch's batches in
    training mode; grokking is read from the model as it stands at each evaluation.
    """

    def __init__(self, train, val) -> None:
        self.train, self.val = train, val

    def _measure(self, trainer, logs=None) -> None:
        from ..nn import evaluate

        tr = evaluate(trainer.model, self.train, batch_size=4096, device=trainer.device)
        va = evaluate(trainer.model, self.val, batch_size=4096, device=trainer.device)
        self.records_.append(
            {
                "step": trainer.step,
                "train_accuracy": tr["accuracy"],
                "train_loss": tr["loss"],
                "val_accuracy": va["accuracy"],
                "val_loss": va["loss"],
            }
        )

    def on_train_begin(self, trainer) -> None:
        self.records_ = []
        self._measure(trainer)

    def on_step_end(self, trainer, step, logs) -> None:
        pass

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        self._measure(trainer)

    def on_train_end(self, trainer) -> None:
        pass


class GrokkingStudy(Study):
    """Modular division with a small transformer: when does it grok, and what does LLID do?

    Cells: ``weight_decays`` x ``seeds``, every other setting shared. Each cell runs
    :func:`grokking_cell`. :meth:`report` draws, per cell, train and validation
    accuracy and LLID/PID against steps with the grokking step marked, and each
    layer's ID curve, and tabulates the steps at which training and validation
    accuracy reached ``threshold`` and the LLID around them.

    Parameters
    ----------
    p : int, default=31
        Prime modulus (the paper: 97).
    train_fraction : float, default=0.6
        Share of the ``p (p - 1)`` equations used for training (the paper: 0.2).
    seeds : sequence of int, default=(0,)
        Initialisation, data order and the tracker's sample.
    weight_decays : sequence of float, default=(1.0,)
        The optimizer's weight decay per cell (0 usually does not grok in the same
        number of steps).
    models : str or mapping, default="transformer"
        The transformer: a table of :func:`~idprops.nn.models.transformer_classifier`
        arguments over width 128, 2 layers, 4 heads, MLP 512, dropout 0 (the paper:
        0.1).
    training : mapping, optional
        Trainer arguments over the defaults (AdamW, lr 1e-3, betas (0.9, 0.98), 10
        warm-up steps, full batch, 1,500 steps); ``preset`` starts from one of
        :data:`idprops.nn.TRAINING_PRESETS` instead (its weight decay is replaced by
        ``weight_decays``: the paper's is ``[1e-4]``); ``batch_size`` None is the whole
        training split; ``threads`` sets torch's threads.
    eval_every : int, default=100
        Steps between evaluations (the paper: 500).
    tracking : mapping, optional
        ``estimator`` (name or table, default ``"twonn"``), ``n_samples`` (training
        equations in the ID sample, default 1000), ``layers`` (default every block's
        ``attn`` and ``mlp``; LLID is the last), ``min_distinct`` (the tracker's
        share of distinct activations below which a layer's ID is flagged, 0.5).
    threshold : float, default=0.9
        Accuracy that marks "reached" (see :func:`mark_grokking`).
    split_seed : int, default=0
        Seed of the train/validation split, the same for every cell.
    device : str, default="auto"

    Examples
    --------
    >>> study = GrokkingStudy(weight_decays=[0.0, 1.0], seeds=[0, 1])
    >>> [(c["training"]["weight_decay"], c["seed"]) for c in study.cells()]
    [(0.0, 0), (0.0, 1), (1.0, 0), (1.0, 1)]
    >>> study.cells()[0]["training"]["optimizer"], study.cells()[0]["model"]["width"]
    ('adamw', 128)
    """

    kind = "grokking"
    rough_cell_seconds = 120.0  # grokking-cpu: 1,500 full-batch steps, IDs every 50

    def __init__(
        self,
        p: int = 31,
        train_fraction: float = 0.6,
        seeds: Sequence[int] = (0,),
        weight_decays: Sequence[float] = (1.0,),
        models: Any = "transformer",
        training: Mapping[str, Any] | None = None,
        eval_every: int = 100,
        tracking: Mapping[str, Any] | None = None,
        threshold: float = 0.9,
        split_seed: int = 0,
        device: str = "auto",
    ) -> None:
        self.p = p
        self.train_fraction = train_fraction
        self.seeds = seeds
        self.weight_decays = weight_decays
        self.models = models
        self.training = training
        self.eval_every = eval_every
        self.tracking = tracking
        self.threshold = threshold
        self.split_seed = split_seed
        self.device = device

    run_cell = staticmethod(grokking_cell)

    def _training(self) -> dict[str, Any]:
        from ..nn.training import TRAINING_PRESETS

        training = dict(self.training or {})
        preset = training.pop("preset", None)
        if preset is not None:
            if preset not in TRAINING_PRESETS:
                raise ValueError(f"training.preset {preset!r} is not one of {sorted(TRAINING_PRESETS)}")
            # The study's own parameters decide these (the paper's decay: weight_decays=[1e-4]).
            owned = ("steps_per_epoch", "seed", "weight_decay")
            base = {k: v for k, v in TRAINING_PRESETS[preset].items() if k not in owned}
            base.setdefault("max_steps", _DEFAULT_TRAINING["max_steps"])
        else:
            base = dict(_DEFAULT_TRAINING)
        training = {**base, **training}
        # The preset's steps_per_epoch and weight_decay were left out of base above.
        check_training(
            training,
            forbidden=("steps_per_epoch", "weight_decay"),
            hint="use eval_every for the steps between evaluations, weight_decays for the decay",
        )
        return training

    def _model(self) -> dict[str, Any]:
        """The transformer's arguments: ``models`` is its name, a table of its arguments
        (``name`` optional) or a list of one of them."""
        models = self.models
        if isinstance(models, Sequence) and not isinstance(models, str):
            if len(models) != 1:
                raise ValueError(f"a grokking study trains one transformer; got {len(models)} models")
            models = models[0]
        if isinstance(models, Mapping):
            models = {"name": "transformer", **models}
        model = parse_model(models)
        if model.name != "transformer":
            raise ValueError(f"a grokking study trains the 'transformer' model, not {model.name!r}")
        return {**_DEFAULT_MODEL, **model.params}

    def check_data(self) -> None:
        """Build the equations once, as every cell will: a modulus that is not prime is
        an error before the first cell rather than in each (:meth:`run` calls it when
        cells are missing)."""
        from ..data.modular import load_modular_division

        (p,) = integers([self.p], "p")
        (split_seed,) = integers([self.split_seed], "split_seed", minimum=0)
        load_modular_division(p=p, train_fraction=float(self.train_fraction), train=True, seed=split_seed)

    def cells(self) -> list[dict[str, Any]]:
        """One configuration per weight decay x seed."""
        if not 0 < float(self.train_fraction) < 1:
            raise ValueError(f"train_fraction must be in (0, 1), got {self.train_fraction!r}")
        (eval_every,) = integers([self.eval_every], "eval_every")
        if eval_every < 1:
            raise ValueError(f"eval_every must be a positive int, got {self.eval_every!r}")
        if not 0 < float(self.threshold) <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold!r}")
        model = self._model()
        training = self._training()
        tracking = Tracking.parse(self.tracking, _DEFAULT_TRACKING).config()
        seeds = integers(self.seeds, "seeds", minimum=0)
        device = parse_device(self.device)
        (p,) = integers([self.p], "p")
        (split_seed,) = integers([self.split_seed], "split_seed", minimum=0)
        decays = [self.weight_decays] if isinstance(self.weight_decays, (int, float)) else list(self.weight_decays)
        if not decays:
            raise ValueError("weight_decays is empty")
        return [
            self._cell(
                p=p,
                train_fraction=float(self.train_fraction),
                split_seed=split_seed,
                seed=seed,
                model=model,
                training={**training, "weight_decay": float(wd)},
                eval_every=eval_every,
                tracking=tracking,
                threshold=float(self.threshold),
                device=device,
            )
            for wd in decays
            for seed in seeds
        ]

    # ------------------------------------------------------------------ report

    def report(self, results: Sequence[Mapping[str, Any]], outdir) -> Path:
        """Write ``report.md`` (and ``.html``), ``results.csv`` and the figures of
        ``results`` (what :meth:`run` returned) into ``outdir``.

        Figures: ``grokking.png`` (per cell: train and validation accuracy, LLID and
        PID against steps, the grokking step marked) and ``id_curves.png`` (every
        layer's ID over training, first cell of each weight decay).
        """
        outdir = Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        rows = results
        figures = [_grokking_figure(rows, outdir / "grokking.png"), _id_curves_figure(rows, outdir / "id_curves.png")]
        table = [
            {
                "weight_decay": r["training.weight_decay"],
                "seed": r["seed"],
                "train_step": r["train_step"],
                "grok_step": r["grok_step"],
                "grokked": r["grokked"],
                "final_val_accuracy": r["final_val_accuracy"],
                "llid_at_train_step": r["llid_at_train_step"],
                "llid_at_grok_step": r["llid_at_grok_step"],
                "llid_memorised": r.get("llid_memorised"),
                "llid_generalised": r.get("llid_generalised"),
                "llid_drop": r.get("llid_drop"),
                "llid_final": r["llid_final"],
                "llid_min": r["llid_min"],
                "llid_val_spearman": r["llid_val_spearman"],
                "seconds": r["seconds"],
                "id_share": r["id_share"],
            }
            for r in rows
        ]
        return write_study_report(
            outdir,
            rows,
            title="Grokking study",
            table=table,
            figures=figures,
            summary=[_cell_summary(r, self.threshold) for r in rows],
        )


def _llid(value: float | None) -> str:
    # NaN: the estimate failed, or came from too few distinct activations (flagged).
    return "not measured" if value is None or not math.isfinite(value) else f"{value:.3g}"


def _cell_summary(r: Mapping[str, Any], threshold: float) -> str:
    """One plain-language line per cell: the two steps, LLID in each phase and the drop."""
    head = f"weight decay {r['training.weight_decay']}, seed {r['seed']}: "
    memorised = r["train_step"] is not None
    if r["grok_step"] is None:
        train = f"at step {r['train_step']}" if memorised else "never"
        return head + (
            f"validation accuracy never reached {threshold} in {r['steps']} steps (memorisation, train "
            f"accuracy >= {threshold}: {train}); LLID {_llid(r['llid_at_train_step'])} at memorisation, "
            f"{_llid(r['llid_final'])} at the end. {r['seconds']:.0f} s."
        )
    rho = r["llid_val_spearman"]
    trend = "" if rho is None else f"; from memorisation on, LLID and validation accuracy have Spearman ρ = {rho:.2f}"
    if not memorised:  # validation got there first and training never did
        return head + (
            f"validation accuracy reached {threshold} at step {r['grok_step']}, train accuracy never "
            f"did; LLID {_llid(r['llid_at_grok_step'])} then, {_llid(r['llid_final'])} at the end"
            f"{trend}. {r['seconds']:.0f} s."
        )
    kind = "grokked" if r["grokked"] else "not a delayed rise"
    text = (
        f"memorisation (train accuracy >= {threshold}) at step {r['train_step']}, generalisation "
        f"(validation accuracy >= {threshold}) at step {r['grok_step']} ({kind}); "
    )
    if r.get("llid_memorised") is not None:
        text += (
            f"LLID while memorised: median {_llid(r['llid_memorised'])}, peak {_llid(r['llid_peak'])} "
            f"at step {r['llid_peak_step']}; "
        )
    if r.get("llid_generalised") is not None:
        text += f"once generalised: median {_llid(r['llid_generalised'])}; "
    drop = r.get("llid_drop")
    if drop is not None and math.isfinite(drop):
        share = f" ({drop / r['llid_memorised']:.0%})" if r["llid_memorised"] else ""
        if drop >= 0:
            text += f"a drop of {drop:.3g}{share}; "
        else:
            text += f"a rise of {-drop:.3g}, against the claim that LLID drops as the model generalises; "
    lowest = f"lowest from memorisation on {_llid(r['llid_min'])}"
    if r.get("llid_min_step") is not None:
        lowest += f" (step {r['llid_min_step']})"
    return (
        head
        + text
        + (
            f"LLID {_llid(r['llid_at_train_step'])} and {_llid(r['llid_at_grok_step'])} at the two steps "
            f"themselves; {lowest}, {_llid(r['llid_final'])} at the end{trend}. {r['seconds']:.0f} s."
        )
    )


def _grokking_figure(rows, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 1, figsize=(7, 3.2 * len(rows)), squeeze=False)
    for ax, r in zip(axes[:, 0], rows):
        c = {
            k: [e.get(k, math.nan) for e in r["curves"]]
            for k in ("step", "train_accuracy", "val_accuracy", "llid", "pid")
        }
        ax.plot(c["step"], c["train_accuracy"], "C0-", label="train accuracy")
        ax.plot(c["step"], c["val_accuracy"], "C1-", label="validation accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("step")
        ax.set_ylabel("accuracy")
        if r["grok_step"] is not None:
            ax.axvline(r["grok_step"], color="k", ls=":", lw=1, label=f"grok step {r['grok_step']}")
        twin = ax.twinx()
        twin.plot(c["step"], c["llid"], "C2-", lw=2, label="LLID")
        twin.plot(c["step"], c["pid"], "C3--", lw=1, label="PID")
        twin.set_ylabel("intrinsic dimension")
        lines = ax.get_lines() + twin.get_lines()
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="center right")
        ax.set_title(f"weight decay {r['training.weight_decay']}, seed {r['seed']}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _id_curves_figure(rows, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from ..plotting import plot_id_curves

    firsts: dict[float, Mapping[str, Any]] = {}
    for r in rows:
        firsts.setdefault(r["training.weight_decay"], r)
    fig, axes = plt.subplots(len(firsts), 1, figsize=(7, 3.6 * len(firsts)), squeeze=False)
    for ax, (wd, r) in zip(axes[:, 0], firsts.items()):
        plot_id_curves([e for e in r["curves"] if "ids" in e], x="step", ax=ax)
        if r["grok_step"] is not None:
            ax.axvline(r["grok_step"], color="k", ls=":", lw=1)
        ax.set_title(f"ID of the residual increments, weight decay {wd}, seed {r['seed']}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
