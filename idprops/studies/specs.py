"""Study-file entries turned into validated specs: data, models, training, measurements, attacks, grid.

A study's constructor stores what it is given (names, tables, objects); its grid turns
those into specs here, where every check runs before any cell does: a misspelt
estimator, a model that takes no such argument, an attack whose clipping range misses
the pixels or a float where a seed belongs fails when the grid is built, naming the
entry, and never after a model has trained.

Each spec's :meth:`config` is the JSON part it adds to a cell's configuration, which
the results store hashes into the cell's key: so a spec's fields and their order are
part of the store's format.

A step that names one object (an estimator, an attack, a model, a corruption) is a
:class:`StepSpec`, ``name`` plus ``params``. Steps that come several at a time take a
mapping *label -> spec*, a spec being a table of the step's parameters with an optional
``name`` (the label by default), or an object: ``{"mle": {"k": 20}, "mle10": {"name":
"mle", "k": 10}}``, or ``{"mle20": MLEDimension(k=20)}``; a sequence of names or
objects is read as ``{name: ...}``. In a study file::

    [estimators.mle]
    k = 20
    [estimators.twonn]
    [attacks.fgsm]
    eps = 0.00784313725490196   # 2/255
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .store import config_key
from .study import import_object

__all__ = [
    "DEFAULT_LAYERS",
    "DataSpec",
    "Representation",
    "StepSpec",
    "Tracking",
    "build_attack",
    "check_step",
    "check_training",
    "configs",
    "default_attacks",
    "integers",
    "object_step",
    "parse_datasets",
    "parse_estimator",
    "parse_estimators",
    "parse_model",
    "parse_models",
    "parse_sharpness",
    "parse_steps",
    "resolve_attacks",
    "resolve_training",
    "selection_label",
    "single_setting",
]

_DATASET_KEYS = ("name", "classes", "pairs", "root", "test_root", "scale", "n_test", "group", "download")

# Trainer arguments that a cell sets itself or that do not change its result.
_TRAINING_EXCLUDED = {
    "model",
    "callbacks",
    "checkpoint_dir",
    "checkpoint_every",
    "resume",
    "progress",
    "device",
    "seed",
}

#: Layers tracked by default per model, input side first; the last is the LLID layer.
DEFAULT_LAYERS = {
    "small_cnn": ["features.relu1", "features.relu2", "features.pool", "relu"],
    "mlp1x512": ["fc1", "relu1"],
    "mlp3x512": ["relu1", "relu2", "relu3"],
    "cifar_resnet18": ["stem", "layer1", "layer2", "layer3", "layer4", "avgpool"],
}


# --------------------------------------------------------------------------- grid


def integers(values: Any, what: str, allow_none: bool = False, minimum: int | None = None) -> list:
    """One value or a sequence of them as a non-empty list of Python ints, each at least ``minimum``.

    Seeds, sizes and pixel shifts are counts: ``int(1.5)`` would quietly run another
    cell than the one asked for, so anything but an integer is an error; one below
    ``minimum`` (a size of 0, a negative seed, which numpy refuses) fails here, when
    the grid is built, rather than in every cell.

    Examples
    --------
    >>> integers(3, "seeds"), integers([50, None], "sizes", allow_none=True)
    ([3], [50, None])
    >>> integers([1.5], "seeds")
    Traceback (most recent call last):
    ...
    ValueError: seeds: 1.5 is not an integer
    >>> integers([50, 0], "sizes", minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: sizes: 0 is below 1
    """
    values = [values] if np.ndim(values) == 0 else list(values)
    if not values:
        raise ValueError(f"{what} is empty")
    for v in values:
        if not ((v is None and allow_none) or (isinstance(v, (int, np.integer)) and not isinstance(v, bool))):
            raise ValueError(f"{what}: {v!r} is not an integer")
        if v is not None and not -(2**63) <= v < 2**63:
            # torch's and numpy's seeds, and any count, fit in 64 bits
            raise ValueError(f"{what}: {v} is out of range; use an integer of at most 63 bits (below 2**63)")
        if v is not None and minimum is not None and v < minimum:
            raise ValueError(f"{what}: {v} is below {minimum}")
    return [None if v is None else int(v) for v in values]


def parse_device(device: Any) -> str:
    """A study's torch device, checked when the grid is built: ``"auto"`` (the GPU when
    there is one, else the CPU) or a name ``torch.device`` reads.

    Examples
    --------
    >>> parse_device("auto"), parse_device("cuda:1")
    ('auto', 'cuda:1')
    >>> parse_device("gpu0")
    Traceback (most recent call last):
    ...
    ValueError: device: 'gpu0' is not a torch device; use 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'
    """
    if device == "auto":
        return device
    import torch

    try:
        torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"device: {device!r} is not a torch device; use 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'"
        ) from None
    return str(device)


# --------------------------------------------------------------------------- data


def selection_label(classes: Sequence[int | str] | None) -> str:
    """``"3v8"`` for classes [3, 8], ``"all"`` for None.

    Examples
    --------
    >>> selection_label([3, 8]), selection_label(None)
    ('3v8', 'all')
    """
    return "all" if classes is None else "v".join(str(c) for c in classes)


@dataclass(frozen=True)
class DataSpec:
    """One dataset and class selection: where its images come from and how they are served.

    Build them with :func:`parse_datasets`, which checks the entries.

    Parameters
    ----------
    name : str
        A registered dataset name, ``"folder"``, or an image folder's path.
    classes : list of int or str, optional
        Labels (or class folder names) kept; None keeps all.
    root : str, optional
        The local folder of a torchvision dataset or of an image folder.
    test_root : str, optional
        Where the test images are when they are not the dataset's own test split.
    scale : str, default="unit"
        Pixel scale, ``"unit"`` or ``"paper"`` (:data:`idprops.data.transforms.SCALES`).
    n_test : int, optional
        Test images (all by default).
    group : str, optional
        The report's label (a domain such as ``"medical"``); the name by default. Not
        part of a cell's configuration: it changes no result.
    download : bool, default=False
        Let torchvision fetch missing files into ``root`` before the first cell
        (:func:`~idprops.studies.steps.download_data`). Not part of a cell's
        configuration either: a permission changes no result.

    Examples
    --------
    >>> spec = DataSpec("digits", [3, 8], group="natural")
    >>> spec.label, spec.config(100)["n"], "group" in spec.config()
    ('digits 3v8', 100, False)
    """

    name: str
    classes: list[int | str] | None = None
    root: str | None = None
    test_root: str | None = None
    scale: str = "unit"
    n_test: int | None = None
    group: str | None = None
    download: bool = False

    def config(self, n: int | None = None) -> dict[str, Any]:
        """The cell's ``data`` table: every field but ``group`` and ``download``, then ``n``
        (training images).

        Examples
        --------
        >>> DataSpec("digits", [0, 1]).config(50)
        {'name': 'digits', 'classes': [0, 1], 'root': None, 'test_root': None, 'scale': 'unit', 'n_test': None, 'n': 50}
        """
        return {
            "name": self.name,
            "classes": None if self.classes is None else list(self.classes),
            "root": self.root,
            "test_root": self.test_root,
            "scale": self.scale,
            "n_test": self.n_test,
            "n": n,
        }

    @property
    def key(self) -> str:
        """What tells dataset entries apart (every field of :meth:`config` but ``n``), as a hash.

        The name and classes alone are not enough: every ``name = "folder"`` entry has
        the same name, and only its ``root`` says which images it holds. Hashed as cells
        are, so that 750 and 750.0 (resumed with another spelling) agree.
        """
        config = self.config()
        del config["n"]
        return config_key(config)

    @classmethod
    def from_record(cls, row: Mapping[str, Any]) -> DataSpec:
        """The entry of a result record's ``data.*`` fields (without its group)."""
        return cls(**{f: row.get(f"data.{f}") for f in ("name", "classes", "root", "test_root", "scale", "n_test")})

    @property
    def label(self) -> str:
        """``"digits 3v8"``: the name (an image folder's root) and the class selection."""
        name = self.root if self.name == "folder" else self.name
        return f"{name} {selection_label(self.classes)}"


