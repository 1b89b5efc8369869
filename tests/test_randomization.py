"""Randomization-test wrappers: the paper's semantics, checked exactly and statistically."""

import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.data import TensorDataset

from idprops.data import (
    CORRUPTIONS,
    GaussianInputs,
    RandomizedLabels,
    RandomPixels,
    ShuffledPixels,
    corrupt,
    load_digits,
)
from idprops.data.randomization import check_corruption


def images_dataset(n=40, channels=3, size=5, seed=0, classes=10):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, channels, size, size, generator=g)
    return TensorDataset(images, torch.arange(n) % classes)


def binomial_bounds(n, q, alpha=1e-6):
    """Interval holding a Binomial(n, q) count with probability 1 - alpha."""
    return stats.binom.ppf(alpha / 2, n, q), stats.binom.ppf(1 - alpha / 2, n, q)


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 1.0])
def test_label_noise_changes_about_p_times_1_minus_1_over_c(p):
    n, c = 5000, 10
    data = TensorDataset(torch.zeros(n, 1), torch.arange(n) % c)
    noisy = RandomizedLabels(data, p=p, seed=7)
    low, high = binomial_bounds(n, p * (1 - 1 / c))
    assert low <= noisy.corrupted_.sum() <= high
    r_low, r_high = binomial_bounds(n, p)
    assert r_low <= noisy.resampled_.sum() <= r_high
    # labels that were not redrawn are untouched; changed ones were redrawn
    assert np.array_equal(noisy.targets[~noisy.resampled_], noisy.original_targets_[~noisy.resampled_])
    assert np.all(noisy.resampled_[noisy.corrupted_])
    assert np.array_equal(noisy.corrupted_indices_, np.flatnonzero(noisy.targets != np.arange(n) % c))
    served = np.array([noisy[i][1] for i in range(n)])
    assert np.array_equal(served, noisy.targets)


def test_random_labels_are_uniform_over_classes_and_fixed_by_seed():
    n, c = 6000, 6
    data = TensorDataset(torch.zeros(n, 1), torch.zeros(n, dtype=torch.long))
    noisy = corrupt(data, "random_labels", seed=3, num_classes=c)
    counts = np.bincount(noisy.targets, minlength=c)
    assert stats.chisquare(counts).pvalue > 1e-4
    again = corrupt(data, "random_labels", seed=3, num_classes=c)
    assert np.array_equal(again.targets, noisy.targets)
    assert not np.array_equal(corrupt(data, "random_labels", seed=4, num_classes=c).targets, noisy.targets)


def test_label_noise_validates_and_infers_classes():
    digits = load_digits(train=None, classes=[0, 1])
    assert RandomizedLabels(digits, p=1.0).num_classes == 2  # from digits.classes
    with pytest.raises(ValueError, match="probability"):
        RandomizedLabels(digits, p=1.5)
    with pytest.raises(ValueError, match="labels must lie"):
        RandomizedLabels(digits, p=0.5, num_classes=1)


def test_shuffled_pixels_one_permutation_for_every_image_and_for_the_test_set():
    train, test = images_dataset(seed=0), images_dataset(n=10, seed=1)
    shuffled_train, shuffled_test = ShuffledPixels(train, seed=5), ShuffledPixels(test, seed=5)
    perm = shuffled_train.permutation_
    assert np.array_equal(perm, shuffled_test.permutation_)
    assert sorted(perm.tolist()) == list(range(25)) and not np.array_equal(perm, np.arange(25))
    for wrapped, original in ((shuffled_train, train), (shuffled_test, test)):
        for i in range(len(original)):
            x, y = original[i]
            out, label = wrapped[i]
            # every channel moved by the same permutation of the 25 positions
            assert torch.equal(out.reshape(3, 25), x.reshape(3, 25)[:, perm])
            assert torch.equal(torch.sort(out.flatten()).values, torch.sort(x.flatten()).values)
            assert label == y
    assert not np.array_equal(ShuffledPixels(train, seed=6).permutation_, perm)
    assert shuffled_train.corrupted_.all() and len(shuffled_train.corrupted_indices_) == 40


def test_random_pixels_differ_between_images_and_are_stable():
    data = images_dataset(n=20)
    first, second = RandomPixels(data, seed=2), RandomPixels(data, seed=2)
    permutations = [first.permutation(i) for i in range(20)]
    assert len({p.tobytes() for p in permutations}) == 20
    for i in range(20):
        x = data[i][0]
        out = first[i][0]
        assert torch.equal(out, first[i][0]) and torch.equal(out, second[i][0])
        assert torch.equal(out.reshape(3, 25), x.reshape(3, 25)[:, permutations[i]])
        assert torch.equal(torch.sort(out.flatten()).values, torch.sort(x.flatten()).values)
    assert not torch.equal(RandomPixels(data, seed=3)[0][0], first[0][0])


