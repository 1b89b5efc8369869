"""CalibratedDimension and its reference: the ball's law, the shipped table, known dimensions."""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

import idprops
from idprops import CalibratedDimension, TwoNNDimension
from idprops.base import DuplicatesWarning
from idprops.data import sample_ball, sample_cube, sample_sphere
from idprops.estimators.ball_reference import (
    expected_log_distances,
    expected_ratio,
    lens_fraction,
    load_reference,
)
from idprops.neighbors import kneighbors

BUILD_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "build_calibration.py"


def _build_module():
    spec = importlib.util.spec_from_file_location("build_calibration", BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("r", "t", "d"), [(0.9, 0.3, 3), (1.0, 0.5, 5), (0.6, 1.2, 2), (0.95, 0.8, 10)])
def test_lens_fraction_matches_counting_points(r, t, d):
    X = sample_ball(200_000, d, random_state=0)
    x = np.zeros(d)
    x[0] = r
    counted = np.mean(np.linalg.norm(X - x, axis=1) <= t)
    # Binomial standard error of the count, at most 0.0012 here.
    assert lens_fraction(r, t, d) == pytest.approx(counted, abs=4 * np.sqrt(counted * (1 - counted) / len(X)) + 1e-4)


def test_expected_log_distances_interior_law():
    # A 1-ball of a million points: the surface touches a negligible share of them.
    from scipy.special import digamma

    m = expected_log_distances(1, 10**6, 5)
    interior = digamma(np.arange(1, 6)) - digamma(10**6)
    assert np.allclose(m, interior, atol=2e-5)


@pytest.mark.parametrize(("d", "n"), [(10, 500), (40, 300)])
def test_expected_ratio_matches_simulated_balls(d, n):
    # The quadrature against brute force: the mean statistic over 30 independent balls.
    ratios = {2: [], 5: []}
    for seed in range(30):
        log_t = np.log(kneighbors(sample_ball(n, d, random_state=seed), 5)[0])
        for k in ratios:
            ratios[k].append(d * np.mean(log_t[:, k - 1] - log_t[:, : k - 1].mean(axis=1)))
    for k, values in ratios.items():
        se = np.std(values, ddof=1) / np.sqrt(len(values))
        assert expected_ratio(d, n, k) == pytest.approx(np.mean(values), abs=3.5 * se)


def test_build_script_reproduces_shipped_entries():
    build = _build_module()
    table = load_reference()
    i_dim, i_size = 40, 11
    assert build.DIMS[i_dim] == table.dims[i_dim] and build.SIZES[i_size] == table.sizes[i_size]
    np.testing.assert_allclose(
        build.ratio_entry(build.DIMS[i_dim], build.SIZES[i_size]), table.ratio[i_dim, i_size], rtol=1e-12
    )
    # The simulated part: d = 1, n = 100, its 40 seeded balls.
    np.testing.assert_allclose(build.inflation_entry(0, 0), table.inflation[0, 0], rtol=1e-10)


def test_table_covers_the_promised_range():
    table = load_reference()
    assert table.dims[0] <= 1 and table.dims[-1] >= 100
    assert table.sizes[0] <= 100 and table.sizes[-1] >= 10**6 and table.k_max == 20
    # The estimator inverts the curve: it must fall strictly with d everywhere.
    log_mean = np.log(table.ratio) - np.log(table.dims)[:, None, None]
    assert np.all(np.diff(log_mean, axis=0) < 0)


def test_interpolation_between_nodes_matches_quadrature():
    table = load_reference()
    for d, n, k in [(13.7, 4321, 2), (77.0, 150_000, 3), (3.3, 777, 10)]:
        assert table.ratio_at(d, n, k) == pytest.approx(expected_ratio(d, n, k), rel=1e-3)


def _gaussian(n, d, ambient_dim, seed):
    from idprops.data import embed

    return embed(np.random.default_rng(seed).standard_normal((n, d)), ambient_dim, random_state=seed)


# Tolerances: balls are the reference itself, so only sampling error remains (the
# 95 % interval's half-width is about 3 % at d = 10 and 6 % at d = 60 for n = 2,000).
# Cubes, spheres and Gaussians differ from balls near their surface (or have none):
# the benchmark of docs/guide/accuracy shows their residual bias, a few per cent,
# largest for Gaussians (+7 % at d = 20) and high-dimensional cubes (-8 %).
@pytest.mark.parametrize(
    ("name", "d", "tolerance"),
    [
        ("ball", 2, 0.04),
        ("ball", 10, 0.05),
        ("ball", 30, 0.07),
        ("ball", 60, 0.10),
        ("cube", 5, 0.05),
        ("cube", 20, 0.08),
        ("sphere", 3, 0.05),
        ("sphere", 10, 0.08),
        ("gaussian", 4, 0.06),
        ("gaussian", 20, 0.12),
    ],
)
def test_known_dimensions(name, d, tolerance):
    n = 2000
    X = {
        "ball": lambda: sample_ball(n, d, ambient_dim=d + 5, random_state=1),
        "cube": lambda: sample_cube(n, d, ambient_dim=d + 5, random_state=1),
        "sphere": lambda: sample_sphere(n, d, ambient_dim=d + 5, random_state=1),
        "gaussian": lambda: _gaussian(n, d, d + 5, 1),
    }[name]()
    est = CalibratedDimension().fit(X)
    assert est.dimension_ == pytest.approx(d, rel=tolerance)


