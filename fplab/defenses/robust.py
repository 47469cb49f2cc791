"""Defenses against adversarial examples: four that adaptive attacks break, and one that holds.

- :func:`n_plus_one_data` and the ``"n_plus_one"`` trainer: Grosse et al. (2017) train the
  network on clean images *and* adversarial examples labelled with an extra class N: the
  network outputs N+1 logits and ``argmax = N`` means "adversarial, rejected".
- :class:`PCADetector`: Hendrycks and Gimpel (2017): adversarial perturbations put unusual weight
  on the low-variance principal components; the detector scores an image by the mean squared
  *whitened* coefficient over the components after the first ``k``.
- :func:`test_time_dropout`: dropout kept on at prediction time (Feinman et al. 2017): every
  forward pass is a different random sub-network.
- :class:`KWTA` and :func:`kwta_model`: k-winners-take-all activations (Xiao, Zhong and Zheng 2020)
  keep only the ``k = ceil(ratio * units)`` largest activations of a layer per sample; the
  resulting network is discontinuous in its input, so gradients mislead attacks.
- :func:`adversarial_training`: Madry et al. (2018), the min-max problem

      min_theta  E_{(x,y)} [ max_{||delta||_inf <= eps} L(f_theta(x + delta), y) ],

  the inner max by PGD (the lecture's "PGD in SGD") or by one FGSM step from a random start
  (Wong, Rice and Kolter 2020, "Fast is better than free"), with a cyclic learning rate.

Each trainer is registered with :func:`fplab.zoo.register_trainer`, so trained models are cached
by recipe hash. The zoo stores plain networks: the dropout and k-WTA layers have no parameters,
so the chapter applies :func:`test_time_dropout` / :func:`kwta_model` to the loaded network.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from ..progress import progress_bar

from .. import zoo
from ..attacks.adversarial import fgsm, pgd
from ..data import Data, Splits
from ..errors import check_choice, check_range
from ..models import build_model
from ..train import default_device, model_device, seed_everything, train


# ----------------------------------------------------------------------------- N+1 detector

def n_plus_one_data(data: Data, x_adv: Tensor, num_classes: int) -> Data:
    """Grosse et al.'s training set: ``data`` plus the adversarial images ``x_adv`` labelled
    ``num_classes`` (the extra, N+1-th class)."""
    extra = torch.full((len(x_adv),), num_classes, dtype=data.y.dtype)
    return Data(torch.cat([data.x, x_adv]), torch.cat([data.y, extra]))


@zoo.register_trainer("n_plus_one")
def train_n_plus_one(recipe: zoo.Recipe, splits: Splits) -> nn.Module:
    """The N+1-class network. ``recipe.extra``: ``eps``, ``steps`` of the PGD that makes the
    adversarial training images on the undefended model (``recipe.clean()``, from the zoo), and
    ``n_adv``, how many training images get an adversarial copy."""
    extra = recipe.extra
    base = zoo.load(recipe.clean(), splits=splits).model
    n = min(int(extra["n_adv"]), len(splits.train))
    gen = torch.Generator().manual_seed(recipe.seed)
    index = torch.randperm(len(splits.train), generator=gen)[:n]
    base.to(default_device())
    x_adv = pgd(base, splits.train.x[index], splits.train.y[index], extra["eps"],
                steps=extra["steps"], seed=recipe.seed)
    data = n_plus_one_data(splits.train, x_adv, splits.num_classes)
    seed_everything(recipe.seed)
    model = build_model(recipe.model, splits.shape, splits.num_classes + 1, seed=recipe.seed)
    model.to(default_device())
    train(model, data, seed=recipe.seed, desc="training the N+1-class detector", **recipe.train)
    return model


# ----------------------------------------------------------------------------- PCA detector

@dataclass
class PCADetector:
    """Hendrycks and Gimpel's PCA / whitening detector.

    With principal components ``v_i`` (variances ``lambda_i``, decreasing) of clean training
    images, the whitened coefficients are ``c_i(x) = v_i . (x - mu) / sqrt(lambda_i + floor)`` and

        score(x) = mean_{i > k} c_i(x)^2

    (``floor`` keeps the components of (near) zero variance, the always-black border pixels,
    finite). Clean images score about 1 on average; adversarial perturbations spread energy over
    every direction and score high. An attack confined to the first ``k`` components leaves
    ``c_{i>k}`` unchanged: :meth:`subspace_projection` is that constraint for :func:`pgd`.
    """

    mean: Tensor        # (D,)
    components: Tensor  # (D, D), rows = principal directions, by decreasing variance
    variances: Tensor   # (D,)
    k: int
    floor: float

    @classmethod
    def fit(cls, x: Tensor, k: int | None = None, variance_kept: float = 0.9,
            floor: float = 1e-3) -> "PCADetector":
        """PCA of ``x`` (N, C, H, W). ``k``: the leading components treated as "signal"; default,
        the fewest that explain ``variance_kept`` of the variance. ``floor`` is relative to the
        largest variance."""
        flat = x.flatten(1).double()
        mean = flat.mean(0)
        cov = (flat - mean).T @ (flat - mean) / max(len(flat) - 1, 1)
        variances, vectors = torch.linalg.eigh(cov)
        order = variances.argsort(descending=True)
        variances, vectors = variances[order].clamp_min(0), vectors[:, order]
        if k is None:
            share = variances.cumsum(0) / variances.sum()
            k = int((share < variance_kept).sum().item()) + 1
        check_range("k", k, 0, len(variances) - 1)
        return cls(mean.float(), vectors.T.float().contiguous(), variances.float(), int(k),
                   float(floor * variances[0]))

    def coefficients(self, x: Tensor) -> Tensor:
        """Whitened PCA coefficients ``c_i(x)``, shape (N, D)."""
        flat = x.flatten(1).to(self.mean) - self.mean
        return flat @ self.components.T / (self.variances + self.floor).sqrt()

    def score(self, x: Tensor) -> Tensor:
        """Detection score (higher = more suspicious), shape (N,)."""
        return self.coefficients(x)[:, self.k:].pow(2).mean(1)

    def threshold(self, clean: Tensor, fpr: float = 0.05) -> float:
        """The score above which an image is flagged, so that ``fpr`` of ``clean`` are flagged."""
        check_range("fpr", fpr, 0.0, 1.0)
        return torch.quantile(self.score(clean), 1 - fpr).item()

    def subspace_projection(self, iterations: int = 20):
        """``project(x0, adv)`` for :func:`pgd`: keeps ``adv - x0`` in the span of the first ``k``
        components, and ``adv`` in the box [0, 1], by alternating projections (both sets are
        convex and contain ``x0``). Ends with the box, so a small remainder may stay outside
        the span."""
        top = self.components[:self.k]

        def project(x0: Tensor, adv: Tensor) -> Tensor:
            v = top.to(adv)
            shape = adv.shape
            delta = (adv - x0).flatten(1)
            for _ in range(iterations):
                delta = (delta @ v.T) @ v
                delta = ((x0.flatten(1) + delta).clamp(0, 1) - x0.flatten(1))
            return x0 + delta.view(shape)
        return project


def auroc(clean_scores: Tensor, adv_scores: Tensor) -> float:
    """Area under the ROC curve of a score separating adversarial (positive) from clean images:
    the probability that a random adversarial image scores above a random clean one (ties 1/2)."""
    clean, adv = clean_scores.double().flatten(), adv_scores.double().flatten()
    if not len(clean) or not len(adv):
        raise ValueError("auroc needs at least one clean and one adversarial score")
    above = (adv[:, None] > clean[None, :]).double().mean()
    ties = (adv[:, None] == clean[None, :]).double().mean()
    return (above + 0.5 * ties).item()


# ----------------------------------------------------------------------------- test-time dropout

class AlwaysDropout(nn.Module):
    """Dropout that stays on in eval mode: each forward pass samples a fresh mask."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        check_range("p", p, 0.0, 0.999)
        self.p = p

    def forward(self, x):
        return nn.functional.dropout(x, self.p, training=True)

    def extra_repr(self):
        return f"p={self.p}"


