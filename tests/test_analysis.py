import math

import numpy as np
import pytest
from scipy import stats

from idprops.analysis import (
    LinearFit,
    ScalingLawFit,
    correlation,
    fit_loss_vs_dimension,
    fit_scaling_law,
)
from idprops.nn.callbacks import llid_pid

SIZES = np.repeat([500, 750, 1000, 1250, 1500, 1750], 4)  # the paper's sizes, 4 seeds each


def _power_law(d, K, noise, rng, N=SIZES):
    return K * N ** (-1.0 / d) * np.exp(rng.normal(0, noise, N.size))


@pytest.mark.parametrize("d", [4.0, 9.3, 16.4])
def test_scaling_law_recovers_exponent(d):
    rng = np.random.default_rng(int(d * 10))
    loss = _power_law(d, 0.8, 0.02, rng)
    fit = fit_scaling_law(SIZES, loss)
    assert isinstance(fit, ScalingLawFit) and fit.n == SIZES.size
    assert fit.alpha_ci[0] < 1 / d < fit.alpha_ci[1]
    assert fit.intercept_ci[0] < math.log(0.8) < fit.intercept_ci[1]
    assert fit.dimension_ci[0] < d < fit.dimension_ci[1]
    assert math.isclose(fit.dimension, 1 / fit.alpha)
    # the same numbers as scipy's least squares
    ref = stats.linregress(np.log(SIZES), np.log(loss))
    assert fit.slope == pytest.approx(ref.slope, rel=1e-10)
    assert fit.intercept == pytest.approx(ref.intercept, rel=1e-10)
    assert fit.slope_se == pytest.approx(ref.stderr, rel=1e-8)
    assert fit.intercept_se == pytest.approx(ref.intercept_stderr, rel=1e-8)
    assert fit.r2 == pytest.approx(ref.rvalue**2, rel=1e-10)
    t = stats.t.ppf(0.975, SIZES.size - 2)
    assert fit.slope_ci == pytest.approx((ref.slope - t * ref.stderr, ref.slope + t * ref.stderr))
    resid = np.log(loss) - fit.predict(np.log(SIZES))
    assert fit.resid_std == pytest.approx(np.sqrt(resid @ resid / (SIZES.size - 2)))


def test_scaling_law_with_known_dimension():
    rng = np.random.default_rng(1)
    K, d = 1.6e-4, 9.3
    loss = _power_law(d, K, 0.05, rng)
    fit = fit_scaling_law(SIZES, loss, d=d)
    assert fit.alpha == pytest.approx(1 / d) and fit.slope_se == 0
    assert fit.alpha_ci == (fit.alpha, fit.alpha)
    y = np.log(loss) + np.log(SIZES) / d
    assert fit.intercept == pytest.approx(y.mean())
    assert fit.intercept_se == pytest.approx(y.std(ddof=1) / np.sqrt(y.size))
    assert fit.intercept_ci[0] < math.log(K) < fit.intercept_ci[1]
    # R² measures the fixed line against log L's own spread; a wrong exponent fits worse
    assert fit.r2 > fit_scaling_law(SIZES, loss, d=3 * d).r2
    assert "(fixed) log N" in str(fit)


def test_confidence_intervals_cover_at_their_level():
    rng = np.random.default_rng(0)
    hits = {"slope": 0, "fixed": 0}
    reps = 400
    for _ in range(reps):
        loss = _power_law(10.0, 2.0, 0.1, rng)
        free = fit_scaling_law(SIZES, loss)
        hits["slope"] += free.slope_ci[0] < -0.1 < free.slope_ci[1]
        fixed = fit_scaling_law(SIZES, loss, d=10.0)
        hits["fixed"] += fixed.intercept_ci[0] < math.log(2.0) < fixed.intercept_ci[1]
    # binomial(400, 0.95) lies in [0.92, 0.98] with probability > 0.99
    for name, h in hits.items():
        assert 0.92 <= h / reps <= 0.98, (name, h / reps)
    for level in (0.5, 0.99):
        fit = fit_scaling_law(SIZES, _power_law(10.0, 2.0, 0.1, rng), confidence=level)
        t = stats.t.ppf(0.5 + level / 2, SIZES.size - 2)
        assert np.diff(fit.slope_ci)[0] == pytest.approx(2 * t * fit.slope_se)


