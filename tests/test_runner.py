"""How a study's cells are run: claims shared between processes, failed cells, progress
lines, interrupts, and workers that stop when their study is killed."""

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from idprops.studies import runner
from idprops.studies.runner import CellError, StudyInterrupted
from idprops.studies.store import ResultsStore, StoreError
from idprops.studies.study import Study
from idprops.utils import report_progress

REPO = Path(__file__).resolve().parents[1]


class _Cells(Study):
    """Cells ``x`` in ``values``; ``run_cell`` does what ``action`` says for its x."""

    kind = "cells"

    def __init__(self, values=(1, 2, 3), action=None):
        self.values = values
        self.action = action

    def cells(self):
        return [self._cell(x=x, action=self.action) for x in self.values]

    @staticmethod
    def run_cell(config):
        action, x = config["action"] or {}, config["x"]
        if str(x) in action.get("diverge", []) and not Path(action.get("fixed", "/nonexistent")).exists():
            raise FloatingPointError(f"training diverged: the loss is nan at step {x}")
        if str(x) == action.get("interrupt"):
            raise KeyboardInterrupt
        if action.get("copy_store_at") == x:  # a copy of the .sqlite alone, mid-run
            Path(action["copy_to"]).write_bytes(Path(action["store"]).read_bytes())
        if action.get("report"):
            report_progress(step=10 * x, loss=1.0 / x)
        return {"square": x * x, "half": x / 2}


def test_a_copy_of_the_store_file_mid_run_holds_every_finished_cell(tmp_path):
    store, copy = tmp_path / "r.sqlite", tmp_path / "copy.sqlite"
    action = {"copy_store_at": 4, "store": str(store), "copy_to": str(copy)}
    _Cells(values=(1, 2, 3, 4, 5), action=action).run(store, progress=False)
    with sqlite3.connect(copy) as conn:  # no -wal file beside it
        xs = sorted(json.loads(c)["x"] for (c,) in conn.execute("SELECT config FROM cells"))
    conn.close()
    assert xs == [1, 2, 3]
    assert [r["square"] for r in ResultsStore(copy).records()] == [1, 4, 9]


def test_a_diverged_cell_is_recorded_as_failed_and_tried_again(tmp_path):
    store = tmp_path / "r.sqlite"
    action = {"diverge": ["2", "3"], "fixed": str(tmp_path / "fixed")}
    with pytest.raises(CellError) as info:
        _Cells(values=(1, 2, 3, 4), action=action).run(store, progress=False)
    message = str(info.value)
    assert "2 of 4 cells failed and are not results" in message
    assert "x=2" in message and "loss is nan at step 3" in message and str(store) in message
    assert "tried again by the next run" in message and "the other 2 are saved" in message
    kept = ResultsStore(store)
    assert sorted(r["x"] for r in kept.records()) == [1, 4]  # never stored as results
    assert sorted(f["x"] for f in kept.failures()) == [2, 3]
    assert "FloatingPointError: training diverged" in kept.failures()[0]["reason"]
    kept.close()
    # The next run tries them again (and now they converge: GPU nondeterminism, say).
    (tmp_path / "fixed").touch()
    again = _Cells(values=(1, 2, 3, 4), action=action).run(store, progress=False)
    assert again.n_run == 2 and [r["square"] for r in again] == [1, 4, 9, 16]
    assert ResultsStore(store).failures() == []


def test_an_edited_row_is_computed_again(tmp_path):
    store = tmp_path / "r.sqlite"
    _Cells(values=(1, 2, 3)).run(store, progress=False)
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE cells SET result = json_set(result, '$.square', 123) WHERE config LIKE '%\"x\":2%'")
    conn.close()
    with pytest.warns(UserWarning, match=r"r.sqlite: cell .*x=2.* checksum does not match"):
        study = _Cells(values=(1, 2, 3)).run(store, progress=False)
    assert study.n_run == 1 and [r["square"] for r in study] == [1, 4, 9]