def _replace(model: nn.Module, match, make, scope: str | None = None) -> nn.Module:
    """A deep copy of ``model`` with every child module ``m`` where ``match(m)`` replaced by
    ``make(m)`` (under the submodule ``scope`` only, if given). Parameter names are unchanged."""
    out = copy.deepcopy(model)
    root = out.get_submodule(scope) if scope else out
    for module in list(root.modules()):
        for name, child in list(module.named_children()):
            if match(child):
                setattr(module, name, make(child))
    return out


def test_time_dropout(model: nn.Module, p: float = 0.5, scope: str | None = "classifier") -> nn.Module:
    """A copy of ``model`` with :class:`AlwaysDropout` after every ReLU (of the submodule
    ``scope``; default the fully connected head, as in Feinman et al.'s networks). The copy is
    randomised even in eval mode; the weights are shared with nothing."""
    return _replace(model, lambda m: type(m) is nn.ReLU,
                    lambda m: nn.Sequential(nn.ReLU(), AlwaysDropout(p)), scope)


@zoo.register_trainer("dropout")
def train_dropout(recipe: zoo.Recipe, splits: Splits) -> nn.Module:
    """``recipe.model`` trained with dropout ``recipe.extra["p"]`` on its head (returned without
    the dropout layers: apply :func:`test_time_dropout` to use it)."""
    seed_everything(recipe.seed)
    plain = build_model(recipe.model, splits.shape, splits.num_classes, seed=recipe.seed)
    model = test_time_dropout(plain, recipe.extra["p"]).to(default_device())
    train(model, splits.train, seed=recipe.seed, desc="training with dropout", **recipe.train)
    plain.load_state_dict(model.state_dict())
    return plain


