"""Which samples a dataset keeps: class subsets, seeded subsamples, fixed splits.

Every loader applies :func:`select_indices` to its labels before touching pixels, so
``classes``, ``n`` and ``seed`` mean the same thing for every dataset:

- ``classes=[c0, c1, ...]`` keeps those classes and relabels them ``0..len-1`` in the
  order given (``classes=[0, 1]`` on CIFAR-10 is the label-sharpness paper's binary
  example; ``classes=[3, 1]`` maps 3 to 0 and 1 to 1);
- ``n`` keeps a seeded sample of ``n`` of the remaining samples, stratified by default:
  each class contributes its share of ``n`` to within one sample. Samples are nested:
  with the same seed, the ``n = 500`` sample is contained in the ``n = 750`` one, so
  the training sets of a scaling-law study grow by adding samples, not by redrawing.
- the kept samples stay in the source's order unless ``shuffle=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["SubsetDataset", "labels_of", "select_indices", "split_indices", "subset"]


def _sampling_order(labels: np.ndarray, rng: np.random.Generator, stratify: bool) -> np.ndarray:
    """A seeded order of all samples whose every prefix is a (stratified) sample."""
    if not stratify:
        return rng.permutation(len(labels))
    # Class c's members, in random order, sit at evenly spaced keys (rank + offset) / N_c
    # in [0, 1): any prefix of the merged order then holds each class's share to within
    # one sample, and prefixes are nested by construction.
    keys = np.empty(len(labels))
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        keys[members] = (rng.permutation(len(members)) + rng.random()) / len(members)
    return np.argsort(keys, kind="stable")


def select_indices(
    targets,
    *,
    classes: Sequence[int] | None = None,
    n: int | None = None,
    seed: int = 0,
    stratify: bool = True,
    shuffle: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the samples to keep, and their (relabelled) labels.

    Parameters
    ----------
    targets : array-like of int, shape (n_samples,)
        Labels of the whole source.
    classes : sequence of int, default=None
        Classes to keep, relabelled ``0..len(classes)-1`` in this order; ``None`` keeps
        all classes with their labels unchanged.
    n : int, default=None
        Number of samples to keep after the class selection; ``None`` keeps all.
    seed : int, default=0
        Seed of the subsample and of the shuffle.
    stratify : bool, default=True
        Sample each class in proportion to its size (to within one sample);
        ``False`` draws uniformly.
    shuffle : bool, default=False
        Return the kept samples in a seeded random order instead of the source's.

    Returns
    -------
    indices : ndarray of int64
        Positions in ``targets`` of the kept samples.
    labels : ndarray of int64
        Their labels, relabelled when ``classes`` is given.

    Examples
    --------
    >>> idx, y = select_indices([5, 3, 5, 1, 3], classes=[3, 5])
    >>> idx.tolist(), y.tolist()
    ([0, 1, 2, 4], [1, 0, 1, 0])
    >>> len(select_indices(np.arange(10) % 2, n=4, seed=1)[0])
    4
    """
    targets = np.asarray(targets)
    if targets.ndim != 1:
        raise ValueError(f"targets must be one label per sample (1-D), got shape {targets.shape}.")
    targets = targets.astype(np.int64)
    indices = np.arange(len(targets))
    labels = targets
    if classes is not None:
        classes = [int(c) for c in classes]
        if len(set(classes)) != len(classes) or not classes:
            raise ValueError(f"classes must be a non-empty list of distinct labels, got {classes}.")
        present = set(np.unique(targets).tolist())
        missing = [c for c in classes if c not in present]
        if missing:
            raise ValueError(f"classes {missing} have no samples; the labels present are {sorted(present)}.")
        keep = np.isin(targets, classes)
        indices = indices[keep]
        relabel = {c: i for i, c in enumerate(classes)}
        labels = np.array([relabel[c] for c in targets[keep].tolist()], dtype=np.int64)
    rng = np.random.default_rng(seed)
    if n is not None:
        if not 0 < int(n) <= len(indices):
            raise ValueError(
                f"n={n} samples requested but {len(indices)} are available after the class "
                "selection; pass n between 1 and that, or n=None for all."
            )
        chosen = np.sort(_sampling_order(labels, rng, stratify)[: int(n)])
        indices, labels = indices[chosen], labels[chosen]
    if shuffle:
        order = rng.permutation(len(indices))
        indices, labels = indices[order], labels[order]
    return indices.astype(np.int64), labels


