"""The idprops command, run in-process through main()."""

import json

import numpy as np
import pytest

from idprops import LabelSharpness, MLEDimension, TwoNNDimension
from idprops.cli import format_measurement, main
from idprops.data import load_dataset, load_digits


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_measure_digits_table(capsys):
    code, out, _ = run(capsys, "measure")
    assert code == 0
    digits = load_digits(train=None)
    mle = MLEDimension().fit(digits)
    assert "1797 samples" in out and "unit [0, 1]" in out
    low, high = mle.dimension_interval_
    assert f"{mle.dimension_:.3f} [{low:.3f}, {high:.3f}]" in out
    assert "95 % interval" in out and "lower bound" not in out
    assert f"{TwoNNDimension().fit(digits).dimension_:.3f}" in out
    assert f"{LabelSharpness().fit(digits).sharpness_:.4g}" in out
    assert "total time" in out


def test_measure_json_with_layers(capsys):
    code, out, _ = run(
        capsys,
        "measure",
        "--json",
        "--classes",
        "0,1",
        "--n",
        "200",
        "--estimator",
        "twonn",
        "--model",
        "small_cnn",
        "--layer",
        "fc1",
        "--layer",
        "features.conv2",
    )
    assert code == 0
    result = json.loads(out)
    assert result["data"]["samples"] == 200 and result["data"]["classes"] == 2
    assert [row["estimator"] for row in result["dimensions"]] == ["twonn"]
    layers = {row["layer"]: row["dimension"] for row in result["representation"]["layers"]}
    assert set(layers) == {"fc1", "features.conv2"} and all(d > 0 for d in layers.values())
    assert result["representation"]["weights"].startswith("random initialisation")
    assert result["sharpness"]["K_F"] > 0


def test_table_columns_fit_long_layer_names():
    result = {
        "data": {"samples": 10, "features": 4, "classes": 2, "pixel_scale": "unit [0, 1]"},
        "dimensions": [
            {"estimator": "mle", "params": {"k": 20}, "dimension": 3.25, "std": 0.5, "duplicates": 0, "seconds": 0.1},
        ],
        "representation": {
            "model": "small_cnn",
            "estimator": "mle",
            "weights": "w.pt",
            "seconds": 1.5,
            "layers": [
                {"layer": "fc1", "dimension": 7.0, "std": 0.25},
                {"layer": "features.pool", "dimension": 12.5, "std": 1.0},
            ],
        },
        "seconds": 2.0,
    }
    lines = format_measurement(result).splitlines()
    header = next(line for line in lines if line.startswith("quantity"))
    value_end = header.index("value") + len("value")
    top = lines.index(header) + 1
    bottom = lines.index(lines[top], top + 1)
    rows = lines[top + 1 : bottom]
    for row, value in zip(rows, ("3.250 ± 0.500", "7.000 ± 0.250", "12.500 ± 1.000")):
        assert row.index(value) + len(value) == value_end, row
    assert "d_repr  small_cnn.features.pool  " in rows[2]  # the label is not run into its value
    assert set(lines[top]) == {"-"} and len(lines[top]) >= len(header)


def _reject(constant):
    raise ValueError(f"{constant} is not JSON")


def test_json_is_strict_when_k_f_is_infinite(capsys):
    import idprops

    X = np.random.default_rng(0).normal(size=(100, 3))
    X[1] = X[0]  # the same point under both labels: K_F is infinite
    data = load_dataset((X, np.arange(100) % 2))
    idprops.register_dataset("twins_cli", lambda **kwargs: data, replace=True)
    code, out, err = run(capsys, "measure", "--json", "--data", "twins_cli", "--estimator", "twonn")
    assert code == 0, err
    result = json.loads(out, parse_constant=_reject)
    assert result["sharpness"]["K_F"] is None and result["sharpness"]["identical_conflicts"] == 1


def test_plugin_estimator_by_name(capsys):
    import idprops

    idprops.register_estimator("mle_k5_cli", MLEDimension, replace=True)
    code, out, _ = run(capsys, "measure", "--json", "--no-sharpness", "--estimator", "mle_k5_cli")
    assert code == 0 and json.loads(out)["dimensions"][0]["estimator"] == "mle_k5_cli"