# ----------------------------------------------------------------------------- k-WTA

class KWTA(nn.Module):
    """k-winners-take-all (Xiao et al. 2020): per sample, keep the ``k = ceil(ratio * m)`` largest
    of the layer's ``m`` activations (all channels and positions together) and zero the rest,

        kWTA(z)_j = z_j  if z_j is among the k largest entries of z,  else 0.

    Replaces ReLU. Exactly ``k`` entries survive per sample (ties broken by ``topk``)."""

    def __init__(self, ratio: float = 0.1):
        super().__init__()
        check_range("ratio", ratio, 1e-6, 1.0)
        self.ratio = ratio

    def forward(self, x):
        flat = x.flatten(1)
        k = max(1, math.ceil(self.ratio * flat.shape[1]))
        index = flat.topk(k, dim=1).indices
        mask = torch.zeros_like(flat).scatter_(1, index, 1.0)
        return (flat * mask).view_as(x)

    def extra_repr(self):
        return f"ratio={self.ratio}"


def kwta_model(model: nn.Module, ratio: float = 0.1) -> nn.Module:
    """A copy of ``model`` with every ``nn.ReLU`` replaced by :class:`KWTA` (``ratio``)."""
    return _replace(model, lambda m: type(m) is nn.ReLU, lambda m: KWTA(ratio))


@zoo.register_trainer("kwta")
def train_kwta(recipe: zoo.Recipe, splits: Splits) -> nn.Module:
    """``recipe.model`` with k-WTA activations (``recipe.extra["ratio"]``), trained normally, or
    adversarially when ``recipe.extra["adversarial"]`` holds :func:`adversarial_training`'s
    arguments and :func:`train_adversarial`'s ``init`` / ``val_images`` (Xiao et al. train k-WTA
    with the same adversarial training as the ReLU baseline); returned with ReLUs: apply
    :func:`kwta_model`."""
    adversarial = dict(recipe.extra.get("adversarial") or {})
    plain, val = _starting_point(recipe, splits, adversarial)
    model = kwta_model(plain, recipe.extra["ratio"]).to(default_device())
    if adversarial:
        adversarial_training(model, splits.train, seed=recipe.seed, val=val, **recipe.train,
                             **adversarial)
    else:
        train(model, splits.train, seed=recipe.seed, desc="training with k-WTA", **recipe.train)
    plain.load_state_dict(model.state_dict())
    return plain


# ----------------------------------------------------------------------------- adversarial training

METHODS = ("pgd", "fgsm_rs", "fgsm")


