"""Randomization tests (Zhang et al. 2017) with the intrinsic dimension of data and representations.

Zhang et al. show that a network fits random labels, shuffled or random pixels and
Gaussian inputs to 100 % training accuracy, with test accuracy at chance for the
random ones: capacity alone does not explain generalization. :class:`RandomizationStudy`
trains the same model on each corruption of :mod:`idprops.data.randomization` (x seed),
recording training and test loss and accuracy through training, the intrinsic
dimension of the corrupted inputs (d_data) and of the model's layers through training
(d_repr, :class:`~idprops.nn.callbacks.ActivationIDTracker` on a fixed sample of the
corrupted training inputs).

Test data: labels are never corrupted (so a model trained on random labels is scored
against the truth); inputs are corrupted as the training inputs are, with the SAME
permutation for ``shuffled_pixels`` and fresh draws for ``random_pixels`` and
``gaussian`` (the wrapper's seed plus :data:`TEST_SEED_OFFSET`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .reporting import new_axes, save_figure, write_study_report
from .specs import (
    Tracking,
    check_training,
    configs,
    integers,
    parse_datasets,
    parse_device,
    parse_estimators,
    parse_steps,
    single_setting,
)
from .steps import (
    build_network,
    cell_session,
    check_layers,
    download_data,
    epoch_history,
    first_step_at_least,
    id_history,
    id_tracker,
    load_data,
    measure_dataset,
    train_model,
)
from .study import Study

__all__ = ["TEST_SEED_OFFSET", "RandomizationStudy", "randomization_cell"]

#: Added to a cell's seed for the test set's own draws of random pixels and Gaussian inputs.
TEST_SEED_OFFSET = 1_000_003

_DEFAULT_CORRUPTIONS = {
    "true_labels": {},
    "partial_labels_0.5": {"name": "partial_labels", "p": 0.5},
    "random_labels": {},
    "shuffled_pixels": {},
    "random_pixels": {},
    "gaussian": {},
}
_DEFAULT_TRAINING = {"optimizer": "adam", "lr": 1e-3, "epochs": 40, "batch_size": 32}
_DEFAULT_TRACKING = {"layers": None, "estimator": "twonn", "n_samples": 1000, "every": 5}


def _materialize(dataset):
    """The items of a (corrupted) dataset as one TensorDataset: the corruption is fixed
    anyway, and training then reads tensors instead of redrawing permutations."""
    import torch
    from torch.utils.data import TensorDataset

    xs, ys = zip(*(dataset[i][:2] for i in range(len(dataset))))
    return TensorDataset(torch.stack([torch.as_tensor(x) for x in xs]).float(), torch.as_tensor(ys, dtype=torch.long))


def randomization_cell(config: Mapping[str, Any]) -> dict[str, Any]:
    """Train one model on one corruption of a dataset; a pure function of ``config``.

    ``config`` holds ``data`` (:meth:`~idprops.studies.specs.DataSpec.config`), ``corruption`` (``name`` of
    :data:`idprops.data.CORRUPTIONS` and ``params``), ``model``, ``seed``, ``training``
    (Trainer arguments and ``threads``), ``tracking`` (``layers``, ``estimator``,
    ``n_samples``, ``every`` in epochs), ``estimators`` (d_data, label -> spec) and
    ``device``.

    Returns
    -------
    dict
        ``corrupted_fraction`` (training items whose label or input changed),
        ``train_accuracy`` and ``train_loss`` (final, in eval mode, on the corrupted
        training set), ``test_accuracy``, ``test_loss``, ``fit_epoch`` (first epoch
        whose running training accuracy reached 0.99, None if none), ``d_data``
        (per estimator label) of the corrupted training inputs, final ``llid``,
        ``pid``, ``ids``, ``history`` (per epoch: ``epoch``, ``step``,
        ``train_loss``, ``train_accuracy``, ``test_loss``, ``test_accuracy``) and
        ``id_history`` (see :func:`~idprops.studies.dynamics.id_history`),
        ``n_train``, ``n_test``, ``id_seconds``, ``id_share``.

    Examples
    --------
    One cell: 100 digits with random labels, one epoch.

    >>> study = RandomizationStudy(corruptions=["random_labels"], sizes=100, seeds=[0],
    ...                            training={"epochs": 1}, tracking={"n_samples": 100},
    ...                            device="cpu")
    >>> out = randomization_cell(study.cells()[0])
    >>> out["n_train"], out["corrupted_fraction"], sorted(out["d_data"])
    (100, 0.88, ['mle', 'twonn'])
    """
    from ..data import RandomizedLabels, corrupt
    from ..nn import evaluate

    training = dict(config["training"])
    threads = training.pop("threads", None)
    device = config.get("device", "auto")  # "auto" is read where it is used
    seed = int(config["seed"])
    data, corruption = config["data"], config["corruption"]
    notes: list[str] = []
    with cell_session(seed, device, threads):
        clean_train = load_data(data, train=True, n=data.get("n"), seed=seed)
        clean_test = load_data(data, train=False, n=data.get("n_test"), seed=0)
        wrapped = corrupt(clean_train, corruption["name"], seed=seed, **corruption["params"])
        if isinstance(wrapped, RandomizedLabels):
            test = clean_test  # scored against the true labels
        elif corruption["name"] == "shuffled_pixels":
            test = corrupt(clean_test, "shuffled_pixels", seed=seed)  # the same permutation
        else:
            test = corrupt(clean_test, corruption["name"], seed=seed + TEST_SEED_OFFSET, **corruption["params"])
        train, test = _materialize(wrapped), _materialize(test)
        measured = measure_dataset(train, estimators=config["estimators"], sharpness=None, seed=seed, notes=notes)

        channels, *size = tuple(train[0][0].shape)
        num_classes = int(max(np.max(wrapped.targets), np.max(clean_train.targets))) + 1
        model = build_network(config["model"], in_channels=channels, num_classes=num_classes, input_size=tuple(size))
        tracking = config["tracking"]
        tracker = id_tracker(tracking, seed=seed, every=int(tracking["every"]))
        trainer = train_model(model, train, test, training=training, seed=seed, device=device, callbacks=[tracker])
        final_train = evaluate(model, train, device=device)
        final_test = evaluate(model, test, device=device)

    history = [
        {
            **{k: h[k] for k in ("epoch", "step", "train_loss", "train_accuracy")},
            "test_loss": h["val_loss"],
            "test_accuracy": h["val_accuracy"],
        }
        for h in epoch_history(trainer.history, ("train_loss", "train_accuracy", "val_loss", "val_accuracy"))
    ]
    last = tracker.records_[-1]
    return {
        "corrupted_fraction": float(np.mean(wrapped.corrupted_)),
        "train_accuracy": final_train["accuracy"],
        "train_loss": final_train["loss"],
        "test_accuracy": final_test["accuracy"],
        "test_loss": final_test["loss"],
        "fit_epoch": first_step_at_least([h["epoch"] for h in history], [h["train_accuracy"] for h in history], 0.99),
        **measured,
        "llid": last["llid"],
        "pid": last["pid"],
        "ids": last["ids"],
        "history": history,
        "id_history": id_history(tracker.records_),
        "n_train": len(train),
        "n_test": len(test),
        "id_seconds": tracker.seconds_,
        "id_share": tracker.share_,
        "warnings": notes,
    }


class RandomizationStudy(Study):
    """Train one model per corruption of a dataset: fit, generalization and IDs.

    Cells: ``corruptions`` x ``seeds``. Each cell runs :func:`randomization_cell`.
    :meth:`report` draws the paper's figure (training loss against steps, one curve
    per corruption), training and test accuracy through training, LLID and every
    layer's ID through training per corruption, and tabulates the corrupted fraction,
    final train and test accuracy, d_data and the final LLID / PID.

    Parameters
    ----------
    datasets : str, DataSpec or mapping, default="digits"
        One dataset entry (:func:`~idprops.studies.specs.parse_datasets`): training
        split to train on, test split to test.
    models : str or mapping, default="mlp3x512"
        One registered name or ``{"name": ..., **factory arguments}``.
    sizes : int or sequence of one int, default=None
        Training images (a seeded stratified subset); None: all.
    corruptions : mapping or sequence, optional
        label -> spec (``name`` of :data:`idprops.data.CORRUPTIONS`, default the
        label, and its parameters, e.g. ``{"partial_labels_0.5": {"name":
        "partial_labels", "p": 0.5}}``); a sequence of names is read as ``{name: {}}``.
        Only ``partial_labels`` takes ``p`` (and needs it); names and parameters are
        checked when the grid is built (:func:`idprops.data.randomization.check_corruption`).
        Default: true labels, labels corrupted with p = 0.5, random labels, shuffled
        pixels, random pixels, Gaussian.
    seeds : sequence of int, default=(0,)
        Seed of the corruption, initialisation, data order and ID sample.
    training : mapping, optional
        Trainer arguments over Adam lr 1e-3, 40 epochs, batch 32 (``threads``: torch
        threads per cell).
    tracking : mapping, optional
        ``layers`` (default per model; the last is the LLID layer; names are checked
        against the model when the grid is built), ``estimator``
        (``"twonn"``), ``n_samples`` (1000 corrupted training inputs), ``every``
        (epochs, 5), ``min_distinct`` (the tracker's share of distinct activations
        below which a layer's ID is flagged, 0.5).
    estimators : mapping or sequence, default=("mle", "twonn")
        d_data estimators of the corrupted training inputs.
    device : str, default="auto"

    Examples
    --------
    >>> study = RandomizationStudy(corruptions=["true_labels", "random_labels"], seeds=[0, 1])
    >>> [(c["corruption"]["name"], c["seed"]) for c in study.cells()]
    [('true_labels', 0), ('true_labels', 1), ('random_labels', 0), ('random_labels', 1)]
    """

    kind = "randomization"
    rough_cell_seconds = 30.0  # randomization-digits: 40 epochs of an MLP, IDs every 5

    def __init__(
        self,
        datasets: Any = "digits",
        models: Any = "mlp3x512",
        sizes: Any = None,
        corruptions: Any = None,
        seeds: Sequence[int] = (0,),
        training: Mapping[str, Any] | None = None,
        tracking: Mapping[str, Any] | None = None,
        estimators: Any = ("mle", "twonn"),
        device: str = "auto",
    ) -> None:
        self.datasets = datasets
        self.models = models
        self.sizes = sizes
        self.corruptions = corruptions
        self.seeds = seeds
        self.training = training
        self.tracking = tracking
        self.estimators = estimators
        self.device = device

    run_cell = staticmethod(randomization_cell)

    def _corruptions(self) -> dict[str, dict[str, Any]]:
        from ..data.randomization import check_corruption

        specs = parse_steps(_DEFAULT_CORRUPTIONS if self.corruptions is None else self.corruptions, "corruptions")
        if not specs:
            raise ValueError("corruptions is empty")
        for label, spec in specs.items():
            try:
                check_corruption(spec.name, spec.params)
            except ValueError as exc:
                raise ValueError(f"corruptions.{label}: {exc}") from None
        return configs(specs)

    def fetch_data(self) -> None:
        """Download the datasets whose entries say ``download = true``
        (:func:`~idprops.studies.steps.download_data`)."""
        download_data(parse_datasets(self.datasets))

    def cells(self) -> list[dict[str, Any]]:
        """One configuration per corruption x seed."""
        data, model, n = single_setting(self.datasets, self.models, self.sizes, "randomization")
        corruptions = self._corruptions()
        training = {**_DEFAULT_TRAINING, **dict(self.training or {})}
        check_training(training)
        tracking = Tracking.parse(self.tracking, _DEFAULT_TRACKING, model.name).config()
        tracking["layers"] = check_layers(data.config(n), model.config(), tracking["layers"])
        estimators = configs(parse_estimators(self.estimators))
        seeds = integers(self.seeds, "seeds", minimum=0)
        device = parse_device(self.device)
        return [
            self._cell(
                data=data.config(n),
                corruption=spec,
                label=label,
                model=model.config(),
                seed=seed,
                training=training,
                tracking=tracking,
                estimators=estimators,
                device=device,
            )
            for label, spec in corruptions.items()
            for seed in seeds
        ]

    # ------------------------------------------------------------------ report

    def report(self, results: Sequence[Mapping[str, Any]], outdir) -> Path:
        """Write ``report.md`` (and ``.html``), ``results.csv`` and the figures of
        ``results`` (what :meth:`run` returned) into ``outdir``.

        Figures (first seed of each corruption): ``training_loss.png`` (the paper's
        Figure 1a: training loss against steps), ``accuracy.png`` (train and test
        accuracy through training), ``llid_curves.png`` (LLID and PID through
        training, one curve per corruption) and ``id_curves.png`` (every layer's ID
        through training, one panel per corruption).
        """
        from ..plotting import plot_training_curves

        outdir = Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        rows = results
        firsts: dict[str, Mapping[str, Any]] = {}
        for r in rows:
            firsts.setdefault(r["label"], r)
        figures = []

        fig, ax = new_axes()
        plot_training_curves({k: r["history"] for k, r in firsts.items()}, "train_loss", x="step", ax=ax)
        ax.set_title("training loss against steps, per corruption", fontsize=9)
        figures.append(save_figure(fig, outdir / "training_loss.png"))
        figures.append(_accuracy_figure(firsts, outdir / "accuracy.png"))
        figures.append(_llid_figure(firsts, outdir / "llid_curves.png"))
        figures.append(_id_curves_figure(firsts, outdir / "id_curves.png"))

        table = []
        for r in rows:
            row = {
                "corruption": r["label"],
                "seed": r["seed"],
                "corrupted_fraction": r["corrupted_fraction"],
                "train_accuracy": r["train_accuracy"],
                "test_accuracy": r["test_accuracy"],
                "fit_epoch": r["fit_epoch"],
            }
            row.update({k: v for k, v in r.items() if k.startswith("d_data.")})
            h = r["id_history"]
            row.update(
                llid_start=h[0]["llid"],
                llid_final=r["llid"],
                pid_final=r["pid"],
                seconds=r["seconds"],
                id_share=r["id_share"],
            )
            table.append(row)
        return write_study_report(
            outdir,
            rows,
            title="Randomization tests: fit, generalization and ID",
            table=table,
            figures=figures,
            summary=[_summary_line(r) for r in firsts.values()],
        )


def _summary_line(r: Mapping[str, Any]) -> str:
    h = r["id_history"]
    d = ", ".join(f"{k[len('d_data.') :]} {v:.3g}" for k, v in r.items() if k.startswith("d_data."))
    fit = f"reached 99 % training accuracy at epoch {r['fit_epoch']}" if r["fit_epoch"] else "never reached 99 %"
    return (
        f"{r['label']} (seed {r['seed']}, {r['corrupted_fraction']:.0%} corrupted): {fit}; final train "
        f"accuracy {r['train_accuracy']:.3f}, test {r['test_accuracy']:.3f}; d_data {d}; LLID "
        f"{h[0]['llid']:.3g} -> {min(e['llid'] for e in h):.3g} (min) -> {r['llid']:.3g} (end), PID "
        f"{h[0]['pid']:.3g} -> {r['pid']:.3g}."
    )


def _accuracy_figure(firsts, path: Path) -> Path:
    fig, ax = new_axes()
    for i, (label, r) in enumerate(firsts.items()):
        steps = [h["step"] for h in r["history"]]
        ax.plot(steps, [h["train_accuracy"] for h in r["history"]], "-", color=f"C{i}", label=f"{label} train")
        ax.plot(steps, [h["test_accuracy"] for h in r["history"]], ":", color=f"C{i}", label=f"{label} test")
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    ax.set_title("train (solid) and test (dotted) accuracy", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    return save_figure(fig, path)


def _llid_figure(firsts, path: Path) -> Path:
    fig, ax = new_axes()
    for i, (label, r) in enumerate(firsts.items()):
        h = r["id_history"]
        steps = [e["step"] for e in h]
        ax.plot(steps, [e["llid"] for e in h], "-", color=f"C{i}", label=f"{label} LLID")
        ax.plot(steps, [e["pid"] for e in h], "--", color=f"C{i}", lw=1, label=f"{label} PID")
    ax.set_xlabel("step")
    ax.set_ylabel("intrinsic dimension")
    ax.set_title("LLID (solid) and PID (dashed) of the training inputs' representations", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    return save_figure(fig, path)


def _id_curves_figure(firsts, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from ..plotting import plot_id_curves

    n = len(firsts)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax, (label, r) in zip(axes.ravel(), firsts.items()):
        plot_id_curves(r["id_history"], x="step", ax=ax)
        ax.set_title(label, fontsize=9)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return save_figure(fig, path)
