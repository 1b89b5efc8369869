"""Robustness study: label sharpness K_F against adversarial robustness across datasets.

Konz & Mazurowski (ICLR 2024; SEEDS.md §1) find that datasets with sharper labels
(higher K_F, two close images with different labels) give models that are less
robust: their teaser relates the loss increase under FGSM (eps = 2/255) to K_F across
datasets (Pearson r ≈ 0.70), and their law reads ``log R >= -log K_F + log b``. This
study trains one model per dataset / class selection (x model x seed), measures K_F of
its training set and its robust accuracy and loss increase on the test set under each
attack, and correlates them across datasets with bootstrap confidence intervals.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sklearn.utils.validation import check_is_fitted

from .scaling import (
    _integers,
    _plain,
    _robustness_figures,
    _run_summary,
    _table,
    _write_csv,
    append_summary,
    cell_data,
    check_steps,
    download_datasets,
    normalize_datasets,
    normalize_model,
    normalize_sharpness,
    normalize_steps,
    resolve_attacks,
    resolve_training,
    train_and_measure,
)
from .study import Study

__all__ = ["RobustnessStudy"]


class RobustnessStudy(Study):
    """Train one model per dataset / class selection; correlate K_F with robustness.

    Each cell runs :func:`~idprops.studies.scaling.train_and_measure` (training set of
    ``size`` images, fixed test set, K_F of the training set, each attack on the test
    set). :meth:`report` averages each dataset's cells over seeds, then gives the
    Pearson and Spearman correlation (bootstrap 95 % CI) of K_F with robust accuracy
    and with the loss increase, per attack, with their scatter plots.

    Parameters
    ----------
    datasets : str or sequence of str or mapping
        See :func:`~idprops.studies.scaling.normalize_datasets`; a correlation needs
        three or more, e.g. ``[{"name": "digits", "pairs": [[0, 1], [3, 8], [4, 9]]}]``.
    models : sequence of str or mapping
        Registered model names, or tables ``{"name": ..., **factory arguments}``.
    size : int, optional
        Training images per model; None: the whole training split.
    seeds : sequence of int
    training : mapping, optional
        As :class:`~idprops.studies.scaling.ScalingLawStudy`'s.
    sharpness : bool or mapping, default=True
        ``M`` (K_F's sample size, ``"all"`` for the whole training set).
    attacks : mapping or sequence, optional
        label -> spec; default
        :func:`~idprops.studies.scaling.default_attacks` of each dataset's scale, the
        paper's FGSM (eps 2/255 on the unit scale, 2 with ``clip_max`` 255 on the
        paper's). An attack's ``clip_min`` and ``clip_max`` must cover the pixel range.
    estimators : mapping or sequence, default=()
        Optional d_data estimators, recorded beside K_F.
    device : str, default="auto"
    store, n_jobs, progress, study_file
        See :class:`~idprops.studies.study.Study`.

    Examples
    --------
    >>> study = RobustnessStudy(datasets=[{"name": "digits", "pairs": [[0, 1], [3, 8], [4, 9]]}])
    >>> [c["data"]["classes"] for c in study.cells()]
    [[0, 1], [3, 8], [4, 9]]
    """

    kind = "robustness"

    def __init__(
        self,
        datasets: Any = ({"name": "digits", "pairs": [[0, 1], [3, 8], [4, 9]]},),
        models: Sequence[Any] = ("small_cnn",),
        size: int | None = None,
        seeds: Sequence[int] = (0,),
        training: Mapping[str, Any] | None = None,
        sharpness: bool | Mapping[str, Any] = True,
        attacks: Any = None,
        estimators: Any = (),
        device: str = "auto",
        *,
        store: str | os.PathLike | None = None,
        n_jobs: int = 1,
        progress: bool | None = None,
        study_file: str | None = None,
    ) -> None:
        self.datasets = datasets
        self.models = models
        self.size = size
        self.seeds = seeds
        self.training = training
        self.sharpness = sharpness
        self.attacks = attacks
        self.estimators = estimators
        self.device = device
        super().__init__(store=store, n_jobs=n_jobs, progress=progress, study_file=study_file)

    run_cell = staticmethod(train_and_measure)

    def _sharpness_spec(self) -> dict[str, Any]:
        spec = normalize_sharpness(self.sharpness)
        if spec is None:
            raise ValueError("a robustness study correlates K_F with robustness: sharpness cannot be off")
        return spec

    def _attack_specs(self, scale: str = "unit") -> dict[str, dict[str, Any]]:
        specs = resolve_attacks(self.attacks, scale)
        if not specs:
            raise ValueError("a robustness study needs at least one attack")
        return specs

    def cells(self) -> list[dict[str, Any]]:
        """One configuration per dataset x class selection x model x seed."""
        if self.size is not None and (isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1):
            raise ValueError(f"size must be a positive int or None (all training images), got {self.size!r}")
        seeds = _integers(self.seeds, "seeds")
        models = [self.models] if isinstance(self.models, (str, Mapping)) else list(self.models)
        if not models:
            raise ValueError("no models given")
        common = {
            "estimators": normalize_steps(self.estimators, "estimators"),
            "sharpness": self._sharpness_spec(),
            "representation": None,
            "device": self.device,
        }
        check_steps(common["estimators"])
        out = []
        for data in map(cell_data, normalize_datasets(self.datasets)):
            attacks = self._attack_specs(data["scale"])
            for model in map(normalize_model, models):
                training = resolve_training(model["name"], self.training)
                for seed in seeds:
                    out.append(
                        _plain(
                            self._cell(
                                data={**data, "n": self.size},
                                model=model,
                                seed=seed,
                                training=training,
                                attacks=attacks,
                                **common,
                            )
                        )
                    )
        return out

    def fetch_data(self) -> None:
        """Download the datasets whose entries say ``download = true`` (see
        :func:`~idprops.studies.scaling.download_datasets`); :meth:`fit` calls it
        before the first cell."""
        download_datasets(self.datasets)

    def report(self, outdir: str | os.PathLike) -> Path:
        """Write ``report.md`` (and ``.html``), ``results.csv`` and, per attack,
        ``kf_vs_robust_accuracy_<attack>.png`` and ``kf_vs_loss_increase_<attack>.png``."""
        from ..plotting import write_report

        check_is_fitted(self, "results_")
        outdir = Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        rows = self.results_
        many_models = len({r["model.name"] for r in rows}) > 1
        correlations: dict[str, Any] = {}
        figures: list[Path] = []
        for attack in self._attack_specs():
            figures += _robustness_figures(
                rows,
                attack,
                many_models,
                correlations,
                outdir,
                names=(f"kf_vs_robust_accuracy_{attack}.png", f"kf_vs_loss_increase_{attack}.png"),
            )
        _write_csv(rows, outdir / "results.csv")
        path = write_report(
            outdir / "report.md",
            title="Robustness study: label sharpness against robustness",
            table=_table(rows),
            correlations=correlations,
            figures=figures,
        )
        append_summary(path, [_run_summary(rows, self.n_cells_run_)])
        return path
