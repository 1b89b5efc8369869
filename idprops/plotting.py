"""Figures of a study, and a Markdown/HTML report that gathers them (needs matplotlib).

matplotlib is imported inside the functions, so ``import idprops`` never needs it. Every
plotting function draws on ``ax`` (a new figure when None) and returns that Axes;
nothing calls ``plt.show()``. Data come either as arrays or, where noted, as field names
of ``data``: a list of records (``ResultsStore.records()``) or a pandas DataFrame.
"""

from __future__ import annotations

import html as _html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .analysis import Correlation, LinearFit, correlation
from .scales import scale_profile

__all__ = [
    "ScaleProfileDisplay",
    "plot_correlation",
    "plot_id_curves",
    "plot_id_profile",
    "plot_scaling_law",
    "plot_training_curves",
    "save_figure",
    "write_report",
]


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots()[1]


def _field(name: Any, data: Any, what: str) -> list:
    """The field ``name`` of every record of ``data`` (records or a DataFrame)."""
    if hasattr(data, "columns"):  # a DataFrame
        return list(data[name])
    try:
        return [rec[name] for rec in data]
    except KeyError:
        raise ValueError(f"{what}={name!r} is not a field of every record in data") from None


def _values(v: Any, data: Any, what: str) -> np.ndarray:
    """``v`` itself, or the field ``v`` of every record of ``data``."""
    return np.asarray(v if data is None else _field(v, data, what))


