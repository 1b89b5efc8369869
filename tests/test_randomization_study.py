"""RandomizationStudy: each corruption end to end on a tiny digits run, exact properties, resume."""

import csv
import math

import numpy as np
import pytest

from idprops.data import corrupt, load_digits
from idprops.studies.randomization import RandomizationStudy, randomization_cell

TINY = dict(
    sizes=120,
    seeds=[0],
    training={"epochs": 2, "batch_size": 40, "threads": 1},
    tracking={"n_samples": 60, "every": 1},
    estimators={"twonn": {}},
    models="mlp1x512",
    device="cpu",
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return RandomizationStudy(**TINY).run(tmp_path_factory.mktemp("rand") / "store.sqlite", progress=False)


def test_every_corruption_runs_with_its_exact_properties(tiny):
    by = {r["label"]: r for r in tiny}
    assert list(by) == [
        "true_labels",
        "partial_labels_0.5",
        "random_labels",
        "shuffled_pixels",
        "random_pixels",
        "gaussian",
    ]
    train = load_digits(n=120, seed=0)
    for label, name, params in (
        ("partial_labels_0.5", "partial_labels", {"p": 0.5}),
        ("random_labels", "random_labels", {}),
    ):
        expected = corrupt(train, name, seed=0, **params).corrupted_.mean()
        assert by[label]["corrupted_fraction"] == expected
    assert by["true_labels"]["corrupted_fraction"] == 0.0
    assert 0.3 < by["partial_labels_0.5"]["corrupted_fraction"] < by["random_labels"]["corrupted_fraction"]
    for label in ("shuffled_pixels", "random_pixels", "gaussian"):
        assert by[label]["corrupted_fraction"] == 1.0
    # Labels alone and one shared permutation of pixels do not move the inputs' distances.
    d = by["true_labels"]["d_data.twonn"]
    for label in ("partial_labels_0.5", "random_labels"):
        assert by[label]["d_data.twonn"] == d
    assert by["shuffled_pixels"]["d_data.twonn"] == pytest.approx(d, rel=1e-9)
    # A different permutation per image, or noise, destroys the low-dimensional structure.
    for label in ("random_pixels", "gaussian"):
        assert by[label]["d_data.twonn"] > 1.5 * d


def test_curves_and_id_invariants(tiny):
    for r in tiny:
        assert r["n_train"] == 120 and r["n_test"] == 450
        hist = r["history"]
        assert [h["epoch"] for h in hist] == [1, 2] and [h["step"] for h in hist] == [3, 6]
        for h in hist:
            for key in ("train_accuracy", "test_accuracy"):
                assert 0.0 <= h[key] <= 1.0
        assert math.isclose(r["test_accuracy"] * 450, round(r["test_accuracy"] * 450), abs_tol=1e-9)
        ids = r["id_history"]
        assert [e["step"] for e in ids] == [0, 3, 6]
        for e in ids:
            assert list(e["ids"]) == ["fc1", "relu1"]
            assert e["llid"] == e["ids"]["relu1"] and e["pid"] == max(e["ids"].values()) >= e["llid"]
        assert (r["llid"], r["pid"]) == (ids[-1]["llid"], ids[-1]["pid"])


def test_resume_and_report(tiny, tmp_path):
    study = RandomizationStudy(**TINY)
    again = study.run(tiny.store_path, progress=False)
    assert again.n_run == 0
    path = study.report(again, tmp_path)
    with (tmp_path / "results.csv").open(newline="") as fh:
        assert len(list(csv.reader(fh))) == 1 + len(again)
    for name in ("training_loss", "accuracy", "llid_curves", "id_curves"):
        assert (tmp_path / f"{name}.png").is_file(), name
    text = path.read_text()
    assert "random_labels (seed 0" in text and "d_data twonn" in text


def test_grid_and_bad_settings():
    study = RandomizationStudy(
        corruptions={"p02": {"name": "partial_labels", "p": 0.2}, "random_labels": {}}, seeds=[0, 1]
    )
    cells = study.cells()
    assert [(c["label"], c["seed"]) for c in cells] == [
        ("p02", 0),
        ("p02", 1),
        ("random_labels", 0),
        ("random_labels", 1),
    ]
    assert cells[0]["corruption"] == {"name": "partial_labels", "params": {"p": 0.2}}
    with pytest.raises(ValueError, match="unknown corruption"):
        RandomizationStudy(corruptions=["noisy"]).cells()
    # Corruption parameters fail when the grid is built, not in every cell.
    with pytest.raises(ValueError, match=r"corruptions.p: corruption 'partial_labels' needs \['p'\]"):
        RandomizationStudy(corruptions={"p": {"name": "partial_labels"}}).cells()
    with pytest.raises(ValueError, match="corruptions.r30: corruption 'random_labels' takes no parameter 'p'"):
        RandomizationStudy(corruptions={"r30": {"name": "random_labels", "p": 0.3}}).cells()
    with pytest.raises(ValueError, match="corruptions.gaussian: .* takes no parameter 'seed'"):
        RandomizationStudy(corruptions={"gaussian": {"seed": 3}}).cells()
    with pytest.raises(ValueError, match="unknown setting"):
        RandomizationStudy(training={"epoch": 3}).cells()
    with pytest.raises(ValueError, match=r"tracking.layers: the model has no layer named 'conv1'.*'stem'"):
        RandomizationStudy(models="cifar_resnet18", tracking={"layers": ["conv1", "avgpool"]}).cells()
    assert RandomizationStudy(models="cifar_resnet18").cells()[0]["tracking"]["layers"][0] == "stem"
    with pytest.raises(ValueError, match="no layer named 'relu4'"):
        RandomizationStudy(tracking={"layers": ["relu1", "relu4"]}).cells()
    assert np.all([c["tracking"]["layers"] == ["relu1", "relu2", "relu3"] for c in cells])


def test_final_ids_are_of_the_trained_model():
    # 2 epochs, IDs every 4: the final values must not be the untrained model's (epoch 0).
    study = RandomizationStudy(**{**TINY, "corruptions": ["true_labels"], "tracking": {"n_samples": 60, "every": 4}})
    out = randomization_cell(study.cells()[0])
    ids = out["id_history"]
    assert [e["epoch"] for e in ids] == [0, 2]
    assert ids[-1]["step"] == out["history"][-1]["step"]
    assert (out["llid"], out["pid"], out["ids"]) == (ids[-1]["llid"], ids[-1]["pid"], ids[-1]["ids"])
    assert out["ids"] != ids[0]["ids"]
