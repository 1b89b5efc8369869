import re

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from idprops.analysis import correlation, fit_loss_vs_dimension, fit_scaling_law  # noqa: E402
from idprops.plotting import (  # noqa: E402
    plot_correlation,
    plot_id_curves,
    plot_id_profile,
    plot_scaling_law,
    plot_training_curves,
    save_figure,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _records():
    rng = np.random.default_rng(0)
    out = []
    for domain, d in [("natural", 16.0), ("medical", 6.0)]:
        for N in (500, 750, 1000, 1250, 1500, 1750):
            loss = 0.9 * N ** (-1 / d) * np.exp(rng.normal(0, 0.01))
            out.append({"domain": domain, "N": N, "test_loss": loss})
    return out


def test_plot_scaling_law_from_records_with_group_fits():
    recs = _records()
    fits = {}
    for g in ("natural", "medical"):
        rows = [r for r in recs if r["domain"] == g]
        fits[g] = fit_scaling_law([r["N"] for r in rows], [r["test_loss"] for r in rows])
    _, ax = plt.subplots()
    out = plot_scaling_law("N", "test_loss", data=recs, groups="domain", fit=fits, ax=ax)
    assert out is ax
    assert len(ax.lines) == 4  # 2 groups of markers, 2 fitted lines
    natural, medical, fit_nat, fit_med = ax.lines
    assert natural.get_label() == "natural"
    assert natural.get_xdata().tolist() == [500, 750, 1000, 1250, 1500, 1750]
    assert medical.get_ydata().tolist() == [r["test_loss"] for r in recs[6:]]
    assert fit_nat.get_label().startswith("natural fit")
    assert fit_nat.get_color() == natural.get_color()
    # the fitted line is the fit's power law, across its group's range
    gx = fit_med.get_xdata()
    assert (gx[0], gx[-1]) == (500, 1750)
    assert fit_med.get_ydata() == pytest.approx(np.exp(fits["medical"].predict(np.log(gx))))
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "N" and ax.get_ylabel() == "test_loss"
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["natural", "medical"]


def _class_records():
    """Records as ResultsStore.records() keeps them: a list-valued field per cell."""
    return [
        {"n_train": N, "test_loss": loss, "data.classes": classes}
        for classes, scale in (([3, 5], 1.0), ([0, 1], 2.0))
        for N, loss in ((100, 0.5 * scale), (200, 0.4 * scale), (400, 0.3 * scale))
    ]


@pytest.mark.parametrize("as_frame", [False, True])
def test_plot_scaling_law_groups_by_a_list_valued_field(as_frame):
    recs = _class_records()
    data = pytest.importorskip("pandas").DataFrame(recs) if as_frame else recs
    fit = fit_scaling_law([100, 200, 400], [0.5, 0.4, 0.3])
    ax = plot_scaling_law("n_train", "test_loss", data=data, groups="data.classes", fit={(3, 5): fit})
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["[3, 5]", "[0, 1]", f"[3, 5] fit: slope {fit.slope:.3g}"]
    assert ax.lines[1].get_ydata().tolist() == [1.0, 0.8, 0.6]


def test_plot_scaling_law_groups_as_labels_beside_data():
    recs = _records()
    labels = np.array(["a"] * 4 + ["b"] * 8)
    ax = plot_scaling_law("N", "test_loss", data=recs, groups=labels)
    assert [line.get_label() for line in ax.lines] == ["a", "b"]
    assert ax.lines[0].get_xdata().tolist() == [500, 750, 1000, 1250]
    with pytest.raises(ValueError, match="3 group labels for 12 points"):
        plot_scaling_law("N", "test_loss", data=recs, groups=["a", "b", "c"])


def test_plot_loss_against_dimension_from_arrays():
    d = np.array([6.0, 9.0, 12.0, 8.0, 14.0, 18.0])
    loss = np.exp(np.where(np.arange(6) < 3, -2 + 0.2 * d, -3 + 0.1 * d))
    groups = np.array(["medical"] * 3 + ["natural"] * 3)
    fits = fit_loss_vs_dimension(d, loss, groups)
    ax = plot_scaling_law(d, loss, groups=groups, fit=fits, logx=False)
    assert len(ax.lines) == 4 and ax.get_xscale() == "linear" and ax.get_yscale() == "log"
    med_fit = ax.lines[2]
    assert med_fit.get_ydata() == pytest.approx(np.exp(-2 + 0.2 * med_fit.get_xdata()))
    assert ax.get_xlabel() == "intrinsic dimension"


def test_plot_correlation():
    kf = np.array([1.35, 3.4, 3.1, 2.85, 0.6, 0.65, 1.05, 1.6])
    loss_increase = np.array([0.5, 1.5, 1.2, 1.0, 0.2, 0.35, 0.3, 0.9])
    names = ["prostate", "OAI", "DBC", "MURA", "ImageNet", "CIFAR-10", "SVHN", "MNIST"]
    corr = correlation(kf, loss_increase)
    ax = plot_correlation(kf, loss_increase, corr, labels=names)
    assert ax.collections[0].get_offsets().tolist() == np.c_[kf, loss_increase].tolist()
    texts = [t.get_text() for t in ax.texts]
    assert texts[:8] == names and texts[8] == str(corr) and "Pearson r = " in texts[8]
    data = [{"K_F": a, "robust_acc": b} for a, b in zip(kf, -loss_increase)]
    ax2 = plot_correlation("K_F", "robust_acc", data=data, method="spearman")
    assert ax2.texts[0].get_text().startswith("Spearman ρ = ") and ax2.get_xlabel() == "K_F"
    with pytest.raises(ValueError, match="labels"):
        plot_correlation(kf, loss_increase, corr, labels=names[:3])


def test_plot_id_profile_marks_llid_and_pid():
    ids = {"conv1": 24.0, "conv2_x": 41.0, "conv3_x": 33.0, "conv5_x": 12.0, "avgpool": 8.0}
    ax = plot_id_profile(ids, label="run")
    profile, llid, pid = ax.lines
    assert profile.get_ydata().tolist() == list(ids.values())
    assert (llid.get_xdata()[0], llid.get_ydata()[0]) == (4, 8.0) and llid.get_label() == "LLID = 8"
    assert (pid.get_xdata()[0], pid.get_ydata()[0]) == (1, 41.0) and pid.get_label() == "PID = 41"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(ids)
    ax = plot_id_profile(list(ids.values()), last_hidden=-2)
    assert ax.lines[1].get_ydata()[0] == 12.0


def test_plot_id_curves():
    hist = [{"epoch": e, "val_acc": 0.1 * e, "ids": {"conv1": 20.0 + e, "conv2_x": 30.0 - e}} for e in range(4)]
    for e, rec in enumerate(hist):
        rec["ids"]["avgpool"] = 10.0 - 2 * e
    ax = plot_id_curves(hist)
    assert [ln.get_label() for ln in ax.lines] == ["conv1", "conv2_x", "avgpool", "LLID", "PID"]
    llid, pid = ax.lines[3], ax.lines[4]
    assert llid.get_ydata().tolist() == [10.0, 8.0, 6.0, 4.0]
    assert pid.get_ydata().tolist() == [30.0, 29.0, 28.0, 27.0]
    assert llid.get_xdata().tolist() == [0, 1, 2, 3] and ax.get_xlabel() == "epoch"
    with pytest.raises(ValueError, match="'step'"):
        plot_id_curves(hist, x="step")


def test_plot_id_curves_leaves_a_gap_where_a_record_lacks_the_llid_layer():
    hist = [
        {"epoch": 0, "ids": {"conv": 30.0, "fc": 8.0}},
        {"epoch": 1, "ids": {"conv": 31.0}},
        {"epoch": 2, "ids": {"conv": 32.0, "fc": 7.0}},
    ]
    for last_hidden in (None, "fc", -1):
        ax = plot_id_curves(hist, last_hidden=last_hidden)
        conv, fc, llid, pid = ax.lines
        assert np.array_equal(fc.get_ydata(), [8.0, np.nan, 7.0], equal_nan=True)
        # not conv's 31 in the gap: the LLID layer is fc in every record
        assert np.array_equal(llid.get_ydata(), [8.0, np.nan, 7.0], equal_nan=True)
        assert pid.get_ydata().tolist() == [30.0, 31.0, 32.0]
    # a layer first seen in a later record takes its place in that record's order
    hist = [
        {"epoch": 0, "ids": {"a": 9.0, "c": 3.0}},
        {"epoch": 1, "ids": {"a": 9.0, "b": 6.0, "c": 2.0}},
    ]
    ax = plot_id_curves(hist)
    assert [ln.get_label() for ln in ax.lines] == ["a", "b", "c", "LLID", "PID"]
    assert ax.lines[3].get_ydata().tolist() == [3.0, 2.0]
    with pytest.raises(ValueError, match="not one of the layers"):
        plot_id_curves(hist, last_hidden="fc")


def test_plot_id_profile_with_nan_estimates():
    ax = plot_id_profile({"conv": 20.0, "mid": np.nan, "fc": np.nan})
    profile, pid = ax.lines  # no LLID marker at a NaN
    assert pid.get_label() == "PID = 20" and pid.get_xdata().tolist() == [0]
    assert np.array_equal(profile.get_ydata(), [20.0, np.nan, np.nan], equal_nan=True)
    ax = plot_id_profile({"conv": np.nan, "fc": np.nan})
    (profile,) = ax.lines
    assert np.isnan(profile.get_ydata()).all()
    assert [t.get_text() for t in ax.texts] == ["no layer has a finite ID estimate"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["conv", "fc"]


def test_plot_training_curves():
    runs = {
        "true labels": [{"epoch": e, "train_loss": 2.3 / (e + 1)} for e in range(5)],
        "random labels": [{"epoch": e, "train_loss": 2.3 - 0.1 * e} for e in range(5)],
        "no epochs": [{"train_loss": 1.0}, {"train_loss": 0.5}],
    }
    ax = plot_training_curves(runs, logy=True)
    assert [ln.get_label() for ln in ax.lines] == list(runs)
    assert ax.lines[1].get_ydata() == pytest.approx([2.3, 2.2, 2.1, 2.0, 1.9])
    assert ax.lines[2].get_xdata().tolist() == [0, 1]
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "train_loss"
    with pytest.raises(ValueError, match="no 'val_acc'"):
        plot_training_curves(runs, key="val_acc")


def test_save_figure_writes_png(tmp_path):
    ax = plot_id_profile([3.0, 5.0, 2.0])
    path = save_figure(ax, tmp_path / "figs" / "profile.png")  # an Axes is accepted
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    pdf = save_figure(ax.figure, tmp_path / "profile.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_write_report(tmp_path):
    recs = _records()
    fit = fit_scaling_law([r["N"] for r in recs[:6]], [r["test_loss"] for r in recs[:6]])
    corr = correlation([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 5.0])
    ax = plot_scaling_law("N", "test_loss", data=recs, groups="domain")
    fig_path = save_figure(ax, tmp_path / "figs" / "law.png")
    report = write_report(
        tmp_path / "report" / "study.md",
        title="Scaling | study",
        table=recs[:3] + [{"N": 1, "note": "a|b", "extra": None}],
        fits={"natural": fit},
        correlations=[corr],
        figures=[fig_path],
    )
    md = report.read_text()
    lines = md.splitlines()
    assert lines[0] == "# Scaling | study"
    assert "| domain | N | test_loss | note | extra |" in lines
    for r in recs[:3]:
        assert f"| {r['domain']} | {r['N']} | {r['test_loss']:.4g} |  |  |" in lines
    assert "|  | 1 |  | a\\|b |  |" in lines
    assert f"- **natural**: `{fit}`" in lines and f"- `{corr}`" in lines
    (link,) = re.findall(r"!\[law\]\(([^)]+)\)", md)
    assert link == "../figs/law.png" and (report.parent / link).resolve() == fig_path.resolve()
    page = report.with_suffix(".html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<title>Scaling | study</title>" in page
    assert '<img src="../figs/law.png"' in page and "<td>a|b</td>" in page
    assert str(fit) in page and str(corr) in page
    with pytest.raises(FileNotFoundError, match="missing.png"):
        write_report(tmp_path / "r.md", title="t", figures=[tmp_path / "missing.png"])
    write_report(tmp_path / "only.md", title="t", html=False)
    assert (tmp_path / "only.md").read_text() == "# t\n" and not (tmp_path / "only.html").exists()


def test_scale_profile_display_draws_and_returns_itself():
    from idprops import TwoNNDimension
    from idprops.data import sample_sphere
    from idprops.plotting import ScaleProfileDisplay
    from idprops.scales import scale_profile

    X = sample_sphere(1000, 2, ambient_dim=5, random_state=0)
    est = TwoNNDimension().fit(X)
    display = ScaleProfileDisplay.from_estimator(est, X, max_rank=4)
    assert isinstance(display, ScaleProfileDisplay)
    np.testing.assert_allclose(display.line_.get_xdata(), scale_profile(X, max_rank=4).scales)
    np.testing.assert_allclose(display.line_.get_ydata(), display.profile.dimensions)
    # The estimate's line at its value, its interval as a band.
    (estimate,) = [line for line in display.ax_.lines if line.get_label().startswith("estimate")]
    assert estimate.get_ydata()[0] == est.dimension_
    assert display.ax_.get_xscale() == "log"
    fig, ax = plt.subplots()
    again = ScaleProfileDisplay(display.profile).plot(ax=ax, name="again")
    assert again.ax_ is ax and again.figure_ is fig
    assert ax.get_legend_handles_labels()[1] == ["again"]
