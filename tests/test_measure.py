"""measure(): one dataset's d_data, K_F and d_repr."""

import numpy as np
import pytest
from sklearn.base import BaseEstimator

from idprops.data import load_dataset
from idprops.studies.measure import measure

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def digit_pairs():
    return load_dataset("digits", classes=[0, 1])


def _d_repr_layers(data, **kwargs):
    out = measure(data, estimators=["mle"], sharpness=False, model="small_cnn", layers=["fc1"], **kwargs)
    return out["representation"]["layers"]


def _d_repr(data, **kwargs):
    return _d_repr_layers(data, **kwargs)[0]["dimension"]


def test_seed_fixes_the_initialisation_not_the_callers_stream(digit_pairs):
    draws, dims = [], []
    for seed in (4, 4, 5):
        torch.manual_seed(123)
        dims.append(_d_repr(digit_pairs, seed=seed))
        draws.append(torch.rand(3))
    assert dims[0] == dims[1] != dims[2]
    # The caller's stream goes on from its own seed, whatever seed measure was given.
    assert torch.equal(draws[0], draws[2])


def test_image_arrays_reach_the_network_as_images(digit_pairs):
    images = np.stack([np.asarray(image) for image, _ in digit_pairs])
    labels = np.array([int(label) for _, label in digit_pairs])
    assert images.shape[1:] == (1, 8, 8)
    out = measure((images, labels), estimators=["mle"], sharpness=False, model="small_cnn", layers=["fc1"])
    assert out["data"]["features"] == 64
    # Same images, same seed: the arrays measure as the Dataset they came from.
    assert out["representation"]["layers"] == _d_repr_layers(digit_pairs)


class _NaNDimension(BaseEstimator):
    """A plugin's estimator whose estimate failed without raising."""

    def fit(self, X, y=None):
        self.dimension_ = float("nan")
        return self


def test_a_non_finite_estimate_is_an_error_row_for_the_data_as_for_a_layer(digit_pairs):
    # d_repr refused a NaN estimate; d_data passed it on with error None.
    out = measure(digit_pairs, estimators={"nan": _NaNDimension(), "mle": "mle"}, sharpness=False)
    nan_row, mle_row = out["dimensions"]
    assert np.isnan(nan_row["dimension"]) and "non-finite dimension" in nan_row["error"]
    assert any(note.startswith("d_data nan: _NaNDimension gave a non-finite") for note in out["warnings"])
    assert mle_row["error"] is None and np.isfinite(mle_row["dimension"])
