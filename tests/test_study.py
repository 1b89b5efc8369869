"""The Study base: resumable runs into the store, a killed run resumed, dask, study files, CLI."""

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from idprops.cli import main
from idprops.registry import get_study
from idprops.studies import (
    DynamicsStudy,
    GrokkingStudy,
    RandomizationStudy,
    RobustnessStudy,
    ScalingLawStudy,
)
from idprops.studies.plan import describe_cell
from idprops.studies.store import ResultsStore
from idprops.studies.study import (
    CellError,
    Study,
    available_presets,
    find_preset,
    load_study_file,
    parse_overrides,
    read_study_file,
)

# Four cells of one epoch on two digit pairs, one torch thread: about a second each.
TINY = textwrap.dedent(
    """
    kind = "scaling-law"
    sizes = [30, 60]
    seeds = [0]
    device = "cpu"
    [[datasets]]
    name = "digits"
    pairs = [[0, 1], [3, 8]]
    [training]
    epochs = 1
    batch_size = 16
    threads = 1
    [estimators.mle]
    k = 5
    [estimators.twonn]
    [sharpness]
    M = "all"
    [representation]
    layers = ["relu"]
    [attacks.fgsm]
    eps = 0.1
    """
)
N_CELLS = 4
# Fields that differ between two runs of the same cell.
VOLATILE = {"created", "seconds"}


def _stable(rows):
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


@pytest.fixture(scope="module")
def study_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("study") / "tiny.toml"
    path.write_text(TINY)
    return path


def run_file(path, overrides=None):
    """Run a study file as the command line does: its study, with its run options."""
    study, options = read_study_file(path, overrides)
    return study, study.run(**options)


@pytest.fixture(scope="module")
def serial(study_file, tmp_path_factory):
    """The uninterrupted serial run every other run is compared with: (study, results)."""
    store = tmp_path_factory.mktemp("serial") / "results.sqlite"
    return run_file(study_file, {"store": str(store)})


def test_run_computes_every_cell_into_the_store(serial, study_file):
    study, rows = serial
    assert rows.n_run == N_CELLS
    assert [(r["data.classes"], r["data.n"]) for r in rows] == [
        ([0, 1], 30),
        ([0, 1], 60),
        ([3, 8], 30),
        ([3, 8], 60),
    ]
    assert all(r["study"] == "scaling-law" and r["pipeline"] == "scaling-law" for r in rows)
    assert all(r["study_file"] == str(study_file.resolve()) for r in rows)
    assert all(r["seconds"] > 0 for r in rows)
    assert rows.to_frame().shape[0] == N_CELLS and list(rows.to_frame()["data.n"]) == [30, 60, 30, 60]
    with ResultsStore(rows.store_path) as store:
        assert len(store) == N_CELLS
        assert _stable(store.records(study="scaling-law")) == _stable(rows)


def test_run_again_runs_nothing(serial, study_file):
    study, rows = serial
    again = study.run(rows.store_path)
    assert again.n_run == 0
    # The same rows, created times included (the file's path is recorded by the first run).
    assert again == rows


def test_a_grown_grid_runs_only_the_new_cells(serial, study_file, tmp_path):
    study, rows = serial
    store = tmp_path / "results.sqlite"
    with ResultsStore(rows.store_path) as src, ResultsStore(store) as dst:  # the serial run's cells
        for cfg in study.cells():
            dst.put(cfg, src.get(cfg), study="scaling-law")
    _, grown = run_file(study_file, {"store": str(store), "sizes": [30, 60, 45]})
    assert grown.n_run == 2
    assert _stable([r for r in grown if r["data.n"] != 45]) == _stable(rows)


def test_killed_study_resumes_with_the_missing_cells_only(serial, study_file, tmp_path):
    store = tmp_path / "results.sqlite"
    code = (
        "from idprops.studies.study import read_study_file\n"
        f"study, options = read_study_file({str(study_file)!r}, {{'store': {str(store)!r}}})\n"
        "study.run(**options)\n"
    )
    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:  # poll the store until the first cell is in
            if store.exists():
                with ResultsStore(store) as s:
                    if len(s) >= 1:
                        break
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the study wrote no cell in 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    with ResultsStore(store) as s:
        done = len(s)
    assert 1 <= done < N_CELLS, "the kill should land mid-run"

    _, resumed = run_file(study_file, {"store": str(store)})
    assert resumed.n_run == N_CELLS - done
    # Same seeds on the CPU, one thread: the same numbers, bit for bit.
    assert _stable(resumed) == _stable(serial[1])


