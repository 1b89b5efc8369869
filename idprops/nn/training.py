"""A plain torch training loop: :class:`Trainer`, :class:`Callback`, :func:`evaluate`.

No framework: one loop with the features the studies need (named optimizers and
schedules, label smoothing, seeded and resumable runs, per-epoch evaluation, a history,
callbacks). :data:`TRAINING_PRESETS` holds the papers' settings.

Reproducibility: with the same seed, data and initial model, a run on the CPU gives
the same weights bit for bit. The order of the training data is drawn from the seed
and the pass number (not from a shared generator), the torch random state is saved in
every checkpoint, and deterministic algorithms are switched on (on the CPU, for the
duration of :meth:`Trainer.fit`), so a run resumed from a checkpoint ends with the same
weights as one never interrupted. The caller's global random state is left untouched.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import glob
import math
import os
import re
from collections.abc import Iterator, Sequence
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..activations import resolve_device
from ..jsonable import jsonable
from ..model_errors import explaining_input_errors
from ..torchfiles import load_torch_file
from ..utils import progress_bar, report_progress

__all__ = ["Callback", "TRAINING_PRESETS", "Trainer", "TrainingDiverged", "evaluate", "seeded", "training_preset"]

_OPTIMIZERS = ("adam", "adamw", "sgd")
_SCHEDULES = ("constant", "multistep", "exponential", "warmup")
_DEFAULT_GAMMA = {"multistep": 0.1, "exponential": 0.95}
_CHECKPOINT = re.compile(r"checkpoint_step(\d+)\.pt$")


# --------------------------------------------------------------------------- presets

#: The papers' training settings by name: keyword arguments of :class:`Trainer`
#: (see :func:`training_preset`).
TRAINING_PRESETS: dict[str, dict[str, Any]] = {
    # Konz & Mazurowski (ICLR 2024), train.py: Adam, weight decay 1e-4, 100 epochs, mixed
    # precision, seed 1337, last epoch kept; lr 1e-3 for ResNets, 1e-4 for VGGs (1e-6 for
    # VGG on SVHN). Their batch size is not in our notes: left to the caller.
    "konz2024_resnet": dict(optimizer="adam", lr=1e-3, weight_decay=1e-4, epochs=100, seed=1337, mixed_precision=True),
    "konz2024_vgg": dict(optimizer="adam", lr=1e-4, weight_decay=1e-4, epochs=100, seed=1337, mixed_precision=True),
    # Zhang et al. (ICLR 2017): SGD with momentum 0.9, lr 0.1 (Inception) or 0.01 (AlexNet,
    # MLPs), multiplied by 0.95 every epoch; no weight decay unless a test asks for it.
    "zhang2017_inception": dict(optimizer="sgd", lr=0.1, momentum=0.9, schedule="exponential", gamma=0.95),
    "zhang2017_alexnet_mlp": dict(optimizer="sgd", lr=0.01, momentum=0.9, schedule="exponential", gamma=0.95),
    # Brown et al. (2022), CIFAR-10/100 ResNet-18: SGD 0.1, momentum 0.9, weight decay 5e-4,
    # MultiStepLR at epochs 60, 120, 160 with gamma 0.2, 200 epochs, batch 128.
    "brown2022_cifar": dict(
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        schedule="multistep",
        milestones=(60, 120, 160),
        gamma=0.2,
        epochs=200,
        batch_size=128,
    ),
    # Brown et al. (2022), grokking on modular division: Adam lr 1e-3, betas (0.9, 0.98),
    # L2 1e-4, 10,000 linear warm-up steps then constant, batch 512; intrinsic dimensions
    # every 500 steps, hence 500-step epochs. The number of steps is the caller's.
    "brown2022_grokking": dict(
        optimizer="adam",
        lr=1e-3,
        betas=(0.9, 0.98),
        weight_decay=1e-4,
        schedule="warmup",
        warmup_steps=10_000,
        batch_size=512,
        steps_per_epoch=500,
    ),
}


def training_preset(name: str, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of :class:`Trainer` for a paper's setting.

    Parameters
    ----------
    name : str
        A key of :data:`TRAINING_PRESETS`: ``"konz2024_resnet"``, ``"konz2024_vgg"``,
        ``"zhang2017_inception"``, ``"zhang2017_alexnet_mlp"``, ``"brown2022_cifar"``,
        ``"brown2022_grokking"``.
    **overrides
        Values replacing or adding to the preset's.

    Examples
    --------
    >>> kwargs = training_preset("zhang2017_alexnet_mlp", epochs=2)
    >>> kwargs["lr"], kwargs["gamma"], kwargs["epochs"]
    (0.01, 0.95, 2)
    """
    if name not in TRAINING_PRESETS:
        raise ValueError(f"unknown training preset {name!r}; choose one of {sorted(TRAINING_PRESETS)}.")
    return {**copy.deepcopy(TRAINING_PRESETS[name]), **overrides}


