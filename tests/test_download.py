"""download = true / --download: torchvision's own download, stubbed (no network)."""

import os
import struct

import numpy as np
import pytest

from idprops.cli import main
from idprops.data import load_mnist
from idprops.studies.scaling import ScalingLawStudy
from idprops.studies.specs import parse_datasets
from idprops.studies.steps import download_data
from idprops.studies.study import CellError

torchvision_mnist = pytest.importorskip("torchvision.datasets.mnist")

SIZES = {"train": 40, "t10k": 20}


def _idx(array: np.ndarray) -> bytes:
    """MNIST's big-endian idx format: magic (0, 0, 0x08 = uint8, ndim), then the sizes."""
    header = struct.pack(">I", 0x0800 + array.ndim) + b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def fetched(monkeypatch):
    """Replace torchvision's fetch of one MNIST file by writing it, uncompressed, where
    torchvision's download would have extracted it; record the files asked for."""
    calls = []

    def stub(url, download_root, filename=None, md5=None, **kwargs):
        calls.append(filename)
        prefix, kind = filename.split("-")[:2]
        rng = np.random.default_rng(len(calls))
        n = SIZES[prefix]
        array = rng.integers(0, 256, size=(n, 28, 28)) if kind == "images" else np.arange(n) % 2
        name = os.path.splitext(filename)[0]  # the .gz extracted
        with open(os.path.join(download_root, name), "wb") as f:
            f.write(_idx(array))

    monkeypatch.setattr(torchvision_mnist, "download_and_extract_archive", stub)
    return calls


def test_download_true_fetches_with_torchvisions_download(tmp_path, fetched):
    data = load_mnist(root=tmp_path, download=True, train=None)
    assert len(data) == 60 and len(fetched) == 4
    assert sorted(os.listdir(tmp_path / "MNIST" / "raw")) == [
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
    ]
    # Files already there are not fetched again.
    load_mnist(root=tmp_path, download=True)
    assert len(fetched) == 4


def test_without_download_the_error_names_the_folder_and_the_flags(tmp_path, fetched, capsys):
    with pytest.raises(FileNotFoundError) as error:
        load_mnist(root=tmp_path)
    message = str(error.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "idprops measure --download" in message and "download = true in the study file" in message
    assert main(["measure", "--data", "mnist", "--root", str(tmp_path), "--no-sharpness"]) == 2
    assert "--download" in capsys.readouterr().err
    assert fetched == []


def test_cli_measure_download(tmp_path, fetched, capsys):
    argv = ["measure", "--json", "--data", "mnist", "--root", str(tmp_path), "--estimator", "twonn"]
    assert main([*argv, "--download"]) == 0, capsys.readouterr().err
    assert len(fetched) == 4
    assert '"samples": 60' in capsys.readouterr().out


def _study(root, download):
    entry = {"name": "mnist", "root": str(root), "classes": [0, 1], "download": download}
    return ScalingLawStudy(
        datasets=[entry],
        sizes=[8],
        training={"epochs": 1, "batch_size": 4, "threads": 1},
        estimators=["twonn"],
        sharpness=False,
        attacks={},
        device="cpu",
    )


def test_a_study_entry_with_download_true_fetches_before_the_first_cell(tmp_path, fetched):
    study = _study(tmp_path, download=True)
    # The permission to download changes no result, so no cell key.
    assert study.cells() == _study(tmp_path, download=False).cells()
    # Raised in the cell, or by a check of the whole study before it: either says how.
    with pytest.raises((CellError, FileNotFoundError, ValueError), match="download = true"):
        _study(tmp_path, download=False).run()
    results = study.run()
    assert len(fetched) == 4 and results[0]["n_train"] == 8
    assert download_data(parse_datasets(study.datasets)) == ["mnist"] and len(fetched) == 4
    with pytest.raises(ValueError, match="download is true or false"):
        _study(tmp_path, download="yes").cells()


def test_cli_study_download(tmp_path, fetched, capsys):
    pytest.importorskip("matplotlib")
    study_file = tmp_path / "study.toml"
    study_file.write_text(
        f'datasets = [{{name = "mnist", root = "{tmp_path / "data"}", classes = [0, 1]}}]\n'
        'sizes = [8]\nestimators = ["twonn"]\nsharpness = false\nattacks = {}\ndevice = "cpu"\n'
        "[training]\nepochs = 1\nbatch_size = 4\n"
    )
    argv = ["study", "scaling-law", "--config", str(study_file), "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 2
    assert "--download" in capsys.readouterr().err and fetched == []
    assert main([*argv, "--download"]) == 0, capsys.readouterr().err
    assert len(fetched) == 4
