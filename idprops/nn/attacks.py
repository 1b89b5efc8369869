"""Adversarial attacks (FGSM, PGD in L-inf and L2) and robust accuracy.

Our own implementations (torchattacks pins old dependencies). An attack is a callable
``attack(model, x, y) -> x_adv`` that maximises the cross-entropy of ``model`` around
``x`` within a ball of radius ``eps``, in the model's eval mode (the model is left in
the mode it was found in, and its parameters' gradients are not touched), keeping the
inputs in ``[clip_min, clip_max]``. ``eps`` and the clipping range are on the scale of
the inputs: 2/255 is two grey levels of a ToTensor image in [0, 1], 2 of an image on the
[0, 255] scale (``clip_max=255``). Inputs outside the clipping range are refused, since
clipping them would move them further than ``eps``.

:func:`paper_fgsm` is the attack of Konz & Mazurowski (2024): single-step FGSM with
eps = 2 on the [0, 255] scale.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from numbers import Integral
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..model_errors import explaining_input_errors
from ..utils import progress_bar
from .training import data_loader, model_device, resolve_device

__all__ = ["FGSM", "PGD", "paper_fgsm", "robust_accuracy"]


def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the summed cross-entropy with respect to ``x``, and the per-sample losses."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        losses = nn.functional.cross_entropy(model(x), y, reduction="none")
        (grad,) = torch.autograd.grad(losses.sum(), x)
    return grad, losses.detach()


def _per_sample_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


class _Attack:
    """Shared checks and the eval-mode guard; subclasses define ``_perturb``."""

    def __init__(self, eps: float, clip_min: float, clip_max: float) -> None:
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps!r}.")
        if not clip_min < clip_max:
            raise ValueError(f"clip_min ({clip_min}) must be below clip_max ({clip_max}).")
        self.eps = float(eps)
        self.clip_min = float(clip_min)
        self.clip_max = float(clip_max)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adversarial versions of the inputs ``x`` with labels ``y``, same shape and device.

        Raises
        ------
        ValueError
            If an input lies outside ``[clip_min, clip_max]``.
        """
        self._check_range(x)
        was_training = model.training
        model.eval()
        try:
            return self._perturb(model, x.detach(), y).detach()
        finally:
            model.train(was_training)

    def _clip(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(self.clip_min, self.clip_max)

    def _check_range(self, x: torch.Tensor) -> None:
        """Refuse inputs outside the clipping range: clipping would move them further than
        ``eps`` (pixels on the [0, 255] scale clipped to [0, 1], say) and corrupt robust
        accuracy."""
        if x.numel() == 0:
            return
        low, high = (float(v) for v in torch.aminmax(x.detach()))
        # float32 rounding (a bilinear resize of a 255 image gives 255.0001) is not an
        # input out of range; clipping it moves the input by far less than a grey level.
        slack = 1e-5 * max(abs(self.clip_min), abs(self.clip_max))
        if low < self.clip_min - slack or high > self.clip_max + slack:
            raise ValueError(
                f"inputs lie in [{low:g}, {high:g}], outside the attack's range "
                f"[{self.clip_min:g}, {self.clip_max:g}]; clipping would move them by more "
                "than eps. Set clip_min and clip_max to the data's pixel range, with eps on "
                "the same scale (e.g. eps=2, clip_max=255 for pixels in [0, 255])."
            )

    def get_params(self) -> dict[str, Any]:
        """The attack's name and parameters, e.g. to hash a result."""
        return {"attack": type(self).__name__, **vars(self)}

    def __sklearn_clone__(self) -> _Attack:
        # An attack holds its settings only, so a copy is a faithful clone: scikit-learn's
        # clone of a study (whose attacks are objects) then works as for an estimator.
        return copy.deepcopy(self)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class FGSM(_Attack):
    """Fast gradient sign method (Goodfellow et al., 2015).

    ``x_adv = clip(x + eps * sign(grad_x loss))``: one step to the corner of the L-inf
    ball that a linearised loss prefers.

    Parameters
    ----------
    eps : float
        L-inf radius, on the inputs' scale.
    clip_min, clip_max : float
        Range of valid inputs.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> x, y = torch.full((3, 1, 2, 2), 0.5), torch.tensor([0, 1, 0])
    >>> attack = FGSM(eps=0.1)
    >>> (attack(model, x, y) - x).abs().max().item() <= 0.1 + 1e-7
    True
    >>> attack
    FGSM(eps=0.1, clip_min=0.0, clip_max=1.0)
    """

    def __init__(self, eps: float, *, clip_min: float = 0.0, clip_max: float = 1.0) -> None:
        super().__init__(eps, clip_min, clip_max)

    def _perturb(self, model, x, y):
        grad, _ = _input_gradient(model, x, y)
        return self._clip(x + self.eps * grad.sign())


class PGD(_Attack):
    """Projected gradient descent (Madry et al., 2018) in the L-inf or L2 ball.

    From a random point of the ball (or ``x``), ``steps`` times: a step of length
    ``step_size`` along the gradient's sign (L-inf) or its normalised direction (L2),
    then projection onto the ball around ``x`` and onto ``[clip_min, clip_max]``.

    Parameters
    ----------
    eps : float
        Radius of the ball, on the inputs' scale.
    steps : int
        Number of gradient steps.
    step_size : float, optional
        Length of a step; ``None``: ``2.5 * eps / steps`` (Madry et al.).
    norm : {"linf", "l2"}
    random_start : bool
        Start from a uniform point of the L-inf ball, or, for L2, a uniformly random
        direction at a radius drawn uniformly from [0, eps] (as torchattacks does).
    seed : int, optional
        Seeds the random start, drawn afresh in every call so that a call depends only
        on its arguments; ``None`` uses torch's global random state.
    clip_min, clip_max : float
        Range of valid inputs.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> x, y = torch.full((3, 1, 2, 2), 0.5), torch.tensor([0, 1, 0])
    >>> attack = PGD(eps=0.5, norm="l2", seed=0)
    >>> bool(((attack(model, x, y) - x).flatten(1).norm(dim=1) <= 0.5 + 1e-6).all())
    True
    >>> attack.get_params()["step_size"]
    0.125
    """

    def __init__(
        self,
        eps: float,
        steps: int = 10,
        step_size: float | None = None,
        norm: str = "linf",
        random_start: bool = True,
        seed: int | None = None,
        *,
        clip_min: float = 0.0,
        clip_max: float = 1.0,
    ) -> None:
        super().__init__(eps, clip_min, clip_max)
        if not isinstance(steps, Integral) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps must be a positive int, got {steps!r}.")
        if norm not in ("linf", "l2"):
            raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}.")
        if step_size is not None and not step_size >= 0:
            raise ValueError(f"step_size must be >= 0, got {step_size!r}.")
        self.steps = int(steps)
        self.step_size = 2.5 * self.eps / steps if step_size is None else float(step_size)
        self.norm = norm
        self.random_start = bool(random_start)
        self.seed = seed

    def _project(self, delta: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            return delta.clamp(-self.eps, self.eps)
        norms = _per_sample_norm(delta)
        return delta * torch.clamp(self.eps / (norms + 1e-12), max=1.0)

    def _random_delta(self, x: torch.Tensor) -> torch.Tensor:
        generator = None
        if self.seed is not None:
            generator = torch.Generator(device=x.device).manual_seed(self.seed)
        if self.norm == "linf":
            return (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1) * self.eps
        direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        radius = torch.rand((len(x),) + (1,) * (x.dim() - 1), generator=generator, device=x.device, dtype=x.dtype)
        return direction / (_per_sample_norm(direction) + 1e-12) * radius * self.eps

    def _perturb(self, model, x, y):
        x_adv = self._clip(x + self._random_delta(x)) if self.random_start else x.clone()
        for _ in range(self.steps):
            grad, _ = _input_gradient(model, x_adv, y)
            if self.norm == "linf":
                step = grad.sign()
            else:
                step = grad / (_per_sample_norm(grad) + 1e-12)
            x_adv = x_adv + self.step_size * step
            # x lies in the valid range (checked in __call__), so clipping moves each
            # coordinate toward x and never leaves the ball the projection just enforced.
            x_adv = self._clip(x + self._project(x_adv - x))
        return x_adv


def paper_fgsm() -> FGSM:
    """FGSM with eps = 2/255, the attack of Konz & Mazurowski (2024) on [0, 1] images.

    Examples
    --------
    >>> paper_fgsm()
    FGSM(eps=0.00784313725490196, clip_min=0.0, clip_max=1.0)
    """
    return FGSM(eps=2 / 255)


def robust_accuracy(
    model: nn.Module,
    data: Dataset | DataLoader,
    attack: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> dict[str, float]:
    """Clean and adversarial accuracy and loss of ``model`` on ``data``.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits, evaluated in eval mode (its mode is restored).
    data : torch Dataset of (input, label, ...) or DataLoader
    attack : callable
        ``attack(model, x, y) -> x_adv``, e.g. :class:`FGSM` or :class:`PGD`.
    batch_size : int
        Used when ``data`` is a Dataset.
    device : str or torch.device, optional
        Where to compute; the model is moved there. ``None``: where the model is.
    progress : bool, optional
        Progress bar; ``None`` is automatic.

    Returns
    -------
    dict
        ``clean_accuracy``, ``robust_accuracy`` (fractions), ``clean_loss``,
        ``adversarial_loss`` (mean cross-entropy).

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> model = torch.nn.Linear(1, 2)
    >>> _ = model.weight.data.copy_(torch.tensor([[-1.0], [1.0]]))
    >>> _ = model.bias.data.zero_()
    >>> data = TensorDataset(torch.tensor([[0.1], [0.9]]), torch.tensor([1, 1]))
    >>> result = robust_accuracy(model, data, FGSM(eps=0.2))
    >>> result["clean_accuracy"], result["robust_accuracy"]
    (1.0, 0.5)
    """
    device = model_device(model) if device is None else resolve_device(device)
    model.to(device)
    was_training = model.training
    model.eval()
    sums = {"clean_correct": 0, "adv_correct": 0, "clean_loss": 0.0, "adv_loss": 0.0}
    count = 0
    try:
        for batch in progress_bar(data_loader(data, batch_size), progress, desc="attack", leave=False):
            x, y = batch[0].to(device), batch[1].to(device)
            with explaining_input_errors(model, x, first=count == 0):
                x_adv = attack(model, x, y)
            with torch.no_grad():
                for key, inputs in (("clean", x), ("adv", x_adv)):
                    logits = model(inputs)
                    sums[f"{key}_correct"] += (logits.argmax(1) == y).sum().item()
                    sums[f"{key}_loss"] += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            count += len(y)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("cannot attack empty data.")
    return {
        "clean_accuracy": sums["clean_correct"] / count,
        "robust_accuracy": sums["adv_correct"] / count,
        "clean_loss": sums["clean_loss"] / count,
        "adversarial_loss": sums["adv_loss"] / count,
    }
