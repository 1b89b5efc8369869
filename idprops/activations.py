"""Forward hooks: the activations of one or many layers of a model, in one pass.

Layers are addressed by module object or by dotted name (``"layer4"``,
``"classifier.3"``, ``"blocks.0.attn"``; ``"classifier[3]"`` is read as
``"classifier.3"``). :func:`capture` is the one place where hooks are registered
and removed; :func:`collect_activations` runs a dataset through the model with it,
in eval mode and without gradients, and leaves the model as it found it.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from numbers import Integral
from typing import Any

import numpy as np
import scipy.sparse
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .model_errors import explaining_input_errors
from .utils import progress_bar

__all__ = ["capture", "collect_activations", "resolve_layer"]

Layer = str | nn.Module


# Layer names listed in an error; a model with more (a ResNet-50 has 150) is cut there.
_LISTED_LAYERS = 80


def _layer_names_hint(model: nn.Module, name: str | None = None) -> str:
    names = [n for n, _ in model.named_modules() if n]
    if not names:
        return "the model has no submodules; pass the model itself or the name ''"
    close = difflib.get_close_matches(name, names, n=5) if name else []
    listed = ", ".join(repr(n) for n in names[:_LISTED_LAYERS])
    more = f", ... ({len(names)} in all)" if len(names) > _LISTED_LAYERS else ""
    hint = f"its layers: {listed}{more}"
    return f"close names: {', '.join(repr(n) for n in close)}; {hint}" if close else hint


def resolve_layer(model: nn.Module, layer: Layer) -> tuple[str, nn.Module]:
    """Find a layer of ``model`` and its dotted name.

    Parameters
    ----------
    model : torch.nn.Module
    layer : str or torch.nn.Module
        A dotted name as in ``model.named_modules()`` (integer parts index
        ``Sequential`` and ``ModuleList`` children; ``"a[3]"`` is read as ``"a.3"``;
        ``""`` is the model itself), or a module object inside ``model``, found by
        identity.

    Returns
    -------
    name : str
        The dotted name (for a module object, its first name in
        ``model.named_modules()``).
    module : torch.nn.Module

    Raises
    ------
    ValueError
        If no such layer is in ``model``; the message lists a few valid names.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
    >>> resolve_layer(model, "0")
    ('0', Linear(in_features=3, out_features=4, bias=True))
    >>> resolve_layer(model, model[1])[0]
    '1'
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, module
        raise ValueError(
            f"the {type(layer).__name__} given as layer is not a submodule of the model. "
            "If the model was copied (sklearn's clone does so, e.g. inside GridSearchCV "
            "or cross_val_score), give the layer by name instead; " + _layer_names_hint(model)
        )
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module or a dotted name, got {type(layer).__name__}")
    # "features[3]" is "features.3", and "[2]" (a top-level Sequential) is "2".
    name = re.sub(r"\[(\d+)\]", r".\1", re.sub(r"^\[(\d+)\]", r"\1", layer))
    try:
        return name, model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"the model has no layer named {layer!r}; " + _layer_names_hint(model, name)) from None


def _as_layer_list(layers: Layer | Sequence[Layer]) -> list[Layer]:
    return list(layers) if isinstance(layers, (list, tuple)) else [layers]


