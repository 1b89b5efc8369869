"""measure(): one dataset's d_data, K_F and d_repr."""

import pytest

from idprops.data import load_dataset
from idprops.pipelines.measure import measure

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def digit_pairs():
    return load_dataset("digits", classes=[0, 1])


def _d_repr(data, **kwargs):
    out = measure(data, estimators=["mle"], sharpness=False, model="small_cnn", layers=["fc1"], **kwargs)
    return out["representation"]["layers"][0]["dimension"]


def test_seed_fixes_the_initialisation_not_the_callers_stream(digit_pairs):
    draws, dims = [], []
    for seed in (4, 4, 5):
        torch.manual_seed(123)
        dims.append(_d_repr(digit_pairs, seed=seed))
        draws.append(torch.rand(3))
    assert dims[0] == dims[1] != dims[2]
    # The caller's stream goes on from its own seed, whatever seed measure was given.
    assert torch.equal(draws[0], draws[2])
