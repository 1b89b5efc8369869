"""The shared base of studies: a grid of cells run through joblib into a results store.

A study's :meth:`~Study.run` computes a grid of *cells* (dataset x model x
training-set size x seed, say). Every cell is described by a JSON-like
configuration (:meth:`Study.cells`) that holds everything that changes its result, and
computed by :meth:`Study.run_cell`, a pure function of that configuration. Finished
cells go to a :class:`~idprops.studies.store.ResultsStore` one by one, as they arrive, so a
study that is killed and run again computes only the cells still missing.

Cells run through ``joblib.Parallel(n_jobs=...)`` with no backend named: the default
runs them in local processes (loky), and a user's
``joblib.parallel_config(backend="dask")`` sends them to a dask.distributed cluster
(whose size then sets the parallelism, whatever ``n_jobs`` says).

A study file is TOML whose top-level keys are the study's constructor parameters,
plus ``kind`` naming the study (a name of the ``idprops.studies`` entry points) and
optionally ``store``; :func:`read_study_file` reads one, :meth:`Study.from_toml` too
when the class is known, and :func:`find_preset` finds the ones shipped in
``idprops/studies/presets/``.
"""

from __future__ import annotations

import importlib
import importlib.resources
import inspect
import numbers
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from sklearn.base import BaseEstimator

from ..jsonable import jsonable
from .plan import Plan, make_plan
from .results import Results
from .runner import CellError, StudyInterrupted, run_cells
from .store import ResultsStore, cell_config, config_key

if sys.version_info >= (3, 11):
    import tomllib
else:  # setup.cfg requires tomli there
    import tomli as tomllib

__all__ = [
    "CellError",
    "StudyInterrupted",
    "Study",
    "available_presets",
    "find_preset",
    "load_study_file",
    "parse_overrides",
    "RUN_OPTIONS",
    "read_study_file",
]


