"""Standard errors and 95 % intervals of nearest-neighbour estimates, shared neighbours included.

A nearest-neighbour estimate pools one statistic per point, but the points are not
independent: a point enters the neighbourhoods of others, so their statistics move
together, and a variance that treats them as independent (the Fisher information)
is too small. Over 40 independent samples of a 10-sphere the estimates spread 1.3 to
1.6 times the Fisher standard error.

:func:`neighbour_variance` adds that covariance from the neighbour lists the
estimate already used. Each query ``i`` has an influence ``phi_i`` on the estimate
(the estimate moves by about ``phi_i / n`` when the point is added), and
``phi_without[i, r]``, its influence had its ``r``-th neighbour been absent (the
list then ends at the next neighbour, which is why the search keeps one neighbour
more than the estimator needs). Removing a point ``l`` changes the influence of
every point whose list holds it by ``e_l``, the sum of ``phi_i - phi_without[i, r]``
over the places ``(i, r)`` where ``l`` appears. The variance of the estimate is::

    (sum_l c_l^2 + 2 sum_l c_l e_l) / n^2,     c_l = phi_l - mean(phi),

the independent part plus the covariance of every point with the statistics it
enters. It costs O(n k) on top of the search, with no second search.
``benchmarks/bench_intervals.py`` measures its coverage (``benchmarks/INTERVALS.md``).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

__all__ = ["neighbour_variance", "normal_interval"]


def neighbour_variance(
    phi: np.ndarray, phi_without: np.ndarray, indices: np.ndarray, rows: np.ndarray | None = None
) -> float:
    """Variance of an estimate ``theta ~ mean(phi)``, counting shared neighbours.

    Parameters
    ----------
    phi : ndarray of shape (n_queries,)
        Influence of each query point on the estimate.
    phi_without : ndarray of shape (n_queries, k)
        Influence of query ``i`` had its ``r``-th nearest neighbour been absent.
    indices : ndarray of shape (n_queries, k)
        Rows of the data searched that are each query's k nearest neighbours.
    rows : ndarray of shape (n_queries,), default=None
        Row of each query in the data searched; ``None``: query ``i`` is row ``i``.

    Returns
    -------
    float
        The variance of the estimate, never below that of independent points.

    Examples
    --------
    Points whose neighbours do not change their influence are independent: the
    variance is that of a mean of four, ``sum(phi**2) / 4**2``.

    >>> phi = np.array([1.0, -1.0, 2.0, -2.0])
    >>> neighbour_variance(phi, phi[:, None], np.array([[1], [0], [3], [2]]))
    0.625
    """
    n = len(phi)
    rows = np.arange(n) if rows is None else rows
    centred = phi - phi.mean()
    independent = float(centred @ centred)
    size = int(max(indices.max(initial=0), rows.max(initial=0))) + 1
    change = np.bincount(indices.ravel(), (phi[:, None] - phi_without).ravel(), minlength=size)
    # Only queries' statistics enter the estimate, so only they co-vary with it.
    shared = 2.0 * float(centred @ change[rows])
    return max(independent + shared, independent) / n**2


def normal_interval(estimate: float, std: float, level: float = 0.95) -> tuple[float, float]:
    """The interval ``estimate +- z * std`` of the given two-sided level.

    Examples
    --------
    >>> tuple(round(v, 2) for v in normal_interval(10.0, 1.0))
    (8.04, 11.96)
    """
    z = float(norm.ppf(0.5 + level / 2))
    return (float(estimate - z * std), float(estimate + z * std))
