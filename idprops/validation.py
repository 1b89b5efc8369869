"""Checks of what users pass in, whose errors say where the problem is and what to do."""

from __future__ import annotations

import numpy as np
from sklearn.utils import assert_all_finite

__all__ = ["check_activations", "check_finite"]

# Rows tested at a time when locating non-finite values: a bool mask of all of a wide
# array at once would take an eighth of its float64 size.
_LOCATE_VALUES = 2**24


def _non_finite_summary(X: np.ndarray) -> str | None:
    """Where the 2-d array X holds NaN or infinity, in words; None where it is finite.

    Examples
    --------
    >>> _non_finite_summary(np.array([[0.0, 1.0], [2.0, np.inf]]))
    'infinity in 1 of 2 samples (the first: sample 1, feature 1)'
    >>> _non_finite_summary(np.zeros((2, 2))) is None
    True
    """
    # scikit-learn's check sums the values first, which overflows (and warns) for
    # finite data near float64's largest number before it looks closer.
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            assert_all_finite(X)
        except ValueError:
            pass
        else:
            return None
    bad_rows, has_nan, has_inf = [], False, False
    chunk = max(1, _LOCATE_VALUES // max(1, X.shape[1]))
    for start in range(0, len(X), chunk):
        block = X[start : start + chunk]
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            bad_rows.append(start + np.flatnonzero(bad))
            has_nan |= bool(np.isnan(block[bad]).any())
            has_inf |= bool(np.isinf(block[bad]).any())
    rows = np.concatenate(bad_rows)
    first = int(rows[0])
    feature = int(np.flatnonzero(~np.isfinite(X[first]))[0])
    what = " and ".join(kind for kind, present in (("NaN", has_nan), ("infinity", has_inf)) if present)
    return f"{what} in {len(rows)} of {len(X)} samples (the first: sample {first}, feature {feature})"


def check_finite(X: np.ndarray, *, name: str = "X", who: str | None = None) -> None:
    """Raise a ValueError that locates any NaN or infinity in the 2-d array X.

    scikit-learn's own message advises estimators that handle missing values, which
    does not apply here; this one counts the samples concerned, names the first and
    says what to do.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    name : str, default="X"
        What X is called in the message (``"Input X contains NaN ..."``).
    who : str, optional
        What needs X finite (an estimator's name), said in the message.

    Examples
    --------
    >>> check_finite(np.array([[0.0, 1.0], [2.0, np.nan]]), who="MLEDimension")
    Traceback (most recent call last):
    ...
    ValueError: Input X contains NaN in 1 of 2 samples (the first: sample 1, feature 1); MLEDimension needs finite values: drop those samples or replace their values.
    """
    summary = _non_finite_summary(X)
    if summary is None:
        return
    needs = f"; {who} needs finite values" if who else ""
    raise ValueError(f"Input {name} contains {summary}{needs}: drop those samples or replace their values.")


def check_activations(A: np.ndarray) -> None:
    """Raise a ValueError that locates any NaN or infinity in a layer's activations.

    Unlike :func:`check_finite`'s, its advice is about the model: dropping samples
    does not mend a network whose weights or inputs give non-finite values.

    Parameters
    ----------
    A : ndarray of shape (n_samples, n_features)
        One layer's activations, a row per input.

    Examples
    --------
    >>> check_activations(np.array([[0.0, np.nan], [1.0, 2.0]]))
    Traceback (most recent call last):
    ...
    ValueError: the activations hold NaN in 1 of 2 samples (the first: sample 0, feature 1): the model gives non-finite values there; check its weights (a training that diverged leaves NaN weights) and its inputs.
    """
    summary = _non_finite_summary(A)
    if summary is not None:
        raise ValueError(
            f"the activations hold {summary}: the model gives non-finite values there; check its "
            "weights (a training that diverged leaves NaN weights) and its inputs."
        )