def test_loss_vs_dimension_per_group():
    rng = np.random.default_rng(3)
    d_med = rng.uniform(5, 13, 15)
    d_nat = rng.uniform(9, 18, 15)
    loss = np.exp(np.r_[-2.5 + 0.15 * d_med, -3.0 + 0.05 * d_nat] + rng.normal(0, 0.03, 30))
    groups = ["medical"] * 15 + ["natural"] * 15
    fits = fit_loss_vs_dimension(np.r_[d_med, d_nat], loss, groups)
    assert list(fits) == ["medical", "natural"]
    for name, slope, icpt in [("medical", 0.15, -2.5), ("natural", 0.05, -3.0)]:
        f = fits[name]
        assert f.n == 15 and f.x_name == "d" and f.y_name == "log L"
        assert f.slope_ci[0] < slope < f.slope_ci[1]
        assert f.intercept_ci[0] < icpt < f.intercept_ci[1]
    # medical images' law is the steeper one, beyond the uncertainty
    assert fits["medical"].slope_ci[0] > fits["natural"].slope_ci[1]
    (only,) = fit_loss_vs_dimension(d_med, loss[:15]).items()
    assert only[0] == "all" and only[1].slope == pytest.approx(fits["medical"].slope)


def test_fit_errors():
    with pytest.raises(ValueError, match="positive"):
        fit_scaling_law([500, 750, 1000], [0.1, 0.0, 0.2])
    with pytest.raises(ValueError, match="at least 3"):
        fit_scaling_law([500, 750], [0.2, 0.1])
    with pytest.raises(ValueError, match="all x values are equal"):
        fit_scaling_law([500, 500, 500], [0.2, 0.1, 0.3])
    with pytest.raises(ValueError, match="group 'b'"):
        fit_loss_vs_dimension([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], ["a", "a", "a", "b", "b"])
    with pytest.raises(ValueError, match="positive dimension"):
        fit_scaling_law([500, 750, 1000], [0.3, 0.2, 0.1], d=0)
    with pytest.raises(ValueError, match="d and loss differ in length: 4 and 3"):
        fit_loss_vs_dimension([1, 2, 3, 4], [0.1, 0.2, 0.3])


def test_fit_string():
    fit = LinearFit(
        slope=-0.3123, intercept=1.234, slope_se=0.02, intercept_se=0.05,
        slope_ci=(-0.35, -0.27), intercept_ci=(1.134, 1.334), r2=0.931, resid_std=0.1,
        n=12, x_name="log N", y_name="log L",
    )  # fmt: skip
    assert str(fit) == "log L = -0.31(±0.04) log N + 1.2(±0.1), R²=0.93, n=12 (±: 95% CI)"
    assert fit.predict([0.0, 1.0]) == pytest.approx([1.234, 0.9217])


def test_exact_fit_is_not_labelled_fixed():
    # an exact power law leaves zero standard errors, yet both parameters were fitted
    fit = fit_scaling_law([1, 2, 4, 8], [1, 0.5, 0.25, 0.125])
    assert str(fit) == "log L = -1(±0) log N + 0(±0), R²=1.00, n=4 (±: 95% CI)"
    assert not fit.slope_fixed and fit.slope_se == 0
    held = fit_scaling_law([1, 2, 4, 8], [1, 0.5, 0.25, 0.125], d=1.0)
    assert held.slope_fixed and str(held).startswith("log L = -1(fixed) log N + 0(±0), ")


@pytest.mark.parametrize("method, ref", [("pearson", stats.pearsonr), ("spearman", stats.spearmanr)])
def test_correlation_matches_scipy(method, ref):
    rng = np.random.default_rng(4)
    x = rng.normal(size=40)
    y = 0.7 * x + rng.normal(size=40)
    c = correlation(x, y, method=method, n_boot=500)
    r, p = ref(x, y)
    assert c.r == pytest.approx(r, rel=1e-12) and c.p_value == pytest.approx(p, rel=1e-10)
    assert c.n == 40 and c.method == method
    assert c.ci[0] < c.r < c.ci[1]
    assert correlation(x, y, method=method, n_boot=500) == c  # seeded: reproducible
    assert str(c).startswith({"pearson": "Pearson r = ", "spearman": "Spearman ρ = "}[method])


def test_bootstrap_interval_shrinks_and_agrees_with_fisher():
    rng = np.random.default_rng(5)
    cov = [[1, 0.7], [0.7, 1]]
    small = rng.multivariate_normal([0, 0], cov, size=25)
    large = rng.multivariate_normal([0, 0], cov, size=400)
    c_small = correlation(*small.T)
    c_large = correlation(*large.T)
    for c in (c_small, c_large):
        assert c.ci[0] < c.r < c.ci[1] and c.ci[0] < 0.7 < c.ci[1]
    assert np.diff(c_large.ci)[0] < np.diff(c_small.ci)[0] / 2
    # for bivariate normal data the bootstrap interval is close to Fisher's z interval
    z, half = np.arctanh(c_large.r), stats.norm.ppf(0.975) / np.sqrt(400 - 3)
    assert c_large.ci == pytest.approx(np.tanh([z - half, z + half]), abs=0.03)