def test_without_a_terminal_each_finished_cell_is_a_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner, "PROGRESS_EVERY", 0.0)
    _Cells(values=(1, 2, 4), action={"report": True}).run(tmp_path / "r.sqlite")
    err = capsys.readouterr().err.splitlines()  # captured: not a terminal
    assert err[0] == "cells: 3 of 3 cells to run (0 in the store)"
    done = [line for line in err if " ... " not in line][1:]
    assert len(done) == 3
    assert done[2].startswith("cells cell 3/3 ") and " s: square=16 half=2 {x=4, action.report=True}" in done[2]
    # a long cell says where it stands: here every report is due
    assert "cells cell 3/3 ... step 40 loss 0.25" in err
    # the second run has nothing to do and says nothing
    _Cells(values=(1, 2, 4), action={"report": True}).run(tmp_path / "r.sqlite")
    assert capsys.readouterr().err == ""


def test_progress_false_prints_nothing(tmp_path, capsys):
    _Cells(values=(1, 2)).run(tmp_path / "r.sqlite", progress=False)
    assert capsys.readouterr().err == ""


def test_an_interrupt_says_how_many_cells_are_saved_where(tmp_path):
    store = tmp_path / "r.sqlite"
    with pytest.raises(StudyInterrupted) as info:
        _Cells(values=(1, 2, 3, 4), action={"interrupt": "3"}).run(store, progress=False)
    assert str(info.value) == f"2 of 4 cells saved in {store}; run the same command to resume"
    assert isinstance(info.value, KeyboardInterrupt)
    with pytest.raises(StudyInterrupted, match="temporary store now deleted"):
        _Cells(values=(1, 2, 3), action={"interrupt": "3"}).run(None, progress=False)


def test_a_read_only_store_is_refused_before_any_cell(tmp_path, monkeypatch):
    store = tmp_path / "r.sqlite"
    _Cells(values=(1, 2)).run(store, progress=False)
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.W_OK)
    # finished: reported from the read-only store
    assert [r["square"] for r in _Cells(values=(1, 2)).run(store)] == [1, 4]
    with pytest.raises(StoreError, match=rf"{store} is read-only .* 1 of 3 cells are missing"):
        _Cells(values=(1, 2, 3)).run(store, progress=False)


# -- several processes -------------------------------------------------------------------

_STUDY_MODULE = """
import os, sys, time
from pathlib import Path
from idprops.studies.study import Study


class Slow(Study):
    kind = "slow"

    def __init__(self, values=(), log=None):
        self.values, self.log = values, log

    def cells(self):
        return [self._cell(x=x, log=self.log) for x in self.values]

    @staticmethod
    def run_cell(config):
        with open(config["log"], "a") as fh:
            fh.write(f"start {config['x']} {os.getpid()}\\n")
        deadline = time.monotonic() + 60
        while os.environ.get("WAIT_FOR_OTHER") and time.monotonic() < deadline:
            # hold the first cell until another process is at work too
            pids = {line.split()[2] for line in open(config["log"]) if line.startswith("start")}
            if len(pids) > 1:
                break
            time.sleep(0.05)
        time.sleep(float(os.environ.get("SLOW_SECONDS", "0.4")))
        with open(config["log"], "a") as fh:
            fh.write(f"end {config['x']} {os.getpid()}\\n")
        return {"square": config["x"] ** 2}


if __name__ == "__main__":
    study = Slow(values=list(range(int(sys.argv[2]))), log=sys.argv[3])
    print(study.run(sys.argv[1], n_jobs=int(sys.argv[4]), progress=False).n_run, flush=True)
"""