class Study(BaseEstimator):
    """Base class of studies: :meth:`run` computes the missing cells into a results store.

    Subclasses set the class attribute :attr:`kind`, list their cells in
    :meth:`cells`, compute one in :meth:`run_cell` (a staticmethod, or a module-level
    function assigned to it, so that joblib's processes and dask can ship it), and
    write their figures in :meth:`report`. Their ``__init__`` stores the study's
    parameters only: how a run is carried out (the store, the number of jobs, the
    progress bar) changes no cell, so it is given to :meth:`run`.

    A study is not an estimator: it reads its own data, named in its parameters, so
    it has no ``fit(X)``. It derives from scikit-learn's ``BaseEstimator`` for what
    that gives any parameterised object, ``get_params``/``set_params``, ``clone`` and
    the repr, which work from the constructor's signature exactly as for an estimator;
    writing them again here would be a copy of scikit-learn's.

    Examples
    --------
    A study whose cells square numbers; a second run with a larger grid and the same
    store computes only the new cell.

    >>> class SquareStudy(Study):
    ...     kind = "square"
    ...     def __init__(self, values=(1, 2, 3)):
    ...         self.values = values
    ...     def cells(self):
    ...         return [self._cell(x=x) for x in self.values]
    ...     @staticmethod
    ...     def run_cell(config):
    ...         return {"square": config["x"] ** 2}
    >>> import os, tempfile
    >>> store = os.path.join(tempfile.mkdtemp(), "results.sqlite")
    >>> results = SquareStudy().run(store)
    >>> [r["square"] for r in results], results.n_run
    ([1, 4, 9], 3)
    >>> SquareStudy(values=(1, 2, 3, 4)).run(store).n_run
    1
    """

    #: The study's name in study files, the CLI and the store's ``study`` column.
    kind: ClassVar[str] = ""

    #: A rough run time of one cell, in seconds, for :meth:`plan` when the store has
    #: timed none of this study's cells: that of a cell of the study's digits preset on
    #: one CPU core (None: no estimate until one is timed).
    rough_cell_seconds: ClassVar[float | None] = None

    # ------------------------------------------------------------------ to override

    def cells(self) -> list[dict[str, Any]]:
        """The configuration of every cell, in a fixed order (JSON-like dicts)."""
        raise NotImplementedError(f"{type(self).__name__} must define cells()")

    @staticmethod
    def run_cell(config: dict[str, Any]) -> dict[str, Any]:
        """Compute one cell from its configuration alone; return JSON-like results."""
        raise NotImplementedError("a Study subclass must define run_cell(config)")

    def report(self, results: Sequence[Mapping[str, Any]], outdir: str | os.PathLike) -> Path:
        """Write the report of ``results`` (what :meth:`run` returned) into ``outdir``;
        return the Markdown file's path.

        The base class writes the results table only; subclasses add fits and figures.
        """
        from .reporting import run_summary, write_study_report

        return write_study_report(
            outdir,
            results,
            title=f"{self.kind} study",
            summary=[run_summary(results, getattr(results, "n_run", None))],
        )

    # ------------------------------------------------------------------ helpers for subclasses

    def _cell(self, **parts: Any) -> dict[str, Any]:
        """A cell configuration: ``pipeline`` (the kind), the code's version, ``parts``,
        as plain JSON types."""
        return jsonable(cell_config(pipeline=self.kind, **parts), where="cell")

    # ------------------------------------------------------------------ running

    def fetch_data(self) -> None:
        """Fetch the data the cells will read, where the study allows it; :meth:`run`
        calls it once, before the grid is built (a grid may read the data to check it).
        Nothing by default."""

    def check_data(self) -> None:
        """Check what the cells will read (their data, the layers they measure), once,
        before the first cell runs: :meth:`run` calls it when some cells are missing,
        so that a study fails at once rather than in a cell. Nothing by default."""

    def _grid(self) -> list[dict[str, Any]]:
        if not self.kind:
            raise ValueError(f"{type(self).__name__} has no kind: set the class attribute")
        cells = self.cells()
        if not cells:
            raise ValueError(f"{type(self).__name__} has no cells: check its grid parameters")
        return cells

    def run(
        self,
        store: str | os.PathLike | None = None,
        *,
        n_jobs: int = 1,
        progress: bool | None = None,
        study_file: str | None = None,
    ) -> Results:
        """Run the cells that ``store`` does not hold yet, then gather every cell's record.

        Parameters
        ----------
        store : str or path-like, optional
            SQLite results store. Cells already in it are not run again (resume); None
            uses a temporary store, deleted when the run ends.
        n_jobs : int, default=1
            Cells run at once, through joblib (``-1``: one per core). Under
            ``joblib.parallel_config(backend="dask")`` the cluster's size decides.
        progress : bool, optional
            None: a bar over the cells on a terminal, else one line per finished cell
            (and a line every minute from a long cell) on standard error; False: nothing.
        study_file : str, optional
            The study file the parameters came from, recorded in every row written
            (:func:`read_study_file` gives it).

        Returns
        -------
        Results
            One flat record per distinct cell, in :meth:`cells` order: ``key``,
            ``study``, ``created``, the configuration's fields, then the result's
            (nested names dotted, as :meth:`~idprops.studies.store.ResultsStore.records`
            gives them), among them ``seconds`` (the cell's run time) and
            ``study_file``. ``n_run`` says how many cells this run computed and
            ``store_path`` where they are; ``to_frame()`` makes a DataFrame of them.
        """
        if not isinstance(n_jobs, numbers.Integral) or isinstance(n_jobs, bool) or n_jobs == 0:
            raise ValueError(f"n_jobs must be a non-zero int (-1: all cores), got {n_jobs!r}")
        n_jobs = int(n_jobs)
        if progress not in (None, True, False):
            raise ValueError(f"progress must be True, False or None, got {progress!r}")
        self.fetch_data()
        cells = self._grid()
        with tempfile.TemporaryDirectory(prefix="idprops-study-") as tmp:
            path = Path(store).expanduser() if store is not None else Path(tmp) / "results.sqlite"
            with ResultsStore(path) as opened:
                if opened.missing(cells):
                    self.check_data()
                n_run = run_cells(
                    opened,
                    cells,
                    type(self).run_cell,
                    kind=self.kind,
                    n_jobs=n_jobs,
                    progress=progress,
                    study_file=study_file,
                    temporary=store is None,
                )
                by_key = {rec["key"]: rec for rec in opened.records()}
        # A cell listed twice (seeds = [0, 0]) is one result, counted once.
        keys = dict.fromkeys(config_key(cfg) for cfg in cells)
        return Results([by_key[key] for key in keys], n_run=n_run, store_path=None if store is None else path)

    def plan(self, store: str | os.PathLike | None = None, *, n_jobs: int = 1) -> Plan:
        """What :meth:`run` with ``store`` would do, without running anything.

        Returns a :class:`~idprops.studies.plan.Plan`: every cell, whether the store
        holds it, and the time the others should take, from the cells of this study
        already timed in the store, else :attr:`rough_cell_seconds` (labelled as a
        rough figure). Printing it lists the cells (``idprops study run FILE --dry-run``).
        """
        return make_plan(self.kind, self._grid(), store, rough_seconds=self.rough_cell_seconds, n_jobs=n_jobs)

    # ------------------------------------------------------------------ study files

    @classmethod
    def from_toml(
        cls, path: str | os.PathLike, overrides: Mapping[str, Any] | None = None, *, allow_imports: bool = False
    ) -> Study:
        """Build a study from a TOML study file, with dotted-key overrides.

        Parameters
        ----------
        path : str or path-like
            The study file: top-level keys are constructor parameters, tables are
            dict-valued parameters; an optional ``kind`` must match the class's, and
            an optional ``store`` (the results store of the CLI's runs) is left to
            :func:`read_study_file`.
        overrides : mapping of str to value, optional
            ``{"training.epochs": 1, "sizes": [50, 100]}``: each dotted key sets
            that entry of the file's nested tables (created when missing). Values
            are used as given; :func:`parse_overrides` turns ``"key=value"``
            strings into such a mapping.
        allow_imports : bool, default=False
            Let the file name Python objects as ``"package.module:object"`` (e.g. an
            attack class), which imports that module and so RUNS ITS CODE; by
            default names resolve only through the registry (built-ins and the
            entry points of installed plugins). See :func:`load_study_file`.

        Returns
        -------
        Study
        """
        params = load_study_file(path, overrides, allow_imports=allow_imports)
        _run_options(params)
        return cls._from_params(params, path)

    @classmethod
    def _from_params(cls, params: dict[str, Any], path: str | os.PathLike) -> Study:
        kind = params.pop("kind", cls.kind)
        if kind != cls.kind:
            raise ValueError(f"{os.fspath(path)} is a {kind!r} study file, not a {cls.kind!r} one")
        allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ValueError(
                f"{os.fspath(path)}: unknown parameter(s) {unknown} for {cls.__name__}; "
                f"valid ones are {sorted(allowed)}"
            )
        return cls(**params)