def test_spearman_of_monotone_relation_is_exactly_one():
    x = np.linspace(0.1, 3, 12)
    c = correlation(x, np.exp(3 * x), method="spearman")
    assert c.r == pytest.approx(1.0) and c.ci == pytest.approx((1.0, 1.0))
    assert correlation(x, np.exp(3 * x)).r < 0.95  # Pearson sees the curvature


@pytest.mark.parametrize("method", ["pearson", "spearman"])
@pytest.mark.parametrize("n", [3, 4, 5, 8])
def test_small_sample_p_value_is_the_exact_permutation_one(method, n):
    # a strictly decreasing relation: of the n! re-pairings only the observed one is this
    # extreme, so the two-sided p is 2/n! (1/3 for n = 3), where the t-approximation says 0
    x = np.arange(n, dtype=float)
    c = correlation(x, -(x**3), method=method)
    assert c.p_value == pytest.approx(2 / math.factorial(n), rel=1e-9)


def test_small_sample_spearman_p_value_by_hand():
    # rho = 1 - sum(d²)/10 for n = 4, and rho = 0.8 means sum(d²) = 2: the identity and
    # the 3 adjacent swaps reach it, 4 of 24 orders, so p = 2 * 4/24
    c = correlation([1, 2, 3, 4], [1, 3, 2, 4], method="spearman")
    assert c.r == pytest.approx(0.8) and c.p_value == pytest.approx(1 / 3)
    # with 9 pairs the asymptotic value is kept
    x = np.arange(9, dtype=float)
    y = np.array([1, 3, 2, 5, 4, 7, 6, 9, 8], dtype=float)
    for method, ref in [("pearson", stats.pearsonr), ("spearman", stats.spearmanr)]:
        assert correlation(x, y, method=method).p_value == pytest.approx(ref(x, y)[1])
    # ...unless it is below the smallest p any re-pairing test can give
    assert correlation(x, -(x**3), method="spearman").p_value == pytest.approx(2 / math.factorial(9))


def test_no_bootstrap_interval_below_6_pairs():
    # 3 pairs in perfect order once gave the interval [1.00, 1.00] beside p = 0.33.
    c = correlation([1, 2, 3], [1, 2, 4], method="spearman")
    assert np.isnan(c.ci).all() and "no CI below 6 pairs" in str(c) and c.p_value == pytest.approx(1 / 3)
    c = correlation(np.arange(6), [1, 3, 2, 5, 4, 6])
    assert c.ci[0] < c.r < c.ci[1] and "95% CI" in str(c)


def test_correlation_errors():
    with pytest.raises(ValueError, match="constant"):
        correlation([1, 1, 1, 1], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="at least 3"):
        correlation([1, 2], [1, 2])
    with pytest.raises(ValueError, match="method"):
        correlation([1, 2, 3], [1, 2, 3], method="kendall")
    with pytest.raises(ValueError, match="finite"):
        correlation([1, 2, np.nan], [1, 2, 3])


def test_llid_pid_hand_example():
    # a ResNet's stages as in act_ids: the average pool feeds the classifier
    ids = {"conv1": 24.0, "conv2_x": 41.0, "conv3_x": 33.0, "conv4_x": 19.0, "conv5_x": 12.0}
    ids["avgpool"] = 8.0
    s = llid_pid(ids)
    assert (s.llid, s.pid) == (8.0, 41.0) and s.log_ratio == pytest.approx(math.log(41 / 8))
    llid, pid, ratio = llid_pid(ids, last_hidden="conv5_x")
    assert (llid, pid, ratio) == (12.0, 41.0, pytest.approx(math.log(41 / 12)))
    assert llid_pid(list(ids.values()), last_hidden=-2).llid == 12.0
    # a failed (NaN) estimate is left out of PID
    s = llid_pid({"a": float("nan"), "b": 5.0, "c": 2.0})
    assert (s.pid, s.llid) == (5.0, 2.0)
    assert math.isnan(llid_pid({"a": 3.0, "b": float("nan")}).log_ratio)
    assert llid_pid([7.0]).log_ratio == 0.0


def test_llid_pid_errors():
    with pytest.raises(ValueError, match="empty"):
        llid_pid({})
    with pytest.raises(ValueError, match="not one of the layers"):
        llid_pid({"a": 1.0}, last_hidden="fc")
    with pytest.raises(ValueError, match="give a position"):
        llid_pid([1.0, 2.0], last_hidden="fc")
    with pytest.raises(ValueError, match="out of range"):
        llid_pid([1.0, 2.0], last_hidden=2)
    with pytest.raises(ValueError, match="positive"):
        llid_pid([1.0, -2.0])
