"""A results store: one SQLite row per finished cell of a study, keyed by its configuration.

A study is a grid of cells (dataset x model x training-set size x ...). Each finished
cell is written with :meth:`ResultsStore.put` under the SHA-256 of its configuration
(:func:`config_key`), so an interrupted study resumes by running only
:meth:`ResultsStore.missing` cells. The configuration should hold everything that
changes the result, the code's version included (:func:`cell_config` adds it).

Safety, chosen because cells are expensive and workers run in parallel:

- WAL journal, a busy timeout and one short transaction per write: several processes
  may write the same file at once (on a local disk; SQLite's locks are unreliable on
  network file systems).
- ``synchronous=FULL``: a row is on disk before :meth:`~ResultsStore.put` returns, so a
  worker killed afterwards, or a power cut, loses nothing already reported done.
- One connection per process, opened lazily and reopened after a fork; the store
  pickles as its path, so it can be handed to joblib or dask workers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..jsonable import jsonable
from .results import Results

__all__ = ["ResultsStore", "cell_config", "config_key"]

#: Column names that :meth:`ResultsStore.records` adds to every record.
META_FIELDS = ("key", "study", "created")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    key     TEXT PRIMARY KEY,
    study   TEXT,
    config  TEXT NOT NULL,
    result  TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cells_study ON cells (study);
"""


def _canonical_numbers(obj: Any) -> Any:
    # 2 and 2.0 (say, epsilon from a TOML file or from the command line) are the same cell.
    if isinstance(obj, dict):
        return {k: _canonical_numbers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_canonical_numbers(v) for v in obj]
    if isinstance(obj, float) and math.isfinite(obj) and obj.is_integer():
        return int(obj)
    return obj


def _dumps(obj: Any, *, sort_keys: bool = False) -> str:
    return json.dumps(obj, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False)


