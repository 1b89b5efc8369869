"""The scikit-learn contract: estimator checks, clone, pipelines, model selection."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from idprops import CalibratedDimension, MLEDimension, TwoNNDimension
from idprops.data.manifolds import sample_sphere
from idprops.neighbors import kneighbors

# scikit-learn's checks fit on as few as 10 samples, so the check instances use k = 5.
CHECKED = [
    MLEDimension(k=5),
    MLEDimension(k=5, aggregation="mean", unbiased=False),
    TwoNNDimension(),
    CalibratedDimension(),
]


@parametrize_with_checks(CHECKED)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_clone_and_params():
    est = MLEDimension(k=7, aggregation="mean")
    copy = clone(est)
    assert copy is not est and copy.get_params() == est.get_params()
    assert copy.set_params(k=9).k == 9 and est.k == 7


def test_pipeline_with_scaler():
    X = sample_sphere(1000, 3, ambient_dim=10, random_state=0)
    pipe = make_pipeline(StandardScaler(), MLEDimension()).fit(X)
    direct = MLEDimension().fit(StandardScaler().fit_transform(X))
    assert pipe[-1].dimension_ == pytest.approx(direct.dimension_, rel=1e-12)
    assert pipe.score(X) == pytest.approx(direct.score(StandardScaler().fit(X).transform(X)))


def test_score_is_the_held_out_pareto_likelihood():
    X = sample_sphere(1500, 3, ambient_dim=8, random_state=0)
    train, test = X[:1000], X[1000:]
    est = MLEDimension().fit(train)
    dist, _ = kneighbors(test, 2, Y=train)
    log_mu = np.log(dist[:, 1] / dist[:, 0])
    d = est.dimension_
    assert est.score(test) == pytest.approx(np.mean(np.log(d) - (d + 1) * log_mu), rel=1e-12)


def test_score_on_fitted_points_skips_the_point_itself():
    X = sample_sphere(800, 2, random_state=0)
    est = TwoNNDimension(method="mle").fit(X)
    dist, _ = kneighbors(X, 2)
    d = est.dimension_
    expected = np.mean(np.log(d) - (d + 1) * np.log(dist[:, 1] / dist[:, 0]))
    assert est.score(X) == pytest.approx(expected, rel=1e-12)


def test_score_prefers_the_true_dimension():
    X = sample_sphere(3000, 4, ambient_dim=20, random_state=1)
    est = TwoNNDimension().fit(X[:2000])
    right = est.score(X[2000:])
    est.dimension_ = 8.0  # a wrong dimension fits the held-out ratios worse
    assert est.score(X[2000:]) < right


def test_grid_search_over_k_selects_by_score():
    X = sample_sphere(1500, 4, ambient_dim=16, random_state=0)
    search = GridSearchCV(MLEDimension(), {"k": [5, 10, 20]}, cv=3).fit(X)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores))
    assert search.best_params_["k"] == [5, 10, 20][int(np.argmax(scores))]
    assert search.best_estimator_.dimension_ == pytest.approx(4, rel=0.15)


def test_grid_search_across_estimators():
    X = sample_sphere(1500, 3, ambient_dim=10, random_state=0)
    grid = [{"est": [MLEDimension(k=10), TwoNNDimension()]}]
    from sklearn.pipeline import Pipeline

    search = GridSearchCV(Pipeline([("est", MLEDimension())]), grid, cv=3).fit(X)
    assert len(search.cv_results_["mean_test_score"]) == 2


def test_grid_search_over_the_calibrated_k():
    X = sample_sphere(1500, 6, ambient_dim=12, random_state=0)
    search = GridSearchCV(CalibratedDimension(), {"k": [2, 3, 5]}, cv=3).fit(X)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert clone(search.best_estimator_).get_params() == search.best_estimator_.get_params()
    assert search.best_estimator_.dimension_ == pytest.approx(6, rel=0.1)


def test_cross_val_score():
    X = sample_sphere(1200, 3, ambient_dim=10, random_state=0)
    scores = cross_val_score(TwoNNDimension(), X, cv=4)
    assert scores.shape == (4,) and np.all(np.isfinite(scores))
