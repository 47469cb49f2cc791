"""Adversarial examples: FGSM, PGD (L_inf and L_2), Carlini-Wagner L_2, and the building blocks
of adaptive attacks (EOT, BPDA, finite-difference gradients, a classifier + detector pair).

Every attack takes a model ``f`` (any ``nn.Module`` returning logits), images ``x`` (N, C, H, W)
in [0, 1] and labels ``y``; it runs on the model's device in batches and returns a *new* tensor
on the CPU. It never changes the model (parameters, mode, ``requires_grad`` flags) or ``x``.

**PGD** (Madry et al., 2018) looks for ``x'`` in the eps-ball around ``x`` (and in the image box
[0, 1]) that maximises the loss, from a uniform random start in the ball:

    x^{t+1} = Proj_{B(x, eps) cap [0,1]} ( x^t + step_size * d^t ),
    d^t = sign(g^t) (L_inf)   or   g^t / ||g^t||_2 (L_2),      g^t = grad_x L(f(x^t), y)

``targeted=True`` instead *minimises* the loss of the label ``y`` (moving ``x`` towards class
``y``). Used by the clean-label backdoor (CLB, Turner et al. 2019) and by chapter 6.

**Adaptive attacks** (Athalye, Carlini and Wagner 2018; Tramer et al. 2020) keep PGD and change
what the gradient ``g`` is:

- *EOT* (``eot_samples=K``): a randomised model's loss averaged over K draws,
  ``g = grad_x (1/K) sum_k L(f_k(x), y)``;
- *finite differences* (``gradient=finite_difference_gradient(...)``): a gradient-free estimate
  of the gradient of the loss smoothed by Gaussian noise, for a model whose gradient is useless;
- *BPDA* (:class:`BPDA`): a layer computes its forward pass but back-propagates through a
  differentiable stand-in (:class:`SoftTopK` for a k-winners-take-all layer);
- *the loss*: ``loss="margin"`` is C&W's ``max_{j != y} Z_j - Z_y``; :func:`margin_loss` with
  ``reject=N`` also keeps the detector's class ``N`` away (an attack on a classifier + detector).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from ..errors import check_choice, check_range

NORMS = ("inf", 2)
#: changes when :func:`pgd` returns other images for the same arguments (cache keys include it):
#: 2 = later restarts attack only the images not yet fooled
PGD_VERSION = 2
#: step-size schedules of :func:`pgd`
SCHEDULES = ("constant", "cosine")
LossFn = Callable[[Tensor, Tensor], Tensor]  # (logits, y) -> per-sample loss


# ----------------------------------------------------------------------------- checks, losses

def _device(model: nn.Module) -> torch.device:
    return next(model.parameters(), torch.empty(0)).device


def _check_common(model: nn.Module, eps: float | None = None, norm="inf", steps: int | None = None,
                  eot_samples: int = 1, require_eval: bool = True) -> None:
    """Bad inputs raise ``ValueError`` naming the parameter and what is allowed."""
    check_choice("norm", norm, NORMS)
    if eps is not None:
        check_range("eps", eps, 0.0, 1.0 if norm == "inf" else math.inf)
    if steps is not None and (int(steps) != steps or steps < 1):
        raise ValueError(f"steps={steps!r} must be an integer >= 1")
    if int(eot_samples) != eot_samples or eot_samples < 1:
        raise ValueError(f"eot_samples={eot_samples!r} (K, the draws per gradient) must be an "
                         "integer >= 1")
    if require_eval and model.training:
        raise ValueError("model is in training mode; allowed: a model in eval mode (call "
                         "model.eval(); a randomised defense stays random in eval mode)")


def cross_entropy_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Per-sample cross-entropy."""
    return nn.functional.cross_entropy(logits, y, reduction="none")