# "package.module:object" (spaces around the colon too: import_object would not mind).
_IMPORT_FORM = re.compile(r"^\s*[A-Za-z_][\w.]*\s*:\s*[A-Za-z_][\w.]*\s*$")

#: Study-file keys that set how :meth:`Study.run` runs, not what the study is.
RUN_OPTIONS = ("store", "n_jobs", "progress")


def _run_options(params: dict[str, Any]) -> dict[str, Any]:
    """Remove :data:`RUN_OPTIONS` from a study file's ``params``; return them."""
    options = {key: params.pop(key) for key in RUN_OPTIONS if key in params}
    if options.get("store") is not None:
        options["store"] = os.fspath(options["store"])
    return options


def read_study_file(
    path: str | os.PathLike,
    overrides: Mapping[str, Any] | None = None,
    *,
    kind: str | None = None,
    allow_imports: bool = False,
) -> tuple[Study, dict[str, Any]]:
    """The study that a study file describes, found by its ``kind``, and how to run it.

    Parameters
    ----------
    path : str or path-like
        The study file (see :meth:`Study.from_toml`); its ``kind`` names a study of
        :func:`idprops.registry.available_studies`, a plugin's included.
    overrides : mapping of str to value, optional
        Dotted-key overrides, as :meth:`Study.from_toml` takes them.
    kind : str, optional
        The study expected: the file's ``kind``, if it has one, must be this.
    allow_imports : bool, default=False
        Let the file import Python code (``"package.module:object"`` names); see
        :func:`load_study_file`.

    Returns
    -------
    study : Study
    run_options : dict
        Keyword arguments of :meth:`Study.run`: the file's ``store``, ``n_jobs`` and
        ``progress`` where it sets them, and ``study_file``, the file's path. A
        relative ``store`` written in the file is taken from the file's folder, so
        that the same file resumes the same store whatever folder it is run from;
        one given in ``overrides`` (``--set store=...``) from the working directory.

    Examples
    --------
    >>> study, options = read_study_file(find_preset("digits"), {"store": "digits.sqlite"})
    >>> type(study).__name__, options["store"], options["n_jobs"]
    ('ScalingLawStudy', 'digits.sqlite', -1)
    """
    from ..registry import available_studies, get_study

    params = load_study_file(path, overrides, allow_imports=allow_imports)
    options = _run_options(params)
    if options.get("store") is not None and "store" not in (overrides or {}):
        # The file's own store goes beside it, so that a run resumes from any folder;
        # an override is typed at the command line, so it is the working directory's.
        options["store"] = os.fspath(Path(path).parent / Path(options["store"]).expanduser())
    kind = kind or params.get("kind")
    if kind is None:
        raise ValueError(
            f'{os.fspath(path)} names no study: add a top-level line such as kind = "scaling-law" '
            f"(one of {', '.join(available_studies())})"
        )
    study = get_study(kind)._from_params(params, path)
    return study, {**options, "study_file": str(Path(path).resolve())}


