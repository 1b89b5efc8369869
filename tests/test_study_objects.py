"""Studies composed from Python objects: the same cells and the same store as their study file."""

import textwrap

import pytest
from sklearn.base import clone

from idprops import LabelSharpness, MLEDimension, TwoNNDimension
from idprops.cli import main
from idprops.nn import FGSM, PGD, small_cnn
from idprops.registry import _ESTIMATORS, register_estimator
from idprops.studies import DynamicsStudy, GrokkingStudy, RandomizationStudy, RobustnessStudy, ScalingLawStudy
from idprops.studies.specs import DataSpec, object_step
from idprops.studies.store import ResultsStore
from idprops.studies.study import read_study_file


class HalfTwoNN(TwoNNDimension):
    """A plugin's estimator: registered by name, given to a study as an object."""

    def fit(self, X, y=None, **kwargs):
        super().fit(X, y, **kwargs)
        self.dimension_ = self.dimension_ / 2
        return self


@pytest.fixture
def half_twonn(monkeypatch):
    monkeypatch.setattr(_ESTIMATORS, "_runtime", {})
    register_estimator("half_twonn", HalfTwoNN)
    return HalfTwoNN


STUDY_FILE = textwrap.dedent(
    """
    kind = "scaling-law"
    models = ["small_cnn"]
    sizes = [30]
    seeds = [0]
    device = "cpu"
    [[datasets]]
    name = "digits"
    classes = [0, 1]
    [training]
    epochs = 1
    batch_size = 16
    threads = 1
    [estimators.mle]
    k = 5
    [estimators.twonn]
    [estimators.half]
    name = "half_twonn"
    [sharpness]
    M = 100
    [representation]
    layers = ["relu"]
    estimator = "twonn"
    [attacks.fgsm]
    eps = 0.1
    [attacks.pgd]
    eps = 0.5
    norm = "l2"
    steps = 2
    seed = 0
    """
)


def python_study(half):
    return ScalingLawStudy(
        datasets=[DataSpec("digits", [0, 1])],
        models=[small_cnn],
        sizes=[30],
        seeds=[0],
        training={"epochs": 1, "batch_size": 16, "threads": 1},
        estimators={"mle": MLEDimension(k=5), "twonn": TwoNNDimension(), "half": half()},
        sharpness=LabelSharpness(M=100),
        representation={"layers": ["relu"], "estimator": TwoNNDimension()},
        attacks={"fgsm": FGSM(eps=0.1), "pgd": PGD(eps=0.5, norm="l2", steps=2, seed=0)},
        device="cpu",
    )


def test_objects_give_the_study_files_cells(half_twonn, tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(STUDY_FILE)
    from_file, _ = read_study_file(path)
    assert python_study(half_twonn).cells() == from_file.cells()


VOLATILE = {"created", "seconds", "study_file"}


def test_the_cli_and_the_python_object_fill_identical_stores(half_twonn, tmp_path, capsys):
    path = tmp_path / "study.toml"
    path.write_text(STUDY_FILE)
    python = python_study(half_twonn).run(tmp_path / "python.sqlite", progress=False)
    argv = ["study", "run", str(path), "--store", str(tmp_path / "cli.sqlite"), "--out", str(tmp_path / "out")]
    assert main([*argv, "--no-progress"]) == 0, capsys.readouterr().err
    with ResultsStore(tmp_path / "python.sqlite") as a, ResultsStore(tmp_path / "cli.sqlite") as b:
        ours, theirs = a.records(), b.records()
    assert [r["key"] for r in ours] == [r["key"] for r in theirs] == [r["key"] for r in python]
    strip = [{k: v for k, v in r.items() if k not in VOLATILE} for r in ours]
    assert strip == [{k: v for k, v in r.items() if k not in VOLATILE} for r in theirs]
    (row,) = ours
    # The plugin's estimate is TwoNN's halved: same neighbours, same data.
    assert row["d_data.half"] == pytest.approx(row["d_data.twonn"] / 2, rel=1e-12)
    assert row["pixel_scale"] == "unit [0, 1]" and 0 <= row["robust_accuracy.pgd"] <= row["test_accuracy"]


def test_object_steps_read_back_what_a_study_file_would_write():
    assert object_step(MLEDimension(k=10), "estimator", "e").params == {"k": 10}
    assert object_step(MLEDimension, "estimator", "e").params == {}
    # PGD derives its step size from eps and steps: a study file leaves it out, and so does the step.
    assert object_step(PGD(eps=0.5, steps=4), "attack", "a").params == {"eps": 0.5, "steps": 4}
    assert object_step(PGD(eps=0.5, steps=4, step_size=0.3), "attack", "a").params == {
        "eps": 0.5,
        "steps": 4,
        "step_size": 0.3,
    }
    with pytest.raises(ValueError, match="HalfTwoNN is not a registered estimator; register it"):
        object_step(HalfTwoNN(), "estimator", "estimators.half")
    with pytest.raises(ValueError, match="two entries are labelled 'mle'"):
        ScalingLawStudy(estimators=[MLEDimension(), MLEDimension(k=5)]).cells()
    with pytest.raises(ValueError, match="a study sets only LabelSharpness's M"):
        ScalingLawStudy(sharpness=LabelSharpness(M=10, backend="torch")).cells()


def test_get_params_set_params_and_clone():
    study = ScalingLawStudy(estimators=[MLEDimension(k=5)], sizes=[50], attacks=[FGSM(eps=0.1)])
    twin = clone(study)
    assert twin is not study and twin.cells() == study.cells()
    assert twin.get_params()["sizes"] == [50]
    twin.set_params(sizes=[50, 80])
    assert [c["data"]["n"] for c in twin.cells()] == [50, 80, 50, 80] and len(study.cells()) == 2
    # The estimator object is cloned with the study, as scikit-learn clones nested estimators.
    assert twin.estimators[0] is not study.estimators[0] and twin.estimators[0].k == 5
    assert twin.cells()[0]["estimators"] == {"mle": {"name": "mle", "params": {"k": 5}}}


def test_one_vocabulary_across_the_five_studies():
    import inspect

    shared = {"datasets", "models", "sizes", "seeds", "training", "estimators", "sharpness", "attacks", "tracking"}
    names = {
        cls: set(inspect.signature(cls).parameters)
        for cls in (ScalingLawStudy, RobustnessStudy, DynamicsStudy, RandomizationStudy, GrokkingStudy)
    }
    for cls, params in names.items():
        # No study spells a shared notion its own way (dataset, model, size, n_train).
        assert not params & {"dataset", "model", "size", "n_train", "store", "n_jobs", "progress"}, cls
        assert {"seeds", "training", "device"} <= params, cls
    assert {"datasets", "models", "sizes"} <= names[DynamicsStudy] & names[RandomizationStudy] & names[RobustnessStudy]
    assert "models" in names[GrokkingStudy]
    assert all(params & shared for params in names.values())