def margin_loss(reject: int | None = None, confidence: float = 0.0) -> LossFn:
    """C&W's margin as a loss to *maximise*: ``min(max_{j not in A} Z_j - max_{i in A} Z_i, kappa)``
    with ``A = {y}`` or ``A = {y, reject}``.

    With ``reject`` = the detector's class (the N+1-th output of Grosse et al.'s network, or the
    detector logit of :class:`WithDetector`) the attack only succeeds where the image is
    misclassified *and* not flagged: the perfect-knowledge attack of Carlini and Wagner (2017).
    """
    def loss(logits: Tensor, y: Tensor) -> Tensor:
        avoid = nn.functional.one_hot(y, logits.shape[1]).bool()
        if reject is not None:
            avoid[:, reject] = True
        wanted = logits.masked_fill(avoid, -math.inf).amax(1)
        unwanted = logits.masked_fill(~avoid, -math.inf).amax(1)
        return (wanted - unwanted).clamp(max=confidence) if confidence else wanted - unwanted
    return loss


def _loss_fn(loss) -> LossFn:
    if callable(loss):
        return loss
    check_choice("loss", loss, ["ce", "margin"])
    return cross_entropy_loss if loss == "ce" else margin_loss()


def eot_loss(model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn, k: int = 1) -> Tensor:
    """Expectation over Transformation (Athalye et al. 2018): per-sample loss averaged over ``k``
    draws of a randomised model, ``(1/k) sum_k L(f_k(x), y)``, in one batched forward pass (the
    batch is repeated ``k`` times, so every copy gets its own random draw)."""
    if k == 1:
        return loss_fn(model(x), y)
    logits = model(x.repeat(k, *([1] * (x.dim() - 1))))
    return loss_fn(logits, y.repeat(k)).view(k, len(x)).mean(0)