@contextmanager
def capture(model: nn.Module, layers: Layer | Sequence[Layer]) -> Iterator[dict[str, list[np.ndarray]]]:
    """Record the outputs of layers during whatever forward passes run inside.

    Each call of a hooked layer appends its output, detached, flattened per sample
    (``(batch, features)``), copied to the CPU (float64 outputs as float64, others as
    float32), to the list under the
    layer's name. A layer returning a tuple or list is recorded by its first
    element (e.g. the output of ``nn.MultiheadAttention`` without its weights, or
    of an LSTM without its state). The hooks are removed on leaving, also when
    the forward pass raised. The model's mode, device and gradient state are left
    to the caller.

    Parameters
    ----------
    model : torch.nn.Module
    layers : str, torch.nn.Module or list of them
        See :func:`resolve_layer`.

    Yields
    ------
    dict
        Layer name to the list of recorded batches, filled as forward passes run.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> with capture(model, "0") as store:
    ...     _ = model(torch.zeros(3, 2, 2))
    >>> [a.shape for a in store["0"]]
    [(3, 4)]
    """
    modules = dict(resolve_layer(model, layer) for layer in _as_layer_list(layers))
    store: dict[str, list[np.ndarray]] = {name: [] for name in modules}

    def make_hook(name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, (tuple, list)) and output:
                output = output[0]
            if not isinstance(output, torch.Tensor) or output.dim() == 0:
                raise ValueError(
                    f"layer {name!r} returned {type(output).__name__}"
                    + (" of dimension 0" if isinstance(output, torch.Tensor) else "")
                    + ", not a batch of tensors; choose a layer whose output has one "
                    "row per sample."
                )
            # A copy, because a later in-place operation (ReLU(inplace=True) after a
            # convolution) would otherwise change what was recorded.
            flat = output.detach().reshape(len(output), -1)
            # A float64 model keeps its precision: rounded to float32, points 1e-4
            # apart at 100 become duplicates.
            keep = torch.float64 if flat.dtype == torch.float64 else torch.float32
            store[name].append(flat.to("cpu", keep, copy=True).numpy())

        return hook

    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device; ``"auto"`` is the GPU when torch sees one, else the CPU.

    The one reading of ``device`` for everything that runs a model (here, so that the
    estimators and nn/ can both use it).
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but torch sees no GPU; use device='cpu' or 'auto'.")
    return device


def _model_device_and_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype | None]:
    """Where the model lives and its floating dtype (None for a model without any)."""
    tensors = [*model.parameters(), *model.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), None)
    return device, dtype


def _input_batches(data: Any, batch_size: int) -> tuple[int | None, Iterator[Any]]:
    """Number of batches (None if unknown) and an iterator over the model inputs."""
    if isinstance(data, (DataLoader, Dataset)):
        loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=int(batch_size), shuffle=False)
        try:
            total = len(loader)
        except TypeError:  # an IterableDataset without __len__
            total = None
        # Batches of (x, y) pairs, or of x alone: the model's input is x.
        return total, (b[0] if isinstance(b, (tuple, list)) else b for b in loader)
    if scipy.sparse.issparse(data):
        raise ValueError("sparse input is not supported; pass a dense array (X.toarray()).")
    if not isinstance(data, torch.Tensor):
        data = np.asarray(data)
        if data.dtype == object:  # numbers boxed as objects; anything else raises here
            data = data.astype(np.float64)
        if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
            raise ValueError(
                f"data of dtype {data.dtype} is not numeric; pass numbers (an array, a "
                "tensor, a torch Dataset or a DataLoader)."
            )
    if data.is_complex() if isinstance(data, torch.Tensor) else np.iscomplexobj(data):
        raise ValueError("Complex data not supported; pass real numbers.")
    if data.ndim == 0:
        raise ValueError("data is a scalar; pass one sample per row.")
    n = len(data)
    # np.array copies, so read-only arrays (joblib memmaps) never reach torch; in C
    # order, because a DataFrame's column-major values take other BLAS paths and give
    # activations that differ in the last bits from the same rows as an array.
    to_tensor = (
        torch.as_tensor if isinstance(data, torch.Tensor) else (lambda a: torch.as_tensor(np.array(a, order="C")))
    )
    batches = (to_tensor(data[s : s + batch_size]) for s in range(0, n, batch_size))
    return math.ceil(n / batch_size), batches


def _check_batch(store: dict[str, list[np.ndarray]], n_done: int, n_rows: int) -> None:
    for name, chunks in store.items():
        calls = len(chunks) - n_done
        if calls == 0:
            raise ValueError(
                f"layer {name!r} did not run during the forward pass (model.forward "
                "does not use it); choose a layer on the path from input to output."
            )
        if calls > 1:
            raise ValueError(
                f"layer {name!r} ran {calls} times in one forward pass (one module used "
                "in several places, such as a shared ReLU), so its outputs cannot be "
                "told apart; choose a module that is used once."
            )
        if len(chunks[-1]) != n_rows:
            raise ValueError(
                f"layer {name!r} returned {len(chunks[-1])} rows for a batch of {n_rows} "
                "samples: its output does not put samples first (a sequence-first "
                "layer?); choose a layer whose output has one row per sample."
            )


