"""The steps a study's cell is made of: load data, build and train a model, measure, attack.

Each step takes plain values (a cell's configuration is JSON) and returns plain
results, so that a cell recipe reads as the list of its steps. The recipes themselves
live with their studies.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .specs import build_attack

__all__ = [
    "attack_model",
    "build_network",
    "cell_session",
    "check_datasets",
    "check_layers",
    "download_data",
    "epoch_history",
    "first_step_at_least",
    "id_history",
    "id_tracker",
    "load_data",
    "measure_dataset",
    "merge_by_step",
    "train_model",
]

# --------------------------------------------------------------------------- a cell's session


@contextlib.contextmanager
def cell_session(seed: int, device: str = "auto", threads: int | None = None) -> Iterator[None]:
    """Run a cell's body seeded (torch, numpy, Python) and with ``threads`` torch threads.

    Both are restored afterwards, so cells that run one after another in the same
    process do not see each other's settings. ``threads`` None leaves torch's setting.

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with cell_session(0, "cpu", threads=1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    import torch

    from ..nn import seeded

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        with seeded(int(seed), device):
            yield
    finally:
        torch.set_num_threads(previous)


# --------------------------------------------------------------------------- data


def load_data(data: Mapping[str, Any], *, train: bool, n: int | None, seed: int):
    """The training or test images of a cell's ``data`` table (:meth:`DataSpec.config`).

    The test images come from ``test_root`` when the entry has one (all of them: a
    separate folder is its own test split), else from the dataset's test split.

    Examples
    --------
    >>> from idprops.studies.specs import DataSpec
    >>> len(load_data(DataSpec("digits", [0, 1]).config(), train=True, n=40, seed=0))
    40
    """
    from ..data import load_dataset
    from ..registry import get_dataset

    name, root = data["name"], data.get("root")
    if not train and data.get("test_root") is not None:
        root, train = data["test_root"], None  # the whole of a separate test folder
        try:
            get_dataset(name)
        except ValueError:  # the name is the training folder's path: the test folder replaces it
            name = "folder"
    kwargs: dict[str, Any] = {"train": train, "n": n, "seed": seed}
    # Left out at their defaults, so that a plugin's loader need not take them.
    if data.get("classes") is not None:
        kwargs["classes"] = data["classes"]
    if data.get("scale", "unit") != "unit":
        kwargs["scale"] = data["scale"]
    if root is not None:
        # Expanded here, not in the configuration, so that "~/data" names the same cell anywhere.
        kwargs["root"] = os.path.expanduser(root)
    dataset = load_dataset(name, **kwargs)
    if getattr(dataset, "targets", ()) is None:
        raise ValueError(
            f"the dataset {name!r} has no labels (a folder of images without class subfolders, "
            "or arrays saved without y): a study trains networks on labelled data; sort the "
            "images into one subfolder per class (idprops measure measures unlabelled data)."
        )
    return dataset


def download_data(datasets: Sequence[Any]) -> list[str]:
    """Fetch the files of every :class:`~idprops.studies.specs.DataSpec` with
    ``download`` set into its ``root``.

    torchvision's own download runs once here, before any cell, so that cells (and
    parallel workers) only read local files. Files already there are kept, and a
    dataset without a download (bundled data, image folders) is left as it is.

    Returns
    -------
    list of str
        The names of the datasets fetched or found complete.

    Examples
    --------
    >>> from idprops.studies.specs import DataSpec
    >>> download_data([DataSpec("digits", download=True)])  # bundled: nothing to fetch
    ['digits']
    """
    from ..data import load_dataset

    done, seen = [], set()
    for entry in datasets:
        if not entry.download or (entry.name, entry.root) in seen:
            continue
        seen.add((entry.name, entry.root))
        kwargs: dict[str, Any] = {"download": True, "train": None, "n": 1}
        if entry.root is not None:
            kwargs["root"] = os.path.expanduser(entry.root)
        # Both parts, read once: torchvision fetches what is missing and checks the files.
        load_dataset(entry.name, **kwargs)
        done.append(entry.name)
    return done


# --------------------------------------------------------------------------- models


def build_network(model: Mapping[str, Any], dropout: float | None = None, **shape: Any):
    """Build ``model`` (``{"name", "params"}``) for data of ``shape`` (``in_channels``,
    ``num_classes``, ``input_size``), with ``dropout`` when a study sets it.

    A set dropout is always passed, 0 included: left out, the factory's own default
    would run while the cell reports 0. A factory that takes no dropout argument is
    built without one when the dropout is 0, and refused otherwise.

    Examples
    --------
    >>> net = build_network({"name": "small_cnn", "params": {}}, 0.5, in_channels=1,
    ...                     num_classes=2, input_size=8)
    >>> type(net).__name__
    'SmallCNN'
    """
    from ..nn import build_model

    if dropout is None:
        return build_model(model["name"], **shape, **model["params"])
    try:
        return build_model(model["name"], **shape, **model["params"], dropout=dropout)
    except TypeError as exc:
        if "dropout" not in str(exc):
            raise
        if dropout:
            raise ValueError(
                f"model {model['name']!r} takes no dropout argument; sweep dropout with a model "
                "that has one, such as small_cnn"
            ) from exc
        return build_model(model["name"], **shape, **model["params"])


def check_datasets(datasets: Sequence[Any]) -> None:
    """Read the test split of every :class:`~idprops.studies.specs.DataSpec` once, before
    any cell, and report every one that cannot be read in one error.

    A study of four datasets without their files used to name the first one only, once
    its first cell had started.

    Examples
    --------
    >>> from idprops.studies.specs import DataSpec
    >>> check_datasets([DataSpec("digits"), DataSpec("mnist", root="/nowhere/a"),
    ...                 DataSpec("cifar10", root="/nowhere/b")])
    Traceback (most recent call last):
    ...
    FileNotFoundError: 2 of 3 datasets cannot be read: mnist: ... in /nowhere/a/MNIST/raw: ...; cifar10: ... in /nowhere/b/cifar-10-batches-py: ...
    """
    problems, seen = [], set()
    for entry in datasets:
        if (entry.name, entry.root, entry.test_root) in seen:
            continue
        seen.add((entry.name, entry.root, entry.test_root))
        try:
            load_data(entry.config(), train=False, n=None, seed=0)
        except (OSError, ValueError, RuntimeError) as exc:
            problems.append(f"{entry.name}: {str(exc).rstrip('.')}")
    if problems:
        raise FileNotFoundError(f"{len(problems)} of {len(seen)} datasets cannot be read: " + "; ".join(problems))


def check_layers(
    data: Mapping[str, Any],
    model: Mapping[str, Any],
    layers: Sequence[str],
    dropout: float | None = None,
    what: str = "tracking.layers",
) -> list[str]:
    """The dotted names of ``layers`` in the model the cells will build.

    The model is built once (with ``dropout``, as :func:`build_network`), for the shape
    and classes of the test split of ``data`` (a cell's ``data`` table), so that a
    misspelt layer or a model that cannot be built fails when the grid is built, naming
    the model's layers, instead of in every cell after its data have loaded.

    Examples
    --------
    >>> from idprops.studies.specs import DataSpec
    >>> check_layers(DataSpec("digits").config(), {"name": "mlp1x512", "params": {}}, ["relu1"])
    ['relu1']
    >>> check_layers(DataSpec("digits").config(), {"name": "mlp1x512", "params": {}}, ["relu9"])
    Traceback (most recent call last):
    ...
    ValueError: tracking.layers: ... the top-level layers of 'mlp1x512' are [...]
    """
    import torch

    from ..activations import resolve_layer
    from ..data import labels_of

    test = load_data(data, train=False, n=None, seed=0)
    channels, *size = tuple(test[0][0].shape)
    # Building initialises weights from torch's global generator: leave the caller's alone.
    with torch.random.fork_rng(devices=[]):
        net = build_network(
            model, dropout, in_channels=channels, num_classes=int(np.max(labels_of(test))) + 1, input_size=tuple(size)
        )
    names = []
    for layer in layers:
        if not isinstance(layer, str):
            raise ValueError(f"{what}: {layer!r} is not a layer name; give dotted names such as 'layer4'")
        try:
            names.append(resolve_layer(net, layer)[0])
        except ValueError as exc:
            top = [name for name, _ in net.named_children()]
            raise ValueError(f"{what}: {exc}; the top-level layers of {model['name']!r} are {top}") from None
    return names


def id_tracker(tracking: Mapping[str, Any], *, seed: int, **kwargs: Any):
    """The :class:`~idprops.nn.callbacks.ActivationIDTracker` of a cell's ``tracking``
    table (:meth:`~idprops.studies.specs.Tracking.config`): its layers, estimator,
    ``n_samples`` and ``min_distinct`` (where the table has it), sampled with ``seed``;
    ``kwargs`` go to the tracker (``every``, ``data``, ...).

    Examples
    --------
    >>> tracking = {"layers": ["relu1"], "estimator": {"name": "twonn", "params": {}}, "n_samples": 100}
    >>> id_tracker(tracking, seed=0, every=2).every
    2
    """
    from ..nn.callbacks import ActivationIDTracker
    from ..registry import resolve_estimator

    spec = tracking["estimator"]
    return ActivationIDTracker(
        tracking["layers"],
        estimator=resolve_estimator(spec["name"], **spec["params"]),
        n_samples=int(tracking["n_samples"]),
        random_state=seed,
        **({"min_distinct": tracking["min_distinct"]} if "min_distinct" in tracking else {}),
        **kwargs,
    )


def train_model(model, train, val=None, *, training: Mapping[str, Any], seed: int, device: str, callbacks=()):
    """Train ``model`` on ``train`` (validating on ``val``) with the cell's Trainer arguments.

    Returns the fitted :class:`~idprops.nn.Trainer` (its ``history`` and ``step``).

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.randn(20, 4), torch.arange(20) % 2)
    >>> trainer = train_model(torch.nn.Linear(4, 2), data, training={"epochs": 2, "batch_size": 10},
    ...                       seed=0, device="cpu")
    >>> trainer.step, len(trainer.history)
    (4, 2)
    """
    from ..nn import Trainer

    trainer = Trainer(model, seed=seed, device=device, progress=False, callbacks=list(callbacks), **training)
    return trainer.fit(train, val)


# --------------------------------------------------------------------------- measurements


def measure_dataset(
    data,
    *,
    estimators: Mapping[str, Mapping[str, Any]] | None,
    sharpness: Mapping[str, Any] | None,
    seed: int,
    notes: list[str],
    model=None,
    representation: Mapping[str, Any] | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Measure a cell's ``data`` with :func:`~idprops.studies.measure.measure`: d_data by
    each estimator (label -> ``{"name", "params"}``, one kNN search for all), K_F when
    ``sharpness`` (``{"M": ...}``) is given, and d_repr of ``model`` at the layers of
    ``representation`` (``{"layers": [...], "estimator": {...}}``).

    Returns the fields a cell records (:func:`~idprops.studies.measure.measurement_fields`);
    a failed estimate is NaN, its reason appended to ``notes``.

    Examples
    --------
    >>> from idprops.data import sample_sphere
    >>> X = sample_sphere(400, 2, random_state=0)
    >>> notes = []
    >>> fields = measure_dataset((X, None), estimators={"twonn": {"name": "twonn", "params": {}}},
    ...                          sharpness=None, seed=0, notes=notes)
    >>> round(fields["d_data"]["twonn"]), notes
    (2, [])
    """
    from .measure import measure, measurement_fields

    rep = representation or {}
    measured = measure(
        data,
        estimators=estimators or {},
        sharpness=sharpness is not None,
        sharpness_samples=(sharpness or {}).get("M", 1000),
        model=model if rep else None,
        layers=rep.get("layers", ()),
        repr_estimator=rep.get("estimator"),
        device=device,
        seed=seed,
        progress=False,
    )
    notes.extend(measured["warnings"])
    return measurement_fields(measured)


# --------------------------------------------------------------------------- attacks


def attack_model(model, test, attacks: Mapping[str, Mapping[str, Any]], *, device: str) -> dict[str, Any]:
    """``robust_accuracy``, ``adversarial_loss`` and ``loss_increase`` (per attack label)
    of ``model`` on ``test`` under each attack (label -> ``{"name", "params"}``).

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> test = TensorDataset(torch.rand(8, 1, 2, 2), torch.zeros(8, dtype=torch.long))
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> out = attack_model(model, test, {"fgsm": {"name": "fgsm", "params": {"eps": 0.0}}}, device="cpu")
    >>> out["loss_increase"]["fgsm"]
    0.0
    """
    from ..nn import robust_accuracy

    out: dict[str, Any] = {"robust_accuracy": {}, "adversarial_loss": {}, "loss_increase": {}}
    for label, step in attacks.items():
        res = robust_accuracy(model, test, build_attack(step["name"], step["params"]), device=device)
        out["robust_accuracy"][label] = res["robust_accuracy"]
        out["adversarial_loss"][label] = res["adversarial_loss"]
        out["loss_increase"][label] = res["adversarial_loss"] - res["clean_loss"]
    return out


# --------------------------------------------------------------------------- training records


def epoch_history(history: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """The Trainer's per-epoch history, ``epoch`` as epochs done (1 after the first).

    Examples
    --------
    >>> epoch_history([{"epoch": 0, "step": 5, "train_loss": 0.5}], ["train_loss", "val_loss"])
    [{'epoch': 1, 'step': 5, 'train_loss': 0.5, 'val_loss': nan}]
    """
    return [{"epoch": h["epoch"] + 1, "step": h["step"], **{k: h.get(k, math.nan) for k in keys}} for h in history]


def first_step_at_least(steps: Sequence[int], values: Sequence[float], threshold: float) -> int | None:
    """The first step whose value is at least ``threshold`` (None if none is).

    Examples
    --------
    >>> first_step_at_least([0, 10, 20], [0.1, 0.95, 0.9], 0.9)
    10
    >>> first_step_at_least([0, 10], [0.1, 0.2], 0.9) is None
    True
    """
    for step, value in zip(steps, values):
        if value is not None and value >= threshold:
            return int(step)
    return None


def merge_by_step(*record_lists: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Merge lists of records keyed by ``step`` into one list sorted by step.

    Examples
    --------
    >>> merge_by_step([{"step": 0, "a": 1}, {"step": 5, "a": 2}], [{"step": 5, "b": 3}])
    [{'step': 0, 'a': 1}, {'step': 5, 'a': 2, 'b': 3}]
    """
    merged: dict[int, dict[str, Any]] = {}
    for records in record_lists:
        for rec in records:
            merged.setdefault(int(rec["step"]), {}).update(rec)
    return [merged[s] for s in sorted(merged)]


def id_history(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The tracker's records as stored by the studies: ``step``, ``epoch``, ``ids``
    (layer -> ID), ``ids_distinct`` (layer -> distinct activation vectors of the
    ``n_points`` sampled), ``ids_flagged`` (IDs from too few distinct points, NaN in
    ``ids``), ``llid``, ``pid``, ``log_pid_llid`` and ``seconds`` of each evaluation
    (ready for :func:`idprops.plotting.plot_id_curves`).

    Examples
    --------
    >>> recs = [{"step": 0, "epoch": 0, "ids": {"a": 4.0, "b": 2.0}, "ids_std": {}, "llid": 2.0,
    ...          "pid": 4.0, "log_pid_llid": 0.69, "seconds": 0.1, "ids_distinct": {"a": 90, "b": 100},
    ...          "ids_flagged": {}, "n_points": 100}]
    >>> sorted(id_history(recs)[0])  # doctest: +NORMALIZE_WHITESPACE
    ['epoch', 'ids', 'ids_distinct', 'ids_flagged', 'llid', 'log_pid_llid', 'n_points', 'pid',
     'seconds', 'step']
    """
    keys = ("step", "epoch", "ids", "ids_distinct", "ids_flagged", "n_points", "llid", "pid", "log_pid_llid", "seconds")
    return [{k: r[k] for k in keys} for r in records]
