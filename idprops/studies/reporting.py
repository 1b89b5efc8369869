"""Report pieces shared by the studies: figure helpers, the robustness correlations, the writer.

:func:`write_study_report` writes what every study's report has (``report.md``, its
HTML page, ``results.csv`` and a summary); each study adds its own fits, correlations
and figures, drawn with the helpers here and :mod:`idprops.plotting`.
"""

from __future__ import annotations

import html
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
    "append_summary",
    "cell_table",
    "finite",
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
        keep.update({k: v for k, v in r.items() if not (k.startswith(_SETTING_PREFIXES) or k in _META)})
        table.append(keep)
    return table


def append_summary(path: Path, lines: Sequence[str]) -> None:
    """Add a "Summary" section to a report written by :func:`idprops.plotting.write_report`
    (Markdown, and its HTML page when there is one).

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "report.md"
    >>> _ = path.write_text("# A study\\n")
    >>> append_summary(path, ["4 cells"])
    >>> print(path.read_text())
    # A study
    <BLANKLINE>
    ## Summary
    <BLANKLINE>
    - 4 cells
    <BLANKLINE>
    """
    if not lines:
        return
    md = path.read_text(encoding="utf-8")
    path.write_text(
        md.rstrip("\n") + "\n\n## Summary\n\n" + "".join(f"- {ln}\n" for ln in lines),
        encoding="utf-8",
    )
    page = path.with_suffix(".html")
    if page.is_file():
        items = "".join(f"<li>{html.escape(ln)}</li>" for ln in lines)
        text = page.read_text(encoding="utf-8").replace("</body>", f"<h2>Summary</h2><ul>{items}</ul></body>", 1)
        page.write_text(text, encoding="utf-8")


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

    ``results`` are the study's records (written to the CSV as
    :meth:`Results.to_csv` writes them); ``table`` the report's table (the records by
    default), ``summary`` lines for its Summary section. Returns the Markdown file's path.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> path = write_study_report(out, [{"N": 50, "loss": 0.3}], title="Tiny", summary=["one cell"])
    >>> sorted(p.name for p in out.iterdir())
    ['report.html', 'report.md', 'results.csv']
    >>> (out / "results.csv").read_text().splitlines()
    ['N,loss', '50,0.3']
    """
    from ..plotting import write_report

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    Results(results).to_csv(outdir / "results.csv")
    path = write_report(
        outdir / "report.md",
        title=title,
        table=list(results) if table is None else table,
        fits=fits,
        correlations=correlations,
        figures=list(figures),
    )
    append_summary(path, summary)
    return path


# --------------------------------------------------------------------------- K_F and robustness


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
    >>> [p.name for p in paths], round(correlations["K_F vs robust_accuracy.fgsm (pearson)"].r, 3)
    (['kf_vs_robust_accuracy.png', 'kf_vs_loss_increase.png'], -1.0)
    """
    from ..analysis import correlation
    from ..plotting import plot_correlation

    figures = []
    for field, name in ((f"robust_accuracy.{attack}", names[0]), (f"loss_increase.{attack}", names[1])):
        labels, means = _unit_means(rows, ("K_F", field), many_models)
        x, y = means["K_F"], means[field]
        if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
            correlations[f"{prefix}K_F vs {field}"] = (
                f"not computed: {len(x)} dataset(s) with distinct values (needs 3 or more)"
            )
            continue
        for method in ("pearson", "spearman"):
            correlations[f"{prefix}K_F vs {field} ({method})"] = correlation(x, y, method=method)
        if name is None:
            continue
        fig, ax = new_axes()
        plot_correlation(x, y, correlations[f"{prefix}K_F vs {field} (pearson)"], labels=labels, ax=ax)
        ax.set_xlabel("label sharpness K_F (training set)")
        ax.set_ylabel(field.replace(".", " under "))
        figures.append(save_figure(fig, path_inside(outdir, name)))
    return figures
