"""The fit/score contract shared by every dimension estimator, and duplicate handling.

What researchers hold (arrays, tensors, torch Datasets...) becomes a float matrix in
:mod:`idprops.inputs`.
"""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state, metadata_routing
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._sklearn_compat import Interval, StrOptions
from ._threads import n_cores, row_parts, thread_pool
from .inputs import as_matrix
from .neighbors import BACKENDS, float_dtype, kneighbors
from .uncertainty import neighbour_variance, normal_interval
from .validation import check_finite

__all__ = [
    "BaseDimension",
    "DuplicatesWarning",
    "NearDuplicatesWarning",
    "UnresolvedDimensionWarning",
    "distinct_neighbors",
    "drop_duplicates",
    "group_identical_rows",
    "log_in_place",
    "max_resolvable_dimension",
]


class DuplicatesWarning(UserWarning):
    """Exact duplicate samples were found and dropped.

    Examples
    --------
    >>> import warnings
    >>> from idprops import TwoNNDimension
    >>> X = np.repeat(np.random.default_rng(0).normal(size=(50, 3)), 2, axis=0)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     est = TwoNNDimension().fit(X)
    >>> caught[0].category.__name__, est.n_duplicates_
    ('DuplicatesWarning', 50)

    Silence it where the count in ``n_duplicates_`` is enough:
    ``warnings.simplefilter("ignore", DuplicatesWarning)``.
    """


class NearDuplicatesWarning(UserWarning):
    """Some samples are nearer to another sample than float rounding can resolve.

    Two samples a few units in the last place apart (the same point computed twice,
    on a GPU and on a CPU, say) are not exact duplicates, so they are kept, but
    their distance is rounding noise: its logarithm is far below every other and
    pulls the estimate towards 0 (points one ulp apart give 0.02 to 0.9 whatever
    the data). The warning fires when a sample's nearest neighbour is within
    ``NEAR_DUPLICATE_ULPS`` times the float spacing at that sample (``eps`` of
    the data's dtype times its Euclidean norm). Remove such samples, or round the
    data so that they become exact duplicates, which are dropped.

    Examples
    --------
    >>> import warnings
    >>> from idprops import TwoNNDimension
    >>> X = np.random.default_rng(0).normal(size=(200, 3))
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     est = TwoNNDimension().fit(np.vstack([X, np.nextafter(X[:20], np.inf)]))
    >>> caught[0].category.__name__
    'NearDuplicatesWarning'
    """


#: How many float spacings (eps x norm) a nearest neighbour must be beyond for its
#: distance to say more than rounding: below it, NearDuplicatesWarning.
NEAR_DUPLICATE_ULPS = 16


class UnresolvedDimensionWarning(UserWarning):
    """The estimate is beyond what the number of samples can resolve.

    Eckmann and Ruelle (Physica D 56, 1992) showed that n points give n^2 / 2
    pairs, and seeing d dimensions over a ratio rho of distances needs about
    n^2 rho^d >= 1 of them, so n must exceed rho^(-d/2): ``d <= 2 log(n) /
    log(1/rho)``. For the correlation dimension, fitted over a decade of distances
    (rho = 1/10), that is the often quoted ``2 log10(n)``. kNN estimators (MLE,
    TwoNN) read the dimension from distances within a factor of about two of each
    other (rho = 1/2), so the bound for them is :func:`max_resolvable_dimension`,
    ``2 log2(n)``: beyond it, fewer than one pair of the n points is expected
    closer than half the typical distance, every distance is alike, and the
    estimate says only that the dimension is high (Gaussian noise in 784
    dimensions gives 66 with MLE and 126 with TwoNN at n = 60, 134 and 172 at
    n = 5,000). It is not fired on real data of low dimension: the digits (MLE
    6.5, TwoNN 8.9 at n = 1,797) are far below ``2 log2(1797) = 21.6``, and a
    10-dimensional Gaussian at n = 60 gives TwoNN 9.0 below 11.8.

    Examples
    --------
    >>> import warnings
    >>> from idprops import TwoNNDimension
    >>> X = np.random.default_rng(0).normal(size=(60, 784))
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     est = TwoNNDimension().fit(X)
    >>> caught[0].category.__name__, round(max_resolvable_dimension(60), 1)
    ('UnresolvedDimensionWarning', 11.8)
    """


