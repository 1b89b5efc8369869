"""One kNN search for every dimension estimator: fit(X, neighbors=...) and measure()."""

import math
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits

import idprops.base
from idprops import MLEDimension, TwoNNDimension, available_estimators, get_estimator
from idprops.base import BaseDimension, DuplicatesWarning, distinct_neighbors
from idprops.studies.measure import measure


class MeanRatioDimension(BaseDimension):
    """A plugin on the base class (the base class's own docstring example)."""

    def __init__(self, *, n_queries=None, backend="auto", random_state=None):
        self.n_queries = n_queries
        self.backend = backend
        self.random_state = random_state

    def _n_neighbors(self):
        return 3

    def _estimate(self, distances):
        # A strided log (not log_in_place): the columns it gets must not change its bits.
        self.dimension_ = float(1 / np.mean(np.log(distances[:, 2] / distances[:, 0])))


ESTIMATORS = [
    MLEDimension(),
    MLEDimension(k=5, aggregation="mean"),
    MLEDimension(k=12, unbiased=False),
    TwoNNDimension(),
    TwoNNDimension(method="mle"),
    TwoNNDimension(discard_fraction=0.3),
    MeanRatioDimension(),
]
# Every registered estimator on the base class too (the calibrated one, plugins'), with defaults.
ESTIMATORS += [
    cls()
    for cls in map(get_estimator, available_estimators())
    if isinstance(cls, type) and issubclass(cls, BaseDimension) and cls not in {type(e) for e in ESTIMATORS}
]
FITTED = ["dimension_", "dimension_std_", "local_dimensions_", "log_ratios_", "n_duplicates_", "n_samples_fit_"]


@pytest.fixture(scope="module")
def digits_with_duplicates():
    X = load_digits().data
    # 200 rows twice and one row four times: 203 duplicates to drop and count.
    return np.concatenate([X, X[:200], X[[7, 7, 7]]])


@pytest.mark.parametrize("est", ESTIMATORS, ids=repr)
def test_precomputed_neighbours_give_the_same_bits_as_a_fit(est, digits_with_duplicates):
    X = digits_with_duplicates
    neighbors = distinct_neighbors(X, 25)  # wider than any estimator needs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        alone = type(est)(**est.get_params()).fit(X)
        shared = type(est)(**est.get_params()).fit(X, neighbors=neighbors)
    assert [w.category for w in caught] == [DuplicatesWarning, DuplicatesWarning]
    assert shared.n_duplicates_ == 203 and shared.n_samples_fit_ == len(X) - 203
    for name in FITTED:
        if hasattr(alone, name):
            # Bit for bit, not approximately: the same floats.
            np.testing.assert_array_equal(getattr(shared, name), getattr(alone, name), strict=True)
    held_out = load_digits().data[:50] + 0.5
    assert shared.score(held_out) == alone.score(held_out)


def test_float32_images_and_exact_columns():
    # uint8-like pixels are searched in float32, as a fit of its own searches them.
    X = np.random.default_rng(0).integers(0, 255, size=(400, 30)).astype(np.uint8)
    neighbors = distinct_neighbors(X, 20)
    for k in (3, 10, 20):
        est = MLEDimension(k=k)
        assert est.fit(X, neighbors=neighbors).dimension_ == MLEDimension(k=k).fit(X).dimension_


def test_precomputed_neighbours_are_checked():
    X = np.random.default_rng(0).normal(size=(100, 4))
    distances, indices = distinct_neighbors(X, 5)
    with pytest.raises(ValueError, match=r"10 neighbours are needed; compute them with distinct_neighbors\(X, 10\)"):
        MLEDimension(k=10).fit(X, neighbors=(distances, indices))
    with pytest.raises(ValueError, match="X has 99 distinct points"):
        MLEDimension(k=5).fit(X[:99], neighbors=(distances, indices))
    with pytest.raises(ValueError, match="the pair \\(distances, indices\\)"):
        MLEDimension(k=5).fit(X, neighbors=distances)
    with pytest.raises(ValueError, match="same shape"):
        MLEDimension(k=5).fit(X, neighbors=(distances, indices[:, :3]))
    with pytest.raises(ValueError, match="n_queries=50 asks for a search of its own"):
        MLEDimension(k=5, n_queries=50).fit(X, neighbors=(distances, indices))


