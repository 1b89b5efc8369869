"""LabelSharpness (K_F) against hand-computed cases and brute-force pair enumeration."""

import warnings

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from idprops.estimators.sharpness import IdenticalConflictsWarning, LabelSharpness
from idprops.neighbors import available_backends

# Class 0 at (0, 0) and (3, 0), class 1 at (0, 4) and (3, 2). Differently labelled
# distances: 4, sqrt(13), 5 and 2, so the closest pair is rows 1 and 3 and K_F = 1/2.
SQUARE = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [3.0, 2.0]])
SQUARE_Y = np.array([0, 0, 1, 1])


def brute_force(X, y):
    """Smallest distance between differently labelled rows, and the pair (by enumeration)."""
    D = cdist(X, X)
    D[y[:, None] == y[None, :]] = np.inf
    i, j = np.unravel_index(np.argmin(D), D.shape)
    return D[i, j], (min(i, j), max(i, j))


def labelled_data(rng, n, d, n_classes):
    X = rng.standard_normal((n, d))
    y = rng.integers(0, n_classes, n)
    y[:n_classes] = np.arange(n_classes)  # every class present
    return X, y


# ---- hand-computed case ----------------------------------------------------------------


def test_by_hand():
    est = LabelSharpness().fit(SQUARE, SQUARE_Y)
    assert est.sharpness_ == 0.5
    assert est.min_distance_ == 2.0
    assert est.argmax_pair_ == (1, 3)
    assert est.n_samples_fit_ == 4 and est.n_features_in_ == 2
    np.testing.assert_array_equal(est.classes_, [0, 1])
    assert est.n_identical_conflicts_ == 0
    assert est.pixel_scale_ == "as given [0, 4]"  # the range the values lie in


def test_labels_of_any_type_and_more_classes_by_hand():
    # A third class at (3, 1) is at distance 1 from rows 1 and 3: K_F doubles.
    X = np.vstack([SQUARE, [[3.0, 1.0]]])
    est = LabelSharpness().fit(X, ["a", "a", "b", "b", "c"])
    assert est.sharpness_ == 1.0
    assert est.argmax_pair_ == (1, 4)
    np.testing.assert_array_equal(est.classes_, ["a", "b", "c"])


def test_equal_labels_do_not_count():
    # The research code's multi-class branch took numerator 1 for EQUAL labels; the
    # closest pair here shares a label (distance 0.1) and must be ignored.
    X = np.array([[0.0], [0.1], [5.0]])
    est = LabelSharpness().fit(X, [0, 0, 1])
    assert est.min_distance_ == pytest.approx(4.9, rel=1e-12)
    assert est.argmax_pair_ == (1, 2)


# ---- brute force -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_matches_brute_force(n_classes, backend, rng):
    X, y = labelled_data(rng, 300, 8, n_classes)
    est = LabelSharpness(M=None, backend=backend).fit(X, y)
    distance, pair = brute_force(X, y)
    assert est.min_distance_ == pytest.approx(distance, rel=1e-12)
    assert est.sharpness_ == pytest.approx(1 / distance, rel=1e-12)
    assert est.argmax_pair_ == pair
    np.testing.assert_array_equal(est.sample_indices_, np.arange(300))


def test_8_bit_images_are_read_on_the_unit_scale_in_float32(rng):
    X = rng.integers(0, 256, (300, 64)).astype(np.uint8)
    y = rng.integers(0, 3, 300)
    est = LabelSharpness(M=None).fit(X, y)
    assert est._fit_X.dtype == np.float32 and est.pixel_scale_ == "unit [0, 1]"
    # ToTensor's values: the float32 quotient by 255.
    distance, pair = brute_force((X.astype(np.float32) / np.float32(255)).astype(np.float64), y)
    assert est.min_distance_ == pytest.approx(distance, rel=1e-12)
    assert est.argmax_pair_ == pair


@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_sample_matches_brute_force_on_the_sample(n_classes, rng):
    X, y = labelled_data(rng, 400, 5, n_classes)
    est = LabelSharpness(M=150, random_state=3).fit(X, y)
    rows = est.sample_indices_
    assert len(rows) == len(np.unique(rows)) == est.n_samples_fit_ == 150
    assert np.all(np.diff(rows) > 0)
    distance, (i, j) = brute_force(X[rows], y[rows])
    assert est.min_distance_ == pytest.approx(distance, rel=1e-12)
    # argmax_pair_ indexes the original X, not the sample.
    assert est.argmax_pair_ == (rows[i], rows[j])
    a, b = est.argmax_pair_
    assert y[a] != y[b] and np.linalg.norm(X[a] - X[b]) == pytest.approx(distance, rel=1e-12)