def test_plugin_estimator_without_the_base_class(capsys):
    from sklearn.base import BaseEstimator

    import idprops

    class Constant(BaseEstimator):
        """The plugins guide's minimum: any estimator with fit and dimension_."""

        def fit(self, X, y=None):
            self.dimension_ = 3.0
            return self

    idprops.register_estimator("constant_cli", Constant, replace=True)
    code, out, err = run(capsys, "measure", "--json", "--no-sharpness", "--estimator", "constant_cli")
    assert code == 0, err
    assert json.loads(out)["dimensions"][0]["dimension"] == 3.0


def test_a_plugin_that_cannot_be_built_does_not_break_measure(capsys, monkeypatch):
    from idprops import registry

    class NeedsAGpu:
        def __init__(self):
            raise RuntimeError("no GPU here")

    # Not asked for, it must neither stop measure nor hide from the list of choices.
    monkeypatch.setitem(registry._ESTIMATORS._runtime, "needs_gpu_cli", NeedsAGpu)
    code, out, err = run(capsys, "measure", "--json", "--no-sharpness", "--n", "200")
    assert code == 0, err
    code, _, err = run(capsys, "measure", "--estimator", "nope")
    assert code == 2 and "choose from" in err and "needs_gpu_cli" not in err

    class NeedsCuda:
        def __init__(self):
            raise ValueError("device='cuda' was asked for but torch sees no GPU")

    # Asked for, it says its own error, not "unknown estimator".
    monkeypatch.setitem(registry._ESTIMATORS._runtime, "needs_cuda_cli", NeedsCuda)
    code, _, err = run(capsys, "measure", "--estimator", "needs_cuda_cli")
    assert code == 2 and "torch sees no GPU" in err and "unknown" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["measure", "--data", "nope"], "unknown dataset 'nope'"),
        (["measure", "--data", "mnist", "--root", "/nonexistent-idprops"], "download=True"),
        (["measure", "--layer", "fc1"], "--layer needs --model"),
        (["measure", "--weights", "w.pt"], "--weights needs --model"),
        (["measure", "--device", "cuda"], "--device needs --model"),
        (["measure", "--estimator", "nope"], "unknown estimator 'nope'; choose from"),
        (["measure", "--estimator", "sharpness"], "'sharpness' is not a dimension estimator"),
        (["measure", "--estimator", "sharpness"], "--sharpness-samples"),
        (["measure", "--estimator", "repr"], "'repr' is not a dimension estimator"),
        (["measure", "--estimator", "repr"], "--model NAME --layer NAME"),
        (["measure", "--classes", "3"], "--classes 3 keeps one"),
        (["measure", "--image-size", "16"], "--image-size resizes the images of an image folder"),
        (["measure", "--classes", "cat,dog"], "takes class labels, e.g. --classes 0,1"),
    ],
)
def test_errors_are_one_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def image_folder(root, sizes, count=12):
    """Class folders of random grayscale PNGs, each class's images of the size given."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, size in sizes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, size=(size, size), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(root / name / f"{i}.png")
    return root


def test_classes_by_folder_name_or_label(capsys, tmp_path):
    root = image_folder(tmp_path, {"circle": 8, "square": 8, "triangle": 8})
    argv = ("measure", "--json", "--data", str(root), "--estimator", "twonn")
    code, out, err = run(capsys, *argv, "--classes", "circle,triangle")
    assert code == 0, err
    by_name = json.loads(out)
    assert by_name["data"]["samples"] == 24 and by_name["data"]["classes"] == 2
    code, out, err = run(capsys, *argv, "--classes", "0,2")
    assert code == 0, err
    # Integers stay labels: 0 and 2 are the same classes as circle and triangle.
    assert json.loads(out)["dimensions"][0]["dimension"] == by_name["dimensions"][0]["dimension"]


def test_numbered_class_folders_are_chosen_by_name(capsys, tmp_path):
    # Labels follow names sorted as text (1, 10, 2): label 1 would be folder 10.
    root = image_folder(tmp_path / "numbered", {"1": 8, "2": 8, "10": 8})
    argv = ("measure", "--json", "--data", str(root), "--estimator", "twonn", "--no-sharpness")
    by_number = json.loads(run(capsys, *argv, "--classes", "1,2")[1])["dimensions"][0]["dimension"]
    circle = image_folder(tmp_path / "named", {"a": 8, "b": 8, "c": 8})
    by_label = json.loads(run(capsys, *argv[:3], str(circle), *argv[4:], "--classes", "0,2")[1])
    assert by_label["data"]["classes"] == 2  # unnumbered folders: numbers are labels
    # Numbered folders: numbers are names only, never labels, so 0 is an error.
    code, _, err = run(capsys, *argv, "--classes", "0,2")
    assert code == 2 and "numbers name folders" in err and "folders: 1, 10, 2" in err
    by_name = json.loads(run(capsys, *argv, "--classes", "2,1")[1])["dimensions"][0]["dimension"]
    assert by_name == by_number


def test_image_size_makes_a_folder_of_mixed_sizes_measurable(capsys, tmp_path):
    root = image_folder(tmp_path, {"circle": 16, "square": 20})
    argv = ("measure", "--json", "--data", str(root), "--estimator", "twonn")
    code, _, err = run(capsys, *argv)
    assert code == 2 and "images of different sizes: " in err and "--image-size N" in err
    assert err.count("\n") == 1
    code, out, err = run(capsys, *argv, "--image-size", "12")
    assert code == 0, err
    assert json.loads(out)["data"]["features"] == 12 * 12


def test_one_class_measures_its_dimension_without_sharpness(capsys):
    code, out, _ = run(capsys, "measure", "--classes", "3", "--no-sharpness", "--json")
    result = json.loads(out)
    assert code == 0 and result["data"]["samples"] == 183 and result["data"]["classes"] == 1
    assert all(4 < d["dimension"] < 12 for d in result["dimensions"])


def _d_repr(capsys, *argv):
    code, out, err = run(
        capsys,
        "measure",
        "--json",
        "--classes",
        "0,1",
        "--no-sharpness",
        "--estimator",
        "mle",
        "--model",
        "small_cnn",
        "--layer",
        "fc1",
        *argv,
    )
    assert code == 0, err
    return json.loads(out)["representation"]["layers"][0]["dimension"]


def test_seed_fixes_the_random_initialisation(capsys):
    # Without --n the seed draws no subsample, so only the initialisation can differ.
    first = _d_repr(capsys, "--seed", "0")
    assert _d_repr(capsys, "--seed", "0") == first
    assert _d_repr(capsys, "--seed", "1") != first


def test_weights_keep_their_classes_on_a_subset(capsys, tmp_path):
    from idprops.nn import build_model

    torch = pytest.importorskip("torch")
    path = tmp_path / "ten_classes.pt"
    torch.save(build_model("small_cnn", in_channels=1, input_size=8, num_classes=10).state_dict(), path)
    argv = ("--classes", "3,5", "--no-sharpness", "--model", "small_cnn", "--layer", "fc1")
    code, out, err = run(capsys, "measure", "--json", "--weights", str(path), *argv)
    assert code == 0, err
    assert json.loads(out)["representation"]["weights"] == str(path)
    # A checkpoint of another network still fails with an error that says so.
    other = tmp_path / "mlp.pt"
    torch.save(build_model("mlp1x512", in_channels=1, input_size=8, num_classes=10).state_dict(), other)
    code, _, err = run(capsys, "measure", "--weights", str(other), *argv)
    assert code == 2 and "do not fit small_cnn" in err and "Traceback" not in err


def test_study_out_tilde_is_the_home_folder(capsys, tmp_path, monkeypatch):
    seen = {}

    from idprops.studies import ScalingLawStudy
    from idprops.studies.results import Results

    def run_only_records(self, store=None, **options):  # no training
        seen["store"] = store
        return Results([], n_run=0, store_path=store)

    def report_only_records(self, results, out):
        seen["out"] = out
        return out / "report.md"

    monkeypatch.setattr(ScalingLawStudy, "run", run_only_records)
    monkeypatch.setattr(ScalingLawStudy, "report", report_only_records)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "study", "scaling-law", "--preset", "digits", "--out=~/report")
    assert code == 0, err
    assert seen["out"] == tmp_path / "home" / "report"
    assert seen["store"] == str(tmp_path / "home" / "report" / "results.sqlite")


def test_measure_counts_one_feature_in_the_singular(tmp_path, capsys):
    np.save(tmp_path / "line.npy", np.arange(100.0)[:, None])
    assert main(["measure", "--data", str(tmp_path / "line.npy")]) == 0
    assert "(100 samples, 1 feature, unlabelled" in capsys.readouterr().out
