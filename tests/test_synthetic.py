"""Images from d latent factors: a smooth map of full rank d, isometric to the flat torus."""

import numpy as np
import pytest
import torch

from idprops.data import LatentImageGenerator, load_dataset, load_latent_images


def jacobian(gen, z, h):
    """Central differences of the flattened image with respect to each latent."""
    columns = []
    for i in range(gen.latent_dim):
        step = np.zeros(gen.latent_dim)
        step[i] = h
        columns.append((gen.images(z + step) - gen.images(z - step)).ravel() / (2 * h))
    return np.stack(columns, axis=1)


@pytest.mark.parametrize("d, size, channels", [(1, 8, 1), (4, 8, 1), (10, 16, 3), (30, 12, 1)])
def test_images_are_a_smooth_full_rank_function_of_d_latents(d, size, channels):
    gen = LatentImageGenerator(d, image_size=size, channels=channels, seed=1)
    rng = np.random.default_rng(0)
    for z in rng.uniform(size=(3, d)):
        coarse, fine = jacobian(gen, z, 1e-3), jacobian(gen, z, 5e-4)
        # smooth: central differences converge at second order (error ~ h^2)
        assert np.max(np.abs(coarse - fine)) < 1e-5 * np.max(np.abs(fine))
        singular = np.linalg.svd(fine, compute_uv=False)
        assert len(singular) == d and singular[-1] > 0.999 * singular[0]  # rank d, all directions alike
        # exact isometry: J^T J = (2 pi A size)^2 / 2 * I
        expected = 2 * (np.pi * gen.amplitude * size) ** 2
        assert np.allclose(fine.T @ fine, expected * np.eye(d), rtol=1e-5, atol=1e-5 * expected)


def test_distances_follow_the_flat_torus_formula():
    gen = LatentImageGenerator(6, image_size=10, channels=2, seed=3)
    z = np.random.default_rng(1).uniform(size=(20, 6))
    X = gen.images(z).reshape(20, -1)
    for i in range(20):
        for j in range(i):
            assert np.isclose(np.sum((X[i] - X[j]) ** 2), gen.squared_distance(z[i], z[j]))
    # periodic: phases 0 and 1 give the same image
    assert np.allclose(gen.images(np.zeros((1, 6))), gen.images(np.ones((1, 6))))


def test_frequencies_are_distinct_up_to_sign_and_low_first():
    gen = LatentImageGenerator(20, image_size=8, seed=0)
    keys = {tuple(k) for k in gen.frequencies.tolist()}
    negatives = {tuple((-np.array(k)) % 8) for k in keys}
    assert len(keys) == 20 and not keys & {tuple(np.array(k) % 8) for k in negatives}
    radius = np.hypot(*gen.frequencies.T)
    assert np.all(np.diff(radius) >= 0)
    with pytest.raises(ValueError, match="at most"):
        LatentImageGenerator(40, image_size=8)


def test_dataset_pixels_labels_and_splits():
    data = load_latent_images(n=300, latent_dim=5, image_size=12, seed=4)
    images = torch.stack([data[i][0] for i in range(len(data))])
    assert images.shape == (300, 1, 12, 12) and 0.0 <= images.min() and images.max() <= 1.0
    assert torch.allclose(images.double(), torch.from_numpy(data.generator.images(data.latents)), atol=1e-6)
    assert np.array_equal(data.targets, data.generator.labels(data.latents))
    assert 100 < np.sum(data.targets == 1) < 200
    test = load_latent_images(n=300, latent_dim=5, image_size=12, seed=4, train=False)
    assert np.array_equal(test.generator.frequencies, data.generator.frequencies)
    assert not np.allclose(test.latents, data.latents)
    again = load_latent_images(n=300, latent_dim=5, image_size=12, seed=4)
    assert np.array_equal(again.latents, data.latents)


def test_labels_are_a_deterministic_function_of_latents_with_balanced_classes():
    gen = LatentImageGenerator(4, image_size=8, num_classes=3, seed=2)
    z = np.random.default_rng(5).uniform(size=(6000, 4))
    labels = gen.labels(z)
    assert np.array_equal(labels, gen.labels(z.copy()))
    assert np.all(np.abs(np.bincount(labels) / 6000 - 1 / 3) < 0.03)
    assert np.array_equal(gen.labels(z + 1.0), labels)  # periodic like the images


def test_class_subset_keeps_matching_latents_and_loader_by_name():
    data = load_dataset("latent_images", n=200, latent_dim=3, image_size=8, num_classes=3, classes=[2])
    assert np.all(data.targets == 0) and len(data.latents) == len(data) == 200
    assert np.all(data.generator.labels(data.latents) == 2)
    for classes in ([], [3]):  # [] once drew latents for ever
        with pytest.raises(ValueError, match="non-empty list of the 3 classes"):
            load_dataset("latent_images", n=10, num_classes=3, classes=classes)
    paper = load_latent_images(n=5, latent_dim=2, image_size=8, scale="paper")
    assert paper[0][0].shape == (1, 224, 224) and paper.pixel_scale.startswith("paper")
