"""The estimators: one module each."""

from .calibrated import CalibratedDimension
from .mle import MLEDimension
from .representation import ReprDimension
from .sharpness import LabelSharpness
from .twonn import TwoNNDimension

__all__ = ["CalibratedDimension", "LabelSharpness", "MLEDimension", "ReprDimension", "TwoNNDimension"]
