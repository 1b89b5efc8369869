"""Datasets for idprops: real images by name, synthetic data of known dimension,
randomization-test wrappers and the modular-division task.

Every image dataset yields ``(image, label)`` with ``image`` a float32 C x H x W
tensor, and names the scale its pixels are on in ``pixel_scale``.
"""

from .manifolds import embed, sample_ball, sample_cube, sample_sphere, sample_swiss_roll
from .modular import ModularDivision, load_modular_division
from .randomization import (
    CORRUPTIONS,
    GaussianInputs,
    RandomizedLabels,
    RandomPixels,
    ShuffledPixels,
    corrupt,
)
from .sources import (
    ImageDataset,
    data_home,
    load_cifar10,
    load_dataset,
    load_digits,
    load_folder,
    load_mnist,
    load_mnist5k,
    load_svhn,
)
from .subsets import labels_of, select_indices, split_indices, subset
from .synthetic import LatentImageGenerator, load_latent_images
from .transforms import PaperScale, RandomShift, UnitScale, get_scale

__all__ = [
    "CORRUPTIONS",
    "GaussianInputs",
    "ImageDataset",
    "LatentImageGenerator",
    "ModularDivision",
    "PaperScale",
    "RandomPixels",
    "RandomShift",
    "RandomizedLabels",
    "ShuffledPixels",
    "UnitScale",
    "corrupt",
    "data_home",
    "embed",
    "get_scale",
    "labels_of",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_folder",
    "load_latent_images",
    "load_mnist",
    "load_mnist5k",
    "load_modular_division",
    "load_svhn",
    "sample_ball",
    "sample_cube",
    "sample_sphere",
    "sample_swiss_roll",
    "select_indices",
    "split_indices",
    "subset",
]
