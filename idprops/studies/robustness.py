"""Robustness study: label sharpness K_F against adversarial robustness across datasets.

Konz & Mazurowski (ICLR 2024) find that datasets with sharper labels
(higher K_F, two close images with different labels) give models that are less
robust: their teaser relates the loss increase under FGSM (eps = 2/255) to K_F across
datasets (Pearson r ≈ 0.70), and their law reads ``log R >= -log K_F + log b``. This
study trains one model per dataset / class selection (x model x seed), measures K_F of
its training set and its robust accuracy and loss increase on the test set under each
attack, and correlates them across datasets with bootstrap confidence intervals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..filenames import safe_filename
from .reporting import KF_CLAIMS, cell_table, contradictions, kf_robustness_figures, run_summary, write_study_report
from .scaling import ScalingLawStudy
from .specs import (
    configs,
    integers,
    parse_sharpness,
    resolve_attacks,
)

__all__ = ["RobustnessStudy"]


class RobustnessStudy(ScalingLawStudy):
    """Train one model per dataset / class selection; correlate K_F with robustness.

    Its grid is a :class:`~idprops.studies.scaling.ScalingLawStudy`'s without d_repr,
    with K_F and at least one attack required; its report correlates instead of fitting.

    Each cell runs :func:`~idprops.studies.scaling.train_and_measure` (training set of
    each size, fixed test set, K_F of the training set, each attack on the test set).
    :meth:`report` averages each dataset's cells over seeds (and sizes), then gives
    the Pearson and Spearman correlation (bootstrap 95 % CI) of K_F with robust
    accuracy and with the loss increase, per attack, with their scatter plots.

    Parameters
    ----------
    datasets : str, DataSpec, mapping or sequence of them
        See :func:`~idprops.studies.specs.parse_datasets`; a correlation needs three or
        more, e.g. ``[{"name": "digits", "pairs": [[0, 1], [3, 8], [4, 9]]}]``.
    models : str, mapping or sequence of them
        Registered model names, or tables ``{"name": ..., **factory arguments}``.
    sizes : sequence of int, default=(None,)
        Training images per model; None: the whole training split.
    seeds : sequence of int
    training : mapping, optional
        As :class:`~idprops.studies.scaling.ScalingLawStudy`'s.
    estimators : mapping or sequence, default=()
        Optional d_data estimators, recorded beside K_F.
    sharpness : bool, mapping or LabelSharpness, default=True
        ``M`` (K_F's sample size, ``"all"`` for the whole training set); it cannot be off.
    attacks : mapping or sequence, optional
        label -> spec or object; default
        :func:`~idprops.studies.specs.default_attacks` of each dataset's scale, the
        paper's FGSM (eps 2/255 on the unit scale, 2 with ``clip_max`` 255 on the
        paper's). An attack's ``clip_min`` and ``clip_max`` must cover the pixel range.
    device : str, default="auto"

    Examples
    --------
    >>> study = RobustnessStudy(datasets=[{"name": "digits", "pairs": [[0, 1], [3, 8], [4, 9]]}])
    >>> [c["data"]["classes"] for c in study.cells()]
    [[0, 1], [3, 8], [4, 9]]
    """

    kind = "robustness"
    rough_cell_seconds = 3.0  # digits-robustness: ~270 training images a cell, 15 epochs

    def __init__(
        self,
        datasets: Any = ({"name": "digits", "pairs": [[0, 1], [3, 8], [4, 9]]},),
        models: Any = ("small_cnn",),
        sizes: Sequence[int | None] = (None,),
        seeds: Sequence[int] = (0,),
        training: Mapping[str, Any] | None = None,
        estimators: Any = (),
        sharpness: Any = True,
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
        self.attacks = attacks
        self.device = device

    def _sizes(self) -> list[int | None]:
        return integers(self.sizes, "sizes", allow_none=True, minimum=1)

    def _sharpness(self) -> dict[str, Any]:
        sharpness = parse_sharpness(self.sharpness)
        if sharpness is None:
            raise ValueError("a robustness study correlates K_F with robustness: sharpness cannot be off")
        return sharpness

    def _attacks(self, scale: str) -> dict[str, Any]:
        specs = resolve_attacks(self.attacks, scale)
        if not specs:
            raise ValueError("a robustness study needs at least one attack")
        return configs(specs)

    def _representation(self, model_name: str) -> None:
        return None

    def report(self, results: Sequence[Mapping[str, Any]], outdir) -> Path:
        """Write ``report.md`` (and ``.html``), ``results.csv`` and, per attack,
        ``kf_vs_robust_accuracy_<attack>.png`` and ``kf_vs_loss_increase_<attack>.png``
        (the attack's label made a file name by :func:`~idprops.filenames.safe_filename`)."""
        outdir = Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        many_models = len({r["model.name"] for r in results}) > 1
        correlations: dict[str, Any] = {}
        figures: list[Path] = []
        for attack in self._attacks("unit"):
            figures += kf_robustness_figures(
                results,
                attack,
                many_models,
                correlations,
                outdir,
                names=(
                    f"kf_vs_robust_accuracy_{safe_filename(attack)}.png",
                    f"kf_vs_loss_increase_{safe_filename(attack)}.png",
                ),
            )
        return write_study_report(
            outdir,
            results,
            title="Robustness study: label sharpness against robustness",
            table=cell_table(results),
            correlations=correlations,
            figures=figures,
            summary=[
                *contradictions(correlations, KF_CLAIMS),
                run_summary(results, getattr(results, "n_run", None)),
            ],
        )
