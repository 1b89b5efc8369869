"""Input adapters: scikit-learn's model selection on torch Datasets, one pixel scale."""

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

from sklearn.model_selection import GridSearchCV, cross_val_score, cross_validate  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from idprops import LabelSharpness, MLEDimension, TwoNNDimension  # noqa: E402
from idprops.data import load_digits, load_folder  # noqa: E402
from idprops.inputs import as_matrix_and_labels, pixel_scale_name, to_unit_pixels  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    """300 digits as an idprops Dataset, as the same rows in arrays, and as (image, label) pairs."""
    data = load_digits(train=None, n=300, seed=0)
    X = np.stack([data[i][0].numpy().ravel() for i in range(len(data))])
    y = np.array([data[i][1] for i in range(len(data))])
    pairs = [data[i] for i in range(len(data))]
    return data, X, y, pairs


def the_forms(digits):
    """The same data as a Dataset, a list of pairs, and a DataLoader adapted once."""
    data, X, y, pairs = digits
    loader_X, loader_y = as_matrix_and_labels(DataLoader(data, batch_size=64))
    return {"dataset": (data, None), "pairs": (pairs, None), "loader": (loader_X, loader_y)}


@pytest.mark.parametrize("form", ["dataset", "pairs", "loader"])
def test_cross_val_score_on_a_dataset_equals_the_arrays(digits, form):
    data, X, y, _ = digits
    Xf, yf = the_forms(digits)[form]
    expected = cross_val_score(MLEDimension(), X, cv=3)
    np.testing.assert_array_equal(cross_val_score(MLEDimension(), Xf, yf, cv=3), expected)
    expected_kf = cross_val_score(LabelSharpness(), X, y, cv=3)
    np.testing.assert_array_equal(cross_val_score(LabelSharpness(), Xf, yf, cv=3), expected_kf)
    assert np.isfinite(expected).all() and (expected_kf < 0).all()


@pytest.mark.parametrize("form", ["dataset", "pairs", "loader"])
def test_grid_search_on_a_dataset_equals_the_arrays(digits, form):
    data, X, y, _ = digits
    Xf, yf = the_forms(digits)[form]
    reference = GridSearchCV(MLEDimension(), {"k": [5, 10]}, cv=3).fit(X)
    search = GridSearchCV(MLEDimension(), {"k": [5, 10]}, cv=3).fit(Xf, yf)
    np.testing.assert_array_equal(search.cv_results_["mean_test_score"], reference.cv_results_["mean_test_score"])
    assert search.best_params_ == reference.best_params_
    assert search.best_estimator_.dimension_ == reference.best_estimator_.dimension_


@pytest.mark.parametrize("form", ["dataset", "pairs", "loader"])
def test_cross_validate_on_a_dataset_equals_the_arrays(digits, form):
    data, X, y, _ = digits
    Xf, yf = the_forms(digits)[form]
    reference = cross_validate(TwoNNDimension(), X, cv=4, return_estimator=True)
    result = cross_validate(TwoNNDimension(), Xf, yf, cv=4, return_estimator=True)
    np.testing.assert_array_equal(result["test_score"], reference["test_score"])
    assert [e.dimension_ for e in result["estimator"]] == [e.dimension_ for e in reference["estimator"]]


def test_a_dataloader_cannot_be_split_but_adapts_once(digits):
    data, X, y, _ = digits
    loader = DataLoader(data, batch_size=64)
    # scikit-learn counts a DataLoader's batches and cannot take rows from it.
    with pytest.raises(TypeError):
        cross_val_score(MLEDimension(), loader, cv=3)
    Xl, yl = as_matrix_and_labels(loader)
    np.testing.assert_array_equal(Xl, X)
    np.testing.assert_array_equal(yl, y)


# ---- one pixel scale -------------------------------------------------------------------


