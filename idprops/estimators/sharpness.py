"""Label sharpness K_F: how close two differently labelled inputs can be."""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from .._sklearn_compat import Interval, StrOptions
from ..base import group_identical_rows
from ..inputs import as_matrix_and_labels, pixel_scale_name, to_numpy, torch_kind
from ..neighbors import BACKENDS, closest_pair, float_dtype
from ..validation import check_finite

__all__ = ["IdenticalConflictsWarning", "LabelSharpness"]


class IdenticalConflictsWarning(UserWarning):
    """Identical inputs carry different labels, so label sharpness is infinite.

    Examples
    --------
    >>> import warnings
    >>> X = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     est = LabelSharpness().fit(X, [0, 1, 1])
    >>> caught[0].category.__name__, est.sharpness_, est.argmax_pair_
    ('IdenticalConflictsWarning', inf, (0, 1))
    """


def _n_rows(obj) -> int | None:
    shape = getattr(obj, "shape", None)
    if shape is not None:
        return shape[0] if len(shape) else None
    return len(obj) if hasattr(obj, "__len__") and not isinstance(obj, str) else None


def _identical_conflicts(X: np.ndarray, codes: np.ndarray) -> tuple[int, tuple[int, int] | None]:
    """Pairs of identical rows with different labels: their number and one of them.

    The pair returned is (first row of a group of identical rows, first row of that
    group with another label), from the group that appears first.
    """
    first, group = group_identical_rows(X)
    size = np.bincount(group, minlength=len(first))
    shared = size[group] > 1
    if not shared.any():
        return 0, None
    # Counted over the (group, label) pairs that occur: a table of all of them would
    # take groups x classes, over 10 GB for a million distinct images in 1,000 classes.
    key = group[shared].astype(np.int64) * (int(codes.max()) + 1) + codes[shared]
    size_by_label = np.unique(key, return_counts=True)[1]
    # All pairs inside a group of identical rows, minus those sharing a label.
    n_pairs = int((size * (size - 1)).sum() - (size_by_label * (size_by_label - 1)).sum()) // 2
    if n_pairs == 0:
        return 0, None
    # A group has a conflict exactly when one of its rows differs from its first row's label.
    differing = np.flatnonzero(codes != codes[first[group]])
    row = differing[np.lexsort((differing, first[group[differing]]))[0]]
    return n_pairs, (int(first[group[row]]), int(row))


def _inverse(distance: float, what: str) -> float:
    """1 / distance: inf for 0 (identical inputs), refused where it leaves the floats.

    A distance below 1 / (the largest float), about 5.6e-309, is not 0, so its
    inverse is not infinite, but float64 cannot hold it.
    """
    if distance == 0:
        return np.inf
    with np.errstate(over="ignore"):
        inverse = float(1.0 / np.float64(distance))
    if np.isinf(inverse):
        raise ValueError(
            f"the closest differently labelled inputs are {distance:.3g} apart, so {what} "
            f"(1 / {distance:.3g}) is beyond the largest float ({np.finfo(np.float64).max:.3g}); "
            "rescale the inputs (K_F scales as 1 / the scale of the inputs) and scale K_F back."
        )
    return inverse


