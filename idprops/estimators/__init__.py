"""The estimators: one module each."""

from .mle import MLEDimension
from .twonn import TwoNNDimension

__all__ = ["MLEDimension", "TwoNNDimension"]
