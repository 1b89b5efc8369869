import importlib.metadata

import pytest
import torch
import torchvision
from torch import nn

from idprops.nn import models
from idprops.nn.models import (
    build_model,
    cifar_resnet18,
    mlp1x512,
    mlp3x512,
    resnet18,
    small_alexnet,
    small_cnn,
    small_inception,
    transformer_classifier,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models gain nothing from intra-op threads, and on a busy 2-core machine
    # OpenMP's waiting threads slow them down thirtyfold.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------- Zhang et al. (2017)


@pytest.mark.parametrize(
    "factory, expected",
    [
        (small_inception, 1_649_402),
        (small_alexnet, 1_387_786),
        (mlp1x512, 1_209_866),
        (mlp3x512, 1_735_178),
    ],
)
def test_zhang_parameter_counts_match_the_paper(factory, expected):
    # Zhang et al. 2017, Table 1 / appendix: CIFAR-10 centre-cropped to 28 x 28 x 3.
    assert n_params(factory(in_channels=3, num_classes=10, input_size=28)) == expected


def test_mlp_counts_by_hand_for_other_shapes():
    # One 8x8 channel, 4 classes: 64*512 + 512 + 512*4 + 4.
    assert n_params(mlp1x512(in_channels=1, num_classes=4, input_size=8)) == 64 * 512 + 512 + 512 * 4 + 4
    # Three hidden layers on 2x5x7 inputs.
    expected = 70 * 512 + 512 + 2 * (512 * 512 + 512) + 512 * 3 + 3
    assert n_params(mlp3x512(in_channels=2, num_classes=3, input_size=(5, 7))) == expected


def test_small_alexnet_first_linear_follows_input_size():
    # Two max-pools (3, stride 2, pad 1) take 28 -> 14 -> 7 and 13 -> 7 -> 4, 17 -> 9 -> 5.
    assert small_alexnet(input_size=28).classifier[0].in_features == 64 * 7 * 7
    model = small_alexnet(in_channels=1, num_classes=5, input_size=(13, 17))
    assert model.classifier[0].in_features == 64 * 4 * 5
    assert model(torch.zeros(2, 1, 13, 17)).shape == (2, 5)


def test_small_inception_forward_and_named_parts():
    torch.manual_seed(0)
    model = small_inception(num_classes=7, input_size=28)
    features = {}
    model.avgpool.register_forward_hook(lambda m, i, o: features.update(avgpool=o))
    assert model(torch.rand(2, 3, 28, 28)).shape == (2, 7)
    assert features["avgpool"].shape == (2, 336, 1, 1)
    # Independent of the input size (global pooling), as the paper's count needs.
    assert n_params(small_inception(input_size=9)) == 1_649_402


def test_zhang_batch_norm_learns_shift_only():
    # TensorFlow's batch norm default (scale=False): one shift per channel, no scale.
    block = small_inception().stem
    assert block.conv.bias is None and not block.bn.affine
    assert block.shift.shape == (96,)


# ----------------------------------------------------------------- torchvision families

TORCHVISION_COUNTS = {  # torchvision's documented counts with 1000 classes
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_COUNTS))
def test_torchvision_architectures_unchanged_at_3_channels(name):
    with torch.device("meta"):
        ours = getattr(models, name)(num_classes=1000, input_size=224)
        theirs = getattr(torchvision.models, name)()
    assert n_params(ours) == TORCHVISION_COUNTS[name]
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("name", sorted(TORCHVISION_COUNTS))
def test_torchvision_grayscale_and_classes(name):
    with torch.device("meta"):
        model = getattr(models, name)(in_channels=1, num_classes=2, input_size=224)
    first = model.conv1 if name.startswith("resnet") else model.features[0]
    assert first.in_channels == 1
    kernel = first.kernel_size[0] * first.kernel_size[1]
    # Only the first convolution's input channels (3 -> 1) and the classifier change.
    last = model.fc if name.startswith("resnet") else model.classifier[6]
    removed = 2 * first.out_channels * kernel + (1000 - 2) * (last.in_features + 1)
    assert n_params(model) == TORCHVISION_COUNTS[name] - removed
    assert model(torch.empty(3, 1, 224, 224, device="meta")).shape == (3, 2)


