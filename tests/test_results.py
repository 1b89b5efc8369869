import csv
import json
import multiprocessing
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import idprops
from idprops.studies.store import ResultsStore, cell_config, config_key

REPO = Path(__file__).resolve().parents[1]


def test_round_trip(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    cfg = {"dataset": "digits", "model": {"name": "small_cnn", "width": 2}, "N": 500}
    result = {"test_loss": 0.125, "ids": [3.5, np.float32(2.5)], "nan": float("nan")}
    key = store.put(cfg, result, study="s")
    assert key == config_key(cfg)
    got = store.get(cfg)
    assert got["test_loss"] == 0.125 and got["ids"] == [3.5, 2.5] and np.isnan(got["nan"])
    assert store.get({**cfg, "N": 750}) is None
    # a second handle on the file (another process, later) sees the same row
    other = ResultsStore(tmp_path / "r.sqlite")
    assert other.has(cfg) and len(other) == 1
    (rec,) = other.records()
    assert rec["study"] == "s" and rec["key"] == key
    assert rec["model.name"] == "small_cnn" and rec["model.width"] == 2 and rec["N"] == 500
    assert rec["test_loss"] == 0.125
    # put again replaces, never duplicates
    store.put(cfg, {"test_loss": 0.5}, study="s")
    assert len(store) == 1 and store.get(cfg) == {"test_loss": 0.5}


def test_key_is_canonical():
    a = {"N": 500, "lr": 1e-3, "model": {"depth": 18, "name": "resnet"}, "sizes": (1, 2)}
    b = {"sizes": [1, 2], "model": {"name": "resnet", "depth": 18}, "lr": 0.001, "N": 500}
    assert config_key(a) == config_key(b)
    assert config_key({"N": np.int64(500)}) == config_key({"N": 500}) == config_key({"N": 500.0})
    assert len(config_key(a)) == 64
    assert config_key(a) != config_key({**a, "lr": 2e-3})
    assert config_key(a) != config_key({**a, "model": {"depth": 34, "name": "resnet"}})
    assert config_key({"flag": True}) != config_key({"flag": 1})
    assert config_key({"x": None}) != config_key({})


def test_bad_values_are_refused(tmp_path):
    with pytest.raises(TypeError, match="not storable"):
        config_key({"f": object()})
    with pytest.raises(TypeError, match="not a string"):
        config_key({1: "a"})
    store = ResultsStore(tmp_path / "r.sqlite")
    with pytest.raises(ValueError, match="ambiguous"):
        store.put({"N": 1}, {"N": 2})
    with pytest.raises(ValueError, match="ambiguous"):
        store.put({"study": "x"}, {"loss": 2})
    assert len(store) == 0


def test_cell_config_adds_version():
    cfg = cell_config(dataset="digits", N=500)
    assert cfg == {"code_version": idprops.__version__, "dataset": "digits", "N": 500}
    assert cell_config(code_version="0.0.1")["code_version"] == "0.0.1"


def test_missing_and_studies(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    grid = [{"N": n, "seed": s} for n in (500, 750, 1000) for s in (0, 1)]
    for cfg in grid[::2]:
        store.put(cfg, {"loss": 1.0}, study="a" if cfg["N"] < 1000 else "b")
    assert store.missing(grid) == grid[1::2]
    assert store.missing(grid + grid) == grid[1::2]  # each left-over cell once
    assert store.missing(grid[::2]) == []
    assert [r["N"] for r in store.records(study="a")] == [500, 750]
    assert [r["N"] for r in store.records(study="b")] == [1000]
    assert len(store.records()) == 3


def test_pickles_as_its_path(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    store.put({"a": 1}, {"b": 2})
    clone = pickle.loads(pickle.dumps(store))
    assert clone.path == store.path and clone.get({"a": 1}) == {"b": 2}


def test_csv_matches_records(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    store.put({"N": 500, "model": "a"}, {"loss": 0.1, "acc": 0.9, "ids": [1.5, 2.0]}, study="s")
    store.put({"N": 750, "model": "b"}, {"loss": 1 / 3, "note": None}, study="s")
    path = store.to_csv(tmp_path / "out" / "r.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    records = store.records()
    assert list(rows[0]) == ["key", "study", "created", "N", "model", "loss", "acc", "ids", "note"]
    assert len(rows) == len(records) == 2
    for row, rec in zip(rows, records):
        assert row["key"] == rec["key"] and row["created"] == rec["created"]
        assert int(row["N"]) == rec["N"] and row["model"] == rec["model"]
        assert float(row["loss"]) == rec["loss"]  # floats round-trip exactly
    assert json.loads(rows[0]["ids"]) == [1.5, 2.0] and float(rows[0]["acc"]) == 0.9
    assert rows[1]["acc"] == "" and rows[1]["note"] == "" and rows[1]["ids"] == ""


def test_dataframe_matches_records(tmp_path):
    pd = pytest.importorskip("pandas")
    store = ResultsStore(tmp_path / "r.sqlite")
    assert list(store.to_dataframe().columns) == ["key", "study", "created"]
    for n in (500, 750):
        store.put({"N": n}, {"loss": 1.0 / n})
    df = store.to_dataframe()
    assert isinstance(df, pd.DataFrame)
    assert df["N"].tolist() == [500, 750] and df["loss"].tolist() == [1 / 500, 1 / 750]


def _write_many(path, worker, n, barrier):
    barrier.wait(60)  # both start writing together, or the test tests nothing
    store = ResultsStore(path)
    for i in range(n):
        store.put({"worker": worker, "i": i}, {"value": worker * 1000 + i}, study=f"w{worker}")
        time.sleep(0.002)  # a cell's work: leaves the other writer a chance to get the lock
    store.close()


def test_two_processes_write_concurrently(tmp_path):
    path = tmp_path / "r.sqlite"  # new file: both processes also race to create it
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_write_many, args=(path, w, 200, barrier)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = ResultsStore(path)
    assert len(store) == 400
    order = [r["worker"] for r in store.records()]
    assert sum(a != b for a, b in zip(order, order[1:])) > 1  # the writes did interleave
    for w in (1, 2):
        recs = store.records(study=f"w{w}")
        assert sorted(r["i"] for r in recs) == list(range(200))
        assert all(r["value"] == w * 1000 + r["i"] for r in recs)
    assert store.get({"i": 7, "worker": 2}) == {"value": 2007}


def test_killed_writer_loses_no_committed_row(tmp_path):
    path = tmp_path / "r.sqlite"
    script = textwrap.dedent(
        f"""
        import sys
        from idprops.studies.store import ResultsStore
        store = ResultsStore({str(path)!r})
        i = 0
        while True:
            store.put({{"i": i}}, {{"payload": "x" * 2000, "i2": i * i}})
            print(i, flush=True)  # printed only once put() returned: committed
            i += 1
        """
    )
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        reported = [int(proc.stdout.readline()) for _ in range(60)]
        os.kill(proc.pid, signal.SIGKILL)  # most likely in the middle of a later put
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    assert reported == list(range(60))
    store = ResultsStore(path)
    for i in reported:
        assert store.get({"i": i}) == {"payload": "x" * 2000, "i2": i * i}
    assert len(store) >= 60
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.put({"i": -1}, {"payload": "", "i2": 1})  # still writable
    assert store.has({"i": -1})


def test_a_file_that_is_not_a_store_is_named(tmp_path):
    path = tmp_path / "results.sqlite"
    path.write_text("notes, not a database " * 20)
    with pytest.raises(sqlite3.DatabaseError, match=r"results.sqlite is not a results store"):
        len(ResultsStore(path))
    assert path.read_text().startswith("notes")  # left as it was


def test_tilde_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with ResultsStore("~/runs/results.sqlite") as store:
        store.put({"N": 1}, {"loss": 0.5})
    assert store.path == tmp_path / "home" / "runs" / "results.sqlite"
    assert store.path.is_file() and not (tmp_path / "~").exists()


# -- one file, checksums, damaged rows ---------------------------------------------------


def test_the_sqlite_file_alone_holds_every_finished_cell(tmp_path):
    path = tmp_path / "r.sqlite"
    store = ResultsStore(path)
    for i in range(5):
        store.put({"i": i}, {"square": i * i})
        # a copy of the .sqlite alone, as a crash (or a careless backup) leaves it
        copy = tmp_path / f"copy{i}.sqlite"
        copy.write_bytes(path.read_bytes())
        with sqlite3.connect(copy) as conn:
            rows = conn.execute("SELECT config, result FROM cells").fetchall()
        assert sorted(json.loads(c)["i"] for c, _ in rows) == list(range(i + 1))
    assert not Path(f"{path}-wal").exists()


def _tamper(path, sql, *params):
    with sqlite3.connect(path) as conn:
        conn.execute(sql, params)
    conn.close()


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("UPDATE cells SET result = '{}' WHERE key = ?", "checksum does not match"),
        ("UPDATE cells SET result = json_set(result, '$.test_loss', 123) WHERE key = ?", "checksum does not match"),
        ("UPDATE cells SET result = '{\"test_loss\": 0.2' WHERE key = ?", "result is not valid JSON"),
        ("UPDATE cells SET result = CAST(x'7b2261223a2022ff227d' AS TEXT) WHERE key = ?", "not valid UTF-8"),
        ("UPDATE cells SET config = json_set(config, '$.N', 750) WHERE key = ?", "no longer gives its key"),
    ],
)
def test_a_damaged_row_is_named_and_computed_again(tmp_path, sql, reason):
    path = tmp_path / "r.sqlite"
    store = ResultsStore(path)
    good = {"model": {"name": "mlp"}, "N": 100}
    bad = {"model": {"name": "small_cnn"}, "N": 500}
    store.put(good, {"test_loss": 0.1}, study="s")
    key = store.put(bad, {"test_loss": 0.2}, study="s")
    store.close()
    _tamper(path, sql, key)
    store = ResultsStore(path)
    with pytest.warns(idprops.studies.store.StoreWarning) as record:
        recs = store.records()
    assert [r["N"] for r in recs] == [100]  # never reported as a result
    (message,) = [str(w.message) for w in record]
    assert str(path) in message and key[:12] in message and reason in message
    assert "computed again" in message
    if "gives its key" not in reason:  # the cell is named by its fields while they read
        assert "model.name=small_cnn" in message
    assert store.missing([good, bad]) == [bad] and not store.has(bad)
    assert [d["key"] for d in store.damaged()] == [key] and reason in store.damaged()[0]["reason"]
    store.put(bad, {"test_loss": 0.2}, study="s")  # computed again: whole once more
    assert store.damaged() == [] and store.get(bad) == {"test_loss": 0.2}


def test_a_store_without_checksums_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    cfg = {"N": 500}
    with sqlite3.connect(path) as conn:  # the schema and a row as version 0.1 wrote them
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE cells (key TEXT PRIMARY KEY, study TEXT, config TEXT NOT NULL, "
            "result TEXT NOT NULL, created TEXT NOT NULL)"
        )
        conn.execute(
            "INSERT INTO cells VALUES (?, 's', ?, ?, '2026-01-01T00:00:00.000+00:00')",
            (config_key(cfg), json.dumps(cfg), json.dumps({"test_loss": 0.5})),
        )
    conn.close()
    store = ResultsStore(path)
    assert store.get(cfg) == {"test_loss": 0.5} and store.records()[0]["study"] == "s"
    store.close()
    _tamper(path, "UPDATE cells SET result = '{\"test_loss\": 123}'")
    with pytest.warns(idprops.studies.store.StoreWarning, match="checksum"):
        assert ResultsStore(path).get(cfg) is None


def test_a_corrupted_file_names_the_store_and_what_to_do(tmp_path):
    path = tmp_path / "results.sqlite"
    store = ResultsStore(path)
    for i in range(300):
        store.put({"i": i}, {"payload": "x" * 500})
    store.close()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2 // 4096 * 4096
    data[middle : middle + 4 * 4096] = b"\xa5" * (4 * 4096)  # garbage over four pages of rows
    path.write_bytes(bytes(data))
    with pytest.raises(idprops.studies.store.StoreError) as info:
        ResultsStore(path).records()
    message = str(info.value)
    assert str(path) in message and "malformed" in message
    assert "move it aside" in message and ".recover" in message


def test_failures_are_kept_apart_and_stay_missing(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    cfg = {"lr": 10.0}
    store.put_failure(cfg, "training diverged: loss nan at step 3", study="s")
    assert store.missing([cfg]) == [cfg] and store.records() == []
    (failure,) = store.failures()
    assert failure["reason"] == "training diverged: loss nan at step 3" and failure["lr"] == 10
    store.put(cfg, {"test_loss": 0.3}, study="s")
    assert store.failures() == [] and store.get(cfg) == {"test_loss": 0.3}


# -- leases ------------------------------------------------------------------------------


def test_a_lease_of_a_dead_process_ends_at_once(tmp_path):
    path = tmp_path / "r.sqlite"
    script = textwrap.dedent(
        f"""
        import time
        from idprops.studies.store import ResultsStore
        store = ResultsStore({str(path)!r})
        print(store.claim({{"i": 1}}), flush=True)
        time.sleep(600)
        """
    )
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": pythonpath},
    )
    try:
        assert proc.stdout.readline().strip() == "True"
        store = ResultsStore(path)
        assert not store.claim({"i": 1})  # held by a live process
        assert store.claimed_elsewhere([{"i": 1}, {"i": 2}]) == [{"i": 1}]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        assert store.claimed_elsewhere([{"i": 1}]) == []
        assert store.claim({"i": 1})
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


def test_a_lease_from_another_machine_holds_until_it_expires(tmp_path):
    path = tmp_path / "r.sqlite"
    store = ResultsStore(path)
    assert len(store) == 0  # creates the file
    store.close()
    now = time.time()
    for key, expires in ((config_key({"i": 1}), now + 300), (config_key({"i": 2}), now - 1)):
        _tamper(path, "INSERT INTO leases VALUES (?, 'elsewhere:7:ab', 'elsewhere', 7, ?)", key, expires)
    assert not store.claim({"i": 1})  # pid 7 of another host is not looked up here
    assert store.claim({"i": 2})  # expired
    store.close()
    with sqlite3.connect(path) as conn:  # close() ends this process's claims
        assert conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 1
    conn.close()


def test_claims_are_renewed_while_the_store_is_open(tmp_path):
    path = tmp_path / "r.sqlite"
    store = ResultsStore(path, lease_seconds=0.6)
    assert store.claim({"i": 1})
    time.sleep(1.5)  # past two expiries: renewed every 0.2 s
    assert not ResultsStore(path).claim({"i": 1})
