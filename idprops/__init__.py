"""idprops: intrinsic properties of datasets and of neural networks' representations."""

__version__ = "0.1.1"

from .estimators import CalibratedDimension, LabelSharpness, MLEDimension, ReprDimension, TwoNNDimension
from .neighbors import kneighbors
from .registry import (
    available_datasets,
    available_estimators,
    available_models,
    get_dataset,
    get_estimator,
    get_model,
    register_dataset,
    register_estimator,
    register_model,
)

__all__ = [
    "CalibratedDimension",
    "LabelSharpness",
    "MLEDimension",
    "ReprDimension",
    "TwoNNDimension",
    "available_datasets",
    "available_estimators",
    "available_models",
    "get_dataset",
    "get_estimator",
    "get_model",
    "kneighbors",
    "register_dataset",
    "register_estimator",
    "register_model",
]
