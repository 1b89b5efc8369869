"""What a run of a study would do: its cells, those already stored, and the time left."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .store import ResultsStore, config_key, dotted_items

__all__ = ["Plan", "describe_cell", "make_plan"]

# A cell's description stops adding fields past this many characters. Grids put what
# tells their cells apart (data, model, size, seed) before the settings they share.
_DESCRIBE_CHARS = 300


def describe_cell(config: Mapping[str, Any]) -> str:
    """One line naming a cell: its fields with nested names dotted (``data.name=digits``),
    in the configuration's order, without the code version and the study's kind (the
    same in every cell) and empty values, cut after about :data:`_DESCRIBE_CHARS` characters.

    Examples
    --------
    >>> describe_cell({"code_version": "0.1", "data": {"name": "digits", "classes": [0, 1],
    ...            "root": None}, "model": {"name": "small_cnn", "params": {}}, "seed": 0})
    '{data.name=digits, data.classes=[0, 1], model.name=small_cnn, seed=0}'
    """
    parts, length = [], 0
    for key, value in dotted_items(config):
        if key in ("code_version", "pipeline") or value is None or (isinstance(value, list) and not value):
            continue
        # default=str: a description must never replace the cell's own error.
        text = f"{key}={json.dumps(value, default=str) if isinstance(value, list) else value}"
        if parts and length + len(text) > _DESCRIBE_CHARS:
            parts.append("...")
            break
        parts.append(text)
        length += len(text) + 2
    return "{" + ", ".join(parts) + "}"


@dataclass(frozen=True)
class Plan:
    """The cells of a study against a store, with an estimate of the time the rest takes.

    Attributes
    ----------
    kind : str
        The study's kind.
    cells : list of dict
        Each distinct cell's configuration, in the grid's order.
    done : list of bool
        Whether the store holds each cell.
    estimate_seconds : float or None
        Cell time left (summed over cells, as one worker would spend it); None when
        nothing is timed and the study gives no rough figure.
    basis : str
        Where the estimate comes from, said in the printed plan.
    n_jobs : int
        Workers the wall time is divided among.

    Examples
    --------
    >>> plan = Plan("squares", [{"x": 1}, {"x": 2}], [True, False], 2.0, "measured", 1)
    >>> plan.n_done, plan.n_todo
    (1, 1)
    """

    kind: str
    cells: list[dict[str, Any]]
    done: list[bool]
    estimate_seconds: float | None
    basis: str
    n_jobs: int = 1

    @property
    def n_done(self) -> int:
        return sum(self.done)

    @property
    def n_todo(self) -> int:
        return len(self.cells) - self.n_done

    def __str__(self) -> str:
        lines = [f"{self.kind} study: {len(self.cells)} cell(s)"]
        lines += [f"  [{'done' if d else 'todo'}] {describe_cell(c)}" for c, d in zip(self.cells, self.done)]
        lines.append(f"{self.n_done} of {len(self.cells)} cell(s) already in the store, {self.n_todo} to run.")
        if self.n_todo == 0:
            lines.append("time left: none, every cell is stored (the report is written from the store)")
        elif self.estimate_seconds is None:
            lines.append(f"time left: unknown ({self.basis})")
        else:
            workers = max(1, min(self.n_jobs, self.n_todo))
            lines.append(
                f"time left: {_duration(self.estimate_seconds)} of cell time"
                + (f", about {_duration(self.estimate_seconds / workers)} on {workers} workers" if workers > 1 else "")
                + f" ({self.basis})"
            )
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def make_plan(
    kind: str,
    cells: Sequence[Mapping[str, Any]],
    store: str | os.PathLike | None,
    *,
    rough_seconds: float | None = None,
    n_jobs: int = 1,
) -> Plan:
    """The :class:`Plan` of ``cells`` against ``store`` (read only: a missing store is not created).

    The time left is the cells still to run times the mean run time of the cells of
    the same ``kind`` already timed in the store (each stored cell keeps its
    ``seconds``), preferring those of this grid. When none is timed, ``rough_seconds``
    per cell, labelled as a rough figure, or no estimate.

    Examples
    --------
    >>> print(make_plan("squares", [{"x": 1}, {"x": 2}], None, rough_seconds=30))
    squares study: 2 cell(s)
      [todo] {x=1}
      [todo] {x=2}
    0 of 2 cell(s) already in the store, 2 to run.
    time left: 60 s of cell time (rough figure: no cell of this study is timed in the store; 30 s per cell assumed, as for a cell of its digits preset on one CPU core (larger data or models and more epochs take longer: run one cell to calibrate))
    """
    unique = list({config_key(c): dict(c) for c in cells}.items())
    timed: dict[str, float] = {}
    if store is not None and Path(store).expanduser().is_file():
        with ResultsStore(store) as opened:
            for rec in opened.records(study=kind):
                if isinstance(rec.get("seconds"), (int, float)) and math.isfinite(rec["seconds"]):
                    timed[rec["key"]] = float(rec["seconds"])
            stored = {rec["key"] for rec in opened.records()}
    else:
        stored = set()
    done = [key in stored for key, _ in unique]
    n_todo = len(unique) - sum(done)
    in_grid = [timed[key] for key, _ in unique if key in timed]
    if in_grid:
        per_cell, basis = (
            sum(in_grid) / len(in_grid),
            f"mean of the {len(in_grid)} cell(s) of this grid timed in the store",
        )
    elif timed:
        per_cell = sum(timed.values()) / len(timed)
        basis = f"mean of {len(timed)} other {kind} cell(s) timed in the store"
    elif rough_seconds is not None:
        per_cell = rough_seconds
        basis = (
            f"rough figure: no cell of this study is timed in the store; {_duration(rough_seconds)} per cell "
            "assumed, as for a cell of its digits preset on one CPU core (larger data or models and more "
            "epochs take longer: run one cell to calibrate)"
        )
    else:
        per_cell, basis = None, "no cell of this study is timed in the store; run one to calibrate"
    estimate = None if per_cell is None else per_cell * n_todo
    return Plan(kind, [c for _, c in unique], done, estimate, basis, n_jobs)