def test_random_pixels_are_the_same_in_a_dataloader_worker_order():
    data = images_dataset(n=12)
    wrapped = RandomPixels(data, seed=1)
    loader = torch.utils.data.DataLoader(
        wrapped, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    seen = {}
    for x, _ in loader:
        for image in x:
            seen[image.sum().item()] = image
    for i in range(12):
        assert torch.equal(seen[wrapped[i][0].sum().item()], wrapped[i][0])


def test_gaussian_inputs_match_per_channel_mean_and_std():
    n = 400
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([0.1, 0.3, 0.05])[None, :, None, None]
    offsets = torch.tensor([0.2, 0.5, 0.8])[None, :, None, None]
    images = offsets + scales * torch.rand(n, 3, 8, 8, generator=g)
    data = TensorDataset(images, torch.arange(n) % 2)
    noise = GaussianInputs(data, seed=0)
    flat = images.permute(1, 0, 2, 3).reshape(3, -1).double()
    assert np.allclose(noise.mean_, flat.mean(1).numpy()) and np.allclose(
        noise.std_, flat.std(1, unbiased=False).numpy()
    )
    out = torch.stack([noise[i][0] for i in range(n)]).permute(1, 0, 2, 3).reshape(3, -1).double()
    m = out.shape[1]  # 25,600 draws per channel: mean within 5 standard errors
    assert np.all(np.abs(out.mean(1).numpy() - noise.mean_) < 5 * noise.std_ / np.sqrt(m))
    assert np.allclose(out.std(1).numpy(), noise.std_, rtol=0.03)
    assert [noise[i][1] for i in range(n)] == (torch.arange(n) % 2).tolist()
    assert torch.equal(noise[3][0], GaussianInputs(data, seed=0)[3][0])
    assert not torch.equal(noise[3][0], noise[4][0])


def test_gaussian_inputs_statistics_of_images_that_require_grad():
    # numpy refuses a tensor that requires grad, as it does one on the GPU.
    images = torch.rand(20, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(20) % 2
    plain = GaussianInputs(TensorDataset(images, labels), seed=0)
    graded = GaussianInputs(TensorDataset(images.clone().requires_grad_(), labels), seed=0)
    np.testing.assert_array_equal(graded.mean_, plain.mean_)
    np.testing.assert_array_equal(graded.std_, plain.std_)


def test_registry_of_corruptions_and_pixel_scale_passthrough():
    digits = load_digits(train=None, n=60)
    assert set(CORRUPTIONS) == {
        "true_labels",
        "partial_labels",
        "random_labels",
        "shuffled_pixels",
        "random_pixels",
        "gaussian",
    }
    for name in CORRUPTIONS:
        params = {"p": 0.3} if name == "partial_labels" else {}
        wrapped = corrupt(digits, name, seed=0, **params)
        assert len(wrapped) == 60 and wrapped.pixel_scale == "unit [0, 1]"
        x, y = wrapped[0]
        assert x.shape == (1, 8, 8) and isinstance(y, int)
        assert len(wrapped.targets) == 60
    clean = corrupt(digits, "true_labels")
    assert not clean.corrupted_.any() and np.array_equal(clean.targets, digits.targets)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(digits, "blurred")


@pytest.mark.parametrize(
    "name, params, match",
    [
        ("partial_labels", {}, r"'partial_labels' needs \['p'\]"),
        ("random_labels", {"p": 0.3}, "takes no parameter 'p'.*partial_labels with p"),
        ("true_labels", {"p": 0.3}, "takes no parameter 'p'.*partial_labels with p"),
        ("shuffled_pixels", {"p": 0.3}, "takes no parameter 'p': it takes none"),
        ("partial_labels", {"q": 0.3, "p": 0.3}, r"takes no parameter 'q': its parameters are \['p', 'num_classes'\]"),
        ("partial_labels", {"p": 1.5}, "p must be a probability"),
        ("partial_labels", {"p": True}, "p must be a probability"),
        ("random_labels", {"num_classes": 2.5}, "num_classes must be a positive int"),
        ("blurred", {}, "unknown corruption"),
    ],
)
def test_corruption_parameters_are_checked_before_any_data(name, params, match):
    with pytest.raises(ValueError, match=match):
        check_corruption(name, params)
    with pytest.raises(ValueError, match=match):
        corrupt(load_digits(train=None, n=20), name, **params)


def test_a_corruption_added_by_the_user_keeps_its_own_parameters(monkeypatch):
    from idprops.data import randomization

    def blurred(dataset, *, sigma, seed=0):
        return dataset

    # CORRUPTIONS is public and extensible; its parameters once raised KeyError.
    monkeypatch.setitem(randomization.CORRUPTIONS, "blurred", blurred)
    data = TensorDataset(torch.zeros(4, 1), torch.arange(4))
    assert corrupt(data, "blurred", sigma=2.0) is data
    with pytest.raises(ValueError, match=r"needs \['sigma'\]"):
        check_corruption("blurred", {})


def test_random_labels_are_p_1_and_take_no_p():
    data = TensorDataset(torch.zeros(200, 1), torch.arange(200) % 10)
    assert corrupt(data, "random_labels", seed=2).resampled_.all()
    assert not corrupt(data, "true_labels", seed=2).resampled_.any()
    check_corruption("partial_labels", {"p": 0.3, "num_classes": 10})
    check_corruption("random_labels", {"num_classes": None})
