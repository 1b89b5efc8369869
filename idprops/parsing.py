"""Read a step written as text, ``"NAME:KEY=VALUE,KEY=VALUE"``, e.g. ``"mle:k=10"``.

The one grammar behind ``idprops measure --estimator mle:k=10`` and a study file's
``estimators = ["mle:k=10", "twonn"]``. Values are TOML literals (``10``, ``0.5``,
``true``, ``"mean"``, ``[1, 2]``); a bare word that is not one, such as ``mean``, is
read as that string, so the shell needs no quotes.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # setup.cfg requires tomli there
    import tomli as tomllib

__all__ = ["check_parameters", "parse_spec"]

_OPEN = {"[": "]", "{": "}"}


def _split_top_level(text: str) -> list[str]:
    """``text`` split at the commas outside brackets, braces and quotes."""
    parts, depth, quote, start = [], [], None, 0
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in _OPEN:
            depth.append(_OPEN[char])
        elif depth and char == depth[-1]:
            depth.pop()
        elif char == "," and not depth:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_spec(text: str) -> tuple[str, dict[str, Any]]:
    """Split ``"NAME:KEY=VALUE,..."`` into the name and its parameters.

    Parameters
    ----------
    text : str
        A registered name, optionally followed by ``:`` and comma-separated
        ``KEY=VALUE`` pairs.

    Returns
    -------
    name : str
    params : dict
        Values read as TOML literals, bare words as strings.

    Examples
    --------
    >>> parse_spec("mle:k=10,aggregation=mean")
    ('mle', {'k': 10, 'aggregation': 'mean'})
    >>> parse_spec("twonn")
    ('twonn', {})
    >>> parse_spec("pgd:eps=0.03,steps=[1, 2]")
    ('pgd', {'eps': 0.03, 'steps': [1, 2]})
    """
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"{text!r} names nothing; write NAME or NAME:KEY=VALUE,..., e.g. mle:k=10")
    params: dict[str, Any] = {}
    if not sep:
        return name, params
    for item in _split_top_level(rest):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key or not value.strip():
            raise ValueError(f"{text!r}: {item.strip()!r} is not KEY=VALUE; write e.g. {name}:k=10")
        if key in params:
            raise ValueError(f"{text!r}: {key} is given twice")
        params[key] = _value(value.strip())
    return name, params


def check_parameters(name: str, factory: Any, params: dict[str, Any]) -> None:
    """Refuse parameters that ``factory`` (a class or function) does not take, naming them.

    Examples
    --------
    >>> from idprops import MLEDimension
    >>> check_parameters("mle", MLEDimension, {"kk": 10})
    Traceback (most recent call last):
    ...
    ValueError: mle (MLEDimension) has no parameter 'kk'; its parameters: aggregation, backend, k, n_queries, random_state, unbiased
    """
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without a signature: let the call say
        return
    accepted = signature.parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in accepted):
        return
    names = sorted(p.name for p in accepted if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    unknown = [key for key in params if key not in names]
    if unknown:
        what = getattr(factory, "__name__", type(factory).__name__)
        label = name if name == what else f"{name} ({what})"
        raise ValueError(
            f"{label} has no parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; its parameters: {', '.join(names) or 'none'}"
        )