def _encode_labels(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The classes in ``y`` and each label's class number, for class labels only."""
    try:
        continuous = type_of_target(y) == "continuous"
        classes, codes = np.unique(y, return_inverse=True)
    except TypeError as err:  # e.g. None beside strings
        raise ValueError(
            f"the labels mix types that cannot be ordered ({err}); pass labels of one type, without missing values."
        ) from err
    if continuous:
        raise ValueError(
            "y looks continuous (non-integer numbers), but K_F compares class labels: "
            "every distinct value would count as a class. Pass class labels."
        )
    return classes, codes.ravel()


def _map_style(X) -> bool:
    """Whether X is a torch Dataset read item by item (only the drawn items are read).

    An IterableDataset can only be read whole, as a DataLoader is.
    """
    if torch_kind(X) != "dataset":
        return False
    from torch.utils.data import IterableDataset

    return not isinstance(X, IterableDataset)


class LabelSharpness(BaseEstimator):
    """Label sharpness K_F, the empirical Lipschitz constant of the labelling.

    Konz & Mazurowski (ICLR 2024, Sec. 3.2) define::

        K_F = max over pairs j != k of |f(x_j) - f(x_k)| / ||x_j - x_k||_2

    for a labelling f. With class labels the numerator is 1 when the labels differ
    and 0 otherwise, so K_F = 1 / (the smallest Euclidean distance between two
    inputs of different classes), for any number of classes. ``fit`` computes it
    exactly over all pairs of a sample of ``M`` inputs with the kNN engine
    (:func:`idprops.neighbors.closest_pair`): the inputs of each class are searched
    against those of the classes after it, which visits every differently labelled
    pair once and never enumerates pairs; wide inputs (images of 4,096 values or
    more, up to about 5,800 of them) are multiplied by each other once instead.

    K_F scales as 1 / (pixel range), so images get one scale whatever their
    container: 8-bit images (uint8 arrays or tensors, PIL images, a Dataset or a
    folder of PNG files) are divided by 255 and 16-bit ones by 65535, as
    torchvision's ``ToTensor`` does, and floating-point inputs are used as given
    (see :mod:`idprops.inputs`). The paper's definition assumes pixels in [0, 1];
    its Figure 1 values (around 1e-4) are on its own preprocessing scale, each
    image rescaled to [0, 255] by its maximum and resized to 224 x 224, which the
    ``scale="paper"`` preset of :mod:`idprops.data` reproduces. Always report K_F
    with its scale, ``pixel_scale_``.

    Identical inputs with different labels make K_F infinite: that is reported as
    ``inf`` with a warning that counts them, not as an error. Identical inputs with
    the same label change nothing.

    Divergences from the research code (``compute_labelsharpness``), which we do
    not copy:

    (a) It pairs the i-th images of two shuffled loaders over the M images, so it
        sees about M^2 / batchsize random pairs (2,000 of ~500,000 at the
        defaults): its K_F is a noisy lower bound of the maximum over the sample.
        Here the maximum is exact over all pairs of the sample.
    (b) Its multi-class test inspects the ``(image, label)`` tuple instead of the
        label, so it always takes its multi-class branch, whose numerator is 1 when
        the labels are *equal*. Here the numerator is "labels differ" for any
        number of classes, as in the definition. Values printed by the research
        code are therefore not comparable number for number.

    Its sampling is also unseeded; here it is seeded by default.

    Parameters
    ----------
    M : int or None, default=1000
        Inputs drawn uniformly at random without replacement, as in the research
        code. ``None``, or ``M`` at least the number of inputs, uses them all. From
        a torch Dataset only the drawn items are read (a DataLoader is read whole).
    random_state : int, RandomState or None, default=0
        Seed for the draw.
    backend : {"auto", "faiss", "faiss-gpu", "torch"}, default="auto"
        kNN backend, see :func:`idprops.neighbors.kneighbors`.
    batch_size : int, default=256
        Items per batch when reading a torch Dataset.

    Attributes
    ----------
    sharpness_ : float
        K_F of the sample; ``inf`` when identical inputs have different labels.
    min_distance_ : float
        Distance between the closest differently labelled pair, 1 / ``sharpness_``.
    argmax_pair_ : tuple of (int, int)
        Row numbers in the original input (not in the sample), smaller first, of a
        pair attaining K_F, so the two images can be looked at. Rows are counted
        in the order the data were read. Among tied pairs one is chosen
        deterministically.
    sample_indices_ : ndarray of shape (``n_samples_fit_``,)
        Rows of the original input that were sampled, ascending.
    n_samples_fit_ : int
        Size of the sample.
    n_features_in_ : int
    classes_ : ndarray
        Distinct labels in the sample.
    n_identical_conflicts_ : int
        Pairs of identical inputs in the sample with different labels.
    pixel_scale_ : str
        The scale K_F is on: a dataset's own ``pixel_scale`` (idprops datasets
        carry one, e.g. ``"paper: per-image max to 255, 224x224"``), else
        ``"unit [0, 1]"`` when every value of the sample lies in [0, 1] (8-bit
        images always do) or ``"as given [min, max]"``; see
        :func:`idprops.inputs.pixel_scale_name`.

    See Also
    --------
    idprops.data.transforms.PaperScale : The paper's pixel scale.

    Examples
    --------
    >>> X = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [3.0, 2.0]])
    >>> est = LabelSharpness().fit(X, [0, 0, 1, 1])
    >>> est.argmax_pair_, est.min_distance_, est.sharpness_
    ((1, 3), 2.0, 0.5)
    >>> est
    LabelSharpness() [K_F on pixel scale as given [0, 4]]

    A held-out point of class 0 at distance 1 from a fitted point of class 1:

    >>> est.score([[0.0, 3.0]], [0])
    -1.0
    """

    _parameter_constraints: dict = {
        "M": [Interval(Integral, 2, None, closed="left"), None],
        "random_state": ["random_state"],
        "backend": [StrOptions(set(BACKENDS))],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        M: int | None = 1000,
        *,
        random_state=0,
        backend: str = "auto",
        batch_size: int = 256,
    ) -> None:
        self.M = M
        self.random_state = random_state
        self.backend = backend
        self.batch_size = batch_size

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:
        # K_F is only meaningful with its pixel scale, so a fitted estimator names it
        # wherever it is printed (notebooks, logs, GridSearchCV's best_estimator_).
        text = super().__repr__(N_CHAR_MAX)
        scale = getattr(self, "pixel_scale_", None)
        return text if scale is None else f"{text} [K_F on pixel scale {scale}]"

    def _read(self, X, y, rows=None, reset: bool = True):
        """Matrix and labels of ``X`` (only ``rows`` of a torch Dataset), validated
        (``reset``: the features are taken as the fit's, as scikit-learn's ``validate_data``)."""
        if rows is not None:
            from torch.utils.data import Subset

            X = Subset(X, rows.tolist())
        X, labels = as_matrix_and_labels(X, batch_size=self.batch_size)
        if y is None:
            y = labels
        else:
            # Through to_numpy: numpy reads neither a tensor on the GPU nor one requiring grad.
            y = to_numpy(y, "y")
            if rows is not None:
                y = y[rows]
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None: "
                "pass one class label per sample, or a torch Dataset of (image, label)."
            )
        n_X, n_y = _n_rows(X), _n_rows(y)
        if n_X is not None and n_y is not None and n_X != n_y:
            raise ValueError(f"y has {n_y} labels but X has {n_X} samples; pass one label per sample.")
        X, y = validate_data(self, X, y, reset=reset, dtype=float_dtype(X), ensure_all_finite=False)
        check_finite(X, who=type(self).__name__)
        return X, y

    def _draw(self, n: int) -> np.ndarray:
        if self.M is None or self.M >= n:
            return np.arange(n)
        rng = check_random_state(self.random_state)
        return np.sort(rng.choice(n, self.M, replace=False))

    def fit(self, X, y=None):
        """Compute K_F exactly over all pairs of a sample of ``M`` inputs.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...), torch tensor, Dataset or DataLoader
            Inputs; images are flattened. A Dataset or DataLoader of
            ``(image, label)`` also provides the labels.
        y : array-like of shape (n_samples,), default=None
            Class labels; taken from ``X`` when it is a labelled Dataset.

        Returns
        -------
        self
        """
        self._validate_params()
        # A fit that fails leaves the estimator unfitted, not holding parts of two fits.
        self.__dict__.pop("_fit_X", None)
        if y is not None and _n_rows(y) is None:
            raise ValueError(f"y is {type(y).__name__} {y!r}, not a sequence of labels; pass one label per sample.")
        if _map_style(X):
            n_input = len(X)
            if y is not None and _n_rows(y) != n_input:
                raise ValueError(
                    f"y has {_n_rows(y)} labels but the dataset has {n_input} items; pass one "
                    "label per item, or y=None to use the dataset's labels."
                )
            rows = self._draw(n_input)
            X_s, y_s = self._read(X, y, rows=rows)
        else:
            X_all, y_all = self._read(X, y)
            n_input = len(X_all)
            rows = self._draw(n_input)
            # All of them (M=None or M >= n): no copy of what may be gigabytes of images.
            X_s, y_s = (X_all, y_all) if len(rows) == n_input else (X_all[rows], y_all[rows])
        classes, codes = _encode_labels(y_s)
        if len(classes) < 2:
            drawn = f" drawn at random from {n_input} (M={self.M})" if len(rows) < n_input else ""
            raise ValueError(
                f"only one class ({classes[0]!r}) among the {len(rows)} "
                f"samples{drawn}; label sharpness needs inputs of at least two different "
                "classes: pass labelled data of two or more classes" + (", or a larger M." if drawn else ".")
            )

        self.sample_indices_ = rows
        self.n_samples_fit_ = len(rows)
        self.classes_ = classes
        self.pixel_scale_ = pixel_scale_name(X, X_s)
        self.n_identical_conflicts_, pair = _identical_conflicts(X_s, codes)
        if pair is not None:
            warnings.warn(
                f"{type(self).__name__}: {self.n_identical_conflicts_} pairs of identical "
                "inputs have different labels, so K_F is infinite; look at argmax_pair_ "
                "for one of them.",
                IdenticalConflictsWarning,
                stacklevel=2,
            )
            distance = 0.0
        else:
            distance, pair = closest_pair(X_s, codes, backend=self.backend)
        self.min_distance_ = float(distance)
        self.argmax_pair_ = tuple(int(i) for i in self.sample_indices_[list(pair)])
        self.sharpness_ = _inverse(distance, "K_F")
        self._fit_X, self._fit_y = X_s, y_s
        return self

    def score(self, X, y=None) -> float:
        """Minus K_F over the pairs of one held-out and one fitted input.

        For each row of ``X``, the nearest fitted input with a different label is
        found; the score is ``-1 / (the smallest such distance)``, so a smoother
        labelling scores higher. All of ``X`` is used (``M`` does not apply). A
        fitted input's own label is the same, so training data need no special
        case; but a held-out input identical to a fitted one with another label
        gives ``-inf``.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...), torch tensor, Dataset or DataLoader
        y : array-like of shape (n_samples,), default=None
            Class labels; taken from ``X`` when it is a labelled Dataset.

        Returns
        -------
        float
        """
        check_is_fitted(self)
        X, y = self._read(X, y, reset=False)
        classes, _ = _encode_labels(y)
        if not np.isin(classes, self.classes_).any():
            warnings.warn(
                f"none of y's labels (first: {classes[:5].tolist()}) is among the fitted "
                f"classes_ (first: {self.classes_[:5].tolist()}), so every fitted input "
                "counts as differently labelled; were the labels encoded the same way?",
                UserWarning,
                stacklevel=2,
            )
        smallest, _ = closest_pair(X, y, Y=self._fit_X, Y_groups=self._fit_y, backend=self.backend)
        return -_inverse(smallest, "the score")

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "_fit_X")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.allow_nan = False
        return tags
