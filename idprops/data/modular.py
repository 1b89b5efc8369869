"""Modular division, the grokking task (Power et al. 2022; Brown et al. 2022 track its IDs).

Every equation ``a / b = c (mod p)`` with a in 0..p-1 and b in 1..p-1, where
``c = a * b^(p-2) mod p`` (Fermat's inverse; p must be prime), is one sample: the
input is the token sequence ``[a, op, b, eq]`` with ``op = p`` and ``eq = p + 1``
(vocabulary p + 2) and the label is c. A fixed seeded shuffle splits the
``p * (p - 1)`` equations: the first ``floor(train_fraction * N)`` train, the rest
validate (p = 97, 20 %: 1,862 / 7,450 of 9,312).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .subsets import select_indices

__all__ = ["ModularDivision", "load_modular_division"]


def _is_prime(p: int) -> bool:
    return p >= 2 and all(p % q for q in range(2, int(p**0.5) + 1))


class ModularDivision(Dataset):
    """The modular-division equations of one split, as ``(tokens, label)`` pairs.

    Parameters
    ----------
    p : int, default=97
        A prime modulus.
    train_fraction : float, default=0.2
        Fraction of all equations in the training split.
    train : bool or None, default=True
        The training split, the validation split (``False``) or all equations (``None``,
        in shuffled order).
    seed : int, default=0
        Seed of the shuffle that makes the split.

    Attributes
    ----------
    pairs : ndarray (N, 2) of int64
        (a, b) of every equation of the split.
    tokens : torch.LongTensor (N, 4)
        ``[a, p, b, p + 1]`` per equation.
    targets : ndarray (N,) of int64
        ``a / b mod p``.
    vocab_size : int
        p + 2.
    pixel_scale : str
        ``"tokens: integer ids 0..p+1"`` (inputs are not pixels).

    Examples
    --------
    >>> train = ModularDivision(p=5, train_fraction=0.5)
    >>> len(train), train.vocab_size
    (10, 7)
    >>> tokens, label = train[0]
    >>> a, b = int(tokens[0]), int(tokens[2])
    >>> tokens.tolist()[1::2], (label * b) % 5 == a
    ([5, 6], True)
    """

    def __init__(self, p: int = 97, train_fraction: float = 0.2, train: bool | None = True, seed: int = 0) -> None:
        if not _is_prime(int(p)):
            raise ValueError(f"p must be prime for every b to have an inverse mod p; got {p}.")
        if not 0.0 < train_fraction < 1.0:
            raise ValueError(f"train_fraction must lie strictly between 0 and 1, got {train_fraction}.")
        self.p = int(p)
        self.train_fraction = float(train_fraction)
        self.train = train
        self.seed = seed
        a, b = np.meshgrid(np.arange(self.p), np.arange(1, self.p), indexing="ij")
        pairs = np.stack([a.ravel(), b.ravel()], axis=1).astype(np.int64)
        order = np.random.default_rng(seed).permutation(len(pairs))
        cut = int(np.floor(self.train_fraction * len(pairs)))
        if train is None:
            keep = order
        elif train:
            keep = order[:cut]
        else:
            keep = order[cut:]
        self.pairs = pairs[keep]
        inverse = np.array([pow(int(b), self.p - 2, self.p) for b in range(self.p)])
        self.targets = (self.pairs[:, 0] * inverse[self.pairs[:, 1]]) % self.p
        self.tokens = torch.from_numpy(
            np.column_stack(
                [
                    self.pairs[:, 0],
                    np.full(len(keep), self.p),
                    self.pairs[:, 1],
                    np.full(len(keep), self.p + 1),
                ]
            )
        )
        self.vocab_size = self.p + 2
        self.classes = [str(c) for c in range(self.p)]
        self.pixel_scale = f"tokens: integer ids 0..{self.p + 1}"

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.tokens[i], int(self.targets[i])

    def _select(self, idx: np.ndarray, labels: np.ndarray, classes: Sequence[int] | None) -> None:
        """Keep equations ``idx`` with labels ``labels`` (relabelled when ``classes``)."""
        self.pairs, self.tokens, self.targets = (
            self.pairs[idx],
            self.tokens[torch.from_numpy(idx)],
            labels,
        )
        if classes is not None:
            self.classes = [self.classes[int(c)] for c in classes]


def load_modular_division(
    *,
    root=None,
    train: bool | None = True,
    download: bool = False,
    classes: Sequence[int] | None = None,
    n: int | None = None,
    seed: int = 0,
    scale: str = "unit",
    p: int = 97,
    train_fraction: float = 0.2,
) -> ModularDivision:
    """The modular-division split, through the common loader signature.

    ``seed`` makes the train/validation split; ``classes`` and ``n`` then select
    equations by their result as for any dataset (``n`` with the same seed). ``root``
    and ``download`` are ignored; tokens have no pixel scale, so ``scale`` must stay
    ``"unit"``.

    Examples
    --------
    >>> len(load_modular_division()), len(load_modular_division(train=False))
    (1862, 7450)
    """
    if scale != "unit":
        raise ValueError(f"modular division yields tokens, which have no pixel scale; got scale={scale!r}.")
    data = ModularDivision(p=p, train_fraction=train_fraction, train=train, seed=seed)
    if classes is not None or n is not None:
        idx, labels = select_indices(data.targets, classes=classes, n=n, seed=seed)
        data._select(idx, labels, classes)
    return data