def _start(tmp_path, store, n_cells, log, n_jobs=1, seconds=0.4, wait_for_other=False):
    module = tmp_path / "slowstudy.py"
    module.write_text(_STUDY_MODULE)
    pythonpath = os.pathsep.join(filter(None, [str(tmp_path), str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath, "SLOW_SECONDS": str(seconds)}
    if wait_for_other:
        env["WAIT_FOR_OTHER"] = "1"
    command = [sys.executable, str(module), str(store), str(n_cells), str(log), str(n_jobs)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _events(log):
    lines = Path(log).read_text().split() if Path(log).exists() else []
    return [tuple(lines[i : i + 3]) for i in range(0, len(lines), 3)]


def test_two_processes_split_a_study_and_compute_each_cell_once(tmp_path):
    store, log = tmp_path / "r.sqlite", tmp_path / "log"
    # each process's cells wait until both are at work: the split does not hang on timing
    procs = [_start(tmp_path, store, 10, log, wait_for_other=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    ends = [x for event, x, _ in _events(log) if event == "end"]
    assert sorted(ends, key=int) == [str(x) for x in range(10)]  # each cell once
    runs = [int(out) for out, _ in outs]
    assert sum(runs) == 10 and min(runs) >= 1  # both did some of the work
    assert len(ResultsStore(store)) == 10


def test_a_killed_process_leaves_its_cells_to_the_other(tmp_path):
    store, log = tmp_path / "r.sqlite", tmp_path / "log"
    first, second = (_start(tmp_path, store, 8, log, seconds=1.0) for _ in range(2))
    deadline = time.monotonic() + 90
    # both at work, the first one in the middle of a cell
    while not ({str(first.pid), str(second.pid)} <= {pid for _, _, pid in _events(log)}):
        assert first.poll() is None and second.poll() is None, first.stderr.read() + second.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    first.kill()  # SIGKILL, most likely in the middle of a cell
    first.wait(30)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert len(ResultsStore(store)) == 8  # the union is complete
    events = _events(log)
    ends = [x for e, x, _ in events if e == "end"]
    assert sorted(ends, key=int) == [str(x) for x in range(8)]  # every cell finished once
    started_by = {}
    for e, x, pid in events:
        if e == "start":
            started_by.setdefault(x, []).append(pid)
    # only the cell the killed process had in hand was started twice
    twice = {x for x, pids in started_by.items() if len(pids) > 1}
    assert len(twice) <= 1
    for x in twice:
        assert started_by[x][0] == str(first.pid) and (("end", x, str(first.pid)) not in events)
    for proc in (first, second):
        proc.stdout.close()
        proc.stderr.close()


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_workers_stop_when_their_study_is_killed(tmp_path):
    store, log = tmp_path / "r.sqlite", tmp_path / "log"
    proc = _start(tmp_path, store, 4, log, n_jobs=2, seconds=300)
    deadline = time.monotonic() + 120
    while len({pid for _, _, pid in _events(log)}) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    workers = {int(pid) for _, _, pid in _events(log)}
    assert proc.pid not in workers
    proc.kill()
    proc.wait(30)
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in workers if _alive(pid)]
    for pid in left:  # do not leave them running when the test fails
        os.kill(pid, 9)
    assert not left, "workers outlived their study"
    # joblib's temporary folders of the killed study go with its workers
    shm = Path("/dev/shm")
    if shm.is_dir():
        deadline = time.monotonic() + 10
        while list(shm.glob(f"joblib_memmapping_folder_{proc.pid}_*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(shm.glob(f"joblib_memmapping_folder_{proc.pid}_*")) == []
    proc.stdout.close()
    proc.stderr.close()


def test_a_read_only_folder_holding_a_finished_store_can_be_reported(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere; test_a_read_only_store_is_refused_before_any_cell covers the logic")
    store = tmp_path / "ro" / "r.sqlite"
    _Cells(values=(1, 2)).run(store, progress=False)
    store.parent.chmod(0o555)
    try:
        study = _Cells(values=(1, 2)).run(store, progress=False)
        assert [r["square"] for r in study] == [1, 4]
        with pytest.raises(StoreError, match="read-only"):
            _Cells(values=(1, 2, 3)).run(store, progress=False)
    finally:
        store.parent.chmod(0o755)


def test_signal_watch_of_a_worker_that_is_not_a_child_does_nothing():
    # dask workers run elsewhere: their parent is not the study
    runner._watch_parent(os.getppid() + 10**6)
    assert not runner._watching_parent


def test_an_output_folder_that_cannot_be_written_fails_before_any_cell(tmp_path, capsys):
    from idprops.cli import main

    study_file = tmp_path / "s.toml"
    study_file.write_text('kind = "scaling-law"\nsizes = [20]\n[training]\nepochs = 1\n')
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    store = tmp_path / "r.sqlite"
    code = main(["study", "run", str(study_file), "--out", str(blocker / "report"), "--store", str(store)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"cannot write the report into {blocker / 'report'}" in err and "pass --out" in err
    assert not store.exists()  # nothing ran
