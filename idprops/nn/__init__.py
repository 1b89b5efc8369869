"""Neural networks: a model zoo by name, a training loop with callbacks, attacks.

- :mod:`idprops.nn.models`: factories registered under the ``idprops.models`` entry
  points, and :func:`build_model`;
- :mod:`idprops.nn.training`: :class:`Trainer`, :class:`Callback`, :func:`evaluate`,
  the papers' settings in :data:`TRAINING_PRESETS`;
- :mod:`idprops.nn.attacks`: :class:`FGSM`, :class:`PGD`, :func:`robust_accuracy`.
"""

from .attacks import FGSM, PGD, paper_fgsm, robust_accuracy
from .models import (
    build_model,
    cifar_resnet18,
    mlp1x512,
    mlp3x512,
    resnet18,
    resnet34,
    resnet50,
    small_alexnet,
    small_cnn,
    small_inception,
    transformer_classifier,
    vgg13,
    vgg16,
    vgg19,
)
from .training import TRAINING_PRESETS, Callback, Trainer, TrainingDiverged, evaluate, seeded, training_preset

__all__ = [
    "FGSM",
    "PGD",
    "TRAINING_PRESETS",
    "Callback",
    "Trainer",
    "build_model",
    "cifar_resnet18",
    "evaluate",
    "mlp1x512",
    "mlp3x512",
    "paper_fgsm",
    "resnet18",
    "resnet34",
    "resnet50",
    "robust_accuracy",
    "seeded",
    "small_alexnet",
    "small_cnn",
    "small_inception",
    "training_preset",
    "TrainingDiverged",
    "transformer_classifier",
    "vgg13",
    "vgg16",
    "vgg19",
]
