"""The scale profile: Gride's likelihood, flat on clean manifolds, falling under noise."""

import numpy as np
import pytest
from scipy.special import betaln

from idprops import TwoNNDimension
from idprops.base import distinct_neighbors
from idprops.data import sample_sphere
from idprops.scales import gride_dimension, scale_profile


def gride_log_likelihood(d, log_mu, n1):
    mu = np.exp(log_mu)
    return np.sum(np.log(d) + (n1 - 1) * np.log(mu**d - 1) - ((2 * n1 - 1) * d + 1) * log_mu - betaln(n1, n1))


@pytest.mark.parametrize("n1", [1, 2, 4, 8])
def test_gride_dimension_maximises_the_likelihood(n1, rng):
    log_mu = np.log(1 + rng.exponential(0.3, size=400))
    d, std = gride_dimension(log_mu, n1)
    grid = d * np.array([0.98, 0.995, 1.005, 1.02])
    assert all(gride_log_likelihood(g, log_mu, n1) < gride_log_likelihood(d, log_mu, n1) for g in grid)
    # The Fisher standard error is the inverse curvature of the log-likelihood.
    h = 1e-4 * d
    second = (
        gride_log_likelihood(d + h, log_mu, n1)
        - 2 * gride_log_likelihood(d, log_mu, n1)
        + gride_log_likelihood(d - h, log_mu, n1)
    ) / h**2
    assert std == pytest.approx(1 / np.sqrt(-second), rel=1e-4)


def test_rank_one_is_the_twonn_maximum_likelihood():
    X = sample_sphere(1000, 4, ambient_dim=8, random_state=0)
    twonn = TwoNNDimension(method="mle").fit(X).dimension_
    # TwoNN's MLE is (n - 1) / sum, Gride's n / sum.
    assert scale_profile(X, max_rank=1).dimensions[0] == pytest.approx(twonn * 1000 / 999, rel=1e-9)


def test_a_clean_manifold_is_flat_across_scales():
    X = sample_sphere(4000, 3, ambient_dim=50, random_state=0)
    profile = scale_profile(X, max_rank=16)
    np.testing.assert_array_equal(profile.ranks, [1, 2, 4, 8, 16])
    assert np.all(np.diff(profile.scales) > 0)
    np.testing.assert_allclose(profile.dimensions, 3, rtol=0.04)  # measured 2.97 to 3.08
    assert profile.variation < 0.06


def test_noise_in_many_ambient_dimensions_makes_the_profile_fall():
    # Noise of 0.02 a coordinate in 50 dimensions (0.14 in norm) fills every direction
    # at the smallest scales: measured 11.8, 8.6, 6.4, 5.1, 4.3.
    X = sample_sphere(4000, 3, ambient_dim=50, random_state=0)
    X = X + 0.02 * np.random.default_rng(2).standard_normal(X.shape)
    profile = scale_profile(X, max_rank=16)
    assert np.all(np.diff(profile.dimensions) < 0)
    assert profile.dimensions[0] > 2.5 * profile.dimensions[-1]
    assert profile.variation > 1.0


def test_shared_neighbours_give_the_same_profile():
    X = sample_sphere(600, 2, ambient_dim=5, random_state=1)
    alone = scale_profile(X, max_rank=4)
    shared = scale_profile(X, max_rank=4, neighbors=distinct_neighbors(X, 21))
    np.testing.assert_array_equal(alone.dimensions, shared.dimensions)
    with pytest.raises(ValueError, match="needs 16"):
        scale_profile(X, max_rank=8, neighbors=distinct_neighbors(X, 10))
