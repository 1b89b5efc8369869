"""A results store: one SQLite row per finished cell of a study, keyed by its configuration.

A study is a grid of cells (dataset x model x training-set size x ...). Each finished
cell is written with :meth:`ResultsStore.put` under the SHA-256 of its configuration
(:func:`config_key`), so an interrupted study resumes by running only
:meth:`ResultsStore.missing` cells. The configuration should hold everything that
changes the result, the code's version included (:func:`cell_config` adds it).

Safety, chosen because cells are expensive and workers run in parallel:

- A rollback journal (``journal_mode=DELETE``), ``synchronous=FULL`` and one short
  transaction per write: once :meth:`~ResultsStore.put` returns, the row is in the
  ``.sqlite`` file itself, so a copy of that one file after a crash holds every finished
  cell (a write-ahead log would keep them in a ``-wal`` file beside it), and the file
  works on network file systems whose locks SQLite can use (WAL needs shared memory).
- Every row carries a checksum of its configuration and result; a row edited or damaged
  afterwards (or not valid UTF-8 or JSON, or no longer matching its key) is reported with
  a warning naming the store and the cell, and treated as missing, so the next run
  computes it again. The checksum detects accidents, not an adversary who recomputes it.
- Leases (:meth:`~ResultsStore.claim`): a process that claims a cell holds it while it
  runs; other processes, on this machine or another sharing the file, skip it until the
  lease is released, expires (it is renewed while its holder lives) or its holder is
  seen dead on this machine. Several processes can so split one study.
- Failed cells (:meth:`~ResultsStore.put_failure`) are kept apart with their reason and
  are still missing: a later run tries them again.
- A store that cannot be written (read-only file or folder) opens read-only: it can be
  read and reported, and a write names the path and what to do.
- One connection per process, opened lazily and reopened after a fork; the store
  pickles as its path, so it can be handed to joblib or dask workers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import sqlite3
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..jsonable import jsonable
from .results import Results

__all__ = ["ResultsStore", "StoreError", "StoreWarning", "cell_config", "config_key"]

#: Column names that :meth:`ResultsStore.records` adds to every record.
META_FIELDS = ("key", "study", "created")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    key      TEXT PRIMARY KEY,
    study    TEXT,
    config   TEXT NOT NULL,
    result   TEXT NOT NULL,
    created  TEXT NOT NULL,
    checksum TEXT
);
CREATE INDEX IF NOT EXISTS cells_study ON cells (study);
CREATE TABLE IF NOT EXISTS failures (
    key     TEXT PRIMARY KEY,
    study   TEXT,
    config  TEXT NOT NULL,
    reason  TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    key     TEXT PRIMARY KEY,
    owner   TEXT NOT NULL,
    host    TEXT NOT NULL,
    pid     INTEGER NOT NULL,
    expires REAL NOT NULL
);
"""


class StoreError(sqlite3.DatabaseError):
    """A results store that cannot be used as asked; the message names it and what to do.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.sqlite")
    >>> _ = open(path, "w").write("notes, not a database " * 20)
    >>> len(ResultsStore(path))
    Traceback (most recent call last):
    ...
    idprops.studies.store.StoreError: .../notes.sqlite is not a results store or is damaged ...
    """


class StoreWarning(UserWarning):
    """A damaged row of a results store: it is treated as missing and computed again.

    Examples
    --------
    >>> import sqlite3, tempfile, os, warnings
    >>> path = os.path.join(tempfile.mkdtemp(), "results.sqlite")
    >>> store = ResultsStore(path)
    >>> _ = store.put({"N": 500}, {"test_loss": 0.25})
    >>> with sqlite3.connect(path) as conn:  # an edit behind the store's back
    ...     _ = conn.execute("UPDATE cells SET result = json_set(result, '$.test_loss', 0.01)")
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     store.get({"N": 500}), caught[0].category.__name__
    (None, 'StoreWarning')
    """


class _Damaged(Exception):
    """A row that fails its checks; the message says which."""


