import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from idprops.activations import collect_activations, resolve_layer
from idprops.data.manifolds import sample_cube
from idprops.estimators.mle import MLEDimension
from idprops.estimators.representation import ReprDimension
from idprops.estimators.twonn import TwoNNDimension


def rank3_model(ambient=30):
    """A 3-dimensional bottleneck followed by a 50-wide linear layer."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(ambient, 3, bias=False), nn.Linear(3, 50), nn.Tanh())


@pytest.fixture(scope="module")
def cube5():
    return sample_cube(2000, 5, ambient_dim=30, random_state=0).astype(np.float32)


class TwoBranches(nn.Module):
    """Layers ``a`` (rank 2) and ``b`` (rank 4) of a 6-cube, both used once."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(6, 2)
        self.b = nn.Linear(6, 4)
        self.head = nn.Linear(6, 1)

    def forward(self, x):
        return self.head(torch.cat([self.a(x), self.b(x)], dim=1))


def no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_linear_image_of_rank_3_has_dimension_3(cube5):
    # The 5-cube seen through a rank-3 map is a 3-dimensional set, whatever the 50-d
    # layer (linear, then a smooth injective tanh) does with it. TwoNN at n = 2000
    # is within a few percent on such sets; 10 % leaves room for the non-uniform
    # density of a projected cube.
    est = ReprDimension(rank3_model(), ["0", "1", "2"], "twonn").fit(cube5)
    for name in ("0", "1", "2"):
        assert est.dimension_[name] == pytest.approx(3, rel=0.1)
    # A full-rank layer keeps all 5 dimensions: it sees what TwoNN sees in the input
    # (which, on a bounded 5-cube at n = 2000, is about 4.55: the boundary bias).
    torch.manual_seed(0)
    full = ReprDimension(nn.Sequential(nn.Linear(30, 50)), "0", "twonn").fit(cube5)
    on_inputs = TwoNNDimension().fit(cube5).dimension_
    assert on_inputs == pytest.approx(5, rel=0.15)
    assert full.dimension_ == pytest.approx(on_inputs, rel=0.03)


def test_identity_layer_equals_the_inner_estimator_on_flattened_inputs(rng):
    X = rng.uniform(size=(600, 1, 4, 4)).astype(np.float32)
    model = nn.Sequential(nn.Identity(), nn.Flatten(), nn.Linear(16, 2))
    est = ReprDimension(model, model[0], batch_size=64).fit(X)
    ref = MLEDimension().fit(X.reshape(600, 16))
    # Equal to rounding (numpy 1.26 varied by 2e-16 between fits under pytest -n 2).
    assert est.dimension_ == pytest.approx(ref.dimension_, rel=1e-14, abs=0)
    assert est.dimension_std_ == pytest.approx(ref.dimension_std_, rel=1e-14, abs=0)
    assert est.dimension_interval_ == pytest.approx(ref.dimension_interval_, rel=1e-14, abs=0)
    assert est.n_features_in_ == 16
    assert est.layer_names_ == ["0"]
    X_test = rng.uniform(size=(100, 1, 4, 4)).astype(np.float32)
    assert est.score(X_test) == pytest.approx(ref.score(X_test.reshape(100, 16)), rel=1e-14, abs=0)


def test_device_auto_is_accepted_here_and_by_measure(monkeypatch, cube5):
    # "auto" (the GPU when there is one) is read as the Trainer reads it.
    from idprops.studies.measure import measure

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    X = cube5[:300]
    expected = ReprDimension(rank3_model(), "0").fit(X).dimension_
    # Equal to rounding: repeated fits vary in the last bit (as noted above).
    same = pytest.approx(expected, rel=1e-12, abs=0)
    assert ReprDimension(rank3_model(), "0", device="auto").fit(X).dimension_ == same
    out = measure(
        (X, np.zeros(len(X))),
        estimators=["mle"],
        sharpness=False,
        model=rank3_model(),
        layers=["0"],
        device="auto",
    )
    assert out["representation"]["layers"][0]["dimension"] == same


