"""DynamicsStudy: the sweep's grid, the shift augmentation, a tiny run end to end, resume."""

import csv
import math

import pytest
import torch
from torch.utils.data import TensorDataset

from idprops.data.transforms import RandomShift
from idprops.studies.dynamics import DynamicsStudy, dynamics_cell
from idprops.studies.specs import DEFAULT_LAYERS
from idprops.studies.steps import first_step_at_least, merge_by_step

TINY = dict(
    sizes=100,
    regularizers={"dropout": [0.0, 0.5], "weight_decay": [0.0, 0.1], "shift": [1]},
    seeds=[0],
    training={"epochs": 2, "threads": 1},
    tracking={"n_samples": 80},
    device="cpu",
)


def test_random_shift_translates_exactly():
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 3, 4] = 1.0
    data = RandomShift(TensorDataset(image, torch.tensor([7])), 2)
    torch.manual_seed(0)
    seen = set()
    for _ in range(200):
        x, y = data[0]
        assert y == 7 and x.shape == (1, 8, 8) and float(x.sum()) == 1.0  # the pixel stays inside
        r, c = (int(v) for v in torch.nonzero(x[0])[0])
        assert abs(r - 3) <= 2 and abs(c - 4) <= 2
        seen.add((r - 3, c - 4))
    assert len(seen) == 25  # every shift in -2..2 x -2..2 occurs
    assert torch.equal(RandomShift(TensorDataset(image, torch.tensor([7])), 0)[0][0], image[0])
    with pytest.raises(ValueError, match="non-negative"):
        RandomShift(TensorDataset(image, torch.tensor([7])), -1)