@pytest.mark.parametrize("name", ["vgg13", "vgg16", "vgg19"])
@pytest.mark.parametrize("size", [8, 16, (5, 40)])
def test_vgg_small_inputs(name, size):
    with torch.device("meta"):
        model = getattr(models, name)(in_channels=1, num_classes=3, input_size=size)
    h, w = (size, size) if isinstance(size, int) else size
    assert model(torch.empty(2, 1, h, w, device="meta")).shape == (2, 3)
    # The penultimate Linear keeps its torchvision index.
    assert isinstance(model.classifier[3], nn.Linear) and model.classifier[3].out_features == 4096
    assert isinstance(model.classifier[6], nn.Linear)


def test_vgg_at_32_pixels_keeps_every_pool():
    with torch.device("meta"):
        model = models.vgg16(input_size=32)
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 5 and all(p.kernel_size == 2 for p in pools)


def test_resnet18_real_forward_on_small_grayscale():
    torch.manual_seed(0)
    model = resnet18(in_channels=1, num_classes=2, input_size=16)
    out = model(torch.rand(2, 1, 16, 16))
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    assert model.conv1.weight.shape == (64, 1, 7, 7)


# ----------------------------------------------------------------- CIFAR ResNet


def test_cifar_resnet18_count_and_stage_shapes():
    # The usual CIFAR ResNet-18 (kuangliu / Brown et al.) has 11,173,962 parameters.
    model = cifar_resnet18()
    assert n_params(model) == 11_173_962
    shapes = {}
    for name in ["stem", "layer1", "layer2", "layer3", "layer4", "avgpool"]:
        module = model.get_submodule(name)
        module.register_forward_hook(lambda m, i, o, name=name: shapes.update({name: tuple(o.shape)}))
    model.eval()
    assert model(torch.rand(2, 3, 8, 8)).shape == (2, 10)
    assert shapes == {
        "stem": (2, 64, 8, 8),
        "layer1": (2, 64, 8, 8),
        "layer2": (2, 128, 4, 4),
        "layer3": (2, 256, 2, 2),
        "layer4": (2, 512, 1, 1),
        "avgpool": (2, 512, 1, 1),
    }


def test_cifar_resnet18_dropout_only_in_training():
    torch.manual_seed(0)
    model = cifar_resnet18(num_classes=3, in_channels=1, dropout=0.5, block_dropout=0.2)
    x = torch.rand(4, 1, 8, 8)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))
    assert model.dropout.p == 0.5 and all(d.p == 0.2 for d in model.block_dropouts)


# ----------------------------------------------------------------- small CNN


def test_small_cnn_digits_shapes_and_names():
    model = small_cnn(in_channels=1, num_classes=10, input_size=8, dropout=0.3)
    # conv1 1*16*9+16, conv2 16*32*9+32, fc1 512*64+64, fc2 64*10+10.
    assert n_params(model) == 160 + 4640 + 32832 + 650
    for name in ["features", "features.conv1", "features.conv2", "fc1", "relu", "dropout", "fc2"]:
        model.get_submodule(name)
    assert model.dropout.p == 0.3
    for size in [(8, 8), (28, 28), (3, 5)]:
        assert model(torch.rand(2, 1, *size)).shape == (2, 10)


def test_small_cnn_pool_is_plain_2x2_on_8x8():
    torch.manual_seed(0)
    model = small_cnn(in_channels=1, input_size=8)
    x = torch.rand(3, 32, 8, 8)
    assert torch.equal(model.features.pool(x), nn.functional.max_pool2d(x, 2))


# ----------------------------------------------------------------- transformer


def test_transformer_shapes_and_count():
    V, C, W, M, D = 99, 97, 128, 512, 2
    model = transformer_classifier(vocab_size=V, num_classes=C)
    block = 2 * 2 * W + (3 * W * W + 3 * W) + (W * W + W) + (W * M + M) + (M * W + W)
    assert n_params(model) == V * W + 4 * W + D * block + 2 * W + W * C
    assert model(torch.randint(0, V, (5, 4))).shape == (5, C)
    with pytest.raises(ValueError, match="seq_len"):
        model(torch.zeros(1, 5, dtype=torch.long))


def test_transformer_hooks_give_residual_increments():
    torch.manual_seed(0)
    model = transformer_classifier(vocab_size=20, num_classes=7, width=32, mlp_width=64).eval()
    seen = {}

    def keep(name):
        def hook(module, inputs, output):
            seen[name] = (inputs[0], output)

        return hook

    for name in ["blocks.0", "blocks.0.attn", "blocks.0.mlp", "blocks.1.attn", "blocks.1.mlp"]:
        model.get_submodule(name).register_forward_hook(keep(name))
    model(torch.randint(0, 20, (3, 4)))
    block_in, block_out = seen["blocks.0"]
    assert seen["blocks.0.attn"][1].shape == (3, 4, 32)
    torch.testing.assert_close(block_out, block_in + seen["blocks.0.attn"][1] + seen["blocks.0.mlp"][1])