def parse_datasets(entries: Any) -> list[DataSpec]:
    """One :class:`DataSpec` per (dataset, class selection) of study-file entries.

    ``entries`` is a name, a :class:`DataSpec`, or a sequence of them and of mappings
    with ``name`` and optionally ``classes`` (one selection of labels, or of class
    folder names for an image folder) or ``pairs`` (several), ``root``, ``test_root``,
    ``scale``, ``n_test``, ``group`` and ``download`` (see :class:`DataSpec`).

    Examples
    --------
    >>> [(d.name, d.classes) for d in parse_datasets([{"name": "digits", "pairs": [[0, 1], [3, 8]]}])]
    [('digits', [0, 1]), ('digits', [3, 8])]
    """
    if isinstance(entries, (str, Mapping, DataSpec)):
        entries = [entries]
    out = []
    for spec in entries:
        if isinstance(spec, DataSpec):
            out.append(spec)
            continue
        spec = {"name": spec} if isinstance(spec, str) else dict(spec)
        unknown = set(spec) - set(_DATASET_KEYS)
        if unknown or "name" not in spec:
            raise ValueError(
                f"dataset spec {spec!r}: needs 'name' and may have "
                f"{sorted(set(_DATASET_KEYS) - {'name'})}" + (f"; unknown {sorted(unknown)}" if unknown else "")
            )
        if "classes" in spec and "pairs" in spec:
            raise ValueError(f"dataset spec {spec!r}: give 'classes' or 'pairs', not both")
        if spec.get("pairs") == []:  # not "all classes", which is leaving pairs out
            raise ValueError(f"dataset {spec['name']!r}: pairs is empty; list class pairs or leave it out")
        if not isinstance(spec.get("download", False), bool):
            raise ValueError(f"dataset {spec['name']!r}: download is true or false, got {spec['download']!r}")
        if spec.get("n_test") is not None:
            (spec["n_test"],) = integers([spec["n_test"]], f"dataset {spec['name']!r}: n_test", minimum=1)
        if isinstance(spec.get("scale"), str):
            from ..data.transforms import get_scale

            try:
                get_scale(spec["scale"])
            except ValueError as exc:
                raise ValueError(f"dataset {spec['name']!r}: {exc}") from None
        selections = spec.pop("pairs", None) or [spec.pop("classes", None)]
        for classes in selections:
            if classes is not None and len(classes) < 2:
                raise ValueError(
                    f"dataset {spec['name']!r}: a class selection needs two classes or more, got {classes}"
                )
            out.append(
                DataSpec(
                    name=spec["name"],
                    classes=None if classes is None else _classes(classes, spec["name"]),
                    root=None if spec.get("root") is None else os.fspath(spec["root"]),
                    test_root=None if spec.get("test_root") is None else os.fspath(spec["test_root"]),
                    scale=spec.get("scale", "unit"),
                    n_test=spec.get("n_test"),
                    group=spec.get("group", spec["name"]),
                    download=spec.get("download", False),
                )
            )
    if not out:
        raise ValueError("no datasets given")
    return out


