"""Cost of one finished cell's write to the results store, by journal mode.

The store keeps every finished cell in the ``.sqlite`` file itself (issue 23, item 3):
a rollback journal (``journal_mode=DELETE``) with ``synchronous=FULL``. This measures a
:meth:`ResultsStore.put` of a cell of realistic size (a configuration and a result of
about 2 KB of JSON) against the two ways of doing the same job with a write-ahead log:
WAL as before (the row lives in the ``-wal`` file until a later checkpoint) and WAL
with a checkpoint after each write.

    python benchmarks/bench_store.py [--cells 200] [--folder /tmp]

Prints the median and 90th percentile per write in milliseconds; the folder decides
the disk measured (its file system's fsync is most of the cost).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from idprops.studies.store import ResultsStore


def _cell(i: int) -> tuple[dict, dict]:
    config = {"data": {"name": "digits", "classes": list(range(10))}, "N": 100 + i, "seed": i, "lr": 1e-3}
    result = {"test_loss": 0.1 * i, "d_repr": {f"layer{j}": 3.5 + j for j in range(40)}, "notes": "x" * 800}
    return config, result


def _time_puts(store: ResultsStore, cells: int, after_put=None) -> list[float]:
    times = []
    for i in range(cells):
        config, result = _cell(i)
        start = time.perf_counter()
        store.put(config, result)
        if after_put is not None:
            after_put(store)
        times.append(time.perf_counter() - start)
    return times


def _wal(store: ResultsStore) -> None:
    store._execute("PRAGMA journal_mode=WAL")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--folder", default=None, help="where the stores are written (default: the temp folder)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        modes = {
            "DELETE (the store's mode)": (None, None),
            "WAL, no checkpoint (before)": (_wal, None),
            "WAL + checkpoint per write": (_wal, lambda s: s._execute("PRAGMA wal_checkpoint(TRUNCATE)")),
        }
        for name, (setup, after) in modes.items():
            store = ResultsStore(Path(tmp) / f"{len(rows)}.sqlite")
            len(store)
            if setup is not None:
                setup(store)
            times = sorted(_time_puts(store, args.cells, after))
            store.close()
            rows.append((name, statistics.median(times) * 1e3, times[int(0.9 * len(times))] * 1e3))
    print(
        f"{'journal':32s} {'median ms':>10s} {'p90 ms':>8s}   ({args.cells} writes, folder {args.folder or tempfile.gettempdir()})"
    )
    for name, median, p90 in rows:
        print(f"{name:32s} {median:10.2f} {p90:8.2f}")


if __name__ == "__main__":
    main()
