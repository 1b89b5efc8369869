"""Training callbacks: :class:`ActivationIDTracker`, the intrinsic dimension of every
chosen layer's activations through training (Brown et al., 2022).

The tracker measures, on a fixed sample of inputs, each layer's intrinsic dimension
(ID), and the two summaries of the paper:

- LLID, last-layer ID: the ID of the last hidden layer, the one feeding the classifier;
- PID, peak ID: the largest ID over the tracked layers;

with ``log(PID / LLID)``, which tracks validation accuracy in the paper.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..activations import collect_activations, resolve_layer
from ..base import group_identical_rows
from ..registry import resolve_estimator
from .training import Callback, Trainer

__all__ = ["ActivationIDTracker", "LayerIDSummary", "layer_position", "llid_pid"]

_UNITS = ("epoch", "step")
#: Keys an evaluation adds to the logs of the hook it ran in (history, for epochs).
LOG_KEYS = ("ids", "llid", "pid", "log_pid_llid", "id_seconds")


class ActivationIDTracker(Callback):
    """Track the intrinsic dimension of layer activations during training.

    Before training (step 0), then every ``every`` epochs or optimizer steps, and once
    more at the end of training unless the last evaluation was of the final model, the
    tracker runs a fixed sample of ``n_samples`` inputs through the model ONCE, in
    eval mode and without gradients (the model's mode is restored afterwards), takes
    the flattened outputs of every layer in ``layers`` and fits a fresh dimension
    estimator on each. The sample is drawn once from ``random_state`` and its inputs
    are read once, so every evaluation sees exactly the same points (a dataset with
    random augmentation does not change them).

    Parameters
    ----------
    layers : sequence of str or torch.nn.Module
        The layers to track, input side first (dotted names as in
        ``model.named_modules()``, or module objects). Leave out the classifier:
        PID is the maximum over every layer given.
    estimator : str, class or estimator, default="twonn"
        Any registered dimension estimator (see
        :func:`idprops.registry.resolve_estimator`); TwoNN as in the paper.
    every : int, default=1
        Evaluate after every this many ``unit``\\ s.
    unit : {"epoch", "step"}, default="epoch"
    n_samples : int, default=1000
        Size of the fixed sample (all of the data if they are fewer).
    data : torch Dataset, DataLoader, array or tensor, optional
        Where the sample is drawn from; default: the trainer's training data
        (its dataset, for a DataLoader). Items may be ``(input, label)`` pairs or
        inputs alone.
    last_hidden : str or torch.nn.Module, optional
        The LLID layer, one of ``layers``; default: the last of ``layers``.
    n_subsets : int, default=1
        Number of random subsets of ``subset_fraction`` of the sample on which each ID
        is estimated; the record holds their mean and standard deviation. The paper
        uses 20 subsets of 90 %; the default of 1 (the whole sample, no subsetting)
        costs 20 times less and its std is the estimator's own
        (``dimension_std_``), NaN if it has none. The subsets are the same at every
        evaluation.
    subset_fraction : float, default=0.9
    at_start : bool, default=True
        Also evaluate in ``on_train_begin``, before the first step (not when a run
        resumes from a checkpoint past step 0).
    random_state : int, default=0
        Seeds the sample and the subsets.
    min_distinct : float in [0, 1], default=0.5
        Smallest share of the sample's activation vectors at a layer that must be
        distinct for its ID to count. Exact duplicates are dropped before estimating
        (a network that maps many inputs to one vector leaves few points), and an ID
        from fewer distinct points than ``min_distinct`` times the sample is flagged:
        it is kept in ``ids_flagged``, and ``ids`` holds NaN for it, so that it stays
        out of LLID, PID and every fit or correlation made from the records. 0 flags
        nothing.
    batch_size : int, default=256
        Of the forward passes.
    store : idprops.studies.store.ResultsStore, optional
        Each evaluation is also written there, under ``{**store_config, "step": step}``.
    store_config : mapping, optional
        What identifies this run in the store (its study cell's configuration).
    log_dir : str, optional
        TensorBoard folder: scalars ``id/<layer>``, ``id/LLID``, ``id/PID``,
        ``id/log_PID_LLID`` against the step, written when the ``tensorboard`` package
        is installed (a warning says so otherwise).

    Attributes
    ----------
    records_ : list of dict
        One record per evaluation: ``step`` (optimizer steps done), ``epoch`` (epochs
        completed: 0 before training, ``e + 1`` at the end of the history's epoch
        ``e``), ``ids`` (layer name to ID, in the order of ``layers``), ``ids_std``,
        ``ids_distinct`` (layer name to the number of distinct activation vectors of
        the ``n_points`` sampled), ``ids_flagged`` (layer name to the ID estimated from
        too few distinct points, see ``min_distinct``; NaN in ``ids``), ``llid``,
        ``pid``, ``log_pid_llid`` and ``seconds`` (wall time of the evaluation). A
        failed estimate (e.g. all activations equal) is NaN. The last record is
        always of the trained model, whatever ``every`` is.
    layer_names_ : list of str
    last_hidden_ : str
    sample_indices_ : ndarray of int
        Positions of the sample in the data.
    seconds_ : float
        Total time spent evaluating.
    share_ : float
        ``seconds_`` over the wall time of the whole :meth:`Trainer.fit` (evaluations
        included), set at the end of training: the tracker's cost.

    Notes
    -----
    What an evaluation adds to the trainer's logs: the keys ``ids``, ``llid``, ``pid``,
    ``log_pid_llid`` and ``id_seconds`` in the logs of the hook it ran in (so in
    ``trainer.history`` for ``unit="epoch"``), and every history entry gets
    ``id_records``, the records made since the previous epoch ended (the step-0 one
    in the first epoch). The evaluation at the end of training, when one is needed,
    joins the last history entry the same way, since it measures the model as that
    epoch left it.

    From a training loop of one's own (no :class:`Trainer`): ``start(model, data)``
    once, ``measure(model, step=...)`` whenever the IDs are wanted, ``finish()`` at
    the end; see :meth:`start`.

    Cost: one forward pass over the sample per evaluation, and one kNN search per
    layer (and per subset). With TwoNN on 1,000 points it is a fraction of a second
    per layer on a CPU; raise ``every`` or lower ``n_samples`` if ``share_`` is high.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from idprops.nn import Trainer
    >>> _ = torch.manual_seed(0)
    >>> data = TensorDataset(torch.randn(200, 5), torch.randint(0, 2, (200,)))
    >>> model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> tracker = ActivationIDTracker(["0", "1"], n_samples=100)
    >>> _ = Trainer(model, epochs=2, batch_size=50, callbacks=[tracker]).fit(data)
    >>> [r["step"] for r in tracker.records_]
    [0, 4, 8]
    >>> r = tracker.records_[-1]
    >>> r["llid"] == r["ids"]["1"], r["pid"] == max(r["ids"].values())
    (True, True)
    """

    def __init__(
        self,
        layers: Sequence[str | nn.Module],
        *,
        estimator: Any = "twonn",
        every: int = 1,
        unit: str = "epoch",
        n_samples: int = 1000,
        data: Any = None,
        last_hidden: str | nn.Module | None = None,
        n_subsets: int = 1,
        subset_fraction: float = 0.9,
        at_start: bool = True,
        random_state: int = 0,
        min_distinct: float = 0.5,
        batch_size: int = 256,
        store: Any = None,
        store_config: Mapping[str, Any] | None = None,
        log_dir: str | None = None,
    ) -> None:
        self.layers = layers
        self.estimator = estimator
        self.every = every
        self.unit = unit
        self.n_samples = n_samples
        self.data = data
        self.last_hidden = last_hidden
        self.n_subsets = n_subsets
        self.subset_fraction = subset_fraction
        self.at_start = at_start
        self.random_state = random_state
        self.min_distinct = min_distinct
        self.batch_size = batch_size
        self.store = store
        self.store_config = store_config
        self.log_dir = log_dir

    # ------------------------------------------------------------------ set-up

    def _validate(self, model: nn.Module) -> None:
        if self.unit not in _UNITS:
            raise ValueError(f"unit must be one of {_UNITS}, got {self.unit!r}.")
        for name in ("every", "n_samples", "n_subsets", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        if not 0 < self.subset_fraction <= 1:
            raise ValueError(f"subset_fraction must be in (0, 1], got {self.subset_fraction!r}.")
        if not 0 <= self.min_distinct <= 1:
            raise ValueError(f"min_distinct is a share of the sample, in [0, 1]; got {self.min_distinct!r}.")
        layers = [self.layers] if isinstance(self.layers, (str, nn.Module)) else list(self.layers)
        if not layers:
            raise ValueError("layers is empty: name at least one layer to track.")
        self.layer_names_ = [resolve_layer(model, layer)[0] for layer in layers]
        if len(set(self.layer_names_)) < len(self.layer_names_):
            raise ValueError(f"layers names a layer twice: {self.layer_names_}.")
        if self.last_hidden is None:
            self.last_hidden_ = self.layer_names_[-1]
        else:
            self.last_hidden_ = resolve_layer(model, self.last_hidden)[0]
            if self.last_hidden_ not in self.layer_names_:
                raise ValueError(
                    f"last_hidden={self.last_hidden_!r} is not one of the tracked layers "
                    f"{self.layer_names_}; add it to layers."
                )
        resolve_estimator(self.estimator)  # a bad name fails now, not after an epoch

    def _sample(self, data: Any) -> torch.Tensor:
        """Draw the fixed sample and read its inputs once."""
        if isinstance(data, DataLoader):
            data = data.dataset
        n = len(data)
        if n == 0:
            raise ValueError("the data to draw the tracker's sample from are empty.")
        rng = np.random.default_rng(self.random_state)
        if self.n_samples >= n:
            self.sample_indices_ = np.arange(n)
        else:
            self.sample_indices_ = np.sort(rng.choice(n, self.n_samples, replace=False))
        if isinstance(data, Dataset):
            items = [data[int(i)] for i in self.sample_indices_]
            items = [item[0] if isinstance(item, (tuple, list)) else item for item in items]
            return torch.stack([torch.as_tensor(x) for x in items])
        if isinstance(data, torch.Tensor):
            # Indexed where it lies: numpy reads neither a tensor on the GPU nor one that
            # requires grad, and the sample is a fixed input that no gradient flows back to.
            return data.detach()[self.sample_indices_]
        return torch.as_tensor(np.asarray(data)[self.sample_indices_])

    def _subsets(self, n: int) -> list[np.ndarray | None]:
        if self.n_subsets == 1:
            return [None]
        size = max(3, int(math.floor(self.subset_fraction * n)))
        rng = np.random.default_rng([self.random_state, 1])
        return [np.sort(rng.choice(n, min(size, n), replace=False)) for _ in range(self.n_subsets)]

    # ------------------------------------------------------------------ measuring

    def _estimate(self, activations: np.ndarray) -> tuple[float, float]:
        values, stds = [], []
        for rows in self._subsets(len(activations)):
            X = activations if rows is None else activations[rows]
            try:
                est = resolve_estimator(self.estimator).fit(X)
            except ValueError:
                # Degenerate activations (a dead layer: all rows equal) have no ID; the
                # research code records NaN, and so do we rather than stop training.
                values.append(math.nan)
                stds.append(math.nan)
                continue
            values.append(float(est.dimension_))
            stds.append(float(getattr(est, "dimension_std_", math.nan)))
        if len(values) == 1:
            return values[0], stds[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN subsets
            return float(np.nanmean(values)), float(np.nanstd(values))

    def start(self, model: nn.Module, data: Any = None, *, epoch: int = 0) -> ActivationIDTracker:
        """Get ready to measure ``model`` from a training loop of one's own.

        Checks the layers, draws the fixed sample from ``data`` (default: the
        ``data`` parameter) and clears the records; it measures nothing. Then call
        :meth:`measure` whenever the IDs are wanted (before the first step, for the
        paper's step 0) and :meth:`finish` once training ends. :class:`Trainer` calls
        the same three through the callback hooks.

        Parameters
        ----------
        model : torch.nn.Module
        data : torch Dataset, DataLoader, array or tensor, optional
            Where the sample is drawn from; required when the ``data`` parameter is None.
        epoch : int, default=0
            Epochs completed so far (a resumed run starts past 0).

        Returns
        -------
        self

        Examples
        --------
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> _ = torch.manual_seed(0)
        >>> data = TensorDataset(torch.randn(200, 5), torch.randint(0, 2, (200,)))
        >>> model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> tracker = ActivationIDTracker(["0", "1"], n_samples=100).start(model, data)
        >>> _ = tracker.measure(model, step=0)
        >>> for step in range(1, 5):
        ...     x, y = data[(step - 1) * 50 : step * 50]
        ...     optimizer.zero_grad()
        ...     torch.nn.functional.cross_entropy(model(x), y).backward()
        ...     optimizer.step()
        ...     if step % 2 == 0:
        ...         _ = tracker.measure(model, step=step)
        >>> tracker.finish()
        >>> [r["step"] for r in tracker.records_], list(tracker.records_[-1]["ids"])
        ([0, 2, 4], ['0', '1'])
        """
        data = self.data if data is None else data
        if data is None:
            raise ValueError("start needs the data to draw the tracker's sample from: pass data=.")
        self._validate(model)
        self.sample_ = self._sample(data)
        self.records_: list[dict[str, Any]] = []
        self._pending: list[dict[str, Any]] = []
        self.seconds_ = 0.0
        self.share_ = math.nan
        self._epochs_done = int(epoch)
        self._started = time.perf_counter()
        self._writer = None
        if self.log_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn(
                    "log_dir was given but the tensorboard package is not installed; "
                    "pip install tensorboard to get the curves there.",
                    stacklevel=2,
                )
            else:
                self._writer = SummaryWriter(self.log_dir)
        return self

    def finish(self) -> None:
        """Close the TensorBoard writer and set ``share_``; call once training ends.

        Examples
        --------
        See :meth:`start`.
        """
        total = time.perf_counter() - self._started
        self.share_ = self.seconds_ / total if total > 0 else math.nan
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def evaluate(self, trainer: Trainer) -> dict[str, Any]:
        """:meth:`measure` the trainer's model at its step (what the hooks call)."""
        return self.measure(trainer.model, step=trainer.step)

    def measure(self, model: nn.Module, *, step: int, epoch: int | None = None) -> dict[str, Any]:
        """Measure the IDs of ``model`` now and append the record to ``records_``.

        Parameters
        ----------
        model : torch.nn.Module
            The model being trained (measured in eval mode, its mode restored).
        step : int
            Optimizer steps done, the record's ``step``.
        epoch : int, optional
            Epochs completed, the record's ``epoch``; default: as last given.

        Returns
        -------
        dict
            The record (see ``records_``).

        Examples
        --------
        See :meth:`start`.
        """
        if not hasattr(self, "sample_"):
            raise ValueError("call start(model, data) before measure: it draws the sample.")
        if epoch is not None:
            self._epochs_done = int(epoch)
        start = time.perf_counter()
        activations = collect_activations(
            model, self.sample_, self.layer_names_, batch_size=self.batch_size, progress=False
        )
        ids, ids_std, distinct, flagged = {}, {}, {}, {}
        n_points = len(self.sample_)
        for name in self.layer_names_:
            A = activations[name]
            distinct[name] = len(group_identical_rows(A.reshape(len(A), -1))[0])
            ids[name], ids_std[name] = self._estimate(A)
            if distinct[name] < self.min_distinct * n_points:
                flagged[name], ids[name] = ids[name], math.nan
        if all(math.isnan(v) for v in ids.values()):
            llid = pid = ratio = math.nan
        else:
            summary = llid_pid(ids, self.last_hidden_)
            llid, pid, ratio = summary.llid, summary.pid, summary.log_ratio
        seconds = time.perf_counter() - start
        record = {
            "step": int(step),
            "epoch": int(self._epochs_done),
            "ids": ids,
            "ids_std": ids_std,
            "ids_distinct": distinct,
            "ids_flagged": flagged,
            "n_points": n_points,
            "llid": llid,
            "pid": pid,
            "log_pid_llid": ratio,
            "seconds": seconds,
        }
        self.records_.append(record)
        self._pending.append(record)
        self.seconds_ += seconds
        if self.store is not None:
            config = {**dict(self.store_config or {}), "step": record["step"]}
            self.store.put(config, {k: v for k, v in record.items() if k != "step"}, study="activation_ids")
        if self._writer is not None:
            for name, value in ids.items():
                self._writer.add_scalar(f"id/{name}", value, record["step"])
            self._writer.add_scalar("id/LLID", llid, record["step"])
            self._writer.add_scalar("id/PID", pid, record["step"])
            self._writer.add_scalar("id/log_PID_LLID", ratio, record["step"])
        return record

    @staticmethod
    def _to_logs(record: Mapping[str, Any], logs: dict[str, Any]) -> None:
        logs.update(
            ids=dict(record["ids"]),
            llid=record["llid"],
            pid=record["pid"],
            log_pid_llid=record["log_pid_llid"],
            id_seconds=record["seconds"],
        )

    # ------------------------------------------------------------------ hooks

    def on_train_begin(self, trainer: Trainer) -> None:
        self.start(trainer.model, trainer.train_data if self.data is None else self.data, epoch=trainer.epoch)
        if self.at_start and trainer.step == 0:
            self.evaluate(trainer)

    def on_step_end(self, trainer: Trainer, step: int, logs: dict[str, Any]) -> None:
        if self.unit == "step" and step % self.every == 0:
            self._to_logs(self.evaluate(trainer), logs)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        self._epochs_done = epoch + 1
        if self.unit == "epoch" and self._epochs_done % self.every == 0:
            self._to_logs(self.evaluate(trainer), logs)
        logs["id_records"] = self._pending
        self._pending = []

    def on_train_end(self, trainer: Trainer) -> None:
        # A run's final IDs are read from the last record: when training stops between
        # two multiples of `every`, that record would describe an earlier model.
        if not self.records_ or self.records_[-1]["step"] != trainer.step:
            record = self.evaluate(trainer)
            last = trainer.history[-1] if trainer.history else None
            if last is not None and last["step"] == trainer.step:
                if self.unit == "epoch":
                    self._to_logs(record, last)
                last.setdefault("id_records", []).extend(self._pending)
                self._pending = []
        self.finish()


def layer_position(names: list[str] | None, n_layers: int, layer: str | int | None) -> int:
    """The position (0 to n_layers - 1) of ``layer``: a name, an index, or None for the last.

    Examples
    --------
    >>> layer_position(["conv", "fc"], 2, "conv"), layer_position(None, 3, -1)
    (0, 2)
    """
    if layer is None:
        return n_layers - 1
    if isinstance(layer, str):
        if names is None or layer not in names:
            raise ValueError(
                f"last_hidden={layer!r} is not one of the layers "
                f"{names if names is not None else '(a sequence has no names: give a position)'}"
            )
        return names.index(layer)
    pos = int(layer)
    if not -n_layers <= pos < n_layers:
        raise ValueError(f"last_hidden={layer} is out of range for {n_layers} layers")
    return pos % n_layers


class LayerIDSummary(NamedTuple):
    """LLID, PID and ``log(PID / LLID)`` of one network at one time.

    Examples
    --------
    >>> llid_pid({"conv": 10.0, "fc": 5.0})
    LayerIDSummary(llid=5.0, pid=10.0, log_ratio=0.693...)
    """

    llid: float
    pid: float
    log_ratio: float


def llid_pid(layer_ids: Mapping[str, float] | Sequence[float], last_hidden: str | int | None = None) -> LayerIDSummary:
    """Summarise a network's layer-wise intrinsic dimensions (Brown et al. 2022).

    - LLID, last-layer ID: the ID of the last hidden layer, the one feeding the
      classifier;
    - PID, peak ID: the largest ID over all the given layers;
    - ``log(PID / LLID)``, which tracks validation accuracy in the paper: rich early
      features, a simple representation at the end.

    Parameters
    ----------
    layer_ids : mapping of str to float, or sequence of float
        The ID of each layer, input side first (a mapping in its insertion order).
        Leave out the raw data's ID and the classifier's output: PID is the maximum
        over everything given.
    last_hidden : str or int, optional
        The LLID layer: a name (mapping) or position (either). Default: the last one.

    Returns
    -------
    LayerIDSummary
        ``(llid, pid, log_ratio)``, a named tuple. A layer whose estimate is NaN is
        left out of PID (the research code records a failed estimate as NaN); if it is
        the LLID layer, LLID and the ratio are NaN.

    Examples
    --------
    >>> ids = {"conv1": 20.0, "conv2_x": 35.0, "conv3_x": 28.0, "avgpool": 7.0}
    >>> s = llid_pid(ids)
    >>> s.llid, s.pid, round(s.log_ratio, 4)
    (7.0, 35.0, 1.6094)
    >>> llid_pid([20.0, 35.0, 28.0, 7.0], last_hidden=2).llid
    28.0
    """
    if isinstance(layer_ids, Mapping):
        names = list(layer_ids)
        values = np.asarray(list(layer_ids.values()), dtype=np.float64)
    else:
        names = None
        values = np.asarray(layer_ids, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("layer_ids is empty: give the ID of at least one layer")
    if np.any(values[~np.isnan(values)] <= 0):
        raise ValueError("intrinsic dimensions must be positive (or NaN for a failed estimate)")
    llid = float(values[layer_position(names, values.size, last_hidden)])
    pid = float(np.nanmax(values)) if not np.all(np.isnan(values)) else math.nan
    return LayerIDSummary(llid, pid, math.log(pid / llid))