def test_n_neighbors_needed_checks_the_parameters():
    assert TwoNNDimension().n_neighbors_needed() == 2
    assert MLEDimension(k=7).n_neighbors_needed() == 7
    with pytest.raises(ValueError, match="k=2 is too small"):
        MLEDimension(k=2).n_neighbors_needed()


def _count_searches(monkeypatch):
    calls = []
    search = idprops.base.kneighbors

    def counted(X, k, **kwargs):
        calls.append(k)
        return search(X, k, **kwargs)

    monkeypatch.setattr(idprops.base, "kneighbors", counted)
    monkeypatch.setattr(idprops.neighbors, "kneighbors", counted)
    return calls


def test_measure_searches_once_for_every_dimension_estimator(monkeypatch, digits_with_duplicates):
    X = digits_with_duplicates
    y = np.zeros(len(X))
    specs = ["mle", "mle:k=10,aggregation=mean", "twonn", "twonn:method=mle", MeanRatioDimension()]
    calls = _count_searches(monkeypatch)
    out = measure((X, y), estimators=specs, sharpness=False)
    assert calls == [21]  # one search, at the largest k and one more (for the intervals)
    assert out["searches"][0]["k"] == 21 and len(out["searches"][0]["estimators"]) == 5
    assert out["data"]["duplicates"] == 203 and out["data"]["distinct"] == len(X) - 203
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicatesWarning)
        separate = [
            MLEDimension(),
            MLEDimension(k=10, aggregation="mean"),
            TwoNNDimension(),
            TwoNNDimension(method="mle"),
            MeanRatioDimension(),
        ]
        for row, est in zip(out["dimensions"], separate):
            est.fit(X)
            assert row["dimension"] == est.dimension_ and row["duplicates"] == 203
    assert [row["label"] for row in out["dimensions"]] == [*specs[:4], "MeanRatioDimension"]
    # Estimators that search a random subset of their own do so (and only they).
    calls.clear()
    out = measure((X, y), estimators=["twonn", "mle:n_queries=300,random_state=0"], sharpness=False)
    assert len(calls) == 2 and len(out["searches"]) == 1


def test_a_failed_estimate_is_nan_with_a_note_and_the_others_go_on(monkeypatch):
    X = np.random.default_rng(0).normal(size=(15, 3))
    calls = _count_searches(monkeypatch)
    out = measure((X, np.arange(15) % 2), estimators=["twonn", "mle"], sharpness=True)
    twonn, mle = out["dimensions"]
    assert math.isfinite(twonn["dimension"]) and twonn["error"] is None
    assert math.isnan(mle["dimension"]) and "needs at least 21 distinct samples" in mle["error"]
    assert out["warnings"] == [f"d_data mle: {mle['error']}"]
    # TwoNN's search goes as deep as the 15 points allow, for the scale profile; then
    # K_F's own, of the first class against the second.
    assert calls == [14, 1] and math.isfinite(out["sharpness"]["K_F"])


def test_an_unresolved_estimate_is_a_note_not_a_python_warning():
    # 60 noise images in 784 dimensions: no estimate can resolve that (the issue's
    # example). The command line prints notes as lines; a Python warning would print a
    # line of idprops' source under it.
    X = np.random.default_rng(0).random((60, 784))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = measure((X, None), estimators=["mle", "twonn"], sharpness=False)
    mle_note, twonn_note = out["warnings"]
    assert mle_note.startswith("d_data mle: MLEDimension: the estimate ")
    assert twonn_note.startswith("d_data twonn: TwoNNDimension: the estimate ")
    assert all("beyond what 60 samples can resolve" in note for note in out["warnings"])


def test_a_bad_request_raises_before_any_search(monkeypatch):
    calls = _count_searches(monkeypatch)
    X = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(ValueError, match="mle \\(MLEDimension\\) has no parameter 'kk'"):
        measure((X, np.zeros(50)), estimators=["mle:kk=3"], sharpness=False)
    with pytest.raises(ValueError, match="k=2 is too small"):
        measure((X, np.zeros(50)), estimators=["mle:k=2"], sharpness=False)
    assert calls == []


@pytest.mark.parametrize("est", ESTIMATORS, ids=repr)
def test_neighbors_is_no_routed_metadata(est):
    # A fit parameter would make scikit-learn add set_fit_request to every estimator.
    assert not hasattr(est, "set_fit_request")