def test_sampling_is_seeded(rng):
    X, y = labelled_data(rng, 200, 3, 2)
    first = LabelSharpness(M=50).fit(X, y)
    again = clone(first).fit(X, y)
    other = LabelSharpness(M=50, random_state=1).fit(X, y)
    np.testing.assert_array_equal(first.sample_indices_, again.sample_indices_)
    assert not np.array_equal(first.sample_indices_, other.sample_indices_)


@pytest.mark.parametrize("M", [None, 4, 10])
def test_M_at_least_n_uses_everything(M):
    est = LabelSharpness(M=M).fit(SQUARE, SQUARE_Y)
    np.testing.assert_array_equal(est.sample_indices_, np.arange(4))
    assert est.sharpness_ == 0.5


def test_invariant_to_sample_order(rng):
    X, y = labelled_data(rng, 250, 6, 3)
    est = LabelSharpness(M=None).fit(X, y)
    perm = rng.permutation(len(X))
    permuted = LabelSharpness(M=None).fit(X[perm], y[perm])
    assert permuted.sharpness_ == est.sharpness_
    # Row r of the permuted data is row perm[r] of the original.
    assert sorted(perm[list(permuted.argmax_pair_)]) == list(est.argmax_pair_)


# ---- identical inputs ------------------------------------------------------------------


def test_identical_inputs_with_different_labels_give_inf_and_count():
    # Rows 0, 2, 4 are identical with labels 0, 1, 1: two conflicting pairs (0-2, 0-4);
    # rows 1 and 3 are identical with the same label: harmless.
    X = np.array([[1.0, 2.0], [5.0, 5.0], [1.0, 2.0], [5.0, 5.0], [1.0, 2.0], [9.0, 9.0]])
    y = np.array([0, 0, 1, 0, 1, 1])
    with pytest.warns(IdenticalConflictsWarning, match=r"\b2 pairs of identical"):
        est = LabelSharpness().fit(X, y)
    assert est.sharpness_ == np.inf
    assert est.min_distance_ == 0.0
    assert est.n_identical_conflicts_ == 2
    assert est.argmax_pair_ == (0, 2)


def test_conflict_count_matches_brute_force_with_many_classes(rng):
    # 40 distinct rows repeated, 500 classes: counted over the (row, label) pairs
    # that occur, never over a rows x classes table.
    X = rng.integers(0, 40, 600)[:, None] * np.ones((1, 3))
    y = rng.integers(0, 500, 600)
    same_row = (X[:, None, 0] == X[None, :, 0]) & (y[:, None] != y[None, :])
    with pytest.warns(IdenticalConflictsWarning):
        est = LabelSharpness().fit(X, y)
    assert est.n_identical_conflicts_ == np.triu(same_row, 1).sum()


