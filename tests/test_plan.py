"""--dry-run: the cells, those already stored, and the time left from the cells already timed."""

import pytest

from idprops.cli import main
from idprops.registry import _STUDIES
from idprops.studies.plan import make_plan
from idprops.studies.store import ResultsStore
from idprops.studies.study import Study


class Squares(Study):
    kind = "squares"
    rough_cell_seconds = 30.0

    def __init__(self, values=(1, 2, 3, 4)):
        self.values = values

    def cells(self):
        return [self._cell(x=x) for x in self.values]

    @staticmethod
    def run_cell(config):
        return {"square": config["x"] ** 2}


def _store_timed(path, cells, seconds, study="squares"):
    with ResultsStore(path) as store:
        for cfg, s in zip(cells, seconds):
            store.put(cfg, {"square": cfg["x"] ** 2, "seconds": s}, study=study)


def test_the_estimate_is_the_mean_time_of_the_stored_cells_of_the_grid(tmp_path):
    study = Squares()
    cells = study.cells()
    _store_timed(tmp_path / "s.sqlite", cells[:2], [4.0, 6.0])
    plan = study.plan(tmp_path / "s.sqlite", n_jobs=2)
    assert plan.done == [True, True, False, False] and (plan.n_done, plan.n_todo) == (2, 2)
    assert plan.estimate_seconds == pytest.approx(2 * 5.0)
    text = str(plan)
    assert text.count("[done]") == 2 and text.count("[todo]") == 2 and "{x=3}" in text
    assert "time left: 10 s of cell time, about 5 s on 2 workers (mean of the 2 cell(s) of this grid" in text


def test_other_cells_of_the_study_then_a_labelled_rough_figure(tmp_path):
    _store_timed(tmp_path / "s.sqlite", Squares(values=(7, 8)).cells(), [1.0, 3.0])
    plan = Squares().plan(tmp_path / "s.sqlite")
    assert plan.n_done == 0 and plan.estimate_seconds == pytest.approx(4 * 2.0)
    assert "mean of 2 other squares cell(s) timed in the store" in str(plan)
    # Cells of another study say nothing about this one's.
    _store_timed(tmp_path / "other.sqlite", Squares(values=(7, 8)).cells(), [1.0, 3.0], study="cubes")
    rough = Squares().plan(tmp_path / "other.sqlite")
    assert rough.estimate_seconds == pytest.approx(4 * 30.0)
    assert "rough figure: no cell of this study is timed in the store; 30 s per cell assumed, as for" in str(rough)
    assert "time left: unknown" in str(make_plan("squares", Squares().cells(), None))
    assert "time left: none" in str(Squares(values=(7,)).plan(tmp_path / "s.sqlite"))


def test_a_dry_run_runs_nothing_and_creates_no_store(tmp_path):
    results = Squares(values=(1, 2)).run(tmp_path / "s.sqlite", progress=False)
    assert all(r["seconds"] > 0 for r in results)  # every cell keeps its run time
    plan = Squares().plan(tmp_path / "s.sqlite")
    assert plan.n_done == 2 and plan.estimate_seconds == pytest.approx(2 * sum(r["seconds"] for r in results) / 2)
    with ResultsStore(tmp_path / "s.sqlite") as store:
        assert len(store) == 2
    Squares().plan(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()


def test_cli_dry_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(_STUDIES._runtime, "squares", Squares)
    path = tmp_path / "squares.toml"
    path.write_text('kind = "squares"\nvalues = [1, 2, 3]\n')
    _store_timed(tmp_path / "s.sqlite", Squares(values=(1,)).cells(), [9.0])
    argv = ["study", "run", str(path), "--store", str(tmp_path / "s.sqlite"), "--dry-run"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "squares study: 3 cell(s)" in out and "1 of 3 cell(s) already in the store, 2 to run." in out
    assert "time left: 18 s of cell time" in out
    with ResultsStore(tmp_path / "s.sqlite") as store:
        assert len(store) == 1  # nothing ran
    # Without --store: the default store under --out, which does not exist yet.
    assert main(["study", "run", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    assert "0 of 3 cell(s) already in the store" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_every_shipped_preset_has_a_dry_run(capsys, tmp_path):
    # Each built-in study gives a labelled rough figure for a store that times none.
    for preset in ("digits", "digits-robustness", "grokking-cpu"):
        assert main(["study", "run", preset, "--store", str(tmp_path / "none.sqlite"), "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert "time left: " in out and "rough figure" in out, preset
