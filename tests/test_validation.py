"""check_finite: errors that locate NaN and infinity and say what to do, everywhere data come in."""

import warnings

import numpy as np
import pytest

from idprops import LabelSharpness, MLEDimension, TwoNNDimension
from idprops.cli import main
from idprops.validation import check_finite


def test_finite_data_pass_even_near_the_largest_float():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the sum that overflows is not the user's business
        check_finite(np.full((4, 3), np.finfo(np.float64).max))
        check_finite(np.arange(12, dtype=np.uint8).reshape(4, 3))


@pytest.mark.parametrize("chunk_values", [2**24, 7])  # one block, and blocks of 2 rows
def test_the_error_counts_the_samples_and_names_the_first(chunk_values, monkeypatch):
    import idprops.validation as validation

    monkeypatch.setattr(validation, "_LOCATE_VALUES", chunk_values)
    X = np.zeros((10, 4))
    X[6, 2], X[8, 0], X[8, 1] = np.inf, np.nan, -np.inf
    with pytest.raises(ValueError) as info:
        check_finite(X, who="MLEDimension")
    assert str(info.value) == (
        "Input X contains NaN and infinity in 2 of 10 samples (the first: sample 6, feature 2); "
        "MLEDimension needs finite values: drop those samples or replace their values."
    )
    X[8] = 0
    with pytest.raises(
        ValueError, match=r"^Input Y contains infinity in 1 of 10 samples \(the first: sample 6, feature 2\): drop"
    ):
        check_finite(X, name="Y")


@pytest.mark.parametrize("n_features", [5, 5000])  # the second shown non-finite by the fit's norms
@pytest.mark.parametrize(
    "fit",
    [
        lambda X: MLEDimension().fit(X),
        lambda X: TwoNNDimension().fit(X),
        lambda X: LabelSharpness(M=None).fit(X, np.arange(len(X)) % 2),
    ],
    ids=["mle", "twonn", "label sharpness"],
)
def test_estimators_locate_the_bad_value_without_scikit_learns_advice(fit, n_features):
    # scikit-learn's message advised HistGradientBoosting, which handles missing values:
    # no help to someone measuring a dimension.
    X = np.random.default_rng(0).standard_normal((60, n_features))
    X[9, 3] = np.nan
    with pytest.raises(ValueError) as info:
        fit(X)
    assert str(info.value).startswith("Input X contains NaN in 1 of 60 samples (the first: sample 9, feature 3); ")
    assert "needs finite values" in str(info.value) and "HistGradientBoosting" not in str(info.value)


@pytest.mark.parametrize("Estimator", [MLEDimension, TwoNNDimension])
def test_score_locates_the_bad_value(Estimator):
    rng = np.random.default_rng(0)
    est = Estimator().fit(rng.standard_normal((100, 3)))
    X = rng.standard_normal((20, 3))
    X[4, 1] = -np.inf
    with pytest.raises(
        ValueError, match=r"Input X contains infinity in 1 of 20 samples \(the first: sample 4, feature 1\)"
    ):
        est.score(X)


def test_label_sharpness_score_locates_the_bad_value():
    rng = np.random.default_rng(0)
    est = LabelSharpness(M=None).fit(rng.standard_normal((100, 3)), np.arange(100) % 2)
    X = rng.standard_normal((20, 3))
    X[2, 0] = np.nan
    with pytest.raises(ValueError, match=r"Input X contains NaN in 1 of 20 samples \(the first: sample 2, feature 0\)"):
        est.score(X, np.arange(20) % 2)


def test_the_cli_refuses_data_with_nan_in_one_line_before_measuring(tmp_path, capsys):
    # It measured NaN for every estimator, with scikit-learn's advice as notes, and exited 0.
    X = np.random.default_rng(0).standard_normal((40, 6))
    X[5, 4] = np.nan
    np.save(tmp_path / "x.npy", X)
    assert main(["measure", "--data", str(tmp_path / "x.npy")]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.strip().splitlines() == [
        "idprops: error: Input data contains NaN in 1 of 40 samples (the first: sample 5, feature 4): "
        "drop those samples or replace their values."
    ]


def _nan_network():
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    with torch.no_grad():
        net[1].weight[2, 5] = float("nan")
    return net


def test_non_finite_activations_point_at_the_model_not_the_samples():
    # The data's advice, to drop the samples, cannot mend a network with a NaN weight.
    from idprops import ReprDimension
    from idprops.data import load_digits
    from idprops.studies.measure import measure

    data = load_digits(train=None, n=100)
    expected = (
        "layer '1': the activations hold NaN in 100 of 100 samples (the first: sample 0, feature 2): the model "
        "gives non-finite values there; check its weights (a training that diverged leaves NaN weights) and its inputs."
    )
    with pytest.raises(ValueError) as info:
        ReprDimension(_nan_network(), "1").fit(data)
    assert str(info.value) == expected
    out = measure(data, estimators=["mle"], sharpness=False, model=_nan_network(), layers=["1"])
    (row,) = out["representation"]["layers"]
    assert np.isnan(row["dimension"]) and row["error"] == expected.removeprefix("layer '1': ")
    assert f"d_repr 1: {row['error']}" in out["warnings"]