def test_transformer_is_causal_and_reads_the_last_token():
    torch.manual_seed(0)
    model = transformer_classifier(vocab_size=20, num_classes=5).eval()
    seen = []
    model.blocks[1].attn.register_forward_hook(lambda m, i, o: seen.append(o))
    a = torch.tensor([[1, 2, 3, 4]])
    b = torch.tensor([[1, 2, 3, 9]])
    out_a, out_b = model(a), model(b)
    # Positions before the changed one see nothing of it; the head (last token) does.
    torch.testing.assert_close(seen[0][:, :3], seen[1][:, :3], rtol=0, atol=1e-6)
    assert not torch.allclose(out_a, out_b)


def test_transformer_accepts_uniform_factory_arguments():
    model = transformer_classifier(vocab_size=10, num_classes=3, in_channels=1, input_size=6)
    assert model.seq_len == 6
    assert model(torch.zeros(2, 6, dtype=torch.long)).shape == (2, 3)


# ----------------------------------------------------------------- weights


def test_weights_roundtrip_and_trainer_checkpoint_format(tmp_path):
    torch.manual_seed(0)
    source = small_cnn(in_channels=1, num_classes=3, input_size=8)
    path = tmp_path / "w.pt"
    torch.save(source.state_dict(), path)
    torch.manual_seed(1)
    loaded = small_cnn(in_channels=1, num_classes=3, input_size=8, weights=str(path))
    for a, b in zip(source.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    checkpoint = tmp_path / "ckpt.pt"
    torch.save({"model": source.state_dict(), "epoch": 3}, checkpoint)
    loaded = small_cnn(in_channels=1, num_classes=3, input_size=8, weights=checkpoint)
    assert torch.equal(loaded.fc2.weight, source.fc2.weight)


def test_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        mlp1x512(weights=str(tmp_path / "missing.pt"))
    path = tmp_path / "w.pt"
    torch.save(mlp1x512(num_classes=3, input_size=8).state_dict(), path)
    with pytest.raises(ValueError, match="num_classes"):
        mlp1x512(num_classes=4, input_size=8, weights=str(path))
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(ValueError, match="state_dict"):
        mlp1x512(weights=str(tmp_path / "tensor.pt"))


@pytest.mark.parametrize(
    "kwargs",
    [dict(in_channels=0), dict(num_classes=0), dict(input_size=0), dict(input_size=(3, 4, 5))],
)
def test_bad_shapes_raise(kwargs):
    with pytest.raises(ValueError):
        small_cnn(**kwargs)


# ----------------------------------------------------------------- build_model / registry


def test_build_model_specs():
    model = nn.Linear(2, 2)
    assert build_model(model, num_classes=5) is model
    assert build_model(mlp1x512, num_classes=3, input_size=4).fc2.out_features == 3
    with pytest.raises(ValueError, match="registered name"):
        build_model(3)
    with pytest.raises(ValueError, match="not a torch.nn.Module"):
        build_model(lambda **kw: "nope")


def test_build_model_runtime_registered_name():
    from idprops.registry import register_model

    register_model("test_models_tiny", lambda **kw: nn.Linear(kw["in_channels"], 2), replace=True)
    assert build_model("test_models_tiny", in_channels=7).in_features == 7


ENTRY_POINTS = {
    name: "transformer_classifier" if name == "transformer" else name
    for name in [
        "resnet18",
        "resnet34",
        "resnet50",
        "vgg13",
        "vgg16",
        "vgg19",
        "cifar_resnet18",
        "small_inception",
        "small_alexnet",
        "mlp1x512",
        "mlp3x512",
        "small_cnn",
        "transformer",
    ]
}


def test_entry_points_resolve_to_these_factories():
    declared = {ep.name for ep in importlib.metadata.entry_points(group="idprops.models")}
    if not set(ENTRY_POINTS) <= declared:
        pytest.skip("idprops is not installed with its entry points (pip install -e .)")
    from idprops.registry import get_model

    for name, attribute in ENTRY_POINTS.items():
        assert get_model(name) is getattr(models, attribute)
    assert build_model("small_cnn", in_channels=1, input_size=8).fc1.in_features == 512
