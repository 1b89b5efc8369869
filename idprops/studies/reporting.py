"""Report pieces shared by the studies: figure helpers, the robustness correlations, the writer.

:func:`write_study_report` writes what every study's report has (``report.md``, its
HTML page, ``results.csv`` and a summary); each study adds its own fits, correlations
and figures, drawn with the helpers here and :mod:`idprops.plotting`.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..filenames import path_inside
from .results import Results
from .specs import DataSpec, selection_label

__all__ = [
    "cell_table",
    "contradictions",
    "finite",
    "KF_CLAIMS",
    "kf_label",
    "kf_robustness_figures",
    "new_axes",
    "run_summary",
    "save_figure",
    "unit_label",
    "write_study_report",
]

# Record fields that describe a cell's settings or provenance, left out of cell_table.
_SETTING_PREFIXES = (
    "data.",
    "model.",
    "training.",
    "estimators.",
    "attacks.",
    "sharpness",
    "representation",
    "device",
    "d_data_std.",
)
_META = ("key", "study", "created", "code_version", "pipeline", "warnings", "study_file", "pixel_scale", "seed")


def finite(row: Mapping[str, Any], *fields: str) -> bool:
    """Whether every one of ``fields`` of ``row`` is a finite number.

    Examples
    --------
    >>> finite({"a": 1.0, "b": float("nan")}, "a"), finite({"a": 1.0, "b": float("nan")}, "a", "b")
    (True, False)
    """
    for f in fields:
        v = row.get(f)
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
    return True


def unit_label(row: Mapping[str, Any], with_model: bool = False) -> str:
    """``"digits 3v8"`` (and ``" small_cnn"`` when models differ) for a record.

    Examples
    --------
    >>> unit_label({"data.name": "digits", "data.classes": [3, 8], "model.name": "small_cnn"}, True)
    'digits 3v8 small_cnn'
    """
    label = DataSpec.from_record(row).label
    return f"{label} {row['model.name']}" if with_model else label


def new_axes():
    """A new figure of the reports' size with one Axes, drawn without a display.

    Examples
    --------
    >>> fig, ax = new_axes()
    >>> fig.get_size_inches().tolist()
    [6.4, 4.8]
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6.4, 4.8))


def save_figure(fig, path: Path) -> Path:
    """Save ``fig`` to ``path`` (:func:`idprops.plotting.save_figure`), close it, return the path.

    Examples
    --------
    >>> import os, tempfile
    >>> fig, ax = new_axes()
    >>> path = save_figure(fig, Path(tempfile.mkdtemp()) / "empty.png")
    >>> path.read_bytes()[:4]
    b'\\x89PNG'
    """
    import matplotlib.pyplot as plt

    from ..plotting import save_figure as save

    save(fig, path)
    plt.close(fig)
    return path


def run_summary(rows: Sequence[Mapping[str, Any]], n_run: int | None) -> str:
    """One line: how many cells, how many the last run computed, their time, the study files.

    Examples
    --------
    >>> run_summary([{"seconds": 1.5, "study_file": "a.toml"}], 1)
    '1 cells (1 run by the last run), 1.5 s of cell time; study file(s): a.toml'
    """
    seconds = sum(r.get("seconds") or 0.0 for r in rows)
    files = sorted({str(r.get("study_file")) for r in rows})
    return (
        f"{len(rows)} cells ({n_run} run by the last run), {seconds:.1f} s of cell time; "
        f"study file(s): {', '.join(files)}"
    )