def collect_activations(
    model: nn.Module,
    data: Any,
    layers: Layer | Sequence[Layer],
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    max_samples: int | None = None,
) -> dict[str, np.ndarray]:
    """Run data through a model once and return the activations of some layers.

    The model runs in eval mode under ``torch.no_grad()``; afterwards every
    submodule's training flag is restored as found, and a model moved to
    ``device`` is moved back. Hooks are removed even when a batch fails.

    Parameters
    ----------
    model : torch.nn.Module
    data : array-like, torch.Tensor, torch Dataset or DataLoader
        Arrays and tensors are cut into batches along their first axis. A Dataset
        (read in order, without shuffling) or DataLoader may yield ``(x, y)``
        pairs or ``x`` alone; the model is called on ``x``. Floating inputs are
        cast to the floating dtype of the model's parameters (kept as they are for
        a model without any); integer inputs (token ids) are passed unchanged.
    layers : str, torch.nn.Module or list of them
        See :func:`resolve_layer`. A layer returning a tuple is recorded by its
        first element.
    batch_size : int, default=256
        Samples per forward pass for arrays, tensors and Datasets (a DataLoader
        keeps its own).
    device : str or torch.device, default=None
        Where to run; ``"auto"`` is the GPU when there is one, else the CPU; None
        runs where the model's parameters are.
    progress : bool, default=None
        Progress bar over batches; None shows one on a terminal.
    max_samples : int, default=None
        Stop after this many samples (the first ones).

    Returns
    -------
    dict
        Layer name (as returned by :func:`resolve_layer`, in the order given) to a
        float32 (float64 for a float64 model) array of shape
        ``(n_samples, n_features)``, each sample's output flattened.

    Raises
    ------
    ValueError
        If the data are empty or not numeric, or a layer does not run exactly once
        per forward pass with one output row per sample.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
    >>> acts = collect_activations(model, torch.ones(5, 3), ["0", model[1]])
    >>> {name: a.shape for name, a in acts.items()}
    {'0': (5, 4), '1': (5, 4)}
    """
    if not isinstance(batch_size, Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if max_samples is not None and (not isinstance(max_samples, Integral) or max_samples < 1):
        raise ValueError(f"max_samples must be a positive integer or None, got {max_samples!r}")
    layers = _as_layer_list(layers)
    for layer in layers:  # fail on a bad name before reading any data
        resolve_layer(model, layer)
    total, batches = _input_batches(data, batch_size)
    if max_samples is not None and total is not None:
        per_batch = (data.batch_size if isinstance(data, DataLoader) else None) or batch_size
        total = min(total, math.ceil(max_samples / per_batch))

    home, dtype = _model_device_and_dtype(model)
    target = home if device is None else resolve_device(device)
    modes = [(module, module.training) for module in model.modules()]
    moved = target != home
    n_seen = n_batches = 0
    try:
        if moved:
            model.to(target)
        model.eval()
        with (
            torch.no_grad(),
            capture(model, layers) as store,
            progress_bar(batches, progress, total=total, desc="activations", unit="batch") as bar,
        ):
            for x in bar:
                if not isinstance(x, torch.Tensor):
                    raise ValueError(
                        f"a batch's model input is a {type(x).__name__}, not a tensor; "
                        "pass a Dataset of (tensor, label) pairs or of tensors."
                    )
                if max_samples is not None:
                    x = x[: max_samples - n_seen]
                x = x.to(target, dtype) if x.is_floating_point() and dtype else x.to(target)
                try:
                    with explaining_input_errors(model, x, first=n_batches == 0):
                        model(x)
                except RuntimeError as err:
                    if x.is_floating_point():  # past the first batch: the model's own
                        raise
                    # Integer input is passed as is for token ids; for pixels it
                    # fails deep in the model.
                    raise ValueError(
                        f"the model could not take the {x.dtype} input ({err}). Pass "
                        "floating-point data (8-bit images: X / 255) unless its first "
                        "layer takes integer ids."
                    ) from err
                _check_batch(store, n_batches, len(x))
                n_seen += len(x)
                n_batches += 1
                if max_samples is not None and n_seen >= max_samples:
                    break
    finally:
        for module, mode in modes:
            module.training = mode
        if moved:
            model.to(home)
    if n_seen == 0:
        raise ValueError("the data are empty: there is nothing to run through the model.")
    return {name: np.concatenate(chunks) for name, chunks in store.items()}
