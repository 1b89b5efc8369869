"""A third-party attack and study, declared by a throwaway distribution on sys.path, used
by name from a study file and from the command line."""

import sys
import textwrap

import pytest

from idprops import registry
from idprops.cli import main
from idprops.registry import available_attacks, available_studies, get_attack, get_study
from idprops.studies.store import ResultsStore
from idprops.studies.study import read_study_file

MODULE = """
import torch

from idprops.studies.reporting import run_summary, write_study_report
from idprops.studies.study import Study


class FillAttack:
    '''Replaces every pixel by ``value``: every input becomes the same image.'''

    def __init__(self, value=1.0, clip_min=0.0, clip_max=1.0):
        self.value = value
        self.clip_min = clip_min
        self.clip_max = clip_max

    def __call__(self, model, x, y):
        return torch.full_like(x, self.value)


class CubesStudy(Study):
    '''Cells that cube numbers.'''

    kind = "cubes"

    def __init__(self, values=(1, 2)):
        self.values = values

    def cells(self):
        return [self._cell(x=int(x)) for x in self.values]

    @staticmethod
    def run_cell(config):
        return {"cube": config["x"] ** 3}

    def report(self, results, outdir):
        return write_study_report(outdir, results, title="Cubes", summary=[run_summary(results, results.n_run)])
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """Install, as pip would, a distribution that declares an attack and a study."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "fake_idprops_study_plugin.py").write_text(textwrap.dedent(MODULE))
    info = folder / "fake_idprops_study_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-idprops-study-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[idprops.attacks]\nfill = fake_idprops_study_plugin:FillAttack\n\n"
        "[idprops.studies]\ncubes = fake_idprops_study_plugin:CubesStudy\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    registry.refresh()
    yield tmp_path
    registry.refresh()
    sys.modules.pop("fake_idprops_study_plugin", None)


def test_the_plugins_are_found_by_name(plugin):
    assert "fill" in available_attacks() and "cubes" in available_studies()
    assert get_attack("fill").__name__ == "FillAttack" and get_study("cubes").kind == "cubes"
    # The built-ins are registered the same way.
    assert {"fgsm", "pgd"} <= set(available_attacks())
    assert {"scaling-law", "robustness", "dynamics", "grokking", "randomization"} <= set(available_studies())


def test_a_plugin_study_runs_from_its_study_file_and_from_the_cli(plugin, capsys):
    path = plugin / "cubes.toml"
    path.write_text('kind = "cubes"\nvalues = [2, 3]\n')
    study, options = read_study_file(path)
    assert type(study).__name__ == "CubesStudy"
    assert [r["cube"] for r in study.run(plugin / "py.sqlite", progress=False)] == [8, 27]

    store = plugin / "cli.sqlite"
    argv = ["study", "run", str(path), "--store", str(store), "--out", str(plugin / "out"), "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "cubes: 2 cell(s) run, 0 taken from" in capsys.readouterr().out
    with ResultsStore(store) as s:
        assert sorted(r["cube"] for r in s.records(study="cubes")) == [8, 27]
    assert (plugin / "out" / "report.md").read_text().startswith("# Cubes")
    # idprops study NAME: the entry point's name is a subcommand, and the file's kind is checked.
    argv = ["study", "cubes", "--config", str(path), "--store", str(store), "--out", str(plugin / "out")]
    assert main([*argv, "--set", "values=[4]", "--no-progress"]) == 0
    assert "cubes: 1 cell(s) run" in capsys.readouterr().out
    assert main(["study", "robustness", "--config", str(path), "--out", str(plugin / "o2")]) == 2
    assert "a 'cubes' study file, not a 'robustness' one" in capsys.readouterr().err


def test_a_plugin_attack_is_named_in_a_study_file(plugin):
    path = plugin / "scaling.toml"
    path.write_text(
        textwrap.dedent(
            """
            kind = "scaling-law"
            sizes = [30]
            estimators = []
            sharpness = false
            device = "cpu"
            datasets = [{name = "digits", classes = [0, 1]}]
            [training]
            epochs = 1
            threads = 1
            [attacks.same]
            name = "fill"
            [attacks.dark]
            name = "fill"
            value = 0.0
            """
        )
    )
    study, options = read_study_file(path)
    (cell,) = study.cells()
    assert cell["attacks"] == {
        "same": {"name": "fill", "params": {}},
        "dark": {"name": "fill", "params": {"value": 0.0}},
    }
    (row,) = study.run(progress=False)
    # Every attacked input is one image, so the model gives every one the same class: the
    # robust accuracy is the share of that class in the test set (digits 0 and 1: 45 + 46).
    shares = {45 / 91, 46 / 91}
    assert row["n_test"] == 91
    assert row["robust_accuracy.same"] in shares and row["robust_accuracy.dark"] in shares
    # Its clipping range is checked against the pixels like the built-ins'.
    path.write_text(path.read_text().replace('name = "fill"\nvalue', 'name = "fill"\nclip_max = 0.5\nvalue'))
    with pytest.raises(ValueError, match=r"attacks.dark clips to \[0, 0.5\]"):
        read_study_file(path)[0].cells()