def _classes(classes: Sequence[Any], dataset: str) -> list[int | str]:
    """A class selection as labels (ints) and class folder names (strings), as given.

    A float is refused rather than truncated: ``int(1.5)`` would select another class.
    """
    out: list[int | str] = []
    for c in classes:
        if isinstance(c, str):
            out.append(c)
        elif isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            out.append(int(c))
        else:
            raise ValueError(
                f"dataset {dataset!r}: class {c!r} is neither a label (int) nor a class "
                "folder name (str); write e.g. classes = [0, 1] or classes = ['benign', 'malignant']"
            )
    return out


# --------------------------------------------------------------------------- named steps


@dataclass(frozen=True)
class StepSpec:
    """One named step: a registered estimator, attack, model or corruption and its parameters.

    Examples
    --------
    >>> StepSpec("mle", {"k": 10}).config()
    {'name': 'mle', 'params': {'k': 10}}
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        """The step as a cell stores it, ``{"name": ..., "params": {...}}``."""
        return {"name": self.name, "params": dict(self.params)}


def object_step(obj: Any, kind: str, what: str) -> StepSpec:
    """The :class:`StepSpec` of an object: a registered ``kind`` (``"estimator"``,
    ``"attack"``, ``"model"``) given as a class, a factory or an instance.

    Its name is the one it is registered under (:func:`idprops.registry.name_of`), its
    parameters the fewest that rebuild the instance: each argument, in the signature's
    order, is kept when leaving it out would build an object whose attribute of that
    name differs (so a step size that PGD derives from ``eps`` and ``steps`` is left
    out, as a study file would leave it out). So
    ``MLEDimension(k=10)`` and a study file's ``[estimators.mle] k = 10`` are the same
    step, and the same cells.

    Examples
    --------
    >>> from idprops import MLEDimension
    >>> from idprops.nn import PGD
    >>> object_step(MLEDimension(k=10), "estimator", "estimators.mle")
    StepSpec(name='mle', params={'k': 10})
    >>> object_step(PGD(eps=0.5, norm="l2"), "attack", "attacks.pgd")
    StepSpec(name='pgd', params={'eps': 0.5, 'norm': 'l2'})
    """
    from ..jsonable import jsonable
    from ..registry import name_of

    name = name_of(obj, kind)
    if name is None:
        shown = obj.__name__ if isinstance(obj, type) or inspect.isroutine(obj) else type(obj).__name__
        raise ValueError(
            f"{what}: {shown} is not a registered {kind}; register it with "
            f"idprops.registry.register_{kind}(name, ...) (this process only), or declare it under the "
            f"'idprops.{kind}s' entry points of an installed package so that worker processes find it too"
        )
    if isinstance(obj, type) or inspect.isroutine(obj):
        return StepSpec(name, {})
    signature = [
        p for p in inspect.signature(type(obj)).parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    missing = [p.name for p in signature if not hasattr(obj, p.name)]
    if missing:
        raise ValueError(
            f"{what}: {type(obj).__name__} keeps no attribute for its argument(s) {missing}, so its "
            "parameters cannot be read back; give the step as a table instead"
        )
    params = {p.name: getattr(obj, p.name) for p in signature if p.default is p.empty}
    for param in signature:
        if param.default is not param.empty:
            value = getattr(obj, param.name)
            if not _same(value, getattr(type(obj)(**params), param.name)):
                params[param.name] = value
    try:
        return StepSpec(name, jsonable(params, where=what))
    except TypeError as exc:
        raise ValueError(f"{exc}; a study records its steps' parameters as plain values") from None


def _same(value: Any, default: Any) -> bool:
    try:
        return bool(value == default) and type(value) is type(default)
    except (TypeError, ValueError):  # arrays and the like compare elementwise
        return False


def _is_object(spec: Any) -> bool:
    return not isinstance(spec, (str, Mapping, bool)) and spec is not None


def parse_steps(specs: Any, what: str, kind: str | None = None) -> dict[str, StepSpec]:
    """``label -> StepSpec`` from a mapping or a sequence.

    A name in a sequence may carry parameters, ``"mle:k=10"`` (read by
    :func:`idprops.parsing.parse_spec`); the text is then the label. Where ``kind``
    is given, an entry may also be an object (:func:`object_step`), labelled in a
    sequence by its registered name.

    Examples
    --------
    >>> parse_steps({"mle10": {"name": "mle", "k": 10}, "twonn": {}}, "estimators")
    {'mle10': StepSpec(name='mle', params={'k': 10}), 'twonn': StepSpec(name='twonn', params={})}
    >>> parse_steps(["mle:k=10"], "estimators")
    {'mle:k=10': StepSpec(name='mle', params={'k': 10})}
    >>> from idprops import TwoNNDimension
    >>> parse_steps([TwoNNDimension(method="mle")], "estimators", "estimator")
    {'twonn': StepSpec(name='twonn', params={'method': 'mle'})}
    """
    from ..parsing import parse_spec

    if specs is None:
        return {}
    if isinstance(specs, str) or (kind is not None and _is_object(specs) and not isinstance(specs, (list, tuple))):
        specs = [specs]
    if not isinstance(specs, Mapping):
        entries, specs = specs, {}
        for entry in entries:
            if isinstance(entry, str):
                name, params = parse_spec(entry)
                label, entry = entry, {"name": name, **params}
            elif kind is not None and _is_object(entry):
                entry = object_step(entry, kind, what)
                label = entry.name
            else:
                raise ValueError(f"{what}: {entry!r} is neither a name nor a {kind or 'step'} object")
            if label in specs:
                raise ValueError(f"{what}: two entries are labelled {label!r}; give a mapping label -> entry")
            specs[label] = entry
    out = {}
    for label, spec in specs.items():
        if spec is None or spec is True:
            spec = {}
        if isinstance(spec, StepSpec):
            out[str(label)] = spec
            continue
        if kind is not None and _is_object(spec):
            out[str(label)] = object_step(spec, kind, f"{what}.{label}")
            continue
        if not isinstance(spec, Mapping):
            raise ValueError(f"{what}.{label}: expected a table of parameters, got {spec!r}")
        params = dict(spec)
        out[str(label)] = StepSpec(params.pop("name", label), params)
    return out


def _build_estimator(name: str, params: Mapping[str, Any]) -> Any:
    from ..registry import resolve_estimator

    return resolve_estimator(name, **params)


def check_step(what: str, step: StepSpec, build: Callable[..., Any] = _build_estimator) -> Any:
    """Build ``step`` (an estimator unless ``build`` says) once and return it.

    A misspelt name or a bad parameter then fails when the grid is built, named as
    ``what``, not after a model has trained, and not as a NaN cell that a re-run would
    count as done.

    Examples
    --------
    >>> check_step("estimators.mle", StepSpec("mle", {"k": "x"}))
    Traceback (most recent call last):
    ...
    ValueError: estimators.mle: The 'k' parameter of MLEDimension must be an int in the range [2, inf). Got 'x' instead.
    """
    try:
        obj = build(step.name, step.params)
        # scikit-learn estimators check their parameters' types and ranges here.
        getattr(obj, "_validate_params", lambda: None)()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: {exc}") from exc
    return obj


def parse_estimators(specs: Any, what: str = "estimators") -> dict[str, StepSpec]:
    """:func:`parse_steps` of dimension estimators (names, tables or estimator objects),
    each built once to check it.

    Examples
    --------
    >>> parse_estimators(["twonn", "mle:k=10"])
    {'twonn': StepSpec(name='twonn', params={}), 'mle:k=10': StepSpec(name='mle', params={'k': 10})}
    """
    steps = parse_steps(specs, what, "estimator")
    for label, step in steps.items():
        check_step(f"{what}.{label}", step)
    return steps


def parse_estimator(spec: Any, what: str, default: str = "twonn") -> StepSpec:
    """One estimator (a name, ``"twonn:method=mle"``, a table with an optional
    ``name``, or an estimator object), built once to check it.

    Examples
    --------
    >>> parse_estimator("twonn:method=mle", "tracking.estimator")
    StepSpec(name='twonn', params={'method': 'mle'})
    >>> parse_estimator({"k": 10}, "tracking.estimator", default="mle")
    StepSpec(name='mle', params={'k': 10})
    """
    from ..parsing import parse_spec

    if isinstance(spec, str):
        name, params = parse_spec(spec)
        spec = {"name": name, **params}
    elif _is_object(spec):
        step = object_step(spec, "estimator", what)
        check_step(what, step)
        return step
    else:
        spec = dict(spec)
    step = StepSpec(spec.pop("name", default), spec)
    check_step(what, step)
    return step


def parse_sharpness(spec: Any) -> dict[str, Any] | None:
    """``{"M": ...}`` from ``true``, ``false``, a table with ``M`` (``"all"`` or 0: all)
    or a :class:`~idprops.LabelSharpness` (its ``M``; a cell seeds its sample itself).

    Examples
    --------
    >>> parse_sharpness(True), parse_sharpness({"M": "all"}), parse_sharpness(False)
    ({'M': 1000}, {'M': None}, None)
    >>> from idprops import LabelSharpness
    >>> parse_sharpness(LabelSharpness(M=500))
    {'M': 500}
    """
    from ..estimators.sharpness import LabelSharpness

    if spec is None or spec is False:
        return None
    if isinstance(spec, LabelSharpness):
        set_elsewhere = {k: v for k, v in object_step(spec, "estimator", "sharpness").params.items() if k != "M"}
        if set_elsewhere:
            raise ValueError(
                f"sharpness: a study sets only LabelSharpness's M (the cell's seed draws the "
                f"sample, and the backend is the study's device); leave out {sorted(set_elsewhere)}"
            )
        spec = {"M": spec.M}
    spec = {} if spec is True else spec
    if not isinstance(spec, Mapping):
        raise ValueError(f"sharpness: expected true, false or a table such as {{M = 1000}}, got {spec!r}")
    unknown = sorted(set(spec) - {"M"})
    if unknown:
        # Often a key meant for the top level, written below a [sharpness] header.
        raise ValueError(
            f"sharpness: unknown key(s) {unknown}; its only setting is 'M' (inputs drawn, "
            "'all' for every one). Top-level keys go above the first [table] header."
        )
    M = spec.get("M", 1000)
    return {"M": None if M in ("all", 0) else M}


@dataclass(frozen=True)
class Representation:
    """d_repr: the layers whose activations are measured, and the estimator that measures them.

    Examples
    --------
    >>> Representation(["relu"], StepSpec("twonn")).config()
    {'layers': ['relu'], 'estimator': {'name': 'twonn', 'params': {}}}
    """

    layers: list[str]
    estimator: StepSpec

    def config(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "estimator": self.estimator.config()}

    @classmethod
    def parse(cls, spec: Mapping[str, Any] | None, model_name: str | None = None) -> Representation | None:
        """From ``{"layers": [...] or {model: [...]}, "estimator": ...}``; None stays None.

        Examples
        --------
        >>> Representation.parse({"layers": "relu"}).config()
        {'layers': ['relu'], 'estimator': {'name': 'twonn', 'params': {}}}
        """
        if not spec:
            return None
        rep = dict(spec)
        layers = rep.pop("layers", None)
        if isinstance(layers, Mapping):  # per model: {resnet18 = ["layer4"], vgg16 = ["classifier.3"]}
            if model_name is not None and model_name not in layers:
                raise ValueError(f"representation.layers has no entry for model {model_name!r}")
            layers = layers.get(model_name) or next(iter(layers.values()), None)
        if isinstance(layers, str):
            layers = [layers]
        if not layers:
            raise ValueError("representation needs 'layers', e.g. layers = ['fc1']")
        estimator = rep.pop("estimator", "twonn")
        if rep:
            raise ValueError(f"representation: unknown key(s) {sorted(rep)}; use 'layers' and 'estimator'")
        return cls([str(layer) for layer in layers], parse_estimator(estimator, "representation.estimator"))


@dataclass(frozen=True)
class Tracking:
    """The activation-ID tracker of a training run (:class:`~idprops.nn.callbacks.ActivationIDTracker`).

    ``layers`` are input side first, the last being the LLID layer; ``extra`` holds the
    study's own settings (``n_samples``, ``every``, ``data``, ...), in its defaults' order,
    then ``min_distinct`` (of the tracker) where it is not the tracker's default.

    Examples
    --------
    >>> Tracking(["fc1"], StepSpec("twonn"), {"n_samples": 500}).config()
    {'layers': ['fc1'], 'estimator': {'name': 'twonn', 'params': {}}, 'n_samples': 500}
    """

    layers: list[str] | None
    estimator: StepSpec
    extra: dict[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        return {"layers": self.layers, "estimator": self.estimator.config(), **self.extra}

    @classmethod
    def parse(
        cls, tracking: Mapping[str, Any] | None, defaults: Mapping[str, Any], model_name: str | None = None
    ) -> Tracking:
        """A study's ``tracking`` table completed with ``defaults`` and checked: known
        keys only, the model's :data:`DEFAULT_LAYERS` when none are named and
        ``model_name`` is given, the estimator built once.

        Examples
        --------
        >>> t = Tracking.parse({"n_samples": 100}, {"layers": None, "estimator": "twonn",
        ...                    "n_samples": 1000}, "mlp1x512")
        >>> t.config()
        {'layers': ['fc1', 'relu1'], 'estimator': {'name': 'twonn', 'params': {}}, 'n_samples': 100}
        """
        from ..nn.callbacks import ActivationIDTracker

        # Every tracking table may set the tracker's min_distinct. It enters the cell's
        # configuration only where it differs from the tracker's default, so that
        # cells stored before it could be set still resume.
        usual = inspect.signature(ActivationIDTracker).parameters["min_distinct"].default
        merged = {**defaults, **dict(tracking or {})}
        unknown = sorted(set(merged) - set(defaults) - {"min_distinct"})
        if unknown:
            raise ValueError(f"tracking: unknown key(s) {unknown}; use {sorted({*defaults, 'min_distinct'})}")
        min_distinct = merged.pop("min_distinct", usual)
        if isinstance(min_distinct, bool) or not isinstance(min_distinct, (int, float)) or not 0 <= min_distinct <= 1:
            raise ValueError(f"tracking.min_distinct is a share of the sample, in [0, 1]; got {min_distinct!r}")
        if min_distinct != usual:
            merged["min_distinct"] = float(min_distinct)
        layers = merged.pop("layers")
        if layers is None and model_name is not None:
            if model_name not in DEFAULT_LAYERS:
                raise ValueError(f"tracking.layers: no default for model {model_name!r}; name its layers")
            layers = DEFAULT_LAYERS[model_name]
        if isinstance(layers, str):
            layers = [layers]
        estimator = parse_estimator(merged.pop("estimator"), "tracking.estimator")
        return cls(None if layers is None else list(layers), estimator, merged)


# --------------------------------------------------------------------------- models and training


def parse_model(spec: Any) -> StepSpec:
    """``StepSpec(name, params)`` of a registered model name or factory, or a mapping
    with ``name`` (a name or a factory) and the factory's arguments.

    An unknown name or a parameter its factory does not take fails here, when the grid
    is built, rather than in every cell as it starts to train.

    Examples
    --------
    >>> parse_model({"name": "small_cnn", "dropout": 0.5})
    StepSpec(name='small_cnn', params={'dropout': 0.5})
    >>> from idprops.nn import mlp1x512
    >>> parse_model(mlp1x512)
    StepSpec(name='mlp1x512', params={})
    """
    from ..registry import get_model

    if isinstance(spec, str) or callable(spec):
        spec = {"name": spec}
    if isinstance(spec, Mapping) and callable(spec.get("name")):
        spec = {**spec, "name": object_step(spec["name"], "model", "models").name}
    if not (isinstance(spec, Mapping) and "name" in spec):
        raise ValueError(f"model spec {spec!r}: give a registered name or a table with 'name'")
    params = dict(spec)
    name = params.pop("name")
    try:
        inspect.signature(get_model(name)).bind_partial(**params)
    except TypeError as exc:
        raise ValueError(f"model {name!r}: {exc}") from None
    return StepSpec(name, params)


def parse_models(specs: Any) -> list[StepSpec]:
    """:func:`parse_model` of one model or of each of a sequence.

    Examples
    --------
    >>> [m.name for m in parse_models(["small_cnn", {"name": "mlp1x512"}])]
    ['small_cnn', 'mlp1x512']
    """
    models = [specs] if isinstance(specs, (str, Mapping)) or callable(specs) else list(specs)
    if not models:
        raise ValueError("no models given")
    return [parse_model(m) for m in models]


def single_setting(datasets: Any, models: Any, sizes: Any, study: str) -> tuple[DataSpec, StepSpec, int | None]:
    """The one dataset, model and size of a study that sweeps something else for them.

    Examples
    --------
    >>> data, model, n = single_setting("digits", "small_cnn", 100, "dynamics")
    >>> data.name, model.name, n
    ('digits', 'small_cnn', 100)
    """
    data, models, sizes = (
        parse_datasets(datasets),
        parse_models(models),
        integers(sizes, "sizes", allow_none=True, minimum=1),
    )
    if len(data) * len(models) * len(sizes) != 1:
        raise ValueError(
            f"a {study} study runs one dataset, one model and one size; got {len(data)} dataset(s) "
            f"(class selections count), {len(models)} model(s) and {len(sizes)} size(s): run one study "
            "per combination, each with its own store or report folder"
        )
    return data[0], models[0], sizes[0]


def check_training(training: Mapping[str, Any], forbidden: Sequence[str] = (), hint: str = "") -> None:
    """Refuse settings that are not Trainer arguments, that a cell sets itself, that the
    study owns (``forbidden``), or that the Trainer refuses (optimizer, schedule, lr, ...),
    when the grid is built rather than in every cell as it starts to train.

    Examples
    --------
    >>> check_training({"epochs": 1, "lrr": 0.1})
    Traceback (most recent call last):
    ...
    ValueError: training: unknown setting(s) ['lrr']; valid ones are [...]
    """
    from ..nn.training import Trainer

    _check_training_keys(training)
    clash = sorted(set(training) & set(forbidden))
    if clash:
        raise ValueError(f"training: {clash} are set by the study" + (f"; {hint}" if hint else ""))
    try:
        Trainer(None, **{k: v for k, v in training.items() if k != "threads"})._validate()
    except ValueError as exc:
        raise ValueError(f"training: {exc}") from None


def _check_training_keys(training: Mapping[str, Any]) -> None:
    from ..nn.training import Trainer

    allowed = (set(inspect.signature(Trainer.__init__).parameters) - _TRAINING_EXCLUDED - {"self"}) | {"threads"}
    unknown = sorted(set(training) - allowed)
    if unknown:
        raise ValueError(f"training: unknown setting(s) {unknown}; valid ones are {sorted(allowed)}")


def resolve_training(model_name: str, training: Mapping[str, Any] | None) -> dict[str, Any]:
    """The Trainer's arguments of a cell: a paper preset with the study's overrides.

    ``training`` may name a ``preset`` of :data:`idprops.nn.TRAINING_PRESETS`; by
    default the label-sharpness paper's (Adam, weight decay 1e-4, 100 epochs; lr 1e-3,
    or 1e-4 for VGGs). ``threads`` (torch's intra-op threads while the cell runs; None
    leaves torch's setting) is kept too. The seed is the cell's.

    Examples
    --------
    >>> resolve_training("small_cnn", {"epochs": 2})["epochs"]
    2
    """
    from ..jsonable import jsonable
    from ..nn.training import TRAINING_PRESETS

    training = dict(training or {})
    preset = training.pop("preset", "konz2024_vgg" if model_name.startswith("vgg") else "konz2024_resnet")
    if preset not in TRAINING_PRESETS:
        raise ValueError(f"training.preset {preset!r} is not one of {sorted(TRAINING_PRESETS)}")
    _check_training_keys(training)
    kwargs = {**TRAINING_PRESETS[preset], **training}
    kwargs.pop("seed", None)
    check_training(kwargs)
    return jsonable(kwargs, where="training")


# --------------------------------------------------------------------------- attacks


def _pixel_max(scale: Any) -> float | None:
    """The largest pixel value of a named scale of :data:`idprops.data.transforms.SCALES`."""
    from ..data.transforms import SCALES

    return getattr(SCALES.get(scale), "pixel_max", None) if isinstance(scale, str) else None


def default_attacks(scale: str) -> dict[str, dict[str, Any]]:
    """The paper's attack on pixels of ``scale``: FGSM with eps two grey levels (2/255 of
    the pixel range), clipped to that range.

    Examples
    --------
    >>> default_attacks("unit")
    {'fgsm': {'eps': 0.00784313725490196}}
    >>> default_attacks("paper")
    {'fgsm': {'eps': 2.0, 'clip_max': 255.0}}
    """
    peak = _pixel_max(scale)
    if peak is None:
        raise ValueError(
            f"no default attack for pixel scale {scale!r}; use scale 'unit' or 'paper', or "
            "name the attacks with eps, clip_min and clip_max on the data's scale."
        )
    params: dict[str, Any] = {"eps": 2 * peak / 255}
    # FGSM clips to [0, 1] by default: saying so only for other ranges keeps the unit-scale
    # cells' configurations, so stores written before still resume.
    if peak != 1.0:
        params["clip_max"] = peak
    return {"fgsm": params}


def build_attack(name: str, params: Mapping[str, Any]):
    """An attack object from its name (of :func:`idprops.registry.available_attacks`,
    a plugin's included, or ``"package.module:Class"``).

    Examples
    --------
    >>> build_attack("fgsm", {"eps": 0.1})
    FGSM(eps=0.1, clip_min=0.0, clip_max=1.0)
    """
    from ..registry import get_attack

    cls = import_object(name) if ":" in name else get_attack(name)
    return cls(**params)


def resolve_attacks(attacks: Any, scale: str) -> dict[str, StepSpec]:
    """label -> :class:`StepSpec` of the attacks on data of pixel ``scale``.

    ``attacks`` None is :func:`default_attacks`. Each attack is built once, so that a bad
    name or parameter fails when the grid is built, and its clipping range must cover the
    scale's pixels: otherwise the attack would refuse every input, after the training.

    Examples
    --------
    >>> resolve_attacks({"fgsm": {"eps": 0.1}}, "paper")
    Traceback (most recent call last):
    ...
    ValueError: attacks.fgsm clips to [0, 1] but pixels on the 'paper' scale lie in [0, 255]; set clip_min = 0 and clip_max = 255, with eps on that scale (2 is two grey levels).
    """
    specs = parse_steps(default_attacks(scale) if attacks is None else attacks, "attacks", "attack")
    peak = _pixel_max(scale)
    for label, step in specs.items():
        attack = check_step(f"attacks.{label}", step, build_attack)
        low, high = getattr(attack, "clip_min", None), getattr(attack, "clip_max", None)
        if peak is None or low is None or high is None:  # a custom scale or attack
            continue
        if low > 0 or high < peak:
            raise ValueError(
                f"attacks.{label} clips to [{low:g}, {high:g}] but pixels on the {scale!r} "
                f"scale lie in [0, {peak:g}]; set clip_min = 0 and clip_max = {peak:g}, with "
                f"eps on that scale ({2 * peak / 255:g} is two grey levels)."
            )
    return specs


def configs(steps: Mapping[str, StepSpec]) -> dict[str, dict[str, Any]]:
    """``label -> {"name", "params"}`` of several steps, as a cell stores them.

    Examples
    --------
    >>> configs({"fgsm": StepSpec("fgsm", {"eps": 0.1})})
    {'fgsm': {'name': 'fgsm', 'params': {'eps': 0.1}}}
    """
    return {label: step.config() for label, step in steps.items()}
