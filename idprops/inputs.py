"""Input adapters: what researchers hold, as one float matrix with its labels.

Accepted everywhere data is taken: numpy arrays, torch tensors, lists of images
(arrays, tensors or PIL images), lists of ``(image, label)`` pairs, torch Datasets
of images or of ``(image, label)``, and DataLoaders. Images are flattened, one per
row. scikit-learn's model selection (``cross_val_score``, ``GridSearchCV``) hands a
torch Dataset to an estimator as a list of ``(image, label)`` pairs, its rows, which
is why such lists are accepted: the same data give the same numbers in any of these
forms.

One pixel scale, whatever the container: 8-bit images (``uint8`` arrays and
tensors, 8-bit PIL images) are divided by 255 and 16-bit ones (``uint16``, PIL's
``I;16``) by 65535, as torchvision's ``ToTensor`` and
:func:`idprops.data.load_folder` do, so a uint8 array, a list of PIL images, a
Dataset and a folder of PNG files of the same images give the same matrix, bit for
bit. Floating-point values are used as given; so are other integer types (counts,
token ids). :func:`pixel_scale_name` names the scale a matrix is on.

torch and PIL are never imported here: their objects can only be passed by a caller
that has imported them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

__all__ = [
    "as_matrix",
    "as_matrix_and_labels",
    "pixel_scale_name",
    "to_numpy",
    "to_unit_pixels",
    "torch_kind",
]

# What each integer pixel type is divided by; other dtypes are used as given.
_PIXEL_MAX = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_SIXTEEN_BIT_PIL_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}


def torch_kind(X) -> str | None:
    """``"tensor"``, ``"loader"``, ``"dataset"`` for those torch objects, else None.

    Examples
    --------
    >>> torch_kind(np.zeros(3)) is None
    True
    """
    if "torch" not in sys.modules:
        return None
    import torch

    if isinstance(X, torch.Tensor):
        return "tensor"
    if isinstance(X, torch.utils.data.DataLoader):
        return "loader"
    if isinstance(X, torch.utils.data.Dataset):
        return "dataset"
    return None


def _is_pil(x) -> bool:
    if "PIL.Image" not in sys.modules:
        return False
    return isinstance(x, sys.modules["PIL.Image"].Image)


def _unmasked(a: np.ndarray, name: str) -> np.ndarray:
    """The values of a masked array without masked entries; refuse one with them."""
    if not np.ma.isMaskedArray(a):
        return a
    n_masked = int(np.ma.count_masked(a))
    if n_masked:
        raise ValueError(
            f"{name} is a masked array with {n_masked} masked values, and idprops does not "
            f"skip masked entries: drop the samples that have them ({name}[~{name}.mask.any(axis=1)]) "
            f"or fill them ({name}.filled(value))."
        )
    return np.ma.getdata(a)


def to_numpy(x, name: str = "X") -> np.ndarray:
    """Values as a numpy array on the CPU: tensors (any device, bfloat16, requiring
    grad), PIL images (channels first, as ``ToTensor``) and array-likes.

    A masked array is accepted only without masked values.

    Examples
    --------
    >>> to_numpy([1, 2])
    array([1, 2])
    """
    if _is_pil(x):
        return _pil_array(x)
    if np.ma.isMaskedArray(x):
        return _real(_unmasked(x, name), name)
    if not hasattr(x, "detach"):
        return _real(np.asarray(x), name)
    x = x.detach().cpu()
    # numpy has no bfloat16; float32 holds every bfloat16 value.
    return _real((x.float() if str(x.dtype) == "torch.bfloat16" else x).numpy(), name)


def _real(a: np.ndarray, name: str) -> np.ndarray:
    """``a``, refused if complex: casting would drop the imaginary parts unseen."""
    if np.iscomplexobj(a):
        # scikit-learn's own message starts so, and then prints the whole array.
        raise ValueError(
            f"Complex data not supported: {name} holds {a.dtype} values, and idprops measures "
            f"real points; pass the real and imaginary parts as features: np.hstack([{name}.real, {name}.imag])."
        )
    return a


def _pil_array(image) -> np.ndarray:
    """A PIL image as a C x H x W array of its stored type (uint8, uint16, int32, float32)."""
    if image.mode == "P":  # palette indices are not intensities
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "1":
        image = image.convert("L")
    if image.mode in _SIXTEEN_BIT_PIL_MODES:
        pixels = np.array(image, dtype=np.uint16)
    else:
        pixels = np.array(image)  # a copy: torch warns about read-only arrays
    return pixels[None] if pixels.ndim == 2 else np.moveaxis(pixels, -1, 0)


def to_unit_pixels(a: np.ndarray) -> np.ndarray:
    """8-bit values divided by 255 and 16-bit ones by 65535 (float32); others unchanged.

    The division is the one ``ToTensor`` does, so the results match it bit for bit.

    Examples
    --------
    >>> to_unit_pixels(np.array([0, 51, 255], dtype=np.uint8))
    array([0. , 0.2, 1. ], dtype=float32)
    >>> to_unit_pixels(np.array([0.5, 3.0]))
    array([0.5, 3. ])
    """
    peak = _PIXEL_MAX.get(a.dtype)
    if peak is None:
        return a
    return a.astype(np.float32) / np.float32(peak)


def _flatten(x) -> np.ndarray:
    x = to_unit_pixels(to_numpy(x))
    return x.reshape(len(x), -1)


def _labels(y) -> np.ndarray:
    y = to_numpy(y, "y")
    if y.ndim > 1 and np.prod(y.shape[1:]) != 1:  # a label of shape (1,) is one label
        raise ValueError(
            f"the dataset's labels have shape {y.shape[1:]} per item, not one class "
            "each; pass one label per item (for one-hot labels, their argmax)."
        )
    return y.reshape(len(y))


def _split_item(batch):
    if isinstance(batch, dict):
        raise ValueError(
            f"the dataset yields dicts (keys {sorted(batch)}), not (image, label) pairs "
            "or images; wrap it to return (batch['image'], batch['label'])."
        )
    if isinstance(batch, (tuple, list)):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


def _is_image(x) -> bool:
    """An image (PIL, tensor or array of any rank >= 1), not a number or a list of numbers."""
    return _is_pil(x) or ((hasattr(x, "detach") or isinstance(x, np.ndarray)) and np.ndim(x) >= 1)


def _is_pair(item) -> bool:
    return isinstance(item, (tuple, list)) and len(item) == 2 and _is_image(item[0]) and np.ndim(item[1]) == 0


def _stack_images(images: Sequence) -> np.ndarray:
    """One row per image, on the pixel scale of the module docstring."""
    arrays = [to_numpy(image) for image in images]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        first = arrays[0].shape
        other = next(i for i, a in enumerate(arrays) if a.shape != first)
        raise ValueError(
            f"the images have different shapes: item 0 is {first}, item {other} is "
            f"{arrays[other].shape}; resize them to one size before measuring."
        )
    return _flatten(np.stack(arrays))


def _pil_collate(batch):
    """torch's default collate, with PIL images turned into arrays first."""
    from torch.utils.data import default_collate

    def convert(item):
        if _is_pil(item):
            return _pil_array(item)
        if isinstance(item, tuple):
            return tuple(convert(part) for part in item)
        return item

    return default_collate([convert(item) for item in batch])


