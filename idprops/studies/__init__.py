"""Studies that chain data, training, attacks and estimators, and resume from a store.

The building blocks, each with one job: :mod:`~idprops.studies.specs` (study-file
entries as validated specs), :mod:`~idprops.studies.steps` (load, train, measure,
attack), :mod:`~idprops.studies.reporting` (figures and the report writer),
:mod:`~idprops.studies.store` (the results store), :mod:`~idprops.studies.study` (the
grid run through joblib) and :mod:`~idprops.studies.plan` (a dry run). Each study
module holds its grid, its cell recipe and its figures.
"""

from .dynamics import DynamicsStudy
from .grokking import GrokkingStudy
from .measure import measure
from .randomization import RandomizationStudy
from .results import Results
from .robustness import RobustnessStudy
from .scaling import ScalingLawStudy
from .study import Study

__all__ = [
    "DynamicsStudy",
    "GrokkingStudy",
    "RandomizationStudy",
    "Results",
    "RobustnessStudy",
    "ScalingLawStudy",
    "Study",
    "measure",
]