@pytest.fixture(scope="module")
def eight_bit(tmp_path_factory):
    """The digits as 8-bit images (0..255), their labels, and a folder of PNG files."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.round(bunch.images * 255 / 16).astype(np.uint8)
    root = tmp_path_factory.mktemp("digits_png")
    for i, (image, label) in enumerate(zip(images, bunch.target)):
        os.makedirs(root / str(label), exist_ok=True)
        Image.fromarray(image).save(root / str(label) / f"{i:05d}.png")
    return images, bunch.target, root


def test_the_same_images_in_every_form_give_one_K_F(eight_bit):
    images, y, root = eight_bit
    pil = [Image.fromarray(image) for image in images]
    forms = {
        "uint8 array": (images, y),
        "float array in [0, 1]": (images.astype(np.float32) / 255, y),
        "uint8 tensor": (torch.from_numpy(images), y),
        "PIL list": (pil, y),
        "list of (PIL, label)": (list(zip(pil, y)), None),
        "list of (uint8 array, label)": (list(zip(images, y)), None),
        "torch Dataset": (TensorDataset(torch.from_numpy(images), torch.from_numpy(y)), None),
        "DataLoader": (DataLoader(TensorDataset(torch.from_numpy(images), torch.from_numpy(y)), batch_size=100), None),
        "PNG folder": (load_folder(root=root), None),
    }
    fitted = {name: LabelSharpness(M=None).fit(X, labels) for name, (X, labels) in forms.items()}
    values = {name: est.sharpness_ for name, est in fitted.items()}
    # Measured before: 0.2302 from the folder, 0.000903 from a uint8 array or PIL images.
    assert len(set(values.values())) == 1, values
    assert values["PNG folder"] == pytest.approx(0.8487, abs=1e-4)
    assert {est.pixel_scale_ for est in fitted.values()} == {"unit [0, 1]"}


def test_a_torch_dataset_of_pil_images_is_read():
    image = Image.fromarray(np.array([[0, 255], [51, 0]], dtype=np.uint8))

    class PilDataset(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return image.rotate(90 * i), i % 2

    X, y = as_matrix_and_labels(PilDataset())
    assert X.dtype == np.float32 and X.max() == 1.0 and X[0, 2] == np.float32(0.2)
    np.testing.assert_array_equal(y, [0, 1, 0])


@pytest.mark.parametrize(
    "pixels, expected",
    [
        (np.array([0, 255], dtype=np.uint8), [0.0, 1.0]),
        (np.array([0, 65535], dtype=np.uint16), [0.0, 1.0]),
        (np.array([0, 300], dtype=np.int64), [0, 300]),  # counts, ids: as given
        (np.array([0.5, 2.0]), [0.5, 2.0]),
    ],
)
def test_pixel_types_and_what_they_become(pixels, expected):
    np.testing.assert_array_equal(to_unit_pixels(pixels), expected)


def test_sixteen_bit_pil_images_match_the_folder_reader(tmp_path):
    values = np.array([[0, 1000], [65535, 7]], dtype=np.uint16)
    os.makedirs(tmp_path / "a")
    os.makedirs(tmp_path / "b")
    Image.fromarray(values).save(tmp_path / "a" / "x.png")
    Image.fromarray(values[::-1].copy()).save(tmp_path / "b" / "y.png")
    from_folder = as_matrix_and_labels(load_folder(root=tmp_path))[0]
    with Image.open(tmp_path / "a" / "x.png") as a, Image.open(tmp_path / "b" / "y.png") as b:
        from_pil = as_matrix_and_labels([a.copy(), b.copy()])[0]
    np.testing.assert_array_equal(from_pil, from_folder)


def test_pixel_scale_names():
    class Paper(TensorDataset):
        pixel_scale = "paper: per-image max to 255, 224x224"

    data = Paper(torch.zeros(2, 3), torch.tensor([0, 1]))
    assert pixel_scale_name(data, np.zeros((2, 3))) == data.pixel_scale
    assert pixel_scale_name(DataLoader(data), np.zeros((2, 3))) == data.pixel_scale
    assert pixel_scale_name(np.zeros(1), np.array([[-1.0, 16.0]])) == "as given [-1, 16]"


def test_mixed_lists_and_shapes_are_refused_with_what_to_do():
    a, b = np.zeros((2, 2), np.uint8), np.zeros((3, 3), np.uint8)
    with pytest.raises(ValueError, match=r"item 0 is \(2, 2\), item 1 is \(3, 3\); resize"):
        as_matrix_and_labels([a, b])
    with pytest.raises(ValueError, match="item 0 is an .image, label. pair but item 1 is not"):
        as_matrix_and_labels([(a, 0), a])


def test_lists_of_numbers_stay_rows_of_features():
    X, y = as_matrix_and_labels([(1.0, 2.0), (3.0, 4.0)])
    np.testing.assert_array_equal(X, [[1.0, 2.0], [3.0, 4.0]])
    assert y is None


def test_a_masked_array_is_refused_unless_nothing_is_masked():
    X = np.random.default_rng(0).normal(size=(100, 4))
    masked = np.ma.masked_array(X, mask=X > 2)
    for fit in (lambda A: MLEDimension().fit(A), lambda A: LabelSharpness().fit(A, np.arange(100) % 2)):
        with pytest.raises(ValueError, match=r"masked array with \d+ masked values.*filled"):
            fit(masked)
    assert MLEDimension().fit(np.ma.masked_array(X)).dimension_ == MLEDimension().fit(X).dimension_
    y = np.ma.masked_array(np.arange(100) % 2, mask=np.arange(100) == 3)
    with pytest.raises(ValueError, match="y is a masked array with 1 masked values"):
        LabelSharpness().fit(X, y)


def test_measure_reads_arrays_on_the_scale_of_every_other_container(eight_bit):
    from idprops.studies.measure import measure

    images, y, root = eight_bit
    kwargs = {"estimators": (), "sharpness_samples": None}
    from_arrays = measure((images, y), **kwargs)
    from_folder = measure(load_folder(root=root), **kwargs)
    # Before, the uint8 arrays were used as 0..255: a K_F 255 times smaller, "as given".
    assert from_arrays["sharpness"]["K_F"] == from_folder["sharpness"]["K_F"]
    assert from_arrays["data"]["pixel_scale"] == from_folder["data"]["pixel_scale"] == "unit [0, 1]"
    features = measure((np.array([[0.0, 16.0], [3.0, 1.0], [5.0, 2.0]]), np.array([0, 1, 0])), **kwargs)
    assert features["data"]["pixel_scale"] == "as given [0, 16]"


@pytest.mark.parametrize("form", ["array", "list", "tensor", "pairs"])
def test_complex_data_are_refused_in_a_line_whatever_the_container(form):
    # scikit-learn refused arrays with the whole array printed in its message; a torch
    # Dataset's images lost their imaginary parts unseen.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4)) + 1j * rng.standard_normal((30, 4))
    data = {
        "array": X,
        "list": X.tolist(),
        "tensor": torch.from_numpy(X),
        "pairs": [(torch.from_numpy(x), 0) for x in X],
    }[form]
    with pytest.raises(ValueError) as info:
        MLEDimension().fit(data)
    message = str(info.value)
    assert message.startswith("Complex data not supported: X holds complex128 values") and "\n" not in message


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".pt"])
def test_a_file_of_complex_samples_is_refused_by_the_cli(suffix, tmp_path, capsys):
    from idprops.cli import main

    X = np.ones((30, 4)) + 1j
    path = tmp_path / f"x{suffix}"
    if suffix == ".npy":
        np.save(path, X)
    elif suffix == ".npz":
        np.savez(path, X=X)
    else:
        torch.save({"X": torch.from_numpy(X)}, path)
    assert main(["measure", "--data", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"idprops: error: {path} holds complex numbers (complex128), and idprops measures real points: "
        "save the real and imaginary parts as features, e.g. np.hstack([X.real, X.imag])."
    )
