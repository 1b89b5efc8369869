"""The research code's three functions are thin wrappers of the estimators."""

import numpy as np
import pytest
import torch

from idprops import LabelSharpness, MLEDimension, ReprDimension, TwoNNDimension
from idprops.data import load_digits
from idprops.datasetproperties import (
    compute_intrinsic_datadim,
    compute_intrinsic_reprdim,
    compute_labelsharpness,
)


@pytest.fixture(scope="module")
def digits01():
    return load_digits(train=None, classes=[0, 1])


def test_labelsharpness_is_the_estimator(digits01):
    assert compute_labelsharpness(digits01) == LabelSharpness(M=1000).fit(digits01).sharpness_


def test_datadim_defaults_are_the_paper_mle(digits01):
    assert compute_intrinsic_datadim(digits01) == MLEDimension(k=20).fit(digits01).dimension_
    assert compute_intrinsic_datadim(digits01, hyperparam_k=10) == MLEDimension(k=10).fit(digits01).dimension_
    assert compute_intrinsic_datadim(digits01, estimator="twonn") == TwoNNDimension().fit(digits01).dimension_


def test_reprdim_uses_the_layer(digits01):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU())
    expected = ReprDimension(model, model[1]).fit(digits01).dimension_
    assert compute_intrinsic_reprdim(digits01, model, model[1]) == expected


def test_reprdim_runs_on_the_gpu_when_there_is_one(digits01, monkeypatch):
    # As in the research code, the default device is the GPU when torch sees one.
    import idprops.datasetproperties as datasetproperties
    from idprops.activations import resolve_device

    devices = []

    class Recording(ReprDimension):
        def fit(self, X, y=None):
            devices.append(self.device)
            self.dimension_ = 1.0
            return self

    monkeypatch.setattr(datasetproperties, "ReprDimension", Recording)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16))
    compute_intrinsic_reprdim(digits01, model, model[1])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(devices[0]) == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(devices[0]) == torch.device("cpu")


def test_reprdim_failure_returns_nan_with_a_warning(digits01):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    torch.nn.init.zeros_(model[1].weight)
    torch.nn.init.zeros_(model[1].bias)  # every activation identical: nothing to measure
    with pytest.warns(RuntimeWarning, match="could not be estimated"):
        assert np.isnan(compute_intrinsic_reprdim(digits01, model, model[1]))


def test_geomle_is_refused(digits01):
    with pytest.raises(ValueError, match="geomle"):
        compute_intrinsic_datadim(digits01, estimator="geomle")
