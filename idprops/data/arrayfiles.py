"""Samples saved as arrays: ``.npy``, ``.npz`` and ``.pt`` files, read without unpickling.

:func:`read_array_file` reads what :func:`~idprops.data.load_dataset` and
``idprops measure --data FILE`` accept:

- ``.npy``: one array, the samples (unlabelled);
- ``.npz``: the samples under the key ``X`` and, optionally, their labels under ``y``
  (``np.savez(path, X=X, y=y)``);
- ``.pt``: a tensor of samples (unlabelled), a dict with the keys ``X`` and optionally
  ``y``, or an ``(X, y)`` pair (``torch.save({"X": X, "y": y}, path)``).

Samples are N x D features, N x H x W grayscale images or N x C x H x W images. Files
are read with ``allow_pickle=False`` (numpy) and ``weights_only=True`` (torch): a file
that needs unpickling could run code, and is refused with its name.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["ARRAY_SUFFIXES", "read_array_file"]

#: File name endings read as arrays of samples.
ARRAY_SUFFIXES = (".npy", ".npz", ".pt")

_KEYS = "the samples under the key X and, optionally, their labels under y"


def _pair(path: str, content, kind: str):
    if isinstance(content, dict):
        unknown = sorted(set(content) - {"X", "y"})
        if "X" not in content or unknown:
            raise ValueError(
                f"{path}: a {kind} of samples holds {_KEYS}; it holds {sorted(content)}. "
                "Save it as e.g. np.savez(path, X=X, y=y) or torch.save({'X': X, 'y': y}, path)."
            )
        return content["X"], content.get("y")
    return content, None


def _real(path: str, X: np.ndarray) -> np.ndarray:
    if np.iscomplexobj(X):
        raise ValueError(
            f"{path} holds complex numbers ({X.dtype}), and idprops measures real points: save "
            "the real and imaginary parts as features, e.g. np.hstack([X.real, X.imag])."
        )
    return X


def read_array_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """The samples and labels (None when the file has none) saved in ``path``.

    Parameters
    ----------
    path : path
        A ``.npy``, ``.npz`` or ``.pt`` file laid out as the module describes.

    Returns
    -------
    X : ndarray
    y : ndarray or None

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "data.npz")
    >>> np.savez(path, X=np.zeros((3, 2)), y=np.array([0, 1, 0]))
    >>> X, y = read_array_file(path)
    >>> X.shape, y.tolist()
    ((3, 2), [0, 1, 0])
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in ARRAY_SUFFIXES:
        raise ValueError(f"{path}: arrays of samples are read from {', '.join(ARRAY_SUFFIXES)} files only.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no file {path}")
    if suffix == ".pt":
        from ..torchfiles import load_torch_file

        content = load_torch_file(path, "file of samples", "save plain tensors: torch.save({'X': X, 'y': y}, path)")
        if isinstance(content, (tuple, list)) and len(content) == 2:
            X, y = content
        else:
            X, y = _pair(path, content, "torch file")
        return _real(path, np.asarray(X)), (None if y is None else np.asarray(y))
    try:
        content = np.load(path, allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle
        raise ValueError(
            f"{path} holds Python objects that only unpickling could read ({exc}); save numeric arrays."
        ) from None
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable numpy file: {exc}") from None
    if suffix == ".npy":
        return _real(path, content), None
    with content:
        try:
            X, y = _pair(path, dict(content.items()), ".npz file")
        except ValueError as exc:
            if "allow_pickle" not in str(exc):
                raise
            raise ValueError(
                f"{path} holds Python objects that only unpickling could read; save numeric arrays."
            ) from None
    return _real(path, X), y