def autograd_gradient(model, x, y, loss_fn, eot_samples=1) -> Tensor:
    """``grad_x`` of the summed (EOT-averaged) loss, by back-propagation."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(eot_loss(model, x, y, loss_fn, eot_samples).sum(), x)
    return grad


def finite_difference_gradient(samples: int = 100, sigma: float = 0.01, seed: int = 0):
    """Gradient estimator from ``samples`` antithetic Gaussian finite differences (NES; the
    smoothed gradient Tramer et al. 2020 use against k-WTA):

        g(x) = 1 / (2 sigma n) * sum_{i=1..n} [L(x + sigma u_i) - L(x - sigma u_i)] u_i,  u_i ~ N(0, I)

    an unbiased estimate of the gradient of the smoothed loss ``E_u L(x + sigma u)``. Needs only
    forward passes, so it sees through layers whose gradient is useless. Pass the result as
    ``gradient=`` to :func:`pgd` or :func:`fgsm`.
    """
    if samples < 1 or sigma <= 0:
        raise ValueError(f"samples={samples} must be >= 1 and sigma={sigma} > 0")
    gen = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def gradient(model, x, y, loss_fn, eot_samples=1):
        grad = torch.zeros_like(x)
        chunk = max(1, 4096 // len(x))  # perturbations per forward pass
        for start in range(0, samples, chunk):
            n = min(chunk, samples - start)
            u = torch.randn((n, *x.shape), generator=gen).to(x)
            both = torch.cat([x + sigma * u, x - sigma * u]).flatten(0, 1)
            losses = eot_loss(model, both, y.repeat(2 * n), loss_fn, eot_samples).view(2, n, len(x))
            diff = (losses[0] - losses[1]).view(n, len(x), *([1] * (x.dim() - 1)))
            grad += (diff * u).sum(0)
        return grad / (2 * sigma * samples)
    return gradient


class BPDA(nn.Module):
    """Backward Pass Differentiable Approximation (Athalye et al. 2018): the output of
    ``layer(x)`` in the forward pass, the gradient of ``surrogate(x)`` in the backward pass,

        y = surrogate(x) + stop_gradient(layer(x) - surrogate(x)).
    """

    def __init__(self, layer: nn.Module, surrogate: nn.Module | Callable):
        super().__init__()
        self.layer, self.surrogate = layer, surrogate

    def forward(self, x):
        soft = self.surrogate(x)
        return soft + (self.layer(x) - soft).detach()


class SoftTopK(nn.Module):
    """A smooth stand-in for a k-winners-take-all layer (Xiao et al. 2020), for :class:`BPDA`.
    Per sample, with ``z_(k)`` the k-th largest of the layer's ``m`` inputs ``z`` (``k =
    ceil(ratio * m)``, all channels and positions together),

        soft(z)_j = z_j * sigmoid((z_j - t_k) / T),
        t_k = (z_(k) + z_(k+1)) / 2   (z_(m) when k = m),      T = temperature * std(z),

    with ``t_k`` and ``T`` held constant in the backward pass. As ``T -> 0`` the mask tends to
    k-WTA's hard one (1 for the k winners, 0 for the rest).

    Tramer et al. (2020, "On adaptive attacks to adversarial example defenses", section on
    k-WTA) show why k-WTA's own gradient misleads PGD: the set of winners changes under tiny
    input changes (on chapter 6's network the k-th and (k+1)-th activations of the first layer
    are ~2e-4 apart), so the gradient of the current linear piece says little about the loss a
    step away. They follow the gradient of the loss smoothed by Gaussian noise,
    ``grad_x E_u L(x + sigma u)``, estimated by finite differences
    (:func:`finite_difference_gradient`: thousands of forward passes per step). This stand-in
    smooths the *mask* instead, so a smoothed gradient costs one backward pass:
    ``with_bpda(model, KWTA, lambda m: SoftTopK(m.ratio, 0.1))``. Unlike a ReLU stand-in, it
    sends gradient mainly to the winners and to the units near the threshold, the ones a step
    can promote or demote. ``temperature`` is relative to the spread of the activations, so one
    value fits layers of any scale.
    """

    def __init__(self, ratio: float, temperature: float = 0.1):
        super().__init__()
        if not 0 < ratio <= 1 or temperature <= 0:
            raise ValueError(f"ratio={ratio} must be in (0, 1] and temperature={temperature} > 0")
        self.ratio, self.temperature = ratio, temperature

    def forward(self, z):
        flat = z.flatten(1)
        k = max(1, math.ceil(self.ratio * flat.shape[1]))
        top = flat.topk(min(k + 1, flat.shape[1]), dim=1).values.detach()
        t_k = top[:, k - 1:].mean(dim=1, keepdim=True)  # between the k-th and the (k+1)-th
        temp = (self.temperature * flat.std(dim=1, keepdim=True)).clamp_min(1e-12).detach()
        return (flat * torch.sigmoid((flat - t_k) / temp)).view_as(z)

    def extra_repr(self):
        return f"ratio={self.ratio}, temperature={self.temperature}"


def with_bpda(model: nn.Module, layer_type: type, surrogate: Callable[[nn.Module], nn.Module]):
    """A copy of ``model`` where every ``layer_type`` module ``m`` is ``BPDA(m, surrogate(m))``."""
    import copy
    out = copy.deepcopy(model)
    for name, module in list(out.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, layer_type):
                setattr(module, child_name, BPDA(child, surrogate(child)))
    return out


class WithDetector(nn.Module):
    """A classifier (N logits ``Z_F``) and a detector (one logit ``Z_D``, > 0 = adversarial) as one
    network with N+1 outputs (Carlini and Wagner 2017, section 3):

        G(x)_i = Z_F(x)_i (i < N),     G(x)_N = (Z_D(x) + 1) * max_j Z_F(x)_j

    so ``argmax G = N`` exactly when the detector fires (for positive ``max Z_F``). Attack ``G`` with
    ``margin_loss(reject=N)`` to fool both at once."""

    def __init__(self, classifier: nn.Module, detector: Callable[[Tensor], Tensor]):
        super().__init__()
        self.classifier, self.detector = classifier, detector

    def forward(self, x):
        z = self.classifier(x)
        top = z.amax(1, keepdim=True)
        return torch.cat([z, (self.detector(x).view(-1, 1) + 1) * top], 1)


# ----------------------------------------------------------------------------- the attacks

def _random_start(x0: Tensor, eps: float, norm, gen: torch.Generator) -> Tensor:
    if norm == "inf":
        return (x0 + (torch.rand(x0.shape, generator=gen) * 2 - 1).to(x0) * eps).clamp(0, 1)
    d = x0[0].numel()  # uniform in the L2 ball: Gaussian direction, radius eps * U^(1/d)
    u = torch.randn(x0.shape, generator=gen).to(x0)
    radius = eps * torch.rand(len(x0), generator=gen).to(x0) ** (1 / d)
    u = u / u.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x0.dim() - 1))
    return (x0 + u * radius.view(-1, *[1] * (x0.dim() - 1))).clamp(0, 1)


def _project(adv: Tensor, x0: Tensor, eps: float, norm) -> Tensor:
    if norm == "inf":
        return torch.min(torch.max(adv, x0 - eps), x0 + eps).clamp(0, 1)
    delta = adv - x0
    norms = delta.flatten(1).norm(dim=1).view(-1, *[1] * (x0.dim() - 1))
    return (x0 + delta * (eps / norms.clamp_min(1e-12)).clamp(max=1)).clamp(0, 1)


def _direction(grad: Tensor, norm) -> Tensor:
    if norm == "inf":
        return grad.sign()
    return grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (grad.dim() - 1))


def _success(logits: Tensor, y: Tensor, targeted: bool, reject: int | None) -> Tensor:
    pred = logits.argmax(1)
    if targeted:
        return pred == y
    ok = pred != y
    return ok & (pred != reject) if reject is not None else ok


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int = 10,
        step_size: float | None = None, targeted: bool = False, random_start: bool = True,
        seed: int = 0, batch_size: int = 500, *, norm="inf", restarts: int = 1, loss="ce",
        eot_samples: int = 1, gradient: Callable | None = None,
        project: Callable[[Tensor, Tensor], Tensor] | None = None,
        reject: int | None = None, schedule: str = "constant", keep_best: bool = False) -> Tensor:
    """PGD adversarial examples for ``x`` (N, C, H, W) in [0, 1]; returns a new tensor.

    ``step_size`` defaults to ``2.5 * eps / steps`` (Madry et al.). The model's parameters, mode
    and ``requires_grad`` flags are left as they were (it runs in eval mode). The keyword-only
    options (their defaults give the plain L_inf attack above):

    - ``norm``: ``"inf"`` or ``2``; ``restarts``: independent random starts, keeping per image the
      first that succeeds (else the one of highest loss): an image counts as robust only if all
      fail; each restart after the first attacks only the images not yet fooled (the random
      starts are still drawn for all, so an image's starts do not depend on the others);
    - ``loss``: ``"ce"``, ``"margin"`` or a callable ``(logits, y) -> per-sample loss``;
    - ``eot_samples``: K draws per gradient (EOT); ``gradient``: a gradient estimator such as
      :func:`finite_difference_gradient` in place of back-propagation;
    - ``project``: an extra projection ``(x0, adv) -> adv`` applied after each step (e.g. onto a
      subspace); ``reject``: a class that does not count as success (a detector's class);
    - ``schedule``: ``"constant"`` (every step ``step_size``) or ``"cosine"``, step ``t`` of ``T``
      being ``eps / 2 * (1 + cos(pi t / T))`` (``step_size`` is then ignored): large first steps
      that explore, small last ones that settle, the idea of Croce and Hein's (2020) APGD step-size
      decay without its adaptivity; against a model whose loss surface is jagged (k-WTA) it finds
      far more than a constant step of the same budget;
    - ``keep_best``: per image, return the first iterate that succeeds (one extra forward pass a
      step), not only the last: an attacker who can query the model keeps any success on the way.
      The iterates themselves are unchanged, so it is never weaker than ``False``.
    """
    check_range("eps", eps, 0.0, 1.0 if norm == "inf" else math.inf)
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps={steps!r} must be a non-negative integer")
    _check_common(model, None, norm, None, eot_samples, require_eval=False)
    if int(restarts) != restarts or restarts < 1:
        raise ValueError(f"restarts={restarts!r} must be an integer >= 1")
    check_choice("schedule", schedule, SCHEDULES)
    plain = (norm == "inf" and restarts == 1 and loss == "ce" and eot_samples == 1
             and gradient is None and project is None and reject is None
             and schedule == "constant" and not keep_best)
    step_size = 2.5 * eps / max(steps, 1) if step_size is None else step_size
    sizes = ([eps / 2 * (1 + math.cos(math.pi * t / steps)) for t in range(steps)]
             if schedule == "cosine" else [step_size] * steps)
    loss_fn = _loss_fn(loss)
    rows = lambda v, like: v.view(-1, *[1] * (like.dim() - 1))  # noqa: E731 (per-image mask)

    def run(x0, yb, adv):  # one PGD run from the start ``adv``
        found, first = torch.zeros(len(x0), dtype=torch.bool, device=x0.device), adv
        for size in sizes:
            if plain:  # the original code path, kept bit for bit (CLB depends on it)
                adv.requires_grad_(True)
                ce = nn.functional.cross_entropy(model(adv), yb)
                (grad,) = torch.autograd.grad(ce, adv)
            else:
                grad = (gradient or autograd_gradient)(model, adv.detach(), yb, loss_fn,
                                                       eot_samples)
            direction = _direction(grad, norm)
            direction = -direction if targeted else direction
            adv = _project(adv.detach() + size * direction, x0, eps, norm)
            if project is not None:
                adv = project(x0, adv)
            if keep_best:
                with torch.no_grad():
                    new = _success(model(adv), yb, targeted, reject) & ~found
                first, found = torch.where(rows(new, x0), adv.detach(), first), found | new
        adv = adv.detach()
        return torch.where(rows(found, x0), first, adv) if keep_best else adv

    training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    out = []
    try:
        for i in range(0, len(x), batch_size):
            x0, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            best, best_loss, best_ok = None, None, None
            for _ in range(restarts):
                start = x0.clone()
                if random_start and eps > 0:  # drawn for every image: the stream never shifts
                    start = _random_start(x0, eps, norm, gen)
                    if project is not None:
                        start = project(x0, start)
                # later restarts attack only the images every earlier start failed on
                idx = None if best_ok is None else (~best_ok).nonzero().squeeze(1)
                if idx is not None and len(idx) == 0:
                    continue
                xa, ya, adv = (x0, yb, start) if idx is None else (x0[idx], yb[idx], start[idx])
                adv = run(xa, ya, adv)
                if restarts == 1:
                    best = adv
                    break
                with torch.no_grad():
                    logits = model(adv)
                    value = loss_fn(logits, ya) * (-1 if targeted else 1)
                    ok = _success(logits, ya, targeted, reject)
                if best is None:
                    best, best_loss, best_ok = adv, value, ok
                else:  # every image in idx has failed so far: a success, else a higher loss
                    take = ok | (value > best_loss[idx])
                    best[idx[take]] = adv[take]
                    best_loss[idx[take]] = value[take]
                    best_ok[idx] = ok
            out.append(best.cpu())
    finally:
        model.train(training)
    return torch.cat(out) if out else x.clone()


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, random_start: bool = False,
         alpha: float | None = None, targeted: bool = False, loss="ce", eot_samples: int = 1,
         gradient: Callable | None = None, seed: int = 0, batch_size: int = 500) -> Tensor:
    """Fast Gradient Sign Method (Goodfellow et al. 2015), one step of size ``eps``:

        x' = clip_[0,1]( x + eps * sign(grad_x L(f(x), y)) )

    ``random_start=True`` is FGSM-RS (Wong, Rice and Kolter 2020): start from
    ``x + delta_0``, ``delta_0 ~ U[-eps, eps]``, take one step of ``alpha`` (default ``1.25 eps``)
    and project back onto the eps-ball: the inner maximisation of fast adversarial training.
    """
    _check_common(model, eps, "inf", None, eot_samples)
    alpha = (1.25 * eps if random_start else eps) if alpha is None else alpha
    loss_fn = _loss_fn(loss)
    gen = torch.Generator().manual_seed(seed)
    device = _device(model)
    out = []
    for i in range(0, len(x), batch_size):
        x0, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        start = _random_start(x0, eps, "inf", gen) if random_start else x0
        grad = (gradient or autograd_gradient)(model, start, yb, loss_fn, eot_samples)
        step = -grad.sign() if targeted else grad.sign()
        out.append(_project(start + alpha * step, x0, eps, "inf").detach().cpu())
    return torch.cat(out) if out else x.clone()


def cw_l2(model: nn.Module, x: Tensor, y: Tensor, *, steps: int = 100, binary_steps: int = 5,
          c: float = 1.0, lr: float = 0.01, confidence: float = 0.0, reject: int | None = None,
          eot_samples: int = 1, batch_size: int = 500) -> Tensor:
    """Carlini-Wagner L_2 attack (Carlini and Wagner 2017, "Towards evaluating the robustness"):

        minimise_w  ||x' - x||_2^2 + c * max(Z_y(x') - max_{j != y} Z_j(x'), -kappa),
        x' = (tanh(w) + 1) / 2                       (always in the box [0, 1])

    with Adam (``lr``) for ``steps`` iterations, and a binary search over ``c`` per image
    (``binary_steps`` rounds, starting at ``c``: halve it after a success, else multiply by 10
    until a success was seen). Returns, per image, the successful ``x'`` of least distortion (or
    ``x`` itself where none succeeded). ``reject`` adds a detector's class to the classes to avoid
    (the attack on a classifier + detector); ``eot_samples`` averages the loss over K draws.
    Untargeted.
    """
    _check_common(model, None, "inf", steps, eot_samples)
    if binary_steps < 1 or c <= 0:
        raise ValueError(f"binary_steps={binary_steps} must be >= 1 and c={c} > 0")
    margin = margin_loss(reject, confidence=0.0)
    device = _device(model)
    out = []
    for i in range(0, len(x), batch_size):
        x0, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        n = len(x0)
        shape = (-1, *[1] * (x0.dim() - 1))
        w0 = torch.atanh((x0 * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))
        const = torch.full((n,), float(c), device=device)
        low, high = torch.zeros(n, device=device), torch.full((n,), math.inf, device=device)
        best = x0.clone()
        best_dist = torch.full((n,), math.inf, device=device)
        for _ in range(binary_steps):
            w = w0.clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=lr)
            found = torch.zeros(n, dtype=torch.bool, device=device)
            for _ in range(steps):
                adv = (torch.tanh(w) + 1) / 2
                dist = (adv - x0).flatten(1).pow(2).sum(1)
                # f = max(-margin, -kappa): 0 once the image is misclassified with margin kappa
                m = eot_loss(model, adv, yb, margin, eot_samples)
                f = (-m).clamp(min=-confidence)
                opt.zero_grad()
                (dist + const * f).sum().backward()
                opt.step()
                with torch.no_grad():
                    ok = m >= confidence if confidence else m > 0
                    if eot_samples > 1:  # success judged on a fresh draw, as the defense is used
                        ok = _success(model(adv), yb, False, reject) & ok
                    better = ok & (dist < best_dist)
                    best[better], best_dist[better] = adv[better].detach(), dist[better].detach()
                    found |= ok
            with torch.no_grad():  # binary search on c, per image
                high = torch.where(found, torch.minimum(high, const), high)
                low = torch.where(found, low, torch.maximum(low, const))
                const = torch.where(torch.isinf(high), const * 10, (low + high) / 2)
        out.append(best.detach().cpu())
    return torch.cat(out) if out else x.clone()


@torch.no_grad()
def robust_accuracy(model: nn.Module, x_adv: Tensor, y: Tensor, draws: int = 1,
                    reject: int | None = None, batch_size: int = 1000) -> float:
    """Fraction of ``x_adv`` classified as ``y`` (averaged over ``draws`` forward passes for a
    randomised model). With ``reject``, an image flagged as class ``reject`` also counts as
    *defended* (the detector caught it)."""
    device = _device(model)
    total = 0.0
    for _ in range(draws):
        for i in range(0, len(x_adv), batch_size):
            pred = model(x_adv[i:i + batch_size].to(device)).argmax(1).cpu()
            good = pred == y[i:i + batch_size]
            if reject is not None:
                good |= pred == reject
            total += good.float().sum().item()
    return total / (draws * max(len(x_adv), 1))
