"""Checks of what users pass in, whose errors say where the problem is and what to do."""

from __future__ import annotations

import numpy as np
from sklearn.utils import assert_all_finite

__all__ = ["check_finite"]

# Rows tested at a time when locating non-finite values: a bool mask of all of a wide
# array at once would take an eighth of its float64 size.
_LOCATE_VALUES = 2**24


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
    # scikit-learn's check sums the values first, which overflows (and warns) for
    # finite data near float64's largest number before it looks closer.
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            assert_all_finite(X, input_name=name)
        except ValueError:
            pass
        else:
            return
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
    needs = f"; {who} needs finite values" if who else ""
    raise ValueError(
        f"Input {name} contains {what} in {len(rows)} of {len(X)} samples (the first: sample {first}, "
        f"feature {feature}){needs}: drop those samples or replace their values."
    )