def test_identical_inputs_with_same_label_are_harmless():
    X = np.vstack([SQUARE, SQUARE[:2], -0.0 * SQUARE[:1]])
    y = np.concatenate([SQUARE_Y, [0, 0, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = LabelSharpness().fit(X, y)
    assert est.sharpness_ == 0.5 and est.n_identical_conflicts_ == 0


def test_negative_zero_is_identical_to_zero():
    with pytest.warns(IdenticalConflictsWarning, match=r"\b1 pairs"):
        est = LabelSharpness().fit(np.array([[0.0], [-0.0], [1.0]]), [0, 1, 1])
    assert est.sharpness_ == np.inf and est.argmax_pair_ == (0, 1)


# ---- score -----------------------------------------------------------------------------


def test_score_by_hand():
    est = LabelSharpness().fit(SQUARE, SQUARE_Y)
    # (0, 3) of class 0 is at distance 1 from (0, 4); (1, 0) of class 1 is at 1 from (0, 0).
    assert est.score([[0.0, 3.0], [1.0, 0.0]], [0, 1]) == -1.0
    # On the training data, score is -K_F: a point's own label never counts.
    assert est.score(SQUARE, SQUARE_Y) == -est.sharpness_


def test_score_matches_brute_force(rng):
    X, y = labelled_data(rng, 300, 4, 3)
    X_test, y_test = labelled_data(rng, 80, 4, 4)  # label 3 is unseen in the fit
    est = LabelSharpness(M=200).fit(X, y)
    fit_X, fit_y = X[est.sample_indices_], y[est.sample_indices_]
    D = cdist(X_test, fit_X)
    D[y_test[:, None] == fit_y[None, :]] = np.inf
    assert est.score(X_test, y_test) == pytest.approx(-1 / D.min(), rel=1e-12)


def test_score_checks_its_labels_as_fit_does(rng):
    X, y = labelled_data(rng, 50, 3, 2)
    est = LabelSharpness().fit(X, y)
    with pytest.raises(ValueError, match="continuous"):
        est.score(X, rng.random(50))
    with pytest.warns(UserWarning, match="none of y's labels .* encoded the same way"):
        est.score(X, y.astype(str))


def test_score_of_identical_input_with_other_label_is_minus_inf():
    est = LabelSharpness().fit(SQUARE, SQUARE_Y)
    assert est.score(SQUARE[:1], [1]) == -np.inf


# ---- torch inputs ----------------------------------------------------------------------


def test_torch_dataset_of_images_uses_its_labels(rng):
    torch = pytest.importorskip("torch")
    from torch.utils.data import TensorDataset

    images = rng.random((60, 1, 4, 4)).astype(np.float32)
    labels = rng.integers(0, 2, 60)
    dataset = TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))
    X = images.reshape(60, -1)

    est = LabelSharpness(M=None, batch_size=7).fit(dataset)
    distance, pair = brute_force(X.astype(np.float64), labels)
    assert est.min_distance_ == pytest.approx(distance, rel=1e-6)
    assert est.argmax_pair_ == pair
    assert est.n_features_in_ == 16
    assert est.pixel_scale_ == "unit [0, 1]"  # random values in [0, 1)

    # Sampling a Dataset reads only the drawn items and gives the same answer as arrays.
    sampled = LabelSharpness(M=25, batch_size=7).fit(dataset)
    from_arrays = LabelSharpness(M=25).fit(X, labels)
    np.testing.assert_array_equal(sampled.sample_indices_, from_arrays.sample_indices_)
    assert sampled.sharpness_ == from_arrays.sharpness_
    assert sampled.argmax_pair_ == from_arrays.argmax_pair_

    # Tensors work like arrays, and score reads a Dataset's labels too.
    tensors = LabelSharpness(M=None).fit(torch.from_numpy(images), torch.from_numpy(labels))
    assert tensors.sharpness_ == est.sharpness_
    assert est.score(dataset) == pytest.approx(-est.sharpness_, rel=1e-12)


def test_label_tensors_numpy_cannot_read_directly(rng):
    # numpy refuses a tensor that requires grad (as it does one on the GPU): y is
    # converted through the detaching helper in fit, in a sampled fit and in score.
    torch = pytest.importorskip("torch")
    from torch.utils.data import TensorDataset

    X = rng.random((40, 3)).astype(np.float32)
    labels = rng.integers(0, 3, 40)
    y = torch.tensor(labels, dtype=torch.float32, requires_grad=True)
    reference = LabelSharpness(M=None).fit(X, labels)
    assert LabelSharpness(M=None).fit(torch.from_numpy(X), y).sharpness_ == reference.sharpness_
    sampled = LabelSharpness(M=20).fit(TensorDataset(torch.from_numpy(X)), y)
    assert sampled.sharpness_ == LabelSharpness(M=20).fit(X, labels).sharpness_
    assert reference.score(X, y) == reference.score(X, labels)


def test_iterable_datasets_bfloat16_and_nested_lists_are_read_whole(rng):
    torch = pytest.importorskip("torch")

    images = rng.random((60, 1, 4, 4)).astype(np.float32)
    labels = rng.integers(0, 2, 60)
    reference = LabelSharpness(M=None).fit(images.reshape(60, -1), labels)

    class Stream(torch.utils.data.IterableDataset):  # no len(), no indexing
        def __iter__(self):
            yield from zip(torch.from_numpy(images), torch.from_numpy(labels))

    assert LabelSharpness(M=None).fit(Stream()).sharpness_ == reference.sharpness_
    assert LabelSharpness(M=None).fit(images.tolist(), labels).sharpness_ == reference.sharpness_
    # numpy has no bfloat16; its values reach the search as float32.
    half = torch.from_numpy(images).bfloat16()
    expected = LabelSharpness(M=None).fit(half.float().numpy().reshape(60, -1), labels)
    assert LabelSharpness(M=None).fit(half, labels).sharpness_ == expected.sharpness_


def test_datasets_of_dicts_or_one_hot_labels_say_what_to_pass():
    torch = pytest.importorskip("torch")
    from torch.utils.data import Dataset, TensorDataset

    class Dicts(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"image": torch.zeros(3), "label": i % 2}

    with pytest.raises(ValueError, match=r"yields dicts \(keys \['image', 'label'\]\)"):
        LabelSharpness().fit(Dicts())
    one_hot = TensorDataset(torch.rand(10, 3), torch.eye(2)[torch.arange(10) % 2])
    with pytest.raises(ValueError, match=r"shape \(2,\) per item.*argmax"):
        LabelSharpness().fit(one_hot)
    column = TensorDataset(torch.from_numpy(SQUARE), torch.from_numpy(SQUARE_Y)[:, None])
    assert LabelSharpness().fit(column).sharpness_ == 0.5  # a label of shape (1,) is one


def test_pixel_scale_is_copied_from_the_dataset():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    class Scaled(TensorDataset):
        pixel_scale = "unit [0, 1]"

    dataset = Scaled(torch.from_numpy(SQUARE), torch.from_numpy(SQUARE_Y))
    est = LabelSharpness().fit(dataset)
    assert est.pixel_scale_ == "unit [0, 1]" and est.sharpness_ == 0.5
    from_loader = LabelSharpness().fit(DataLoader(dataset, batch_size=3))
    assert from_loader.pixel_scale_ == "unit [0, 1]" and from_loader.argmax_pair_ == (1, 3)


def test_pixel_scale_scales_K_F(rng):
    X, y = labelled_data(rng, 100, 5, 2)
    unit = LabelSharpness().fit(X, y).sharpness_
    assert LabelSharpness().fit(255 * X, y).sharpness_ == pytest.approx(unit / 255, rel=1e-12)


# ---- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "X, y, match",
    [
        (SQUARE, [0, 0, 0, 0], "only one class .* at least two different classes"),
        (SQUARE, [0, 1, 0], "y has 3 labels but X has 4 samples"),
        (SQUARE, None, "requires y to be passed"),
        (np.array([[0.0, np.nan], [1.0, 1.0]]), [0, 1], "NaN"),
        (np.array([[0.0, np.inf], [1.0, 1.0]]), [0, 1], "infinity"),
        (np.empty((0, 2)), [], "0 sample"),
        (np.array([["a", "b"], ["c", "d"]]), [0, 1], "could not convert|numeric"),
        (SQUARE, [0.5, 1.5, 2.25, 0.5], "continuous"),
        (SQUARE, np.array(["a", None, "b", "b"], dtype=object), "mix types"),
        (SQUARE, 3, "not a sequence of labels"),
    ],
)
def test_bad_input(X, y, match):
    with pytest.raises(ValueError, match=match):
        LabelSharpness().fit(X, y)


