"""Image folders that cannot mislabel or hang, image errors that name their file, unlabelled
images, and samples saved as .npy / .npz / .pt files (issues 22 and 23)."""

import json
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from idprops import MLEDimension
from idprops.cli import main
from idprops.data import ImageDataset, labels_of, load_dataset, load_folder
from idprops.data.imagefiles import MAX_PIXELS, ImageFiles, find_image_files


def write_pngs(folder, count, size=8, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        pixels = rng.integers(0, 256, size=(size, size), dtype=np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")
        images.append(pixels)
    return images


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- links and special files


def test_a_link_to_a_parent_folder_is_not_followed(tmp_path):
    # Followed, the link lists class b's images again under class a, 41 times over.
    root = tmp_path / "f"
    write_pngs(root / "a", 3, seed=1)
    b_images = write_pngs(root / "b", 3, seed=2)
    os.symlink("..", root / "a" / "up")
    with pytest.warns(UserWarning, match=r"a[/\\]up \(a link to a folder\)"):
        data = load_folder(root)
    assert len(data) == 6 and data.targets.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.equal(data[3][0][0], torch.from_numpy(b_images[0]).float() / 255)


def test_a_linked_class_folder_is_left_out_and_named(tmp_path):
    write_pngs(tmp_path / "elsewhere", 2)
    root = tmp_path / "root"
    write_pngs(root / "a", 2)
    os.symlink(tmp_path / "elsewhere", root / "b")
    with pytest.warns(UserWarning, match="b \\(a link to a folder\\)"):
        data = load_folder(root)
    assert data.classes == ["a"] and len(data) == 2


def test_a_link_to_an_image_file_is_read(tmp_path):
    images = write_pngs(tmp_path / "store", 1)
    root = tmp_path / "root"
    write_pngs(root / "a", 1)
    (root / "b").mkdir()
    os.symlink(tmp_path / "store" / "0.png", root / "b" / "linked.png")
    data = load_folder(root)
    assert data.targets.tolist() == [0, 1]
    assert torch.equal(data[1][0][0], torch.from_numpy(images[0]).float() / 255)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_never_opened(tmp_path):
    # Opening a FIFO for reading blocks until a writer comes: the reader would hang.
    write_pngs(tmp_path / "a", 2)
    write_pngs(tmp_path / "b", 2)
    os.mkfifo(tmp_path / "b" / "pipe.png")
    with pytest.warns(UserWarning, match=r"pipe.png \(not a regular file\)"):
        data = load_folder(tmp_path)
    assert len(data) == 4 and not any(path.endswith("pipe.png") for path in data.images.paths)
    assert torch.stack([data[i][0] for i in range(4)]).shape == (4, 1, 8, 8)


def test_a_plain_folder_keeps_imagefolders_order_and_warns_of_nothing(tmp_path, recwarn):
    # Nested folders: labels by class folder, files by folder path then name, as before.
    for folder in ("a", "a/x", "a b", "b/y/z"):
        write_pngs(tmp_path / folder, 2)
    found = find_image_files(tmp_path)
    relative = [os.path.relpath(p, tmp_path).replace(os.sep, "/") for p in found.paths]
    assert found.classes == ["a", "a b", "b"]
    assert relative == ["a/0.png", "a/1.png", "a/x/0.png", "a/x/1.png", "a b/0.png", "a b/1.png"] + [
        "b/y/z/0.png",
        "b/y/z/1.png",
    ]
    assert found.targets == [0, 0, 0, 0, 1, 1, 2, 2] and not recwarn.list


def test_an_empty_class_folder_and_an_empty_folder_are_errors(tmp_path):
    write_pngs(tmp_path / "a", 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"\['empty'\] .* hold no images"):
        load_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="no images in"):
        load_folder(tmp_path / "empty")


# ---------------------------------------------------------------- sizes and damaged files


def test_an_image_above_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    write_pngs(tmp_path / "a", 1)
    (tmp_path / "b").mkdir()
    Image.new("L", (5000, 4000)).save(tmp_path / "b" / "huge.png")  # 20 M pixels, 30 KB
    assert os.path.getsize(tmp_path / "b" / "huge.png") < 100_000 and 5000 * 4000 > MAX_PIXELS

    def decoded(self, img):
        raise AssertionError("decoded")

    monkeypatch.setattr(ImageFiles, "_decode", decoded)
    data = load_folder(tmp_path)
    with pytest.raises(ValueError, match=r"huge.png is 5000 x 4000 pixels, more than max_pixels=16,777,216"):
        data[1]
    # A smaller limit is the caller's; the first image's header is checked on loading.
    with pytest.raises(ValueError, match=r"0.png is 8 x 8 pixels, more than max_pixels=10"):
        load_folder(tmp_path, max_pixels=10)
    assert load_folder(tmp_path, max_pixels=None).images.max_pixels is None


def test_max_pixels_on_the_command_line(tmp_path, capsys):
    write_pngs(tmp_path / "a", 12)
    write_pngs(tmp_path / "b", 12, seed=1)
    argv = ("measure", "--data", str(tmp_path), "--estimator", "twonn", "--no-sharpness")
    code, _, err = run(capsys, *argv, "--max-pixels", "63")
    assert code == 2 and "is 8 x 8 pixels, more than max_pixels=63" in err and "--max-pixels N" in err
    assert run(capsys, *argv, "--max-pixels", "64")[0] == 0
    assert run(capsys, *argv, "--max-pixels", "0")[0] == 0
    code, _, err = run(capsys, "measure", "--max-pixels", "64")
    assert code == 2 and "--max-pixels limits the images of an image folder" in err


@pytest.mark.parametrize("suffix, fmt", [(".png", "PNG"), (".jpg", "JPEG")])
def test_a_truncated_image_names_its_file(tmp_path, suffix, fmt):
    pixels = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(pixels).save(tmp_path / name / f"0{suffix}", format=fmt)
    whole = (tmp_path / "b" / f"0{suffix}").read_bytes()
    (tmp_path / "b" / f"0{suffix}").write_bytes(whole[: len(whole) // 2])
    data = load_folder(tmp_path)
    assert data[0][0].shape == (3, 32, 32)
    with pytest.raises(OSError, match=f"cannot read the image .*b.0{suffix}"):
        data[1]


def test_a_file_that_is_no_image_names_itself(tmp_path):
    write_pngs(tmp_path / "a", 1)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.png").write_text("not an image")
    with pytest.raises(OSError, match=r"cannot read the image .*notes.png"):
        load_folder(tmp_path)[1]


def test_mixed_sizes_from_python_say_image_size(tmp_path):
    write_pngs(tmp_path / "a", 12, size=8)
    write_pngs(tmp_path / "b", 12, size=10)
    with pytest.raises(ValueError, match=r"b.0.png is 10 x 10 pixels, the first image 8 x 8.*image_size=N"):
        MLEDimension().fit(load_folder(tmp_path))
    assert MLEDimension(k=5).fit(load_folder(tmp_path, image_size=6)).n_features_in_ == 36
    assert MLEDimension(k=5).fit(load_folder(tmp_path, image_size=np.int64(6))).n_features_in_ == 36


# ---------------------------------------------------------------- unlabelled images and arrays


def test_a_positional_root_and_a_flat_folder_of_unlabelled_images(tmp_path):
    images = write_pngs(tmp_path, 30)
    data = load_folder(str(tmp_path))
    assert data.targets is None and data.classes is None and len(data) == 30
    i = [os.path.basename(path) for path in data.images.paths].index("2.png")  # sorted as text
    assert torch.equal(data[i], torch.from_numpy(images[2]).float()[None] / 255)
    assert len(load_folder(tmp_path, n=10, seed=1)) == 10
    assert MLEDimension(k=5).fit(data).n_samples_fit_ == 30
    with pytest.raises(ValueError, match="no classes to keep"):
        load_folder(tmp_path, classes=[0])
    with pytest.raises(ValueError, match="has no labels"):
        labels_of(data)


def test_measure_a_flat_folder_from_the_command_line(capsys, tmp_path):
    write_pngs(tmp_path, 40)
    code, out, err = run(capsys, "measure", "--data", str(tmp_path), "--estimator", "twonn")
    assert code == 0, err
    assert "(40 samples, 64 features, unlabelled" in out and "K_F  (M=" not in out
    assert "K_F not measured: " in out and "has no labels" in out
    code, out, err = run(capsys, "measure", "--json", "--data", str(tmp_path), "--estimator", "twonn")
    result = json.loads(out)
    assert "sharpness" not in result and result["sharpness_skipped"].startswith("K_F not measured")
    # d_repr too: the network is built for the images' channels and size.
    argv = ("measure", "--json", "--data", str(tmp_path), "--model", "small_cnn", "--layer", "fc1")
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert json.loads(out)["representation"]["layers"][0]["dimension"] > 0


def save(path, X, y):
    if path.suffix == ".npy":
        np.save(path, X)
    elif path.suffix == ".npz":
        np.savez(path, X=X, **({} if y is None else {"y": y}))
    else:
        torch.save(
            {"X": torch.from_numpy(X)} if y is None else {"X": torch.from_numpy(X), "y": torch.from_numpy(y)}, path
        )


@pytest.mark.parametrize(
    "name, labelled", [("x.npy", False), ("x.npz", False), ("xy.npz", True), ("x.pt", False), ("xy.pt", True)]
)
def test_measure_arrays_saved_to_a_file(capsys, tmp_path, name, labelled):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3)) @ rng.normal(size=(3, 10))
    y = np.arange(200) % 2
    path = tmp_path / name
    save(path, X, y if labelled else None)
    data = load_dataset(str(path))
    assert isinstance(data, ImageDataset) and data.pixel_scale == "as given"
    assert (data.targets is not None) == labelled
    code, out, err = run(capsys, "measure", "--json", "--data", str(path), "--estimator", "mle")
    assert code == 0, err
    result = json.loads(out)
    assert result["dimensions"][0]["dimension"] == pytest.approx(MLEDimension().fit(X).dimension_)
    assert result["data"]["pixel_scale"] == f"as given [{X.min():.3g}, {X.max():.3g}]"  # the values' range
    assert ("sharpness" in result) == labelled and ("sharpness_skipped" in result) != labelled


def test_arrays_that_need_unpickling_are_refused_with_their_name(tmp_path, capsys):
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="objects.npy holds Python objects"):
        load_dataset(str(objects))
    pickled = tmp_path / "pickled.pt"
    with open(pickled, "wb") as fh:
        pickle.dump({"X": np.zeros((3, 2))}, fh, protocol=2)
    code, _, err = run(capsys, "measure", "--data", str(pickled))
    assert code == 2 and "pickled.pt holds a Python object" in err and err.count("\n") == 1
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, data=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"wrong.npz: .* holds the samples under the key X"):
        load_dataset(wrong)


def test_a_study_refuses_unlabelled_images_with_a_reason(tmp_path):
    from idprops.studies.steps import load_data

    write_pngs(tmp_path, 30)
    config = {"name": str(tmp_path), "test_root": str(tmp_path)}
    for train in (True, False):
        with pytest.raises(ValueError, match="has no labels .* a study trains networks on labelled data"):
            load_data(config, train=train, n=None, seed=0)