def _hashable(value: Any) -> Any:
    """A group label usable as a key: lists and arrays as tuples, numpy scalars as Python's."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(_hashable(item) for item in value)
    return value


def _group_name(group: Any) -> str:
    # A list-valued field (data.classes) reads in the legend as it was stored.
    if isinstance(group, tuple):
        return "[" + ", ".join(_group_name(item) for item in group) + "]"
    return str(group)


def plot_scaling_law(
    x: Any,
    y: Any,
    *,
    data: Any = None,
    groups: Any = None,
    fit: LinearFit | Mapping[Any, LinearFit] | None = None,
    logx: bool = True,
    ax=None,
):
    """Test loss (log scale) against training-set size or intrinsic dimension.

    Parameters
    ----------
    x, y : array-like or str
        The abscissa (N, or d_data) and the test loss; field names when ``data`` is given.
    data : list of mappings or DataFrame, optional
    groups : array-like or str, optional
        A label per point (domain, model), or with ``data`` a field name or such labels:
        one colour and legend entry per group. List values (``"data.classes"``) group as
        tuples, so a ``fit`` mapping names them by tuple, e.g. ``(3, 5)``.
    fit : LinearFit or mapping of group to LinearFit, optional
        Drawn as dashed lines over the data's range (a mapping: each over its group's),
        in the fit's coordinates: ``log y`` against ``log x`` when ``logx``
        (:func:`~idprops.analysis.fit_scaling_law`), against ``x`` otherwise
        (:func:`~idprops.analysis.fit_loss_vs_dimension`).
    logx : bool, default=True
        Log scale on x: True for N, False for d_data.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        One marker line per group, then one line per fit.

    Examples
    --------
    >>> from idprops.analysis import fit_scaling_law
    >>> N = np.array([500, 1000, 1500])
    >>> ax = plot_scaling_law(N, 2 * N ** -0.2, fit=fit_scaling_law(N, 2 * N ** -0.2))
    >>> len(ax.lines), ax.get_yscale()
    (2, 'log')
    """
    xs = _values(x, data, "x").astype(np.float64)
    ys = _values(y, data, "y").astype(np.float64)
    if groups is None:
        keys = [None] * xs.size
    else:
        # A field name of data, or one label per point (beside data= too).
        is_labels = data is None or (hasattr(groups, "__len__") and not isinstance(groups, str))
        keys = [_hashable(g) for g in (groups if is_labels else _field(groups, data, "groups"))]
        if len(keys) != xs.size:
            raise ValueError(f"{len(keys)} group labels for {xs.size} points; give one label per point.")

    def members(group: Any) -> np.ndarray:
        return np.fromiter((key == group for key in keys), dtype=bool, count=len(keys))

    ax = _axes(ax)
    colors = {}
    for g in dict.fromkeys(keys):
        mask = members(g)
        (line,) = ax.plot(xs[mask], ys[mask], "o", label=None if g is None else _group_name(g))
        colors[g] = line.get_color()
    fits = {None: fit} if isinstance(fit, LinearFit) else dict(fit or {})
    for g, f in fits.items():
        sel = xs if g is None else xs[members(g)]
        if sel.size == 0:
            raise ValueError(f"fit for group {g!r} has no points of that group to span")
        grid = (np.geomspace if logx else np.linspace)(sel.min(), sel.max(), 50)
        pred = np.exp(f.predict(np.log(grid) if logx else grid))
        name = "fit" if g is None else f"{_group_name(g)} fit"
        ax.plot(grid, pred, "--", color=colors.get(g, "k"), label=f"{name}: slope {f.slope:.3g}")
    if logx:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(x if isinstance(x, str) else ("N" if logx else "intrinsic dimension"))
    ax.set_ylabel(y if isinstance(y, str) else "test loss")
    if groups is not None or fits:
        ax.legend()
    return ax


def plot_correlation(
    x: Any,
    y: Any,
    corr: Correlation | None = None,
    *,
    labels: Sequence[str] | None = None,
    data: Any = None,
    method: str = "pearson",
    ax=None,
):
    """Scatter of two paired quantities, annotated with their correlation and its CI.

    Parameters
    ----------
    x, y : array-like or str
        E.g. K_F and robust accuracy per dataset; field names when ``data`` is given.
    corr : Correlation, optional
        Computed with :func:`~idprops.analysis.correlation` (``method``) when None.
    labels : sequence of str, optional
        A name written beside each point (the dataset's, say).
    data : list of mappings or DataFrame, optional
    method : {"pearson", "spearman"}, default="pearson"
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> ax = plot_correlation([1, 2, 3, 4], [2.0, 3.9, 6.1, 8.0], labels=list("abcd"))
    >>> ax.collections[0].get_offsets().shape, len(ax.texts)
    ((4, 2), 5)
    """
    xs = _values(x, data, "x").astype(np.float64)
    ys = _values(y, data, "y").astype(np.float64)
    if corr is None:
        corr = correlation(xs, ys, method=method)
    ax = _axes(ax)
    ax.scatter(xs, ys)
    if labels is not None:
        if len(labels) != xs.size:
            raise ValueError(f"{len(labels)} labels for {xs.size} points")
        for xi, yi, name in zip(xs, ys, labels):
            ax.annotate(str(name), (xi, yi), xytext=(3, 3), textcoords="offset points", fontsize=8)
    ax.text(0.02, 0.98, str(corr), transform=ax.transAxes, va="top", fontsize=9)
    ax.set_xlabel(x if isinstance(x, str) else "x")
    ax.set_ylabel(y if isinstance(y, str) else "y")
    return ax


def plot_id_profile(
    layer_ids: Mapping[str, float] | Sequence[float],
    *,
    last_hidden: str | int | None = None,
    label: str | None = None,
    ax=None,
):
    """Intrinsic dimension against layer depth, with LLID and PID marked.

    Parameters
    ----------
    layer_ids : mapping of str to float, or sequence of float
        ID per layer, input side first (as :func:`~idprops.nn.callbacks.llid_pid` takes it).
    last_hidden : str or int, optional
        The LLID layer (default: the last).
    label : str, optional
        Legend entry of the profile (a run's name).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        Lines: the profile, the LLID marker, the PID marker. A NaN (failed) estimate is a
        gap in the profile and gets no marker; when every layer's is NaN, a note in the
        panel says so.

    Examples
    --------
    >>> ax = plot_id_profile({"conv1": 20.0, "conv2_x": 35.0, "avgpool": 7.0})
    >>> len(ax.lines), [t.get_text() for t in ax.get_xticklabels()]
    (3, ['conv1', 'conv2_x', 'avgpool'])
    """
    from .nn.callbacks import layer_position, llid_pid

    llid, pid, _ = llid_pid(layer_ids, last_hidden)  # validates
    names = list(layer_ids) if isinstance(layer_ids, Mapping) else None
    values = np.asarray(list(layer_ids.values()) if names else layer_ids, dtype=np.float64)
    xs = np.arange(values.size)
    ax = _axes(ax)
    ax.plot(xs, values, "o-", label=label)
    if not math.isnan(llid):
        pos = layer_position(names, values.size, last_hidden)
        ax.plot([xs[pos]], [llid], "s", ms=9, mfc="none", label=f"LLID = {llid:.3g}")
    if math.isnan(pid):  # PID is NaN only when every layer's estimate is
        note = "no layer has a finite ID estimate"
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center")
    else:
        peak = int(np.nanargmax(values))
        ax.plot([xs[peak]], [pid], "*", ms=12, label=f"PID = {pid:.3g}")
    ax.set_xticks(xs, names if names else [str(i) for i in xs])
    ax.set_xlabel("layer")
    ax.set_ylabel("intrinsic dimension")
    if ax.get_legend_handles_labels()[0]:  # nothing labelled when all is NaN and unnamed
        ax.legend()
    return ax


def _layer_order(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every layer named in ``rows``, input side first.

    A layer first seen in a later record goes right after its predecessor in that
    record, not at the end, so that the last layer stays last (the default LLID).
    """
    order: list[str] = []
    for row in rows:
        at = 0
        for name in row:
            if name in order:
                at = order.index(name) + 1
            else:
                order.insert(at, name)
                at += 1
    return order


def plot_id_curves(
    history: Sequence[Mapping[str, Any]],
    *,
    x: str = "epoch",
    ids_key: str = "ids",
    last_hidden: str | int | None = None,
    ax=None,
):
    """Each layer's intrinsic dimension through training, with LLID and PID drawn bold.

    Parameters
    ----------
    history : sequence of mappings
        One record per evaluation, e.g. ``{"epoch": 3, "ids": {"conv1": 24.1, ...}}``:
        the training step under ``x`` and the layer IDs (input side first) under
        ``ids_key``. A layer missing from a record, or NaN there, is a gap in its
        curve (and in LLID's, if it is the LLID layer).
    x : str, default="epoch"
    ids_key : str, default="ids"
    last_hidden : str or int, optional
        The LLID layer, a name or a position among all the records' layers (default:
        the last). The same layer in every record.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        One line per layer, then LLID, then PID.

    Examples
    --------
    >>> hist = [{"epoch": e, "ids": {"a": 10.0 + e, "b": 20.0 - e, "c": 5.0}} for e in range(3)]
    >>> ax = plot_id_curves(hist)
    >>> [l.get_label() for l in ax.lines]
    ['a', 'b', 'c', 'LLID', 'PID']
    """
    if not history:
        raise ValueError("history is empty: give at least one record")
    try:
        steps = np.asarray([rec[x] for rec in history], dtype=np.float64)
        rows = [rec[ids_key] for rec in history]
    except KeyError as exc:
        raise ValueError(f"every history record needs {x!r} and {ids_key!r}; missing {exc}") from None
    from .nn.callbacks import llid_pid

    layers = _layer_order(rows)
    # every record over all the layers, so that last_hidden names one layer throughout
    rows = [{name: row.get(name, math.nan) for name in layers} for row in rows]
    summaries = [llid_pid(row, last_hidden) for row in rows]
    ax = _axes(ax)
    for name in layers:
        ax.plot(steps, [row[name] for row in rows], lw=1, alpha=0.7, label=name)
    ax.plot(steps, [s.llid for s in summaries], "k-", lw=2.5, label="LLID")
    ax.plot(steps, [s.pid for s in summaries], "k--", lw=2.5, label="PID")
    ax.set_xlabel(x)
    ax.set_ylabel("intrinsic dimension")
    ax.legend(fontsize=8)
    return ax


def plot_training_curves(
    histories: Mapping[str, Sequence[Mapping[str, Any]]],
    key: str = "train_loss",
    *,
    x: str = "epoch",
    logy: bool = False,
    ax=None,
):
    """One curve of ``key`` per run (e.g. per label corruption), against ``x``.

    Parameters
    ----------
    histories : mapping of str to sequence of mappings
        Run name to its per-epoch records.
    key : str, default="train_loss"
    x : str, default="epoch"
        Taken from the records when every one has it, else their position.
    logy : bool, default=False
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> runs = {"p=0": [{"epoch": 0, "train_loss": 2.3}, {"epoch": 1, "train_loss": 1.1}],
    ...         "p=1": [{"epoch": 0, "train_loss": 2.3}, {"epoch": 1, "train_loss": 2.2}]}
    >>> [l.get_label() for l in plot_training_curves(runs).lines]
    ['p=0', 'p=1']
    """
    ax = _axes(ax)
    for name, records in histories.items():
        if not any(key in rec for rec in records):
            seen = sorted({k for rec in records for k in rec})
            raise ValueError(f"run {name!r} has no {key!r} in any record; it has {seen}")
        has_x = all(x in rec for rec in records)
        xs = [rec[x] for rec in records] if has_x else list(range(len(records)))
        ax.plot(xs, [rec.get(key, math.nan) for rec in records], label=str(name))
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(key)
    ax.legend()
    return ax


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 150) -> Path:
    """Save a Figure (or the Figure of an Axes) to ``path``, its folder created.

    The format follows the suffix (.png, .pdf, .svg). Returns the path.

    Examples
    --------
    >>> import os, tempfile
    >>> ax = plot_id_profile([12.0, 20.0, 6.0])
    >>> path = save_figure(ax, os.path.join(tempfile.mkdtemp(), "figures", "profile.png"))
    >>> path.name, path.stat().st_size > 0
    ('profile.png', True)
    """
    fig = getattr(fig, "figure", fig)  # an Axes knows its Figure
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("\n", " ")


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _named(items: Mapping[str, Any] | Sequence[Any]) -> list[tuple[str | None, str]]:
    pairs = items.items() if isinstance(items, Mapping) else ((None, it) for it in items)
    return [(None if name is None else str(name), str(obj)) for name, obj in pairs]


def write_report(
    path: str | os.PathLike,
    *,
    title: str,
    findings: Sequence[str] = (),
    fits: Mapping[str, Any] | Sequence[Any] = (),
    correlations: Mapping[str, Any] | Sequence[Any] = (),
    figures: Sequence[str | os.PathLike] = (),
    table: Sequence[Mapping[str, Any]] = (),
    csv: str | os.PathLike | None = None,
    html: bool = True,
) -> Path:
    """Write a Markdown report of a study that leads with what was found.

    In order: the findings (plain-language lines, then each fit and each correlation
    with its interval), the figures, then the table of records and a link to the CSV
    holding every field.

    Parameters
    ----------
    path : str or path-like
        The Markdown file (its folder is created).
    title : str
    findings : sequence of str
        Plain-language lines, e.g. where the data contradict a claim they test.
    fits, correlations : mapping of name to object, or sequence of objects
        Written as their ``str`` (:class:`~idprops.analysis.LinearFit` with its 95 %
        interval, :class:`~idprops.analysis.Correlation` with its interval and p),
        after their name when given one.
    figures : sequence of paths
        Existing image files, linked by their path relative to the report.
    table : sequence of mappings
        One row per record (e.g. ``ResultsStore.records()``); columns in order of first
        appearance, floats to 4 significant digits.
    csv : str or path-like, default=None
        A CSV file of every record, linked below the table.
    html : bool, default=True
        Also write a standalone HTML page beside it (same name, ``.html``).

    Returns
    -------
    pathlib.Path
        The Markdown file.

    Examples
    --------
    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "report.md")
    >>> p = write_report(out, title="Scaling", findings=["loss falls with N"], table=[{"N": 500, "loss": 0.25}])
    >>> print(p.read_text())
    # Scaling
    <BLANKLINE>
    ## Findings
    <BLANKLINE>
    - loss falls with N
    <BLANKLINE>
    ## Table
    <BLANKLINE>
    | N | loss |
    |---|---|
    | 500 | 0.25 |
    <BLANKLINE>
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def relative(file: str | os.PathLike) -> str:
        return Path(os.path.relpath(Path(file).resolve(), path.parent.resolve())).as_posix()

    links = []
    for fig in figures:
        if not Path(fig).is_file():
            raise FileNotFoundError(f"figure {str(fig)!r} does not exist: save it before the report")
        links.append(relative(fig))
    columns = list(dict.fromkeys(name for row in table for name in row))
    rows = [[_cell(row.get(c)) for c in columns] for row in table]
    lines, stated = [str(line) for line in findings], _named(fits) + _named(correlations)
    csv_link = None if csv is None else relative(csv)

    md = [f"# {title}", ""]
    if lines or stated:
        md += ["## Findings", ""] + [f"- {line}" for line in lines]
        md += [f"- {f'**{n}**: ' if n else ''}`{text}`" for n, text in stated] + [""]
    if links:
        md += ["## Figures", ""] + [f"![{Path(ln).stem}]({ln})" for ln in links] + [""]
    if columns or csv_link:
        md += ["## Table", ""]
    if columns:
        md += ["| " + " | ".join(_md(c) for c in columns) + " |"]
        md += ["|" + "---|" * len(columns)]
        md += ["| " + " | ".join(_md(v) for v in r) + " |" for r in rows]
        md += [""]
    if csv_link:
        md += [f"Every record with all its fields: [{Path(csv_link).name}]({csv_link})", ""]
    path.write_text("\n".join(md), encoding="utf-8")

    if html:
        e = _html.escape
        page = [
            "<!DOCTYPE html>",
            f'<html><head><meta charset="utf-8"><title>{e(title)}</title></head><body>',
            f"<h1>{e(title)}</h1>",
        ]
        if lines or stated:
            page += ["<h2>Findings</h2>", "<ul>"] + [f"<li>{e(line)}</li>" for line in lines]
            page += [f"<li>{f'<b>{e(n)}</b>: ' if n else ''}<code>{e(t)}</code></li>" for n, t in stated]
            page += ["</ul>"]
        if links:
            page += ["<h2>Figures</h2>"]
            page += [f'<p><img src="{e(ln)}" alt="{e(Path(ln).stem)}"></p>' for ln in links]
        if columns or csv_link:
            page += ["<h2>Table</h2>"]
        if columns:
            page += ["<table border='1'>"]
            page += ["<tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>"]
            page += ["<tr>" + "".join(f"<td>{e(v)}</td>" for v in r) + "</tr>" for r in rows]
            page += ["</table>"]
        if csv_link:
            page += [f'<p>Every record with all its fields: <a href="{e(csv_link)}">{e(Path(csv_link).name)}</a></p>']
        page += ["</body></html>", ""]
        path.with_suffix(".html").write_text("\n".join(page), encoding="utf-8")
    return path


class ScaleProfileDisplay:
    """The intrinsic dimension against neighbourhood scale (see :mod:`idprops.scales`).

    A flat profile means the estimate does not depend on the scale it reads: trust
    it. A profile that keeps falling as the scale grows means the small scales see
    something of higher dimension than the manifold: noise (or a very rough
    surface); the estimate at the largest scales is then closer to the manifold's.
    Build it with :meth:`from_data` or :meth:`from_estimator`; scikit-learn's
    displays work the same way.

    Parameters
    ----------
    profile : ScaleProfile
    estimate : float, optional
        An estimator's dimension, drawn as a horizontal line.
    interval : tuple of float, optional
        Its 95 % interval, drawn as a band.
    name : str, optional
        Legend entry of the profile.

    Attributes
    ----------
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure
    line_ : matplotlib Line2D
        The profile.

    Examples
    --------
    >>> from idprops.data import sample_sphere
    >>> X = sample_sphere(2000, 3, ambient_dim=10, random_state=0)
    >>> display = ScaleProfileDisplay.from_data(X)
    >>> display.profile.ranks, display.ax_.get_xscale()
    (array([1, 2, 4, 8]), 'log')
    """

    def __init__(self, profile, *, estimate: float | None = None, interval=None, name: str | None = None) -> None:
        self.profile = profile
        self.estimate = estimate
        self.interval = interval
        self.name = name

    def plot(self, ax=None, *, name: str | None = None, **kwargs) -> ScaleProfileDisplay:
        """Draw the profile (with 95 % Fisher bars) on ``ax``, a new figure when None.

        Parameters
        ----------
        ax : matplotlib Axes, optional
        name : str, optional
            Legend entry; overrides the one given at construction.
        **kwargs
            Passed to ``ax.errorbar`` for the profile.

        Returns
        -------
        self
        """
        ax = _axes(ax)
        p = self.profile
        label = name if name is not None else self.name
        kwargs = {"marker": "o", "capsize": 3, **kwargs}
        container = ax.errorbar(p.scales, p.dimensions, yerr=1.96 * p.stds, label=label, **kwargs)
        self.line_ = container.lines[0]
        for rank, scale, d in zip(p.ranks, p.scales, p.dimensions):
            ax.annotate(f"{rank}", (scale, d), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=7)
        if self.estimate is not None:
            color = self.line_.get_color()
            ax.axhline(self.estimate, color=color, ls="--", lw=1, label=f"estimate {self.estimate:.3g}")
            if self.interval is not None:
                ax.axhspan(*self.interval, color=color, alpha=0.15)
        ax.set_xscale("log")
        # Ticks at the scales measured: a log axis spanning less than a decade has none.
        ax.set_xticks(p.scales, [f"{s:.2g}" for s in p.scales])
        ax.set_xticks([], minor=True)
        ax.set_xlabel("scale: median distance to neighbour 2 n1 (n1 marked)")
        ax.set_ylabel("intrinsic dimension")
        ax.set_title(f"varies by {100 * p.variation:.0f} % across scales", fontsize=10)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        self.ax_, self.figure_ = ax, ax.figure
        return self

    @classmethod
    def from_data(
        cls, X, *, max_rank: int = 8, backend: str = "auto", name: str | None = None, ax=None, **kwargs
    ) -> ScaleProfileDisplay:
        """Compute the profile of ``X`` (:func:`idprops.scales.scale_profile`) and draw it.

        Returns
        -------
        ScaleProfileDisplay
        """
        profile = scale_profile(X, max_rank=max_rank, backend=backend)
        return cls(profile, name=name).plot(ax=ax, **kwargs)

    @classmethod
    def from_estimator(
        cls, estimator, X, *, max_rank: int = 8, name: str | None = None, ax=None, **kwargs
    ) -> ScaleProfileDisplay:
        """The profile of ``X`` with a fitted estimator's dimension and interval drawn across it.

        Parameters
        ----------
        estimator : fitted dimension estimator
            Its ``dimension_`` (and ``dimension_interval_``, if it has one) are drawn;
            its ``backend`` (if any) finds the neighbours.
        X : array-like
            The data, usually those the estimator was fitted on.

        Returns
        -------
        ScaleProfileDisplay

        Examples
        --------
        >>> from idprops import TwoNNDimension
        >>> from idprops.data import sample_sphere
        >>> X = sample_sphere(2000, 3, ambient_dim=10, random_state=0)
        >>> display = ScaleProfileDisplay.from_estimator(TwoNNDimension().fit(X), X)
        >>> len(display.ax_.lines) >= 2  # the profile and the estimate
        True
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(estimator)
        profile = scale_profile(X, max_rank=max_rank, backend=getattr(estimator, "backend", "auto"))
        display = cls(
            profile,
            estimate=float(estimator.dimension_),
            interval=getattr(estimator, "dimension_interval_", None),
            name=name if name is not None else type(estimator).__name__ + " data",
        )
        return display.plot(ax=ax, **kwargs)
