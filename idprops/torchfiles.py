"""Files saved with ``torch.save``, read without running code, with errors that name them.

Every weights file, training checkpoint and ``.pt`` file of samples that idprops reads
goes through :func:`load_torch_file`: ``torch.load(weights_only=True)`` on the CPU,
which rebuilds tensors and plain containers but refuses any other Python object (an
arbitrary object is rebuilt by unpickling, which can run code). idprops offers no way
around that refusal; torch's own message, which suggests ``weights_only=False``, is
replaced by one that names the file and says how to save it.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

__all__ = ["load_torch_file"]


def load_torch_file(path: str | os.PathLike, what: str = "file", fix: str = "save tensors and plain containers") -> Any:
    """What a ``torch.save`` file holds, loaded on the CPU without unpickling code.

    Parameters
    ----------
    path : path
        The file.
    what : str, default="file"
        What the file is to the caller ("weights file", "checkpoint"), for messages.
    fix : str
        How to save such a file instead, for the message when it is refused.

    Returns
    -------
    object
        The tensors, dicts, lists, numbers and strings saved.

    Raises
    ------
    ValueError
        When the file holds other Python objects (refused: unpickling them could run
        code) or is not a file of ``torch.save``; the message names the file.

    Examples
    --------
    >>> import os, tempfile, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "w.pt")
    >>> torch.save({"weight": torch.ones(2)}, path)
    >>> load_torch_file(path, "weights file")
    {'weight': tensor([1., 1.])}
    """
    import torch

    path = os.fspath(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        holds = f" ({found.group(1)})" if found else ""
        raise ValueError(
            f"the {what} {path} holds a Python object{holds} that only unpickling could "
            "rebuild, and unpickling can run code, so idprops does not load it (it loads "
            f"tensors only, weights_only=True); {fix}."
        ) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # torch raises KeyError, RuntimeError, EOFError, ... on foreign files
        raise ValueError(
            f"the {what} {path} is not a file written by torch.save, or is damaged "
            f"({type(exc).__name__}: {exc}); {fix}."
        ) from None