def test_the_cli_resumes_from_the_study_files_store(serial, tmp_path, capsys):
    # Without --store, the file's store is the one resumed, not OUT/results.sqlite.
    path = tmp_path / "with_store.toml"
    store = serial[1].store_path
    path.write_text(f"store = {str(store)!r}\n" + TINY)
    assert main(["study", "scaling-law", "--config", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert f"0 cell(s) run, {N_CELLS} taken from {store}" in capsys.readouterr().out
    assert not (tmp_path / "out" / "results.sqlite").exists()


def test_a_study_files_relative_store_lies_beside_the_file(serial, tmp_path, monkeypatch, capsys):
    # Run from another folder, the file still resumes its own store; before, the store
    # was taken from the working directory and a run from elsewhere started afresh.
    folder = tmp_path / "study"
    folder.mkdir()
    shutil.copy(serial[1].store_path, folder / "results.sqlite")
    path = folder / "s.toml"
    path.write_text('store = "results.sqlite"\n' + TINY)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert read_study_file(path)[1]["store"] == str(folder / "results.sqlite")
    argv = ["study", "run", str(path), "--out", "out", "--no-progress"]
    assert main(argv) == 0
    assert f"0 cell(s) run, {N_CELLS} taken from {folder / 'results.sqlite'}" in capsys.readouterr().out
    assert not (elsewhere / "results.sqlite").exists()
    # Typed at the command line, a store is the working directory's.
    assert read_study_file(path, {"store": "mine.sqlite"})[1]["store"] == "mine.sqlite"
    monkeypatch.setenv("HOME", str(tmp_path))
    path.write_text('store = "~/home.sqlite"\n' + TINY)
    assert read_study_file(path)[1]["store"] == str(tmp_path / "home.sqlite")


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except FileNotFoundError:  # it has just exited
        return []


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has finished
    except FileNotFoundError:
        return False


def _n_cells(store):
    if not store.exists():
        return 0
    with ResultsStore(store) as s:
        return len(s)


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads child processes from /proc")
def test_sigterm_stops_the_workers_and_keeps_finished_cells(study_file, tmp_path):
    # kill, timeout and batch schedulers send SIGTERM: handled as Ctrl-C, the worker
    # processes stop with the command instead of computing on, orphaned.
    store = tmp_path / "results.sqlite"
    command = [
        sys.executable,
        "-m",
        "idprops.cli",
        "study",
        "scaling-law",
        "--config",
        str(study_file),
        "--store",
        str(store),
        "--n-jobs",
        "2",
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
    ]
    proc = subprocess.Popen(command, env={**os.environ, "TQDM_DISABLE": "1"}, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _n_cells(store) < 1:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the study wrote no cell in 120 s"
            time.sleep(0.05)
        descendants = _children(proc.pid)
        descendants += [g for c in descendants if _alive(c) for g in _children(c)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
        err = proc.stderr.read().decode()
        # how much is saved, and where (it used to say "idprops: terminated" alone)
        assert re.search(
            rf"idprops: terminated: \d of 4 cells saved in {re.escape(str(store))}; run the same command", err
        )
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in descendants):
        assert time.monotonic() < deadline, "worker processes outlived the command"
        time.sleep(0.1)
    assert _n_cells(store) >= 1


def test_dask_cluster_gives_the_serial_results(serial, study_file, tmp_path):
    distributed = pytest.importorskip("distributed")
    from joblib import parallel_config

    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        with distributed.get_task_stream(client) as stream, parallel_config(backend="dask"):
            _, results = run_file(study_file, {"store": str(tmp_path / "r.sqlite")})
        workers = {task["worker"] for task in stream.data}
        # The command line's --dask connects to the same cluster by its address.
        argv = [
            "study",
            "scaling-law",
            "--config",
            str(study_file),
            "--dask",
            cluster.scheduler_address,
            "--out",
            str(tmp_path / "cli"),
            "--no-progress",
        ]
        with distributed.get_task_stream(client) as cli_stream:
            assert main(argv) == 0
    assert results.n_run == N_CELLS
    assert len(stream.data) >= N_CELLS and workers  # the cells did go through the cluster
    assert _stable(results) == _stable(serial[1])
    assert len(cli_stream.data) >= N_CELLS
    with ResultsStore(tmp_path / "cli" / "results.sqlite") as store:
        assert len(store.records()) == N_CELLS


def test_temporary_store_and_failed_cell(tmp_path):
    study = ScalingLawStudy(datasets=[{"name": "digits", "classes": [0, 1]}], sizes=[10_000], training={"epochs": 1})
    with pytest.raises(CellError, match="n=10000 samples requested"):
        study.run()


def test_a_failed_cell_says_which_cell_it_was():
    # Two cells of one grid differ only in nested values (data, model, size).
    study = ScalingLawStudy(
        datasets=[{"name": "digits", "pairs": [[0, 1], [3, 8]]}],
        sizes=[10_000],
        training={"epochs": 1},
    )
    first, second = (describe_cell(cell) for cell in study.cells())
    assert first != second and "\n" not in first and len(first) < 400
    assert "data.name=digits, data.classes=[3, 8]" in second and "data.n=10000" in second
    assert "model.name=small_cnn" in first and "code_version" not in first
    with pytest.raises(CellError, match=r"cell \{.*data\.classes=\[0, 1\], .*\} failed"):
        study.run()


class _Squares(Study):
    kind = "squares"

    def __init__(self, values=(1, 2), *, extra=None):
        self.values = values
        self.extra = extra

    def cells(self):
        return [self._cell(x=x, extra=self.extra) for x in self.values]

    @staticmethod
    def run_cell(config):
        return {"square": config["x"] ** 2, **({config["extra"]: 0} if config["extra"] else {})}


def test_a_cell_listed_twice_is_one_result_and_reserved_fields_are_kept():
    results = _Squares(values=(3, 1, 3)).run()
    assert [r["square"] for r in results] == [9, 1] and results.n_run == 2
    with pytest.raises(CellError, match=r"returned \['seconds'\], which run adds"):
        _Squares(extra="seconds").run()


def test_a_cell_with_an_array_or_clashing_names_still_reports_its_own_error():
    # Describing the cell once raised in place of the cell's error.
    config = {"x": np.array([1.0, 2.0]), "a": {"b": 1}, "a.b": 2, "empty": []}
    assert describe_cell(config) == "{x=[1. 2.], a.b=1, a.b=2}"


def test_store_path_expands_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    results = _Squares().run("~/squares.sqlite")
    assert results.store_path == tmp_path / "squares.sqlite" and results.store_path.exists()


def test_study_file_overrides_and_errors(study_file, tmp_path):
    params = load_study_file(study_file, {"training.epochs": 3, "representation.estimator": "mle"})
    assert params["training"] == {"epochs": 3, "batch_size": 16, "threads": 1}
    assert params["representation"] == {"layers": ["relu"], "estimator": "mle"}
    study = ScalingLawStudy.from_toml(study_file, {"training.epochs": 3, "seeds": [1, 2]})
    assert study.training["epochs"] == 3 and study.seeds == [1, 2]
    _, options = read_study_file(study_file, {"store": "s.sqlite", "n_jobs": 2})
    assert options == {"store": "s.sqlite", "n_jobs": 2, "study_file": str(study_file.resolve())}
    assert {c["training"]["epochs"] for c in study.cells()} == {3}
    assert len(study.cells()) == 2 * 2 * 2
    with pytest.raises(ValueError, match="unknown parameter"):
        ScalingLawStudy.from_toml(study_file, {"epochs": 3})
    with pytest.raises(ValueError, match="not a table"):
        load_study_file(study_file, {"training.epochs.max": 3})
    with pytest.raises(ValueError, match="'sizes.first' is not one of the 2 entries"):
        load_study_file(study_file, {"sizes.first": 3})
    with pytest.raises(ValueError, match="'sizes.2' is not one of the 2 entries"):
        load_study_file(study_file, {"sizes.2": 3})
    params = load_study_file(study_file, {"datasets.0.root": "/data", "sizes.1": 99})
    assert params["datasets"][0]["root"] == "/data" and params["sizes"][1] == 99
    with pytest.raises(ValueError, match="'scaling-law' study file, not a 'robustness'"):
        get_study("robustness").from_toml(study_file)
    assert parse_overrides(["a.b=1", "c=[1, 2]", "d=text", "e='x=y'", "f=true"]) == {
        "a.b": 1,
        "c": [1, 2],
        "d": "text",
        "e": "x=y",
        "f": True,
    }
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["epochs"])


def test_presets_are_shipped_and_build():
    assert {"digits", "digits-robustness", "paper"} <= set(available_presets())
    for name in ("digits", "digits-robustness", "paper"):
        kind = load_study_file(find_preset(name))["kind"]
        study = get_study(kind).from_toml(find_preset(name))
        assert isinstance(study, Study) and study.kind == kind
        assert study.cells()  # every preset's grid is well formed
    paper = get_study("scaling-law").from_toml(find_preset("paper")).cells()
    cell = paper[0]
    assert cell["seed"] == 1337 and cell["data"]["scale"] == "paper" and cell["data"]["n_test"] == 750
    assert cell["training"]["epochs"] == 100 and cell["training"]["optimizer"] == "adam"
    assert {c["model"]["name"]: c["training"]["lr"] for c in paper}["vgg16"] == 1e-4
    assert {c["data"]["n"] for c in paper} == {500, 750, 1000, 1250, 1500, 1750}
    with pytest.raises(ValueError, match="no preset named"):
        find_preset("nope")


def test_cli_study_runs_resumes_and_reports(tmp_path, capsys):
    argv = [
        "study",
        "scaling-law",
        "--preset",
        "digits",
        "--set",
        'datasets=[{name = "digits", pairs = [[0, 1]]}]',
        "--set",
        "sizes=[30]",
        "--set",
        "seeds=[0]",
        "--set",
        "training.epochs=1",
        "--set",
        'representation.layers=["relu"]',
        "--set",
        "attacks={fgsm = {eps = 0.1}}",
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1 cell(s) run, 0 taken from" in out
    assert (tmp_path / "out" / "report.md").is_file() and str(tmp_path / "out" / "report.md") in out
    with ResultsStore(tmp_path / "out" / "results.sqlite") as store:
        (row,) = store.records()
    assert row["study_file"] == str(find_preset("digits")) and row["training.epochs"] == 1
    assert main(argv) == 0  # resumed from the default store: nothing to run
    assert "0 cell(s) run, 1 taken from" in capsys.readouterr().out
    # A store named in --set is the one used (and --out's default is not).
    other = tmp_path / "other.sqlite"
    assert main([*argv, "--set", f"store={str(other)!r}"]) == 0
    assert f"1 cell(s) run, 0 taken from {other}" in capsys.readouterr().out


def test_cli_study_without_matplotlib_fails_before_running(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    assert main(["study", "scaling-law", "--preset", "digits", "--out", str(tmp_path / "out")]) == 2
    assert "pip install 'idprops[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["study", "robustness", "--preset", "digits", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a 'robustness' one" in err
    assert main(["study", "scaling-law", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "study, message",
    [
        (ScalingLawStudy(seeds=[0, 1.5]), "seeds: 1.5 is not an integer"),
        (RobustnessStudy(seeds=[True]), "seeds: True is not an integer"),
        (RandomizationStudy(seeds=0.5), "seeds: 0.5 is not an integer"),
        (DynamicsStudy(seeds=[]), "seeds is empty"),
        (DynamicsStudy(regularizers={"shift": [0.5]}), r"regularizers.shift: 0.5 is not"),
        (DynamicsStudy(baseline={"shift": 1.5}), r"baseline.shift: 1.5 is not"),
        (DynamicsStudy(baseline={"shift": [1, 2]}), r"baseline.shift: \[1, 2\] is not"),
        (GrokkingStudy(p=97.5), "p: 97.5 is not an integer"),
        (GrokkingStudy(split_seed="1"), "split_seed: '1' is not an integer"),
    ],
)
def test_counts_that_are_not_integers_fail_before_any_cell_runs(study, message):
    # int() would have quietly turned a shift of 0.5 pixels into no shift at all.
    with pytest.raises(ValueError, match=message):
        study.cells()


@pytest.mark.parametrize(
    "study, message",
    [
        (ScalingLawStudy(sizes=[50, 0]), "sizes: 0 is below 1"),
        (RobustnessStudy(sizes=[-5]), "sizes: -5 is below 1"),
        (DynamicsStudy(sizes=0), "sizes: 0 is below 1"),
        (ScalingLawStudy(seeds=[0, -1]), "seeds: -1 is below 0"),
        (RandomizationStudy(seeds=-3), "seeds: -3 is below 0"),
        (GrokkingStudy(split_seed=-1), "split_seed: -1 is below 0"),
        (DynamicsStudy(regularizers={"shift": [-2]}), "regularizers.shift: -2 is below 0"),
        (ScalingLawStudy(device="gpu0"), "device: 'gpu0' is not a torch device"),
        (RobustnessStudy(device="cuda:x"), "device: 'cuda:x' is not a torch device"),
        (DynamicsStudy(device=None), "device: None is not a torch device"),
        (RandomizationStudy(device="GPU"), "device: 'GPU' is not a torch device"),
        (GrokkingStudy(device="tpu"), "device: 'tpu' is not a torch device"),
        (ScalingLawStudy(datasets=[{"name": "digits", "n_test": -4}]), "dataset 'digits': n_test: -4 is below 1"),
        (RobustnessStudy(datasets=[{"name": "digits", "n_test": 2.5}]), "n_test: 2.5 is not an integer"),
        # This one failed in the default attack's choice, which blamed no typo.
        (ScalingLawStudy(datasets=[{"name": "digits", "scale": "units"}]), "dataset 'digits': unknown scale 'units'"),
    ],
)
def test_sizes_seeds_and_devices_out_of_range_fail_before_any_cell_runs(study, message):
    # Each was taken when the grid was built and failed in every cell as it started.
    with pytest.raises(ValueError, match=message):
        study.cells()


def test_numpy_integers_count_as_integers(tmp_path):
    # A grid built with numpy (np.arange, np.int64 from a DataFrame) must not be refused.
    (cell,) = GrokkingStudy(p=np.int64(7), seeds=[np.int64(0)], eval_every=np.int64(10)).cells()
    assert cell["eval_every"] == 10 and type(cell["eval_every"]) is int
    with pytest.raises(ValueError, match="eval_every must be a positive int"):
        GrokkingStudy(eval_every=np.int64(0)).cells()
    with pytest.raises(ValueError, match="eval_every: True is not an integer"):
        GrokkingStudy(eval_every=True).cells()
    with pytest.raises(ValueError, match="n_jobs must be a non-zero int"):
        GrokkingStudy().run(tmp_path / "store", n_jobs=np.int64(0))


@pytest.mark.parametrize(
    "study, message",
    [
        (ScalingLawStudy(models=[{"name": "small_cnn", "widht": 8}]), "unexpected keyword argument 'widht'"),
        (ScalingLawStudy(models=["nope"]), "unknown model 'nope'"),
        (ScalingLawStudy(training={"optimizer": "adamm"}), "optimizer must be one of"),
        (RobustnessStudy(training={"lr": -1}), "lr must be a positive finite number"),
        (DynamicsStudy(training={"schedule": "cosine"}), "schedule must be one of"),
        (RandomizationStudy(training={"batch_size": 0}), "batch_size must be a positive int"),
        (GrokkingStudy(training={"max_steps": None}), "give epochs or max_steps"),
        (
            ScalingLawStudy(representation={"layers": ["fc1"], "estimator": "nope"}),
            "representation.estimator: unknown estimator 'nope'",
        ),
        (DynamicsStudy(tracking={"estimator": {"name": "mle", "k": 1}}), "tracking.estimator: The 'k'"),
        (
            GrokkingStudy(tracking={"estimator": {"name": "twonn", "discard_fraction": 2}}),
            "tracking.estimator: The 'discard_fraction'",
        ),
    ],
)
def test_bad_model_training_and_tracking_settings_fail_when_the_grid_is_built(study, message):
    with pytest.raises(ValueError, match=message):
        study.cells()