def adversarial_training(model: nn.Module, data: Data, eps: float, method: str = "fgsm_rs",
                         epochs: int = 10, lr: float = 5e-3, batch_size: int = 100,
                         alpha: float | None = None, steps: int = 7, schedule: str = "cyclic",
                         ramp_epochs: float = 0.0, val: Data | None = None, val_steps: int = 10,
                         seed: int = 0, progress: bool = True,
                         desc: str = "adversarial training") -> list[float]:
    """Train ``model`` in place on adversarial examples of each batch; return the loss per epoch.

    The lecture's algorithm ("PGD SGD"): for every batch, find ``x' = x + delta`` by ``steps``
    PGD steps in the eps-ball (``method="pgd"``, step ``alpha``, default ``2.5 eps / steps``), then
    take an optimiser step on ``L(f(x'), y)``. ``method="fgsm_rs"`` replaces the inner PGD by one
    FGSM step of ``alpha`` (default ``1.25 eps``) from a uniform random start (Wong et al. 2020);
    ``"fgsm"`` is the same from ``x`` itself (the variant prone to *catastrophic overfitting*:
    robust to FGSM, not to PGD). Adam with a cyclic (triangular) learning rate peaking at ``lr``
    half-way (``schedule="cyclic"``) or constant (``"constant"``).

    Two guards for small budgets: ``ramp_epochs`` grows the radius linearly from 0 to ``eps``
    over the first ``ramp_epochs`` epochs (the step ``alpha`` in proportion), so the network is
    not asked for full-eps robustness before it classifies; with ``val`` (held-out data, never
    the test set), PGD-``val_steps`` accuracy at ``eps`` is measured after every epoch and the
    best epoch's weights are kept: the early stopping by which Wong et al. catch catastrophic
    overfitting (a sudden collapse of PGD accuracy while FGSM accuracy soars).
    """
    check_choice("method", method, METHODS)
    check_choice("schedule", schedule, ["cyclic", "constant"])
    check_range("eps", eps, 0.0, 1.0)
    if epochs < 1 or batch_size < 1 or steps < 1:
        raise ValueError(f"epochs={epochs}, batch_size={batch_size} and steps={steps} must be >= 1")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    total = epochs * math.ceil(len(data) / batch_size)
    gen = torch.Generator().manual_seed(seed)
    device = model_device(model)
    ramp = ramp_epochs * math.ceil(len(data) / batch_size)
    losses, step, best = [], 0, (-1.0, None)
    with progress_bar(total=total, desc=desc, progress=progress) as bar:
        for _ in range(epochs):
            order, running = torch.randperm(len(data), generator=gen), 0.0
            for start in range(0, len(data), batch_size):
                idx = order[start:start + batch_size]
                x, y = data.x[idx], data.y[idx]
                batch_seed = seed * 1_000_003 + step
                model.eval()  # the inner maximisation (no parameter changes)
                scale = min(1.0, (step + 1) / ramp) if ramp > 0 else 1.0
                e, a = eps * scale, None if alpha is None else alpha * scale
                if method == "pgd":
                    x_adv = pgd(model, x, y, e, steps=steps, step_size=a, seed=batch_seed)
                else:
                    x_adv = fgsm(model, x, y, e, random_start=method == "fgsm_rs", alpha=a,
                                 seed=batch_seed)
                model.train()
                if schedule == "cyclic":
                    for group in opt.param_groups:
                        group["lr"] = lr * (1 - abs(2 * (step + 0.5) / total - 1))
                loss = nn.functional.cross_entropy(model(x_adv.to(device)), y.to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                running += loss.item() * len(idx)
                step += 1
                bar.update()
            losses.append(running / len(data))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if val is not None:
                model.eval()
                adv = pgd(model, val.x, val.y, eps, steps=val_steps, seed=seed)
                with torch.no_grad():
                    acc = (model(adv.to(device)).argmax(1).cpu() == val.y).float().mean().item()
                if acc >= best[0]:
                    best = (acc, copy.deepcopy(model.state_dict()))
    if best[1] is not None:
        model.load_state_dict(best[1])
    model.eval()
    return losses


def _starting_point(recipe: zoo.Recipe, splits: Splits, extra: dict):
    """``(model, val)`` for an adversarial trainer; pops ``init`` and ``val_images`` from
    ``extra``: the clean model of ``recipe.clean(init)`` (from the zoo) or fresh weights, and the
    first ``val_images`` validation images (None for none)."""
    init, n_val = extra.pop("init", None), extra.pop("val_images", 0)
    seed_everything(recipe.seed)
    if init is not None:
        model = copy.deepcopy(zoo.load(recipe.clean(init), splits=splits).model)
    else:
        model = build_model(recipe.model, splits.shape, splits.num_classes, seed=recipe.seed)
    val = Data(splits.val.x[:n_val], splits.val.y[:n_val]) if n_val else None
    return model.to(default_device()), val


@zoo.register_trainer("adversarial")
def train_adversarial(recipe: zoo.Recipe, splits: Splits) -> nn.Module:
    """``recipe.model`` trained by :func:`adversarial_training` with ``recipe.train`` (epochs, lr,
    batch_size) and ``recipe.extra`` (eps, method, alpha, steps, schedule, ramp_epochs). Two
    more keys of ``recipe.extra``: ``init``, the clean model's training hyper-parameters, starts
    from that clean model (``recipe.clean(init)``, from the zoo) instead of random weights;
    ``val_images``, the first that many validation images for the early-stopping check."""
    extra = dict(recipe.extra)
    model, val = _starting_point(recipe, splits, extra)
    adversarial_training(model, splits.train, seed=recipe.seed, val=val, **recipe.train, **extra)
    return model


class FixedDropout(nn.Module):
    """One draw of :class:`AlwaysDropout` frozen: a fixed mask per unit (scaled by 1/(1-p)), the
    same for every input. A dropout network with its masks fixed is one deterministic member
    ``Z_j`` of the family the randomised defense samples from."""

    def __init__(self, p: float, seed: int):
        super().__init__()
        self.p, self.seed = p, seed

    def forward(self, x):
        gen = torch.Generator().manual_seed(self.seed)
        keep = (torch.rand(x.shape[1:], generator=gen) >= self.p).to(x)
        return x * keep / (1 - self.p)


def sample_network(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of a :func:`test_time_dropout` model with every dropout mask drawn once (``seed``)
    and frozen: one deterministic sample ``Z_j`` of the randomised network."""
    counter = iter(range(10**6))
    return _replace(model, lambda m: isinstance(m, AlwaysDropout),
                    lambda m: FixedDropout(m.p, seed * 7919 + next(counter)))
