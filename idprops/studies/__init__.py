"""Studies that chain data, training, attacks and estimators, and resume from a store."""

from .dynamics import DynamicsStudy
from .grokking import GrokkingStudy
from .measure import measure
from .randomization import RandomizationStudy
from .robustness import RobustnessStudy
from .scaling import ScalingLawStudy
from .study import Study

__all__ = [
    "DynamicsStudy",
    "GrokkingStudy",
    "RandomizationStudy",
    "RobustnessStudy",
    "ScalingLawStudy",
    "Study",
    "measure",
]
