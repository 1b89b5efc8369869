"""Images generated smoothly from d latent factors: image data of known dimension.

Each of the ``d`` latent factors z_i in [0, 1) is the phase of one plane wave::

    image_c(p) = 1/2 + A * sum_i a_ic * cos(2 pi (k_i . p / size + z_i))

with distinct low integer frequencies k_i (never k_j = -k_i, never a frequency whose
sine vanishes on the grid) and unit colour vectors a_i. On the pixel grid these waves
are orthogonal, so the map from latents to images is an isometric embedding of the
flat d-torus (up to one constant):

    ||image(z) - image(z')||^2 = A^2 size^2 sum_i (1 - cos 2 pi (z_i - z'_i)).

The images therefore form a d-dimensional smooth manifold without boundary, curved in
pixel space but uniform and isotropic: the intrinsic dimension is d exactly, with none
of the boundary bias of a cube. Pixels stay in [0, 1]. Labels are a deterministic smooth
function of the latents: equal-probability bins of ``sum_i w_i cos(2 pi z_i + phi_i)``
(its sign for two classes).

What estimators read on it (n = 2,000, the paper's MLE with k = 20 / TwoNN): about
1.9 / 2.1 for d = 2, 5.2 / 4.9 for d = 5, 11.8 / 11.6 for d = 10 and 21.9 / 24.3 for
d = 20, the same for every image size and channel count (the embedding is an isometry).
Above d = 5 they read high, not low as on a cube: neighbours at these sample sizes are
far apart on the circles, whose chords are shorter than their arcs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .sources import ImageDataset, serve_images
from .transforms import ScaleSpec

__all__ = ["LatentImageGenerator", "load_latent_images"]

_BATCH = 512  # latents per chunk: memory is O(batch x d x pixels)


def _frequencies(size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` integer frequencies, lowest first, no two equal up to sign (mod size)."""
    span = range(-((size - 1) // 2), size // 2 + 1)  # one alias of every frequency mod size
    candidates = []
    for k1 in span:
        for k2 in span:
            if (2 * k1) % size == 0 and (2 * k2) % size == 0:
                continue  # sin(pi * integer) = 0 on the grid: the phase would be invisible
            # One representative of {k, -k}: the first nonzero coordinate positive, or k1 = size/2.
            if k1 < 0 or (k1 == 0 and k2 < 0) or (2 * k1 == size and k2 < 0):
                continue
            candidates.append((k1, k2))
    if count > len(candidates):
        raise ValueError(
            f"a {size} x {size} image holds at most {len(candidates)} latent factors; "
            f"got latent_dim={count}: use a larger image_size."
        )
    candidates = np.array(candidates)
    radius = np.hypot(candidates[:, 0], candidates[:, 1])
    order = np.lexsort((rng.random(len(candidates)), radius))  # lowest first, ties at random
    return candidates[order[:count]]


class LatentImageGenerator:
    """A fixed random smooth map from latents in [0, 1)^d to images, and a labelling.

    Parameters
    ----------
    latent_dim : int
        d, the number of latent factors (one plane wave each): the intrinsic dimension.
    image_size : int, default=16
        Images are ``image_size`` x ``image_size``.
    channels : int, default=1
        Each wave gets a random unit colour vector over the channels.
    num_classes : int, default=2
    seed : int, default=0
        Draws the generator: frequency ties, colours, the labelling.

    Attributes
    ----------
    frequencies : ndarray (d, 2)
    colours : ndarray (d, channels), unit rows
    amplitude : float
        A in the module's formula; keeps pixels in [0, 1].

    Examples
    --------
    >>> gen = LatentImageGenerator(3, image_size=8)
    >>> z = np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.8]])
    >>> X = gen.images(z)
    >>> X.shape, gen.labels(z).shape
    ((2, 1, 8, 8), (2,))
    >>> bool(np.isclose(np.sum((X[0] - X[1]) ** 2), gen.squared_distance(z[0], z[1])))
    True
    """

    def __init__(
        self,
        latent_dim: int,
        image_size: int = 16,
        channels: int = 1,
        num_classes: int = 2,
        seed: int = 0,
    ) -> None:
        if int(latent_dim) < 1 or int(image_size) < 2 or int(channels) < 1 or int(num_classes) < 2:
            raise ValueError(
                "need latent_dim >= 1, image_size >= 2, channels >= 1 and num_classes >= 2; got "
                f"{latent_dim}, {image_size}, {channels}, {num_classes}."
            )
        self.latent_dim = int(latent_dim)
        self.image_size = int(image_size)
        self.channels = int(channels)
        self.num_classes = int(num_classes)
        rng = np.random.default_rng(seed)
        d = self.latent_dim
        self.frequencies = _frequencies(self.image_size, d, rng)
        colours = rng.standard_normal((d, self.channels))
        self.colours = colours / np.linalg.norm(colours, axis=1, keepdims=True)
        self.amplitude = 0.5 / np.abs(self.colours).sum(axis=0).max()
        self.weights = rng.standard_normal(d)
        self.phases = rng.uniform(0, 2 * np.pi, size=d)
        if self.num_classes == 2:
            self.thresholds = np.zeros(1)  # the form is symmetric about 0: its sign halves the mass
        else:
            reference = self._form(rng.uniform(size=(100_000, d)))
            self.thresholds = np.quantile(reference, np.arange(1, num_classes) / num_classes)

    def _check(self, latents) -> np.ndarray:
        latents = np.atleast_2d(np.asarray(latents, dtype=np.float64))
        if latents.ndim != 2 or latents.shape[1] != self.latent_dim:
            raise ValueError(f"latents must have shape (m, {self.latent_dim}), got {latents.shape}.")
        return latents

    def _form(self, latents: np.ndarray) -> np.ndarray:
        return np.cos(2 * np.pi * latents + self.phases) @ self.weights

    def images(self, latents) -> np.ndarray:
        """Images (m, channels, size, size) in [0, 1] of latents (m, d), float64."""
        latents = self._check(latents)
        grid = np.arange(self.image_size) / self.image_size
        # (d, size, size): k_i . p / size at every pixel
        waves = self.frequencies[:, 0, None, None] * grid[:, None] + self.frequencies[:, 1, None, None] * grid
        out = np.empty((len(latents), self.channels, self.image_size, self.image_size))
        for lo in range(0, len(latents), _BATCH):
            z = latents[lo : lo + _BATCH]
            cosines = np.cos(2 * np.pi * (waves + z[:, :, None, None]))  # (m, d, size, size)
            out[lo : lo + _BATCH] = 0.5 + self.amplitude * np.einsum("ic,mixy->mcxy", self.colours, cosines)
        return out

    def labels(self, latents) -> np.ndarray:
        """Class of each latent: the bin of ``sum_i w_i cos(2 pi z_i + phi_i)``."""
        return np.searchsorted(self.thresholds, self._form(self._check(latents))).astype(np.int64)

    def squared_distance(self, z, z_other) -> float:
        """Exact squared Euclidean distance between the images of two latents."""
        delta = np.asarray(z, dtype=np.float64) - np.asarray(z_other, dtype=np.float64)
        return float(self.amplitude**2 * self.image_size**2 * np.sum(1 - np.cos(2 * np.pi * delta)))


def load_latent_images(
    *,
    root=None,
    train: bool | None = True,
    download: bool = False,
    classes: Sequence[int] | None = None,
    n: int | None = 1000,
    seed: int = 0,
    scale: ScaleSpec = "unit",
    latent_dim: int = 8,
    image_size: int = 16,
    channels: int = 1,
    num_classes: int = 2,
    generator_seed: int = 0,
) -> ImageDataset:
    """``n`` images generated from ``latent_dim`` uniform latent factors (see the module).

    The generator is fixed by ``generator_seed``; ``seed`` draws the latents, from
    separate streams for ``train=True`` (or ``None``) and ``train=False``, so the train
    and test sets of one seed share a generator and a labelling but no latents.
    ``n`` images (``None``: 1,000) of the ``classes`` kept: latents are drawn until
    ``n`` fall in those classes, so that ``n`` means what it does for every dataset.
    ``root`` and ``download`` are ignored. The returned dataset also has ``latents``
    (those of its images) and ``generator``.

    Examples
    --------
    >>> data = load_latent_images(n=20, latent_dim=3, image_size=8)
    >>> len(data), tuple(data[0][0].shape), data.latents.shape, sorted(set(data.targets.tolist()))
    (20, (1, 8, 8), (20, 3), [0, 1])
    """
    generator = LatentImageGenerator(latent_dim, image_size, channels, num_classes, seed=generator_seed)
    n = 1000 if n is None else int(n)
    if n < 1:
        raise ValueError(f"n must be a positive number of images, got {n}.")
    if classes is not None and (not len(classes) or not set(classes) <= set(range(num_classes))):
        raise ValueError(
            f"classes must be a non-empty list of the {num_classes} classes 0..{num_classes - 1}, got {list(classes)}."
        )
    part = 1 if train is False else 0
    rng = np.random.default_rng([seed, part])
    # Drawn in rounds from one stream: without classes the first round is all of it,
    # and a larger n extends a smaller one's images.
    rounds = []
    while sum(map(len, rounds)) < n:
        batch = rng.uniform(size=(n, generator.latent_dim))
        keep = np.isin(generator.labels(batch), list(classes)) if classes is not None else slice(None)
        rounds.append(batch[keep])
    latents = np.concatenate(rounds)[:n]
    images = torch.from_numpy(generator.images(latents).astype(np.float32))
    names = [str(c) for c in range(num_classes)]
    data = serve_images(images, generator.labels(latents), names, classes=classes, n=None, seed=seed, scale=scale)
    data.latents = latents
    data.generator = generator
    return data
