"""Measure one dataset: d_data by several estimators, K_F, and d_repr at chosen layers.

:func:`measure` is the one way a dataset is measured: ``idprops measure`` prints its
result and every study cell records it. Every dimension estimator on the
:class:`~idprops.base.BaseDimension` contract gets its neighbours from ONE search at
the largest k any of them needs (estimates equal to separate fits, bit for bit; to
about 1e-14 on data of 4,096 features or more with few rows per neighbour, where
the largest k takes float64 products' distances and a smaller one measured ones).
K_F (per class, or one masked product of wide inputs: :func:`idprops.neighbors.closest_pair`)
and d_repr (on the activations) search on their own.

An estimate that fails (too few distinct points, a grid, a single class) is recorded
as NaN with a note in ``warnings`` and the others go on; an estimator's warnings (an
estimate beyond what n samples can resolve) are notes there too; a request that cannot be
measured at all (an unknown name, a bad parameter, a misspelt layer, K_F without
labels) raises before anything runs.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..base import BaseDimension, DuplicatesWarning, distinct_neighbors, drop_duplicates
from ..inputs import as_matrix, as_matrix_and_labels, pixel_scale_name
from ..parsing import parse_spec
from ..registry import resolve_estimator
from ..scales import scale_profile
from ..validation import check_activations, check_finite

# The scale profile's largest neighbour rank n1 (ratios to 2 n1): 16 neighbours, about
# what the default MLE's search finds anyway.
PROFILE_MAX_RANK = 8

__all__ = ["measure", "measurement_fields"]


@contextlib.contextmanager
def _warnings_as_notes(quantity: str, notes: list[str]):
    """Record the warnings raised inside as notes ``"quantity: message"``, each once.

    Duplicates are left out: the result counts them. A command line prints notes as
    lines of its own, not as Python warnings with a line of idprops' source. Yields
    the list that holds the messages once the block ends.
    """
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield messages
    kept = (str(w.message) for w in caught if not issubclass(w.category, DuplicatesWarning))
    messages.extend(dict.fromkeys(kept))
    notes.extend(f"{quantity}: {message}" for message in messages)


def _label(spec: Any) -> str:
    if isinstance(spec, str):
        return spec
    return spec.__name__ if isinstance(spec, type) else type(spec).__name__


def _dimension_estimators(estimators: Any) -> dict[str, tuple[str, Any]]:
    """``label -> (name, unfitted estimator)`` from the forms :func:`measure` takes.

    ``estimators`` is one entry or a sequence of them: a registered name, optionally
    with parameters (``"mle:k=10"``, see :func:`idprops.parsing.parse_spec`), a class or
    an instance; or a mapping ``label -> entry``, where an entry may also be a study
    file's step ``{"name": ..., "params": {...}}``. A sequence labels each entry by its
    text (or class name).

    Examples
    --------
    >>> from idprops import TwoNNDimension
    >>> {label: name for label, (name, est) in _dimension_estimators(["mle:k=10", TwoNNDimension()]).items()}
    {'mle:k=10': 'mle', 'TwoNNDimension': 'TwoNNDimension'}
    """
    if isinstance(estimators, (str, type)) or hasattr(estimators, "fit"):
        estimators = [estimators]
    if not isinstance(estimators, Mapping):
        estimators = {_label(spec): spec for spec in estimators}
    out = {}
    for label, spec in estimators.items():
        if isinstance(spec, Mapping):
            name, est = spec["name"], resolve_estimator(spec["name"], **spec.get("params", {}))
        else:
            name = parse_spec(spec)[0] if isinstance(spec, str) else _label(spec)
            est = resolve_estimator(spec)
        out[str(label)] = (name, est)
    return out


def _shares_a_search(est: Any) -> bool:
    return isinstance(est, BaseDimension) and est.n_queries is None


def _estimate_dimensions(X: np.ndarray, estimators: dict[str, tuple[str, Any]], n_distinct: int, notes: list[str]):
    """Fit every estimator, one kNN search per backend for those that can share it."""
    # Parameters are checked here, before any search: a bad one is the caller's error.
    needed = {label: est.n_neighbors_needed() for label, (_, est) in estimators.items() if _shares_a_search(est)}
    searches = []
    by_backend: dict[str, list[str]] = {}
    for label, k in needed.items():
        # An estimator needing more neighbours than there are points fails in its own fit.
        if k < n_distinct:
            by_backend.setdefault(estimators[label][1].backend, []).append(label)
    neighbors: dict[str, tuple] = {}
    for backend, labels in by_backend.items():
        # One neighbour more than the estimates need gives their intervals (BaseDimension.fit),
        # and 2 PROFILE_MAX_RANK the scale profile.
        k = min(max(max(needed[label] for label in labels) + 1, 2 * PROFILE_MAX_RANK), n_distinct - 1)
        t0 = time.perf_counter()
        found = distinct_neighbors(X, k, backend=backend)
        searches.append({"k": k, "backend": backend, "estimators": labels, "seconds": time.perf_counter() - t0})
        neighbors.update(dict.fromkeys(labels, found))
    rows = []
    for label, (name, est) in estimators.items():
        t0 = time.perf_counter()
        fit_params = {"neighbors": neighbors[label]} if label in neighbors else {}
        row = {"label": label, "estimator": name, "params": _plain_params(est)}
        row.update(_fitted(est, X, f"d_data {label}", notes, **fit_params))
        row["duplicates"] = int(getattr(est, "n_duplicates_", len(X) - n_distinct))
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
    profile = _profile(X, neighbors[searches[0]["estimators"][0]], notes) if searches else None
    return rows, searches, profile


def _fitted(est: Any, X: np.ndarray, what: str, notes: list[str], *, check=None, **fit_params: Any) -> dict[str, Any]:
    """``est`` fitted to X: its dimension, std, interval and error (None where it fitted).

    ``check(X)`` runs first where given. A ValueError, a non-finite dimension
    included, goes to ``notes`` under ``what`` and leaves NaN: one estimate that
    cannot be made does not lose the others.
    """
    try:
        with _warnings_as_notes(what, notes):
            if check is not None:
                check(X)
            est.fit(X, **fit_params)
        if not np.isfinite(est.dimension_):
            raise ValueError(f"{type(est).__name__} gave a non-finite dimension ({est.dimension_})")
    except ValueError as exc:
        notes.append(f"{what}: {exc}")
        return {"dimension": math.nan, "std": math.nan, "interval": None, "error": str(exc)}
    return {
        "dimension": float(est.dimension_),
        "std": float(getattr(est, "dimension_std_", math.nan)),
        "interval": _interval(est),
        "error": None,
    }


def _profile(X: np.ndarray, neighbors: tuple, notes: list[str]) -> dict[str, Any] | None:
    """The scale profile (:func:`idprops.scales.scale_profile`) from a shared search, as plain values."""
    k = neighbors[0].shape[1]
    if k < 4:  # fewer than two ranks: no profile
        return None
    max_rank = min(PROFILE_MAX_RANK, 2 ** int(np.log2(k // 2)))
    try:
        profile = scale_profile(X, max_rank=max_rank, neighbors=neighbors)
    except ValueError as exc:
        notes.append(f"scale profile: {exc}")
        return None
    return {
        "ranks": profile.ranks.tolist(),
        "scales": profile.scales.tolist(),
        "dimensions": profile.dimensions.tolist(),
        "variation": profile.variation,
    }


def _interval(est: Any) -> list[float] | None:
    """The estimator's 95 % interval as a list, or None where it has none."""
    interval = getattr(est, "dimension_interval_", None)
    return None if interval is None or not np.all(np.isfinite(interval)) else [float(v) for v in interval]


