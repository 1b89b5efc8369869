"""Fits of the scaling laws and correlations, with their uncertainty.

The laws under test (Konz & Mazurowski, ICLR 2024), natural logarithms
throughout:

- test loss against training-set size, ``log L = -(1/d) log N + log K_F + a``
  (:func:`fit_scaling_law`, whose fitted exponent ``alpha`` estimates ``1/d``);
- at fixed N, test loss against the data's intrinsic dimension, one line per domain
  or model, ``log L = a + b d`` (:func:`fit_loss_vs_dimension`);
- label sharpness against robustness (:func:`correlation`, with a bootstrap CI).

The summaries of a network's layer-wise intrinsic dimensions (LLID, PID) live beside
the tracker that records them, in :mod:`idprops.nn.callbacks`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from .base import log_in_place

__all__ = [
    "Correlation",
    "LinearFit",
    "ScalingLawFit",
    "correlation",
    "fit_loss_vs_dimension",
    "fit_scaling_law",
]


def _fmt(value: float, pm: float, fixed: bool = False) -> str:
    """``value(±pm)`` with as many decimals as the first significant digit of ``pm``."""
    if fixed:
        return f"{value:.4g}(fixed)"
    if pm == 0:  # an exact fit: no digit of pm to round to
        return f"{value:.4g}(±0)"
    if not math.isfinite(pm):
        return f"{value:.4g}(±{pm})"
    decimals = min(max(0, -math.floor(math.log10(pm))), 8)
    return f"{value:.{decimals}f}(±{pm:.{decimals}f})"


@dataclass(frozen=True)
class LinearFit:
    """A least-squares line ``y = slope * x + intercept`` with its uncertainty.

    Attributes
    ----------
    slope, intercept : float
    slope_se, intercept_se : float
        Standard errors (0 for a parameter held fixed, or for an exact fit).
    slope_ci, intercept_ci : tuple of float
        ``confidence`` intervals from Student's t with the residual degrees of freedom.
    r2 : float
        Coefficient of determination, ``1 - SS_res / SS_tot`` (negative when a line of
        fixed slope fits worse than the mean).
    resid_std : float
        Residual standard deviation, ``sqrt(SS_res / dof)``.
    n : int
        Number of points.
    confidence : float
    x_name, y_name : str
        How :meth:`__str__` names the variables.
    slope_fixed : bool
        True when the slope was given rather than fitted (``fit_scaling_law``'s ``d``):
        :meth:`__str__` then marks it "(fixed)".

    Examples
    --------
    >>> fit = fit_loss_vs_dimension([1.0, 2.0, 3.0, 4.0], np.exp([0.5, 0.7, 0.9, 1.1]))["all"]
    >>> round(fit.slope, 6), round(fit.intercept, 6), fit.n, round(float(fit.predict(5.0)), 6)
    (0.2, 0.3, 4, 1.3)
    """

    slope: float
    intercept: float
    slope_se: float
    intercept_se: float
    slope_ci: tuple[float, float]
    intercept_ci: tuple[float, float]
    r2: float
    resid_std: float
    n: int
    confidence: float = 0.95
    x_name: str = "x"
    y_name: str = "y"
    slope_fixed: bool = False

    def predict(self, x: Any) -> np.ndarray:
        """``slope * x + intercept``."""
        return self.slope * np.asarray(x, dtype=np.float64) + self.intercept

    def __str__(self) -> str:
        slope_pm = (self.slope_ci[1] - self.slope_ci[0]) / 2
        icpt_pm = (self.intercept_ci[1] - self.intercept_ci[0]) / 2
        sign = "-" if self.intercept < 0 else "+"
        return (
            f"{self.y_name} = {_fmt(self.slope, slope_pm, self.slope_fixed)} {self.x_name} "
            f"{sign} {_fmt(abs(self.intercept), icpt_pm)}, R²={self.r2:.2f}, n={self.n} "
            f"(±: {self.confidence:.0%} CI)"
        )


@dataclass(frozen=True)
class ScalingLawFit(LinearFit):
    """:class:`LinearFit` of ``log L`` on ``log N``, read as the power law ``L ∝ N^-alpha``.

    Examples
    --------
    >>> N = np.array([500, 1000, 2000, 4000])
    >>> fit = fit_scaling_law(N, 2.0 * N ** -0.125)
    >>> round(fit.alpha, 6), round(fit.dimension, 6)
    (0.125, 8.0)
    """

    @property
    def alpha(self) -> float:
        """The exponent, ``-slope``: an estimate of ``1/d``."""
        return -self.slope

    @property
    def alpha_ci(self) -> tuple[float, float]:
        return (-self.slope_ci[1], -self.slope_ci[0])

    @property
    def dimension(self) -> float:
        """``1/alpha``: the intrinsic dimension the law implies."""
        return 1.0 / self.alpha if self.alpha != 0 else math.inf

    @property
    def dimension_ci(self) -> tuple[float, float]:
        """The interval ``1/alpha`` takes over :attr:`alpha_ci`; ``(1/hi, inf)`` when it
        reaches 0 or below (a flat law is consistent with any large dimension), and
        ``(nan, nan)`` when all of it is (loss that does not fall with N implies no
        dimension)."""
        lo, hi = self.alpha_ci
        if hi <= 0:
            return (math.nan, math.nan)
        return (1.0 / hi, 1.0 / lo if lo > 0 else math.inf)


def _positive_finite(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be positive and finite to take its logarithm")
    return arr


def _ols(
    x: np.ndarray,
    y: np.ndarray,
    *,
    slope: float | None,
    confidence: float,
    cls: type[LinearFit] = LinearFit,
    **names: str,
) -> LinearFit:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} and {y.size}")
    n = x.size
    n_params = 1 if slope is not None else 2
    if n <= n_params:
        raise ValueError(f"{n} point(s) leave no degree of freedom for the uncertainty: give at least {n_params + 1}")
    sxx = float(np.sum((x - x.mean()) ** 2))
    if slope is None:
        if np.ptp(x) == 0:
            raise ValueError("all x values are equal: a slope cannot be fitted")
        slope = float(np.sum((x - x.mean()) * (y - y.mean())) / sxx)
    intercept = float(y.mean() - slope * x.mean())
    resid = y - (slope * x + intercept)
    dof = n - n_params
    s2 = float(resid @ resid) / dof
    if n_params == 2:
        slope_se = math.sqrt(s2 / sxx)
        intercept_se = math.sqrt(s2 * (1.0 / n + x.mean() ** 2 / sxx))
    else:
        slope_se, intercept_se = 0.0, math.sqrt(s2 / n)
    t = float(stats.t.ppf(0.5 + confidence / 2, dof))
    sst = float(np.sum((y - y.mean()) ** 2))
    return cls(
        slope=slope,
        intercept=intercept,
        slope_se=slope_se,
        intercept_se=intercept_se,
        slope_ci=(slope - t * slope_se, slope + t * slope_se),
        intercept_ci=(intercept - t * intercept_se, intercept + t * intercept_se),
        r2=1.0 - float(resid @ resid) / sst if sst > 0 else math.nan,
        resid_std=math.sqrt(s2),
        n=n,
        confidence=confidence,
        slope_fixed=n_params == 1,
        **names,
    )


def fit_scaling_law(N: Any, loss: Any, *, d: float | None = None, confidence: float = 0.95) -> ScalingLawFit:
    """Fit ``log L = -alpha log N + c`` by least squares.

    Parameters
    ----------
    N : array-like
        Training-set sizes (positive).
    loss : array-like
        Test losses (positive), one per size; repeated sizes (seeds) are fine.
    d : float, optional
        An intrinsic dimension measured independently: holds ``alpha = 1/d`` and fits
        the intercept only, which the law reads as ``log K_F + a`` (so
        ``a = intercept - log K_F``); ``r2`` then says how well the predicted
        exponent fits. By default ``alpha`` is fitted, and ``1/alpha`` is the
        dimension the data implies (:attr:`ScalingLawFit.dimension`).
    confidence : float, default=0.95
        Level of the intervals (Student's t, ``n - 2`` or ``n - 1`` degrees of freedom).

    Returns
    -------
    ScalingLawFit

    Examples
    --------
    >>> N = np.array([500, 750, 1000, 1250, 1500, 1750])
    >>> fit = fit_scaling_law(N, 3.0 * N ** -0.25)
    >>> round(fit.alpha, 6), round(fit.dimension, 6), round(fit.r2, 6)
    (0.25, 4.0, 1.0)
    >>> round(fit_scaling_law(N, 3.0 * N ** -0.25, d=4).intercept, 6)  # log 3
    1.098612
    """
    x = log_in_place(_positive_finite("N", N))
    y = log_in_place(_positive_finite("loss", loss))
    if d is not None and not (math.isfinite(d) and d > 0):
        raise ValueError(f"d must be a positive dimension, got {d}")
    return _ols(
        x,
        y,
        slope=None if d is None else -1.0 / d,
        confidence=confidence,
        cls=ScalingLawFit,
        x_name="log N",
        y_name="log L",
    )


def fit_loss_vs_dimension(d: Any, loss: Any, groups: Any = None, *, confidence: float = 0.95) -> dict[Any, LinearFit]:
    """Fit ``log L = a + b d`` (test loss against intrinsic dimension), per group.

    The paper's Fig. 2 form: at a fixed training-set size, one line per domain
    (natural, medical) or per model, whose slopes are compared.

    Parameters
    ----------
    d : array-like
        Intrinsic dimension of each training set.
    loss : array-like
        Test loss (positive) of the model trained on it.
    groups : array-like, optional
        A label per point; one fit per distinct label, in order of first appearance.
        Each group needs at least 3 points.
    confidence : float, default=0.95

    Returns
    -------
    dict
        Group label (``"all"`` without ``groups``) to its :class:`LinearFit`.

    Examples
    --------
    >>> d = np.array([6.0, 9.0, 12.0, 8.0, 14.0, 18.0])
    >>> loss = np.exp(np.where(np.arange(6) < 3, -2 + 0.2 * d, -3 + 0.1 * d))
    >>> fits = fit_loss_vs_dimension(d, loss, ["medical"] * 3 + ["natural"] * 3)
    >>> {g: round(f.slope, 6) for g, f in fits.items()}
    {'medical': 0.2, 'natural': 0.1}
    """
    x = np.asarray(d, dtype=np.float64).ravel()
    if not np.all(np.isfinite(x)):
        raise ValueError("d must be finite: drop the cells whose dimension estimate failed")
    y = log_in_place(_positive_finite("loss", loss))
    if x.size != y.size:
        raise ValueError(f"d and loss differ in length: {x.size} and {y.size}")
    if groups is None:
        labels = np.array(["all"] * x.size, dtype=object)
    else:
        labels = np.asarray(groups, dtype=object).ravel()
        if labels.size != x.size:
            raise ValueError(f"groups has {labels.size} labels for {x.size} points")
    fits = {}
    for g in dict.fromkeys(labels.tolist()):
        mask = labels == g
        try:
            fits[g] = _ols(x[mask], y[mask], slope=None, confidence=confidence, x_name="d", y_name="log L")
        except ValueError as exc:
            raise ValueError(f"group {g!r}: {exc}") from exc
    return fits


@dataclass(frozen=True)
class Correlation:
    """A correlation coefficient with its p-value and bootstrap confidence interval.

    Attributes
    ----------
    r : float
    p_value : float
        Two-sided. Exact up to 8 pairs: a permutation test over all ``n!`` re-pairings
        of x and y (so never below ``2/n!``). Above, from :func:`scipy.stats.pearsonr`
        or :func:`scipy.stats.spearmanr` (Student's t), raised to ``2/n!`` where it is
        below (it is 0 when ``|r| = 1``).
    ci : tuple of float
        Percentile bootstrap interval at ``confidence`` (pairs resampled); NaN with
        fewer than 6 pairs, where resamples are too few to bound anything.
    n : int
    method : str
    confidence : float

    Examples
    --------
    >>> c = correlation([1, 2, 3, 4, 5], [2, 4, 5, 4, 5])
    >>> round(c.r, 3), c.n, c.method
    (0.775, 5, 'pearson')
    >>> print(c)
    Pearson r = 0.77 [no CI below 6 pairs], p = 0.13, n = 5
    """

    r: float
    p_value: float
    ci: tuple[float, float]
    n: int
    method: str
    confidence: float = 0.95

    def __str__(self) -> str:
        name = {"pearson": "Pearson r", "spearman": "Spearman ρ"}[self.method]
        if np.isnan(self.ci[0]):
            ci = f"no CI below {_BOOTSTRAP_MIN_N} pairs"
        else:
            ci = f"{self.confidence:.0%} CI {self.ci[0]:.2f}, {self.ci[1]:.2f}"
        return f"{name} = {self.r:.2f} [{ci}], p = {self.p_value:.2g}, n = {self.n}"


# Below this many pairs the percentile bootstrap has too few distinct resamples to
# say anything: with 3 pairs in perfect order it gave [1.00, 1.00] beside p = 0.33.
_BOOTSTRAP_MIN_N = 6


# Up to this many pairs, correlation's p-value enumerates all n! re-pairings (40320 at
# 8, a tenth of a second; 9 takes seconds). scipy's t-approximation is far off there: it
# gives p = 0 whenever |r| = 1, where the exact p is 2/n! (1/3 for n = 3).
_EXACT_P_MAX_N = 8


def _pearson(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pearson's r along ``axis``: one coefficient per resample or re-pairing."""
    xc = x - x.mean(axis=axis, keepdims=True)
    yc = y - y.mean(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        # a resample that repeats one point has no variance: NaN, left out of the CI
        return np.sum(xc * yc, axis=axis) / np.sqrt(np.sum(xc**2, axis=axis) * np.sum(yc**2, axis=axis))


def correlation(
    x: Any,
    y: Any,
    *,
    method: str = "pearson",
    n_boot: int = 2000,
    confidence: float = 0.95,
    random_state: int | np.random.Generator | None = 0,
) -> Correlation:
    """Pearson or Spearman correlation with a bootstrap confidence interval.

    Parameters
    ----------
    x, y : array-like
        Paired observations (e.g. K_F and the loss increase under attack, per dataset).
    method : {"pearson", "spearman"}
    n_boot : int, default=2000
        Bootstrap resamples of the pairs.
    confidence : float, default=0.95
    random_state : int, Generator or None, default=0
        Seeds the bootstrap, so that a report is reproducible.

    Returns
    -------
    Correlation

    Notes
    -----
    With up to 8 pairs the p-value is exact: all ``n!`` ways of re-pairing x with y are
    enumerated (:func:`scipy.stats.permutation_test`), and p is twice the smaller tail
    share at least as extreme as the observed coefficient. Student's t approximation,
    used above 8 pairs, is badly off for so few: it says p = 0 whenever ``|r| = 1``,
    while 3 pairs in perfect order arise by chance in 1 of 3! orders each way
    (p = 1/3).

    Examples
    --------
    >>> c = correlation([1, 2, 3, 4, 5, 6], [1.1, 1.9, 3.2, 3.8, 5.1, 6.3])
    >>> round(c.r, 3), c.n, c.ci[0] > 0.9
    (0.996, 6, True)
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} and {y.size}")
    if x.size < 3:
        raise ValueError(f"a correlation needs at least 3 pairs, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite: drop the pairs with NaN or infinity")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise ValueError("x or y is constant: its correlation is undefined")
    test = stats.pearsonr if method == "pearson" else stats.spearmanr
    r, p = test(x, y)
    if x.size <= _EXACT_P_MAX_N:
        # Spearman's rho is Pearson's r of the ranks, so one permutation test serves both
        px, py = (x, y) if method == "pearson" else (stats.rankdata(x), stats.rankdata(y))
        p = stats.permutation_test(
            (px,),
            lambda xs, axis: _pearson(xs, py, axis),
            permutation_type="pairings",
            vectorized=True,
            n_resamples=math.factorial(x.size),  # all of them: exact
        ).pvalue
    else:
        # No re-pairing test gets below 2/n!; Student's t says 0 when |r| = 1.
        p = max(p, 2 * math.exp(-math.lgamma(x.size + 1)))  # n! itself is slow for large n
    lo = hi = np.nan
    if x.size >= _BOOTSTRAP_MIN_N:
        rng = np.random.default_rng(random_state)
        idx = rng.integers(0, x.size, size=(n_boot, x.size))
        bx, by = x[idx], y[idx]
        if method == "spearman":
            bx, by = stats.rankdata(bx, axis=1), stats.rankdata(by, axis=1)
        boot = _pearson(bx, by)
        tail = 100 * (1 - confidence) / 2
        lo, hi = np.nanpercentile(boot, [tail, 100 - tail])
    return Correlation(
        r=float(r),
        p_value=float(p),
        ci=(float(lo), float(hi)),
        n=int(x.size),
        method=method,
        confidence=confidence,
    )