# --------------------------------------------------------------------------- helpers


class TrainingDiverged(FloatingPointError):
    """Training stopped because the loss stopped being a finite number.

    The model's weights are then meaningless: a study records its cell as failed with
    this message, never as a result.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.ones(8, 2), torch.tensor([0, 1] * 4))
    >>> Trainer(torch.nn.Linear(2, 2), epochs=2, lr=1e38, optimizer="sgd", batch_size=4).fit(data)
    Traceback (most recent call last):
    ...
    idprops.nn.training.TrainingDiverged: training diverged: the loss is inf at step ... lower the learning rate ...
    """


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without any)."""
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def seeded(seed: int, device: str | torch.device = "cpu") -> Iterator[None]:
    """torch's random streams of the CPU and of ``device`` (``"auto"`` as for
    :class:`Trainer`) seeded inside the block, and put back as they were after it.

    ``torch.manual_seed`` would reseed every GPU's stream, the caller's included, and
    forking the CPU's alone would not put those back.

    Examples
    --------
    >>> with seeded(0):
    ...     a = torch.rand(2)
    >>> with seeded(0):
    ...     b = torch.rand(2)
    >>> bool(torch.equal(a, b))
    True
    """
    device = resolve_device(device)
    gpus = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=gpus):
        torch.default_generator.manual_seed(seed)
        if gpus:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def _on_cpu(data: Dataset) -> bool:
    """Whether the tensors in ``data``'s items are on the CPU, judged by the first item.

    Only CPU tensors can be pinned: small data sets (grokking's, say) are often put on
    the GPU whole, and asking a DataLoader to pin those fails.
    """
    # Reading an item may draw from torch's random stream (augmentation): a look must
    # not move it, or a resumed run would no longer match an uninterrupted one.
    with torch.random.fork_rng(devices=[]):
        item = data[0]
    fields = item if isinstance(item, (tuple, list)) else (item,)
    return all(f.device.type == "cpu" for f in fields if isinstance(f, torch.Tensor))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_int(value) -> bool:
    """An integer, Python's or numpy's (numpy integers come from np.arange grids), not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def data_loader(data: Dataset | DataLoader, batch_size: int) -> DataLoader:
    """A DataLoader over ``data`` in its own order (DataLoaders are used as given).

    Items are (input, label, ...): anything after the label (e.g. a randomization
    wrapper's "was corrupted" flag) is ignored by the loops of this package.
    """
    if isinstance(data, DataLoader):
        return data
    if not isinstance(data, Dataset):
        raise ValueError(
            f"data must be a torch Dataset yielding (input, label) or a DataLoader, got "
            f"{type(data).__name__}; wrap tensors in torch.utils.data.TensorDataset."
        )
    return DataLoader(data, batch_size=int(batch_size), shuffle=False)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Dataset | DataLoader,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``data``, in eval mode.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits; it is left in the mode it was found in.
    data : torch Dataset of (input, label, ...) or DataLoader
    batch_size : int
        Used when ``data`` is a Dataset.
    device : str or torch.device, optional
        Where to compute; the model is moved there. ``None``: where the model is.
    progress : bool, optional
        Progress bar; ``None`` is automatic.

    Returns
    -------
    dict
        ``loss`` (mean over samples) and ``accuracy`` (fraction correct).

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> model = torch.nn.Linear(2, 2, bias=False)
    >>> _ = model.weight.data.copy_(torch.eye(2))
    >>> data = TensorDataset(torch.tensor([[1., 0.], [0., 1.], [1., 0.]]), torch.tensor([0, 1, 1]))
    >>> evaluate(model, data)["accuracy"]
    0.6666666666666666
    """
    device = model_device(model) if device is None else resolve_device(device)
    model.to(device)
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    try:
        for batch in progress_bar(data_loader(data, batch_size), progress, desc="evaluate", leave=False):
            inputs, labels = batch[0].to(device), batch[1].to(device)
            with explaining_input_errors(model, inputs, first=count == 0):
                logits = model(inputs)
            total_loss += nn.functional.cross_entropy(logits.float(), labels, reduction="sum").item()
            correct += (logits.argmax(1) == labels).sum().item()
            count += len(labels)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("cannot evaluate on empty data.")
    return {"loss": total_loss / count, "accuracy": correct / count}


# --------------------------------------------------------------------------- callbacks


class Callback:
    """Base class of training callbacks; every method is a no-op.

    A callback reads the trainer (``trainer.model``, ``trainer.device``,
    ``trainer.train_data``, ``trainer.val_data``, ``trainer.step``, ``trainer.epoch``,
    ``trainer.history``) and may add entries to ``logs``: what it adds to the logs of
    ``on_epoch_end`` ends up in ``trainer.history``.

    Examples
    --------
    >>> class CountSteps(Callback):
    ...     def __init__(self):
    ...         self.steps = 0
    ...     def on_step_end(self, trainer, step, logs):
    ...         self.steps += 1
    """

    def on_train_begin(self, trainer: Trainer) -> None:
        """Called once when :meth:`Trainer.fit` starts (after a resume is restored)."""

    def on_step_end(self, trainer: Trainer, step: int, logs: dict[str, Any]) -> None:
        """Called after each optimizer step; ``step`` counts steps done (1 first).

        ``logs`` holds ``epoch``, ``step``, ``loss``, ``accuracy`` (of the batch), ``lr``.
        """

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        """Called after each epoch (``epoch`` counts from 0), before ``logs`` joins the history.

        ``logs`` holds ``epoch``, ``step``, ``lr``, ``train_loss``, ``train_accuracy`` (running
        means over the epoch, in training mode) and, with validation data, ``val_loss``
        and ``val_accuracy``.
        """

    def on_train_end(self, trainer: Trainer) -> None:
        """Called once when training stops."""


# --------------------------------------------------------------------------- trainer


class Trainer:
    """Train a classifier with cross-entropy.

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place (and moved to ``device``).
    epochs : int, optional
        Number of epochs. At least one of ``epochs`` and ``max_steps`` is needed; with
        both, training stops at whichever comes first.
    max_steps : int, optional
        Number of optimizer steps.
    steps_per_epoch : int, optional
        Length of an epoch in steps (the data are cycled, reshuffled on every pass);
        ``None``: one pass over the data. Long step-based runs (grokking) use it to
        evaluate, call ``on_epoch_end`` and record history every so many steps.
    optimizer : {"adam", "adamw", "sgd"}
    lr : float
        Base learning rate.
    weight_decay : float
        L2 penalty (Adam, SGD) or decoupled decay (AdamW).
    momentum : float
        SGD momentum.
    betas : (float, float)
        Adam/AdamW betas.
    schedule : {"constant", "multistep", "exponential", "warmup"}
        Learning-rate factor: constant; ``gamma ** (number of milestones <= epoch)``;
        ``gamma ** epoch`` (epochs count from 0); ``"warmup"`` is constant after the
        warm-up.
    milestones : sequence of int
        Epochs at which ``"multistep"`` multiplies the rate by ``gamma``.
    gamma : float, optional
        Decay factor; ``None``: 0.1 for ``"multistep"``, 0.95 (Zhang et al.) for
        ``"exponential"``.
    warmup_steps : int
        Linear warm-up, multiplying any schedule: the factor of step ``s`` (from 0) is
        ``min(1, (s + 1) / warmup_steps)``, as in Brown et al.'s code.
    label_smoothing : float
        Of the training loss (evaluation uses the plain loss).
    batch_size : int or None
        Used when the data are Datasets; ``None`` is full-batch training: every batch
        is the whole training set (one step per pass), and validation data are
        evaluated in one batch too.
    seed : int
        Seeds the data order and torch's random state (dropout, augmentation) for
        the run. The model's initial weights are the caller's.
    device : {"auto", "cpu", "cuda"} or torch.device
    mixed_precision : bool
        float16 autocast with gradient scaling, on CUDA only (no effect on the CPU).
    callbacks : sequence of Callback
    checkpoint_dir : str, optional
        Where to save checkpoints (model, optimizer, step, epoch, history, random
        states) with ``torch.save``; only the latest is kept.
    checkpoint_every : int
        Save after every this many epochs (and at the end).
    resume : bool
        Start from the latest checkpoint in ``checkpoint_dir``, if there is one.
    num_workers : int
        DataLoader workers, when the data are Datasets.
    progress : bool, optional
        Progress bar per epoch; ``None`` is automatic.

    Attributes
    ----------
    history : list of dict
        One entry per epoch: the ``logs`` of :meth:`Callback.on_epoch_end`.
    step, epoch : int
        Optimizer steps and epochs done.
    optimizer : torch.optim.Optimizer
        Set by :meth:`fit`.
    device : torch.device

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> _ = torch.manual_seed(0)
    >>> x = torch.cat([torch.randn(50, 2) - 2, torch.randn(50, 2) + 2])
    >>> data = TensorDataset(x, torch.tensor([0] * 50 + [1] * 50))
    >>> trainer = Trainer(torch.nn.Linear(2, 2), epochs=5, lr=0.1, batch_size=20).fit(data, data)
    >>> len(trainer.history), trainer.step
    (5, 25)
    >>> trainer.history[-1]["val_accuracy"] > 0.9
    True
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        epochs: int | None = None,
        max_steps: int | None = None,
        steps_per_epoch: int | None = None,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        schedule: str = "constant",
        milestones: Sequence[int] = (),
        gamma: float | None = None,
        warmup_steps: int = 0,
        label_smoothing: float = 0.0,
        batch_size: int | None = 128,
        seed: int = 0,
        device: str | torch.device = "auto",
        mixed_precision: bool = False,
        callbacks: Sequence[Callback] = (),
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 1,
        resume: bool = False,
        num_workers: int = 0,
        progress: bool | None = None,
    ) -> None:
        self.model = model
        self.epochs = epochs
        self.max_steps = max_steps
        self.steps_per_epoch = steps_per_epoch
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.betas = betas
        self.schedule = schedule
        self.milestones = milestones
        self.gamma = gamma
        self.warmup_steps = warmup_steps
        self.label_smoothing = label_smoothing
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.mixed_precision = mixed_precision
        self.callbacks = list(callbacks)
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.resume = resume
        self.num_workers = num_workers
        self.progress = progress
        self.history: list[dict[str, Any]] = []
        self.step = 0
        self.epoch = 0
        self.optimizer: torch.optim.Optimizer | None = None

    # ------------------------------------------------------------------ validation

    def _validate(self) -> None:
        if self.epochs is None and self.max_steps is None:
            raise ValueError("give epochs or max_steps (or both) to say how long to train.")
        for name in ("epochs", "max_steps", "steps_per_epoch"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise ValueError(f"{name} must be a positive int or None, got {value!r}.")
        if self.optimizer_name not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {self.optimizer_name!r}.")
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {_SCHEDULES}, got {self.schedule!r}.")
        if self.schedule == "multistep" and not self.milestones:
            raise ValueError("schedule='multistep' needs milestones (epochs), e.g. milestones=(60, 120, 160).")
        if not _is_int(self.warmup_steps) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an int >= 0, got {self.warmup_steps!r}.")
        if self.schedule == "warmup" and self.warmup_steps < 1:
            raise ValueError("schedule='warmup' needs warmup_steps >= 1.")
        if not _is_number(self.lr) or not 0 < self.lr < math.inf:
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}.")
        for name in ("weight_decay", "momentum"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
        if self.gamma is not None and (not _is_number(self.gamma) or not 0 < self.gamma < math.inf):
            raise ValueError(f"gamma must be a positive finite number or None, got {self.gamma!r}.")
        betas = tuple(self.betas) if isinstance(self.betas, (list, tuple)) else ()
        if len(betas) != 2 or not all(_is_number(b) and 0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}.")
        if not all(_is_int(m) for m in self.milestones):
            raise ValueError(f"milestones must be epochs (ints), got {self.milestones!r}.")
        if not _is_int(self.seed):
            raise ValueError(f"seed must be an int, got {self.seed!r}.")
        if not _is_number(self.label_smoothing) or not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}.")
        if self.batch_size is not None and (not _is_int(self.batch_size) or self.batch_size < 1):
            raise ValueError(
                f"batch_size must be a positive int, or None for the whole training set in "
                f"every batch, got {self.batch_size!r}."
            )
        if not _is_int(self.checkpoint_every) or self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be a positive int, got {self.checkpoint_every!r}.")
        if self.resume and self.checkpoint_dir is None:
            raise ValueError("resume=True needs the checkpoint_dir to resume from.")

    # ------------------------------------------------------------------ pieces

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = self.model.parameters()
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        cls = torch.optim.Adam if self.optimizer_name == "adam" else torch.optim.AdamW
        return cls(params, lr=self.lr, betas=tuple(self.betas), weight_decay=self.weight_decay)

    def _lr_factor(self, step: int, epoch: int) -> float:
        gamma = self.gamma if self.gamma is not None else _DEFAULT_GAMMA.get(self.schedule, 1.0)
        if self.schedule == "multistep":
            factor = gamma ** bisect.bisect_right(sorted(self.milestones), epoch)
        elif self.schedule == "exponential":
            factor = gamma**epoch
        else:
            factor = 1.0
        if self.warmup_steps:
            factor *= min(1.0, (step + 1) / self.warmup_steps)
        return factor

    def _batch_size(self, data: Dataset) -> int:
        """The batch size on ``data``: ``batch_size``, or all of ``data`` when it is None."""
        return max(len(data), 1) if self.batch_size is None else int(self.batch_size)

    def _batches(self, start_pass: int, start_offset: int) -> Iterator[tuple[int, int, Any]]:
        """Yield (pass, offset after this batch, batch) forever, from a given position."""
        data, pass_index, offset = self.train_data, start_pass, start_offset
        pin = not isinstance(data, DataLoader) and self.device.type == "cuda" and _on_cpu(data)
        while True:
            if isinstance(data, DataLoader):
                batches = iter(data)
                for _ in range(offset):  # a resumed pass: replay the loader up to the position
                    next(batches)
            elif isinstance(data, TensorDataset):
                chunks, _ = self._pass_chunks(data, pass_index)
                batches = self._tensor_batches(data, chunks[offset:], pin)
            else:
                chunks, generator = self._pass_chunks(data, pass_index)
                batches = iter(
                    DataLoader(
                        data,
                        batch_sampler=chunks[offset:],
                        num_workers=self.num_workers,
                        generator=generator,  # worker seeds, and no draw on the global state
                        pin_memory=pin,
                    )
                )
            for batch in batches:
                offset += 1
                yield pass_index, offset, batch
            pass_index, offset = pass_index + 1, 0

    def _pass_chunks(self, data: Dataset, pass_index: int) -> tuple[list[list[int]], torch.Generator]:
        """A pass's batches of indices and its generator, drawn from (seed, pass) only.

        So any pass can be rebuilt, from any position.
        """
        state = np.random.SeedSequence([self.seed, pass_index]).generate_state(2)
        generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        order = torch.randperm(len(data), generator=generator).tolist()
        size = self._batch_size(data)
        chunks = [order[i : i + size] for i in range(0, len(order), size)]
        return chunks, generator

    @staticmethod
    def _tensor_batches(data: TensorDataset, chunks: list[list[int]], pin: bool) -> Iterator[list[torch.Tensor]]:
        """Batches of a TensorDataset by one gather per tensor: what a DataLoader gives.

        A DataLoader reads a TensorDataset item by item and stacks the items (in the
        main process without workers): a batch of 32 images of 3 x 224 x 224 is 32
        copies and a stack before the one copy to the GPU, while the GPU waits.
        """
        for chunk in chunks:
            index = torch.tensor(chunk)
            batch = [t[index] for t in data.tensors]
            yield [t.pin_memory() for t in batch] if pin else batch

    def _checkpoint_path(self) -> str | None:
        paths = glob.glob(os.path.join(os.fspath(self.checkpoint_dir), "checkpoint_step*.pt"))
        paths = [p for p in paths if _CHECKPOINT.search(p)]
        return max(paths, key=lambda p: int(_CHECKPOINT.search(p).group(1))) if paths else None

    def _save_checkpoint(self, position: tuple[int, int]) -> None:
        directory = os.fspath(self.checkpoint_dir)
        os.makedirs(directory, exist_ok=True)
        previous = self._checkpoint_path()
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self._scaler.state_dict() if self._scaler is not None else None,
            "epoch": self.epoch,
            "step": self.step,
            "position": list(position),
            "history": jsonable(self.history, where="history"),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }
        path = os.path.join(directory, f"checkpoint_step{self.step:09d}.pt")
        torch.save(state, path + ".tmp")
        os.replace(path + ".tmp", path)  # never leave a half-written checkpoint
        if previous is not None and os.path.abspath(previous) != os.path.abspath(path):
            os.remove(previous)

    def _load_checkpoint(self) -> tuple[int, int]:
        path = self._checkpoint_path() if os.path.isdir(os.fspath(self.checkpoint_dir)) else None
        if path is None:
            return 0, 0
        # Loaded on the CPU: the optimizer's load_state_dict moves its state to the
        # parameters' device except Adam's step counts, which must stay on the CPU
        # (unless capturable); the random states are CPU tensors too.
        state = load_torch_file(
            path,
            "training checkpoint",
            f"delete it (or clear checkpoint_dir={os.fspath(self.checkpoint_dir)!r}) to train from the start",
        )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self._scaler is not None and state["scaler"] is not None:
            self._scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.history = list(state["history"])
        torch.set_rng_state(state["rng"])
        if self.device.type == "cuda" and state["cuda_rng"] is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        return tuple(state["position"])

    def _done(self) -> bool:
        return (self.epochs is not None and self.epoch >= self.epochs) or (
            self.max_steps is not None and self.step >= self.max_steps
        )

    # ------------------------------------------------------------------ fit

    def fit(self, train_data: Dataset | DataLoader, val_data: Dataset | DataLoader | None = None) -> Trainer:
        """Train on ``train_data``, evaluating on ``val_data`` after every epoch.

        Parameters
        ----------
        train_data : torch Dataset of (input, label, ...) or DataLoader
            A Dataset is reshuffled on every pass from the seed; a DataLoader is used
            as given (then reproducibility and exact resumption are its own).
        val_data : torch Dataset or DataLoader, optional

        Returns
        -------
        self
        """
        self._validate()
        if not isinstance(train_data, (Dataset, DataLoader)):
            raise ValueError(
                "train_data must be a torch Dataset or DataLoader, got "
                f"{type(train_data).__name__}; wrap tensors in torch.utils.data.TensorDataset."
            )
        if len(train_data) == 0:
            raise ValueError("the training data are empty.")
        self.train_data, self.val_data = train_data, val_data
        self.device = resolve_device(self.device)
        self.model.to(self.device)
        self.history, self.step, self.epoch = [], 0, 0
        self.optimizer = self._make_optimizer()
        amp = self.mixed_precision and self.device.type == "cuda"
        self._scaler = torch.amp.GradScaler("cuda") if amp else None
        loss_fn = nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)
        steps_per_pass = (
            len(train_data)
            if isinstance(train_data, DataLoader)
            else math.ceil(len(train_data) / self._batch_size(train_data))
        )
        epoch_steps = self.steps_per_epoch or steps_per_pass

        deterministic = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        with seeded(self.seed, self.device):
            if self.device.type == "cpu":
                # warn_only: a user's model with an op lacking a deterministic kernel
                # still trains, with a warning saying which op.
                torch.use_deterministic_algorithms(True, warn_only=True)
            try:
                position = self._load_checkpoint() if self.resume else (0, 0)
                for callback in self.callbacks:
                    callback.on_train_begin(self)
                batches = self._batches(*position)
                while not self._done():
                    position = self._train_epoch(batches, epoch_steps, loss_fn, amp)
                    if self.checkpoint_dir is not None and (self.epoch % self.checkpoint_every == 0 or self._done()):
                        self._save_checkpoint(position)
                for callback in self.callbacks:
                    callback.on_train_end(self)
            finally:
                torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        return self

    def _train_epoch(self, batches, epoch_steps: int, loss_fn: nn.Module, amp: bool) -> tuple[int, int]:
        self.model.train()
        total_loss, correct, count = 0.0, 0, 0
        steps = epoch_steps if self.max_steps is None else min(epoch_steps, self.max_steps - self.step)
        bar = progress_bar(
            range(steps),
            self.progress,
            desc=f"epoch {self.epoch + 1}" + (f"/{self.epochs}" if self.epochs else ""),
            leave=False,
        )
        for _ in bar:
            pass_index, offset, batch = next(batches)
            inputs = batch[0].to(self.device, non_blocking=True)
            labels = batch[1].to(self.device, non_blocking=True)
            lr = self.lr * self._lr_factor(self.step, self.epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.float16) if amp else contextlib.nullcontext():
                with explaining_input_errors(self.model, inputs, first=self.step == 0):
                    logits = self.model(inputs)
                loss = loss_fn(logits.float(), labels)
            if self._scaler is not None:
                self._scaler.scale(loss).backward()
                self._scaler.step(self.optimizer)
                self._scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            self.step += 1
            batch_loss = loss.item()
            if not math.isfinite(batch_loss):
                raise TrainingDiverged(
                    f"training diverged: the loss is {batch_loss} at step {self.step} (epoch {self.epoch + 1}) "
                    f"with lr {lr:g}; lower the learning rate (or add a warmup)."
                )
            batch_correct = (logits.argmax(1) == labels).sum().item()
            total_loss += batch_loss * len(labels)
            correct += batch_correct
            count += len(labels)
            bar.set_postfix(loss=f"{batch_loss:.4f}", refresh=False)
            logs = {
                "epoch": self.epoch,
                "step": self.step,
                "loss": batch_loss,
                "accuracy": batch_correct / len(labels),
                "lr": lr,
            }
            for callback in self.callbacks:
                callback.on_step_end(self, self.step, logs)
            report_progress(
                epoch=f"{self.epoch + 1}" + (f"/{self.epochs}" if self.epochs else ""),
                step=self.step,
                loss=batch_loss,
                accuracy=logs["accuracy"],
            )
        logs = {
            "epoch": self.epoch,
            "step": self.step,
            "lr": lr,
            "train_loss": total_loss / count,
            "train_accuracy": correct / count,
        }
        if self.val_data is not None:
            result = evaluate(
                self.model,
                self.val_data,
                batch_size=self._batch_size(self.val_data),
                device=self.device,
            )
            logs["val_loss"], logs["val_accuracy"] = result["loss"], result["accuracy"]
        for callback in self.callbacks:
            callback.on_epoch_end(self, self.epoch, logs)
        self.history.append(logs)
        self.epoch += 1
        return pass_index, offset

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={type(self.model).__name__}, epochs={self.epochs}, "
            f"max_steps={self.max_steps}, optimizer={self.optimizer_name!r}, lr={self.lr}, "
            f"schedule={self.schedule!r}, seed={self.seed})"
        )
