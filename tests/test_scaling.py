"""ScalingLawStudy: its cells' measurements against direct computations, its grid, its report."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.distance import cdist

from idprops.data import load_dataset
from idprops.estimators.mle import MLEDimension
from idprops.studies.scaling import ScalingLawStudy, train_and_measure
from idprops.studies.specs import DataSpec, build_attack, parse_datasets, resolve_training
from idprops.studies.steps import load_data

PAIRS = [[0, 1], [3, 8], [4, 9]]
SIZES = [30, 45, 60]
KWARGS = dict(
    datasets=[{"name": "digits", "pairs": PAIRS}],
    sizes=SIZES,
    seeds=[0],
    training={"epochs": 1, "batch_size": 16, "threads": 1},
    estimators={"mle": {"k": 5}, "twonn": {}},
    sharpness={"M": "all"},
    representation={"layers": ["relu"], "estimator": "twonn"},
    attacks={"fgsm": {"eps": 0.1}, "pgd": {"eps": 0.1, "steps": 3, "seed": 0}},
    device="cpu",
)


@pytest.fixture(scope="module")
def run():
    """The study and what its run returned."""
    study = ScalingLawStudy(**KWARGS)
    return study, study.run(progress=False)


@pytest.fixture(scope="module")
def results(run):
    return run[1]


def test_rows_hold_sane_measurements(results):
    rows = results
    assert len(rows) == len(PAIRS) * len(SIZES) and results.n_run == len(rows)
    for r in rows:
        n_test = len(load_dataset("digits", train=False, classes=r["data.classes"]))
        assert r["n_train"] == r["data.n"] and r["n_test"] == n_test
        assert 0 <= r["test_error"] <= 1 and r["test_error"] == pytest.approx(1 - r["test_accuracy"])
        assert r["test_loss"] > 0 and r["train_loss"] > 0
        assert r["d_data.mle"] > 0 and r["d_data.twonn"] > 0 and r["d_data_std.mle"] > 0
        assert 0 < r["d_repr.relu"] < 64  # the layer has 64 units
        assert 0 < r["K_F"] < math.inf and r["pixel_scale"] == "unit [0, 1]"
        for attack in ("fgsm", "pgd"):
            assert 0 <= r[f"robust_accuracy.{attack}"] <= r["test_accuracy"]
            assert r[f"loss_increase.{attack}"] == pytest.approx(r[f"adversarial_loss.{attack}"] - r["test_loss"])
        # No estimate failed; at 30-60 samples some say they are beyond what n resolves.
        assert all("samples can resolve" in note for note in r["warnings"])


def test_measurements_equal_direct_computations(results):
    for r in results:
        train = load_dataset("digits", train=True, classes=r["data.classes"], n=r["data.n"], seed=r["seed"])
        X = np.stack([x.numpy().ravel() for x, _ in train]).astype(np.float64)
        y = train.targets
        # K_F: one over the smallest distance between two training images of different classes.
        assert r["K_F"] == pytest.approx(1 / cdist(X[y == 0], X[y == 1]).min(), rel=1e-12)
        assert r["d_data.mle"] == pytest.approx(MLEDimension(k=5).fit(X).dimension_, rel=1e-12)


def test_larger_training_sets_hold_the_smaller_ones(results):
    # Nested subsets make K_F (a maximum over pairs) non-decreasing in N.
    for pair in PAIRS:
        ks = [r["K_F"] for r in results if r["data.classes"] == pair]
        assert ks == sorted(ks)


def test_grid_and_step_resolution():
    study = ScalingLawStudy(
        datasets=["digits", {"name": "digits", "classes": [2, 7], "group": "natural"}],
        models=["small_cnn", {"name": "vgg16", "hidden": 8}],
        sizes=[50, None],
        seeds=[0, 1],
    )
    cells = study.cells()
    assert len(cells) == 2 * 2 * 2 * 2
    assert cells[0]["data"]["classes"] is None and cells[-1]["data"]["classes"] == [2, 7]
    assert "group" not in cells[0]["data"]  # a report label does not change a cell
    lrs = {c["model"]["name"]: c["training"]["lr"] for c in cells}
    assert lrs == {"small_cnn": 1e-3, "vgg16": 1e-4}  # the paper's per-family learning rates
    assert cells[-1]["model"]["params"] == {"hidden": 8}
    assert cells[0]["attacks"] == {"fgsm": {"name": "fgsm", "params": {"eps": 2 / 255}}}
    assert cells[0]["estimators"] == {
        "mle": {"name": "mle", "params": {}},
        "twonn": {"name": "twonn", "params": {}},
    }
    assert sorted(study._groups().values()) == ["digits", "natural"]
    assert resolve_training("resnet18", {"preset": "zhang2017_inception", "epochs": 2})["optimizer"] == "sgd"
    with pytest.raises(ValueError, match="unknown setting"):
        resolve_training("small_cnn", {"epoch": 2})
    with pytest.raises(ValueError, match="unknown attack"):
        build_attack("cw", {})
    assert type(build_attack("idprops.nn.attacks:PGD", {"eps": 0.1})).__name__ == "PGD"
    with pytest.raises(ValueError, match="not both"):
        parse_datasets([{"name": "digits", "classes": [0, 1], "pairs": [[0, 1]]}])
    with pytest.raises(ValueError, match="unknown"):
        parse_datasets([{"name": "digits", "clases": [0, 1]}])
    with pytest.raises(ValueError, match="sizes: 50.5 is not an integer"):
        ScalingLawStudy(sizes=[50.5]).cells()
    with pytest.raises(ValueError, match="pairs is empty"):
        parse_datasets([{"name": "digits", "pairs": []}])
    # Misspelt names and bad parameters fail when the grid is built, before any
    # training, and never as a NaN cell that a re-run would count as done.
    for kwargs, match in [
        ({"estimators": {"mle": {"k": "x"}}}, r"estimators\.mle: The 'k' parameter"),
        ({"estimators": ["foo"]}, r"estimators\.foo: unknown estimator"),
        ({"attacks": {"fgsm": {"foo": 1}}}, r"attacks\.fgsm: .*unexpected keyword"),
        ({"sharpness": {"M": 50, "seeds": [0, 1]}}, r"sharpness: unknown key\(s\) \['seeds'\]"),
        ({"sharpness": "yes"}, "expected true, false or a table"),
    ]:
        with pytest.raises(ValueError, match=match):
            ScalingLawStudy(**kwargs).cells()


def test_default_attack_follows_the_pixel_scale():
    # On the paper's scale pixels run 0..255: the default FGSM must move them by two grey
    # levels (eps 2), not clamp them into [0, 1].
    unit, paper = ({"name": "digits", "classes": [0, 1], "scale": scale} for scale in ("unit", "paper"))
    cells = ScalingLawStudy(datasets=[unit, paper], sizes=[30]).cells()
    assert cells[0]["attacks"] == {"fgsm": {"name": "fgsm", "params": {"eps": 2 / 255}}}
    step = cells[1]["attacks"]["fgsm"]
    assert step == {"name": "fgsm", "params": {"eps": 2.0, "clip_max": 255.0}}
    test = load_dataset("digits", train=False, classes=[0, 1], n=4, scale="paper")
    x = torch.stack([test[i][0] for i in range(len(test))])
    y = torch.as_tensor(test.targets)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(x[0].numel(), 2))
    x_adv = build_attack(step["name"], step["params"])(model, x, y)
    assert float(x.max()) == 255.0 and float((x_adv - x).abs().max()) == pytest.approx(2.0, abs=1e-4)
    assert 0.0 <= float(x_adv.min()) and float(x_adv.max()) <= 255.0
    # An attack clipping to [0, 1] would refuse every input, after the training.
    with pytest.raises(ValueError, match=r"attacks\.fgsm clips to \[0, 1\] .* clip_max = 255"):
        ScalingLawStudy(datasets=[paper], attacks={"fgsm": {"eps": 0.1}}).cells()


class HalfDimension:
    """A stand-in plugin estimator: half the number of features."""

    def __init__(self, scale=1.0):
        self.scale = scale

    def fit(self, X, y=None):
        self.dimension_ = self.scale * X.shape[1] / 2
        return self


def test_any_registered_estimator_and_attack_plug_in(monkeypatch):
    from idprops import registry

    monkeypatch.setitem(registry._ESTIMATORS._runtime, "half", HalfDimension)
    study = ScalingLawStudy(
        datasets=[{"name": "digits", "classes": [0, 1]}],
        sizes=[30],
        training={"epochs": 1, "threads": 1},
        estimators={"h": {"name": "half", "scale": 0.5}},
        sharpness=False,
        attacks={"l2": {"name": "idprops.nn.attacks:PGD", "eps": 0.5, "norm": "l2", "steps": 2}},
        device="cpu",
    )
    (cell,) = study.cells()
    result = ScalingLawStudy.run_cell(cell)
    assert result["d_data"] == {"h": 0.5 * 64 / 2} and math.isnan(result["d_data_std"]["h"])
    assert "K_F" not in result and "d_repr" not in result
    assert 0 <= result["robust_accuracy"]["l2"] <= result["test_accuracy"]


def test_report_writes_figures_and_fits(run, tmp_path):
    study, results = run
    path = study.report(results, tmp_path)
    assert path == tmp_path / "report.md"
    for name in (
        "scaling_law",
        "loss_vs_d_data",
        "loss_vs_d_repr",
        "kf_vs_robustness",
        "d_repr_vs_d_data",
    ):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    md = path.read_text()
    for pair in ("0v1", "3v8", "4v9"):
        assert f"**test loss vs N, digits {pair}**: `log L = " in md
    assert "alpha = " in md and "measured d_data: mle" in md
    for n in SIZES:
        assert f"**log test loss vs d_data (mle), N={n}**" in md
        assert f"**log test loss vs d_repr (relu), N={n}**" in md
    # Every K_F names its pixel scale, in the correlations and in the table.
    assert "K_F (unit [0, 1]) vs robust_accuracy.fgsm (pearson)**: `Pearson r = " in md
    assert "| K_F (unit [0, 1]) |" in md
    held = sum(r["d_repr.relu"] <= r["d_data.twonn"] for r in results)
    assert f"d_repr (relu) <= d_data (twonn) held in {held} of {len(results)} cells" in md
    # Findings first, then the figures, then the table and the CSV.
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings == ["## Findings", "## Figures", "## Table"]
    assert md.index("alpha = ") < md.index("![scaling_law]") < md.index("| dataset |")
    assert "[results.csv](results.csv)" in md
    assert "<h2>Findings</h2>" in (tmp_path / "report.html").read_text()
    assert len((tmp_path / "results.csv").read_text().strip().splitlines()) == 1 + len(results)


def test_batch_size_none_trains_on_the_whole_training_split():
    study = ScalingLawStudy(
        datasets=[{"name": "digits", "classes": [0, 1]}],
        sizes=[30],
        training={"epochs": 2, "batch_size": None, "threads": 1},
        estimators=[],
        sharpness=False,
        attacks={},
        device="cpu",
    )
    (cell,) = study.cells()
    assert cell["training"]["batch_size"] is None
    result = train_and_measure(cell)
    assert result["n_train"] == 30 and result["train_loss"] > 0


def test_a_misspelt_layer_fails_the_cell_instead_of_recording_nan():
    study = ScalingLawStudy(
        datasets=[{"name": "digits", "classes": [0, 1]}],
        sizes=[40],
        training={"epochs": 1},
        estimators=[],
        sharpness=False,
        attacks={},
        representation={"layers": ["nolayer"]},
        models=["small_cnn"],
        device="cpu",
    )
    with pytest.raises(ValueError, match="no layer named 'nolayer'"):
        train_and_measure(study.cells()[0])


# ---------------------------------------------------------------- image folders


def image_folder(root: Path, classes=("c0", "c1"), count: int = 6, seed: int = 0) -> Path:
    """Class folders of 8 x 8 grayscale PNGs; each class is 100 grey levels above the last."""
    rng = np.random.default_rng(seed)
    for i, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for j in range(count):
            pixels = rng.integers(0, 100, size=(8, 8), dtype=np.uint8) + 100 * i
            Image.fromarray(pixels.astype(np.uint8), mode="L").save(root / name / f"{j}.png")
    return root


FOLDER_CELL = dict(
    sizes=[8],
    training={"epochs": 1, "batch_size": 4, "threads": 1},
    estimators=[],
    sharpness=False,
    device="cpu",
)


def test_class_folder_names_select_and_order_the_classes(tmp_path):
    train, test = image_folder(tmp_path / "train"), image_folder(tmp_path / "test", seed=1)
    spec = {"name": "folder", "root": str(train), "test_root": str(test), "classes": ["c1", "c0"]}
    (cell,) = ScalingLawStudy(datasets=[spec], **FOLDER_CELL).cells()
    assert cell["data"]["classes"] == ["c1", "c0"]
    data = load_data(cell["data"], train=True, n=None, seed=0)
    # Relabelled in the order given: the brighter folder c1 is label 0.
    brightness = {label: float(x.mean()) for x, label in data}
    assert brightness[0] > brightness[1] and data.classes == ["c1", "c0"]
    result = train_and_measure(cell)
    assert result["n_train"] == 8 and result["n_test"] == 12
    with pytest.raises(ValueError, match="class 1.5 is neither a label"):
        ScalingLawStudy(datasets=[{"name": "digits", "classes": [0, 1.5]}]).cells()


def test_a_folder_named_by_its_path_reads_its_test_root(tmp_path):
    # The form paper.toml recommends for the radiology datasets.
    train, test = image_folder(tmp_path / "train"), image_folder(tmp_path / "val", count=5, seed=1)
    spec = {"name": str(train), "test_root": str(test), "group": "medical"}
    (cell,) = ScalingLawStudy(datasets=[spec], **FOLDER_CELL).cells()
    result = train_and_measure(cell)
    assert result["n_train"] == 8 and result["n_test"] == 10
    assert 0 <= result["robust_accuracy"]["fgsm"] <= result["test_accuracy"]


def fake_cell(config):
    """Measurements that differ by seed, without training anything."""
    seed = config["seed"]
    return {
        "n_train": config["data"]["n"],
        "test_loss": 0.1 * (seed + 1),
        "d_data": {"mle": 2.0 + seed},
        "d_data_std": {"mle": 0.1},
        "warnings": [],
    }


class FakeScalingStudy(ScalingLawStudy):
    run_cell = staticmethod(fake_cell)

    def check_data(self):
        pass  # its datasets are never read: fake_cell makes up the results


def test_dataset_key_reads_numbers_as_cells_do():
    # A store resumed with 750.0 for 750 reuses the cells; the report's groups must
    # match them too, or the natural/medical split merges into one fit.
    (entry,) = parse_datasets({"name": "digits", "classes": [0, 1], "n_test": 750})
    record = {"data.name": "digits", "data.classes": [0, 1], "data.scale": "unit", "data.n_test": 750.0}
    assert entry.key == DataSpec.from_record(record).key
    assert entry.key != DataSpec("digits", [0, 1], n_test=751).key


def test_report_keeps_each_image_folders_group(tmp_path):
    # Both entries are name = "folder": only their roots tell the domains apart.
    study = FakeScalingStudy(
        datasets=[
            {"name": "folder", "root": "/data/natural", "test_root": "/data/natural-test", "group": "natural"},
            {"name": "folder", "root": "/data/medical", "test_root": "/data/medical-test", "group": "medical"},
        ],
        sizes=[30],
        seeds=[0, 1, 2],
        estimators=["mle"],
        sharpness=False,
        attacks={},
    )
    md = study.report(study.run(progress=False), tmp_path).read_text()
    # The paper's split: log L against d_data at fixed N, fitted per domain.
    for group in ("natural", "medical"):
        assert f"**log test loss vs d_data (mle), {group}, N=30**" in md


def test_findings_say_when_the_data_contradict_the_paper(run, tmp_path):
    study, results = run
    # The same cells with d_repr above d_data everywhere, and a d_data whose 1/d_data = 2
    # lies far outside every fitted alpha's interval.
    rows = [dict(r, **{"d_repr.relu": 2 * r["d_data.twonn"], "d_data.mle": 0.5}) for r in results]
    md = study.report(rows, tmp_path).read_text()
    findings = md[: md.index("## Figures")]
    assert "d_repr > d_data in most cells: the data contradict the claim that d_repr is bounded by d_data" in findings
    assert "but 1/d_data (mle) = 2, " in findings and "the data contradict the law L ∝ N^(-1/d_data)" in findings
