"""The intrinsic dimension as a function of neighbourhood scale (a Gride-style profile).

TwoNN reads the ratio of the second to the first neighbour distance, the smallest
scale the data offer. Gride (Denti et al., Sci. Rep. 2022) generalises it to the
ratio ``mu = T_(2 n1) / T_(n1)`` of the distances to the 2 n1-th and n1-th
neighbours, whose law under local uniformity depends on d alone:

    p(mu) = d (mu^d - 1)^(n1 - 1) / (B(n1, n1) mu^((2 n1 - 1) d + 1)).

The maximum-likelihood d at n1 = 1, 2, 4, ... reads the data at ever larger scales.
On a clean manifold the profile is flat; isotropic noise fills every ambient
direction at scales below its amplitude, so the estimate is high at small n1 and
falls as the scale grows past the noise. The distances come from one search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from .base import distinct_neighbors, log_in_place

__all__ = ["ScaleProfile", "gride_dimension", "scale_profile"]


@dataclass(frozen=True)
class ScaleProfile:
    """Dimension estimates at increasing neighbourhood scale.

    Attributes
    ----------
    ranks : ndarray of int
        The n1 of each estimate (the ratio is that of neighbours 2 n1 and n1).
    scales : ndarray
        The median distance to the 2 n1-th neighbour: the scale each estimate reads.
    dimensions : ndarray
        The Gride maximum-likelihood dimension at each rank.
    stds : ndarray
        Their standard errors from the Fisher information (points taken as
        independent: a guide to which differences matter, not an interval).

    Examples
    --------
    >>> profile = ScaleProfile(
    ...     ranks=np.array([1, 2]), scales=np.array([0.1, 0.2]),
    ...     dimensions=np.array([6.0, 4.0]), stds=np.array([0.1, 0.1]),
    ... )
    >>> profile.variation  # (6 - 4) / 5
    0.4
    """

    ranks: np.ndarray
    scales: np.ndarray
    dimensions: np.ndarray
    stds: np.ndarray

    @property
    def variation(self) -> float:
        """Spread of the estimates across scales, ``(max - min) / median``."""
        return float((self.dimensions.max() - self.dimensions.min()) / np.median(self.dimensions))


def _score(d: float, log_mu: np.ndarray, n1: int) -> float:
    """Derivative of the Gride log-likelihood in d (decreasing in d: one root)."""
    # log mu * mu^d / (mu^d - 1), written so that a large d log mu cannot overflow.
    tail = log_mu / -np.expm1(-d * log_mu)
    return len(log_mu) / d + (n1 - 1) * tail.sum() - (2 * n1 - 1) * log_mu.sum()


def gride_dimension(log_mu: np.ndarray, n1: int) -> tuple[float, float]:
    """Maximum-likelihood dimension from the log-ratios ``log(T_(2 n1) / T_(n1))``.

    Parameters
    ----------
    log_mu : ndarray of shape (n,)
        Positive log-ratios (ties, ``log mu = 0``, carry no information: drop them).
    n1 : int
        The smaller neighbour rank.

    Returns
    -------
    dimension, std : float
        The estimate and its Fisher standard error.

    Examples
    --------
    With n1 = 1 it is the TwoNN maximum likelihood ``n / sum(log mu)``:

    >>> log_mu = np.random.default_rng(0).exponential(1 / 3, size=1000)
    >>> bool(np.isclose(gride_dimension(log_mu, 1)[0], 1000 / log_mu.sum()))
    True
    """
    low, high = 1e-3, 1e4
    if _score(high, log_mu, n1) > 0:
        return high, np.inf
    d = brentq(_score, low, high, args=(log_mu, n1), xtol=1e-10, rtol=1e-12)
    # Fisher information: n / d^2 + (n1 - 1) sum (log mu)^2 mu^d / (mu^d - 1)^2.
    x = d * log_mu
    curvature = (n1 - 1) * np.sum(log_mu**2 * np.exp(-x) / np.expm1(-x) ** 2)
    return float(d), float(1 / np.sqrt(len(log_mu) / d**2 + curvature))


def scale_profile(X, *, max_rank: int = 8, backend: str = "auto", neighbors=None) -> ScaleProfile:
    """Gride dimension at neighbour ranks n1 = 1, 2, 4, ..., ``max_rank`` (ratios to 2 n1).

    Exact duplicate rows are dropped first, as the estimators drop them.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), torch tensor or Dataset
    max_rank : int, default=8
        The largest n1; the search finds ``2 * max_rank`` neighbours.
    backend : {"auto", "faiss", "faiss-gpu", "torch"}, default="auto"
        See :func:`idprops.neighbors.kneighbors`.
    neighbors : tuple of (distances, indices), default=None
        Neighbours already found by :func:`idprops.base.distinct_neighbors` with at
        least ``2 * max_rank`` columns; no search then.

    Returns
    -------
    ScaleProfile

    Examples
    --------
    >>> from idprops.data import sample_sphere
    >>> profile = scale_profile(sample_sphere(4000, 3, ambient_dim=10, random_state=0))
    >>> profile.ranks
    array([1, 2, 4, 8])
    >>> np.round(profile.dimensions, 1)
    array([3.1, 3. , 3. , 3. ])
    """
    if max_rank < 1:
        raise ValueError(f"max_rank={max_rank} must be at least 1.")
    k = 2 * max_rank
    if neighbors is None:
        distances = distinct_neighbors(X, k, backend=backend)[0]
    else:
        distances = np.asarray(neighbors[0], dtype=np.float64)
        if distances.ndim != 2 or distances.shape[1] < k:
            raise ValueError(
                f"neighbors hold {distances.shape[-1]} neighbours a point, but max_rank={max_rank} "
                f"needs {k}; search more or lower max_rank."
            )
    ranks = 2 ** np.arange(int(np.log2(max_rank)) + 1)
    log_d = log_in_place(distances[:, :k])
    dims, stds, scales = [], [], []
    for n1 in ranks:
        log_mu = log_d[:, 2 * n1 - 1] - log_d[:, n1 - 1]
        log_mu = log_mu[log_mu > 0]
        if len(log_mu) == 0:
            raise ValueError(f"every point has its {n1}-th and {2 * n1}-th neighbours at the same distance.")
        d, std = gride_dimension(log_mu, int(n1))
        dims.append(d)
        stds.append(std)
        scales.append(float(np.median(distances[:, 2 * n1 - 1])))
    return ScaleProfile(ranks=ranks, scales=np.array(scales), dimensions=np.array(dims), stds=np.array(stds))