def as_matrix_and_labels(
    X, *, batch_size: int = 256, progress: bool | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert data to a 2-D matrix (one flattened sample a row) and its labels.

    Parameters
    ----------
    X : array-like, torch.Tensor, list of images or of (image, label), Dataset or DataLoader
        Arrays and tensors with more than two dimensions are flattened per sample;
        8- and 16-bit pixels are mapped to [0, 1] (see the module docstring). A
        Dataset is streamed in batches of ``batch_size`` without shuffling.
    batch_size : int, default=256
        Samples per batch when streaming a Dataset.
    progress : bool, default=None
        Progress bar while streaming; ``None`` shows one on a terminal.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,) or None
        Labels when ``X`` holds ``(image, label)`` pairs, else None.

    Examples
    --------
    >>> X, y = as_matrix_and_labels(np.zeros((4, 2, 3)))
    >>> X.shape, y is None
    ((4, 6), True)

    The rows scikit-learn's ``cross_val_score`` takes from a Dataset:

    >>> pairs = [(np.array([[0, 255]], dtype=np.uint8), 1), (np.zeros((1, 2), np.uint8), 0)]
    >>> as_matrix_and_labels(pairs)
    (array([[0., 1.],
           [0., 0.]], dtype=float32), array([1, 0]))
    """
    kind = torch_kind(X)
    if kind in ("dataset", "loader"):
        from torch.utils.data import DataLoader

        from .utils import progress_bar

        if kind == "loader":
            loader = X
        else:
            loader = DataLoader(X, batch_size=int(batch_size), shuffle=False, collate_fn=_pil_collate)
        features, labels = [], []
        for batch in progress_bar(loader, progress, desc="reading data", unit="batch"):
            x, y = _split_item(batch)
            features.append(_flatten(x))
            if y is not None:
                labels.append(_labels(y))
        if not features:
            raise ValueError("the dataset is empty: there is nothing to measure.")
        matrix = np.concatenate(features)
        return matrix, (np.concatenate(labels) if labels else None)
    if isinstance(X, (list, tuple)) and len(X):
        if _is_pair(X[0]):
            not_pair = next((i for i, item in enumerate(X) if not _is_pair(item)), None)
            if not_pair is not None:
                raise ValueError(
                    f"item 0 is an (image, label) pair but item {not_pair} is not; pass a "
                    "list of pairs or a list of images."
                )
            return _stack_images([image for image, _ in X]), _labels(np.asarray([to_numpy(y) for _, y in X]))
        if _is_image(X[0]):
            return _stack_images(X), None
    if _is_pil(X):
        raise ValueError("X is one PIL image; pass a list of images, one sample each.")
    if kind == "tensor" or isinstance(X, np.ndarray):
        X = to_unit_pixels(to_numpy(X))
    elif isinstance(X, (list, tuple)):  # nested lists of numbers
        X = _real(np.asarray(X), "X")
    # Anything else (sparse matrices, DataFrames) goes to scikit-learn's validation as is.
    if isinstance(X, np.ndarray) and X.ndim > 2:
        X = X.reshape(len(X), -1)
    return X, None


def as_matrix(X, *, batch_size: int = 256, progress: bool | None = None) -> np.ndarray:
    """Like :func:`as_matrix_and_labels`, without the labels.

    Examples
    --------
    >>> as_matrix(np.ones((3, 2, 2))).shape
    (3, 4)
    """
    return as_matrix_and_labels(X, batch_size=batch_size, progress=progress)[0]


def pixel_scale_name(data, X: np.ndarray) -> str:
    """The pixel scale of the matrix ``X`` read from ``data``, in words.

    A dataset's own ``pixel_scale`` (a DataLoader's dataset's) is the scale, unless
    it is ``"as given"``. Otherwise the name says where the values lie:
    ``"unit [0, 1]"`` when all are in [0, 1] (what 8-bit images become, see the
    module docstring), else ``"as given [min, max]"``. K_F scales as 1 / (pixel
    range): quote this name beside it.

    Examples
    --------
    >>> pixel_scale_name(None, np.array([[0.0, 0.5], [1.0, 0.2]]))
    'unit [0, 1]'
    >>> pixel_scale_name(None, np.array([[0.0, 16.0]]))
    'as given [0, 16]'
    """
    source = data if hasattr(data, "pixel_scale") else getattr(data, "dataset", None)
    declared = getattr(source, "pixel_scale", None)
    if isinstance(declared, str) and declared != "as given":
        return declared
    if X.size == 0:
        return "as given"
    low, high = float(X.min()), float(X.max())
    if 0.0 <= low and high <= 1.0:
        return "unit [0, 1]"
    return f"as given [{low:.3g}, {high:.3g}]"
