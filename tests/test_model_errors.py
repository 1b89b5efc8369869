"""A model that refuses its input: training, evaluation and attacks say what input it expects."""

import pytest

torch = pytest.importorskip("torch")

from idprops.data import load_digits  # noqa: E402
from idprops.model_errors import explaining_input_errors  # noqa: E402
from idprops.nn import FGSM, Trainer, evaluate, robust_accuracy  # noqa: E402

EXPECTED = (
    r"the model could not run on a batch of shape \(40, 1, 8, 8\) \(one sample: \(1, 8, 8\)\); "
    r"its first layer '1' \(Linear\) takes inputs with 16 features in its last axis\. "
    r"Pass inputs of the shape the model was built for \(torch: mat1 and mat2 shapes cannot be multiplied"
)


@pytest.fixture(scope="module")
def digits():
    return load_digits(train=None, n=40, classes=[0, 1])


def _wrong_model():
    # Built for 4 x 4 images: the digits are 8 x 8.
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))


@pytest.mark.parametrize(
    "run",
    [
        lambda model, data: Trainer(model, epochs=1, batch_size=40).fit(data),
        lambda model, data: evaluate(model, data, batch_size=40),
        lambda model, data: robust_accuracy(model, data, FGSM(eps=0.1), batch_size=40),
    ],
    ids=["Trainer.fit", "evaluate", "robust_accuracy"],
)
def test_inputs_of_the_wrong_shape_are_explained(run, digits):
    # Each passed on torch's "mat1 and mat2 shapes cannot be multiplied" alone, as
    # collect_activations no longer did.
    with pytest.raises(ValueError, match=EXPECTED):
        run(_wrong_model(), digits)


def test_only_a_first_batch_of_floats_is_explained():
    model = torch.nn.Linear(16, 2)
    floats, ids = torch.zeros(3, 5), torch.zeros(3, 5, dtype=torch.long)
    for x, first in ((floats, False), (ids, True)):
        # A later batch fails for reasons of the model's own; integer input is token ids.
        with pytest.raises(RuntimeError), explaining_input_errors(model, x, first=first):
            model(x)