def _checksum(key: bytes, config: bytes, result: bytes) -> str:
    return hashlib.sha256(b"\n".join((key, config, result))).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine still runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:  # no /proc (macOS): trust kill
        return True


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
        folder) on first use. A file or folder this process cannot write opens
        read-only.
    timeout : float, default=60
        Seconds a write waits for another process's write to finish before failing.
    lease_seconds : float, default=120
        How long a claim (:meth:`claim`) holds a cell without being renewed; this
        process renews its claims every third of it while the store is open. Machines
        sharing a store must have their clocks within a fraction of it.

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

    A row that fails its checks (see the module's description) is left out of
    :meth:`records`, :meth:`get` and :meth:`has` with a :class:`StoreWarning` naming the
    store, the cell and the fault; :meth:`damaged` lists such rows.

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

    def __init__(self, path: str | os.PathLike, *, timeout: float = 60.0, lease_seconds: float = 120.0) -> None:
        # Paths from study files and --set reach here without a shell to expand "~".
        self.path = Path(path).expanduser()
        self.timeout = timeout
        self.lease_seconds = lease_seconds
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._readonly = False
        self._lock = threading.RLock()
        self._warned: set[str] = set()
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renewer: threading.Thread | None = None
        self._stop_renewing = threading.Event()

    # -- connection ---------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        # A connection inherited through fork shares the parent's file locks: never use it.
        if self._conn is None or self._pid != os.getpid():
            if self._pid != os.getpid():  # claims belong to the process that made them
                self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
            self._conn = self._open()
            self._pid = os.getpid()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        folder = self.path.parent
        if not self.path.exists():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the results store {self.path}: {exc.strerror or exc}; "
                    "choose a store in a folder you can write (--store PATH)"
                ) from exc
        self._readonly = self.path.exists() and not (os.access(self.path, os.W_OK) and os.access(folder, os.W_OK))
        if self._readonly:
            # mode=ro creates no journal; immutable=1 also reads a file whose folder
            # cannot hold the lock files an old write-ahead-log store asks for.
            conn = self._connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
            except sqlite3.OperationalError:
                conn.close()
                conn = self._connect(f"{self.path.resolve().as_uri()}?immutable=1", uri=True)
            self._check_is_store(conn)
            return conn
        conn = self._connect(self.path)
        deadline = time.monotonic() + self.timeout
        while True:
            # Leaving WAL (stores written by older versions) needs the file to itself,
            # and a new file's first schema can race with a second process's.
            try:
                conn.execute("PRAGMA journal_mode=DELETE")
                conn.executescript(_SCHEMA)
                self._migrate(conn)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    conn.close()
                    self._raise(exc)
                time.sleep(0.05)
            except sqlite3.DatabaseError as exc:
                conn.close()
                self._raise(exc)
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _connect(self, target, uri: bool = False) -> sqlite3.Connection:
        # isolation_level=None: autocommit, each statement (or explicit BEGIN) is its own
        # short transaction. check_same_thread=False + self._lock: threads share it safely.
        # text_factory=bytes: rows are decoded here, so invalid UTF-8 is named, not dumped.
        try:
            conn = sqlite3.connect(target, timeout=self.timeout, isolation_level=None, check_same_thread=False, uri=uri)
        except sqlite3.DatabaseError as exc:
            self._raise(exc)
        conn.text_factory = bytes
        return conn

    def _check_is_store(self, conn: sqlite3.Connection) -> None:
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            conn.close()
            self._raise(exc)
        if b"cells" not in tables:
            conn.close()
            raise StoreError(
                f"{self.path} is read-only and holds no results (no 'cells' table); "
                "pass the store a study wrote, or a writable path for a new one"
            )

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(cells)")}
        if b"checksum" in columns:
            return
        # A store written before checksums: its rows get theirs now, those that still
        # decode and match their key (the others then show up as damaged).
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("ALTER TABLE cells ADD COLUMN checksum TEXT")
            rows = conn.execute("SELECT key, config, result FROM cells").fetchall()
            for key, cfg, res in rows:
                try:
                    _decode_row(key, cfg, res, None)
                except _Damaged:
                    continue
                # A key bound as bytes would be a BLOB, equal to no TEXT key.
                conn.execute("UPDATE cells SET checksum = ? WHERE key = ?", (_checksum(key, cfg, res), key.decode()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _raise(self, exc: sqlite3.DatabaseError) -> None:
        error = self._store_error(exc)
        if error is exc:
            raise exc
        raise error from exc

    def _store_error(self, exc: sqlite3.DatabaseError) -> sqlite3.DatabaseError:
        """``exc`` as an error naming this store and what to do, when it is about the file."""
        message = str(exc)
        if "not a database" in message or "malformed" in message or "file is encrypted" in message:
            return StoreError(
                f"{self.path} is not a results store or is damaged ({message}); move it aside "
                "(or restore it from a copy) and run again to compute its cells afresh; "
                f"'sqlite3 {self.path} .recover' may save the rows still readable"
            )
        if "readonly" in message or "read-only" in message:
            return StoreError(
                f"cannot write to the results store {self.path}: it or its folder is read-only; "
                "make it writable or pass another store (--store PATH): a read-only store "
                "can still be reported"
            )
        if "unable to open" in message:
            return StoreError(f"cannot open the results store {self.path} ({message}); check the path and its folder")
        return exc

    def close(self) -> None:
        """Release this process's claims and close its connection (a later call reopens it)."""
        self._stop_renewing.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join()
        self._renewer = None
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                if not self._readonly:
                    try:
                        self._conn.execute("DELETE FROM leases WHERE owner = ?", (self._owner,))
                    except sqlite3.DatabaseError:
                        pass  # a lease left behind expires on its own
                self._conn.close()
            self._conn = None

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "timeout": self.timeout, "lease_seconds": self.lease_seconds}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], timeout=state["timeout"], lease_seconds=state.get("lease_seconds", 120.0))

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r})"

    def _execute(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._connection().execute(sql, tuple(params)).fetchall()
            except sqlite3.DatabaseError as exc:
                self._raise(exc)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once so that its reads see what it writes on."""
        with self._lock:
            conn = self._connection()
            if self._readonly:
                self._raise(sqlite3.OperationalError("attempt to write a readonly database"))
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._raise(exc)

    @property
    def writable(self) -> bool:
        """Whether cells can be written (False for a read-only file or folder)."""
        with self._lock:
            self._connection()
            return not self._readonly

    # -- reading rows -------------------------------------------------------------------
    def _valid_rows(self, sql: str, params: Iterable[Any] = ()) -> Iterator[tuple]:
        """The rows of ``sql`` (selecting key, config, result, checksum, then any more
        columns) that pass their checks, decoded; the others are warned about once."""
        for key, cfg, res, checksum, *rest in self._execute(sql, params):
            try:
                config, result = _decode_row(key, cfg, res, checksum)
            except _Damaged as exc:
                self._warn_damaged(key, cfg, str(exc))
                continue
            yield (key.decode("utf-8", "replace"), config, result, *rest)

    def _warn_damaged(self, key: bytes, cfg: bytes, reason: str) -> None:
        text = key.decode("utf-8", "replace")
        if text in self._warned:
            return
        self._warned.add(text)
        warnings.warn(
            f"{self.path}: cell {_name_row(key, cfg)} is damaged: {reason}; it is treated as "
            "missing and computed again by the next run of its study",
            StoreWarning,
            stacklevel=4,
        )

    def damaged(self) -> list[dict[str, str]]:
        """The rows that fail their checks: ``key``, ``cell`` (its description) and ``reason``.

        A row is damaged when its configuration or result is not valid UTF-8 or JSON,
        when its configuration no longer gives its key, or when its checksum does not
        match (it was edited or corrupted after it was written).
        """
        out = []
        for key, cfg, res, checksum in self._execute("SELECT key, config, result, checksum FROM cells ORDER BY rowid"):
            try:
                _decode_row(key, cfg, res, checksum)
            except _Damaged as exc:
                out.append({"key": key.decode("utf-8", "replace"), "cell": _name_row(key, cfg), "reason": str(exc)})
        return out

    # -- cells --------------------------------------------------------------------------
    def put(self, config: Mapping[str, Any], result: Mapping[str, Any], *, study: str | None = None) -> str:
        """Store a finished cell, replacing any earlier row of the same configuration.

        The row is in the database file before this returns; a failure recorded for the
        cell, and this process's claim on it, are dropped with it.

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
        cfg_text, res_text = _dumps(cfg), _dumps(res)
        checksum = _checksum(key.encode(), cfg_text.encode(), res_text.encode())
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO cells (key, study, config, result, created, checksum) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key, study, cfg_text, res_text, _now(), checksum),
            )
            conn.execute("DELETE FROM failures WHERE key = ?", (key,))
            conn.execute("DELETE FROM leases WHERE key = ? AND owner = ?", (key, self._owner))
        return key

    def has(self, config: Mapping[str, Any]) -> bool:
        """Whether the cell of this configuration is stored (and passes its checks)."""
        return self.get(config) is not None

    def get(self, config: Mapping[str, Any]) -> dict[str, Any] | None:
        """The stored result of this configuration, or None."""
        sql = "SELECT key, config, result, checksum FROM cells WHERE key = ?"
        for _, _, result in self._valid_rows(sql, (config_key(config),)):
            return result
        return None

    def _done_keys(self) -> set[str]:
        return {key for key, _, _ in self._valid_rows("SELECT key, config, result, checksum FROM cells")}

    def missing(self, configs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The configurations not yet stored, in order, each once: what is left to run.

        Damaged rows and failed cells count as missing.
        """
        done = self._done_keys()
        todo = []
        for cfg in configs:
            key = config_key(cfg)
            if key not in done:
                done.add(key)  # a grid listing a cell twice runs it once
                todo.append(cfg)
        return todo

    def __len__(self) -> int:
        return len(self._done_keys())

    # -- failures -----------------------------------------------------------------------
    def put_failure(self, config: Mapping[str, Any], reason: str, *, study: str | None = None) -> str:
        """Record that a cell failed (diverged, say), with the reason; it stays missing.

        Returns the configuration's key. A later :meth:`put` of the cell drops the record.
        """
        cfg = jsonable(config, where="config")
        key = config_key(cfg)
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO failures (key, study, config, reason, created) VALUES (?, ?, ?, ?, ?)",
                (key, study, _dumps(cfg), str(reason), _now()),
            )
            conn.execute("DELETE FROM leases WHERE key = ? AND owner = ?", (key, self._owner))
        return key

    def failures(self, study: str | None = None) -> list[dict[str, Any]]:
        """Failed cells not computed since: ``key``, ``study``, ``created``, ``reason`` and
        the configuration's fields (dotted), in order of writing."""
        sql = "SELECT key, study, created, reason, config FROM failures"
        rows = self._execute(
            sql + (" WHERE study = ?" if study is not None else "") + " ORDER BY rowid",
            () if study is None else (study,),
        )
        out = []
        for key, st, created, reason, cfg in rows:
            try:
                fields = _flatten(json.loads(cfg.decode("utf-8")))
            except (UnicodeDecodeError, ValueError):
                fields = {}
            out.append(
                {
                    "key": key.decode("utf-8", "replace"),
                    "study": None if st is None else st.decode("utf-8", "replace"),
                    "created": created.decode("utf-8", "replace"),
                    "reason": reason.decode("utf-8", "replace"),
                    **fields,
                }
            )
        return out

    # -- leases -------------------------------------------------------------------------
    def claim(self, config: Mapping[str, Any]) -> bool:
        """Claim a cell for this process; False when it is stored or another holds it.

        A claim lasts ``lease_seconds``, renewed by a thread of this process while the
        store is open; :meth:`put`, :meth:`put_failure`, :meth:`release` and
        :meth:`close` end it. A claim whose holder died on this machine ends at once.

        Examples
        --------
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "results.sqlite")
        >>> a, b = ResultsStore(path), ResultsStore(path)  # two runs on one store
        >>> a.claim({"N": 1}), b.claim({"N": 1}), b.claim({"N": 2})
        (True, False, True)
        >>> _ = a.put({"N": 1}, {"loss": 0.5})
        >>> a.claim({"N": 1}), b.claim({"N": 1})  # done: nobody runs it again
        (False, False)
        >>> a.close(); b.close()
        """
        key = config_key(config)
        now = time.time()
        host = socket.gethostname()
        with self._transaction() as conn:
            if _stored(conn, key):
                return False
            lease = conn.execute("SELECT owner, host, pid, expires FROM leases WHERE key = ?", (key,)).fetchone()
            if lease is not None and lease[0].decode() != self._owner and _lease_alive(lease, now, host):
                return False
            conn.execute(
                "INSERT OR REPLACE INTO leases (key, owner, host, pid, expires) VALUES (?, ?, ?, ?, ?)",
                (key, self._owner, host, os.getpid(), now + self.lease_seconds),
            )
        self._start_renewing()
        return True

    def release(self, config: Mapping[str, Any] | None = None) -> None:
        """End this process's claim on ``config`` (on every cell if None)."""
        if self._readonly:
            return
        with self._transaction() as conn:
            if config is None:
                conn.execute("DELETE FROM leases WHERE owner = ?", (self._owner,))
            else:
                conn.execute("DELETE FROM leases WHERE key = ? AND owner = ?", (config_key(config), self._owner))

    def claimed_elsewhere(self, configs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The configurations, not stored, that another live process holds a claim on."""
        now, host = time.time(), socket.gethostname()
        held = {
            key.decode()
            for key, owner, lhost, pid, expires in self._execute("SELECT key, owner, host, pid, expires FROM leases")
            if owner.decode() != self._owner and _lease_alive((owner, lhost, pid, expires), now, host)
        }
        return [cfg for cfg in self.missing(configs) if config_key(cfg) in held]

    def _start_renewing(self) -> None:
        if self._renewer is not None and self._renewer.is_alive():
            return
        self._stop_renewing.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name="idprops-store-leases", daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop_renewing.wait(self.lease_seconds / 3):
            try:
                self._execute(
                    "UPDATE leases SET expires = ? WHERE owner = ?", (time.time() + self.lease_seconds, self._owner)
                )
            except sqlite3.DatabaseError:
                pass  # busy for a while: the next round renews, well before expiry

    # -- export -------------------------------------------------------------------------
    def records(self, study: str | None = None) -> list[dict[str, Any]]:
        """Every stored cell (of ``study`` if given) as one flat dict, in order of writing.

        See the class Notes for the field names; damaged rows are left out, with a warning.
        """
        sql = "SELECT key, config, result, checksum, study, created FROM cells"
        rows = self._valid_rows(
            sql + (" WHERE study = ?" if study is not None else "") + " ORDER BY rowid",
            () if study is None else (study,),
        )
        return [
            {
                "key": key,
                "study": None if st is None else st.decode("utf-8", "replace"),
                "created": created.decode("utf-8", "replace"),
                **_flatten(cfg),
                **_flatten(res),
            }
            for key, cfg, res, st, created in rows
        ]

    def to_csv(self, path: str | os.PathLike, study: str | None = None) -> Path:
        """Write :meth:`records` to a CSV file and return its path (see :meth:`Results.to_csv`)."""
        return Results(self.records(study)).to_csv(path)

    def to_dataframe(self, study: str | None = None):
        """:meth:`records` as a pandas DataFrame (needs pandas)."""
        return Results(self.records(study)).to_frame()


def _stored(conn: sqlite3.Connection, key: str) -> bool:
    """Whether the cell of ``key`` has a row that passes its checks."""
    row = conn.execute("SELECT key, config, result, checksum FROM cells WHERE key = ?", (key,)).fetchone()
    try:
        return row is not None and bool(_decode_row(*row))
    except _Damaged:
        return False


def _lease_alive(lease: tuple, now: float, host: str) -> bool:
    owner, lease_host, pid, expires = lease
    if expires <= now:
        return False
    lease_host = lease_host.decode() if isinstance(lease_host, bytes) else lease_host
    return lease_host != host or _pid_alive(pid)


def _decode_row(key: bytes, cfg: bytes, res: bytes, checksum: bytes | None) -> tuple[dict, dict]:
    """A row's configuration and result, or :class:`_Damaged` saying what is wrong."""
    parsed = []
    for name, raw in (("configuration", cfg), ("result", res)):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Damaged(f"its {name} is not valid UTF-8 (byte {exc.start})") from None
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise _Damaged(f"its {name} is not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise _Damaged(f"its {name} is a JSON {type(value).__name__}, not an object")
        parsed.append(value)
    try:
        same_key = config_key(parsed[0]) == key.decode("utf-8", "replace")
    except (TypeError, ValueError):
        same_key = False
    if not same_key:
        raise _Damaged("its configuration no longer gives its key (it was edited after it was written)")
    if checksum is not None and checksum.decode("utf-8", "replace") != _checksum(key, cfg, res):
        raise _Damaged("its checksum does not match its configuration and result (edited or corrupted)")
    return parsed[0], parsed[1]


def _name_row(key: bytes, cfg: bytes) -> str:
    """A damaged row's cell: its description when the configuration still reads, and its key."""
    from .plan import describe_cell  # plan reads stores: imported here, not at the top

    name = key.decode("utf-8", "replace")[:12]
    try:
        return f"{name} {describe_cell(json.loads(cfg.decode('utf-8')))}"
    except (UnicodeDecodeError, ValueError, AttributeError, TypeError):
        return name
