"""Model factories, found by name through the ``idprops.models`` entry points.

Every image factory has the signature::

    name(*, in_channels=3, num_classes=10, input_size=32, weights=None, **kwargs) -> nn.Module

and builds a randomly initialised model for ``in_channels`` x ``input_size`` images
and ``num_classes`` classes. ``weights`` is the path of a LOCAL file holding a
``state_dict`` (or a checkpoint of :class:`idprops.nn.Trainer`, whose ``"model"`` entry
is used) that is loaded with ``torch.load(path, weights_only=True)``; nothing is ever
downloaded. The weights must fit the model built with the same arguments.

Families:

- ``resnet18``, ``resnet34``, ``resnet50``, ``vgg13``, ``vgg16``, ``vgg19``: torchvision's
  architectures, as trained by Konz & Mazurowski (2024) at 224 x 224;
- ``cifar_resnet18``: the CIFAR ResNet-18 of Brown et al. (2022);
- ``small_inception``, ``small_alexnet``, ``mlp1x512``, ``mlp3x512``: the models of
  Zhang et al. (2017), with their exact parameter counts at 28 x 28 x 3;
- ``small_cnn``: a CNN small enough to train on 8 x 8 digits in seconds on a CPU;
- ``transformer_classifier`` (registered as ``transformer``): the GPT-2-style classifier
  of the grokking experiments of Brown et al. (2022).

:func:`build_model` turns a name, a factory or a model into a model.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable
from numbers import Integral
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ..torchfiles import load_torch_file

__all__ = [
    "CausalSelfAttention",
    "CifarResNet",
    "SmallCNN",
    "TransformerClassifier",
    "build_model",
    "cifar_resnet18",
    "mlp1x512",
    "mlp3x512",
    "resnet18",
    "resnet34",
    "resnet50",
    "small_alexnet",
    "small_cnn",
    "small_inception",
    "transformer_classifier",
    "vgg13",
    "vgg16",
    "vgg19",
]


# --------------------------------------------------------------------------- helpers


def _size2d(input_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(input_size, Integral):
        size = (input_size, input_size)
    else:
        size = tuple(input_size)
    if len(size) != 2 or not all(isinstance(s, Integral) and s >= 1 for s in size):
        raise ValueError(f"input_size must be a positive int or a pair (height, width) of them, got {input_size!r}.")
    return int(size[0]), int(size[1])


def _check_shape(in_channels: int, num_classes: int, input_size) -> tuple[int, int]:
    if not isinstance(in_channels, Integral) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}.")
    if not isinstance(num_classes, Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
    return _size2d(input_size)


def read_state_dict(path: str | os.PathLike) -> Any:
    """What a weights file holds, on the CPU: a state_dict, a Trainer checkpoint's
    model state, or whatever else was saved there (for the caller to refuse)."""
    state = load_torch_file(path, "weights file", "save the model's weights: torch.save(model.state_dict(), path)")
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a Trainer checkpoint
    return state


def _load_weights(model: nn.Module, weights: str | os.PathLike | None, name: str) -> nn.Module:
    """Load a local state_dict into ``model`` (strictly), with errors that say what to do."""
    if weights is None:
        return model
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"weights file {path!r} for {name} does not exist. idprops never downloads "
            "weights: save a state_dict there first (torch.save(model.state_dict(), path))."
        )
    state = read_state_dict(path)
    if not isinstance(state, dict):
        raise ValueError(
            f"{path!r} holds a {type(state).__name__}, not a state_dict; save model.state_dict() instead of the model."
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"the weights in {path!r} do not fit {name} as built (check in_channels, "
            f"num_classes, input_size and the other arguments): {exc}"
        ) from exc
    return model


def _kaiming_conv(conv: nn.Conv2d) -> nn.Conv2d:
    # The initialisation torchvision gives every convolution of its ResNets and VGGs.
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


# --------------------------------------------------------------------------- torchvision


def _torchvision_resnet(name, in_channels, num_classes, input_size, weights, kwargs):
    _check_shape(in_channels, num_classes, input_size)
    model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes, **kwargs)
    if in_channels != 3:
        old = model.conv1
        model.conv1 = _kaiming_conv(
            nn.Conv2d(in_channels, old.out_channels, kernel_size=7, stride=2, padding=3, bias=False)
        )
    return _load_weights(model, weights, name)


def resnet18(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int | tuple[int, int] = 32,
    weights: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """torchvision's ResNet-18, randomly initialised.

    The first convolution takes ``in_channels`` channels (Konz & Mazurowski use one for
    grayscale images) and ``fc`` has ``num_classes`` outputs. Adaptive average pooling
    makes any input of at least 1 x 1 pixel work (the stem and stages halve the size
    five times, never below 1); in training mode BatchNorm needs more than one value
    per channel, so a batch of one 1 x 1-pixel image fails there. The penultimate
    representation is ``layer4`` (or ``avgpool``, its 512-d average).

    ``kwargs`` go to :func:`torchvision.models.resnet18` (e.g. ``zero_init_residual``).

    Examples
    --------
    >>> import torch
    >>> model = resnet18(in_channels=1, num_classes=2, input_size=16)
    >>> model(torch.zeros(2, 1, 16, 16)).shape
    torch.Size([2, 2])
    """
    return _torchvision_resnet("resnet18", in_channels, num_classes, input_size, weights, kwargs)


def resnet34(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int | tuple[int, int] = 32,
    weights: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """torchvision's ResNet-34, randomly initialised; see :func:`resnet18`.

    Examples
    --------
    >>> sum(p.numel() for p in resnet34(num_classes=1000).parameters())
    21797672
    """
    return _torchvision_resnet("resnet34", in_channels, num_classes, input_size, weights, kwargs)


def resnet50(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int | tuple[int, int] = 32,
    weights: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """torchvision's ResNet-50, randomly initialised; see :func:`resnet18`.

    Examples
    --------
    >>> resnet50(num_classes=3).fc.out_features
    3
    """
    return _torchvision_resnet("resnet50", in_channels, num_classes, input_size, weights, kwargs)


def _torchvision_vgg(name, in_channels, num_classes, input_size, weights, kwargs):
    height, width = _check_shape(in_channels, num_classes, input_size)
    model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes, **kwargs)
    if in_channels != 3:
        old = model.features[0]
        model.features[0] = _kaiming_conv(nn.Conv2d(in_channels, old.out_channels, kernel_size=3, padding=1))
    # VGG halves the image five times; on small inputs (below 32 pixels) a 2x2 pool
    # would reach 0 pixels, so along a side already down to 1 pixel the pool keeps it.
    # Module indices stay those of torchvision.
    for index, layer in enumerate(model.features):
        if isinstance(layer, nn.MaxPool2d):
            kernel = (2 if height >= 2 else 1, 2 if width >= 2 else 1)
            if kernel != (2, 2):
                model.features[index] = nn.MaxPool2d(kernel_size=kernel, stride=kernel)
            height, width = height // kernel[0], width // kernel[1]
    return _load_weights(model, weights, name)


def vgg13(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int | tuple[int, int] = 32,
    weights: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """torchvision's VGG-13 (no batch norm), randomly initialised.

    The first convolution takes ``in_channels`` channels and the last Linear has
    ``num_classes`` outputs; ``classifier[3]`` stays the penultimate Linear (the layer
    whose representation Konz & Mazurowski measure). torchvision's adaptive pooling to
    7 x 7 is kept, so the classifier has torchvision's 4096-wide layers (about 120 M
    parameters) whatever the input size. Inputs smaller than 32 pixels work: a max-pool
    never shrinks a side that is already 1 pixel. ``kwargs`` go to
    :func:`torchvision.models.vgg13` (e.g. ``dropout``).

    Examples
    --------
    >>> import torch
    >>> with torch.device("meta"):
    ...     model = vgg13(in_channels=1, num_classes=2, input_size=8)
    >>> model.classifier[3]
    Linear(in_features=4096, out_features=4096, bias=True)
    """
    return _torchvision_vgg("vgg13", in_channels, num_classes, input_size, weights, kwargs)


def vgg16(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int | tuple[int, int] = 32,
    weights: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """torchvision's VGG-16 (no batch norm), randomly initialised; see :func:`vgg13`.

    Examples
    --------
    >>> import torch
    >>> with torch.device("meta"):
    ...     model = vgg16(num_classes=1000)
    >>> sum(p.numel() for p in model.parameters())
    138357544
    """
    return _torchvision_vgg("vgg16", in_channels, num_classes, input_size, weights, kwargs)


def vgg19(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int | tuple[int, int] = 32,
    weights: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """torchvision's VGG-19 (no batch norm), randomly initialised; see :func:`vgg13`.

    Examples
    --------
    >>> import torch
    >>> with torch.device("meta"):
    ...     model = vgg19(num_classes=5)
    >>> model.classifier[6].out_features
    5
    """
    return _torchvision_vgg("vgg19", in_channels, num_classes, input_size, weights, kwargs)


# --------------------------------------------------------------------------- CIFAR ResNet


class _BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for small images: 3x3 stem without max-pool, four stages of basic blocks.

    Modules, in order: ``stem`` (conv1 of the paper), ``layer1`` .. ``layer4``
    (conv2_x .. conv5_x), ``avgpool`` (the 512-d last hidden representation), ``fc``.
    ``block_dropout`` is applied after the stem and after every stage (as in Brown et
    al.'s code), ``dropout`` before ``fc``; both are separate modules, so hooks on the
    stages see the outputs before dropout.

    Examples
    --------
    >>> model = CifarResNet(in_channels=3, num_classes=10)
    >>> model(torch.zeros(2, 3, 32, 32)).shape, sum(p.numel() for p in model.parameters())
    (torch.Size([2, 10]), 11173962)
    """

    def __init__(
        self,
        blocks: tuple[int, int, int, int] = (2, 2, 2, 2),
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        dropout: float = 0.0,
        block_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        in_planes = 64
        for index, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True), start=1):
            stride = 1 if index == 1 else 2
            layers = []
            for block_stride in [stride] + [1] * (count - 1):
                layers.append(_BasicBlock(in_planes, planes, block_stride))
                in_planes = planes
            setattr(self, f"layer{index}", nn.Sequential(*layers))
        self.block_dropouts = nn.ModuleList(nn.Dropout(block_dropout) for _ in range(5))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(512, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                _kaiming_conv(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stages = (self.stem, self.layer1, self.layer2, self.layer3, self.layer4)
        for stage, drop in zip(stages, self.block_dropouts, strict=True):
            x = drop(stage(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


def cifar_resnet18(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int | tuple[int, int] = 32,
    weights: str | None = None,
    dropout: float = 0.0,
    block_dropout: float = 0.0,
) -> nn.Module:
    """CIFAR ResNet-18 (basic blocks [2, 2, 2, 2]) as used by Brown et al. (2022).

    Brown et al. track the intrinsic dimension at ``stem``, ``layer1`` .. ``layer4``
    and ``avgpool`` (the last hidden layer). Any input size works (adaptive pooling;
    three stride-2 stages). Their code passes the block dropout rate as the classifier
    dropout too (a slip); here the two are independent.

    Parameters
    ----------
    dropout : float
        Dropout rate before the classifier ``fc``.
    block_dropout : float
        Dropout rate after the stem and after each stage.

    Examples
    --------
    >>> import torch
    >>> model = cifar_resnet18(num_classes=100, input_size=8)
    >>> model(torch.zeros(2, 3, 8, 8)).shape
    torch.Size([2, 100])
    >>> sum(p.numel() for p in model.parameters())
    11220132
    """
    _check_shape(in_channels, num_classes, input_size)
    model = CifarResNet(
        in_channels=in_channels,
        num_classes=num_classes,
        dropout=dropout,
        block_dropout=block_dropout,
    )
    return _load_weights(model, weights, "cifar_resnet18")


# --------------------------------------------------------------------------- Zhang et al.


class _ConvBN(nn.Module):
    """Convolution (no bias) -> batch norm with a shift but no scale -> ReLU.

    Zhang et al.'s TensorFlow batch norm learns only the shift (TF's default
    ``scale=False``): one parameter per channel. With it the small Inception has
    exactly the 1,649,402 parameters the paper reports.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels, affine=False)
        self.shift = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)) + self.shift[:, None, None])


class _InceptionModule(nn.Module):
    def __init__(self, in_channels: int, ch1: int, ch3: int) -> None:
        super().__init__()
        self.branch1 = _ConvBN(in_channels, ch1, 1)
        self.branch3 = _ConvBN(in_channels, ch3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch3(x)], dim=1)


class _DownsampleModule(nn.Module):
    def __init__(self, in_channels: int, ch3: int) -> None:
        super().__init__()
        self.conv = _ConvBN(in_channels, ch3, 3, stride=2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.pool(x)], dim=1)


def small_inception(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int | tuple[int, int] = 32,
    weights: str | None = None,
) -> nn.Module:
    """The small Inception of Zhang et al. (2017), their Figure 3: 1,649,402 parameters.

    conv 3x3 (96) -> inception (32, 32) -> inception (32, 48) -> downsample (80) ->
    inception (112, 48) -> (96, 64) -> (80, 80) -> (48, 96) -> downsample (96) ->
    inception (176, 160) -> (176, 160) -> global mean pool -> fc. An inception module
    concatenates a 1x1 and a 3x3 conv module; a downsample module a stride-2 3x3 conv
    module and a stride-2 3x3 max-pool; a conv module is conv -> batch norm (shift
    only) -> ReLU. The count does not depend on the input size (global pooling; any
    size works; 28 x 28 in the paper). Modules: ``stem``, ``features`` (the ten modules,
    addressable as ``features.0`` ..), ``avgpool`` (336-d), ``fc``.

    Examples
    --------
    >>> sum(p.numel() for p in small_inception(input_size=28).parameters())
    1649402
    """
    _check_shape(in_channels, num_classes, input_size)
    blocks, width = [], 96
    # (ch1, ch3): an inception module; ch3 alone: a downsample module.
    plan = [
        (32, 32),
        (32, 48),
        80,
        (112, 48),
        (96, 64),
        (80, 80),
        (48, 96),
        96,
        (176, 160),
        (176, 160),
    ]
    for item in plan:
        if isinstance(item, tuple):
            blocks.append(_InceptionModule(width, *item))
            width = sum(item)
        else:
            blocks.append(_DownsampleModule(width, item))
            width += item
    model = nn.Sequential(
        OrderedDict(
            stem=_ConvBN(in_channels, 96, 3),
            features=nn.Sequential(*blocks),
            avgpool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(width, num_classes),
        )
    )
    return _load_weights(model, weights, "small_inception")


def small_alexnet(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int | tuple[int, int] = 32,
    weights: str | None = None,
) -> nn.Module:
    """The small AlexNet of Zhang et al. (2017): 1,387,786 parameters at 28 x 28 x 3.

    Two modules of conv 5x5 (64) -> ReLU -> max-pool 3x3 stride 2 -> local response
    normalisation (TensorFlow's CIFAR-10 tutorial settings: radius 4, alpha 0.001/9 per
    element, beta 0.75), then fully connected 384 -> 192 -> ``num_classes`` with ReLU.
    The first Linear's width depends on the input size: 64 * ceil(h/4) * ceil(w/4).

    Examples
    --------
    >>> sum(p.numel() for p in small_alexnet(input_size=28).parameters())
    1387786
    """
    height, width = _check_shape(in_channels, num_classes, input_size)
    for _ in range(2):  # each max-pool (kernel 3, stride 2, padding 1) halves, rounding up
        height, width = (height + 1) // 2, (width + 1) // 2

    def lrn():
        # PyTorch divides alpha by the window size, TensorFlow does not: 9 * (0.001 / 9).
        return nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0)

    model = nn.Sequential(
        OrderedDict(
            features=nn.Sequential(
                nn.Conv2d(in_channels, 64, 5, padding=2),
                nn.ReLU(),
                nn.MaxPool2d(3, 2, 1),
                lrn(),
                nn.Conv2d(64, 64, 5, padding=2),
                nn.ReLU(),
                nn.MaxPool2d(3, 2, 1),
                lrn(),
            ),
            flatten=nn.Flatten(),
            classifier=nn.Sequential(
                nn.Linear(64 * height * width, 384),
                nn.ReLU(),
                nn.Linear(384, 192),
                nn.ReLU(),
                nn.Linear(192, num_classes),
            ),
        )
    )
    return _load_weights(model, weights, "small_alexnet")


def _mlp(name, hidden_layers, in_channels, num_classes, input_size, weights):
    height, width = _check_shape(in_channels, num_classes, input_size)
    layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    fan_in = in_channels * height * width
    for index in range(1, hidden_layers + 1):
        layers += [(f"fc{index}", nn.Linear(fan_in, 512)), (f"relu{index}", nn.ReLU())]
        fan_in = 512
    layers.append((f"fc{hidden_layers + 1}", nn.Linear(fan_in, num_classes)))
    return _load_weights(nn.Sequential(OrderedDict(layers)), weights, name)


def mlp1x512(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int | tuple[int, int] = 32,
    weights: str | None = None,
) -> nn.Module:
    """Zhang et al.'s MLP with one hidden layer of 512 ReLU units: 1,209,866 parameters
    at 28 x 28 x 3 (2352 * 512 + 512 + 512 * 10 + 10).

    Modules: ``flatten``, ``fc1``, ``relu1`` (the last hidden layer), ``fc2``.

    Examples
    --------
    >>> sum(p.numel() for p in mlp1x512(input_size=28).parameters())
    1209866
    """
    return _mlp("mlp1x512", 1, in_channels, num_classes, input_size, weights)


def mlp3x512(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int | tuple[int, int] = 32,
    weights: str | None = None,
) -> nn.Module:
    """Zhang et al.'s MLP with three hidden layers of 512 ReLU units: 1,735,178
    parameters at 28 x 28 x 3.

    Modules: ``flatten``, ``fc1``, ``relu1``, ``fc2``, ``relu2``, ``fc3``, ``relu3`` (the
    last hidden layer), ``fc4``.

    Examples
    --------
    >>> sum(p.numel() for p in mlp3x512(input_size=28).parameters())
    1735178
    """
    return _mlp("mlp3x512", 3, in_channels, num_classes, input_size, weights)


# --------------------------------------------------------------------------- small CNN


class SmallCNN(nn.Module):
    """Two 3x3 convolutions, an adaptive max-pool to 4 x 4, one hidden Linear.

    Modules: ``features`` (``conv1``, ``relu1``, ``conv2``, ``relu2``, ``pool``),
    ``flatten``, ``fc1``, ``relu`` (the last hidden representation), ``dropout``,
    ``fc2`` (the classifier).

    Examples
    --------
    >>> model = SmallCNN(in_channels=1, num_classes=10)
    >>> model(torch.zeros(4, 1, 8, 8)).shape, sum(p.numel() for p in model.parameters())
    (torch.Size([4, 10]), 38282)
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        *,
        channels: tuple[int, int] = (16, 32),
        hidden: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(in_channels, c1, 3, padding=1),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(c1, c2, 3, padding=1),
                relu2=nn.ReLU(),
                pool=nn.AdaptiveMaxPool2d(4),
            )
        )
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(c2 * 16, hidden)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.features(x))
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


def small_cnn(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int | tuple[int, int] = 32,
    weights: str | None = None,
    channels: tuple[int, int] = (16, 32),
    hidden: int = 64,
    dropout: float = 0.0,
) -> nn.Module:
    """A small CNN, the default model of the digits studies (8 x 8 images).

    On 8 x 8 inputs the pool is a plain 2 x 2 max-pool; larger inputs are max-pooled
    to 4 x 4, smaller ones up-sampled to it, so any size works and the parameter count
    (38,282 for one channel, 10 classes) does not depend on it.

    Parameters
    ----------
    channels : (int, int)
        Output channels of the two convolutions.
    hidden : int
        Width of the hidden Linear ``fc1``.
    dropout : float
        Dropout rate before the classifier ``fc2``.

    Examples
    --------
    >>> import torch
    >>> model = small_cnn(in_channels=1, input_size=8)
    >>> model(torch.zeros(5, 1, 8, 8)).shape
    torch.Size([5, 10])
    >>> sum(p.numel() for p in model.parameters())
    38282
    """
    _check_shape(in_channels, num_classes, input_size)
    model = SmallCNN(in_channels, num_classes, channels=channels, hidden=hidden, dropout=dropout)
    return _load_weights(model, weights, "small_cnn")


# --------------------------------------------------------------------------- transformer


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention; returns the residual increment (GPT-2's attn).

    Examples
    --------
    Causal: changing the last token leaves the outputs at earlier positions unchanged.

    >>> _ = torch.manual_seed(0)
    >>> attn = CausalSelfAttention(width=16, heads=4, dropout=0.0)
    >>> x = torch.randn(1, 5, 16)
    >>> changed = x.clone()
    >>> changed[0, 4] += 1.0
    >>> attn(x).shape, torch.allclose(attn(changed)[0, :4], attn(x)[0, :4])
    (torch.Size([1, 5, 16]), True)
    """

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width ({width}) must be divisible by heads ({heads}).")
        self.heads = heads
        self.attn_dropout = dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        q, k, v = (t.view(batch, length, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.attn_dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).reshape(batch, length, width)
        return self.resid_dropout(self.proj(y))


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_width: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                fc=nn.Linear(width, mlp_width),
                act=nn.GELU(approximate="tanh"),
                proj=nn.Linear(mlp_width, width),
                dropout=nn.Dropout(dropout),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TransformerClassifier(nn.Module):
    """GPT-2-style (pre-LayerNorm, causal) classifier of token sequences.

    Input: integer tokens of shape (batch, length), length <= ``seq_len``. Output: the
    logits read from the LAST position (as GPT-2's sequence classification head).
    Modules: ``tok_emb``, ``pos_emb``, ``drop``, ``blocks.<i>.attn`` and
    ``blocks.<i>.mlp`` (whose outputs are the residual increments, shape (batch, length,
    width)), ``ln_f``, ``head``.

    Examples
    --------
    >>> model = TransformerClassifier(vocab_size=33, num_classes=31, width=32, mlp_width=64)
    >>> tokens = torch.tensor([[3, 31, 5, 32], [7, 31, 2, 32]])  # a, op, b, =
    >>> model(tokens).shape
    torch.Size([2, 31])
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        *,
        seq_len: int = 4,
        width: int = 128,
        depth: int = 2,
        heads: int = 4,
        mlp_width: int = 512,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.seq_len = seq_len
        self.tok_emb = nn.Embedding(vocab_size, width)
        self.pos_emb = nn.Embedding(seq_len, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(width, heads, mlp_width, dropout) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes, bias=False)
        # GPT-2's initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 depth).
        for name, param in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(param)
            elif param.dim() >= 2:
                std = 0.02 / math.sqrt(2 * depth) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(param, mean=0.0, std=std)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        if length > self.seq_len:
            raise ValueError(
                f"sequences of length {length} exceed seq_len={self.seq_len}; build the model with a larger seq_len."
            )
        positions = torch.arange(length, device=tokens.device)
        x = self.drop(self.tok_emb(tokens) + self.pos_emb(positions))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x)[:, -1])


def transformer_classifier(
    *,
    vocab_size: int,
    num_classes: int,
    seq_len: int = 4,
    width: int = 128,
    depth: int = 2,
    heads: int = 4,
    mlp_width: int = 512,
    dropout: float = 0.1,
    weights: str | None = None,
    in_channels: int | None = None,
    input_size: int | None = None,
) -> nn.Module:
    """The grokking classifier of Brown et al. (2022): GPT-2 with 2 layers, 4 heads,
    width 128, MLP 512, dropout 0.1, head on the last token.

    Their runs use Hugging Face's ``GPT2ForSequenceClassification``; this is the same
    architecture (pre-LN blocks, tanh-GELU, learned positions, bias-free head, GPT-2's
    initialisation) in plain torch. Hooks on ``blocks.<i>.attn`` and ``blocks.<i>.mlp``
    give the residual increments whose intrinsic dimension they track.

    Parameters
    ----------
    vocab_size, num_classes : int
        Number of token ids and of classes.
    seq_len : int
        Longest input sequence (4 for ``a op b =``).
    width, depth, heads, mlp_width, dropout
        GPT-2's ``n_embd``, ``n_layer``, ``n_head``, ``n_inner`` and dropout rates
        (embedding, attention and residual).
    weights : str, optional
        Local state_dict to load.
    in_channels : ignored
        Accepted so that every registered factory takes the same arguments.
    input_size : int, optional
        Same as ``seq_len`` when given (the uniform factory argument).

    Examples
    --------
    >>> import torch
    >>> model = transformer_classifier(vocab_size=99, num_classes=97)
    >>> model(torch.tensor([[3, 97, 5, 98]])).shape
    torch.Size([1, 97])
    """
    if input_size is not None:
        if not isinstance(input_size, Integral) or input_size < 1:
            raise ValueError(f"input_size (the sequence length) must be a positive int, got {input_size!r}.")
        seq_len = input_size
    model = TransformerClassifier(
        vocab_size,
        num_classes,
        seq_len=seq_len,
        width=width,
        depth=depth,
        heads=heads,
        mlp_width=mlp_width,
        dropout=dropout,
    )
    return _load_weights(model, weights, "transformer_classifier")


# --------------------------------------------------------------------------- build_model


def build_model(spec: str | Callable[..., nn.Module] | nn.Module, **kwargs: Any) -> nn.Module:
    """Turn a registered name, a factory or a model into a model.

    Parameters
    ----------
    spec : str, callable or torch.nn.Module
        A name registered under ``idprops.models`` (see
        :func:`idprops.registry.available_models`), a factory called with ``kwargs``, or
        a model, returned as it is (``kwargs`` describe how to build a model, and this
        one is built already, so they are ignored).
    **kwargs
        Arguments of the factory: ``in_channels``, ``num_classes``, ``input_size``,
        ``weights``, and the factory's own.

    Examples
    --------
    >>> build_model("mlp1x512", in_channels=1, input_size=8).fc1.in_features
    64
    >>> build_model(mlp1x512, num_classes=3).fc2.out_features
    3
    """
    if isinstance(spec, nn.Module):
        return spec
    if isinstance(spec, str):
        from ..registry import get_model

        spec = get_model(spec)
    if not callable(spec):
        raise ValueError(
            f"a model spec must be a registered name, a factory or a torch.nn.Module, got {type(spec).__name__}."
        )
    model = spec(**kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(f"the factory {spec!r} returned a {type(model).__name__}, not a torch.nn.Module.")
    return model