def config_key(config: Mapping[str, Any]) -> str:
    """The stable SHA-256 (hex) of a configuration.

    The hash is taken over a canonical JSON: keys sorted at every depth, tuples and numpy
    arrays as lists, numpy scalars as Python numbers, paths as strings, and floats
    with an integer value as integers (``2.0`` and ``2`` are the same cell).

    Parameters
    ----------
    config : mapping
        String keys; values JSON-like (numbers, strings, bools, None, lists, mappings,
        numpy scalars or arrays).

    Returns
    -------
    str
        64 hexadecimal characters.

    Examples
    --------
    >>> config_key({"N": 500, "lr": 1e-3}) == config_key({"lr": 0.001, "N": 500.0})
    True
    >>> config_key({"N": 500}) == config_key({"N": 750})
    False
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, got {type(config).__name__}")
    canonical = _canonical_numbers(jsonable(config, where="config"))
    return hashlib.sha256(_dumps(canonical, sort_keys=True).encode("utf-8")).hexdigest()


def cell_config(**parts: Any) -> dict[str, Any]:
    """A cell's configuration with the running idprops version under ``"code_version"``.

    A new release then never reuses cells computed by an older one. An explicit
    ``code_version`` in ``parts`` wins (to resume a study under the version it began with).

    Examples
    --------
    >>> import idprops
    >>> cfg = cell_config(dataset="digits", N=500)
    >>> cfg["code_version"] == idprops.__version__, cfg["N"]
    (True, 500)
    """
    import idprops

    return {"code_version": idprops.__version__, **parts}


def dotted_items(obj: Mapping[str, Any], prefix: str = ""):
    """(dotted name, value) of every leaf of nested mappings, in order.

    Examples
    --------
    >>> list(dotted_items({"data": {"name": "digits", "n": 50}, "seed": 0}))
    [('data.name', 'digits'), ('data.n', 50), ('seed', 0)]
    """
    for key, value in obj.items():
        if isinstance(value, Mapping):
            yield from dotted_items(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _flatten(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Nested mappings as one level with dotted names: ``{"a": {"b": 1}} -> {"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for name, value in dotted_items(obj):
        if name in flat:
            raise ValueError(f"field {name!r} appears twice once nested names are dotted")
        flat[name] = value
    return flat


class ResultsStore:
    """One SQLite file holding the finished cells of one or more studies.

    Parameters
    ----------
    path : str or path-like
        The database file (a leading ``~`` is the home folder); created (with its
        folder) on first use.
    timeout : float, default=60
        Seconds a write waits for another process's write to finish before failing.

    Notes
    -----
    :meth:`records` merges each cell into one flat record: ``key``, ``study`` and
    ``created`` (UTC, ISO 8601), then the configuration's fields, then the result's,
    nested mappings flattened to dotted names (``{"model": {"name": ...}}`` ->
    ``"model.name"``). So that a record is never ambiguous, :meth:`put` refuses a result
    field named like a configuration field or like ``key``, ``study`` or ``created``.

    The key is the configuration's alone: ``study`` is a label for filtering, and the
    same configuration put under another study moves there. Put what tells cells apart
    (the pipeline's name, for one) into the configuration.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "results.sqlite")
    >>> with ResultsStore(path) as store:
    ...     cfg = {"dataset": "digits", "N": 500}
    ...     _ = store.put(cfg, {"test_loss": 0.25}, study="scaling")
    ...     store.get(cfg), store.has({"N": 500, "dataset": "digits"}), len(store)
    ({'test_loss': 0.25}, True, 1)
    >>> store.missing([{"dataset": "digits", "N": 500}, {"dataset": "digits", "N": 750}])
    [{'dataset': 'digits', 'N': 750}]
    >>> rec = store.records()[0]
    >>> rec["study"], rec["N"], rec["test_loss"]
    ('scaling', 500, 0.25)
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = 60.0) -> None:
        # Paths from study files and --set reach here without a shell to expand "~".
        self.path = Path(path).expanduser()
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    # -- connection ---------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        # A connection inherited through fork shares the parent's file locks: never use it.
        if self._conn is None or self._pid != os.getpid():
            self._conn = self._open()
            self._pid = os.getpid()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit, each statement (or explicit BEGIN) is its own
        # short transaction. check_same_thread=False + self._lock: threads share it safely.
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        deadline = time.monotonic() + self.timeout
        while True:
            # Switching a new file to WAL takes an exclusive lock that a second process
            # opening the same new file can hold, and SQLite does not always wait on it.
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    conn.close()
                    raise
                time.sleep(0.05)
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise sqlite3.DatabaseError(
                    f"{self.path} is not a results store ({exc}); move it aside or use another path"
                ) from exc
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def close(self) -> None:
        """Close this process's connection (a later call reopens it)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], timeout=state["timeout"])

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r})"

    def _execute(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._connection().execute(sql, tuple(params)).fetchall()

    # -- cells --------------------------------------------------------------------------
    def put(self, config: Mapping[str, Any], result: Mapping[str, Any], *, study: str | None = None) -> str:
        """Store a finished cell, replacing any earlier row of the same configuration.

        The row is committed to disk before this returns.

        Parameters
        ----------
        config : mapping
            The cell's configuration (see :func:`config_key`).
        result : mapping
            What the cell measured; JSON-like values (NaN and infinities allowed).
        study : str, optional
            A label, for :meth:`records` ``(study=...)``.

        Returns
        -------
        str
            The configuration's key.
        """
        if not isinstance(result, Mapping):
            raise TypeError(f"result must be a mapping, got {type(result).__name__}")
        cfg = jsonable(config, where="config")
        res = jsonable(result, where="result")
        cfg_fields, res_fields = _flatten(cfg), _flatten(res)
        clash = (set(cfg_fields) | set(META_FIELDS)) & set(res_fields)
        clash |= set(META_FIELDS) & set(cfg_fields)
        if clash:
            raise ValueError(
                f"field(s) {sorted(clash)} would be ambiguous in records(): rename them "
                f"(a result field may not repeat a config field, nor {list(META_FIELDS)})"
            )
        key = config_key(cfg)
        created = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        self._execute(
            "INSERT OR REPLACE INTO cells (key, study, config, result, created) VALUES (?, ?, ?, ?, ?)",
            (key, study, _dumps(cfg), _dumps(res), created),
        )
        return key

    def has(self, config: Mapping[str, Any]) -> bool:
        """Whether the cell of this configuration is stored."""
        return bool(self._execute("SELECT 1 FROM cells WHERE key = ?", (config_key(config),)))

    def get(self, config: Mapping[str, Any]) -> dict[str, Any] | None:
        """The stored result of this configuration, or None."""
        rows = self._execute("SELECT result FROM cells WHERE key = ?", (config_key(config),))
        return json.loads(rows[0][0]) if rows else None

    def missing(self, configs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The configurations not yet stored, in order, each once: what is left to run."""
        done = {k for (k,) in self._execute("SELECT key FROM cells")}
        todo = []
        for cfg in configs:
            key = config_key(cfg)
            if key not in done:
                done.add(key)  # a grid listing a cell twice runs it once
                todo.append(cfg)
        return todo

    def __len__(self) -> int:
        return self._execute("SELECT COUNT(*) FROM cells")[0][0]

    # -- export -------------------------------------------------------------------------
    def records(self, study: str | None = None) -> list[dict[str, Any]]:
        """Every stored cell (of ``study`` if given) as one flat dict, in order of writing.

        See the class Notes for the field names.
        """
        sql = "SELECT key, study, created, config, result FROM cells"
        rows = self._execute(
            sql + (" WHERE study = ?" if study is not None else "") + " ORDER BY rowid",
            () if study is None else (study,),
        )
        return [
            {
                "key": key,
                "study": st,
                "created": created,
                **_flatten(json.loads(cfg)),
                **_flatten(json.loads(res)),
            }
            for key, st, created, cfg, res in rows
        ]

    def to_csv(self, path: str | os.PathLike, study: str | None = None) -> Path:
        """Write :meth:`records` to a CSV file and return its path (see :meth:`Results.to_csv`)."""
        return Results(self.records(study)).to_csv(path)

    def to_dataframe(self, study: str | None = None):
        """:meth:`records` as a pandas DataFrame (needs pandas)."""
        return Results(self.records(study)).to_frame()
