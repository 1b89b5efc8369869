"""Find estimators, models, datasets, attacks and studies by name, through Python entry points.

A third-party package adds an estimator by declaring, in its own ``setup.cfg``::

    [options.entry_points]
    idprops.estimators =
        mydim = mypkg:MyDimension

after which ``get_estimator("mydim")``, the command line and the studies accept
``"mydim"``. The groups are ``idprops.estimators``, ``idprops.models``,
``idprops.datasets``, ``idprops.attacks`` (attack classes, as
:class:`~idprops.nn.attacks.FGSM`) and ``idprops.studies`` (subclasses of
:class:`~idprops.studies.study.Study`, run by ``idprops study NAME``). idprops
registers its own built-ins the same way. Discovery is a pure
function of the entry points (:func:`collect_entry_points`), cached until
:func:`refresh` is called.

Rules, chosen so that one broken or greedy plugin never breaks the others:

- a plugin that fails to import is skipped with a warning that names it and its
  error (and ``get_*`` on that name raises with the original error);
- a name declared twice warns, naming both sources; the built-in wins, and between
  two plugins the first in sorted order of their values wins, so the outcome never
  depends on ``sys.path`` order.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import multiprocessing
import warnings
from collections.abc import Iterable
from typing import Any

__all__ = [
    "available_attacks",
    "available_datasets",
    "available_estimators",
    "available_models",
    "available_studies",
    "collect_entry_points",
    "get_attack",
    "get_dataset",
    "get_estimator",
    "get_model",
    "get_study",
    "name_of",
    "refresh",
    "register_attack",
    "register_dataset",
    "register_estimator",
    "register_model",
    "register_study",
    "resolve_estimator",
]

_BUILTIN_PREFIX = "idprops."


class PluginWarning(UserWarning):
    """A plugin entry point could not be loaded, or clashed with another."""


def _is_builtin(ep: importlib.metadata.EntryPoint) -> bool:
    dist = getattr(ep, "dist", None)
    if dist is not None:
        # Not by module: a plugin may point at an object inside idprops.
        return dist.name == "idprops"
    # An entry point made by hand belongs to no distribution.
    return ep.value.split(":")[0].startswith(_BUILTIN_PREFIX)


def _source(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    where = f" (distribution {dist.name!r})" if dist is not None else ""
    return f"{ep.value!r}{where}"


def collect_entry_points(
    entry_points: Iterable[importlib.metadata.EntryPoint],
) -> dict[str, importlib.metadata.EntryPoint]:
    """Choose one entry point per name, warning about clashes.

    Parameters
    ----------
    entry_points : iterable of importlib.metadata.EntryPoint
        The entry points of one group, from any number of distributions.

    Returns
    -------
    dict
        Name to the entry point that wins it: the built-in one (declared by the
        ``idprops`` distribution, or pointing inside ``idprops`` when it belongs to
        none) if any, else the first by value.

    Examples
    --------
    >>> from importlib.metadata import EntryPoint
    >>> eps = [EntryPoint("mle", "idprops.estimators.mle:MLEDimension", "g")]
    >>> sorted(collect_entry_points(eps))
    ['mle']
    """
    by_name: dict[str, list[importlib.metadata.EntryPoint]] = {}
    for ep in entry_points:
        by_name.setdefault(ep.name, []).append(ep)
    chosen = {}
    for name, candidates in by_name.items():
        # Identical declarations (one distribution seen twice on sys.path) are not a clash.
        unique = list({ep.value: ep for ep in candidates}.values())
        unique.sort(key=lambda ep: (not _is_builtin(ep), ep.value))
        winner = unique[0]
        if len(unique) > 1:
            others = ", ".join(_source(ep) for ep in unique[1:])
            warnings.warn(
                f"idprops: the name {name!r} is declared by {_source(winner)} and by "
                f"{others}; using {_source(winner)}. Rename the plugin's entry point "
                "to use both.",
                PluginWarning,
                stacklevel=2,
            )
        chosen[name] = winner
    return chosen


class _Registry:
    """Names to objects for one entry-point group, plus runtime registrations."""

    def __init__(self, group: str, kind: str) -> None:
        self.group = group
        self.kind = kind
        self._article = "an" if kind[0] in "aeiou" else "a"
        self._entry_points: dict[str, importlib.metadata.EntryPoint] | None = None
        self._loaded: dict[str, Any] = {}
        self._failed: dict[str, BaseException] = {}
        self._runtime: dict[str, Any] = {}

    def refresh(self) -> None:
        self._entry_points = None
        self._loaded.clear()
        self._failed.clear()

    def _discover(self) -> dict[str, importlib.metadata.EntryPoint]:
        if self._entry_points is None:
            self._entry_points = collect_entry_points(importlib.metadata.entry_points(group=self.group))
        return self._entry_points

    def _load(self, name: str) -> Any:
        if name in self._loaded:
            return self._loaded[name]
        if name in self._failed:
            raise self._failed[name]
        ep = self._discover()[name]
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must never break the others
            error = ImportError(
                f"idprops: the {self.kind} {name!r} ({_source(ep)}) failed to load: {type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
            self._failed[name] = error
            warnings.warn(str(error), PluginWarning, stacklevel=3)
            raise error from exc
        self._loaded[name] = obj
        return obj

    def available(self) -> list[str]:
        names = []
        for name in self._discover():
            try:
                self._load(name)
            except ImportError:
                continue
            names.append(name)
        return sorted(set(names) | set(self._runtime))

    def get(self, name: str) -> Any:
        if not isinstance(name, str):
            raise TypeError(f"{self._article} {self.kind} name must be a string, got {type(name).__name__}")
        if name in self._runtime:
            return self._runtime[name]
        if name in self._discover():
            return self._load(name)
        known = ", ".join(self.available()) or "none"
        worker = ""
        process = multiprocessing.current_process().name
        if process != "MainProcess":
            worker = (
                f" This runs in a worker process ({process}), which sees the entry points of "
                f"installed packages but not what register_{self.kind} added in the process "
                f"that started it: declare {name!r} in the {self.group!r} entry-point group "
                "of an installed package (see the plugins guide), or run with n_jobs=1."
            )
        raise ValueError(
            f"unknown {self.kind} {name!r}; available: {known}. A plugin adds one "
            f"through the {self.group!r} entry-point group.{worker}"
        )

    def register(self, name: str, obj: Any, *, replace: bool = False) -> None:
        if not replace and (name in self._runtime or name in self._discover()):
            raise ValueError(
                f"{self._article} {self.kind} named {name!r} is already registered; pass "
                "replace=True to replace it in this session."
            )
        self._runtime[name] = obj


_ESTIMATORS = _Registry("idprops.estimators", "estimator")
_MODELS = _Registry("idprops.models", "model")
_DATASETS = _Registry("idprops.datasets", "dataset")
_ATTACKS = _Registry("idprops.attacks", "attack")
_STUDIES = _Registry("idprops.studies", "study")
_REGISTRIES = {
    "estimator": _ESTIMATORS,
    "model": _MODELS,
    "dataset": _DATASETS,
    "attack": _ATTACKS,
    "study": _STUDIES,
}


def refresh() -> None:
    """Forget cached entry points so that newly installed plugins are seen.

    Runtime registrations are kept.

    Examples
    --------
    >>> refresh()
    """
    for registry in _REGISTRIES.values():
        registry.refresh()


def get_estimator(name: str) -> type:
    """Return the estimator class registered under ``name``.

    Parameters
    ----------
    name : str
        A built-in name (``"mle"``, ``"twonn"``, ``"sharpness"``, ``"repr"``), a
        plugin's entry point in the ``idprops.estimators`` group, or a name given to
        :func:`register_estimator`. See :func:`available_estimators`.

    Returns
    -------
    type
        The class itself, unfitted and without parameters applied; for a name with
        parameters (``"mle:k=10"``) use :func:`resolve_estimator`.

    Raises
    ------
    ValueError
        If no estimator has that name (the message lists those that do).

    Examples
    --------
    >>> get_estimator("mle").__name__
    'MLEDimension'
    """
    return _ESTIMATORS.get(name)


def available_estimators() -> list[str]:
    """Names of every estimator that loads, built-in and plugin, sorted.

    Examples
    --------
    >>> "twonn" in available_estimators()
    True
    """
    return _ESTIMATORS.available()


def register_estimator(name: str, cls: type, *, replace: bool = False) -> None:
    """Register an estimator class under ``name`` for this session.

    The registration lives in this process only: worker processes of a study
    (``n_jobs`` > 1) do not see it; declare an entry point (see the plugins guide) or
    run with ``n_jobs=1``.

    Parameters
    ----------
    name : str
        The name to use in :func:`get_estimator`, :func:`resolve_estimator`, study
        files and the CLI.
    cls : type
        The estimator class (scikit-learn style: parameters in ``__init__``). The
        name refers to the class, with its own defaults: parameters are given where
        the name is used, as ``"name:k=10"``.
    replace : bool, default=False
        Allow a name that is already registered (a built-in or a plugin's
        included) to refer to this object instead, in this session.

    Raises
    ------
    ValueError
        If ``name`` is already registered and ``replace`` is False.

    Examples
    --------
    A name for MLE, used with k = 10 (the name alone would give MLE's default, k = 20):

    >>> from idprops import MLEDimension
    >>> register_estimator("my_mle", MLEDimension, replace=True)
    >>> resolve_estimator("my_mle:k=10").k, resolve_estimator("my_mle").k
    (10, 20)

    A name whose default is k = 10: register a subclass that says so.

    >>> class MLE10(MLEDimension):
    ...     def __init__(self, k=10, *, aggregation="inverse", unbiased=True,
    ...                  n_queries=None, backend="auto", random_state=None):
    ...         super().__init__(k=k, aggregation=aggregation, unbiased=unbiased,
    ...                          n_queries=n_queries, backend=backend, random_state=random_state)
    >>> register_estimator("mle_k10", MLE10, replace=True)
    >>> resolve_estimator("mle_k10").k
    10
    """
    _ESTIMATORS.register(name, cls, replace=replace)


def resolve_estimator(spec: Any, **params: Any) -> Any:
    """Turn a name, a class or an instance into an unfitted estimator instance.

    Parameters
    ----------
    spec : str, type or estimator
        A registered name, optionally with parameters as :func:`idprops.parsing.parse_spec`
        reads them (``"mle:k=10"``), an estimator class, or an instance (cloned, so
        the caller's object is never fitted behind its back).
    **params
        Parameters for the constructor (or ``set_params`` of the clone); they win
        over those written in ``spec``. A parameter the estimator does not take is
        an error that names the estimator and lists its parameters.

    Examples
    --------
    >>> resolve_estimator("mle", k=10).k
    10
    >>> resolve_estimator("mle:k=10,aggregation=mean").aggregation
    'mean'
    """
    from sklearn.base import clone

    from .parsing import check_parameters, parse_spec

    if isinstance(spec, str):
        name, written = parse_spec(spec)
        spec, params = get_estimator(name), {**written, **params}
        check_parameters(name, spec, params)
    if isinstance(spec, type):
        check_parameters(spec.__name__, spec, params)
        return spec(**params)
    check_parameters(type(spec).__name__, type(spec), params)
    return clone(spec).set_params(**params)


def get_model(name: str) -> Any:
    """Return the model factory registered under ``name``.

    Parameters
    ----------
    name : str
        A built-in model (``"resnet18"``, ``"small_cnn"``, ...), a plugin's entry
        point in the ``idprops.models`` group, or a name given to
        :func:`register_model`. See :func:`available_models`.

    Returns
    -------
    callable
        ``factory(*, in_channels, num_classes, input_size, weights=None, **kwargs)``
        returning a ``torch.nn.Module``.

    Raises
    ------
    ValueError
        If no model has that name (the message lists those that do).

    Examples
    --------
    >>> callable(get_model("mlp1x512"))
    True
    """
    return _MODELS.get(name)


def available_models() -> list[str]:
    """Names of every model factory that loads, sorted.

    Examples
    --------
    >>> "resnet18" in available_models()
    True
    """
    return _MODELS.available()


def register_model(name: str, factory: Any, *, replace: bool = False) -> None:
    """Register a model factory under ``name`` for this session.

    The registration lives in this process only (see :func:`register_estimator`).

    Parameters
    ----------
    name : str
        The name to use in :func:`get_model`, study files and the CLI.
    factory : callable
        Called with keyword arguments (``in_channels``, ``num_classes``,
        ``input_size``, ...) and returning a ``torch.nn.Module``.
    replace : bool, default=False
        Allow a name that is already registered (a built-in or a plugin's
        included) to refer to this object instead, in this session.

    Raises
    ------
    ValueError
        If ``name`` is already registered and ``replace`` is False.

    Examples
    --------
    >>> import torch
    >>> register_model("tiny_linear", lambda **kw: torch.nn.Linear(4, 2), replace=True)
    >>> get_model("tiny_linear")().out_features
    2
    """
    _MODELS.register(name, factory, replace=replace)


def get_dataset(name: str) -> Any:
    """Return the dataset loader registered under ``name``.

    Parameters
    ----------
    name : str
        A built-in dataset (``"digits"``, ``"mnist"``, ``"cifar10"``, ...), a plugin's
        entry point in the ``idprops.datasets`` group, or a name given to
        :func:`register_dataset`. See :func:`available_datasets`.

    Returns
    -------
    callable
        ``loader(*, root=None, train=True, download=False, classes=None, n=None,
        seed=0, scale="unit", ...)`` returning a torch Dataset of ``(image, label)``.

    Raises
    ------
    ValueError
        If no dataset has that name (the message lists those that do).

    Examples
    --------
    >>> callable(get_dataset("digits"))
    True
    """
    return _DATASETS.get(name)


def available_datasets() -> list[str]:
    """Names of every dataset loader that loads, sorted.

    Examples
    --------
    >>> "digits" in available_datasets()
    True
    """
    return _DATASETS.available()


def register_dataset(name: str, loader: Any, *, replace: bool = False) -> None:
    """Register a dataset loader under ``name`` for this session.

    The registration lives in this process only (see :func:`register_estimator`).

    Parameters
    ----------
    name : str
        The name to use in :func:`get_dataset`, study files and the CLI.
    loader : callable
        Called with keyword arguments (``train``, ``classes``, ``n``, ``seed``, ...)
        and returning the data: a torch Dataset of ``(image, label)``.
    replace : bool, default=False
        Allow a name that is already registered (a built-in or a plugin's
        included) to refer to this object instead, in this session.

    Raises
    ------
    ValueError
        If ``name`` is already registered and ``replace`` is False.

    Examples
    --------
    >>> import numpy as np
    >>> register_dataset("zeros", lambda **kw: (np.zeros((3, 2)), np.arange(3)), replace=True)
    >>> get_dataset("zeros")()[0].shape
    (3, 2)
    """
    _DATASETS.register(name, loader, replace=replace)


def get_attack(name: str) -> type:
    """Return the attack class registered under ``name``.

    Parameters
    ----------
    name : str
        A built-in name (``"fgsm"``, ``"pgd"``), a plugin's entry point in the
        ``idprops.attacks`` group, or a name given to :func:`register_attack`. See
        :func:`available_attacks`.

    Returns
    -------
    type
        The class itself; its instances are called as ``attack(model, x, y)`` and
        return the perturbed inputs.

    Raises
    ------
    ValueError
        If no attack has that name (the message lists those that do).

    Examples
    --------
    >>> get_attack("pgd").__name__
    'PGD'
    """
    return _ATTACKS.get(name)


def available_attacks() -> list[str]:
    """Names of every attack that loads, built-in and plugin, sorted.

    Examples
    --------
    >>> available_attacks()[:2]
    ['fgsm', 'pgd']
    """
    return _ATTACKS.available()


def register_attack(name: str, cls: type, *, replace: bool = False) -> None:
    """Register an attack class under ``name`` for this session.

    The registration lives in this process only: worker processes of a study
    (``n_jobs`` > 1) do not see it; declare an entry point in the ``idprops.attacks``
    group (see the plugins guide) or run with ``n_jobs=1``.

    Parameters
    ----------
    name : str
        The name to use in :func:`get_attack` and in study files' ``attack`` entries.
    cls : type
        The attack class: parameters in ``__init__``, and ``attack(model, x, y)``
        returns the perturbed inputs.
    replace : bool, default=False
        Allow a name that is already registered (a built-in or a plugin's
        included) to refer to this class instead, in this session.

    Raises
    ------
    ValueError
        If ``name`` is already registered and ``replace`` is False.

    Examples
    --------
    >>> from idprops.nn import FGSM
    >>> register_attack("fgsm_alias", FGSM, replace=True)
    >>> get_attack("fgsm_alias") is FGSM
    True
    """
    _ATTACKS.register(name, cls, replace=replace)


def get_study(name: str) -> type:
    """Return the study class registered under ``name`` (its ``kind``).

    Parameters
    ----------
    name : str
        A built-in kind (``"scaling-law"``, ``"robustness"``, ``"dynamics"``,
        ``"grokking"``, ``"randomization"``), a plugin's entry point in the
        ``idprops.studies`` group, or a name given to :func:`register_study`. See
        :func:`available_studies`.

    Returns
    -------
    type
        The class itself, a :class:`~idprops.studies.Study`: ``Study(**params).run(store)``.

    Raises
    ------
    ValueError
        If no study has that name (the message lists those that do).

    Examples
    --------
    >>> get_study("scaling-law").__name__
    'ScalingLawStudy'
    """
    return _STUDIES.get(name)


def available_studies() -> list[str]:
    """Names of every study that loads, built-in and plugin, sorted.

    Examples
    --------
    >>> "robustness" in available_studies()
    True
    """
    return _STUDIES.available()


def register_study(name: str, cls: type, *, replace: bool = False) -> None:
    """Register a study class under ``name`` for this session.

    The registration lives in this process only: ``idprops study NAME`` in another
    process does not see it; declare an entry point in the ``idprops.studies`` group
    (see the plugins guide) for that.

    Parameters
    ----------
    name : str
        The name to use in :func:`get_study` and as a study file's ``kind``.
    cls : type
        A :class:`~idprops.studies.Study` subclass.
    replace : bool, default=False
        Allow a name that is already registered (a built-in or a plugin's
        included) to refer to this class instead, in this session.

    Raises
    ------
    ValueError
        If ``name`` is already registered and ``replace`` is False.

    Examples
    --------
    >>> from idprops.studies import ScalingLawStudy
    >>> register_study("scaling-alias", ScalingLawStudy, replace=True)
    >>> get_study("scaling-alias") is ScalingLawStudy
    True
    """
    _STUDIES.register(name, cls, replace=replace)


def name_of(obj: Any, kind: str) -> str | None:
    """The name under which ``obj`` (a class, a factory, or an instance of a class) is
    registered as a ``kind`` (``"estimator"``, ``"model"``, ``"dataset"``, ``"attack"``
    or ``"study"``); None when it is not.

    Entry points come first, in sorted order of their names, then runtime
    registrations: the answer never depends on the order entry points are found in,
    and an alias registered in a session does not rename a built-in.

    Examples
    --------
    >>> from idprops import MLEDimension
    >>> name_of(MLEDimension(k=5), "estimator")
    'mle'
    """
    registry = _REGISTRIES[kind]
    target = obj if isinstance(obj, type) or inspect.isroutine(obj) else type(obj)
    for name in sorted(registry._discover()):
        try:
            if registry._load(name) is target:
                return name
        except ImportError:
            continue
    for name, candidate in registry._runtime.items():
        if candidate is target:
            return name
    return None
