import math
import os

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from idprops.nn import TRAINING_PRESETS, Callback, Trainer, evaluate, training_preset


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models gain nothing from intra-op threads, and on a busy 2-core machine
    # OpenMP's waiting threads slow them down thirtyfold.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def blobs(n_per_class=40, classes=3, dim=2, spread=0.3, seed=0):
    """Well-separated Gaussian blobs: centres on the axes, 4 units apart."""
    g = torch.Generator().manual_seed(seed)
    centres = 2 * torch.eye(max(classes, dim))[:classes, :dim] * 2
    x = torch.cat([c + spread * torch.randn(n_per_class, dim, generator=g) for c in centres])
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return TensorDataset(x, y)


class _Items(torch.utils.data.Dataset):
    """The same items as a TensorDataset, read one at a time (no fast path applies)."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data[i]


def mlp(seed=0, dropout=0.2, dim=2, classes=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(dim, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, classes))


def weights(model):
    return [p.detach().clone() for p in model.state_dict().values()]


def assert_same_weights(a, b):
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


# ----------------------------------------------------------------- reproducibility


def test_same_seed_same_weights_bit_for_bit():
    data = blobs()
    runs = [weights(Trainer(mlp(), epochs=1, batch_size=16, seed=5).fit(data).model) for _ in range(2)]
    assert_same_weights(*runs)
    other = weights(Trainer(mlp(), epochs=1, batch_size=16, seed=6).fit(data).model)
    assert any(not torch.equal(a, b) for a, b in zip(runs[0], other, strict=True))


def test_fit_leaves_callers_random_state_alone():
    model, data = mlp(), blobs()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    Trainer(model, epochs=1, batch_size=16).fit(data)
    assert torch.equal(before, torch.get_rng_state())
    assert not torch.are_deterministic_algorithms_enabled()


def test_a_cpu_run_leaves_the_gpu_generators_alone(monkeypatch):
    # torch.manual_seed reseeds every GPU's generator, and a CPU run forks none of them.
    models, data = [mlp(), mlp()], blobs()
    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", reseeded.append)
    runs = [weights(Trainer(m, epochs=1, batch_size=16, seed=5).fit(data).model) for m in models]
    assert reseeded == []
    assert_same_weights(*runs)  # still seeded


def test_reaches_full_accuracy_on_separable_blobs():
    data = blobs()
    trainer = Trainer(mlp(dropout=0.0), epochs=30, lr=0.05, batch_size=16).fit(data, data)
    assert trainer.history[-1]["train_accuracy"] == 1.0
    assert trainer.history[-1]["val_accuracy"] == 1.0
    assert trainer.history[-1]["val_loss"] < trainer.history[0]["val_loss"]


# ----------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("steps_per_epoch", [None, 5])
def test_resume_gives_same_weights_as_uninterrupted(tmp_path, steps_per_epoch):
    # 50 samples in batches of 8: 7 steps per pass, so 5-step epochs end mid-pass.
    data = blobs(n_per_class=25, classes=2)
    common = dict(
        batch_size=8,
        seed=3,
        optimizer="adam",
        lr=0.01,
        schedule="exponential",
        steps_per_epoch=steps_per_epoch,
    )
    full = Trainer(mlp(classes=2), epochs=4, **common).fit(data, data)

    Trainer(mlp(classes=2), epochs=2, checkpoint_dir=tmp_path, **common).fit(data, data)
    assert os.listdir(tmp_path) == [f"checkpoint_step{2 * (steps_per_epoch or 7):09d}.pt"]
    resumed = Trainer(mlp(seed=99, classes=2), epochs=4, checkpoint_dir=tmp_path, resume=True, **common)
    resumed.fit(data, data)

    assert_same_weights(weights(full.model), weights(resumed.model))
    assert resumed.history == full.history
    assert resumed.step == full.step == 4 * (steps_per_epoch or 7)
    # Only the latest checkpoint is kept.
    assert os.listdir(tmp_path) == [f"checkpoint_step{resumed.step:09d}.pt"]


def test_checkpoint_every_and_contents(tmp_path):
    data = blobs()
    Trainer(mlp(), epochs=3, batch_size=30, checkpoint_dir=tmp_path, checkpoint_every=2).fit(data)
    (name,) = os.listdir(tmp_path)  # saved at epoch 2, then at the end (epoch 3)
    state = torch.load(tmp_path / name, weights_only=True)
    assert state["epoch"] == 3 and state["step"] == 12 and len(state["history"]) == 3
    assert set(state) >= {"model", "optimizer", "epoch", "step", "history", "rng"}


@pytest.mark.filterwarnings("ignore:.*to a meta parameter:UserWarning")
def test_resume_keeps_adams_step_counts_on_the_cpu(tmp_path):
    # Adam expects its step counts on the CPU unless capturable; loading a checkpoint
    # onto the GPU put them there. The model on "meta" stands in for one on the GPU.
    Trainer(mlp(), epochs=1, batch_size=30, optimizer="adam", checkpoint_dir=tmp_path).fit(blobs())
    trainer = Trainer(mlp().to("meta"), optimizer="adam", checkpoint_dir=tmp_path, resume=True)
    trainer.device = torch.device("meta")
    trainer.optimizer, trainer._scaler = trainer._make_optimizer(), None
    with torch.random.fork_rng(devices=[]):  # loading sets the global random state
        trainer._load_checkpoint()
    states = list(trainer.optimizer.state.values())
    assert states and all(state["step"].device.type == "cpu" for state in states)
    assert all(state["exp_avg"].device.type == "meta" for state in states)


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    data = blobs()
    a = Trainer(mlp(), epochs=1, batch_size=16).fit(data)
    b = Trainer(mlp(), epochs=1, batch_size=16, checkpoint_dir=tmp_path / "new", resume=True).fit(data)
    assert_same_weights(weights(a.model), weights(b.model))


# ----------------------------------------------------------------- callbacks


class Recorder(Callback):
    def __init__(self):
        self.calls = {"begin": 0, "step": [], "epoch": [], "end": 0}

    def on_train_begin(self, trainer):
        self.calls["begin"] += 1

    def on_step_end(self, trainer, step, logs):
        self.calls["step"].append((step, logs["epoch"]))

    def on_epoch_end(self, trainer, epoch, logs):
        self.calls["epoch"].append(epoch)
        logs["extra"] = 10 * epoch

    def on_train_end(self, trainer):
        self.calls["end"] += 1


def test_callbacks_called_the_right_number_of_times():
    data = blobs(n_per_class=25, classes=2)  # 50 samples, batches of 16: 4 steps per epoch
    recorder = Recorder()
    trainer = Trainer(mlp(classes=2), epochs=3, batch_size=16, callbacks=[recorder]).fit(data)
    assert recorder.calls["begin"] == 1 and recorder.calls["end"] == 1
    assert recorder.calls["step"] == [(s, (s - 1) // 4) for s in range(1, 13)]
    assert recorder.calls["epoch"] == [0, 1, 2]
    assert [h["extra"] for h in trainer.history] == [0, 10, 20]
    assert [h["step"] for h in trainer.history] == [4, 8, 12]


def test_max_steps_stops_mid_epoch_and_logs_the_partial_epoch():
    recorder = Recorder()
    trainer = Trainer(mlp(classes=2), max_steps=10, batch_size=16, callbacks=[recorder])
    trainer.fit(blobs(n_per_class=25, classes=2))
    assert trainer.step == 10 and len(recorder.calls["step"]) == 10
    assert [h["step"] for h in trainer.history] == [4, 8, 10]
    # epochs and max_steps together: the first reached wins.
    trainer = Trainer(mlp(classes=2), epochs=1, max_steps=10, batch_size=16).fit(blobs(n_per_class=25, classes=2))
    assert trainer.step == 4


def test_steps_per_epoch_cycles_the_data():
    trainer = Trainer(mlp(classes=2), max_steps=12, steps_per_epoch=6, batch_size=16)
    trainer.fit(blobs(n_per_class=25, classes=2))
    assert [h["step"] for h in trainer.history] == [6, 12]


class BatchSizes(Callback):
    def __init__(self):
        self.sizes = []

    def on_step_end(self, trainer, step, logs):
        self.sizes.append(len(trainer.model.seen))


class Remember(nn.Module):
    """An MLP that remembers the last batch it saw."""

    def __init__(self):
        super().__init__()
        self.net = mlp(classes=2)

    def forward(self, x):
        self.seen = x
        return self.net(x)


def test_batch_size_none_is_one_full_batch_step_per_epoch():
    data, val = blobs(n_per_class=25, classes=2), blobs(n_per_class=5, classes=2, seed=1)
    recorder = BatchSizes()
    trainer = Trainer(Remember(), epochs=3, batch_size=None, callbacks=[recorder])
    trainer.fit(data, val)
    assert trainer.step == 3 and recorder.sizes == [50, 50, 50]
    assert [h["step"] for h in trainer.history] == [1, 2, 3] and "val_loss" in trainer.history[-1]
    # Full batch is the same run as one batch of the whole set.
    same = Trainer(Remember(), epochs=3, batch_size=50).fit(data, val)
    assert_same_weights(weights(trainer.model), weights(same.model))


def test_dataloader_is_used_as_given():
    loader = DataLoader(blobs(), batch_size=50)  # 120 samples -> 3 batches
    trainer = Trainer(mlp(), epochs=2, batch_size=7).fit(loader)
    assert trainer.step == 6


# ----------------------------------------------------------------- schedules


class LrRecorder(Callback):
    def __init__(self):
        self.lrs = []

    def on_step_end(self, trainer, step, logs):
        self.lrs.append(logs["lr"])


def run_lrs(**kwargs):
    recorder = LrRecorder()
    Trainer(mlp(), batch_size=60, callbacks=[recorder], **kwargs).fit(blobs())  # 2 steps per epoch
    return recorder.lrs


def test_schedules():
    assert run_lrs(epochs=2, lr=0.1) == [0.1] * 4
    lrs = run_lrs(epochs=5, lr=1.0, optimizer="sgd", schedule="multistep", milestones=(2, 4), gamma=0.5)
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25]
    lrs = run_lrs(epochs=3, lr=1.0, schedule="exponential")  # Zhang et al.'s default 0.95
    assert lrs == pytest.approx([1.0, 1.0, 0.95, 0.95, 0.95**2, 0.95**2])
    lrs = run_lrs(max_steps=6, lr=1.0, schedule="warmup", warmup_steps=4)
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_optimizers_get_their_settings():
    trainer = Trainer(mlp(), epochs=1, optimizer="sgd", lr=0.3, momentum=0.9, weight_decay=5e-4).fit(blobs())
    group = trainer.optimizer.param_groups[0]
    assert isinstance(trainer.optimizer, torch.optim.SGD) and group["momentum"] == 0.9
    assert group["weight_decay"] == 5e-4
    trainer = Trainer(mlp(), epochs=1, optimizer="adamw", betas=(0.9, 0.98)).fit(blobs())
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    assert trainer.optimizer.param_groups[0]["betas"] == (0.9, 0.98)


def test_label_smoothing_changes_the_first_loss_as_computed_by_hand():
    data = blobs()
    model = mlp(dropout=0.0)
    x, y = data.tensors
    recorder = []

    class First(Callback):
        def on_step_end(self, trainer, step, logs):
            recorder.append(logs["loss"])

    # One batch holding everything: the first step's loss is the loss of the initial model.
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model(x), y, label_smoothing=0.2).item()
    Trainer(model, max_steps=1, batch_size=len(y), label_smoothing=0.2, callbacks=[First()]).fit(data)
    assert recorder[0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(), "epochs or max_steps"),
        (dict(epochs=1, optimizer="rmsprop"), "optimizer"),
        (dict(epochs=1, schedule="cosine"), "schedule"),
        (dict(epochs=1, schedule="multistep"), "milestones"),
        (dict(epochs=1, schedule="warmup"), "warmup_steps"),
        (dict(epochs=1, resume=True), "checkpoint_dir"),
        (dict(epochs=0), "epochs"),
        (dict(epochs=1, batch_size=0), "batch_size"),
    ],
)
def test_bad_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Trainer(mlp(), **kwargs).fit(blobs())


def test_bad_data_raise():
    with pytest.raises(ValueError, match="TensorDataset"):
        Trainer(mlp(), epochs=1).fit(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="empty"):
        Trainer(mlp(), epochs=1).fit(TensorDataset(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)))


# ----------------------------------------------------------------- evaluate


def test_evaluate_matches_hand_computation():
    torch.manual_seed(0)
    model = nn.Linear(3, 4)
    x = torch.randn(37, 3)
    y = torch.randint(0, 4, (37,))
    logits = (x @ model.weight.T + model.bias).detach().numpy().astype(np.float64)
    expected_acc = float(np.mean(logits.argmax(1) == y.numpy()))
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected_loss = float(-log_probs[np.arange(37), y.numpy()].mean())
    model.train()
    result = evaluate(model, TensorDataset(x, y), batch_size=10)
    assert result["accuracy"] == expected_acc
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert model.training  # mode restored
    assert evaluate(model, DataLoader(TensorDataset(x, y), batch_size=5)) == pytest.approx(result)


def test_evaluate_uses_eval_mode():
    model = nn.Sequential(nn.Dropout(0.9), nn.Linear(2, 2))
    data = TensorDataset(torch.randn(50, 2), torch.zeros(50, dtype=torch.long))
    assert evaluate(model, data) == evaluate(model, data)


# ----------------------------------------------------------------- presets


@pytest.mark.parametrize("name", sorted(TRAINING_PRESETS))
def test_presets_are_valid_trainer_arguments(name):
    kwargs = training_preset(name, epochs=1, max_steps=1)
    trainer = Trainer(mlp(), **kwargs).fit(blobs())
    assert trainer.step == 1


def test_preset_values_and_copies():
    assert training_preset("konz2024_resnet")["lr"] == 1e-3
    assert training_preset("konz2024_vgg")["lr"] == 1e-4
    assert training_preset("konz2024_vgg")["seed"] == 1337
    cifar = training_preset("brown2022_cifar")
    assert cifar["milestones"] == (60, 120, 160) and cifar["gamma"] == 0.2
    grok = training_preset("brown2022_grokking")
    assert grok["betas"] == (0.9, 0.98) and grok["warmup_steps"] == 10_000
    grok["lr"] = 5.0
    assert TRAINING_PRESETS["brown2022_grokking"]["lr"] == 1e-3
    with pytest.raises(ValueError, match="unknown training preset"):
        training_preset("nope")


# ----------------------------------------------------------------- CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_mixed_precision_trains():
    data = blobs()
    trainer = Trainer(mlp(dropout=0.0), epochs=20, lr=0.05, batch_size=16, device="cuda", mixed_precision=True).fit(
        data, data
    )
    assert trainer.device.type == "cuda" and trainer._scaler is not None
    assert next(trainer.model.parameters()).is_cuda
    assert math.isfinite(trainer.history[-1]["train_loss"])
    assert trainer.history[-1]["val_accuracy"] == 1.0


def test_items_with_extra_fields_are_accepted():
    # Randomization wrappers yield (image, label, was_corrupted): extras are ignored.
    x, y = blobs().tensors
    data = TensorDataset(x, y, torch.zeros(len(y), dtype=torch.bool))
    trainer = Trainer(mlp(), epochs=1, batch_size=16).fit(data, data)
    assert trainer.history[0]["val_accuracy"] == evaluate(trainer.model, TensorDataset(x, y))["accuracy"]


@pytest.mark.parametrize("data_device, pinned", [("cpu", True), ("meta", False)])
def test_pins_memory_only_for_data_on_the_cpu(monkeypatch, data_device, pinned):
    # Data already on the GPU cannot be pinned ("cannot pin 'torch.cuda.FloatTensor'");
    # meta tensors stand in for CUDA ones, and a loader recording pin_memory for pinning.
    import idprops.nn.training as training

    asked = []

    class RecordingLoader(DataLoader):
        def __init__(self, *args, pin_memory=False, **kwargs):
            asked.append(pin_memory)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(training, "DataLoader", RecordingLoader)
    x, y = blobs().tensors
    trainer = Trainer(mlp(), epochs=1, batch_size=16)
    trainer.device = torch.device("cuda")
    trainer.train_data = _Items(TensorDataset(x.to(data_device), y.to(data_device)))
    next(trainer._batches(0, 0))
    assert asked == [pinned]
    # A TensorDataset's batches (one gather each, no DataLoader) are pinned the same way.
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t: asked.append("pinned") or t)
    trainer.train_data = TensorDataset(x.to(data_device), y.to(data_device))
    next(trainer._batches(0, 0))
    assert asked[1:] == ["pinned", "pinned"] if pinned else asked[1:] == []


def test_seeded_reads_devices_as_the_trainer_does():
    from idprops.nn import seeded

    with seeded(3, "auto"):
        a = torch.rand(2)
    with seeded(3, torch.device("cpu")):
        assert torch.equal(torch.rand(2), a)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no GPU"):
            with seeded(3, "cuda"):
                pass


def test_looking_at_the_data_for_pinning_leaves_the_random_stream_alone():
    from idprops.nn.training import _on_cpu

    class Noisy(torch.utils.data.Dataset):
        """Augments with torch's global random stream, as RandomShift does."""

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.rand(2), 0

    torch.manual_seed(0)
    expected = torch.rand(2)
    torch.manual_seed(0)
    assert _on_cpu(Noisy())
    assert torch.equal(torch.rand(2), expected)


