"""Point clouds of known intrinsic dimension, to check estimators against the truth."""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["embed", "sample_ball", "sample_cube", "sample_sphere", "sample_swiss_roll"]


def embed(X: np.ndarray, ambient_dim: int, random_state=None) -> np.ndarray:
    """Place points in ``ambient_dim`` dimensions by a random rotation.

    The rotation is an orthonormal basis drawn from the Haar measure (QR of a
    Gaussian matrix), so all pairwise distances, and hence every intrinsic
    dimension estimate, are unchanged.

    Examples
    --------
    >>> X = np.eye(2)
    >>> Y = embed(X, 5, random_state=0)
    >>> Y.shape, round(float(np.linalg.norm(Y[0] - Y[1])), 6)
    ((2, 5), 1.414214)
    """
    X = np.asarray(X, dtype=np.float64)
    d = X.shape[1]
    if ambient_dim < d:
        raise ValueError(f"ambient_dim={ambient_dim} is smaller than the data's {d} dimensions")
    rng = check_random_state(random_state)
    q, r = np.linalg.qr(rng.standard_normal((ambient_dim, d)))
    q *= np.sign(np.diag(r))  # makes the basis Haar-distributed, not just orthonormal
    return X @ q.T


def sample_cube(n: int, d: int, ambient_dim: int | None = None, random_state=None) -> np.ndarray:
    """Uniform sample of the unit ``d``-cube, optionally rotated into ``ambient_dim``.

    Examples
    --------
    >>> sample_cube(100, 3, ambient_dim=10, random_state=0).shape
    (100, 10)
    """
    rng = check_random_state(random_state)
    X = rng.uniform(size=(n, d))
    return X if ambient_dim is None else embed(X, ambient_dim, rng)


def sample_sphere(n: int, d: int, ambient_dim: int | None = None, random_state=None) -> np.ndarray:
    """Uniform sample of the unit ``d``-sphere (a ``d``-manifold in ``d + 1`` dimensions).

    Examples
    --------
    >>> X = sample_sphere(50, 2, random_state=0)
    >>> X.shape, bool(np.allclose(np.linalg.norm(X, axis=1), 1))
    ((50, 3), True)
    """
    rng = check_random_state(random_state)
    X = rng.standard_normal((n, d + 1))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X if ambient_dim is None else embed(X, ambient_dim, rng)


def sample_swiss_roll(n: int, ambient_dim: int | None = None, random_state=None) -> np.ndarray:
    """The swiss roll, a curved 2-manifold in 3 dimensions (scikit-learn's sampler).

    Examples
    --------
    >>> sample_swiss_roll(20, random_state=0).shape
    (20, 3)
    """
    from sklearn.datasets import make_swiss_roll

    rng = check_random_state(random_state)
    X, _ = make_swiss_roll(n, random_state=rng)
    return X if ambient_dim is None else embed(X, ambient_dim, rng)


def sample_ball(n: int, d: int, ambient_dim: int | None = None, random_state=None) -> np.ndarray:
    """Uniform sample of the unit ``d``-ball, optionally rotated into ``ambient_dim``.

    A uniform direction (a normalised Gaussian) times a radius ``U^(1/d)``.

    Examples
    --------
    >>> X = sample_ball(1000, 3, random_state=0)
    >>> X.shape, bool(np.linalg.norm(X, axis=1).max() <= 1)
    ((1000, 3), True)
    """
    rng = check_random_state(random_state)
    X = rng.standard_normal((n, d))
    X *= (rng.uniform(size=n) ** (1 / d) / np.linalg.norm(X, axis=1))[:, None]
    return X if ambient_dim is None else embed(X, ambient_dim, rng)
