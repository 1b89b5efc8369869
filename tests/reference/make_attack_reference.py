"""Adversarial examples from torchattacks, saved once for ``tests/test_attacks.py``.

torchattacks is no dependency of idprops (it pins ``requests`` and pulls CUDA
wheels), so the comparison of our FGSM and PGD with it runs on the values this
script saved. Run by hand, from the repository root::

    pip install --no-deps torchattacks==3.5.1
    python tests/reference/make_attack_reference.py

then commit ``tests/reference/attacks_torchattacks.npz``. It trains the tests' small
MLP on the digits (its weights are saved, so the test needs no training), attacks
100 test digits with torchattacks' FGSM (eps = 0.05) and PGD (L-inf, eps = 0.05,
alpha = 0.01, 5 steps, no random start), and saves the weights, the inputs, their
labels and both sets of adversarial examples.
"""

from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

OUT = Path(__file__).with_name("attacks_torchattacks.npz")
#: The attacks' settings, stored beside the results so that the test reads them back.
FGSM_EPS = 0.05
PGD_EPS, PGD_ALPHA, PGD_STEPS = 0.05, 0.01, 5


def mlp() -> nn.Module:
    """The architecture of the tests' ``trained`` fixture."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def main() -> None:
    import torchattacks

    from idprops.nn import Trainer

    torch.set_num_threads(1)
    bunch = load_digits()
    x = torch.tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(bunch.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    torch.manual_seed(0)
    model = mlp()
    Trainer(model, epochs=15, lr=3e-3, batch_size=64, device="cpu", progress=False).fit(
        TensorDataset(x[:1400], y[:1400])
    )
    model.eval()
    inputs, labels = x[1400:1500], y[1400:1500]
    fgsm = torchattacks.FGSM(model, eps=FGSM_EPS)(inputs, labels)
    pgd = torchattacks.PGD(model, eps=PGD_EPS, alpha=PGD_ALPHA, steps=PGD_STEPS, random_start=False)(inputs, labels)
    weights = {f"weight:{name}": value.numpy() for name, value in model.state_dict().items()}
    np.savez_compressed(
        OUT,
        inputs=inputs.numpy(),
        labels=labels.numpy(),
        fgsm=fgsm.numpy(),
        pgd=pgd.numpy(),
        settings=np.array([FGSM_EPS, PGD_EPS, PGD_ALPHA, PGD_STEPS]),
        torchattacks_version=np.array(torchattacks.__version__),
        **weights,
    )
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes) with torchattacks {torchattacks.__version__}")


if __name__ == "__main__":
    main()
