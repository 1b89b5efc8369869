"""One conversion to plain JSON types, shared by the store, the Trainer's checkpoints and the CLI."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

__all__ = ["jsonable"]


def jsonable(obj: Any, *, where: str = "value", nonfinite: Literal["keep", "null"] = "keep") -> Any:
    """``obj`` as plain JSON types: dicts with string keys, lists, str, int, float, bool, None.

    Numpy scalars become Python numbers, numpy arrays and tuples become lists, paths
    become strings. Anything else is refused, so that a value that would not survive a
    round trip through JSON (or SQLite, or ``torch.load(weights_only=True)``) fails
    where it is made, with its place named.

    Parameters
    ----------
    obj : object
        The value to convert.
    where : str, default="value"
        Its name in error messages (nested places are appended: ``config['data']``).
    nonfinite : {"keep", "null"}, default="keep"
        ``"null"`` turns NaN and infinities into None, for strict JSON
        (``json.dumps(..., allow_nan=False)``).

    Examples
    --------
    >>> jsonable({"n": np.int64(3), "shape": (2, 2), "d": np.array([1.5, np.nan])})
    {'n': 3, 'shape': [2, 2], 'd': [1.5, nan]}
    >>> jsonable({"K_F": float("inf")}, nonfinite="null")
    {'K_F': None}
    >>> jsonable({1: "a"})
    Traceback (most recent call last):
    ...
    TypeError: value: key 1 is not a string; use string keys
    """
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} is not a string; use string keys")
            out[k] = jsonable(v, where=f"{where}[{k!r}]", nonfinite=nonfinite)
        return out
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [jsonable(v, where=f"{where}[{i}]", nonfinite=nonfinite) for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, float) and nonfinite == "null" and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    raise TypeError(
        f"{where}: {type(obj).__name__} is not storable; use str, int, float, bool, None, "
        "lists, string-keyed mappings, numpy scalars or arrays"
    )