def test_tensor_datasets_are_batched_by_one_gather_with_the_same_weights(monkeypatch, tmp_path):
    # A DataLoader reads a TensorDataset item by item and stacks the items in the main
    # process: at 224 x 224 that starves a GPU. The same batches come from one gather,
    # and training gives the same weights bit for bit, resumed runs included.
    import idprops.nn.training as training

    data = blobs()
    reference = weights(Trainer(mlp(), epochs=2, batch_size=16, seed=5).fit(_Items(data)).model)
    loaders = []

    class RecordingLoader(DataLoader):
        def __init__(self, *args, **kwargs):
            loaders.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(training, "DataLoader", RecordingLoader)
    assert_same_weights(weights(Trainer(mlp(), epochs=2, batch_size=16, seed=5).fit(data).model), reference)
    assert not loaders
    # 120 samples in batches of 16: 5-step epochs end mid-pass, where a resumed run starts.
    kwargs = dict(batch_size=16, seed=5, checkpoint_dir=tmp_path, steps_per_epoch=5)
    Trainer(mlp(), epochs=1, **kwargs).fit(data)
    resumed = Trainer(mlp(), epochs=3, resume=True, **kwargs).fit(data)
    uninterrupted = Trainer(mlp(), epochs=3, **{**kwargs, "checkpoint_dir": None}).fit(_Items(data))
    assert_same_weights(weights(resumed.model), weights(uninterrupted.model))