def _set_dotted(table: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    if not all(parts):
        raise ValueError(f"override key {dotted!r} has an empty part; write e.g. training.epochs")
    node: Any = table
    for i, part in enumerate(parts):
        where = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        if isinstance(node, list):
            # datasets.0.root: a number picks an entry of an array of tables.
            if not (part.isdigit() and int(part) < len(node)):
                raise ValueError(
                    f"cannot set {dotted!r}: {where!r} is not one of the {len(node)} entries (0 to {len(node) - 1})"
                )
            key: Any = int(part)
        elif isinstance(node, dict):
            key = part
            if not last:
                node.setdefault(key, {})
        else:
            raise ValueError(f"cannot set {dotted!r}: {'.'.join(parts[:i])!r} is {node!r}, not a table")
        if last:
            node[key] = value
        else:
            node = node[key]


def _import_names(node: Any, where: str = "") -> list[tuple[str, str]]:
    """(dotted place, text) of every key and string in ``node`` of the form ``module:object``."""
    found = []
    if isinstance(node, Mapping):
        for key, value in node.items():
            here = f"{where}.{key}" if where else str(key)
            if _IMPORT_FORM.match(str(key)):
                found.append((here, str(key)))
            found.extend(_import_names(value, here))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_import_names(value, f"{where}.{i}"))
    elif isinstance(node, str) and _IMPORT_FORM.match(node):
        found.append((where, node))
    return found