def split_indices(targets, train: bool | None, *, test_size: float = 0.25, random_state: int = 0) -> np.ndarray:
    """A fixed stratified train/test split for sources that ship without one.

    The split depends on ``random_state`` only (not on a loader's ``seed``), so the
    test part never overlaps a training subsample drawn with any seed.

    Parameters
    ----------
    targets : array-like of int
        Labels of the whole source.
    train : bool or None
        ``True``: the training part (75 % by default); ``False``: the test part;
        ``None``: everything.

    Returns
    -------
    ndarray of int64
        Sorted positions of the requested part.

    Examples
    --------
    >>> y = np.arange(20) % 2
    >>> len(split_indices(y, True)), len(split_indices(y, False)), len(split_indices(y, None))
    (15, 5, 20)
    """
    targets = np.asarray(targets)
    everything = np.arange(len(targets), dtype=np.int64)
    if train is None:
        return everything
    if not isinstance(train, (bool, np.bool_)):
        raise ValueError(f"train must be True, False or None (both parts), got {train!r}.")
    from sklearn.model_selection import train_test_split

    train_part, test_part = train_test_split(
        everything, test_size=test_size, stratify=targets, random_state=random_state
    )
    return np.sort(train_part if train else test_part)


def labels_of(dataset) -> np.ndarray:
    """Labels of a dataset of ``(x, label)`` pairs, as int64.

    A ``targets`` attribute of the right length is used when present (torchvision
    datasets and idprops' own have one); otherwise every item is read once.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> labels_of(TensorDataset(torch.zeros(3, 2), torch.tensor([2, 0, 1]))).tolist()
    [2, 0, 1]
    """
    if getattr(dataset, "targets", 0) is None:
        raise ValueError(
            "the dataset has no labels (e.g. a folder of images without class subfolders): "
            "it can be measured for its dimension, but not split by class or used where labels are needed."
        )
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets) == len(dataset):
        if isinstance(targets, torch.Tensor):  # numpy cannot read one on a GPU
            targets = targets.detach().cpu()
        return np.asarray(targets, dtype=np.int64)
    return np.array([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


class SubsetDataset(Dataset):
    """Some items of a dataset, with their labels replaced by ``targets``.

    Keeps the wrapped dataset's ``pixel_scale`` (``"as given"`` when it has none).

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.arange(6.0).reshape(3, 2), torch.tensor([0, 1, 2]))
    >>> part = SubsetDataset(data, indices=[2, 0], targets=[1, 0])
    >>> len(part), part[0], part.pixel_scale
    (2, (tensor([4., 5.]), 1), 'as given')
    """

    def __init__(self, dataset, indices, targets) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.pixel_scale = getattr(dataset, "pixel_scale", "as given")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[int(self.indices[i])][0], int(self.targets[i])


def subset(
    dataset,
    *,
    classes: Sequence[int] | None = None,
    n: int | None = None,
    seed: int = 0,
    stratify: bool = True,
    shuffle: bool = False,
) -> SubsetDataset:
    """Apply :func:`select_indices` to any dataset of ``(x, label)`` pairs.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.arange(6.0), torch.tensor([0, 1, 2, 0, 1, 2]))
    >>> part = subset(data, classes=[2, 0])
    >>> [(float(x), y) for x, y in part]
    [(0.0, 1), (2.0, 0), (3.0, 1), (5.0, 0)]
    """
    indices, targets = select_indices(
        labels_of(dataset), classes=classes, n=n, seed=seed, stratify=stratify, shuffle=shuffle
    )
    return SubsetDataset(dataset, indices, targets)
