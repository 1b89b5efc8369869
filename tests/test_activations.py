import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from idprops.activations import capture, collect_activations, resolve_layer


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)),
    )


def images(n=23):
    return torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(1))


def no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


class XOnly(Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


class PairOut(nn.Module):
    """Returns (output, extra), as nn.MultiheadAttention and nn.LSTM do."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(x), torch.zeros(())


class UsesPair(nn.Module):
    def __init__(self):
        super().__init__()
        self.pair = PairOut()

    def forward(self, x):
        return self.pair(x)[0]


# --- resolve_layer ---------------------------------------------------------------


def test_resolve_layer_by_dotted_name_and_bracket_index():
    model = small_cnn()
    assert resolve_layer(model, "2.1") == ("2.1", model[2][1])
    assert resolve_layer(model, "2[1]") == ("2.1", model[2][1])
    assert resolve_layer(model, "[2][1]") == ("2.1", model[2][1])  # a top-level Sequential
    assert resolve_layer(model, "") == ("", model)


def test_resolve_layer_by_module_identity():
    model = small_cnn()
    assert resolve_layer(model, model[2][1]) == ("2.1", model[2][1])
    # An equal but distinct module is not the model's layer.
    with pytest.raises(ValueError, match="not a submodule.*give the layer by name"):
        resolve_layer(model, nn.ReLU())


def test_resolve_layer_bad_name_lists_valid_names():
    model = nn.Sequential()
    model.add_module("features", nn.Linear(2, 2))
    model.add_module("classifier", nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"no layer named 'classifer'.*'classifier'"):
        resolve_layer(model, "classifer")
    with pytest.raises(ValueError, match=r"no layer named 'zzz'.*'features', 'classifier'"):
        resolve_layer(model, "zzz")


def test_resolve_layer_wrong_types():
    with pytest.raises(TypeError, match="layer must be"):
        resolve_layer(small_cnn(), 3)
    with pytest.raises(TypeError, match="model must be"):
        resolve_layer("model", "0")


# --- collect_activations ---------------------------------------------------------


def test_values_equal_manual_forward_for_every_input_kind():
    model = small_cnn()
    x = images(23)
    with torch.no_grad():
        conv = model[0](x)
        expected = {"0": conv.flatten(1).numpy(), "2.1": model(x).numpy()}
    inputs = [
        x,
        x.numpy().astype(np.float64),  # cast to the model's float32
        TensorDataset(x, torch.arange(23)),
        XOnly(x),
        DataLoader(TensorDataset(x, torch.arange(23)), batch_size=7),
    ]
    for data in inputs:
        acts = collect_activations(model, data, ["0", model[2][1]], batch_size=5)
        assert list(acts) == ["0", "2.1"]
        for name, want in expected.items():
            assert acts[name].dtype == np.float32
            assert acts[name].shape == want.shape
            np.testing.assert_allclose(acts[name], want, rtol=1e-6, atol=1e-6)


def test_single_layer_and_max_samples_cut_mid_batch():
    model = small_cnn()
    x = images(23)
    acts = collect_activations(model, x, "2", batch_size=10, max_samples=14)
    with torch.no_grad():
        want = model(x[:14]).numpy()
    assert acts["2"].shape == (14, 5)
    np.testing.assert_allclose(acts["2"], want, rtol=1e-6, atol=1e-6)


def test_tuple_output_records_first_element():
    model = UsesPair()
    x = torch.randn(6, 4)
    acts = collect_activations(model, x, "pair")
    with torch.no_grad():
        np.testing.assert_allclose(acts["pair"], model.pair.lin(x).numpy(), rtol=1e-6)
    # nn.LSTM returns (output, (h, c)): the per-step outputs are recorded.
    torch.manual_seed(0)
    lstm = nn.LSTM(2, 3, batch_first=True)
    seq = torch.randn(4, 5, 2)
    with torch.no_grad():
        want = lstm(seq)[0].reshape(4, 15).numpy()
    np.testing.assert_allclose(collect_activations(lstm, seq, "")[""], want, rtol=1e-6)


def test_inplace_operation_after_layer_does_not_change_the_record():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(inplace=True))
    x = torch.randn(50, 3)
    acts = collect_activations(model, x, "0")
    with torch.no_grad():
        want = model[0](x).numpy()
    assert (acts["0"] < 0).any()
    np.testing.assert_allclose(acts["0"], want, rtol=1e-6)


def test_integer_inputs_are_passed_unchanged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten())
    tokens = np.array([[1, 2], [3, 9], [0, 0]])
    acts = collect_activations(model, tokens, "0")
    with torch.no_grad():
        want = model[0](torch.as_tensor(tokens)).reshape(3, 8).numpy()
    np.testing.assert_array_equal(acts["0"], want)


def test_integer_pixels_for_a_float_model_get_a_value_error():
    model = nn.Sequential(nn.Linear(6, 3))
    with pytest.raises(ValueError, match=r"X / 255"):
        collect_activations(model, np.full((4, 6), 200, dtype=np.uint8), "0")


def test_a_float64_model_keeps_float64_activations():
    # Rounded to float32, these points (1e-4 apart at 100) would become duplicates.
    model = nn.Sequential(nn.Identity(), nn.Linear(6, 6).double())
    X = 100.0 + 1e-4 * np.random.default_rng(0).random((50, 6))
    acts = collect_activations(model, X, ["0", "1"])
    assert acts["0"].dtype == acts["1"].dtype == np.float64
    np.testing.assert_array_equal(acts["0"], X)
    assert collect_activations(nn.Sequential(nn.Identity()), X, "0")["0"].dtype == np.float64
    assert collect_activations(small_cnn(), images(), "2")["2"].dtype == np.float32


def test_a_dataframe_gives_the_same_activations_as_its_array():
    pd = pytest.importorskip("pandas")
    model = nn.Sequential(nn.Linear(6, 8))
    X = np.random.default_rng(0).random((100, 6))
    from_frame = collect_activations(model, pd.DataFrame(X), "0")["0"]
    np.testing.assert_array_equal(from_frame, collect_activations(model, X, "0")["0"])


def test_model_left_as_found_and_hooks_removed():
    model = small_cnn()
    model.train()
    model[2].eval()  # a mixed state, as with frozen sub-networks
    modes = [m.training for m in model.modules()]
    seen_modes = []
    model[0].register_forward_pre_hook(lambda m, a: seen_modes.append(m.training))
    collect_activations(model, images(8), ["0", "2"], batch_size=3)
    assert seen_modes == [False] * 3  # eval during the pass
    assert [m.training for m in model.modules()] == modes
    assert not model[2][1]._forward_hooks and not model[0]._forward_hooks
    assert torch.is_grad_enabled()


class FailsOnSecondBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("boom")
        return x


def test_hooks_removed_and_mode_restored_when_a_batch_fails():
    model = nn.Sequential(nn.Linear(4, 4), FailsOnSecondBatch(), nn.Linear(4, 2))
    model.train()
    with pytest.raises(RuntimeError, match="boom"):
        collect_activations(model, torch.randn(10, 4), ["0", "2"], batch_size=4)
    assert model[1].calls == 2
    assert no_hooks(model)
    assert all(m.training for m in model.modules())


def test_layer_used_twice_or_not_at_all_or_sequence_first_is_an_error():
    class SharedRelu(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.relu, self.unused = (nn.Linear(3, 3), nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3))

        def forward(self, x):
            return self.relu(self.b(self.relu(self.a(x))))

    model = SharedRelu()
    with pytest.raises(ValueError, match="'relu' ran 2 times"):
        collect_activations(model, torch.randn(5, 3), "relu")
    with pytest.raises(ValueError, match="'unused' did not run"):
        collect_activations(model, torch.randn(5, 3), "unused")
    assert no_hooks(model)
    attention = nn.MultiheadAttention(4, 1)  # (sequence, batch, features) by default
    with pytest.raises(ValueError, match="returned 7 rows for a batch of 3"):
        collect_activations(_SelfAttention(attention), torch.randn(3, 7, 4), "attention")


class _SelfAttention(nn.Module):
    def __init__(self, attention):
        super().__init__()
        self.attention = attention

    def forward(self, x):  # x: (batch, sequence, features), fed sequence-first
        s = x.transpose(0, 1)
        return self.attention(s, s, s)[0]


def test_bad_data():
    model = small_cnn()
    with pytest.raises(ValueError, match="empty"):
        collect_activations(model, torch.zeros(0, 1, 4, 4), "0")
    with pytest.raises(ValueError, match="not numeric"):
        collect_activations(model, np.array([["a"]]), "0")
    with pytest.raises(ValueError, match="batch_size"):
        collect_activations(model, images(), "0", batch_size=0)
    with pytest.raises(ValueError, match="no layer named"):
        collect_activations(model, images(), "nope")


def test_capture_records_every_forward_and_removes_hooks():
    model = small_cnn()
    x = images(6)
    with torch.no_grad(), capture(model, ["0", "2"]) as store:
        model(x[:4])
        model(x[4:])
    assert [a.shape for a in store["2"]] == [(4, 5), (2, 5)]
    assert [a.shape for a in store["0"]] == [(4, 48), (2, 48)]
    assert no_hooks(model)


def test_device_auto_is_the_gpu_when_there_is_one_else_the_cpu(monkeypatch):
    from idprops.activations import resolve_device

    model, x = small_cnn(), images(5)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    auto = collect_activations(model, x, "2", device="auto")["2"]
    np.testing.assert_array_equal(auto, collect_activations(model, x, "2")["2"])
    with pytest.raises(ValueError, match="torch sees no GPU"):
        collect_activations(model, x, "2", device="cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_moves_model_and_back():
    model = small_cnn()
    x = images(9)
    on_cpu = collect_activations(model, x, "2")["2"]
    # cuDNN may run float32 convolutions in TF32 on Ampere and later GPUs, which is off
    # from the CPU by more than the tolerance below: compare full float32 results.
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        on_gpu = collect_activations(model, x, "2", device="cuda")["2"]
    assert next(model.parameters()).device.type == "cpu"
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-4, atol=1e-5)
