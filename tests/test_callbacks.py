"""ActivationIDTracker: when it fires, what it measures, and that it leaves the model alone."""

import importlib.util
import math

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator
from torch import nn
from torch.utils.data import TensorDataset

from idprops.nn import Trainer
from idprops.nn.callbacks import ActivationIDTracker
from idprops.studies.store import ResultsStore


class WidthDimension(BaseEstimator):
    """A fake estimator whose 'dimension' is the number of columns it was fitted on."""

    seen: list = []

    def fit(self, X, y=None):
        X = np.asarray(X)
        WidthDimension.seen.append(X.copy())
        self.dimension_ = float(X.shape[1])
        self.dimension_std_ = 0.0
        return self


class RowsDimension(BaseEstimator):
    """A fake estimator whose 'dimension' is the number of rows it was fitted on."""

    def fit(self, X, y=None):
        self.dimension_ = float(len(X))
        return self


class ModeSpy(nn.Module):
    """Identity that remembers the training flag and grad mode of every call."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x):
        self.calls.append((self.training, torch.is_grad_enabled()))
        return x


def make_data(n=120, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    return TensorDataset(x, (x[:, 0] > 0).long())


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3), nn.Linear(3, 2))


def test_fires_every_n_epochs_before_training_and_at_the_end():
    tracker = ActivationIDTracker(["1", "2"], estimator=WidthDimension, every=2)
    trainer = Trainer(make_model(), epochs=5, batch_size=40, callbacks=[tracker]).fit(make_data())
    # 120 samples / 40 = 3 steps per epoch; evaluations at start, after epochs 2, 4, and
    # after the last epoch, 5, which is not a multiple of every.
    assert [r["step"] for r in tracker.records_] == [0, 6, 12, 15]
    assert [r["epoch"] for r in tracker.records_] == [0, 2, 4, 5]
    assert ["ids" in h for h in trainer.history] == [False, True, False, True, True]
    # Every evaluation appears exactly once among the history's id_records, in order.
    pending = [r["step"] for h in trainer.history for r in h["id_records"]]
    assert pending == [0, 6, 12, 15]
    assert trainer.history[1]["llid"] == tracker.records_[1]["llid"]
    assert trainer.history[-1]["llid"] == tracker.records_[-1]["llid"]
    assert tracker.seconds_ == pytest.approx(sum(r["seconds"] for r in tracker.records_))


@pytest.mark.parametrize("epochs, expected", [(2, [0, 2]), (4, [0, 4]), (6, [0, 4, 6])])
def test_last_record_is_the_trained_model(epochs, expected):
    # The last record is what studies report as the final IDs: never an earlier model,
    # and never a second evaluation of the same one.
    spy = ModeSpy()
    model = nn.Sequential(nn.Linear(4, 6), spy, nn.Linear(6, 2))
    tracker = ActivationIDTracker(["1"], estimator=WidthDimension, every=4)
    trainer = Trainer(model, epochs=epochs, batch_size=40, callbacks=[tracker]).fit(make_data())
    assert [r["epoch"] for r in tracker.records_] == expected
    assert tracker.records_[-1]["step"] == trainer.step == 3 * epochs
    assert len([c for c in spy.calls if not c[0]]) == len(expected)


def test_fires_every_n_steps_and_at_the_end():
    tracker = ActivationIDTracker(["1"], estimator=WidthDimension, every=3, unit="step", at_start=False)
    trainer = Trainer(make_model(), max_steps=10, batch_size=40, callbacks=[tracker]).fit(make_data())
    assert [r["step"] for r in tracker.records_] == [3, 6, 9, 10]
    # Epochs completed as each hook ran: step 3 ends epoch 1, but on_step_end comes first.
    assert [r["epoch"] for r in tracker.records_] == [0, 1, 2, 4]
    assert [r["step"] for h in trainer.history for r in h["id_records"]] == [3, 6, 9, 10]
    assert "ids" not in trainer.history[-1]  # step evaluations stay out of the epoch logs


def test_sample_is_fixed_and_seeded():
    WidthDimension.seen = []
    data = make_data()
    spy = nn.Sequential(nn.Identity(), nn.Linear(4, 2))
    tracker = ActivationIDTracker(["0"], estimator=WidthDimension, n_samples=50, random_state=3)
    Trainer(spy, epochs=3, batch_size=40, callbacks=[tracker]).fit(data)
    assert len(WidthDimension.seen) == 4
    expected = data.tensors[0][tracker.sample_indices_].numpy()
    for X in WidthDimension.seen:
        np.testing.assert_array_equal(X, expected)
    assert len(np.unique(tracker.sample_indices_)) == 50
    # The same seed draws the same sample in a new run; another seed another one.
    again = ActivationIDTracker(["0"], estimator=WidthDimension, n_samples=50, random_state=3)
    other = ActivationIDTracker(["0"], estimator=WidthDimension, n_samples=50, random_state=4)
    for t in (again, other):
        Trainer(nn.Sequential(nn.Identity(), nn.Linear(4, 2)), epochs=1, batch_size=40, callbacks=[t]).fit(data)
    np.testing.assert_array_equal(again.sample_indices_, tracker.sample_indices_)
    assert not np.array_equal(other.sample_indices_, tracker.sample_indices_)


@pytest.mark.parametrize("where", ["meta", "requires_grad"])
def test_sample_from_a_tensor_numpy_cannot_read(where):
    # numpy reads neither a tensor on the GPU ("meta" stands in for one) nor one that
    # requires grad: the sample is indexed where the tensor lies.
    x = make_data().tensors[0]
    data = x.to("meta") if where == "meta" else x.clone().requires_grad_()
    tracker = ActivationIDTracker(["0"], n_samples=50)
    sample = tracker._sample(data)
    assert sample.shape == (50, 4) and sample.device == data.device
    assert not sample.requires_grad
    if where == "requires_grad":
        assert torch.equal(sample, x[tracker.sample_indices_])


def test_llid_pid_as_defined():
    # Widths 6, 6, 3: the fake IDs are the widths.
    tracker = ActivationIDTracker(["0", "1", "2"], estimator=WidthDimension)
    Trainer(make_model(), epochs=1, batch_size=40, callbacks=[tracker]).fit(make_data())
    for r in tracker.records_:
        assert r["ids"] == {"0": 6.0, "1": 6.0, "2": 3.0}
        assert (r["llid"], r["pid"]) == (3.0, 6.0)
        assert r["log_pid_llid"] == pytest.approx(math.log(2.0))
        assert r["seconds"] >= 0
    # The LLID layer may be any tracked layer.
    first = ActivationIDTracker(["0", "2"], estimator=WidthDimension, last_hidden="0")
    Trainer(make_model(), epochs=1, batch_size=40, callbacks=[first]).fit(make_data())
    assert (first.records_[0]["llid"], first.records_[0]["pid"], first.records_[0]["log_pid_llid"]) == (6.0, 6.0, 0.0)


def test_subsets_mean_and_std():
    tracker = ActivationIDTracker(["0"], estimator=RowsDimension, n_samples=100, n_subsets=20)
    Trainer(make_model(), epochs=1, batch_size=40, callbacks=[tracker]).fit(make_data())
    r = tracker.records_[0]
    assert r["ids"]["0"] == 90.0 and r["ids_std"]["0"] == 0.0  # 20 subsets of 90 % of 100


def test_model_mode_restored_and_no_grad():
    spy = ModeSpy()
    model = nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.5), spy, nn.Linear(6, 2))
    tracker = ActivationIDTracker(["2"], estimator=WidthDimension, unit="step", every=2)
    trainer = Trainer(model, max_steps=4, batch_size=40, callbacks=[tracker]).fit(make_data())
    assert len(tracker.records_) == 3
    training_calls = [c for c in spy.calls if c[0]]
    eval_calls = [c for c in spy.calls if not c[0]]
    assert len(training_calls) == trainer.step  # one forward per step, in train mode with grad
    assert all(grad for _, grad in training_calls)
    assert len(eval_calls) == 3 and not any(grad for _, grad in eval_calls)
    assert model.training and model[1].training


@pytest.mark.filterwarnings("ignore::idprops.base.DuplicatesWarning")
def test_dead_layer_is_nan_and_left_out_of_pid():
    model = make_model()
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # the Linear's outputs differ, the ReLU's are all 0
    tracker = ActivationIDTracker(["0", "1"], estimator="twonn", n_samples=60, last_hidden="0")
    tracker.on_train_begin(_FakeTrainer(model, make_data()))
    r = tracker.records_[0]
    assert math.isnan(r["ids"]["1"]) and r["pid"] == r["ids"]["0"] == r["llid"]


class Coarse(nn.Module):
    """Rounds its inputs to multiples of 3: 120 standard normal points land on few nodes."""

    def forward(self, x):
        return torch.round(x / 3)


def test_ids_from_too_few_distinct_points_are_flagged_and_left_out():
    model = nn.Sequential(nn.Identity(), Coarse(), nn.Linear(4, 2))
    data = make_data(n=120)
    coarse = torch.round(data.tensors[0] / 3)
    n_coarse = len(torch.unique(coarse, dim=0))
    assert n_coarse < 60  # the threshold below: half of the 120 points
    tracker = ActivationIDTracker(["0", "1"], estimator=RowsDimension, n_samples=120, last_hidden="0")
    tracker.on_train_begin(_FakeTrainer(model, data))
    r = tracker.records_[0]
    assert r["n_points"] == 120 and r["ids_distinct"] == {"0": 120, "1": n_coarse}
    # The ID of the coarse layer is kept aside and out of PID; the other one counts.
    assert r["ids_flagged"] == {"1": 120.0} and math.isnan(r["ids"]["1"])
    assert r["ids"]["0"] == r["pid"] == r["llid"] == 120.0
    # With min_distinct=0 nothing is flagged.
    tracker = ActivationIDTracker(["0", "1"], estimator=RowsDimension, n_samples=120, min_distinct=0)
    tracker.on_train_begin(_FakeTrainer(model, data))
    assert tracker.records_[0]["ids_flagged"] == {} and tracker.records_[0]["ids"]["1"] == 120.0


class _FakeTrainer:
    def __init__(self, model, data):
        self.model, self.train_data, self.step, self.epoch = model, data, 0, 0


def test_real_training_twonn_and_store(tmp_path):
    from idprops.data.sources import load_digits
    from idprops.nn.models import small_cnn

    data = load_digits(n=300, seed=0)
    torch.manual_seed(0)
    model = small_cnn(in_channels=1, input_size=8)
    store = ResultsStore(tmp_path / "ids.sqlite")
    tracker = ActivationIDTracker(
        ["features.relu1", "features.pool", "relu"],
        n_samples=200,
        store=store,
        store_config={"run": "tiny"},
    )
    trainer = Trainer(model, epochs=2, batch_size=64, callbacks=[tracker]).fit(data)
    assert len(tracker.records_) == 3 and len(store) == 3
    for r in tracker.records_:
        ids = np.array(list(r["ids"].values()))
        assert np.all(np.isfinite(ids)) and np.all(ids > 0)
        assert r["pid"] >= r["llid"] == r["ids"]["relu"]
        assert r["log_pid_llid"] == pytest.approx(math.log(r["pid"] / r["llid"]))
    stored = store.get({"run": "tiny", "step": trainer.step})
    assert stored["llid"] == pytest.approx(tracker.records_[-1]["llid"])
    assert 0 < tracker.share_ < 1 and tracker.seconds_ == pytest.approx(sum(r["seconds"] for r in tracker.records_))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(layers=["0"], last_hidden="2"), "not one of the tracked layers"),
        (dict(layers=["0"], unit="batch"), "unit must be"),
        (dict(layers=["0"], every=0), "every must be"),
        (dict(layers=["nope"]), "no layer named"),
        (dict(layers=["0", "0"]), "twice"),
        (dict(layers=["0"], min_distinct=2), "min_distinct is a share of the sample"),
    ],
)
def test_bad_parameters(kwargs, match):
    tracker = ActivationIDTracker(**kwargs)
    with pytest.raises(ValueError, match=match):
        Trainer(make_model(), epochs=1, batch_size=40, callbacks=[tracker]).fit(make_data())


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard installed")
def test_log_dir_without_tensorboard_warns(tmp_path):
    tracker = ActivationIDTracker(["0"], estimator=WidthDimension, log_dir=str(tmp_path))
    with pytest.warns(UserWarning, match="tensorboard"):
        Trainer(make_model(), epochs=1, batch_size=40, callbacks=[tracker]).fit(make_data())
    assert len(tracker.records_) == 2


def test_log_dir_writes_tensorboard_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracker = ActivationIDTracker(["0", "2"], estimator=WidthDimension, log_dir=str(tmp_path))
    Trainer(make_model(), epochs=1, batch_size=40, callbacks=[tracker]).fit(make_data())
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"id/0", "id/2", "id/LLID", "id/PID", "id/log_PID_LLID"} <= tags
    llid = [e.value for e in events.Scalars("id/LLID")]
    assert llid == pytest.approx([r["llid"] for r in tracker.records_])


def test_own_training_loop_start_measure_finish():
    from idprops import TwoNNDimension
    from idprops.activations import collect_activations

    data, model = make_data(), make_model()
    tracker = ActivationIDTracker(["0", "2"], n_samples=80, random_state=1)
    with pytest.raises(ValueError, match="call start"):
        tracker.measure(model, step=0)
    with pytest.raises(ValueError, match="pass data="):
        tracker.start(model)
    assert tracker.start(model, data) is tracker and tracker.records_ == []
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker.measure(model, step=0)
    for step in range(1, 7):
        x, y = data[(step - 1) * 20 : step * 20]
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if step % 3 == 0:
            tracker.measure(model, step=step, epoch=step // 6)
    tracker.finish()
    assert [(r["step"], r["epoch"]) for r in tracker.records_] == [(0, 0), (3, 0), (6, 1)]
    assert 0 < tracker.share_ <= 1
    # The record is the estimator on the layer's activations of the fixed sample.
    for name in ("0", "2"):
        activations = collect_activations(model, tracker.sample_, name)[name]
        assert tracker.records_[-1]["ids"][name] == TwoNNDimension().fit(activations).dimension_
    assert tracker.records_[-1]["llid"] == tracker.records_[-1]["ids"]["2"]
    # The same sample as a Trainer-driven tracker draws from the same data.
    driven = ActivationIDTracker(["0", "2"], n_samples=80, random_state=1)
    Trainer(make_model(), epochs=1, batch_size=40, callbacks=[driven]).fit(data)
    np.testing.assert_array_equal(driven.sample_indices_, tracker.sample_indices_)
