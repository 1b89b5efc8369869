"""Measure one dataset: d_data by several estimators, K_F, and d_repr at chosen layers."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..base import DuplicatesWarning, as_matrix_and_labels
from ..registry import resolve_estimator

__all__ = ["measure"]


def _name(spec: Any) -> str:
    if isinstance(spec, str):
        return spec
    return spec.__name__ if isinstance(spec, type) else type(spec).__name__


def measure(
    data,
    *,
    estimators: Sequence[Any] = ("mle", "twonn"),
    sharpness: bool = True,
    sharpness_samples: int | None = 1000,
    model: Any = None,
    layers: Sequence[Any] = (),
    weights: str | None = None,
    device: str | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Measure the intrinsic properties of a dataset and, optionally, of a network on it.

    Parameters
    ----------
    data : torch Dataset of (image, label), or (X, y) arrays
        The samples, e.g. from :func:`idprops.data.load_dataset`. X holds them as the
        network takes them (images as (N, C, H, W)); the estimators see them flattened.
    estimators : sequence of str, class or estimator, default=("mle", "twonn")
        Dimension estimators, by registered name (plugins included) or object.
    sharpness : bool, default=True
        Also compute the label sharpness K_F (needs labels).
    sharpness_samples : int or None, default=1000
        ``M`` of :class:`~idprops.LabelSharpness` (None: the whole set).
    model : str, callable or torch.nn.Module, default=None
        Network for d_repr, by registered name or object; with ``layers``.
    layers : sequence of str or Module
        Layers whose activations' dimension is measured, all in one forward pass.
    weights : str, default=None
        Local state_dict file for a model given by name (its number of classes is the
        checkpoint's, not the data's); random init otherwise.
    device : str, default=None
        Torch device for the network; ``"auto"`` is the GPU when there is one, else the
        CPU; None runs it where it is (the CPU for a model given by name).
    seed : int, default=0
        Seed of K_F's sample and of the random initialisation of a model given by name
        (torch's global random stream is not reseeded).
    progress : bool, default=None
        Progress bars; ``None`` shows them on a terminal.

    Returns
    -------
    dict
        ``data`` (samples, features, pixel scale, duplicates), ``dimensions`` (one entry
        per estimator), ``sharpness``, ``representation`` and ``seconds``.

    Examples
    --------
    >>> from idprops.data import sample_sphere
    >>> X = sample_sphere(500, 2, random_state=0)
    >>> out = measure((X, np.zeros(500)), sharpness=False)
    >>> [round(row["dimension"]) for row in out["dimensions"]]
    [2, 2]
    """
    start = time.perf_counter()
    if isinstance(data, tuple):
        inputs, y = np.asarray(data[0]), np.asarray(data[1])
        # The estimators take one row per sample; the network takes the images as given.
        X = inputs.reshape(len(inputs), -1)
    else:
        inputs = data
        X, y = as_matrix_and_labels(data, progress=progress)
    pixel_scale = getattr(data, "pixel_scale", "as given")
    result: dict[str, Any] = {
        "data": {
            "samples": int(len(X)),
            "features": int(X.shape[1]),
            "pixel_scale": pixel_scale,
            "classes": int(len(np.unique(y))) if y is not None else None,
        },
        "dimensions": [],
    }

    for spec in estimators:
        est = resolve_estimator(spec)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            # The count is reported in the table; the warning would only repeat it.
            warnings.simplefilter("ignore", DuplicatesWarning)
            est.fit(X)
        result["dimensions"].append(
            {
                "estimator": _name(spec),
                "params": {k: v for k, v in est.get_params().items() if not hasattr(v, "fit")},
                "dimension": est.dimension_,
                "std": getattr(est, "dimension_std_", None),
                "duplicates": getattr(est, "n_duplicates_", 0),
                "seconds": time.perf_counter() - t0,
            }
        )

    if sharpness:
        from ..estimators.sharpness import LabelSharpness

        if y is None:
            raise ValueError("K_F needs labels: pass a labelled dataset or sharpness=False.")
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ks = LabelSharpness(M=sharpness_samples, random_state=seed).fit(X, y)
        result["sharpness"] = {
            "K_F": ks.sharpness_,
            "pixel_scale": pixel_scale,
            "samples": ks.n_samples_fit_,
            "pair": [int(i) for i in ks.argmax_pair_],
            "identical_conflicts": ks.n_identical_conflicts_,
            "warnings": [str(w.message) for w in caught],
            "seconds": time.perf_counter() - t0,
        }

    if model is not None and layers:
        result["representation"] = _measure_layers(
            inputs,
            model,
            list(layers),
            weights=weights,
            estimator=estimators[0],
            y=y,
            seed=seed,
            device=device,
            progress=progress,
        )
    result["seconds"] = time.perf_counter() - start
    return result


def _checkpoint_classes(weights: str) -> int | None:
    """Outputs of the final layer in a state_dict file, or None where there is none.

    The final layer is the last matrix-shaped (Linear) weight, as in every model of the
    zoo. None leaves the file to :func:`idprops.nn.build_model`, whose errors say what is
    wrong with it (missing, not a state_dict, not fitting the model).
    """
    import torch

    from ..nn.models import _read_state_dict

    if not os.path.isfile(weights):
        return None
    state = _read_state_dict(weights)  # as build_model reads it
    if not isinstance(state, dict):
        return None
    matrices = [value for value in state.values() if torch.is_tensor(value) and value.ndim == 2]
    return int(matrices[-1].shape[0]) if matrices else None


def _measure_layers(data, model, layers, *, weights, estimator, y, seed, device, progress):
    from ..estimators.representation import ReprDimension
    from ..nn import build_model, seeded

    t0 = time.perf_counter()
    if isinstance(model, str):
        if isinstance(data, np.ndarray):
            shape = data.shape[1:]
        elif hasattr(data, "__getitem__"):
            shape = tuple(data[0][0].shape)  # a Dataset of (image, label)
        else:
            shape = None
        kwargs = {}
        if shape is not None and len(shape) == 3:
            kwargs = {"in_channels": shape[0], "input_size": shape[1:]}
        # A checkpoint keeps its classes however the data were subset and relabelled:
        # a 10-class network can be measured on classes 3 and 5 alone.
        num_classes = _checkpoint_classes(weights) if weights is not None else None
        if num_classes is None and y is not None:
            num_classes = int(np.max(y)) + 1
        if num_classes is not None:
            kwargs["num_classes"] = num_classes
        name = model
        # A random initialisation is part of what is measured, so the seed must fix it,
        # leaving the caller's random streams as they were. The model is built on the CPU.
        with seeded(seed):
            model = build_model(model, weights=weights, **kwargs)
    else:
        name = type(model).__name__
    est = ReprDimension(model, layers, estimator=estimator, device=device, progress=progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicatesWarning)
        est.fit(data)
    return {
        "model": name,
        "weights": weights or "random initialisation (no --weights given)",
        "estimator": _name(estimator),
        "layers": [
            {"layer": layer, "dimension": est.dimension_[layer], "std": est.dimension_std_[layer]}
            for layer in est.dimension_
        ],
        "seconds": time.perf_counter() - t0,
    }
