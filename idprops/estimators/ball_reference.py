"""Nearest-neighbour statistics of uniform samples of d-balls, the calibration reference.

For n points drawn uniformly from the unit d-ball, the distances ``T_1 <= ... <= T_K``
from one of them, at radius r, to the n - 1 others depend only on the fraction
``F_r(t)`` of the ball's volume within distance t of it: each other point falls there
independently with probability ``F_r(t)``, so ``P(T_j <= t) = P(Binomial(n - 1,
F_r(t)) >= j)``. ``F_r(t)`` is the volume of a lens, two hyperspherical caps, in
closed form through the regularised incomplete beta function. ``E[log T_j]`` then
follows from two one-dimensional integrals (over log t, and over ``r^d``, which is
uniform), computed by quadrature: no simulation, any real d > 0, and a cost that does
not grow with n.

:class:`BallReference` reads the shipped table of these expectations
(``ball_reference.npz``, written by ``benchmarks/build_calibration.py``) and
interpolates it; :func:`expected_log_distances` computes an entry directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.polynomial.legendre import leggauss
from scipy.interpolate import CubicSpline
from scipy.optimize import brentq
from scipy.special import betainc, digamma, gammaln

__all__ = [
    "BallReference",
    "expected_log_distances",
    "expected_ratio",
    "lens_fraction",
    "load_reference",
]

TABLE_PATH = Path(__file__).with_name("ball_reference.npz")


def lens_fraction(r, t, d: float) -> np.ndarray:
    """Fraction of the unit d-ball's volume within distance ``t`` of a point at radius ``r``.

    Parameters
    ----------
    r, t : array-like
        Radius of the point (0 < r <= 1) and distance; they broadcast.
    d : float
        Dimension (any real d > 0).

    Returns
    -------
    ndarray
        ``t^d`` while the small ball lies inside the unit ball, 1 once it covers it,
        and in between the lens: the cap of the unit ball beyond the plane where the
        two spheres meet plus the cap of the small ball on the other side.

    Examples
    --------
    >>> round(float(lens_fraction(0.5, 0.2, 3)), 12)  # well inside: the small ball's volume
    0.008
    >>> round(float(lens_fraction(1.0, 1e-3, 3) / 1e-9), 4)  # on the surface: half of it
    0.4998
    """
    r, t = np.broadcast_arrays(np.asarray(r, dtype=float), np.asarray(t, dtype=float))
    a = (d + 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        # 1 - c^2 for both planes, factored so that no difference of near-equal numbers
        # is taken when the caps are thin.
        sin2_big = (t**2 - (1 - r) ** 2) * ((1 + r) ** 2 - t**2) / (4 * r**2)
        sin2_small = (1 - (r - t) ** 2) * ((r + t) ** 2 - 1) / (4 * r**2 * t**2)
        half_big = 0.5 * betainc(a, 0.5, np.clip(sin2_big, 0, 1))
        half_small = 0.5 * betainc(a, 0.5, np.clip(sin2_small, 0, 1))
        # The plane sits at (r^2 + 1 - t^2) / 2r from the centre; a cap beyond a plane
        # past the centre is the ball minus the small cap.
        big = np.where(r**2 + 1 - t**2 >= 0, half_big, 1 - half_big)
        small = np.where(r**2 - 1 + t**2 >= 0, half_small, 1 - half_small)
        lens = big + t**d * small
    return np.where(t <= 1 - r, t**d, np.where(t >= 1 + r, 1.0, lens))


def expected_log_distances(d: float, n: int, k: int, *, n_radii: int = 96, n_steps: int = 800) -> np.ndarray:
    """``E[log T_j]``, j = 1..k, for a point of a uniform n-sample of the unit d-ball.

    Parameters
    ----------
    d : float
        Dimension of the ball (any real d > 0).
    n : int
        Sample size (the point and its n - 1 others).
    k : int
        Neighbours.
    n_radii, n_steps : int
        Gauss-Legendre nodes over ``r^d`` in the boundary layer and trapezoid steps
        over log t; the defaults agree with twice as many of each to about 1e-6.

    Returns
    -------
    ndarray of shape (k,)

    Examples
    --------
    Deep inside a ball (d = 1, large n) the interior law gives
    ``(digamma(j) - digamma(n)) / d``:

    >>> from scipy.special import digamma
    >>> m = expected_log_distances(1, 10**6, 2)
    >>> bool(np.allclose(m, digamma([1, 2]) - digamma(10**6), atol=1e-5))
    True
    """
    others = n - 1
    interior = (digamma(np.arange(1, k + 1)) - digamma(n)) / d
    # Points further than t_edge from the surface see their k neighbours as if the
    # ball had none: the k-th distance exceeds t_edge with negligible probability.
    u_edge = min(1.0, (k + 12 * np.sqrt(k) + 40) / others)
    inner = max(0.0, 1 - u_edge ** (1 / d)) ** d  # the share of points that deep
    nodes, weights = leggauss(n_radii)
    w = inner + (1 - inner) * (nodes + 1) / 2
    weights = weights * (1 - inner) / 2
    r = w ** (1 / d)  # r^d is uniform on [0, 1]
    s = np.linspace(np.log(1e-12 / others) / d, np.log(2.0), n_steps)
    F = lens_fraction(r[:, None], np.exp(s)[None, :], d)
    with np.errstate(divide="ignore"):
        log_f, log_1mf = np.log(F), np.log1p(-F)
    # P(T_j <= t) = 1 - P(Binomial(n - 1, F) < j), the pmf summed term by term.
    below = np.zeros_like(F)
    reach = np.empty((k,) + F.shape)
    for i in range(k):
        log_pmf = gammaln(others + 1) - gammaln(i + 1) - gammaln(others - i + 1) + (others - i) * log_1mf
        if i:
            log_pmf = log_pmf + np.where(F > 0, i * log_f, -np.inf)
        below += np.exp(log_pmf)
        reach[i] = np.clip(1 - below, 0, 1)
    # E[log T] = s_max - integral of P(log T <= s) ds (trapezoid rule).
    step = s[1] - s[0]
    integral = (reach.sum(-1) - 0.5 * (reach[..., 0] + reach[..., -1])) * step
    boundary = (s[-1] - integral) @ weights
    return inner * interior + boundary


def expected_ratio(d: float, n: int, k: int) -> float:
    """``d * E[u_k]``: how much larger a ball's mean log-ratio is than its limit 1 / d.

    ``u_k = sum_{j<k} log(T_k / T_j) / (k - 1)`` is the local statistic of the
    maximum-likelihood estimate over k neighbours (``k = 2``: TwoNN's ``log(T_2 / T_1)``);
    far from the surface its mean is exactly 1 / d, and the surface raises it, so an
    estimate ``1 / mean u_k`` on a ball reads ``d / expected_ratio`` on average.

    Examples
    --------
    >>> round(expected_ratio(20, 2500, 2), 3)  # TwoNN reads 20 / 1.22 = 16.4 on a 20-ball
    1.22
    """
    m = expected_log_distances(d, n, k)
    return float(d * (m[k - 1] - m[: k - 1].mean()))


@dataclass(frozen=True)
class BallReference:
    """The table of :func:`expected_ratio` and of the statistic's spread, interpolated.

    Attributes
    ----------
    dims : ndarray of shape (n_dims,)
        Dimensions tabulated (log-spaced).
    sizes : ndarray of shape (n_sizes,)
        Sample sizes tabulated (log-spaced).
    ratio : ndarray of shape (n_dims, n_sizes, k_max - 1)
        ``expected_ratio(dims[i], sizes[j], k)`` for k = 2..k_max.
    spread_dims, spread_sizes : ndarray
        The coarser grid of the simulated spreads.
    inflation : ndarray of shape (n_spread_dims, n_spread_sizes, k_max - 1)
        Standard deviation of the mean statistic over independent balls, divided by
        the naive standard error ``std(u_k) / sqrt(n)`` within one ball: how much the
        overlap of neighbourhoods widens the naive error.

    Examples
    --------
    >>> ref = load_reference()
    >>> round(ref.ratio_at(20.0, 2500, 2) / expected_ratio(20, 2500, 2), 4)
    1.0
    """

    dims: np.ndarray
    sizes: np.ndarray
    ratio: np.ndarray
    spread_dims: np.ndarray
    spread_sizes: np.ndarray
    inflation: np.ndarray

    @property
    def k_max(self) -> int:
        """Largest number of neighbours tabulated."""
        return self.ratio.shape[2] + 1

    def covers(self, n: int, k: int) -> bool:
        """Whether the table holds sample size ``n`` and ``k`` neighbours."""
        return bool(self.sizes[0] <= n <= self.sizes[-1] and 2 <= k <= self.k_max)

    def log_ratio_curve(self, n: int, k: int) -> np.ndarray:
        """``log expected_ratio`` at every tabulated dimension, for sample size ``n``.

        Cubic in log n between the tabulated sizes.
        """
        along_n = CubicSpline(np.log(self.sizes), np.log(self.ratio[:, :, k - 2]), axis=1)
        return along_n(np.log(n))

    def ratio_at(self, d: float, n: int, k: int) -> float:
        """``expected_ratio(d, n, k)`` interpolated (cubic in log d and log n)."""
        curve = CubicSpline(np.log(self.dims), self.log_ratio_curve(n, k))
        return float(np.exp(curve(np.log(d))))

    def dimension(self, statistic: float, n: int, k: int) -> float:
        """The ball dimension whose expected mean ``u_k`` is ``statistic``.

        Below the table's smallest dimension the surface hardly matters and the
        ratio there is used; past its largest, ``inf``.
        """
        x = np.log(self.dims)
        # log E[u_k] = log ratio - log d, decreasing in d (the build checks it).
        log_mean = CubicSpline(x, self.log_ratio_curve(n, k) - x)
        target = np.log(statistic)
        if target >= log_mean(x[0]):
            return float(np.exp(log_mean(x[0]) + x[0] - target))
        if target <= log_mean(x[-1]):
            return float("inf")
        return float(np.exp(brentq(lambda v: log_mean(v) - target, x[0], x[-1], xtol=1e-12)))

    def inflation_at(self, d: float, n: int, k: int) -> float:
        """The overlap inflation of the standard error, linear in log d and log n.

        Held constant outside the simulated grid.
        """
        x = np.clip(np.log(d), *np.log(self.spread_dims[[0, -1]]))
        y = np.clip(np.log(n), *np.log(self.spread_sizes[[0, -1]]))
        table = self.inflation[:, :, k - 2]
        along_d = [np.interp(x, np.log(self.spread_dims), table[:, j]) for j in range(table.shape[1])]
        return float(np.interp(y, np.log(self.spread_sizes), along_d))


@lru_cache(maxsize=4)
def load_reference(path: str | Path = TABLE_PATH) -> BallReference:
    """Read the calibration table shipped with idprops (or another one at ``path``).

    Examples
    --------
    >>> ref = load_reference()
    >>> ref.k_max, bool(ref.dims[-1] >= 100), ref.covers(10**6, 2)
    (20, True, True)
    """
    with np.load(path) as table:
        return BallReference(**{field: table[field] for field in BallReference.__dataclass_fields__})
