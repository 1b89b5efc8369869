"""The scikit-learn private helpers idprops uses, imported here and nowhere else.

scikit-learn's parameter validation, ``Interval`` and ``StrOptions`` (with
``BaseEstimator._validate_params``, which checks an estimator's
``_parameter_constraints`` against them), is private API: a release may move or
change it without notice. So every idprops module takes these names from this module,
``tests/test_sklearn_compat.py`` fails if any other module imports a private
scikit-learn name, and setup.cfg bounds scikit-learn from above at the newest release
the test suite has passed with. When a release moves a helper, this module is the one
place to adapt (imbalanced-learn keeps a module of the same name for the same reason).
"""

from sklearn.utils._param_validation import Interval, StrOptions

__all__ = ["Interval", "StrOptions"]
