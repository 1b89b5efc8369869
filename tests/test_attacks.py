from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from idprops.nn import FGSM, PGD, Trainer, evaluate, paper_fgsm, robust_accuracy


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models gain nothing from intra-op threads, and on a busy 2-core machine
    # OpenMP's waiting threads slow them down thirtyfold.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def digits():
    """Real 8x8 digits in [0, 1], 1 channel: (train, test) TensorDatasets."""
    bunch = load_digits()
    x = torch.tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(bunch.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return TensorDataset(x[:1400], y[:1400]), TensorDataset(x[1400:], y[1400:])


@pytest.fixture(scope="module")
def trained(digits):
    """A small MLP trained to high accuracy on the digits."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    Trainer(model, epochs=15, lr=3e-3, batch_size=64, device="cpu").fit(digits[0])
    model.eval()
    assert evaluate(model, digits[1])["accuracy"] > 0.9
    return model


def batch(digits, n=200):
    x, y = digits[1].tensors
    return x[:n], y[:n]


ATTACKS = [
    FGSM(eps=0.1),
    PGD(eps=0.1, steps=5, seed=0),
    PGD(eps=0.1, steps=5, random_start=False),
    PGD(eps=1.0, steps=5, norm="l2", seed=0),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=repr)
def test_perturbation_stays_in_ball_and_range(trained, digits, attack):
    x, y = batch(digits)
    x_adv = attack(trained, x, y)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    delta = (x_adv - x).flatten(1)
    if getattr(attack, "norm", "linf") == "linf":
        assert delta.abs().max() <= attack.eps + 1e-6
    else:
        assert (delta.norm(dim=1) <= attack.eps + 1e-5).all()
    assert delta.abs().max() > 0  # it did move


def test_clipping_to_custom_range():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x = torch.rand(6, 4) * 2 - 1
    y = torch.randint(0, 3, (6,))
    for attack in [FGSM(0.5, clip_min=-1, clip_max=1), PGD(0.5, clip_min=-1, clip_max=1, seed=1)]:
        x_adv = attack(model, x, y)
        assert x_adv.min() >= -1 and x_adv.max() <= 1
        assert (x_adv - x).abs().max() <= 0.5 + 1e-6


@pytest.mark.parametrize("attack", [FGSM(2 / 255), PGD(2 / 255, steps=2, seed=0)], ids=repr)
def test_inputs_outside_the_clipping_range_are_refused(attack):
    # Pixels on the [0, 255] scale clipped to [0, 1] would move by up to 254, not eps.
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"inputs lie in \[0, 255\], outside .* \[0, 1\]"):
        attack(model, torch.tensor([[0.0, 3.0, 128.0, 255.0]] * 2), y)
    with pytest.raises(ValueError, match="outside the attack's range"):
        attack(model, torch.full((2, 4), -0.5), y)
    # float32 rounding past the range's end (a resize of a white image) is not refused.
    x = torch.full((2, 4), 1.0 + 4e-7)
    assert (attack(model, x, y) - x).abs().max() <= 2 / 255 + 1e-6


@pytest.mark.parametrize("attack", [FGSM(eps=0.0), PGD(eps=0.0, seed=0), PGD(eps=0.0, norm="l2", seed=0)], ids=repr)
def test_eps_zero_gives_clean_accuracy_exactly(trained, digits, attack):
    result = robust_accuracy(trained, digits[1], attack, batch_size=128)
    clean = evaluate(trained, digits[1])
    assert result["robust_accuracy"] == result["clean_accuracy"] == clean["accuracy"]
    assert result["adversarial_loss"] == result["clean_loss"]
    assert result["clean_loss"] == pytest.approx(clean["loss"], rel=1e-6)


@pytest.mark.parametrize("eps, norm", [(0.06, "linf"), (0.1, "linf"), (0.5, "l2")])
def test_pgd_loss_at_least_fgsm_loss(trained, digits, eps, norm):
    fgsm_eps = eps if norm == "linf" else eps / 8.0  # an L-inf cube of side eps/8 fits in the L2 ball (64 pixels)
    fgsm = robust_accuracy(trained, digits[1], FGSM(fgsm_eps))
    pgd = robust_accuracy(trained, digits[1], PGD(eps, steps=20, norm=norm, seed=0))
    assert pgd["adversarial_loss"] >= fgsm["adversarial_loss"]
    assert pgd["robust_accuracy"] <= fgsm["robust_accuracy"]
    assert fgsm["adversarial_loss"] > fgsm["clean_loss"]


def test_pgd_robust_accuracy_non_increasing_in_eps(trained, digits):
    accuracies = [
        robust_accuracy(trained, digits[1], PGD(eps, steps=10, seed=0))["robust_accuracy"]
        for eps in [0.0, 0.01, 0.03, 0.06, 0.1, 0.2]
    ]
    assert all(a >= b for a, b in zip(accuracies, accuracies[1:], strict=False))
    assert accuracies[0] > 0.9 and accuracies[-1] < 0.2


def test_fgsm_on_a_linear_binary_model_is_exact_and_monotone():
    # For two classes and a linear model, FGSM (with clipping) is the worst case in the
    # L-inf ball intersected with the box, so its accuracy can only fall as eps grows;
    # the attacked margin is known in closed form.
    torch.manual_seed(0)
    model = nn.Linear(10, 2)
    x = torch.rand(300, 10)
    with torch.no_grad():
        y = model(x).argmax(1)
    w = (model.weight[1] - model.weight[0]).detach()  # margin of class 1 over class 0
    previous = 1.0
    for eps in np.linspace(0, 0.5, 11):
        x_adv = FGSM(float(eps))(model, x, y)
        direction = torch.where(y[:, None] == 1, -w.sign(), w.sign())
        expected = (x + eps * direction).clamp(0, 1)
        torch.testing.assert_close(x_adv, expected, rtol=0, atol=1e-6)
        accuracy = robust_accuracy(model, TensorDataset(x, y), FGSM(float(eps)))["robust_accuracy"]
        assert accuracy <= previous
        previous = accuracy
    assert previous < 0.5


def test_one_step_pgd_without_random_start_is_fgsm(trained, digits):
    x, y = batch(digits)
    torch.testing.assert_close(
        PGD(0.05, steps=1, step_size=0.05, random_start=False)(trained, x, y),
        FGSM(0.05)(trained, x, y),
        rtol=0,
        atol=0,
    )


def test_pgd_seed_reproducible(trained, digits):
    x, y = batch(digits, 50)
    a = PGD(0.1, steps=2, seed=3)(trained, x, y)
    assert torch.equal(a, PGD(0.1, steps=2, seed=3)(trained, x, y))
    assert not torch.equal(a, PGD(0.1, steps=2, seed=4)(trained, x, y))


def test_model_mode_and_gradients_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    x, y = torch.rand(5, 4), torch.randint(0, 2, (5,))
    for mode in (True, False):
        model.train(mode)
        # Eval mode during the attack: dropout off, so FGSM is deterministic.
        assert torch.equal(FGSM(0.1)(model, x, y), FGSM(0.1)(model, x, y))
        PGD(0.1, seed=0)(model, x, y)
        assert model.training is mode
        assert all(p.grad is None for p in model.parameters())


def test_params_and_repr():
    assert paper_fgsm().eps == 2 / 255
    assert FGSM(0.1).get_params() == {
        "attack": "FGSM",
        "eps": 0.1,
        "clip_min": 0.0,
        "clip_max": 1.0,
    }
    params = PGD(0.3, steps=4, norm="l2", seed=7).get_params()
    assert params == {
        "attack": "PGD",
        "eps": 0.3,
        "clip_min": 0.0,
        "clip_max": 1.0,
        "steps": 4,
        "step_size": pytest.approx(2.5 * 0.3 / 4),
        "norm": "l2",
        "random_start": True,
        "seed": 7,
    }
    assert repr(PGD(0.3, steps=4, seed=7)).startswith("PGD(eps=0.3, ")
    assert "seed=7" in repr(PGD(0.3, steps=4, seed=7))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: FGSM(-0.1), "eps"),
        (lambda: PGD(0.1, norm="l1"), "norm"),
        (lambda: PGD(0.1, steps=0), "steps"),
        (lambda: FGSM(0.1, clip_min=1, clip_max=0), "clip_min"),
    ],
)
def test_bad_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_robust_accuracy_keeps_model_mode_and_matches_evaluate(trained, digits):
    trained.train()
    try:
        result = robust_accuracy(trained, digits[1], FGSM(0.05), batch_size=100)
        assert trained.training
    finally:
        trained.eval()
    clean = evaluate(trained, digits[1])
    assert result["clean_accuracy"] == clean["accuracy"]
    assert result["robust_accuracy"] < result["clean_accuracy"]
    assert result["adversarial_loss"] > result["clean_loss"]


def test_against_torchattacks_reference_values():
    # torchattacks' own outputs, saved by tests/reference/make_attack_reference.py with
    # the model's weights (torchattacks is no dependency, so the values are committed).
    ref = np.load(Path(__file__).parent / "reference" / "attacks_torchattacks.npz")
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    model.load_state_dict(
        {key.removeprefix("weight:"): torch.from_numpy(ref[key]) for key in ref.files if key.startswith("weight:")}
    )
    model.eval()
    x, y = torch.from_numpy(ref["inputs"]), torch.from_numpy(ref["labels"])
    fgsm_eps, pgd_eps, alpha, steps = ref["settings"]
    ours = {
        "fgsm": FGSM(float(fgsm_eps))(model, x, y),
        "pgd": PGD(float(pgd_eps), steps=int(steps), step_size=float(alpha), random_start=False)(model, x, y),
    }
    for name, adversarial in ours.items():
        theirs = torch.from_numpy(ref[name])
        assert (theirs != x).float().mean() > 0.5  # the references did move the inputs
        # Equal to float32 rounding; a gradient within rounding of 0 may take the other
        # sign on another CPU, so a few pixels (never more than 0.1 %) may differ.
        differs = ~torch.isclose(adversarial, theirs, rtol=1e-5, atol=1e-6)
        assert differs.float().mean() <= 1e-3, f"{name}: {int(differs.sum())} of {differs.numel()} pixels differ"


def test_robust_accuracy_ignores_extra_item_fields(trained, digits):
    x, y = digits[1].tensors
    with_flag = TensorDataset(x, y, torch.ones(len(y), dtype=torch.bool))
    assert robust_accuracy(trained, with_flag, FGSM(0.05)) == robust_accuracy(trained, digits[1], FGSM(0.05))
