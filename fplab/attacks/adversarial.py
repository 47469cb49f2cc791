"""Adversarial examples by projected gradient descent (PGD; Madry et al., 2018).

Given a model ``f``, an input ``x`` and its label ``y``, PGD looks for ``x'`` in the L_inf ball
``||x' - x||_inf <= eps`` (and in the image range [0, 1]) that maximises the loss:

    x^{t+1} = Proj_{B(x, eps) cap [0,1]} ( x^t + step_size * sign(grad_x L(f(x^t), y)) )

from a uniform random start in the ball. ``targeted=True`` instead *minimises* the loss of the
label ``y`` (moving ``x`` towards class ``y``). Used by the clean-label backdoor (CLB, Turner et al.
2019), which makes target-class images hard to classify before adding its trigger, and by the
adaptive-attacks chapter.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import check_range


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int = 10,
        step_size: float | None = None, targeted: bool = False, random_start: bool = True,
        seed: int = 0, batch_size: int = 500) -> Tensor:
    """L_inf PGD adversarial examples for ``x`` (N, C, H, W) in [0, 1]; returns a new tensor.

    ``step_size`` defaults to ``2.5 * eps / steps`` (Madry et al.). The model's parameters, mode
    and ``requires_grad`` flags are left as they were (it runs in eval mode).
    """
    check_range("eps", eps, 0.0, 1.0)
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps={steps!r} must be a non-negative integer")
    step_size = 2.5 * eps / max(steps, 1) if step_size is None else step_size
    training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    out = []
    try:
        for i in range(0, len(x), batch_size):
            x0, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            adv = x0.clone()
            if random_start and eps > 0:
                adv = (adv + (torch.rand(x0.shape, generator=gen) * 2 - 1).to(x0) * eps).clamp(0, 1)
            for _ in range(steps):
                adv.requires_grad_(True)
                loss = nn.functional.cross_entropy(model(adv), yb)
                (grad,) = torch.autograd.grad(loss, adv)
                direction = -grad.sign() if targeted else grad.sign()
                adv = adv.detach() + step_size * direction
                adv = torch.min(torch.max(adv, x0 - eps), x0 + eps).clamp(0, 1)
            out.append(adv.detach().cpu())
    finally:
        model.train(training)
    return torch.cat(out) if out else x.clone()