def test_settings_share_the_baseline():
    study = DynamicsStudy(regularizers={"dropout": [0, 0.5, 0.9], "shift": [0, 2]}, baseline={"weight_decay": 1e-4})
    settings = study.settings()
    assert len(settings) == 4  # the baseline once, two dropouts, one shift
    baseline, sweeps = settings[0]
    assert baseline == {"weight_decay": 1e-4, "dropout": 0.0, "label_smoothing": 0.0, "shift": 0}
    assert sweeps == ["dropout", "shift"]
    for setting, _ in settings:
        assert setting["weight_decay"] == 1e-4
    assert len(DynamicsStudy(seeds=[0, 1], regularizers={"dropout": [0, 0.5]}).cells()) == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(regularizers={"mixup": [0.1]}), "unknown"),
        (dict(training={"weight_decay": 0.1}), "set by the study"),
        (dict(training={"label_smoothing": 0.1}), "set by the study"),
        (dict(baseline={"dropuot": 0.1}), "baseline"),
        (dict(models="resnet18"), "no default"),
        (dict(models=["small_cnn", "mlp1x512"]), "one dataset, one model and one size"),
        (dict(datasets={"name": "digits", "pairs": [[0, 1], [2, 3]]}), "2 dataset"),
        (dict(tracking={"data": "val"}), "'test' or 'train'"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DynamicsStudy(**kwargs).cells()


def test_helpers():
    assert first_step_at_least([0, 5, 10], [0.2, 0.8, 0.95], 0.8) == 5
    assert merge_by_step([{"step": 3, "a": 1}], [{"step": 0, "b": 2}, {"step": 3, "b": 3}]) == [
        {"step": 0, "b": 2},
        {"step": 3, "a": 1, "b": 3},
    ]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return DynamicsStudy(**TINY).run(tmp_path_factory.mktemp("dyn") / "store.sqlite", progress=False)


def test_tiny_sweep_end_to_end(tiny):
    assert tiny.n_run == 4 and len(tiny) == 4
    settings = [
        (r["regularization.dropout"], r["regularization.weight_decay"], r["regularization.shift"]) for r in tiny
    ]
    assert settings == [(0.0, 0.0, 0), (0.5, 0.0, 0), (0.0, 0.1, 0), (0.0, 0.0, 1)]
    for r in tiny:
        assert r["n_train"] == 100 and r["n_val"] == 450
        assert [h["epoch"] for h in r["history"]] == [1, 2]
        assert r["val_accuracy"] == r["history"][-1]["val_accuracy"]
        ids = r["id_history"]
        assert [e["epoch"] for e in ids] == [0, 1, 2]
        assert [e["step"] for e in ids] == [0, 2, 4]  # 100 images, batch 64: 2 steps per epoch
        for e in ids:
            assert list(e["ids"]) == ["features.relu1", "features.relu2", "features.pool", "relu"]
            assert e["llid"] == e["ids"]["relu"] and e["pid"] == max(e["ids"].values()) >= e["llid"]
            assert e["log_pid_llid"] == pytest.approx(math.log(e["pid"] / e["llid"]))
        assert r["llid"] == ids[-1]["llid"] and r["log_pid_llid"] == ids[-1]["log_pid_llid"]
        assert r["id_seconds_per_evaluation"] == pytest.approx(r["id_seconds"] / 3)
        assert 0 < r["id_share"] < 1


def test_resume_and_report(tiny, tmp_path):
    study = DynamicsStudy(**TINY)
    again = study.run(tiny.store_path, progress=False)
    assert again.n_run == 0
    assert [r["key"] for r in again] == [r["key"] for r in tiny]
    path = study.report(again, tmp_path)
    with (tmp_path / "results.csv").open(newline="") as fh:
        assert len(list(csv.reader(fh))) == 1 + len({r["key"] for r in again})
    for name in (
        "id_vs_regularization",
        "accuracy_vs_log_pid_llid",
        "accuracy_vs_llid",
        "llid_curves",
        "id_curves_baseline",
    ):
        assert (tmp_path / f"{name}.png").is_file(), name
    text = path.read_text()
    assert "validation accuracy vs log(PID / LLID) (pearson)" in text
    assert "dropout 0.0 -> 0.5" in text


def test_final_ids_are_of_the_trained_model():
    # 3 epochs, IDs every 2: the final values must come from epoch 3, not epoch 2.
    study = DynamicsStudy(
        sizes=100,
        regularizers={"dropout": [0.0]},
        seeds=[0],
        training={"epochs": 3, "threads": 1},
        tracking={"n_samples": 80, "every": 2},
        device="cpu",
    )
    out = dynamics_cell(study.cells()[0])
    ids = out["id_history"]
    assert [e["epoch"] for e in ids] == [0, 2, 3]
    assert ids[-1]["epoch"] == out["history"][-1]["epoch"] and ids[-1]["step"] == out["history"][-1]["step"]
    assert (out["llid"], out["pid"], out["log_pid_llid"], out["ids"]) == (
        ids[-1]["llid"],
        ids[-1]["pid"],
        ids[-1]["log_pid_llid"],
        ids[-1]["ids"],
    )
    assert out["ids"] != ids[-2]["ids"]


@pytest.mark.parametrize("model", sorted(DEFAULT_LAYERS))
def test_default_layers_exist_in_the_model(model):
    from idprops.activations import resolve_layer
    from idprops.nn import build_model

    layers = DEFAULT_LAYERS[model]
    built = build_model(model, in_channels=1, num_classes=10, input_size=8)
    assert [resolve_layer(built, layer)[0] for layer in layers] == layers
    cells = DynamicsStudy(models=model, regularizers={"weight_decay": [0.0]}, seeds=[0]).cells()
    assert cells[0]["tracking"]["layers"] == layers


def test_bad_layer_fails_when_the_grid_is_built():
    study = DynamicsStudy(
        models="cifar_resnet18", tracking={"layers": ["conv1", "avgpool"]}, regularizers={"weight_decay": [0.0]}
    )
    with pytest.raises(ValueError, match=r"tracking.layers: the model has no layer named 'conv1'.*'stem'"):
        study.cells()


def test_dropout_in_the_model_clashes_with_the_study():
    # The cell would report the study's dropout (the baseline's 0 too) whatever the model says.
    for regularizers in ({"dropout": [0.0, 0.9]}, {"weight_decay": [0.0, 0.1]}):
        study = DynamicsStudy(models={"name": "small_cnn", "dropout": 0.5}, regularizers=regularizers)
        with pytest.raises(ValueError, match="dropout is set by the study.*baseline.dropout"):
            study.cells()


def test_model_without_dropout_fails_when_the_grid_is_built():
    with pytest.raises(ValueError, match="'mlp1x512' takes no dropout argument"):
        DynamicsStudy(models="mlp1x512", regularizers={"dropout": [0.0, 0.5]}).cells()
    cells = DynamicsStudy(models="mlp1x512", regularizers={"weight_decay": [0.0, 0.1]}, seeds=[0]).cells()
    assert [c["regularization"]["dropout"] for c in cells] == [0.0, 0.0]


def test_swept_dropout_zero_is_the_dropout_built():
    from idprops.nn.models import small_cnn
    from idprops.registry import register_model

    built = []

    def half_dropout_cnn(dropout=0.5, **kwargs):
        built.append(dropout)
        return small_cnn(dropout=dropout, **kwargs)

    register_model("test_dynamics_half_dropout_cnn", half_dropout_cnn, replace=True)
    study = DynamicsStudy(
        models="test_dynamics_half_dropout_cnn",
        sizes=100,
        regularizers={"dropout": [0.0, 0.9]},
        seeds=[0],
        training={"epochs": 1, "threads": 1},
        tracking={"layers": ["relu"], "n_samples": 80},
        device="cpu",
    )
    cell = study.cells()[0]
    assert cell["regularization"]["dropout"] == 0.0
    built.clear()
    dynamics_cell(cell)
    assert built == [0.0]