def test_single_class_in_the_sample_says_to_increase_M(rng):
    X = rng.standard_normal((100, 2))
    y = np.zeros(100, dtype=int)
    y[0] = 1
    with pytest.raises(ValueError, match=r"drawn at random from 100 \(M=5\).*larger M"):
        LabelSharpness(M=5).fit(X, y)


def test_a_failed_fit_leaves_the_estimator_unfitted(rng):
    from sklearn.exceptions import NotFittedError

    X = rng.standard_normal((100, 2))
    y = np.arange(100) % 2
    est = LabelSharpness().fit(X, y)
    with pytest.raises(ValueError, match="only one class"):
        est.fit(X, np.zeros(100, dtype=int))
    with pytest.raises(NotFittedError):
        est.score(X, y)


def test_M_below_two_is_rejected():
    with pytest.raises(ValueError, match="'M' parameter"):
        LabelSharpness(M=1).fit(SQUARE, SQUARE_Y)


def test_dataset_without_labels_needs_y():
    torch = pytest.importorskip("torch")
    from torch.utils.data import TensorDataset

    dataset = TensorDataset(torch.from_numpy(SQUARE))
    with pytest.raises(ValueError, match="requires y to be passed"):
        LabelSharpness().fit(dataset)
    with pytest.raises(ValueError, match="y has 3 labels but the dataset has 4 items"):
        LabelSharpness().fit(dataset, [0, 1, 1])
    assert LabelSharpness().fit(dataset, SQUARE_Y).sharpness_ == 0.5


# ---- scikit-learn contract -------------------------------------------------------------


@parametrize_with_checks([LabelSharpness()])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_K_F_beyond_the_largest_float_is_refused_not_infinite(rng):
    X, y = labelled_data(rng, 100, 5, 2)
    # 1e-310 is subnormal: the distances are not 0, but 1 / distance overflows.
    with pytest.raises(ValueError, match=r"beyond the largest float.*rescale the inputs"):
        LabelSharpness().fit(X * 1e-310, y)
    est = LabelSharpness().fit(X * 1e-300, y)
    assert est.n_identical_conflicts_ == 0
    assert est.sharpness_ == pytest.approx(LabelSharpness().fit(X, y).sharpness_ * 1e300, rel=1e-9)


def test_repr_names_the_pixel_scale_once_fitted():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 16), dtype=np.uint8)
    labels = np.arange(40) % 2
    est = LabelSharpness()
    assert repr(est) == "LabelSharpness()"
    est.fit(images, labels)
    assert repr(est) == "LabelSharpness() [K_F on pixel scale unit [0, 1]]"
    assert "pixel scale as given [0, 255]" in repr(LabelSharpness().fit(images.astype(float), labels))
