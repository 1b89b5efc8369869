"""A study is checked whole before its first cell: training settings, seeds, datasets,
representation layers, an empty study file; nothing is written when a check fails."""

import math

import pytest

from idprops.studies import ScalingLawStudy
from idprops.studies.store import ResultsStore
from idprops.studies.study import load_study_file

DIGITS = [{"name": "digits", "classes": [0, 1]}]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"training": {"epochs": 1, "lr": math.inf}}, r"training: lr must be a positive finite number, got inf"),
        ({"training": {"epochs": 1, "lr": "fast"}}, r"training: lr must be a positive finite number, got 'fast'"),
        ({"training": {"epochs": -1}}, r"training: epochs must be a positive int or None, got -1"),
        ({"training": {"epochs": 1, "label_smoothing": "x"}}, r"training: label_smoothing must be in \[0, 1\)"),
        ({"training": {"epochs": 1, "momentum": math.nan}}, r"training: momentum must be a finite number >= 0"),
        ({"training": {"epochs": 1, "betas": [0.9]}}, r"training: betas must be two numbers in \[0, 1\)"),
        ({"training": {"epochs": 1}, "seeds": [2**70]}, r"seeds: 1180591620717411303424 is out of range"),
        (
            {"training": {"epochs": 1}, "representation": {"layers": ["fc9"]}},
            r"representation.layers: .*fc9.*the top-level layers of 'small_cnn' are \[",
        ),
    ],
)
def test_bad_settings_fail_before_any_cell(tmp_path, params, message):
    store = tmp_path / "r.sqlite"
    with pytest.raises(ValueError, match=message):
        ScalingLawStudy(datasets=DIGITS, sizes=[20], **params).run(store, progress=False)
    assert not store.exists() or len(ResultsStore(store)) == 0  # no cell ran


def test_every_missing_dataset_is_reported_at_once(tmp_path):
    datasets = [
        {"name": "digits"},
        {"name": "mnist", "root": str(tmp_path / "mnist-files")},
        {"name": "cifar10", "root": str(tmp_path / "cifar-files")},
    ]
    store = tmp_path / "r.sqlite"
    with pytest.raises(FileNotFoundError) as info:
        ScalingLawStudy(datasets=datasets, sizes=[20], training={"epochs": 1}).run(store, progress=False)
    message = str(info.value)
    assert message.startswith("2 of 3 datasets cannot be read: mnist: ")
    assert str(tmp_path / "mnist-files") in message and str(tmp_path / "cifar-files") in message
    assert len(ResultsStore(store)) == 0


@pytest.mark.parametrize("text", ["", "# only a comment\n\n"])
def test_an_empty_study_file_is_an_error(tmp_path, text):
    path = tmp_path / "empty.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"empty.toml is empty: give at least its kind and grid"):
        load_study_file(path)
