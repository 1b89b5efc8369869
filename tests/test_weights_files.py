"""Files that only unpickling could read are refused everywhere, with an error that names
the file and says how to save it instead, never torch's advice to load unsafely (issue 22)."""

import os

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from idprops.cli import main
from idprops.nn import Trainer, build_model
from idprops.torchfiles import load_torch_file


class Marker:
    """Unpickled, it would create the file ``path``: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def hostile(tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "hostile.pt"
    torch.save({"model": Marker(str(marker))}, path)
    yield path
    assert not marker.exists(), "unpickling ran code"


def assert_refused(message, path):
    assert f"{path} holds a Python object (io.open)" in message
    assert "weights_only=False" not in message and "\n" not in message


@pytest.mark.parametrize("name", ["small_cnn", "mlp1x512", "cifar_resnet18", "small_alexnet"])
def test_model_weights(hostile, name):
    with pytest.raises(ValueError) as caught:
        build_model(name, in_channels=1, input_size=28, weights=hostile)
    assert_refused(str(caught.value), hostile)
    assert "torch.save(model.state_dict(), path)" in str(caught.value)


def test_a_checkpoint_the_trainer_resumes_names_itself(hostile, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    path = checkpoints / "checkpoint_step000000003.pt"
    os.replace(hostile, path)
    torch.save({"model": Marker(str(tmp_path / "MARKER"))}, path)
    data = TensorDataset(torch.zeros(8, 2), torch.tensor([0, 1] * 4))
    trainer = Trainer(nn.Linear(2, 2), epochs=1, batch_size=4, checkpoint_dir=checkpoints, resume=True)
    with pytest.raises(ValueError) as caught:
        trainer.fit(data)
    assert_refused(str(caught.value), path)
    assert "training checkpoint" in str(caught.value) and "to train from the start" in str(caught.value)


def test_the_command_line_says_it_in_one_line(hostile, capsys):
    code = main(["measure", "--classes", "0,1", "--model", "small_cnn", "--layer", "fc1", "--weights", str(hostile)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert_refused(err.strip(), hostile)


def test_a_file_not_written_by_torch_save(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello")
    with pytest.raises(ValueError, match=r"notes.pt is not a file written by torch.save"):
        build_model("small_cnn", weights=path)
    with pytest.raises(FileNotFoundError):
        load_torch_file(tmp_path / "missing.pt")