def test_calibration_removes_the_high_dimensional_bias():
    X = sample_ball(2000, 40, random_state=0)
    naive = TwoNNDimension(method="mle").fit(X).dimension_
    est = CalibratedDimension().fit(X)
    assert naive < 32  # the plain estimate reads 20 % low or more
    assert abs(est.dimension_ - 40) < 0.08 * 40
    assert est.dimension_naive_ == pytest.approx(1 / est.statistic_)


def test_interval_covers_the_truth_on_balls():
    # On the reference itself the interval is the sampling spread: it should cover
    # d in about 95 % of independent samples; 25 samples, at least 21 (binomial tail
    # below 1 % at 95 % coverage).
    hits = 0
    for seed in range(25):
        est = CalibratedDimension().fit(sample_ball(1000, 12, random_state=100 + seed))
        low, high = est.dimension_interval_
        assert low < est.dimension_ < high
        hits += low <= 12 <= high
    assert hits >= 21


def test_exact_reference_agrees_with_the_table():
    X = sample_ball(700, 15, random_state=3)
    table = CalibratedDimension(k=3).fit(X)
    exact = CalibratedDimension(k=3, reference="exact").fit(X)
    assert exact.dimension_ == pytest.approx(table.dimension_, rel=2e-3)


def test_registered_under_calibrated():
    assert idprops.get_estimator("calibrated") is CalibratedDimension


def test_bad_input():
    X = sample_ball(100, 3, random_state=0)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        CalibratedDimension().fit(bad)
    with pytest.raises(ValueError, match="at least 6 distinct samples"):
        CalibratedDimension(k=5).fit(X[:5])
    with pytest.raises(ValueError, match="k up to 20"):
        CalibratedDimension(k=25).fit(X)
    with pytest.raises(ValueError, match="regular grid"):
        # The cross-polytope: every vertex has its nearest others all at sqrt(2).
        CalibratedDimension().fit(np.vstack([np.eye(10), -np.eye(10)]))


def test_duplicates_are_dropped_and_counted():
    X = sample_ball(500, 4, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = CalibratedDimension().fit(np.vstack([X, X[:40]]))
    assert any(w.category is DuplicatesWarning for w in caught)
    assert est.n_duplicates_ == 40 and est.n_samples_fit_ == 500
    assert est.dimension_ == CalibratedDimension().fit(X).dimension_


def test_small_samples_warn_that_the_table_is_clamped():
    with pytest.warns(UserWarning, match="table holds n from 32"):
        CalibratedDimension().fit(sample_ball(20, 2, random_state=0))


def test_interval_is_mapped_through_the_curve():
    # The curve flattens as d grows, so the same spread of the statistic reaches
    # farther above the estimate than below it: the interval is not estimate +- c.
    est = CalibratedDimension().fit(sample_ball(1000, 60, random_state=0))
    low, high = est.dimension_interval_
    assert high - est.dimension_ > 1.1 * (est.dimension_ - low)
    table = load_reference()
    k, n = est.k, est.n_samples_fit_
    # Both ends are ball dimensions whose expected statistic is the estimate's +- 1.96 se.
    se = (table.ratio_at(low, n, k) / low - table.ratio_at(high, n, k) / high) / (2 * 1.959963984540054)
    assert table.ratio_at(low, n, k) / low == pytest.approx(est.statistic_ + 1.959963984540054 * se, rel=1e-6)


def test_unresolved_only_when_the_interval_is_open():
    from idprops.base import UnresolvedDimensionWarning

    # Far beyond 2 log2(n) = 21.9, yet resolved: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnresolvedDimensionWarning)
        assert CalibratedDimension().fit(sample_ball(2000, 40, random_state=0)).dimension_ > 36
    # 60 samples of a 200-ball: any higher dimension could look the same.
    with pytest.warns(UnresolvedDimensionWarning, match="no upper bound"):
        est = CalibratedDimension().fit(sample_ball(60, 200, random_state=0))
    assert est.dimension_interval_[1] == np.inf
    # Past the table: reported as its largest dimension, which bounds it below.
    with pytest.warns(UnresolvedDimensionWarning, match="no upper bound"):
        est = CalibratedDimension().fit(sample_ball(200, 300, random_state=0))
    assert est.dimension_ == 200 and est.dimension_interval_ == (200, np.inf)