def test_measure_seeds_a_model_by_name_without_touching_the_gpu_streams(monkeypatch, rng):
    # measure() says the caller's random streams are left alone; reseeding every GPU's
    # generator (as torch.manual_seed does) would change the caller's CUDA stream.
    from idprops.studies.measure import measure

    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", reseeded.append)
    images = rng.uniform(size=(60, 1, 8, 8)).astype(np.float32)
    labels = np.arange(60) % 2

    def d_repr(seed):
        out = measure(
            (images, labels),
            estimators=["mle"],
            sharpness=False,
            model="small_cnn",
            layers=["fc1"],
            seed=seed,
        )
        return out["representation"]["layers"][0]["dimension"]

    torch.default_generator.manual_seed(123)
    first = torch.rand(3)
    torch.default_generator.manual_seed(123)
    same = pytest.approx(d_repr(4), rel=1e-12, abs=0)  # to rounding, as noted above
    assert d_repr(4) == same and d_repr(5) != same
    assert reseeded == []
    assert torch.equal(torch.rand(3), first)  # the caller's CPU stream goes on as it was


def test_default_estimator_is_mle_k20(cube5):
    est = ReprDimension(rank3_model(), "0").fit(cube5[:300])
    assert type(est.estimator_) is MLEDimension
    assert est.estimator_.get_params() == MLEDimension().get_params()


def test_many_layers_cost_one_forward_pass_and_equal_single_fits(cube5):
    model = rank3_model()
    calls = []
    model.register_forward_pre_hook(lambda m, a: calls.append(len(a[0])))
    X = cube5[:700]
    many = ReprDimension(model, ["0", "1", "2"], "twonn", batch_size=256).fit(X)
    assert calls == [256, 256, 188]  # every sample through the model exactly once
    assert set(many.estimators_) == {"0", "1", "2"}
    for name in ("0", "1", "2"):
        single = ReprDimension(model, name, "twonn", batch_size=256).fit(X)
        assert many.dimension_[name] == single.dimension_
        assert many.dimension_std_[name] == single.dimension_std_
        assert many.dimension_interval_[name] == single.dimension_interval_
        np.testing.assert_array_equal(many.estimators_[name].log_ratios_, single.estimator_.log_ratios_)
    calls.clear()
    X_test = cube5[700:1000]
    scores = [ReprDimension(model, n, "twonn").fit(X).score(X_test) for n in ("0", "1", "2")]
    calls.clear()
    assert many.score(X_test) == pytest.approx(np.mean(scores), rel=1e-12)
    assert calls == [256, 44]


class FailsOnSecondBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("boom")
        return x


def test_hooks_removed_and_training_mode_restored_when_forward_raises(cube5):
    model = nn.Sequential(nn.Linear(30, 8), FailsOnSecondBatch(), nn.Dropout(0.5), nn.Linear(8, 2))
    model.train()
    with pytest.raises(RuntimeError, match="boom"):
        ReprDimension(model, ["0", "2"], batch_size=100).fit(cube5[:300])
    assert no_hooks(model)
    assert all(m.training for m in model.modules())
    assert torch.is_grad_enabled()


def test_estimator_by_name_class_and_instance(cube5):
    model = rank3_model()
    X = cube5[:500]
    by_name = ReprDimension(model, "1", "twonn").fit(X)
    by_class = ReprDimension(model, "1", TwoNNDimension).fit(X)
    inner = TwoNNDimension(method="mle")
    by_instance = ReprDimension(model, "1", inner).fit(X)
    assert type(by_name.estimator_) is TwoNNDimension
    assert by_name.dimension_ == by_class.dimension_
    assert by_instance.estimator_ is not inner and not hasattr(inner, "dimension_")
    A = collect_activations(model, X, "1")["1"]
    assert by_instance.dimension_ == TwoNNDimension(method="mle").fit(A).dimension_
    with pytest.raises(ValueError, match="unknown estimator 'nope'"):
        ReprDimension(model, "1", "nope").fit(X)


def test_inner_failure_names_the_layer(rng):
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 4))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.zero_()
    with (
        pytest.warns(UserWarning, match="^layer '1': MLEDimension: dropped 49 exact"),
        pytest.raises(ValueError, match=r"^layer '1': MLEDimension needs at least 21 distinct"),
    ):
        ReprDimension(model, ["0", "1"]).fit(rng.normal(size=(50, 3)))

    class NaNDimension(BaseEstimator):
        def fit(self, X, y=None):
            self.dimension_ = float("nan")
            return self

    with pytest.raises(ValueError, match="layer '0': NaNDimension gave a non-finite"):
        ReprDimension(model, "0", NaNDimension).fit(rng.normal(size=(50, 3)))


