"""Transforms of images: pixel scales (what range and size images are served at), augmentation.

Label sharpness K_F scales as 1 / (pixel range), so every dataset idprops returns
carries a ``pixel_scale`` string naming its scale, and reports quote it beside K_F.

Two scales:

- ``"unit"`` (default): pixels in [0, 1] at the native size, the scale of
  torchvision's ``ToTensor`` (uint8 divided by 255). The label-sharpness README's
  example (CIFAR-10, classes 0 vs 1, K_F = 0.106) is on this scale.
- ``"paper"``: the label-sharpness paper's preprocessing (Konz & Mazurowski 2024,
  ``src/dataset.py``): each image multiplied by 255 / (its own maximum) and cast to
  uint8 (so floored to an integer in 0..255), then resized to 224 x 224 with bilinear
  interpolation; native channels kept. Its Figure 1 K_F values (1e-4 units) are on
  this scale. An all-zero image stays zero (the research code divides by zero there).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["AsGiven", "PaperScale", "RandomShift", "SCALES", "UnitScale", "get_scale", "to_unit"]

# Values at most this far below an integer are counted as that integer before the
# floor: float32 rounding of (v / 255) * 255 / (m / 255) must not turn 255 into 254.
# Exact values v * 255 / m of uint8 sources are never within 1 / 255 of the next integer.
_FLOOR_TOLERANCE = 1e-3


def to_unit(image) -> torch.Tensor:
    """Float32 tensor of an image, uint8 mapped to [0, 1] as ``ToTensor`` does.

    Floating-point images are taken to be on the unit scale already.

    Examples
    --------
    >>> to_unit(torch.tensor([[[0, 51, 255]]], dtype=torch.uint8))
    tensor([[[0.0000, 0.2000, 1.0000]]])
    """
    image = torch.as_tensor(image)
    if image.dtype == torch.uint8:
        return image.to(torch.float32).div_(255.0)
    return image.to(torch.float32)


class UnitScale:
    """Pixels in [0, 1] at the native size: images pass through unchanged.

    Examples
    --------
    >>> UnitScale().pixel_scale
    'unit [0, 1]'
    """

    pixel_scale = "unit [0, 1]"
    #: The largest pixel value: attacks clip to [0, pixel_max].
    pixel_max = 1.0

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image

    def __repr__(self) -> str:
        return "UnitScale()"


class AsGiven(UnitScale):
    """Float values served as they were handed in (arrays of features, say).

    Examples
    --------
    >>> AsGiven().pixel_scale
    'as given'
    """

    pixel_scale = "as given"
    #: None, not UnitScale's 1: values served as given have no pixel range.
    pixel_max = None

    def __repr__(self) -> str:
        return "AsGiven()"


class PaperScale:
    """The label-sharpness paper's preprocessing: per-image max to 255, then resize.

    Parameters
    ----------
    size : int, default=224
        Side of the square output, resized with bilinear interpolation (antialiased,
        torchvision's default for ``transforms.Resize`` on tensors).

    Examples
    --------
    >>> scale = PaperScale(size=4)
    >>> x = scale(torch.full((1, 2, 2), 0.5))
    >>> x.shape, float(x.max()), scale.pixel_scale
    (torch.Size([1, 4, 4]), 255.0, 'paper: per-image max to 255, 4x4')
    """

    #: The largest pixel value: attacks clip to [0, pixel_max].
    pixel_max = 255.0

    def __init__(self, size: int = 224) -> None:
        self.size = size

    @property
    def pixel_scale(self) -> str:
        return f"paper: per-image max to 255, {self.size}x{self.size}"

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.functional import resize

        image = image.to(torch.float64)
        peak = image.max()
        if peak > 0:
            image = torch.floor(image * (255.0 / peak) + _FLOOR_TOLERANCE)
        image = image.to(torch.float32)
        return resize(image, [self.size, self.size], interpolation=InterpolationMode.BILINEAR, antialias=True)

    def __repr__(self) -> str:
        return f"PaperScale(size={self.size})"


#: Pixel scales by name, as :func:`get_scale` accepts them.
SCALES: dict[str, Callable[[], object]] = {"unit": UnitScale, "paper": PaperScale}

ScaleSpec = str | UnitScale | PaperScale


def get_scale(scale: ScaleSpec):
    """Turn ``"unit"``, ``"paper"`` or a scale object into a scale object.

    A scale object is any callable on a float32 C x H x W tensor in [0, 1] with a
    ``pixel_scale`` string attribute, so a custom preprocessing can be named too.

    Examples
    --------
    >>> get_scale("paper").pixel_scale
    'paper: per-image max to 255, 224x224'
    """
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; use one of {sorted(SCALES)} or a scale object.")
        return SCALES[scale]()
    if callable(scale) and isinstance(getattr(scale, "pixel_scale", None), str):
        return scale
    raise ValueError(
        f"scale must be 'unit', 'paper' or a callable with a 'pixel_scale' string attribute, got {scale!r}."
    )


class RandomShift:
    """Data augmentation: translate each image by up to ``max_shift`` pixels, zero-filled.

    A new shift (dx, dy), each uniform in ``-max_shift .. max_shift``, is drawn on every
    access from torch's global generator, which :class:`~idprops.nn.Trainer` seeds, so
    a run is reproducible. It is indexable like a torch Dataset but not one: give
    :class:`~idprops.nn.Trainer` ``torch.utils.data.Subset(shifted, range(len(shifted)))``.

    Parameters
    ----------
    dataset : torch Dataset of (image C x H x W, label)
    max_shift : int

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> data = RandomShift(TensorDataset(torch.ones(1, 1, 4, 4), torch.tensor([3])), 1)
    >>> _ = torch.manual_seed(0)
    >>> x, y = data[0]
    >>> x.shape, y, float(x.sum()) in (9.0, 12.0, 16.0)
    (torch.Size([1, 4, 4]), 3, True)
    """

    def __init__(self, dataset, max_shift: int) -> None:
        if not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
            raise ValueError(f"shift must be a non-negative number of pixels, got {max_shift!r}")
        self.dataset = dataset
        self.max_shift = int(max_shift)
        self.pixel_scale = getattr(dataset, "pixel_scale", "as given")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        x, y = self.dataset[i][:2]
        s = self.max_shift
        if s == 0:
            return x, int(y)
        dx, dy = (torch.randint(-s, s + 1, (2,))).tolist()
        h, w = x.shape[-2:]
        out = torch.zeros_like(x)
        out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
            ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
        ]
        return out, int(y)
