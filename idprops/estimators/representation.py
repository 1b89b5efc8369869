"""Intrinsic dimension of a network's learned representations at chosen layers."""

from __future__ import annotations

import copy
import warnings
from numbers import Integral
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from .._sklearn_compat import Interval
from ..inputs import torch_kind
from ..registry import resolve_estimator
from ..validation import check_activations
from .mle import MLEDimension

__all__ = ["ReprDimension"]


def _n_input_features(X: Any) -> int:
    """Flattened size of one sample of X as the model sees it."""
    kind = torch_kind(X)
    if kind not in ("dataset", "loader"):  # arrays, tensors, lists, DataFrames
        shape = X.shape if hasattr(X, "shape") else np.shape(X)
        return int(np.prod(shape[1:]))
    data = X.dataset if kind == "loader" else X
    try:
        item = data[0]
    except (TypeError, NotImplementedError, KeyError):  # an IterableDataset
        item = next(iter(data))
    if isinstance(item, (tuple, list)):
        item = item[0]
    return int(np.prod(item.shape if hasattr(item, "shape") else np.shape(item)))


class ReprDimension(BaseEstimator):
    """Intrinsic dimension of a model's activations at one or several layers.

    The data run through the model in batches (eval mode, no gradients; the model
    is left as found); a forward hook stores each batch's full output at the layer
    (no pooling), flattened per sample, and an inner dimension estimator is fitted
    on these activations (see :func:`idprops.activations.collect_activations`).
    Several layers cost one forward pass.

    The default inner estimator, ``MLEDimension()`` (MLE with k = 20), is the API
    default of the label-sharpness research code (Konz & Mazurowski, ICLR 2024,
    ``compute_intrinsic_reprdim``). The paper's own experiments instead used
    TwoNN (``estimator="twonn"``) on the penultimate layer (ResNet ``"layer4"``,
    VGG ``"classifier.3"``) of the trained model in eval mode. Where the research
    code printed the error and returned NaN when an estimate failed, this class
    raises the inner estimator's ``ValueError``, prefixed by the layer's name.

    Parameters
    ----------
    model : torch.nn.Module
        The network. It is not modified (its training flags and device are
        restored after each pass); :func:`sklearn.base.clone` deep-copies it.
    layer : str, torch.nn.Module, or list of them
        Where to measure: a dotted name (``"layer4"``, ``"classifier.3"``,
        ``"blocks.0.attn"``) or a submodule of ``model``. Give names when the
        estimator will be cloned (``GridSearchCV``, ``cross_val_score``): a module
        object given in a parameter grid belongs to the original model, not to the
        clone's copy. A list measures every layer from one forward pass.
    estimator : str, estimator class or instance, default=None
        The inner dimension estimator: a registered name (``"mle"``, ``"twonn"``,
        plugins), a class, or an instance (cloned, never fitted in place). None
        means ``MLEDimension()``.
    batch_size : int, default=256
        Samples per forward pass (a DataLoader keeps its own).
    device : str or torch.device, default=None
        Where the model runs; None: where its parameters are; ``"auto"``: the GPU
        when torch sees one, else the CPU.
    progress : bool, default=None
        Progress bar over batches; None shows one on a terminal.

    Attributes
    ----------
    dimension_ : float, or dict of str to float
        The estimate; with a list of layers, layer name to estimate.
    dimension_std_ : float, or dict of str to float
        The inner estimator's ``dimension_std_`` (NaN if it has none).
    dimension_interval_ : tuple of float, or dict of str to tuple
        The inner estimator's 95 % interval (NaNs if it has none).
    estimator_ : estimator
        The fitted inner estimator (single layer only).
    estimators_ : dict of str to estimator
        Layer name to fitted inner estimator (list of layers only).
    layer_names_ : list of str
        The dotted names of the measured layers.
    n_features_in_ : int
        Flattened size of one input sample.

    See Also
    --------
    idprops.activations.collect_activations : the activations themselves.

    Examples
    --------
    A linear layer of rank 3 applied to a 5-cube sees a 3-dimensional set:

    >>> import torch
    >>> from idprops.data.manifolds import sample_cube
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(
    ...     torch.nn.Linear(10, 3, bias=False), torch.nn.Linear(3, 20))
    >>> X = sample_cube(1000, 5, ambient_dim=10, random_state=0)
    >>> est = ReprDimension(model, "1", "twonn").fit(X)
    >>> round(est.dimension_)
    3
    >>> est = ReprDimension(model, ["0", "1"], "twonn").fit(X)
    >>> {name: round(d) for name, d in est.dimension_.items()}
    {'0': 3, '1': 3}
    """

    _parameter_constraints: dict = {
        "model": "no_validation",  # checked by resolve_layer in fit
        "layer": "no_validation",
        "estimator": "no_validation",  # checked by resolve_estimator in fit
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": "no_validation",
        "progress": ["boolean", None],
    }

    def __init__(
        self,
        model,
        layer,
        estimator=None,
        *,
        batch_size: int = 256,
        device=None,
        progress: bool | None = None,
    ) -> None:
        self.model = model
        self.layer = layer
        self.estimator = estimator
        self.batch_size = batch_size
        self.device = device
        self.progress = progress

    def __sklearn_clone__(self):
        # Model and layer are copied together, so that a layer given as a module
        # is the copy inside the copied model rather than a detached duplicate.
        params = {
            name: clone(value, safe=False)
            for name, value in self.get_params(deep=False).items()
            if name not in ("model", "layer")
        }
        model, layer = copy.deepcopy((self.model, self.layer))
        return type(self)(model, layer, **params)

    def _activations(self, X, layers) -> dict[str, np.ndarray]:
        # Imported here so that importing the estimators does not import torch.
        from ..activations import collect_activations

        return collect_activations(
            self.model,
            X,
            layers,
            batch_size=self.batch_size,
            device=self.device,
            progress=self.progress,
        )

    def _inner(self):
        if self.estimator is None:
            return MLEDimension()
        return resolve_estimator(self.estimator)

    def _fit_layer(self, name: str, A: np.ndarray):
        est = self._inner()
        # The inner estimator's warnings and errors are re-raised with the layer's
        # name: with many layers, "dropped 30 duplicates" alone does not say where.
        error = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                check_activations(A)
                est.fit(A)
            except ValueError as exc:
                error = exc
        for w in caught:
            warnings.warn(f"layer {name!r}: {w.message}", w.category, stacklevel=3)
        if error is not None:
            raise ValueError(f"layer {name!r}: {error}") from error
        if not np.isfinite(est.dimension_):
            raise ValueError(
                f"layer {name!r}: {type(est).__name__} gave a non-finite dimension "
                f"({est.dimension_}); check the activations (constant? too few samples?)."
            )
        return est

    def fit(self, X, y=None):
        """Estimate the intrinsic dimension of X's activations at the layer(s).

        Parameters
        ----------
        X : array-like, torch.Tensor, torch Dataset or DataLoader
            Model inputs; a Dataset or DataLoader may yield ``(x, label)`` pairs.
        y : None
            Ignored; present for the scikit-learn API.

        Returns
        -------
        self
        """
        self._validate_params()
        many = isinstance(self.layer, (list, tuple))
        layers = list(self.layer) if many else [self.layer]
        if not layers:
            raise ValueError("layer is an empty list; name at least one layer.")
        activations = self._activations(X, layers)
        estimators = {}
        for name, A in activations.items():  # a loop, so that warnings point at the caller
            estimators[name] = self._fit_layer(name, A)
        for stale in ("estimator_", "estimators_"):  # from a fit with the other form
            self.__dict__.pop(stale, None)
        self.layer_names_ = list(estimators)
        self.n_features_in_ = _n_input_features(X)
        dims = {name: float(est.dimension_) for name, est in estimators.items()}
        stds = {name: float(getattr(est, "dimension_std_", np.nan)) for name, est in estimators.items()}
        intervals = {
            name: tuple(getattr(est, "dimension_interval_", (np.nan, np.nan))) for name, est in estimators.items()
        }
        if many:
            self.estimators_ = estimators
            self.dimension_, self.dimension_std_, self.dimension_interval_ = dims, stds, intervals
        else:
            (name,) = estimators
            self.estimator_ = estimators[name]
            self.dimension_, self.dimension_std_ = dims[name], stds[name]
            self.dimension_interval_ = intervals[name]
        return self

    def score(self, X, y=None) -> float:
        """The inner estimator's score of X's activations.

        With one layer, the fitted inner estimator's ``score`` on X's activations
        (for the built-in estimators: the mean held-out log-likelihood of
        two-nearest-neighbour ratios, see :meth:`idprops.base.BaseDimension.score`).
        With a list of layers, the mean of the per-layer scores, from one forward
        pass.

        Parameters
        ----------
        X : array-like, torch.Tensor, torch Dataset or DataLoader
            Model inputs with the same sample size as in ``fit``.
        y : None
            Ignored.

        Returns
        -------
        float
        """
        check_is_fitted(self)
        n_features = _n_input_features(X)
        if n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        estimators = getattr(self, "estimators_", None) or {self.layer_names_[0]: self.estimator_}
        activations = self._activations(X, self.layer_names_)
        scores = []
        for name, A in activations.items():
            try:
                scores.append(estimators[name].score(A))
            except ValueError as exc:
                raise ValueError(f"layer {name!r}: {exc}") from exc
        return float(np.mean(scores))
