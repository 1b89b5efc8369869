"""The records of a study run: a list of flat dicts that becomes a table in one call."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["Results"]


class Results(list):
    """One flat record (a dict) per cell, as :meth:`ResultsStore.records` gives them.

    A list, so that records are indexed, sliced and iterated as usual, with the run's
    facts as attributes and two exports.

    Parameters
    ----------
    records : iterable of dict
    n_run : int, optional
        Cells computed by the run that returned these (the others came from the store).
    store_path : pathlib.Path, optional
        The store they are in; None when it was temporary.

    Examples
    --------
    >>> res = Results([{"N": 50, "loss": 0.5}, {"N": 100, "loss": 0.3, "note": "x"}], n_run=2)
    >>> res.to_frame().shape, res.n_run
    ((2, 3), 2)
    """

    def __init__(self, records=(), *, n_run: int | None = None, store_path: Path | None = None) -> None:
        super().__init__(records)
        self.n_run = n_run
        self.store_path = store_path

    def columns(self) -> list[str]:
        """Every field, in order of first appearance."""
        return list(dict.fromkeys(name for rec in self for name in rec))

    def to_frame(self):
        """The records as a pandas DataFrame, one row per cell (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(
                "Results.to_frame needs pandas: pip install pandas (or use the records, or to_csv, which do not)"
            ) from exc
        return pd.DataFrame.from_records(list(self), columns=self.columns() or ["key", "study", "created"])

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the records to a CSV file and return its path.

        Columns are every field in order of first appearance; a record without a field
        leaves it empty, as does None; lists are written as JSON.
        """
        columns = self.columns()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            for rec in self:
                writer.writerow([_csv_cell(rec.get(name)) for name in columns])
        return path


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return json.dumps(value)
    return value