def cell_table(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The report's table of train-and-measure cells: what tells them apart, then what they measured.

    Examples
    --------
    >>> row = {"key": "ab", "data.name": "digits", "data.classes": [3, 8], "data.n": 50,
    ...        "model.name": "small_cnn", "seed": 0, "training.epochs": 5, "test_loss": 0.2}
    >>> cell_table([row])
    [{'dataset': 'digits', 'classes': '3v8', 'model': 'small_cnn', 'N': 50, 'seed': 0, 'test_loss': 0.2}]
    """
    table = []
    for r in rows:
        keep = {
            "dataset": r["data.name"],
            "classes": selection_label(r["data.classes"]),
            "model": r["model.name"],
            "N": r["data.n"],
            "seed": r["seed"],
        }
        for k, v in r.items():
            if not (k.startswith(_SETTING_PREFIXES) or k in _META):
                keep[kf_label([r]) if k == "K_F" else k] = v
        table.append(keep)
    return table


def kf_label(rows: Sequence[Mapping[str, Any]]) -> str:
    """``K_F`` named with its pixel scale, ``"K_F (unit [0, 1])"``: K_F scales as one over
    the pixel range, so a value means nothing without it (several scales are all named).

    Examples
    --------
    >>> kf_label([{"pixel_scale": "unit [0, 1]"}, {"pixel_scale": "unit [0, 1]"}])
    'K_F (unit [0, 1])'
    """
    scales = sorted({str(r.get("pixel_scale", "as given")) for r in rows})
    return f"K_F ({'; '.join(scales)})" if scales else "K_F"


def contradictions(correlations: Mapping[str, Any], claims: Sequence[tuple[str, int, str]]) -> list[str]:
    """Plain-language lines for the correlations whose sign goes against a claim they test.

    Parameters
    ----------
    correlations : mapping of name to :class:`~idprops.analysis.Correlation`
        Other values (a "not computed" note) are skipped.
    claims : sequence of (text, sign, claim)
        Every correlation whose name contains ``text`` is expected to have the sign
        ``sign`` (+1 or -1); ``claim`` says the claim in words.

    Returns
    -------
    list of str
        "contradict" when the 95 % interval lies on the other side of zero, "do not
        support" when the estimate has the other sign but the interval reaches zero.

    Examples
    --------
    >>> from idprops.analysis import correlation
    >>> corr = {"accuracy vs log(PID / LLID) (pearson)": correlation([1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2, 1])}
    >>> contradictions(corr, [("log(PID / LLID)", +1, "validation accuracy rises with log(PID / LLID)")])[0][:60]
    'accuracy vs log(PID / LLID) (pearson): r = -1.00 [95 % CI -1'
    """
    from ..analysis import Correlation

    lines = []
    for name, corr in correlations.items():
        for text, sign, claim in claims:
            if text not in name or not isinstance(corr, Correlation) or not np.isfinite(corr.r):
                continue
            if corr.r == 0 or np.sign(corr.r) == sign:
                continue
            lo, hi = corr.ci
            certain = bool(np.isfinite(lo) and (hi < 0 if sign > 0 else lo > 0))
            interval = f"95 % CI {lo:.2f}, {hi:.2f}" if np.isfinite(lo) else "no CI"
            verdict = "the data contradict" if certain else "the sign goes against, without significance,"
            lines.append(
                f"{name}: r = {corr.r:.2f} [{interval}], p = {corr.p_value:.2g}; {verdict} the claim that {claim}."
            )
    return lines


def write_study_report(
    outdir: str | os.PathLike,
    results: Sequence[Mapping[str, Any]],
    *,
    title: str,
    table: Sequence[Mapping[str, Any]] | None = None,
    fits: Mapping[str, Any] = (),
    correlations: Mapping[str, Any] = (),
    figures: Sequence[Path] = (),
    summary: Sequence[str] = (),
) -> Path:
    """Write ``report.md`` (and its HTML page) and ``results.csv`` into ``outdir``.

    The report leads with the findings: ``summary`` (plain-language lines: what held,
    where the data contradict a claim, the run's size), then each fit and each
    correlation with its interval; then the figures, then ``table`` (the records by
    default) and a link to ``results.csv`` (written as :meth:`Results.to_csv` writes
    them). Returns the Markdown file's path.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> path = write_study_report(out, [{"N": 50, "loss": 0.3}], title="Tiny", summary=["one cell"])
    >>> sorted(p.name for p in out.iterdir())
    ['report.html', 'report.md', 'results.csv']
    >>> path.read_text().splitlines()[:5]
    ['# Tiny', '', '## Findings', '', '- one cell']
    >>> (out / "results.csv").read_text().splitlines()
    ['N,loss', '50,0.3']
    """
    from ..plotting import write_report

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    Results(results).to_csv(outdir / "results.csv")
    return write_report(
        outdir / "report.md",
        title=title,
        findings=summary,
        fits=fits,
        correlations=correlations,
        figures=list(figures),
        table=list(results) if table is None else table,
        csv=outdir / "results.csv",
    )


# --------------------------------------------------------------------------- K_F and robustness

#: The robustness claims of Konz & Mazurowski (2024) that the correlations test.
KF_CLAIMS = (
    ("vs robust_accuracy", -1, "robust accuracy falls as label sharpness K_F rises"),
    ("vs loss_increase", +1, "the loss increase under attack grows with label sharpness K_F"),
)


def _unit_means(rows, fields: Sequence[str], many_models: bool) -> tuple[list[str], dict[str, list[float]]]:
    """Each field's mean over the seeds of each dataset (x model), to correlate across datasets."""
    units = defaultdict(list)
    for r in rows:
        if finite(r, *fields):
            units[unit_label(r, many_models)].append(r)
    labels = list(units)
    return labels, {f: [float(np.mean([r[f] for r in units[u]])) for u in labels] for f in fields}


def kf_robustness_figures(
    rows: Sequence[Mapping[str, Any]],
    attack: str,
    many_models: bool,
    correlations: dict,
    outdir: Path,
    *,
    prefix: str = "",
    names: tuple[str | None, str | None] = ("kf_vs_robust_accuracy.png", "kf_vs_loss_increase.png"),
) -> list[Path]:
    """K_F against robust accuracy and loss increase under ``attack`` across datasets.

    Adds the Pearson and Spearman correlations (over the datasets' means across seeds)
    to ``correlations``, and draws a scatter plot for each name of ``names`` that is
    not None. Returns the figures' paths.

    Examples
    --------
    Three datasets whose robust accuracy falls as K_F rises:

    >>> import tempfile
    >>> rows = [{"data.name": "digits", "data.classes": [0, c], "model.name": "small_cnn", "K_F": k,
    ...          "robust_accuracy.fgsm": 1 - k, "loss_increase.fgsm": k}
    ...         for c, k in ((1, 0.1), (2, 0.2), (3, 0.4))]
    >>> correlations = {}
    >>> paths = kf_robustness_figures(rows, "fgsm", False, correlations, Path(tempfile.mkdtemp()))
    >>> [p.name for p in paths], round(correlations["K_F (as given) vs robust_accuracy.fgsm (pearson)"].r, 3)
    (['kf_vs_robust_accuracy.png', 'kf_vs_loss_increase.png'], -1.0)
    """
    from ..analysis import correlation
    from ..plotting import plot_correlation

    figures = []
    kf = kf_label(rows)
    for field, name in ((f"robust_accuracy.{attack}", names[0]), (f"loss_increase.{attack}", names[1])):
        labels, means = _unit_means(rows, ("K_F", field), many_models)
        x, y = means["K_F"], means[field]
        if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
            correlations[f"{prefix}{kf} vs {field}"] = (
                f"not computed: {len(x)} dataset(s) with distinct values (needs 3 or more)"
            )
            continue
        for method in ("pearson", "spearman"):
            correlations[f"{prefix}{kf} vs {field} ({method})"] = correlation(x, y, method=method)
        if name is None:
            continue
        fig, ax = new_axes()
        plot_correlation(x, y, correlations[f"{prefix}{kf} vs {field} (pearson)"], labels=labels, ax=ax)
        ax.set_xlabel(f"label sharpness {kf}, training set")
        ax.set_ylabel(field.replace(".", " under "))
        figures.append(save_figure(fig, path_inside(outdir, name)))
    return figures
