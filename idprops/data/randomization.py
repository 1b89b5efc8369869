"""Randomization tests (Zhang et al. 2017) as dataset wrappers, with the paper's semantics.

=================  ==========================================================================
name               what changes
=================  ==========================================================================
true_labels        nothing (a :class:`RandomizedLabels` with ``p=0``, for uniform pipelines)
partial_labels     each label independently, with probability ``p``, becomes a uniformly
                   random class, the original included: about ``p * (1 - 1/C)`` change
random_labels      the same with ``p=1``
shuffled_pixels    ONE permutation of pixel positions (channels move together), a function
                   of the seed and the image size only, so train and test wrappers built
                   with the same seed apply the same permutation
random_pixels      a different permutation for each image, fixed for that image
gaussian           each image replaced by Gaussian noise with the wrapped dataset's
                   per-channel mean and standard deviation; labels kept
=================  ==========================================================================

Every corruption is fixed once the wrapper is built: labels are redrawn eagerly at
construction; pixel corruptions are a pure function of ``(seed, index)`` (drawn on
access from ``numpy.random.default_rng([seed, index])``), so they are identical across
epochs, DataLoader workers, processes and repeated constructions, without storing an
N x pixels array. Use different seeds for the train and test wrappers of
``random_pixels`` and ``gaussian``: with one seed, item i of both would get the same
draw. The package ids-generalization differs in two places we do not follow: it
corrupts labels through a fixed permutation of the classes (a learnable relabelling,
not noise) and leaves the test set unshuffled under ``shuffled_pixels``.

Every wrapper yields ``(x, label)``, exposes ``corrupted_`` (a boolean mask over items)
and ``corrupted_indices_``, ``targets`` and the wrapped dataset's ``pixel_scale``.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .subsets import labels_of

__all__ = [
    "CORRUPTIONS",
    "GaussianInputs",
    "RandomPixels",
    "RandomizedLabels",
    "ShuffledPixels",
    "check_corruption",
    "corrupt",
]


def _positions(shape: torch.Size) -> int:
    """Pixel positions of an item: H * W of a C x H x W image, else every entry."""
    return shape[1] * shape[2] if len(shape) == 3 else int(np.prod(shape))


def _permute(x: torch.Tensor, permutation: np.ndarray) -> torch.Tensor:
    index = torch.from_numpy(permutation)
    if x.ndim == 3:
        return x.reshape(x.shape[0], -1)[:, index].reshape(x.shape)
    return x.reshape(-1)[index].reshape(x.shape)


class _Wrapper(Dataset):
    def __init__(self, dataset, seed: int) -> None:
        if len(dataset) == 0:
            raise ValueError("the dataset is empty: there is nothing to corrupt.")
        self.dataset = dataset
        self.seed = seed
        self.pixel_scale = getattr(dataset, "pixel_scale", "as given")

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def corrupted_indices_(self) -> np.ndarray:
        return np.flatnonzero(self.corrupted_)


class RandomizedLabels(_Wrapper):
    """Each label, with probability ``p``, replaced by a uniformly random class.

    Parameters
    ----------
    dataset : Dataset of (x, label)
    p : float in [0, 1]
        Probability that a label is redrawn; the new class may equal the old one.
    num_classes : int, default=None
        C; ``None`` uses ``len(dataset.classes)`` if present, else the largest label + 1.
    seed : int, default=0

    Attributes
    ----------
    targets : ndarray of int64
        The labels served.
    original_targets_ : ndarray of int64
    resampled_ : ndarray of bool
        Labels that were redrawn (about ``p`` of them).
    corrupted_ : ndarray of bool
        Labels that differ from the original (about ``p * (1 - 1/C)`` of them).

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.zeros(1000, 2), torch.arange(1000) % 10)
    >>> noisy = RandomizedLabels(data, p=0.5, seed=0)
    >>> round(float(noisy.corrupted_.mean()), 3)   # about 0.5 * (1 - 1/10)
    0.422
    """

    def __init__(self, dataset, p: float, num_classes: int | None = None, seed: int = 0) -> None:
        super().__init__(dataset, seed)
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p is a probability, between 0 and 1; got {p}.")
        original = labels_of(dataset)
        if num_classes is None:
            classes = getattr(dataset, "classes", None)
            num_classes = len(classes) if classes is not None else int(original.max()) + 1
        if original.min() < 0 or original.max() >= num_classes:
            raise ValueError(
                f"labels must lie in 0..{num_classes - 1} for num_classes={num_classes}; "
                f"found {original.min()}..{original.max()}."
            )
        self.p = float(p)
        self.num_classes = int(num_classes)
        rng = np.random.default_rng(seed)
        self.resampled_ = rng.random(len(original)) < self.p
        drawn = rng.integers(0, self.num_classes, size=len(original))
        self.original_targets_ = original
        self.targets = np.where(self.resampled_, drawn, original).astype(np.int64)
        self.corrupted_ = self.targets != original

    def __getitem__(self, i: int):
        return self.dataset[i][0], int(self.targets[i])


class _PixelWrapper(_Wrapper):
    def __init__(self, dataset, seed: int) -> None:
        super().__init__(dataset, seed)
        self.corrupted_ = np.ones(len(dataset), dtype=bool)
        self.image_shape_ = tuple(torch.as_tensor(dataset[0][0]).shape)

    @cached_property
    def targets(self) -> np.ndarray:
        return labels_of(self.dataset)

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, i])


class ShuffledPixels(_PixelWrapper):
    """One fixed permutation of pixel positions, applied to every image.

    The permutation depends on ``seed`` and the number of positions only, so a test
    set wrapped with the same seed is shuffled the same way, as the paper does.

    Attributes
    ----------
    permutation_ : ndarray of int64
        Output position j takes input position ``permutation_[j]`` (positions are
        H * W of C x H x W images, row-major; the channels of a pixel move together).

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.arange(8.0).reshape(2, 1, 2, 2), torch.tensor([0, 1]))
    >>> shuffled = ShuffledPixels(data, seed=0)
    >>> bool(torch.equal(shuffled[1][0].flatten(), data[1][0].flatten()[shuffled.permutation_]))
    True
    """

    def __init__(self, dataset, seed: int = 0) -> None:
        super().__init__(dataset, seed)
        self.permutation_ = np.random.default_rng(seed).permutation(_positions(self.image_shape_))

    def __getitem__(self, i: int):
        x, y = self.dataset[i]
        return _permute(torch.as_tensor(x), self.permutation_), y


class RandomPixels(_PixelWrapper):
    """A different fixed permutation of pixel positions for every image.

    Image ``i``'s permutation is :meth:`permutation` ``(i)``, drawn from
    ``default_rng([seed, i])``: the same on every access and in every process.

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.rand(3, 1, 4, 4), torch.tensor([0, 1, 0]))
    >>> scrambled = RandomPixels(data, seed=0)
    >>> bool(torch.equal(scrambled[2][0], scrambled[2][0]))
    True
    >>> bool(np.array_equal(scrambled.permutation(0), scrambled.permutation(1)))
    False
    """

    def permutation(self, i: int) -> np.ndarray:
        """The permutation of item ``i`` (output position j takes input position p[j])."""
        return self._rng(i).permutation(_positions(self.image_shape_))

    def __getitem__(self, i: int):
        x, y = self.dataset[i]
        return _permute(torch.as_tensor(x), self.permutation(i)), y


class GaussianInputs(_PixelWrapper):
    """Every image replaced by Gaussian noise with the dataset's per-channel statistics.

    The mean and standard deviation of each channel, over all pixels of all images, are
    computed once from the wrapped dataset (``mean_``, ``std_``); noise is not clipped
    to the pixel range (as in the paper). Items that are not C x H x W images count as
    one channel.

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.rand(50, 2, 4, 4), torch.zeros(50, dtype=torch.long))
    >>> noise = GaussianInputs(data, seed=0)
    >>> noise[0][0].shape, noise.mean_.shape
    (torch.Size([2, 4, 4]), (2,))
    """

    def __init__(self, dataset, seed: int = 0) -> None:
        super().__init__(dataset, seed)
        channels = self.image_shape_[0] if len(self.image_shape_) == 3 else 1
        total = np.zeros(channels)
        total_sq = np.zeros(channels)
        for i in range(len(dataset)):
            # On the CPU and detached: numpy reads neither a tensor on the GPU nor one
            # that requires grad (and some GPUs have no float64).
            x = torch.as_tensor(dataset[i][0]).detach().to("cpu", torch.float64)
            x = x.reshape(channels, -1)
            total += x.sum(1).numpy()
            total_sq += (x * x).sum(1).numpy()
        count = len(dataset) * _positions(self.image_shape_)
        self.mean_ = total / count
        self.std_ = np.sqrt(np.maximum(total_sq / count - self.mean_**2, 0.0))

    def __getitem__(self, i: int):
        channels = len(self.mean_)
        noise = self._rng(i).standard_normal((channels, _positions(self.image_shape_)))
        noise = noise * self.std_[:, None] + self.mean_[:, None]
        return torch.from_numpy(noise.reshape(self.image_shape_).astype(np.float32)), int(self.targets[i])


def _true_labels(dataset, num_classes: int | None = None, seed: int = 0) -> RandomizedLabels:
    """The control: every label kept (:class:`RandomizedLabels` with ``p=0``)."""
    return RandomizedLabels(dataset, 0.0, num_classes=num_classes, seed=seed)


def _random_labels(dataset, num_classes: int | None = None, seed: int = 0) -> RandomizedLabels:
    """Every label redrawn uniformly (:class:`RandomizedLabels` with ``p=1``)."""
    return RandomizedLabels(dataset, 1.0, num_classes=num_classes, seed=seed)


#: Corruption name to its wrapper (see :func:`corrupt` and the module's table). The
#: parameters each takes are its signature's, less ``dataset`` and ``seed``.
CORRUPTIONS = {
    "true_labels": _true_labels,
    "partial_labels": RandomizedLabels,
    "random_labels": _random_labels,
    "shuffled_pixels": ShuffledPixels,
    "random_pixels": RandomPixels,
    "gaussian": GaussianInputs,
}

# What a parameter's value must be, checked before any data are read.
_VALUE_CHECKS = {
    "p": (
        lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 <= v <= 1,
        "a probability between 0 and 1",
    ),
    "num_classes": (
        lambda v: v is None or (isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0),
        "a positive int (or None to infer it from the labels)",
    ),
}
# Why a parameter is refused, where a user is likely to try it.
_REFUSALS = {
    ("true_labels", "p"): "true_labels keeps every label; for noise use partial_labels with p",
    ("random_labels", "p"): "random_labels redraws every label (p = 1 by definition); "
    "for a fraction use partial_labels with p",
}


def check_corruption(name: str, params: Mapping[str, Any]) -> None:
    """Check a corruption's name and parameters without reading any data.

    Studies call it when their grid is built, so that a misspelt name or parameter
    fails before any model trains; :func:`corrupt` calls it too.

    Parameters
    ----------
    name : str
        A key of :data:`CORRUPTIONS`.
    params : mapping
        The parameters :func:`corrupt` would pass on (``p`` for ``partial_labels``,
        ``num_classes`` for the label corruptions); not the seed.

    Raises
    ------
    ValueError
        For an unknown name, a parameter the corruption does not take, a missing
        required one, or a bad value.

    Examples
    --------
    >>> check_corruption("partial_labels", {"p": 0.3})
    >>> check_corruption("random_labels", {"p": 0.3})
    Traceback (most recent call last):
    ...
    ValueError: corruption 'random_labels' takes no parameter 'p': random_labels redraws every label (p = 1 by definition); for a fraction use partial_labels with p.
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose one of {sorted(CORRUPTIONS)}.")
    signature = inspect.signature(CORRUPTIONS[name]).parameters
    takes = [key for key in signature if key not in ("dataset", "seed")]
    for key in params:
        if key in takes:
            continue
        if key == "seed":
            why = "the seed is given apart from the parameters (a study's seeds set it)"
        else:
            why = _REFUSALS.get((name, key), f"its parameters are {takes}" if takes else "it takes none")
        raise ValueError(f"corruption {name!r} takes no parameter {key!r}: {why}.")
    missing = [key for key in takes if signature[key].default is inspect.Parameter.empty and key not in params]
    if missing:
        hint = "; e.g. p = 0.3 redraws about 30 % of the labels (the new class may equal the old one)"
        raise ValueError(f"corruption {name!r} needs {missing}{hint if 'p' in missing else ''}.")
    for key, value in params.items():
        if key not in _VALUE_CHECKS:  # a parameter of a corruption added to CORRUPTIONS
            continue
        ok, what = _VALUE_CHECKS[key]
        if not ok(value):
            raise ValueError(f"corruption {name!r}: {key} must be {what}, got {value!r}.")


def corrupt(dataset, name: str, *, seed: int = 0, **params) -> Dataset:
    """Wrap ``dataset`` in the corruption called ``name`` (a key of :data:`CORRUPTIONS`).

    Parameters
    ----------
    dataset : Dataset of (x, label)
    name : str
        One of ``CORRUPTIONS``; ``"partial_labels"`` needs ``p``, and only it takes
        one (``"random_labels"`` is ``p = 1``, ``"true_labels"`` ``p = 0``).
    seed : int, default=0
    **params
        Passed to the wrapper: ``p``, and ``num_classes`` for the label corruptions;
        checked by :func:`check_corruption`.

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.zeros(100, 3), torch.arange(100) % 4)
    >>> int(corrupt(data, "random_labels", seed=1).corrupted_.sum())   # about 75 of 100
    74
    >>> int(corrupt(data, "true_labels").corrupted_.sum())
    0
    """
    check_corruption(name, params)
    return CORRUPTIONS[name](dataset, seed=seed, **params)
