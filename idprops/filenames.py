"""File names made from labels that a study file chose, kept inside their folder.

Labels of datasets, models, attacks, estimators and layers reach the names of report
figures (``kf_vs_robust_accuracy_<attack>.png``). A label is the user's text: it may
hold ``/``, ``..``, a drive letter or a control character, and a file name made from
it as is could land outside the report's folder. :func:`safe_filename` makes one path
component of any label; :func:`path_inside` refuses any path that would leave its folder.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

__all__ = ["path_inside", "safe_filename"]

# Letters, digits and a few marks that mean nothing to a shell or a file system.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+=,-]+")
# Names Windows refuses whatever their extension.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
# Long enough for any label a person writes, short of every file system's 255 bytes.
_MAX_CHARS = 120


def safe_filename(label: str) -> str:
    """One file name component made from ``label``, however hostile.

    Runs of characters other than ASCII letters, digits and ``_ . + = , -`` become
    ``_``; leading dots and dashes are dropped (no ``..``, no hidden file, no option);
    an empty result, or a name Windows reserves, is prefixed. When anything was changed,
    eight hex digits of the label's SHA-1 are appended, so two labels never share a
    name (``a/b`` and ``a_b`` stay apart); a long label is cut the same way.

    Parameters
    ----------
    label : str
        Any text.

    Returns
    -------
    str
        A name without separators, safe as one component of a path; ``label`` itself
        when it already was one.

    Examples
    --------
    >>> safe_filename("fgsm_eps0.03")
    'fgsm_eps0.03'
    >>> safe_filename("x/../../../ESCAPED_robust")
    'x_.._.._.._ESCAPED_robust-4855bf24'
    >>> safe_filename("..")
    'label-...'
    """
    label = str(label)
    name = _UNSAFE.sub("_", label).lstrip(".-")
    if not name or name.split(".")[0].lower() in _RESERVED:
        name = f"label{'_' + name if name else ''}"
    if name == label and len(name) <= _MAX_CHARS:
        return name
    digest = hashlib.sha1(label.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{name[:_MAX_CHARS]}-{digest}"


def path_inside(folder: str | os.PathLike, *names: str) -> Path:
    """``folder / name / ...``, refused if it resolves outside ``folder``.

    The last line of defence where a file name is built: links and ``..`` are resolved
    before the check.

    Examples
    --------
    >>> path_inside("out", "figure.png").as_posix()
    'out/figure.png'
    >>> path_inside("out", "../escaped.png")
    Traceback (most recent call last):
    ...
    ValueError: the file name '../escaped.png' would leave the folder out; ...
    """
    path = Path(folder).joinpath(*names)
    root = Path(folder).resolve()
    if not path.resolve().is_relative_to(root):
        raise ValueError(
            f"the file name {os.path.join(*names)!r} would leave the folder {os.fspath(folder)}; "
            "make it with idprops.filenames.safe_filename."
        )
    return path
