"""Scaling-law study: test loss against training-set size and intrinsic dimension.

Reproduces the experiments of Konz & Mazurowski (ICLR 2024; SEEDS.md §1) as a grid of
cells, datasets (class pairs) x models x training-set sizes x seeds. Each cell trains a
model on a seeded subset of N training images, then measures on a fixed test set its
loss, error and robust accuracy under each configured attack, and on the training set
its intrinsic dimension d_data (each configured estimator), its label sharpness K_F,
and the intrinsic dimension d_repr of the trained model's activations at chosen layers.

Every step is named, not hard-wired: estimators by registered name (plugins included)
with parameters, attacks by name (``"fgsm"``, ``"pgd"`` or ``"package.module:Class"``)
with parameters, models by registered name, training by a preset of
:data:`idprops.nn.TRAINING_PRESETS` with overrides, so a study file swaps any of them.

The parameters that describe several named steps take a mapping *label -> spec*,
where a spec is a mapping of the step's parameters with an optional ``name`` (the
label by default): ``{"mle": {"k": 20}, "mle10": {"name": "mle", "k": 10}}``; a
sequence of names is read as ``{name: {}}``. In a study file::

    [estimators.mle]
    k = 20
    [estimators.twonn]
    [attacks.fgsm]
    eps = 0.00784313725490196   # 2/255
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import warnings
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .measure import measure, measurement_fields
from .store import config_key
from .study import Study, import_object

__all__ = [
    "ATTACKS",
    "ScalingLawStudy",
    "build_attack",
    "cell_data",
    "default_attacks",
    "download_datasets",
    "resolve_attacks",
    "train_and_measure",
]

#: Attacks by name; ``"package.module:Class"`` names any other attack class.
ATTACKS = {"fgsm": "idprops.nn.attacks:FGSM", "pgd": "idprops.nn.attacks:PGD"}


_DATASET_KEYS = {"name", "classes", "pairs", "root", "test_root", "scale", "n_test", "group", "download"}
# Entry fields that change no result: a report label, and the permission to download.
_NOT_CAUSES = {"group", "download"}
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


# --------------------------------------------------------------------------- specs


def _plain(obj: Any) -> Any:
    """JSON types only (tuples become lists), so that configs hash and ship the same way."""
    return json.loads(json.dumps(obj))


def normalize_datasets(datasets: Any) -> list[dict[str, Any]]:
    """One entry per (dataset, class selection): ``name``, ``classes``, ``root``,
    ``scale``, ``n_test``, and the report's ``group`` label.

    ``datasets`` is a name, or a sequence of names and mappings with ``name`` and
    optionally ``classes`` (one selection of labels, or of class folder names for an
    image folder) or ``pairs`` (several), ``root`` (the
    local folder of a torchvision dataset, or of an image folder with ``name =
    "folder"``; or give the image folder's path as ``name``), ``test_root`` (where the
    test images are, when they are not the dataset's own test split: image folders
    have none), ``scale`` (``"unit"`` or
    ``"paper"``), ``n_test`` (test images; all by default), ``group`` (the
    report's label, e.g. ``"natural"`` or ``"medical"``; the name by default) and
    ``download`` (``true`` lets torchvision fetch missing files into ``root`` before
    the first cell, see :func:`download_datasets`; false by default).

    Examples
    --------
    >>> [(d["name"], d["classes"]) for d in normalize_datasets(
    ...     [{"name": "digits", "pairs": [[0, 1], [3, 8]]}])]
    [('digits', [0, 1]), ('digits', [3, 8])]
    """
    if isinstance(datasets, (str, Mapping)):
        datasets = [datasets]
    out = []
    for spec in datasets:
        spec = {"name": spec} if isinstance(spec, str) else dict(spec)
        unknown = set(spec) - _DATASET_KEYS
        if unknown or "name" not in spec:
            raise ValueError(
                f"dataset spec {spec!r}: needs 'name' and may have "
                f"{sorted(_DATASET_KEYS - {'name'})}" + (f"; unknown {sorted(unknown)}" if unknown else "")
            )
        if "classes" in spec and "pairs" in spec:
            raise ValueError(f"dataset spec {spec!r}: give 'classes' or 'pairs', not both")
        if spec.get("pairs") == []:  # not "all classes", which is leaving pairs out
            raise ValueError(f"dataset {spec['name']!r}: pairs is empty; list class pairs or leave it out")
        if not isinstance(spec.get("download", False), bool):
            raise ValueError(f"dataset {spec['name']!r}: download is true or false, got {spec['download']!r}")
        selections = spec.pop("pairs", None) or [spec.pop("classes", None)]
        for classes in selections:
            if classes is not None and len(classes) < 2:
                raise ValueError(
                    f"dataset {spec['name']!r}: a class selection needs two classes or more, got {classes}"
                )
            out.append(
                {
                    "name": spec["name"],
                    "classes": None if classes is None else _classes(classes, spec["name"]),
                    "root": None if spec.get("root") is None else os.fspath(spec["root"]),
                    "test_root": None if spec.get("test_root") is None else os.fspath(spec["test_root"]),
                    "scale": spec.get("scale", "unit"),
                    "n_test": spec.get("n_test"),
                    "group": spec.get("group", spec["name"]),
                    "download": spec.get("download", False),
                }
            )
    if not out:
        raise ValueError("no datasets given")
    return out


def cell_data(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A :func:`normalize_datasets` entry as a cell holds it: without the fields that
    change no result (``group``, ``download``), so that they leave cell keys alone.

    Examples
    --------
    >>> cell_data(normalize_datasets({"name": "digits", "download": True})[0])["name"]
    'digits'
    """
    return {k: v for k, v in entry.items() if k not in _NOT_CAUSES}


def download_datasets(datasets: Any) -> list[str]:
    """Fetch the files of every dataset entry with ``download = true`` into its ``root``.

    torchvision's own download runs once here, before any cell, so that cells (and
    parallel workers) only read local files. Files already there are kept, and a
    dataset without a download (bundled data, image folders) is left as it is.

    Parameters
    ----------
    datasets : as :func:`normalize_datasets` takes them

    Returns
    -------
    list of str
        The names of the datasets fetched or found complete.

    Examples
    --------
    >>> download_datasets([{"name": "digits", "download": True}])  # bundled: nothing to fetch
    ['digits']
    """
    from ..data import load_dataset

    done, seen = [], set()
    for entry in normalize_datasets(datasets):
        if not entry["download"] or (entry["name"], entry["root"]) in seen:
            continue
        seen.add((entry["name"], entry["root"]))
        kwargs = {"download": True, "train": None, "n": 1}
        if entry["root"] is not None:
            kwargs["root"] = os.path.expanduser(entry["root"])
        # Both parts, read once: torchvision fetches what is missing and checks the files.
        load_dataset(entry["name"], **kwargs)
        done.append(entry["name"])
    return done


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


def normalize_steps(specs: Any, what: str) -> dict[str, dict[str, Any]]:
    """``label -> {"name": ..., "params": {...}}`` from a mapping or a sequence of names.

    A name in a sequence may carry parameters, ``"mle:k=10"`` (read by
    :func:`idprops.parsing.parse_spec`); the text is then the label.

    Examples
    --------
    >>> normalize_steps({"mle10": {"name": "mle", "k": 10}, "twonn": {}}, "estimators")
    {'mle10': {'name': 'mle', 'params': {'k': 10}}, 'twonn': {'name': 'twonn', 'params': {}}}
    >>> normalize_steps(["mle:k=10", "twonn"], "estimators")
    {'mle:k=10': {'name': 'mle', 'params': {'k': 10}}, 'twonn': {'name': 'twonn', 'params': {}}}
    """
    from ..parsing import parse_spec

    if specs is None:
        return {}
    if isinstance(specs, str):
        specs = [specs]
    if not isinstance(specs, Mapping):
        texts, specs = specs, {}
        for text in texts:
            name, params = parse_spec(text)
            specs[text] = {"name": name, **params}
    out = {}
    for label, spec in specs.items():
        if spec is None or spec is True:
            spec = {}
        if not isinstance(spec, Mapping):
            raise ValueError(f"{what}.{label}: expected a table of parameters, got {spec!r}")
        params = dict(spec)
        out[str(label)] = {"name": params.pop("name", label), "params": params}
    return out


def check_steps(estimators: Mapping[str, Any] | None) -> None:
    """Build every estimator of :func:`normalize_steps` specs once.

    A misspelt name or a bad parameter then fails when the grid is built, not after
    a model has trained, and not as a NaN cell that a re-run would count as done.
    (Attacks are built by :func:`resolve_attacks`, which also checks their range.)

    Examples
    --------
    >>> check_steps(normalize_steps({"mle": {"k": "x"}}, "estimators"))
    Traceback (most recent call last):
    ...
    ValueError: estimators.mle: The 'k' parameter of MLEDimension must be an int in the range [2, inf). Got 'x' instead.
    """
    for label, step in (estimators or {}).items():
        _check_step(f"estimators.{label}", step)


def _build_estimator(name: str, params: Mapping[str, Any]) -> Any:
    from ..registry import resolve_estimator

    return resolve_estimator(name, **params)


def _check_step(what: str, step: Mapping[str, Any], build: Callable[..., Any] = _build_estimator) -> Any:
    """Build one ``{"name", "params"}`` step (an estimator unless ``build`` says) once
    and return it; a failure names it as ``what``."""
    try:
        obj = build(step["name"], step["params"])
        # scikit-learn estimators check their parameters' types and ranges here.
        getattr(obj, "_validate_params", lambda: None)()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: {exc}") from exc
    return obj


def normalize_sharpness(spec: Any) -> dict[str, Any] | None:
    """``{"M": ...}`` from ``true``, ``false`` or a table with ``M`` (``"all"`` or 0: all).

    Examples
    --------
    >>> normalize_sharpness(True), normalize_sharpness({"M": "all"}), normalize_sharpness(False)
    ({'M': 1000}, {'M': None}, None)
    """
    if spec is None or spec is False:
        return None
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


def _integers(values: Any, what: str, allow_none: bool = False) -> list:
    """One value or a sequence of them as a non-empty list of Python ints.

    Seeds, sizes and pixel shifts are counts: ``int(1.5)`` would quietly run another
    cell than the one asked for, so anything but an integer is an error.
    """
    values = [values] if np.ndim(values) == 0 else list(values)
    if not values:
        raise ValueError(f"{what} is empty")
    for v in values:
        if not ((v is None and allow_none) or (isinstance(v, (int, np.integer)) and not isinstance(v, bool))):
            raise ValueError(f"{what}: {v!r} is not an integer")
    return [None if v is None else int(v) for v in values]


def normalize_model(spec: Any) -> dict[str, Any]:
    """``{"name": ..., "params": {...}}`` from a registered name or a mapping with ``name``.

    An unknown name or a parameter its factory does not take fails here, when the grid
    is built, rather than in every cell as it starts to train.
    """
    from ..registry import get_model

    if isinstance(spec, str):
        spec = {"name": spec}
    if not (isinstance(spec, Mapping) and "name" in spec):
        raise ValueError(f"model spec {spec!r}: give a registered name or a table with 'name'")
    params = dict(spec)
    name = params.pop("name")
    try:
        inspect.signature(get_model(name)).bind_partial(**params)
    except TypeError as exc:
        raise ValueError(f"model {name!r}: {exc}") from None
    return {"name": name, "params": params}


def resolve_training(model_name: str, training: Mapping[str, Any] | None) -> dict[str, Any]:
    """The Trainer's arguments of a cell: a paper preset with the study's overrides.

    ``training`` may name a ``preset`` of :data:`idprops.nn.TRAINING_PRESETS`; by
    default the label-sharpness paper's (Adam, weight decay 1e-4, 100 epochs; lr 1e-3,
    or 1e-4 for VGGs). ``threads`` (torch's intra-op threads while the cell runs; None
    leaves torch's setting) is kept too. The seed is the cell's.
    """
    from ..nn.training import TRAINING_PRESETS

    training = dict(training or {})
    preset = training.pop("preset", "konz2024_vgg" if model_name.startswith("vgg") else "konz2024_resnet")
    if preset not in TRAINING_PRESETS:
        raise ValueError(f"training.preset {preset!r} is not one of {sorted(TRAINING_PRESETS)}")
    _check_training_keys(training)
    kwargs = {**TRAINING_PRESETS[preset], **training}
    kwargs.pop("seed", None)
    _check_trainer(kwargs)
    return _plain(kwargs)


def _check_training_keys(training: Mapping[str, Any]) -> None:
    """Refuse settings that are not Trainer arguments or that a cell sets itself."""
    from ..nn.training import Trainer

    allowed = (set(inspect.signature(Trainer.__init__).parameters) - _TRAINING_EXCLUDED - {"self"}) | {"threads"}
    unknown = sorted(set(training) - allowed)
    if unknown:
        raise ValueError(f"training: unknown setting(s) {unknown}; valid ones are {sorted(allowed)}")


def _check_trainer(training: Mapping[str, Any]) -> None:
    """The Trainer's own checks (optimizer, schedule, lr, ...) when the grid is built,
    not in every cell as it starts to train."""
    from ..nn.training import Trainer

    kwargs = {k: v for k, v in training.items() if k != "threads"}
    Trainer(None, **kwargs)._validate()


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


def resolve_attacks(attacks: Any, scale: str) -> dict[str, dict[str, Any]]:
    """label -> spec (:func:`normalize_steps`) of the attacks on data of pixel ``scale``.

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
    specs = normalize_steps(default_attacks(scale) if attacks is None else attacks, "attacks")
    peak = _pixel_max(scale)
    for label, step in specs.items():
        attack = _check_step(f"attacks.{label}", step, build_attack)
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


def build_attack(name: str, params: Mapping[str, Any]):
    """An attack object from its name (a key of :data:`ATTACKS` or ``"module:Class"``).

    Examples
    --------
    >>> build_attack("fgsm", {"eps": 0.1})
    FGSM(eps=0.1, clip_min=0.0, clip_max=1.0)
    """
    target = ATTACKS.get(name, name)
    if ":" not in target:
        raise ValueError(f"unknown attack {name!r}; use one of {sorted(ATTACKS)} or 'package.module:Class'")
    return import_object(target)(**params)


# --------------------------------------------------------------------------- one cell


@contextlib.contextmanager
def _torch_threads(n: int | None):
    import torch

    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _load(data: Mapping[str, Any], *, train: bool, n: int | None, seed: int):
    from ..data import load_dataset
    from ..registry import get_dataset

    name, root = data["name"], data.get("root")
    if not train and data.get("test_root") is not None:
        root, train = data["test_root"], None  # the whole of a separate test folder
        try:
            get_dataset(name)
        except ValueError:  # the name is the training folder's path: the test folder replaces it
            name = "folder"
    kwargs: dict[str, Any] = {
        "train": train,
        "classes": data["classes"],
        "n": n,
        "seed": seed,
        "scale": data["scale"],
    }
    if root is not None:
        # Expanded here, not in the configuration, so that "~/data" names the same cell anywhere.
        kwargs["root"] = os.path.expanduser(root)
    return load_dataset(name, **kwargs)


def train_and_measure(config: Mapping[str, Any]) -> dict[str, Any]:
    """Train the cell's model and take its measurements; a pure function of ``config``.

    ``config`` holds ``data`` (a :func:`normalize_datasets` entry without ``group``,
    plus ``n``, the training-set size, None for all), ``model``, ``seed``,
    ``training`` (:func:`resolve_training`), ``device``, ``estimators`` and ``attacks``
    (:func:`normalize_steps`), ``sharpness`` (``{"M": ...}`` or None) and
    ``representation`` (``{"layers": [...], "estimator": {...}}`` or None).

    Returns
    -------
    dict
        ``n_train``, ``n_test``, ``train_loss``, ``test_loss``, ``test_accuracy``,
        ``test_error``, ``pixel_scale``; ``d_data`` and ``d_data_std`` (per
        estimator label), ``K_F``, ``d_repr`` (per layer), ``robust_accuracy``,
        ``adversarial_loss`` and ``loss_increase`` (per attack label) when asked for;
        ``warnings`` (estimates that failed and were recorded as NaN).

    Examples
    --------
    One cell of a tiny study: 40 images of digits 0 and 1, one epoch.

    >>> study = ScalingLawStudy(datasets=[{"name": "digits", "classes": [0, 1]}], sizes=[40],
    ...                         training={"epochs": 1}, estimators=["twonn"],
    ...                         attacks={"fgsm": {"eps": 0.1}}, device="cpu")
    >>> out = train_and_measure(study.cells()[0])
    >>> out["n_train"], out["n_test"], sorted(out["d_data"]), sorted(out["robust_accuracy"])
    (40, 91, ['twonn'], ['fgsm'])
    """
    from ..base import DuplicatesWarning
    from ..nn import Trainer, build_model, evaluate, robust_accuracy, seeded

    seed = int(config["seed"])
    data = config["data"]
    training = dict(config["training"])
    threads = training.pop("threads", None)
    device = config.get("device", "auto")  # "auto" is read where it is used
    notes: list[str] = []
    out: dict[str, Any] = {}
    with _torch_threads(threads), seeded(seed, device), warnings.catch_warnings():
        # Counted duplicates are the estimators' business; a table cell has no room for them.
        warnings.simplefilter("ignore", DuplicatesWarning)
        train = _load(data, train=True, n=data.get("n"), seed=seed)
        test = _load(data, train=False, n=data.get("n_test"), seed=0)  # one fixed test set
        channels, *size = tuple(train[0][0].shape)
        num_classes = len(data["classes"]) if data["classes"] else int(np.max(train.targets)) + 1
        model = build_model(
            config["model"]["name"],
            in_channels=channels,
            num_classes=num_classes,
            input_size=tuple(size),
            **config["model"]["params"],
        )
        trainer = Trainer(model, seed=seed, device=device, progress=False, **training).fit(train)
        clean = evaluate(model, test, device=device)
        out.update(
            n_train=len(train),
            n_test=len(test),
            train_loss=trainer.history[-1]["train_loss"],
            test_loss=clean["loss"],
            test_accuracy=clean["accuracy"],
            test_error=1.0 - clean["accuracy"],
            pixel_scale=getattr(train, "pixel_scale", "as given"),
        )

        rep = config.get("representation") or {}
        measured = measure(
            train,
            estimators=config.get("estimators") or {},
            sharpness=config.get("sharpness") is not None,
            sharpness_samples=(config.get("sharpness") or {}).get("M", 1000),
            model=model if rep else None,
            layers=rep.get("layers", ()),
            repr_estimator=rep.get("estimator"),
            device=device,
            seed=seed,
            progress=False,
        )
        out.update(measurement_fields(measured))
        notes.extend(measured["warnings"])
        if config.get("attacks"):
            out["robust_accuracy"], out["adversarial_loss"], out["loss_increase"] = {}, {}, {}
            for label, step in config["attacks"].items():
                res = robust_accuracy(model, test, build_attack(step["name"], step["params"]), device=device)
                out["robust_accuracy"][label] = res["robust_accuracy"]
                out["adversarial_loss"][label] = res["adversarial_loss"]
                out["loss_increase"][label] = res["adversarial_loss"] - res["clean_loss"]
    out["warnings"] = notes
    return out


# --------------------------------------------------------------------------- the study


def _selection(classes: Sequence[int | str] | None) -> str:
    return "all" if classes is None else "v".join(str(c) for c in classes)


def _dataset_key(entry: Mapping[str, Any], prefix: str = "") -> str:
    """What tells dataset entries apart: every field of :func:`normalize_datasets` but the
    group, read from a result record's ``data.*`` fields with ``prefix="data."``.

    The name and classes alone are not enough: every ``name = "folder"`` entry has the
    same name, and only its ``root`` says which images it holds.
    """
    # Hashed as cells are, so that 750 and 750.0 (resumed with another spelling) agree.
    return config_key({field: entry.get(prefix + field) for field in _DATASET_KEYS - {"pairs", *_NOT_CAUSES}})


def unit_label(row: Mapping[str, Any], with_model: bool = False) -> str:
    """``"digits 3v8"`` (and ``" small_cnn"`` when models differ) for a record."""
    name = row["data.root"] if row["data.name"] == "folder" else row["data.name"]
    label = f"{name} {_selection(row['data.classes'])}"
    return f"{label} {row['model.name']}" if with_model else label


def _finite(row: Mapping[str, Any], *fields: str) -> bool:
    for f in fields:
        v = row.get(f)
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
    return True


class ScalingLawStudy(Study):
    """Train across datasets, models, training-set sizes and seeds; fit the scaling laws.

    Each cell (see :func:`train_and_measure`) trains a model on N seeded training
    images of a class selection (subsets are nested: the N = 100 set contains the
    N = 50 one) and measures test loss and error on the fixed test set, d_data and
    K_F of its training set, d_repr at ``representation["layers"]`` and robust
    accuracy under each attack. :meth:`report` fits ``log L = -alpha log N + c``
    per dataset and model (the paper's law has ``alpha = 1/d``), ``log L = a + b d``
    at each N across datasets for d_data and d_repr, correlates K_F with robust
    accuracy, and checks ``d_repr <= d_data``.

    Parameters
    ----------
    datasets : str or sequence of str or mapping
        See :func:`normalize_datasets`, e.g. ``[{"name": "digits", "pairs": [[0, 1],
        [3, 8]]}]``.
    models : sequence of str or mapping
        Registered model names, or tables ``{"name": ..., **factory arguments}``.
    sizes : sequence of int
        Training-set sizes N (None: all training images).
    seeds : sequence of int
        Seed of each repetition: training subset, initialisation, data order, K_F's
        sample. The paper used 1337.
    training : mapping, optional
        ``preset`` (default: the paper's for the model) and Trainer overrides such as
        ``epochs``, ``batch_size`` (None: the whole training set in every step), ``lr``;
        ``threads`` sets torch's threads per cell.
    estimators : mapping or sequence, default=("mle", "twonn")
        d_data estimators, label -> spec (:func:`normalize_steps`).
    sharpness : bool or mapping, default=True
        K_F of the training set; a mapping gives ``M`` (sample size, ``"all"`` for the
        whole set); False skips it.
    representation : mapping, optional
        ``layers`` (dotted names; or a mapping model name -> names, since
        architectures differ) and ``estimator`` (a name or a spec, default
        ``"twonn"``, the paper's) for d_repr; None skips it.
    attacks : mapping or sequence, optional
        label -> spec; default :func:`default_attacks` of each dataset's scale, the
        paper's FGSM (eps 2/255 on the unit scale, 2 with ``clip_max`` 255 on the
        paper's). An attack's ``clip_min`` and ``clip_max`` must cover the pixel range.
    device : str, default="auto"
        Torch device of each cell.
    store, n_jobs, progress, study_file
        See :class:`~idprops.studies.study.Study`.

    Examples
    --------
    >>> study = ScalingLawStudy(datasets=[{"name": "digits", "pairs": [[0, 1], [3, 8]]}],
    ...                         sizes=[50, 100], seeds=[0, 1])
    >>> len(study.cells())
    8
    >>> cell = study.cells()[0]
    >>> cell["data"]["classes"], cell["data"]["n"], cell["training"]["optimizer"]
    ([0, 1], 50, 'adam')
    """

    kind = "scaling-law"

    def __init__(
        self,
        datasets: Any = ({"name": "digits", "pairs": [[0, 1], [3, 8]]},),
        models: Sequence[Any] = ("small_cnn",),
        sizes: Sequence[int | None] = (50, 100, 200),
        seeds: Sequence[int] = (0,),
        training: Mapping[str, Any] | None = None,
        estimators: Any = ("mle", "twonn"),
        sharpness: bool | Mapping[str, Any] = True,
        representation: Mapping[str, Any] | None = None,
        attacks: Any = None,
        device: str = "auto",
        *,
        store: str | os.PathLike | None = None,
        n_jobs: int = 1,
        progress: bool | None = None,
        study_file: str | None = None,
    ) -> None:
        self.datasets = datasets
        self.models = models
        self.sizes = sizes
        self.seeds = seeds
        self.training = training
        self.estimators = estimators
        self.sharpness = sharpness
        self.representation = representation
        self.attacks = attacks
        self.device = device
        super().__init__(store=store, n_jobs=n_jobs, progress=progress, study_file=study_file)

    run_cell = staticmethod(train_and_measure)

    # ------------------------------------------------------------------ grid

    def _representation_spec(self, model_name: str | None = None) -> dict[str, Any] | None:
        if not self.representation:
            return None
        rep = dict(self.representation)
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
        if isinstance(estimator, str):
            estimator = {"name": estimator}
        step = normalize_steps({"inner": estimator}, "representation.estimator")["inner"]
        _check_step("representation.estimator", step)
        return {"layers": [str(layer) for layer in layers], "estimator": step}

    def _attack_specs(self, scale: str = "unit") -> dict[str, dict[str, Any]]:
        return resolve_attacks(self.attacks, scale)

    def _common(self) -> dict[str, Any]:
        common = {
            "estimators": normalize_steps(self.estimators, "estimators"),
            "sharpness": normalize_sharpness(self.sharpness),
            "device": self.device,
        }
        check_steps(common["estimators"])
        return common

    def _models(self) -> list[dict[str, Any]]:
        models = [self.models] if isinstance(self.models, (str, Mapping)) else list(self.models)
        if not models:
            raise ValueError("no models given")
        return [normalize_model(m) for m in models]

    def cells(self) -> list[dict[str, Any]]:
        """One configuration per dataset x class selection x model x size x seed."""
        common = self._common()
        sizes = _integers(self.sizes, "sizes", allow_none=True)
        seeds = _integers(self.seeds, "seeds")
        out = []
        for data in map(cell_data, normalize_datasets(self.datasets)):
            attacks = self._attack_specs(data["scale"])
            for model in self._models():
                training = resolve_training(model["name"], self.training)
                representation = self._representation_spec(model["name"])
                for n in sizes:
                    for seed in seeds:
                        out.append(
                            _plain(
                                self._cell(
                                    data={**data, "n": n},
                                    model=model,
                                    seed=seed,
                                    training=training,
                                    representation=representation,
                                    attacks=attacks,
                                    **common,
                                )
                            )
                        )
        return out

    def fetch_data(self) -> None:
        """Download the datasets whose entries say ``download = true`` (see
        :func:`download_datasets`); :meth:`fit` calls it before the first cell."""
        download_datasets(self.datasets)

    def _groups(self) -> dict[str, str]:
        """:func:`_dataset_key` of each dataset entry -> its ``group`` (domain) label."""
        return {_dataset_key(d): d["group"] for d in normalize_datasets(self.datasets)}

    # ------------------------------------------------------------------ report

    def report(self, outdir: str | os.PathLike) -> Path:
        """Write ``report.md`` (and ``.html``), ``results.csv`` and the figures into ``outdir``.

        Figures: ``scaling_law.png`` (test loss against N with the fitted power law
        per dataset and model), ``loss_vs_d_data.png`` and ``loss_vs_d_repr.png``
        (test loss against the dimension at each N), ``kf_vs_robustness.png``
        (K_F against robust accuracy at the largest N), ``d_repr_vs_d_data.png`` (first
        layer; ``d_repr_vs_d_data_<layer>.png`` for the others). The summary says in how
        many cells ``d_repr <= d_data`` held, per layer, with d_data by d_repr's estimator
        when it is among ``estimators`` (else the first).
        """
        from ..plotting import write_report

        check_is_fitted(self, "results_")
        outdir = Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        rows = self.results_
        many_models = len({r["model.name"] for r in rows}) > 1
        fits: dict[str, str] = {}
        correlations: dict[str, Any] = {}
        summary: list[str] = []
        figures: list[Path] = []

        figures += _scaling_figure(rows, many_models, fits, outdir)
        dim_label = next(iter(normalize_steps(self.estimators, "estimators")), None)
        rep = self._representation_spec()
        layers = list(dict.fromkeys(k[len("d_repr.") :] for r in rows for k in r if k.startswith("d_repr.")))
        layer = layers[0] if layers else None
        # d_repr is compared with d_data by the same estimator when d_data has one.
        same = [
            lab
            for lab, s in normalize_steps(self.estimators, "estimators").items()
            if rep and s == {**rep["estimator"]}
        ]
        bound_label = same[0] if same else dim_label
        # The paper compares the slope of log L against d between domains at fixed N.
        domains = self._groups()
        many_domains = len(set(domains.values())) > 1

        def line_of(r):
            domain = domains.get(_dataset_key(r, prefix="data."), r["data.name"])
            return (f"{domain}, " if many_domains else "") + f"N={r['data.n']}"

        if dim_label:
            figures += _loss_vs_dimension_figure(
                rows,
                f"d_data.{dim_label}",
                f"d_data ({dim_label})",
                line_of,
                fits,
                outdir / "loss_vs_d_data.png",
            )
        if layer:
            figures += _loss_vs_dimension_figure(
                rows,
                f"d_repr.{layer}",
                f"d_repr ({layer})",
                line_of,
                fits,
                outdir / "loss_vs_d_repr.png",
            )
        attack = next(iter(self._attack_specs()), None)
        if attack and normalize_sharpness(self.sharpness) is not None:
            figures += _robustness_figures(
                [r for r in rows if r["data.n"] == _largest_n(rows)],
                attack,
                many_models,
                correlations,
                outdir,
                prefix=f"at N = {_largest_n(rows)}, ",
                names=("kf_vs_robustness.png", None),
            )
        for i, name in enumerate(layers if bound_label else ()):
            path = outdir / ("d_repr_vs_d_data.png" if i == 0 else f"d_repr_vs_d_data_{_slug(name)}.png")
            figures += _bound_check(rows, name, bound_label, correlations, summary, path)
        summary.insert(0, _run_summary(rows, self.n_cells_run_))

        _write_csv(rows, outdir / "results.csv")
        path = write_report(
            outdir / "report.md",
            title="Scaling-law study",
            table=_table(rows),
            fits=fits,
            correlations=correlations,
            figures=figures,
        )
        append_summary(path, summary)
        return path


# --------------------------------------------------------------------------- report pieces


def _largest_n(rows) -> Any:
    sizes = [r["data.n"] for r in rows]
    return None if None in sizes else max(sizes)


def _run_summary(rows, n_run: int) -> str:
    seconds = sum(r.get("seconds") or 0.0 for r in rows)
    files = sorted({str(r.get("study_file")) for r in rows})
    return (
        f"{len(rows)} cells ({n_run} run by the last fit), {seconds:.1f} s of cell time; "
        f"study file(s): {', '.join(files)}"
    )


def _table(rows) -> list[dict[str, Any]]:
    skip = (
        "key",
        "study",
        "created",
        "code_version",
        "pipeline",
        "warnings",
        "study_file",
        "pixel_scale",
    )
    table = []
    for r in rows:
        keep = {
            "dataset": r["data.name"],
            "classes": _selection(r["data.classes"]),
            "model": r["model.name"],
            "N": r["data.n"],
            "seed": r["seed"],
        }
        for k, v in r.items():
            if (
                k.startswith(
                    (
                        "data.",
                        "model.",
                        "training.",
                        "estimators.",
                        "attacks.",
                        "sharpness",
                        "representation",
                        "device",
                    )
                )
                or k in skip
                or k == "seed"
            ):
                continue
            if k.startswith("d_data_std."):
                continue
            keep[k] = v
        table.append(keep)
    return table


def _write_csv(rows, path: Path) -> None:
    import csv

    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for r in rows:
            writer.writerow(
                [
                    "" if r.get(c) is None else (json.dumps(r[c]) if isinstance(r.get(c), list) else r[c])
                    for c in columns
                ]
            )


def append_summary(path: Path, lines: Sequence[str]) -> None:
    """Add a "Summary" section to a report written by :func:`idprops.plotting.write_report`
    (Markdown, and its HTML page when there is one)."""
    import html

    if not lines:
        return
    md = path.read_text(encoding="utf-8")
    path.write_text(
        md.rstrip("\n") + "\n\n## Summary\n\n" + "".join(f"- {ln}\n" for ln in lines),
        encoding="utf-8",
    )
    page = path.with_suffix(".html")
    if page.is_file():
        items = "".join(f"<li>{html.escape(ln)}</li>" for ln in lines)
        text = page.read_text(encoding="utf-8").replace("</body>", f"<h2>Summary</h2><ul>{items}</ul></body>", 1)
        page.write_text(text, encoding="utf-8")


def _new_axes():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    return fig, ax


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from ..plotting import save_figure

    save_figure(fig, path)
    plt.close(fig)
    return path


def _scaling_figure(rows, many_models: bool, fits: dict, outdir: Path) -> list[Path]:
    from ..analysis import fit_scaling_law
    from ..plotting import plot_scaling_law

    usable = [r for r in rows if r["data.n"] is not None and _finite(r, "test_loss") and r["test_loss"] > 0]
    units = defaultdict(list)
    for r in usable:
        units[unit_label(r, many_models)].append(r)
    law_fits = {}
    for unit, rs in units.items():
        N = [r["n_train"] for r in rs]
        loss = [r["test_loss"] for r in rs]
        if len(set(N)) < 2 or len(N) < 3:
            continue
        fit = fit_scaling_law(N, loss)
        law_fits[unit] = fit
        dims = {
            k[len("d_data.") :]: np.nanmean([r.get(k, math.nan) for r in rs]) for k in rs[0] if k.startswith("d_data.")
        }
        measured = ", ".join(f"{k} {v:.2f}" for k, v in dims.items())
        fits[f"test loss vs N, {unit}"] = (
            f"{fit}; alpha = {fit.alpha:.3f} [{fit.alpha_ci[0]:.3f}, {fit.alpha_ci[1]:.3f}], "
            f"1/alpha = {fit.dimension:.3g}" + (f"; measured d_data: {measured}" if measured else "")
        )
    if not usable:
        return []
    fig, ax = _new_axes()
    plot_scaling_law(
        [r["n_train"] for r in usable],
        [r["test_loss"] for r in usable],
        groups=[unit_label(r, many_models) for r in usable],
        fit=law_fits,
        ax=ax,
    )
    ax.set_xlabel("training-set size N")
    ax.set_ylabel("test loss")
    ax.set_title("test loss against training-set size")
    ax.legend(fontsize=7)
    return [_save(fig, outdir / "scaling_law.png")]


def _loss_vs_dimension_figure(rows, field: str, xlabel: str, line_of, fits: dict, path: Path) -> list[Path]:
    from ..analysis import fit_loss_vs_dimension
    from ..plotting import plot_scaling_law

    usable = [r for r in rows if _finite(r, field, "test_loss") and r["test_loss"] > 0]
    if len(usable) < 3:
        return []
    groups = [line_of(r) for r in usable]
    d = [r[field] for r in usable]
    loss = [r["test_loss"] for r in usable]
    by_group = defaultdict(list)
    for g, x in zip(groups, d, strict=True):
        by_group[g].append(x)
    fit_groups = {g for g, xs in by_group.items() if len(xs) >= 3 and np.ptp(xs) > 0}
    line_fits = {}
    if fit_groups:
        sel = [i for i, g in enumerate(groups) if g in fit_groups]
        line_fits = fit_loss_vs_dimension([d[i] for i in sel], [loss[i] for i in sel], [groups[i] for i in sel])
        for g, f in line_fits.items():
            fits[f"log test loss vs {xlabel}, {g}"] = f"{f}".replace(" d ", f" {field} ", 1)
    fig, ax = _new_axes()
    plot_scaling_law(d, loss, groups=groups, fit=line_fits, logx=False, ax=ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test loss")
    ax.set_title(f"test loss against {xlabel}")
    ax.legend(fontsize=7)
    return [_save(fig, path)]


def _unit_means(rows, fields: Sequence[str], many_models: bool) -> tuple[list[str], dict[str, list[float]]]:
    """Each field's mean over the seeds of each dataset (x model), to correlate across datasets."""
    units = defaultdict(list)
    for r in rows:
        if _finite(r, *fields):
            units[unit_label(r, many_models)].append(r)
    labels = list(units)
    return labels, {f: [float(np.mean([r[f] for r in units[u]])) for u in labels] for f in fields}


def _robustness_figures(
    rows,
    attack: str,
    many_models: bool,
    correlations: dict,
    outdir: Path,
    *,
    prefix: str = "",
    names=("kf_vs_robust_accuracy.png", "kf_vs_loss_increase.png"),
) -> list[Path]:
    """K_F against robust accuracy (and loss increase) across datasets: correlation and scatter."""
    from ..analysis import correlation
    from ..plotting import plot_correlation

    figures = []
    for field, name in (
        (f"robust_accuracy.{attack}", names[0]),
        (f"loss_increase.{attack}", names[1]),
    ):
        labels, means = _unit_means(rows, ("K_F", field), many_models)
        x, y = means["K_F"], means[field]
        if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
            correlations[f"{prefix}K_F vs {field}"] = (
                f"not computed: {len(x)} dataset(s) with distinct values (needs 3 or more)"
            )
            continue
        for method in ("pearson", "spearman"):
            correlations[f"{prefix}K_F vs {field} ({method})"] = correlation(x, y, method=method)
        if name is None:
            continue
        fig, ax = _new_axes()
        plot_correlation(x, y, correlations[f"{prefix}K_F vs {field} (pearson)"], labels=labels, ax=ax)
        ax.set_xlabel("label sharpness K_F (training set)")
        ax.set_ylabel(field.replace(".", " under "))
        figures.append(_save(fig, outdir / name))
    return figures


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def _bound_check(rows, layer: str, label: str, correlations: dict, summary: list, path: Path) -> list[Path]:
    """Does d_repr <= d_data hold (same estimator where possible)? Count, correlate, plot."""
    from ..analysis import correlation
    from ..plotting import plot_correlation

    xf, yf = f"d_data.{label}", f"d_repr.{layer}"
    usable = [r for r in rows if _finite(r, xf, yf)]
    if not usable:
        return []
    held = sum(r[yf] <= r[xf] for r in usable)
    ratio = np.array([r[yf] / r[xf] for r in usable])
    summary.append(
        f"d_repr ({layer}) <= d_data ({label}) held in {held} of {len(usable)} cells "
        f"(d_repr / d_data: median {np.median(ratio):.2f}, "
        f"range {ratio.min():.2f}-{ratio.max():.2f})"
    )
    x, y = [r[xf] for r in usable], [r[yf] for r in usable]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return []
    corr = correlation(x, y)
    correlations[f"d_repr ({layer}) vs d_data ({label}), all cells"] = corr
    fig, ax = _new_axes()
    plot_correlation(x, y, corr, ax=ax)
    lo, hi = min(min(x), min(y)), max(max(x), max(y))
    ax.plot([lo, hi], [lo, hi], "k:", lw=1, label="d_repr = d_data")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel(f"d_data ({label})")
    ax.set_ylabel(f"d_repr ({layer})")
    return [_save(fig, path)]
