"""Scaling-law study: test loss against training-set size and intrinsic dimension.

Reproduces the experiments of Konz & Mazurowski (ICLR 2024) as a grid of
cells, datasets (class pairs) x models x training-set sizes x seeds. Each cell trains a
model on a seeded subset of N training images, then measures on a fixed test set its
loss, error and robust accuracy under each configured attack, and on the training set
its intrinsic dimension d_data (each configured estimator), its label sharpness K_F,
and the intrinsic dimension d_repr of the trained model's activations at chosen layers.

Every step is named, not hard-wired: estimators and attacks by registered name
(plugins included) with parameters, or as objects; models by registered name;
training by a preset of :data:`idprops.nn.TRAINING_PRESETS` with overrides; so a
study file swaps any of them (see :mod:`idprops.studies.specs` for the forms).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..filenames import path_inside, safe_filename
from .reporting import (
    KF_CLAIMS,
    cell_table,
    contradictions,
    finite,
    kf_robustness_figures,
    new_axes,
    run_summary,
    save_figure,
    unit_label,
    write_study_report,
)
from .specs import (
    DataSpec,
    Representation,
    configs,
    integers,
    parse_datasets,
    parse_device,
    parse_estimators,
    parse_models,
    parse_sharpness,
    parse_steps,
    resolve_attacks,
    resolve_training,
)
from .steps import (
    attack_model,
    cell_session,
    check_datasets,
    check_layers,
    download_data,
    load_data,
    measure_dataset,
    train_model,
)
from .study import Study

__all__ = ["ScalingLawStudy", "train_and_measure"]


def train_and_measure(config: Mapping[str, Any]) -> dict[str, Any]:
    """Train the cell's model and take its measurements; a pure function of ``config``.

    ``config`` holds ``data`` (:meth:`~idprops.studies.specs.DataSpec.config`, with
    ``n``, the training-set size, None for all), ``model``, ``seed``, ``training``
    (:func:`~idprops.studies.specs.resolve_training`), ``device``, ``estimators`` and
    ``attacks`` (label -> ``{"name", "params"}``), ``sharpness`` (``{"M": ...}`` or
    None) and ``representation`` (``{"layers": [...], "estimator": {...}}`` or None).

    Returns
    -------
    dict
        ``n_train``, ``n_test``, ``train_loss``, ``test_loss``, ``test_accuracy``,
        ``test_error``, ``pixel_scale``; ``n_distinct``, ``d_data`` and ``d_data_std`` (per
        estimator label), ``K_F``, ``d_repr`` (per layer), ``robust_accuracy``,
        ``adversarial_loss`` and ``loss_increase`` (per attack label) when asked for;
        ``warnings`` (estimates that failed and were recorded as NaN).

    Examples
    --------
    One cell of a tiny study: 40 images of digits 0 and 1, one epoch.

    >>> study = ScalingLawStudy(datasets=[{"name": "digits", "classes": [0, 1]}], sizes=[40],
    ...                         training={"epochs": 1}, estimators=["twonn"],
    ...                         attacks={"fgsm": {"eps": 0.1}}, device="cpu")
    >>> out = train_and_measure(study.cells()[0])
    >>> out["n_train"], out["n_test"], sorted(out["d_data"]), sorted(out["robust_accuracy"])
    (40, 91, ['twonn'], ['fgsm'])
    """
    from ..nn import evaluate
    from .steps import build_network

    seed = int(config["seed"])
    data = config["data"]
    training = dict(config["training"])
    threads = training.pop("threads", None)
    device = config.get("device", "auto")  # "auto" is read where it is used
    notes: list[str] = []
    out: dict[str, Any] = {}
    with cell_session(seed, device, threads):
        train = load_data(data, train=True, n=data.get("n"), seed=seed)
        test = load_data(data, train=False, n=data.get("n_test"), seed=0)  # one fixed test set
        channels, *size = tuple(train[0][0].shape)
        num_classes = len(data["classes"]) if data["classes"] else int(np.max(train.targets)) + 1
        model = build_network(config["model"], in_channels=channels, num_classes=num_classes, input_size=tuple(size))
        trainer = train_model(model, train, training=training, seed=seed, device=device)
        clean = evaluate(model, test, device=device)
        out.update(
            n_train=len(train),
            n_test=len(test),
            train_loss=trainer.history[-1]["train_loss"],
            test_loss=clean["loss"],
            test_accuracy=clean["accuracy"],
            test_error=1.0 - clean["accuracy"],
            pixel_scale=getattr(train, "pixel_scale", "as given"),
        )
        out.update(
            measure_dataset(
                train,
                estimators=config.get("estimators"),
                sharpness=config.get("sharpness"),
                model=model,
                representation=config.get("representation"),
                device=device,
                seed=seed,
                notes=notes,
            )
        )
        if config.get("attacks"):
            out.update(attack_model(model, test, config["attacks"], device=device))
    out["warnings"] = notes
    return out


class ScalingLawStudy(Study):
    """Train across datasets, models, training-set sizes and seeds; fit the scaling laws.

    Each cell (see :func:`train_and_measure`) trains a model on N seeded training
    images of a class selection (subsets are nested: the N = 100 set contains the
    N = 50 one) and measures test loss and error on the fixed test set, d_data and
    K_F of its training set, d_repr at ``representation["layers"]`` and robust
    accuracy under each attack. :meth:`report` fits ``log L = -alpha log N + c``
    per dataset and model (the paper's law has ``alpha = 1/d``), ``log L = a + b d``
    at each N across datasets for d_data and d_repr, correlates K_F with robust
    accuracy, and checks ``d_repr <= d_data``.

    Parameters
    ----------
    datasets : str, DataSpec, mapping or sequence of them
        See :func:`~idprops.studies.specs.parse_datasets`, e.g. ``[{"name": "digits",
        "pairs": [[0, 1], [3, 8]]}]``.
    models : str, mapping or sequence of them
        Registered model names (or factories), or tables ``{"name": ..., **factory
        arguments}``.
    sizes : sequence of int
        Training-set sizes N (None: all training images).
    seeds : sequence of int
        Seed of each repetition: training subset, initialisation, data order, K_F's
        sample. The paper used 1337.
    training : mapping, optional
        ``preset`` (default: the paper's for the model) and Trainer overrides such as
        ``epochs``, ``batch_size`` (None: the whole training set in every step), ``lr``;
        ``threads`` sets torch's threads per cell.
    estimators : mapping or sequence, default=("mle", "twonn")
        d_data estimators, label -> spec or object (:mod:`~idprops.studies.specs`).
    sharpness : bool, mapping or LabelSharpness, default=True
        K_F of the training set; a mapping gives ``M`` (sample size, ``"all"`` for the
        whole set); False skips it.
    representation : mapping, optional
        ``layers`` (dotted names; or a mapping model name -> names, since
        architectures differ) and ``estimator`` (a name, a spec or an object, default
        ``"twonn"``, the paper's) for d_repr; None skips it.
    attacks : mapping or sequence, optional
        label -> spec or object; default
        :func:`~idprops.studies.specs.default_attacks` of each dataset's scale, the
        paper's FGSM (eps 2/255 on the unit scale, 2 with ``clip_max`` 255 on the
        paper's). An attack's ``clip_min`` and ``clip_max`` must cover the pixel range.
    device : str, default="auto"
        Torch device of each cell.

    Examples
    --------
    >>> study = ScalingLawStudy(datasets=[{"name": "digits", "pairs": [[0, 1], [3, 8]]}],
    ...                         sizes=[50, 100], seeds=[0, 1])
    >>> len(study.cells())
    8
    >>> cell = study.cells()[0]
    >>> cell["data"]["classes"], cell["data"]["n"], cell["training"]["optimizer"]
    ([0, 1], 50, 'adam')
    """

    kind = "scaling-law"
    rough_cell_seconds = 2.0  # the digits preset: up to 250 images a cell, 15 epochs

    def __init__(
        self,
        datasets: Any = ({"name": "digits", "pairs": [[0, 1], [3, 8]]},),
        models: Any = ("small_cnn",),
        sizes: Sequence[int | None] = (50, 100, 200),
        seeds: Sequence[int] = (0,),
        training: Mapping[str, Any] | None = None,
        estimators: Any = ("mle", "twonn"),
        sharpness: Any = True,
        representation: Mapping[str, Any] | None = None,
        attacks: Any = None,
        device: str = "auto",
    ) -> None:
        self.datasets = datasets
        self.models = models
        self.sizes = sizes
        self.seeds = seeds
        self.training = training
        self.estimators = estimators
        self.sharpness = sharpness
        self.representation = representation
        self.attacks = attacks
        self.device = device

    run_cell = staticmethod(train_and_measure)

    def fetch_data(self) -> None:
        """Download the datasets whose entries say ``download = true``
        (:func:`~idprops.studies.steps.download_data`)."""
        download_data(parse_datasets(self.datasets))

    # The grid's parts that a study built on this one (RobustnessStudy) sets otherwise.

    def _sizes(self) -> list[int | None]:
        return integers(self.sizes, "sizes", allow_none=True, minimum=1)

    def _sharpness(self) -> dict[str, Any] | None:
        return parse_sharpness(self.sharpness)

    def _attacks(self, scale: str) -> dict[str, Any]:
        return configs(resolve_attacks(self.attacks, scale))

    def _representation(self, model_name: str) -> dict[str, Any] | None:
        rep = Representation.parse(self.representation, model_name)
        return None if rep is None else rep.config()

    def check_data(self) -> None:
        """Read every dataset's test split and build every model on it, as the cells will,
        so that missing files (all of them, each with its folder) and misspelt
        representation layers are errors before the first cell rather than in it
        (:meth:`run` calls it when cells are missing)."""
        datasets = parse_datasets(self.datasets)
        check_datasets(datasets)
        for data in datasets:
            for model in parse_models(self.models):
                rep = self._representation(model.name)
                if rep is not None:
                    check_layers(data.config(), model.config(), rep["layers"], what="representation.layers")

    def cells(self) -> list[dict[str, Any]]:
        """One configuration per dataset x class selection x model x size x seed."""
        estimators = configs(parse_estimators(self.estimators))
        sharpness = self._sharpness()
        sizes = self._sizes()
        seeds = integers(self.seeds, "seeds", minimum=0)
        device = parse_device(self.device)
        out = []
        for data in parse_datasets(self.datasets):
            attacks = self._attacks(data.scale)
            for model in parse_models(self.models):
                training = resolve_training(model.name, self.training)
                representation = self._representation(model.name)
                for n in sizes:
                    for seed in seeds:
                        out.append(
                            self._cell(
                                data=data.config(n),
                                model=model.config(),
                                seed=seed,
                                training=training,
                                representation=representation,
                                attacks=attacks,
                                estimators=estimators,
                                sharpness=sharpness,
                                device=device,
                            )
                        )
        return out

    def _groups(self) -> dict[str, str]:
        """:attr:`DataSpec.key` of each dataset entry -> its ``group`` (domain) label."""
        return {d.key: d.group for d in parse_datasets(self.datasets)}

    def report(self, results: Sequence[Mapping[str, Any]], outdir) -> Path:
        """Write ``report.md`` (and ``.html``), ``results.csv`` and the figures of
        ``results`` (what :meth:`run` returned) into ``outdir``.

        Figures: ``scaling_law.png`` (test loss against N with the fitted power law
        per dataset and model), ``loss_vs_d_data.png`` and ``loss_vs_d_repr.png``
        (test loss against the dimension at each N), ``kf_vs_robustness.png``
        (K_F against robust accuracy at the largest N), ``d_repr_vs_d_data.png`` (first
        layer; ``d_repr_vs_d_data_<layer>.png`` for the others). The summary says in how
        many cells ``d_repr <= d_data`` held, per layer, with d_data by d_repr's estimator
        when it is among ``estimators`` (else the first).
        """
        outdir = Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        rows = results
        many_models = len({r["model.name"] for r in rows}) > 1
        fits: dict[str, str] = {}
        correlations: dict[str, Any] = {}
        summary: list[str] = []
        figures: list[Path] = []

        figures += _scaling_figure(rows, many_models, fits, outdir, summary)
        estimators = parse_steps(self.estimators, "estimators")
        dim_label = next(iter(estimators), None)
        rep = Representation.parse(self.representation)
        layers = list(dict.fromkeys(k[len("d_repr.") :] for r in rows for k in r if k.startswith("d_repr.")))
        layer = layers[0] if layers else None
        # d_repr is compared with d_data by the same estimator when d_data has one.
        same = [label for label, step in estimators.items() if rep and step == rep.estimator]
        bound_label = same[0] if same else dim_label
        # The paper compares the slope of log L against d between domains at fixed N.
        domains = self._groups()
        many_domains = len(set(domains.values())) > 1

        def line_of(r):
            domain = domains.get(DataSpec.from_record(r).key, r["data.name"])
            return (f"{domain}, " if many_domains else "") + f"N={r['data.n']}"

        if dim_label:
            figures += _loss_vs_dimension_figure(
                rows, f"d_data.{dim_label}", f"d_data ({dim_label})", line_of, fits, outdir / "loss_vs_d_data.png"
            )
        if layer:
            figures += _loss_vs_dimension_figure(
                rows, f"d_repr.{layer}", f"d_repr ({layer})", line_of, fits, outdir / "loss_vs_d_repr.png"
            )
        attack = next(iter(self._attacks("unit")), None)
        if attack and parse_sharpness(self.sharpness) is not None:
            figures += kf_robustness_figures(
                [r for r in rows if r["data.n"] == _largest_n(rows)],
                attack,
                many_models,
                correlations,
                outdir,
                prefix=f"at N = {_largest_n(rows)}, ",
                names=("kf_vs_robustness.png", None),
            )
        for i, name in enumerate(layers if bound_label else ()):
            path = path_inside(
                outdir, "d_repr_vs_d_data.png" if i == 0 else f"d_repr_vs_d_data_{safe_filename(name)}.png"
            )
            figures += _bound_check(rows, name, bound_label, correlations, summary, path)
        summary += contradictions(correlations, KF_CLAIMS)
        summary.append(run_summary(rows, getattr(results, "n_run", None)))
        return write_study_report(
            outdir,
            rows,
            title="Scaling-law study",
            table=cell_table(rows),
            fits=fits,
            correlations=correlations,
            figures=figures,
            summary=summary,
        )


def _largest_n(rows) -> Any:
    sizes = [r["data.n"] for r in rows]
    return None if None in sizes else max(sizes)


def _alpha_findings(unit: str, fit, d_data: Mapping[str, float]) -> list[str]:
    """Lines for each d_data estimate whose law, alpha = 1/d_data, the fit's 95 % interval
    of alpha excludes; how many times apart the two are says how far.

    Examples
    --------
    >>> from idprops.analysis import fit_scaling_law
    >>> N = np.array([50, 100, 200, 400, 800])
    >>> fit = fit_scaling_law(N, 2.0 * N**-0.5 * np.exp([0.01, -0.02, 0.0, 0.02, -0.01]))
    >>> print(_alpha_findings("digits 0v1", fit, {"mle": 20.0})[0])
    digits 0v1: alpha = 0.5 [0.473, 0.527], but 1/d_data (mle) = 0.05, 10.0 times smaller: the 95 % interval excludes it, so the data contradict the law L ∝ N^(-1/d_data) here.
    >>> _alpha_findings("digits 0v1", fit, {"mle": 2.0})
    []
    """
    lines = []
    lo, hi = fit.alpha_ci
    for label, d in d_data.items():
        if not (np.isfinite(d) and d > 0) or lo <= 1 / d <= hi:
            continue
        fold = max(fit.alpha * d, 1 / (fit.alpha * d)) if fit.alpha > 0 else math.inf
        lines.append(
            f"{unit}: alpha = {fit.alpha:.3g} [{lo:.3g}, {hi:.3g}], but 1/d_data ({label}) = {1 / d:.3g}, "
            f"{fold:.1f} times {'smaller' if 1 / d < fit.alpha else 'larger'}: the 95 % interval excludes it, so "
            "the data contradict the law L ∝ N^(-1/d_data) here."
        )
    return lines


def _scaling_figure(rows, many_models: bool, fits: dict, outdir: Path, summary: list) -> list[Path]:
    from ..analysis import fit_scaling_law
    from ..plotting import plot_scaling_law

    usable = [r for r in rows if r["data.n"] is not None and finite(r, "test_loss") and r["test_loss"] > 0]
    units = defaultdict(list)
    for r in usable:
        units[unit_label(r, many_models)].append(r)
    law_fits = {}
    for unit, rs in units.items():
        N = [r["n_train"] for r in rs]
        loss = [r["test_loss"] for r in rs]
        if len(set(N)) < 2 or len(N) < 3:
            continue
        fit = fit_scaling_law(N, loss)
        law_fits[unit] = fit
        dims = {
            k[len("d_data.") :]: np.nanmean([r.get(k, math.nan) for r in rs]) for k in rs[0] if k.startswith("d_data.")
        }
        summary += _alpha_findings(unit, fit, dims)
        measured = ", ".join(f"{k} {v:.2f}" for k, v in dims.items())
        fits[f"test loss vs N, {unit}"] = (
            f"{fit}; alpha = {fit.alpha:.3f} [{fit.alpha_ci[0]:.3f}, {fit.alpha_ci[1]:.3f}], "
            f"1/alpha = {fit.dimension:.3g}" + (f"; measured d_data: {measured}" if measured else "")
        )
    if not usable:
        return []
    fig, ax = new_axes()
    plot_scaling_law(
        [r["n_train"] for r in usable],
        [r["test_loss"] for r in usable],
        groups=[unit_label(r, many_models) for r in usable],
        fit=law_fits,
        ax=ax,
    )
    ax.set_xlabel("training-set size N")
    ax.set_ylabel("test loss")
    ax.set_title("test loss against training-set size")
    ax.legend(fontsize=7)
    return [save_figure(fig, outdir / "scaling_law.png")]


def _loss_vs_dimension_figure(rows, field: str, xlabel: str, line_of, fits: dict, path: Path) -> list[Path]:
    from ..analysis import fit_loss_vs_dimension
    from ..plotting import plot_scaling_law

    usable = [r for r in rows if finite(r, field, "test_loss") and r["test_loss"] > 0]
    if len(usable) < 3:
        return []
    groups = [line_of(r) for r in usable]
    d = [r[field] for r in usable]
    loss = [r["test_loss"] for r in usable]
    by_group = defaultdict(list)
    for g, x in zip(groups, d, strict=True):
        by_group[g].append(x)
    fit_groups = {g for g, xs in by_group.items() if len(xs) >= 3 and np.ptp(xs) > 0}
    line_fits = {}
    if fit_groups:
        sel = [i for i, g in enumerate(groups) if g in fit_groups]
        line_fits = fit_loss_vs_dimension([d[i] for i in sel], [loss[i] for i in sel], [groups[i] for i in sel])
        for g, f in line_fits.items():
            fits[f"log test loss vs {xlabel}, {g}"] = f"{f}".replace(" d ", f" {field} ", 1)
    fig, ax = new_axes()
    plot_scaling_law(d, loss, groups=groups, fit=line_fits, logx=False, ax=ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test loss")
    ax.set_title(f"test loss against {xlabel}")
    ax.legend(fontsize=7)
    return [save_figure(fig, path)]


def _bound_check(rows, layer: str, label: str, correlations: dict, summary: list, path: Path) -> list[Path]:
    """Does d_repr <= d_data hold (same estimator where possible)? Count, correlate, plot."""
    from ..analysis import correlation
    from ..plotting import plot_correlation

    xf, yf = f"d_data.{label}", f"d_repr.{layer}"
    usable = [r for r in rows if finite(r, xf, yf)]
    if not usable:
        return []
    held = sum(r[yf] <= r[xf] for r in usable)
    ratio = np.array([r[yf] / r[xf] for r in usable])
    summary.append(
        f"d_repr ({layer}) <= d_data ({label}) held in {held} of {len(usable)} cells "
        f"(d_repr / d_data: median {np.median(ratio):.2f}, "
        f"range {ratio.min():.2f}-{ratio.max():.2f})"
        + (
            "; d_repr > d_data in most cells: the data contradict the claim that d_repr is bounded by d_data"
            if 2 * held < len(usable)
            else ""
        )
    )
    x, y = [r[xf] for r in usable], [r[yf] for r in usable]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return []
    corr = correlation(x, y)
    correlations[f"d_repr ({layer}) vs d_data ({label}), all cells"] = corr
    fig, ax = new_axes()
    plot_correlation(x, y, corr, ax=ax)
    lo, hi = min(min(x), min(y)), max(max(x), max(y))
    ax.plot([lo, hi], [lo, hi], "k:", lw=1, label="d_repr = d_data")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel(f"d_data ({label})")
    ax.set_ylabel(f"d_repr ({layer})")
    return [save_figure(fig, path)]
