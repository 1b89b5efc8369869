"""Errors of a model that refuses its input, said in terms of the input it expects."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["explaining_input_errors", "input_mismatch"]


def input_mismatch(model: nn.Module, x: torch.Tensor, err: RuntimeError) -> str:
    """Why ``model`` refused the batch ``x`` (with ``err``), in terms of the input it expected.

    Examples
    --------
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    >>> x = torch.zeros(4, 10)
    >>> try:
    ...     model(x)
    ... except RuntimeError as err:
    ...     print(input_mismatch(model, x, err).split(". Pass")[0])
    the model could not run on a batch of shape (4, 10) (one sample: (10,)); its first layer '1' (Linear) takes inputs with 64 features in its last axis
    """
    sample = tuple(x.shape[1:])
    message = f"the model could not run on a batch of shape {tuple(x.shape)} (one sample: {sample})"
    first = next(
        ((name, m) for name, m in model.named_modules() if hasattr(m, "in_features") or hasattr(m, "in_channels")),
        None,
    )
    if first is not None:
        name, module = first
        wants = (
            f"{module.in_features} features in its last axis"
            if hasattr(module, "in_features")
            else f"{module.in_channels} channels in its axis after the batch"
        )
        layer = f"its first layer {name!r}" if name else "the model"
        message += f"; {layer} ({type(module).__name__}) takes inputs with {wants}"
    if x.ndim == 1:
        message += (
            "; the data are 1-D, so each sample is one number: pass one sample per row "
            "(X.reshape(-1, 1) for samples of one feature)"
        )
    return message + f". Pass inputs of the shape the model was built for (torch: {err})."


@contextlib.contextmanager
def explaining_input_errors(model: nn.Module, x: torch.Tensor, first: bool = True) -> Iterator[None]:
    """Turn ``model``'s RuntimeError on the floating-point batch ``x`` into a ValueError
    from :func:`input_mismatch`, where ``first`` (the first batch of a pass over data).

    Inputs of the wrong shape fail on the first batch; a later failure, running out of
    GPU memory, or integer input (token ids) is the model's own and passes unchanged.

    Examples
    --------
    >>> model = nn.Linear(64, 2)
    >>> x = torch.zeros(4, 10)
    >>> with explaining_input_errors(model, x):
    ...     model(x)
    Traceback (most recent call last):
    ...
    ValueError: the model could not run on a batch of shape (4, 10) (one sample: (10,)); the model (Linear) takes inputs with 64 features in its last axis. Pass inputs of the shape the model was built for (torch: mat1 and mat2 shapes cannot be multiplied (4x10 and 64x2)).
    """
    try:
        yield
    except RuntimeError as err:
        if not first or not x.is_floating_point() or isinstance(err, torch.cuda.OutOfMemoryError):
            raise
        raise ValueError(input_mismatch(model, x, err)) from err
