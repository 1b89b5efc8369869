"""Study files cannot run code without --allow-imports, and every file a study writes lands
in its output folder whatever the labels (issue 23 item 5)."""

import os
import textwrap

import pytest
import torch
from torch import nn

from idprops.cli import main
from idprops.filenames import path_inside, safe_filename
from idprops.registry import _MODELS, register_model
from idprops.studies.robustness import RobustnessStudy
from idprops.studies.scaling import ScalingLawStudy
from idprops.studies.study import find_preset, read_study_file

HOSTILE = "x/../../../ESCAPED_"
# torch refuses "." in a module's name, not "/".
HOSTILE_LAYER = "x/ESCAPED_"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def robustness_file(tmp_path, attacks: str):
    path = tmp_path / "evil.toml"
    path.write_text(
        textwrap.dedent(
            """
            kind = "robustness"
            sizes = [40]
            device = "cpu"
            [[datasets]]
            name = "digits"
            classes = [0, 1]
            [training]
            epochs = 1
            """
        )
        + attacks,
        encoding="utf-8",
    )
    return path


# ---------------------------------------------------------------- no imports without the flag


@pytest.mark.parametrize(
    "attacks",
    [
        '[attacks.evil]\nname = "subprocess:call"\nargs = ["touch", "MARKER"]\n',
        '[attacks."subprocess:call"]\nargs = ["touch", "MARKER"]\n',  # the label is the name
        '[attacks.evil]\nname = " subprocess : call "\nargs = ["touch", "MARKER"]\n',
    ],
)
def test_a_study_file_cannot_import_code(tmp_path, monkeypatch, capsys, attacks):
    monkeypatch.chdir(tmp_path)
    path = robustness_file(tmp_path, attacks)
    code, _, err = run(capsys, "study", "robustness", "--config", str(path), "--out", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1
    assert "a 'package.module:object' name imports Python code" in err and "--allow-imports" in err
    assert "subprocess" in err and not (tmp_path / "MARKER").exists()
    with pytest.raises(ValueError, match="allow_imports=True"):
        RobustnessStudy.from_toml(path)
    assert not (tmp_path / "MARKER").exists()


def test_an_override_cannot_import_code_either(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["study", "robustness", "--preset", "digits-robustness", "--out", str(tmp_path / "out")]
    code, _, err = run(
        capsys, *argv, "--set", 'attacks.x.name="subprocess:call"', "--set", 'attacks.x.args=["touch", "MARKER"]'
    )
    assert code == 2 and "attacks.x.name = 'subprocess:call'" in err
    assert not (tmp_path / "MARKER").exists()


def test_allow_imports_lets_a_trusted_file_name_a_class(tmp_path):
    path = robustness_file(tmp_path, '[attacks.mine]\nname = "idprops.nn.attacks:FGSM"\neps = 0.1\n')
    with pytest.raises(ValueError, match="imports Python code"):
        read_study_file(path)
    study, _ = read_study_file(path, allow_imports=True)
    assert study.cells()[0]["attacks"]["mine"]["name"] == "idprops.nn.attacks:FGSM"
    assert RobustnessStudy.from_toml(path, allow_imports=True).attacks["mine"]["eps"] == 0.1
    # Names with parameters ("mle:k=10") and the shipped presets are not imports.
    read_study_file(find_preset("digits"), {"estimators": ["mle:k=10", "twonn"]})


# ---------------------------------------------------------------- file names from labels


def test_safe_filename_keeps_every_label_a_single_component(tmp_path):
    labels = [HOSTILE, "..", ".", "", "/", "a/b", "a_b", "C:\\x", "nul", "-rf", "\x00", "é" * 300, "ok-1.5"]
    names = [safe_filename(label) for label in labels]
    assert len(set(names)) == len(names)  # distinct labels, distinct names
    for name in names:
        assert name and os.sep not in name and "/" not in name and not name.startswith((".", "-"))
        assert len(name) <= 130 and path_inside(tmp_path, name).parent == tmp_path
    assert safe_filename("ok-1.5") == "ok-1.5"
    with pytest.raises(ValueError, match="would leave the folder"):
        path_inside(tmp_path / "out", HOSTILE + "robust.png")


class HostileLayers(nn.Module):
    """A network whose layers have names that are paths (torch allows '/' in them)."""

    def __init__(self, **kwargs):
        super().__init__()
        self.add_module(HOSTILE_LAYER + "first", nn.Sequential(nn.Flatten(), nn.Linear(64, 8)))
        self.add_module(HOSTILE_LAYER + "second", nn.Linear(8, 2))

    def forward(self, x):
        return getattr(self, HOSTILE_LAYER + "second")(getattr(self, HOSTILE_LAYER + "first")(x))


def files_outside(root, out):
    out = os.path.realpath(out)
    found = []
    for folder, _, files in os.walk(root):
        found += [os.path.join(folder, f) for f in files if not os.path.realpath(folder).startswith(out)]
    return found


def test_hostile_labels_never_name_a_file_outside_the_report(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    work = tmp_path / "a" / "b" / "c"
    out = work / "report"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setattr(_MODELS, "_runtime", {})
    register_model(HOSTILE + "model", HostileLayers)
    data = [{"name": "digits", "pairs": [[0, 1], [3, 8], [4, 9]], "group": HOSTILE + "group"}]
    robust = RobustnessStudy(
        datasets=data,
        models=[HOSTILE + "model"],
        sizes=[40],
        training={"epochs": 1, "batch_size": 16, "threads": 1},
        attacks={HOSTILE + "robust": {"name": "fgsm", "eps": 0.1}},
        estimators={HOSTILE + "estimator": {"name": "twonn"}},
        device="cpu",
    )
    robust.report(robust.run(progress=False), out / "robustness")
    scaling = ScalingLawStudy(
        datasets=data,
        models=[HOSTILE + "model"],
        sizes=[40],
        training={"epochs": 1, "batch_size": 16, "threads": 1},
        attacks={HOSTILE + "attack": {"name": "fgsm", "eps": 0.1}},
        estimators={HOSTILE + "estimator": {"name": "twonn"}},
        representation={"layers": [HOSTILE_LAYER + "first", HOSTILE_LAYER + "second"], "estimator": "twonn"},
        device="cpu",
    )
    scaling.report(scaling.run(progress=False), out / "scaling")
    assert files_outside(tmp_path, out) == []
    names = sorted(os.listdir(out / "robustness")) + sorted(os.listdir(out / "scaling"))
    assert f"kf_vs_robust_accuracy_{safe_filename(HOSTILE + 'robust')}.png" in names
    assert f"d_repr_vs_d_data_{safe_filename(HOSTILE_LAYER + 'second')}.png" in names