def load_study_file(
    path: str | os.PathLike, overrides: Mapping[str, Any] | None = None, *, allow_imports: bool = False
) -> dict[str, Any]:
    """The parameters in a TOML study file, with dotted-key overrides applied.

    A study file names what it uses (attacks, estimators, models, datasets, the study)
    through the registry: idprops' built-ins and the entry points of installed
    plugins. A name of the form ``"package.module:object"`` would import that module,
    which runs its code (``"subprocess:call"`` runs any command), so a file (or an
    override) holding one, anywhere, is refused unless ``allow_imports=True``
    (``--allow-imports`` on the command line): allow it only for files you trust as
    you trust your own code.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "s.toml")
    >>> _ = open(path, "w").write('sizes = [50, 100]\\n[training]\\nepochs = 5\\n')
    >>> load_study_file(path, {"training.epochs": 1, "training.lr": 0.01, "sizes.1": 80})
    {'sizes': [50, 80], 'training': {'epochs': 1, 'lr': 0.01}}
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study file {os.fspath(path)!r} does not exist")
    try:
        params = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{os.fspath(path)} is not valid TOML: {exc}") from exc
    if not params:
        # An empty file (or one of comments only) would run the defaults, a study nobody wrote.
        raise ValueError(
            f"study file {os.fspath(path)} is empty: give at least its kind and grid, e.g. "
            f'kind = "scaling-law" and sizes = [50, 100], or start from a shipped preset ({available_presets()})'
        )
    for dotted, value in (overrides or {}).items():
        _set_dotted(params, dotted, value)
    imports = [] if allow_imports else _import_names(params)
    if imports:
        places = "; ".join(f"{where} = {text!r}" for where, text in imports)
        raise ValueError(
            f"{os.fspath(path)}: {places}: a 'package.module:object' name imports Python code, "
            "which a study file may not do by default; name a registered attack, estimator, "
            "model or dataset instead (a plugin registers its own through entry points), or, "
            "if you trust this file as your own code, pass --allow-imports (allow_imports=True "
            "in Python)."
        )
    return params


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["training.epochs=1", "sizes=[50, 100]"]`` as ``{"training.epochs": 1, ...}``.

    Each value is read as a TOML value (numbers, booleans, quoted strings, arrays,
    inline tables); anything else is kept as a bare string, so ``data=digits`` works,
    except a value that starts as an array, a table or a quoted string: that is a
    TOML syntax error (``sizes=[50,100`` lacks its ``]``).

    Examples
    --------
    >>> parse_overrides(["training.epochs=1", "sizes=[50, 100]", "device=cpu"])
    {'training.epochs': 1, 'sizes': [50, 100], 'device': 'cpu'}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {item!r} is not key=value, e.g. training.epochs=1")
        text = text.strip()
        try:
            out[key] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError as exc:
            if text.startswith(("[", "{", '"', "'")):
                raise ValueError(
                    f"override {item!r}: TOML syntax error in {text!r} ({exc}); close "
                    "arrays and tables and quote strings, e.g. sizes=[50, 100]"
                ) from None
            out[key] = text
    return out


def _presets_dir():
    return importlib.resources.files("idprops.studies") / "presets"


def available_presets() -> list[str]:
    """Names of the study files shipped in ``idprops/studies/presets/``.

    Examples
    --------
    >>> "digits" in available_presets()
    True
    """
    folder = _presets_dir()
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def find_preset(name: str) -> Path:
    """The path of the shipped study file ``idprops/studies/presets/<name>.toml``.

    Examples
    --------
    >>> find_preset("digits").name
    'digits.toml'
    """
    entry = _presets_dir() / f"{name}.toml"
    if not entry.is_file():
        raise ValueError(f"no preset named {name!r}; the shipped presets are {available_presets()}")
    return Path(os.fspath(entry))


def import_object(spec: str) -> Any:
    """The object named ``"package.module:attribute"``."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{spec!r} is not of the form 'package.module:attribute'")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
