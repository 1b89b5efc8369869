"""The estimators: one module each."""

from .mle import MLEDimension
from .representation import ReprDimension
from .sharpness import LabelSharpness
from .twonn import TwoNNDimension

__all__ = ["LabelSharpness", "MLEDimension", "ReprDimension", "TwoNNDimension"]