def _plain_params(est: Any) -> dict[str, Any]:
    # The plugins guide asks only for fit and dimension_, so get_params may be missing.
    params = est.get_params() if hasattr(est, "get_params") else {}
    return {k: v for k, v in params.items() if not hasattr(v, "fit")}


def measure(
    data,
    *,
    estimators: Any = ("mle", "twonn"),
    sharpness: Any = True,
    sharpness_samples: int | None = 1000,
    model: Any = None,
    layers: Sequence[Any] = (),
    repr_estimator: Any = None,
    weights: str | None = None,
    device: str | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Measure the intrinsic properties of a dataset and, optionally, of a network on it.

    Parameters
    ----------
    data : torch Dataset of (image, label), or (X, y) arrays (y may be None)
        The samples, e.g. from :func:`idprops.data.load_dataset`. X holds them as the
        network takes them (images as (N, C, H, W)); the estimators see them flattened.
    estimators : str, class, estimator, or a sequence or mapping of them, default=("mle", "twonn")
        Dimension estimators: a registered name, optionally with parameters
        (``"mle:k=10"``, see :func:`idprops.parsing.parse_spec`), a class or an
        instance; a sequence of them, labelled by their text (or class name), or a
        mapping ``label -> entry``, where an entry may also be a study file's step
        ``{"name": ..., "params": {...}}``. Those on
        :class:`~idprops.base.BaseDimension` share one kNN search.
    sharpness : bool or LabelSharpness, default=True
        Also compute the label sharpness K_F (needs labels); an instance is used as it
        is configured.
    sharpness_samples : int or None, default=1000
        ``M`` of :class:`~idprops.LabelSharpness` when ``sharpness=True`` (None: all).
    model : str, callable or torch.nn.Module, default=None
        Network for d_repr, by registered name or object; with ``layers``.
    layers : sequence of str or Module
        Layers whose activations' dimension is measured, all in one forward pass.
    repr_estimator : str, class or estimator, default=None
        The dimension estimator of the activations, in one of the forms of
        ``estimators``; None: the first of ``estimators``.
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
        ``data`` (samples, distinct samples, duplicates, features, pixel scale,
        classes), ``dimensions`` (a row per estimator: label, estimator, params,
        dimension, std, duplicates, seconds, error), ``searches`` (the shared kNN
        searches: k, backend, estimators, seconds), ``scale_profile`` (ranks,
        scales, dimensions and their relative variation, from the shared search; None
        without one), ``sharpness`` and
        ``representation`` when asked for, ``warnings`` (estimates that failed, and the
        estimators' and K_F's warnings, e.g. an estimate beyond what n samples can
        resolve) and ``seconds``.

    Examples
    --------
    >>> from idprops.data import sample_sphere
    >>> X = sample_sphere(500, 2, random_state=0)
    >>> out = measure((X, np.zeros(500)), estimators=["mle:k=10", "twonn"], sharpness=False)
    >>> [round(row["dimension"]) for row in out["dimensions"]], len(out["searches"])
    ([2, 2], 1)
    """
    start = time.perf_counter()
    # Every name and parameter is checked before the data are read.
    estimators = _dimension_estimators(estimators)
    ks = _sharpness_estimator(sharpness, sharpness_samples, seed)
    if repr_estimator is not None:
        (inner,) = _dimension_estimators([repr_estimator]).values()
    else:
        inner = next(iter(estimators.values()), ("mle", resolve_estimator("mle")))
    if isinstance(data, tuple):
        inputs, y = np.asarray(data[0]), None if data[1] is None else np.asarray(data[1])
        # The estimators take one row per sample, 8-bit pixels in [0, 1] as from any
        # other container; the network takes the images as given.
        X = as_matrix(inputs)
    else:
        inputs = data
        X, y = as_matrix_and_labels(data, progress=progress)
    if ks is not None and y is None:
        raise ValueError("K_F needs labels: pass a labelled dataset or sharpness=False.")
    # Every estimate would fail on them: one error, before any of them runs.
    check_finite(X, name="data")
    pixel_scale = pixel_scale_name(data, X)
    n_distinct = len(drop_duplicates(X)[1])
    notes: list[str] = []
    result: dict[str, Any] = {
        "data": {
            "samples": int(len(X)),
            "distinct": int(n_distinct),
            "duplicates": int(len(X) - n_distinct),
            "features": int(X.shape[1]),
            "pixel_scale": pixel_scale,
            "classes": int(len(np.unique(y))) if y is not None else None,
        },
    }
    with warnings.catch_warnings():
        # The counts are in the result; the warnings would only repeat them.
        warnings.simplefilter("ignore", DuplicatesWarning)
        result["dimensions"], result["searches"], result["scale_profile"] = _estimate_dimensions(
            X, estimators, n_distinct, notes
        )
        if ks is not None:
            result["sharpness"] = _sharpness(ks, X, y, pixel_scale, notes)
        if model is not None and layers:
            result["representation"] = _measure_layers(
                inputs,
                model,
                list(layers),
                weights=weights,
                estimator=inner,
                y=y,
                seed=seed,
                device=device,
                progress=progress,
                notes=notes,
            )
    result["warnings"] = notes
    result["seconds"] = time.perf_counter() - start
    return result


def measurement_fields(result: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a study cell records from :func:`measure`'s result.

    ``d_data`` and ``d_data_std`` (estimator label -> value), ``n_distinct`` (distinct
    training samples), ``K_F`` and ``d_repr`` (layer -> value), each only when measured;
    a failed estimate is NaN (its reason is in ``result["warnings"]``).

    Examples
    --------
    >>> from idprops.data import sample_sphere
    >>> X = sample_sphere(300, 2, random_state=0)
    >>> fields = measurement_fields(measure((X, np.arange(300) % 2), estimators={"twonn": "twonn"}))
    >>> sorted(fields), round(fields["d_data"]["twonn"])
    (['K_F', 'd_data', 'd_data_std', 'n_distinct'], 2)
    """
    out: dict[str, Any] = {"n_distinct": result["data"]["distinct"]}
    if result["dimensions"]:
        out["d_data"] = {row["label"]: row["dimension"] for row in result["dimensions"]}
        out["d_data_std"] = {row["label"]: row["std"] for row in result["dimensions"]}
    if "sharpness" in result:
        out["K_F"] = float(result["sharpness"]["K_F"])
    if "representation" in result:
        out["d_repr"] = {row["layer"]: row["dimension"] for row in result["representation"]["layers"]}
    return out


def _sharpness_estimator(sharpness: Any, samples: int | None, seed: int):
    from ..estimators.sharpness import LabelSharpness

    if sharpness is None or sharpness is False:
        return None
    if sharpness is True:
        return LabelSharpness(M=samples, random_state=seed)
    if not isinstance(sharpness, LabelSharpness):
        raise ValueError(f"sharpness must be True, False or a LabelSharpness, got {sharpness!r}")
    from sklearn.base import clone

    return clone(sharpness)


def _sharpness(ks, X, y, pixel_scale, notes: list[str]) -> dict[str, Any]:
    t0 = time.perf_counter()
    ks._validate_params()  # a bad parameter is the caller's error, not a failed estimate
    with _warnings_as_notes("K_F", notes) as messages:
        try:
            ks.fit(X, y)
        except ValueError as exc:
            error = str(exc)
        else:
            error = None
    if error is not None:
        notes.append(f"K_F: {error}")
        return {"K_F": math.nan, "pixel_scale": pixel_scale, "error": error, "warnings": messages}
    return {
        "K_F": ks.sharpness_,
        "pixel_scale": pixel_scale,
        "samples": ks.n_samples_fit_,
        "pair": [int(i) for i in ks.argmax_pair_],
        "identical_conflicts": ks.n_identical_conflicts_,
        "warnings": messages,
        "error": None,
        "seconds": time.perf_counter() - t0,
    }


def _checkpoint_classes(weights: str) -> int | None:
    """Outputs of the final layer in a state_dict file, or None where there is none.

    The final layer is the last matrix-shaped (Linear) weight, as in every model of the
    zoo. None leaves the file to :func:`idprops.nn.build_model`, whose errors say what is
    wrong with it (missing, not a state_dict, not fitting the model).
    """
    import torch

    from ..nn.models import read_state_dict

    if not os.path.isfile(weights):
        return None
    state = read_state_dict(weights)  # as build_model reads it
    if not isinstance(state, dict):
        return None
    matrices = [value for value in state.values() if torch.is_tensor(value) and value.ndim == 2]
    return int(matrices[-1].shape[0]) if matrices else None


def _build_named_model(data, name: str, *, weights, y, seed):
    from ..nn import build_model, seeded

    if isinstance(data, np.ndarray):
        shape = data.shape[1:]
    elif hasattr(data, "__getitem__"):
        item = data[0]  # (image, label), or an image alone when unlabelled
        shape = tuple((item[0] if isinstance(item, (tuple, list)) else item).shape)
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
    # A random initialisation is part of what is measured, so the seed must fix it,
    # leaving the caller's random streams as they were. The model is built on the CPU.
    with seeded(seed):
        return build_model(name, weights=weights, **kwargs)


def _measure_layers(data, model, layers, *, weights, estimator, y, seed, device, progress, notes):
    from ..activations import collect_activations

    t0 = time.perf_counter()
    if isinstance(model, str):
        name, model = model, _build_named_model(data, model, weights=weights, y=y, seed=seed)
    else:
        name = type(model).__name__
    est_name, inner = estimator
    # One forward pass for every layer; a misspelt layer raises here, naming the layers.
    activations = collect_activations(model, data, layers, device=device, progress=progress)
    rows = []
    for layer, A in activations.items():
        est = resolve_estimator(inner)
        row = {"layer": layer, **_fitted(est, A, f"d_repr {layer}", notes, check=check_activations)}
        if hasattr(est, "n_duplicates_"):
            row["duplicates"] = int(est.n_duplicates_)
        rows.append(row)
    return {
        "model": name,
        "weights": weights or "random initialisation (no --weights given)",
        "estimator": est_name,
        "layers": rows,
        "seconds": time.perf_counter() - t0,
    }