def test_dataloader_and_dataset_inputs_match_arrays(cube5):
    model = rank3_model()
    X = cube5[:400]
    ref = ReprDimension(model, "1", "twonn").fit(X)
    pairs = TensorDataset(torch.from_numpy(X), torch.zeros(400))
    for data in (pairs, DataLoader(pairs, batch_size=33), torch.from_numpy(X)):
        est = ReprDimension(model, "1", "twonn").fit(data)
        # Other batch sizes change the float32 rounding of the matrix products.
        assert est.dimension_ == pytest.approx(ref.dimension_, rel=1e-5)
        assert est.n_features_in_ == 30


def test_score_checks_the_input_size(cube5):
    est = ReprDimension(rank3_model(), "1").fit(cube5[:300])
    with pytest.raises(ValueError, match="X has 29 features, but ReprDimension is expecting 30"):
        est.score(cube5[:100, :29])
    with pytest.raises(ValueError, match="X has 29 features"):
        est.score(cube5[:100, :29].tolist())


def test_lists_and_dataframes_count_their_columns_as_features(cube5):
    # A DataFrame's first item is a column and a list's first row looks like an
    # (x, label) pair: neither says how wide a sample is.
    pd = pytest.importorskip("pandas")
    X = cube5[:300]
    ref = ReprDimension(rank3_model(), "1").fit(X)
    for data in (X.tolist(), pd.DataFrame(X, columns=[f"c{i}" for i in range(30)])):
        est = ReprDimension(rank3_model(), "1").fit(data)
        assert est.n_features_in_ == 30
        assert est.score(data) == pytest.approx(ref.score(X), rel=1e-5)


def test_clone_and_get_params():
    model = TwoBranches()
    est = ReprDimension(model, "a", TwoNNDimension(), batch_size=7)
    params = est.get_params()
    assert params["model"] is model and params["layer"] == "a" and params["batch_size"] == 7
    assert params["estimator__method"] == "regression"
    copy = clone(est)
    assert copy.model is not model
    state, copied = model.state_dict(), copy.model.state_dict()
    assert all(torch.equal(state[key], copied[key]) for key in state)
    assert copy.estimator is not est.estimator and copy.layer == "a"
    # A layer given as a module is the copy inside the copied model.
    by_module = clone(ReprDimension(model, [model.a, model.b]))
    assert [resolve_layer(by_module.model, m)[0] for m in by_module.layer] == ["a", "b"]
    assert by_module.layer[0] is by_module.model.a


def test_grid_search_over_layers_matches_manual_cross_validation(rng):
    model = TwoBranches()
    X = rng.uniform(size=(300, 6)).astype(np.float32)
    cv = KFold(3)
    search = GridSearchCV(ReprDimension(model, "a", "twonn"), {"layer": ["a", "b"]}, cv=cv)
    search.fit(X)
    for i, layer in enumerate(search.cv_results_["param_layer"]):
        for j, (train, test) in enumerate(cv.split(X)):
            fold = ReprDimension(model, layer, "twonn").fit(X[train])
            assert search.cv_results_[f"split{j}_test_score"][i] == pytest.approx(fold.score(X[test]), rel=1e-12)
    best = ReprDimension(model, search.best_params_["layer"], "twonn").fit(X)
    assert search.best_estimator_.dimension_ == best.dimension_
    assert no_hooks(model)


@parametrize_with_checks(
    [ReprDimension(nn.Sequential(nn.Identity()), "0", MLEDimension(k=5))],
    expected_failed_checks=lambda est: {
        "check_fit1d": "a 1-D array is a batch of scalar model inputs (token ids for "
        "nn.Embedding): the model, not scikit-learn, decides whether it accepts it",
    },
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_input_of_the_wrong_width_or_1_d_says_what_the_model_takes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 3), nn.Linear(3, 20))
    X = np.random.default_rng(0).normal(size=(50, 5))
    with pytest.raises(
        ValueError, match=r"one sample: \(5,\).*first layer '0' \(Linear\) takes inputs with 10 features"
    ):
        ReprDimension(model, "1").fit(X)
    with pytest.raises(ValueError, match=r"the data are 1-D.*reshape\(-1, 1\)"):
        ReprDimension(model, "1").fit(X[:, 0])
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    with pytest.raises(ValueError, match=r"'0' \(Conv2d\) takes inputs with 3 channels"):
        ReprDimension(cnn, "1").fit(np.zeros((10, 1, 8, 8)))