def max_resolvable_dimension(n_samples: int) -> float:
    """``2 log2(n_samples)``: the largest dimension n samples can resolve with kNN.

    See :class:`UnresolvedDimensionWarning` for where it comes from.

    Examples
    --------
    >>> max_resolvable_dimension(1024)
    20.0
    """
    return 2.0 * float(np.log2(n_samples))


# Words of a row hashed at once: a chunk's copy and products stay in a core's cache.
_HASH_CHUNK_WORDS = 2**17


def _row_hashes(X: np.ndarray) -> np.ndarray:
    """A 64-bit hash of every row's bytes, computed a few MiB at a time.

    Equal rows get equal hashes; unequal rows collide rarely (a random linear map
    modulo 2**64), and :func:`group_identical_rows` checks collisions exactly.
    """
    row_bytes = X.dtype.itemsize * X.shape[1]
    # The widest unsigned word that divides a row's bytes: fewer products to sum.
    words = next(np.dtype(f"u{w}") for w in (8, 4, 2, 1) if row_bytes % w == 0)
    n_words = row_bytes // words.itemsize
    multipliers = np.random.default_rng(0).integers(1, 2**63, n_words, dtype=np.uint64) * 2 + 1
    hashes = np.empty(len(X), dtype=np.uint64)
    chunk = max(1, _HASH_CHUNK_WORDS // max(1, n_words))

    def part(part_rows):
        # Buffers of this thread's own, reused from chunk to chunk, stay in its core's
        # cache; fresh ones for each chunk go to memory and back (benchmarks/TUNING.md).
        rows = np.empty((min(chunk, len(X)), X.shape[1]), dtype=X.dtype)
        products = np.empty((len(rows), n_words), dtype=np.uint64)
        for start in range(part_rows.start, part_rows.stop, chunk):
            block = X[start : min(start + chunk, part_rows.stop)]
            plus_zero = _plus_zero(block, out=rows[: len(block)])
            # Integer products and sums wrap around modulo 2**64, which is the hash.
            terms = np.multiply(plus_zero.view(np.uint8).view(words), multipliers, out=products[: len(block)])
            terms.sum(axis=1, dtype=np.uint64, out=hashes[start : start + len(block)])

    # numpy releases the GIL in these loops, so threads use the other cores.
    list(thread_pool(n_cores()).map(part, row_parts(len(X))))
    return hashes


def _sq_norms(X: np.ndarray) -> np.ndarray:
    """Each row's squared norm as float64, the rows shared among the cores.

    Summed in X's own type (einsum casting to float64 as it goes is several times
    slower); rows whose float32 squares overflow (values from 1.8e19) are summed again
    in float64.
    """
    out = np.empty(len(X), dtype=X.dtype)

    def part(rows):
        # einsum makes no squared copy of X, which np.linalg.norm does.
        np.einsum("ij,ij->i", X[rows], X[rows], out=out[rows])

    list(thread_pool(n_cores()).map(part, row_parts(len(X))))
    out = out.astype(np.float64, copy=False)
    over = np.flatnonzero(np.isinf(out))
    if len(over) and X.dtype != np.float64:
        out[over] = np.einsum("ij,ij->i", X[over], X[over], dtype=np.float64)
    return out


def _plus_zero(X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``X`` with -0.0 turned into 0.0 (floats only), so that equal rows have equal bytes.

    A zero of X's own type keeps its dtype: ``+ 0.0`` made int32 rows float64. ``out``,
    of X's shape and dtype, takes the result (a copy of X where it is not a float).
    """
    if X.dtype.kind in "fc":
        return np.add(X, X.dtype.type(0), out=out)
    if out is None:
        return X
    np.copyto(out, X)
    return out


def group_identical_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort the rows of ``X`` into groups of identical rows (0.0 equals -0.0).

    Rows are hashed a chunk at a time and only rows that share a hash are compared
    byte for byte, so data without repeats costs no copy of ``X``.

    Returns
    -------
    first : ndarray of int
        The first row of every group, ascending.
    group : ndarray of int
        The group of every row: ``X[i]`` equals ``X[first[group[i]]]``.

    Examples
    --------
    >>> group_identical_rows(np.array([[1.0], [2.0], [1.0]]))
    (array([0, 1]), array([0, 1, 0]))
    """
    _, first, group, counts = np.unique(_row_hashes(X), return_index=True, return_inverse=True, return_counts=True)
    shared = np.flatnonzero(counts[group] > 1)
    if len(shared) and X.shape[1]:  # rows of no features share their (empty) bytes
        rows = np.ascontiguousarray(_plus_zero(X[shared]))
        as_bytes = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
        group[shared] = len(first) + np.unique(as_bytes, return_inverse=True)[1].ravel()
        _, first, group = np.unique(group, return_index=True, return_inverse=True)
    # Number the groups in the order in which they first appear.
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[group]


def drop_duplicates(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first occurrence of every distinct row.

    Returns
    -------
    X_unique : ndarray
        The distinct rows, in their original order (``X`` itself when all are).
    kept : ndarray of int
        Their row numbers in ``X``.

    Examples
    --------
    >>> drop_duplicates(np.array([[1.0], [2.0], [1.0]]))[1]
    array([0, 1])
    """
    first, _ = group_identical_rows(X)
    if len(first) == len(X):  # the common case: no copy of what may be gigabytes
        return X, np.arange(len(X))
    return X[first], first


def _as_points(X) -> np.ndarray:
    """X as the float matrix the estimators search (flattened, validated, float32 where exact)."""
    X = as_matrix(X)
    return check_array(X, dtype=float_dtype(X))


def distinct_neighbors(X, k: int, *, backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """The k nearest neighbours of every distinct row of ``X``, for ``fit(X, neighbors=...)``.

    Exact duplicates are dropped first, keeping each row's first occurrence, as
    :meth:`BaseDimension.fit` drops them. One search at the largest k any of several
    estimators needs then serves them all (:func:`idprops.studies.measure.measure`
    does this).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), torch tensor or Dataset
    k : int
        Neighbours per point.
    backend : {"auto", "faiss", "faiss-gpu", "torch"}, default="auto"
        See :func:`idprops.neighbors.kneighbors`.

    Returns
    -------
    distances, indices : ndarray of shape (n_distinct, k)
        As :func:`idprops.neighbors.kneighbors` returns them for the distinct rows.

    Examples
    --------
    >>> from idprops import MLEDimension, TwoNNDimension
    >>> from idprops.data import sample_sphere
    >>> X = sample_sphere(500, 2, random_state=0)
    >>> neighbors = distinct_neighbors(X, 20)
    >>> mle = MLEDimension(k=20).fit(X, neighbors=neighbors)
    >>> twonn = TwoNNDimension().fit(X, neighbors=neighbors)
    >>> twonn.dimension_ == TwoNNDimension().fit(X).dimension_
    True
    """
    return kneighbors(drop_duplicates(_as_points(X))[0], k, backend=backend)


def log_in_place(a) -> np.ndarray:
    """``np.log`` of a float64, C-contiguous copy of ``a``, computed in place.

    numpy chooses between its SIMD and its scalar log call by call: its overlap check
    takes a strided input to reach one stride past its end, so an output that happens
    to be allocated there gets the scalar log. The two differ in the last bit for
    about a fifth of values, and the same distances gave MLE estimates one ulp apart
    from fit to fit. In place on a contiguous copy, the path never changes.

    Examples
    --------
    >>> log_in_place(np.array([[1.0, np.e]]))
    array([[0., 1.]])
    """
    out = np.array(a, dtype=np.float64, order="C")
    return np.log(out, out=out)


def _nearest_columns(neighbors, n_points: int, k: int, who: str) -> tuple[np.ndarray, np.ndarray]:
    """The k + 1 (or k, if that is all) nearest columns of precomputed ``(distances, indices)``.

    The one beyond k gives the interval's shared-neighbour term.
    """
    try:
        distances, indices = neighbors
    except (TypeError, ValueError):
        raise ValueError(
            f"{who}: neighbors must be the pair (distances, indices) that distinct_neighbors returns"
        ) from None
    distances = np.asarray(distances, dtype=np.float64)
    if distances.ndim != 2 or np.shape(indices) != distances.shape:
        raise ValueError(
            f"{who}: neighbors must be two arrays of the same shape (n_points, k), got "
            f"{distances.shape} and {np.shape(indices)}"
        )
    if len(distances) != n_points or distances.shape[1] < k:
        raise ValueError(
            f"{who}: neighbors of {len(distances)} points with {distances.shape[1]} each, but X has "
            f"{n_points} distinct points and {k} neighbours are needed; compute them with "
            f"distinct_neighbors(X, {k}) or a larger k."
        )
    return distances[:, : k + 1], np.asarray(indices)[:, : k + 1]


def _defined_together(cls: type, first: str, second: str) -> bool:
    """Whether the class that gives ``cls`` its method ``first`` also gives it ``second``.

    A subclass that overrides ``_estimate`` alone must not inherit an influence
    computed for its parent's statistic.
    """
    owners = [next((c for c in cls.__mro__ if name in vars(c)), None) for name in (first, second)]
    return owners[1] is not None and owners[0] is owners[1]


class BaseDimension(BaseEstimator):
    """Shared contract of the intrinsic dimension estimators.

    Subclasses declare how many neighbours they need (``_n_neighbors``) and turn the
    distances to them into estimates (``_estimate``). This class validates the input,
    drops exact duplicates, finds the neighbours and scores held-out data the same
    way for every estimator, so that scores are comparable across estimators and
    across their parameters.

    The 95 % interval ``dimension_interval_`` is ``dimension_ +- 1.96
    dimension_std_`` whenever ``_estimate`` sets ``dimension_std_`` and no interval
    of its own. An estimator
    that also defines ``_influence(distances)`` gets a standard error that counts
    shared neighbours instead (:func:`idprops.uncertainty.neighbour_variance`):
    ``distances`` then holds one neighbour more than ``_n_neighbors`` asks for, and
    ``_influence`` returns each point's influence on the estimate (shape ``(n,)``)
    and that influence with each of its first k neighbours left out (``(n, k)``).
    A subclass that overrides ``_estimate`` must override ``_influence`` with it, or
    it falls back to its own ``dimension_std_``.

    Examples
    --------
    A new estimator: the Pareto maximum likelihood of ``mu = T_2 / T_1`` without the
    ``n - 1`` correction (see the plugins guide for packaging it).

    >>> class MeanRatioDimension(BaseDimension):
    ...     def __init__(self, *, n_queries=None, backend="auto", random_state=None):
    ...         self.n_queries = n_queries
    ...         self.backend = backend
    ...         self.random_state = random_state
    ...     def _n_neighbors(self):
    ...         return 2
    ...     def _estimate(self, distances):
    ...         log_mu = log_in_place(distances[:, 1] / distances[:, 0])
    ...         self.dimension_ = float(1 / log_mu.mean())
    >>> from idprops.data import sample_cube
    >>> X = sample_cube(2000, 2, ambient_dim=5, random_state=0)
    >>> est = MeanRatioDimension().fit(X[:1500])
    >>> round(est.dimension_, 1), est.n_samples_fit_
    (1.9, 1500)

    ``score`` comes with the base class: the held-out log-likelihood of ``mu``.

    >>> round(est.score(X[1500:]), 2)
    -0.93
    """

    # ``neighbors`` are data the caller computed for this X, not metadata that a
    # meta-estimator routes: without this, scikit-learn would add a set_fit_request
    # method to every estimator.
    __metadata_request__fit = {"neighbors": metadata_routing.UNUSED}

    _parameter_constraints: dict = {
        "n_queries": [Interval(Integral, 3, None, closed="left"), None],
        "backend": [StrOptions(set(BACKENDS))],
        "random_state": ["random_state"],
    }

    def _n_neighbors(self) -> int:
        raise NotImplementedError

    def _estimate(self, distances: np.ndarray) -> None:
        raise NotImplementedError

    def _check_params(self) -> None:
        """Checks that tie parameters together, beyond ``_parameter_constraints``."""

    def _validate(self, X, reset: bool, ensure_all_finite: bool = True) -> np.ndarray:
        X = as_matrix(X)
        X = validate_data(self, X, reset=reset, dtype=float_dtype(X), ensure_all_finite=False)
        if ensure_all_finite:
            check_finite(X, who=type(self).__name__)
        return X

    def n_neighbors_needed(self) -> int:
        """Neighbours per point this estimator needs, once its parameters are checked.

        Examples
        --------
        >>> from idprops import MLEDimension
        >>> MLEDimension(k=10).n_neighbors_needed()
        10
        """
        self._validate_params()
        self._check_params()
        # numpy integers are accepted as parameters, but faiss takes Python ints only.
        return int(self._n_neighbors())

    def fit(self, X, y=None, *, neighbors=None):
        """Estimate the intrinsic dimension of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), torch tensor or Dataset
            Samples; images are flattened.
        y : None
            Ignored; present for the scikit-learn API.
        neighbors : tuple of (distances, indices), default=None
            Neighbours already found, as :func:`distinct_neighbors` returns them for
            ``X`` with any k of at least :meth:`n_neighbors_needed` (the nearest
            columns are used). The estimate is then the one ``fit(X)`` gives, bit for
            bit, without a search of its own: one search serves several estimators.
            One neighbour more than that gives ``dimension_interval_`` its
            shared-neighbour term, as ``fit(X)`` does; with exactly that many, the
            interval is the estimator's independent-points one.
            Only with ``n_queries=None``, which searches all points.

        Returns
        -------
        self
        """
        k = self.n_neighbors_needed()
        if neighbors is not None and self.n_queries is not None:
            raise ValueError(
                f"{type(self).__name__}: neighbors were given, but n_queries={self.n_queries} "
                "asks for a search of its own from a random subset; pass one or the other."
            )
        # A fit that fails leaves the estimator unfitted (check_is_fitted and score
        # refuse it), whatever attributes an earlier fit left.
        self.__dict__.pop("_fit_X", None)
        X = self._validate(X, reset=True, ensure_all_finite=False)
        # One pass gives the norms the near-duplicate check reads and shows the data
        # finite (a NaN or an infinity makes its row's norm one); the check that
        # locates them, a pass of its own, runs only where a norm is not finite.
        sq_norms = _sq_norms(X)
        if not np.isfinite(sq_norms).all():
            check_finite(X, who=type(self).__name__)
        X_unique, first = drop_duplicates(X)
        n_duplicates = len(X) - len(X_unique)
        if n_duplicates:
            warnings.warn(
                f"{type(self).__name__}: dropped {n_duplicates} exact duplicate "
                f"samples of {len(X)}; they would make neighbour distances zero.",
                DuplicatesWarning,
                stacklevel=2,
            )
        if len(X_unique) < k + 1:
            raise ValueError(
                f"{type(self).__name__} needs at least {k + 1} distinct samples for "
                f"{k} neighbours, got n_samples={len(X_unique)}"
                + (f" after dropping {n_duplicates} duplicates" if n_duplicates else "")
                + "; pass more data or use fewer neighbours."
            )
        # Set before _estimate, which may read them (a plugin's may); _fit_X, which
        # marks the estimator fitted, only once the estimate exists.
        self.n_duplicates_ = n_duplicates
        self.n_samples_fit_ = len(X_unique)
        self.__dict__.pop("dimension_interval_", None)
        # One neighbour more than the estimate needs tells what each point's statistic
        # would be without any one of its neighbours: the interval's shared-neighbour term.
        if neighbors is None:
            distances, indices, rows = self._query_neighbors(X_unique, k + int(len(X_unique) > k + 1))
        else:
            distances, indices = _nearest_columns(neighbors, len(X_unique), k, type(self).__name__)
            rows = None
        # A contiguous copy, as a search of exactly k returns: the estimate is then the same
        # to the last bit (numpy's vector and scalar logs differ there, see log_in_place).
        self._estimate(np.ascontiguousarray(distances[:, :k]))
        # An estimator that sets its own interval (an asymmetric one) keeps it.
        if not hasattr(self, "dimension_interval_"):
            if distances.shape[1] > k and _defined_together(type(self), "_estimate", "_influence"):
                phi, phi_without = self._influence(distances)
                variance = neighbour_variance(phi, phi_without, indices[:, :k], rows)
                if np.isfinite(variance):  # else (an infinite local dimension) the estimator's own
                    self.dimension_std_ = float(np.sqrt(variance))
            if hasattr(self, "dimension_std_"):
                self.dimension_interval_ = normal_interval(self.dimension_, self.dimension_std_)
        self._warn_near_duplicates(sq_norms[first] if rows is None else sq_norms[first[rows]], X.dtype, distances[:, 0])
        self._warn_unresolved()
        self._fit_X = X_unique
        return self

    def _warn_near_duplicates(self, sq_norms: np.ndarray, dtype, nearest: np.ndarray) -> None:
        spacing = np.finfo(dtype).eps * np.sqrt(sq_norms)
        n_near = int(np.count_nonzero(nearest <= NEAR_DUPLICATE_ULPS * spacing))
        if n_near:
            warnings.warn(
                f"{type(self).__name__}: {n_near} of {len(sq_norms)} samples have a neighbour "
                f"within float rounding of them (closer than {NEAR_DUPLICATE_ULPS} x eps "
                f"x their norm, eps = {np.finfo(dtype).eps:.2g} for {np.dtype(dtype)}); their "
                "distances are rounding noise and pull the estimate towards 0. Remove "
                "them, or round the data so that they become exact duplicates.",
                NearDuplicatesWarning,
                stacklevel=3,
            )

    def _warn_unresolved(self) -> None:
        d, limit = self.dimension_, max_resolvable_dimension(self.n_samples_fit_)
        if np.isfinite(d) and d > limit:
            warnings.warn(
                f"{type(self).__name__}: the estimate {d:.3g} is beyond what "
                f"{self.n_samples_fit_} samples can resolve (2 log2(n) = {limit:.3g}, "
                "see UnresolvedDimensionWarning): it says only that the dimension is "
                "high, and the true value may be far higher. Use more samples.",
                UnresolvedDimensionWarning,
                stacklevel=3,
            )

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "_fit_X")

    def _query_neighbors(self, X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The k nearest other points of all points (rows None) or of n_queries rows, and those rows."""
        if self.n_queries is None or self.n_queries >= len(X):
            return (*kneighbors(X, k, backend=self.backend), None)
        rng = check_random_state(self.random_state)
        rows = np.sort(rng.choice(len(X), int(self.n_queries), replace=False))
        distances, indices = kneighbors(X[rows], k + 1, Y=X, backend=self.backend)
        # Each query finds itself among its k + 1 nearest, at distance 0; dropping it
        # by index leaves its k nearest others in order.
        others = np.argsort(indices == rows[:, None], axis=1, kind="stable")[:, :k]
        return np.take_along_axis(distances, others, axis=1), np.take_along_axis(indices, others, axis=1), rows

    def score(self, X, y=None) -> float:
        """Mean log-likelihood of held-out two-nearest-neighbour ratios.

        For each row of ``X``, ``mu = T_2 / T_1`` is computed from its two nearest
        neighbours among the fitted samples (a row equal to a fitted sample is that
        sample: its zero distance is skipped). Under the Pareto law implied by the
        fitted dimension d, ``log p(mu) = log d - (d + 1) log mu``. Higher is better,
        and the yardstick is the same for every estimator and parameter value, which
        is what lets :class:`~sklearn.model_selection.GridSearchCV` compare them.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        float
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        k = min(3, self.n_samples_fit_)
        distances = kneighbors(X, k, Y=self._fit_X, backend=self.backend)[0]
        coincide = distances[:, 0] == 0
        t1 = np.where(coincide, distances[:, 1], distances[:, 0])
        t2 = np.where(coincide, distances[:, -1], distances[:, 1])
        log_mu = log_in_place(t2) - log_in_place(t1)
        d = self.dimension_
        return float(np.mean(np.log(d) - (d + 1) * log_mu))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
