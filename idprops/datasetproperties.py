"""The research code's three functions, for people porting scripts.

Same names, parameters and defaults as the ``datasetproperties`` module of Konz &
Mazurowski's code (ICLR 2024), implemented on idprops' estimators. Differences, all
deliberate:

- K_F is the exact maximum over all pairs of a seeded sample with "labels differ" as
  the numerator (see :class:`~idprops.LabelSharpness` for the two defects this fixes);
- ``device`` defaults to ``"auto"``: the GPU when there is one, the CPU otherwise
  (:func:`compute_labelsharpness` accepts it and leaves the choice to the kNN engine);
- nothing is written to a ``logs/`` folder; ``dataset_name`` and
  ``estimator_batchsize`` are accepted and unused (the kNN engine batches itself), and
  ``batchsize`` only sets how the images are streamed;
- ``estimator="geomle"`` is not implemented and raises.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from .estimators import LabelSharpness, MLEDimension, ReprDimension, TwoNNDimension

if TYPE_CHECKING:
    import torch

__all__ = ["compute_intrinsic_datadim", "compute_intrinsic_reprdim", "compute_labelsharpness"]


def _dimension_estimator(estimator: str, hyperparam_k: int):
    if estimator == "mle":
        return MLEDimension(k=hyperparam_k)
    if estimator == "twonn":
        return TwoNNDimension()
    raise ValueError(
        f"estimator must be 'mle' or 'twonn' (the research code's 'geomle' is not "
        f"implemented in idprops), got {estimator!r}"
    )


def compute_labelsharpness(dataset, batchsize: int = 500, M: int = 1000, device: str | torch.device = "auto") -> float:
    """Label sharpness K_F of a dataset of ``(image, label)`` (paper Sec. 3.2).

    ``device`` is accepted for compatibility; ``batchsize`` sets how images are
    streamed (the exact computation does not pair batches).

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[0.0, 0.0], [0.0, 0.5], [3.0, 0.0]]).reshape(3, 1, 1, 2)
    >>> data = torch.utils.data.TensorDataset(x, torch.tensor([0, 1, 1]))
    >>> compute_labelsharpness(data)
    2.0
    """
    return float(LabelSharpness(M=M, batch_size=batchsize).fit(dataset).sharpness_)


def compute_intrinsic_datadim(
    dataset,
    estimator: str = "mle",
    estimator_batchsize: int = 1000,
    hyperparam_k: int = 20,
    dataset_name: str = "dataset",
) -> float:
    """Intrinsic dimension d_data of a dataset's flattened images (paper Sec. 3.1).

    Examples
    --------
    >>> from idprops.data import load_digits
    >>> round(compute_intrinsic_datadim(load_digits(train=None)), 1)
    6.5
    """
    est = _dimension_estimator(estimator, hyperparam_k)
    return float(est.fit(dataset).dimension_)


def compute_intrinsic_reprdim(
    dataset,
    model,
    layer,
    estimator: str = "mle",
    batchsize: int = 256,
    estimator_batchsize: int = 1000,
    hyperparam_k: int = 20,
    dataset_name: str = "dataset",
    device: str | torch.device = "auto",
) -> float:
    """Intrinsic dimension d_repr of a layer's activations over a dataset.

    As in the research code, an estimate that fails (NaN or infinite dimension) is
    reported (here as a warning) and NaN is returned. The model runs on ``device``
    (``"auto"``: the GPU when there is one, else the CPU) and is moved back after.

    Examples
    --------
    >>> import torch
    >>> from idprops.data import load_digits
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Identity())
    >>> d = compute_intrinsic_reprdim(load_digits(train=None), model, model[1])
    >>> d == compute_intrinsic_datadim(load_digits(train=None))
    True
    """
    inner = _dimension_estimator(estimator, hyperparam_k)
    try:
        est = ReprDimension(model, layer, estimator=inner, batch_size=batchsize, device=device)
        dimension = float(est.fit(dataset).dimension_)
    except (ValueError, OverflowError) as exc:
        warnings.warn(f"d_repr could not be estimated: {exc}", RuntimeWarning, stacklevel=2)
        return float("nan")
    return dimension if np.isfinite(dimension) else float("nan")
