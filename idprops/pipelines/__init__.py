"""Studies that chain data, training, attacks and estimators, and resume from a store."""

from .measure import measure
from .robustness import RobustnessStudy
from .scaling import ScalingLawStudy
from .study import Study

__all__ = ["RobustnessStudy", "ScalingLawStudy", "Study", "measure"]
