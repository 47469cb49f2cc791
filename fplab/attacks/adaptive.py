"""Adaptive backdoor attacks: attackers who know the defense and train against it.

Three zoo trainers (``kind`` in a :class:`~fplab.zoo.Recipe`; their parameters in ``extra``, so
each setting is its own cached model):

``anp_aware``
    The attacker trains her backdoored network under *adversarial neuron perturbation*, the
    inner maximum of ANP's objective (Wu and Wang, 2021, eq. 5). Per mini-batch of her poisoned
    data ``(x, y)``::

        delta*, xi* = argmax_{|delta|, |xi| <= eps} L_{(1 + delta) w, (1 + xi) b}(x, y)
        theta <- theta - lr * grad_theta [ alpha * L_theta(x, y) + (1 - alpha) * L_{theta; delta*, xi*}(x, y) ]

    so that no neuron is singularly sensitive: a small perturbation of any neuron no longer flips
    clean inputs to the target, and ANP's masks, which find exactly such neurons, stay near 1.
    It starts from the attacker's plain backdoored model (the ``standard`` recipe with the same
    attack) and trains ``extra["epochs"]`` epochs.

``defense_in_loop``
    Train from scratch on the poisoned data, and after every epoch run the defense on the model
    and keep training from what is left (the "adversarial backdoor injection" of Grond; Xu, Liu,
    Koffas and Picek, CCS 2025). With CLP (``extra["defense"] = "clp"``) every epoch zeroes the
    channels with an outlying Lipschitz bound; the backdoor re-grows in channels whose bound stays
    ordinary, which CLP then cannot single out. ``"anp"`` runs a short ANP instead.

``adap_blend``
    Adap-Blend (Qi, Xie, Li, Mahloujifar and Mittal, ICLR 2023, "Revisiting the assumption of latent
    separability for backdoor defenses"): the blend pattern is cut into ``pieces`` (a grid of
    equal cells) and each poisoned image gets a random ``keep`` share of them, blended at
    ``train_alpha``; ``cover_rate`` of the training set gets the same partial trigger but keeps
    its correct label. At test time the whole pattern is blended at the attack's ``alpha``
    (``recipe.attack``). Poisoned and clean images then stay close in the latent space, and no
    single neuron carries the trigger.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn
from ..progress import progress_bar

from .. import zoo
from ..data import Data, Splits
from ..defenses.anp import NeuronPerturbation, _maximise_noise, anp_masks, prune_by_threshold
from ..defenses.clp import DEFAULT_U, channel_lipschitz, clp_select, zero_channels
from ..errors import check_choice, check_range
from ..models import build_model
from ..poison import Attack, eligible, poison
from ..train import default_device, epoch_options, model_device, seed_everything, train

DEFENSES_IN_LOOP = ("clp", "anp")


def _poisoned_data(recipe: zoo.Recipe, splits: Splits) -> tuple[Attack, Data]:
    attack = recipe.get_attack()
    if attack is None:
        raise ValueError(f"a {recipe.kind!r} recipe needs an attack")
    seed_everything(recipe.seed)
    return attack, poison(splits.train, attack, splits.num_classes, seed=recipe.seed).data


# ----------------------------------------------------------------------------- ANP-aware

def train_under_perturbation(model: nn.Module, data: Data, epochs: int, eps: float = 0.4,
                             alpha: float = 0.5, steps: int = 1, lr: float = 1e-3,
                             batch_size: int = 64, seed: int = 0, progress: bool = True) -> list[float]:
    """Train ``model`` in place (Adam) on ``alpha * clean loss + (1 - alpha) * loss under the
    worst neuron perturbation`` found by ``steps`` signed-gradient steps (ANP's inner maximum,
    :mod:`fplab.defenses.anp`); return the mean objective per epoch.

    The clean term runs in train mode (batch statistics, as ordinary training); the perturbation
    search and the perturbed term use the running statistics, so they do not move them."""
    if not eps > 0:
        raise ValueError(f"eps={eps!r} must be > 0 (the neuron perturbation budget)")
    check_range("alpha", alpha, 0.0, 1.0)
    if int(epochs) != epochs or epochs < 0:
        raise ValueError(f"epochs={epochs!r} must be a non-negative integer")
    device = model_device(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    with NeuronPerturbation(model) as pert:
        steps_per_epoch = math.ceil(len(data) / batch_size)
        bar = progress_bar(total=epochs * steps_per_epoch, desc="ANP-aware training",
                           progress=progress)
        for _ in range(epochs):
            order, total = torch.randperm(len(data), generator=gen), 0.0
            for start in range(0, len(data), batch_size):
                idx = order[start:start + batch_size]
                x, y = data.x[idx].to(device), data.y[idx].to(device)
                model.eval()
                _maximise_noise(pert, model, x, y, eps, steps, gen)   # sets pert.mode="perturbed"
                perturbed = nn.functional.cross_entropy(model(x), y)
                model.train()
                pert.mode = "off"
                clean = nn.functional.cross_entropy(model(x), y)
                loss = alpha * clean + (1 - alpha) * perturbed
                bar.update()
                total += loss.item() * len(idx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            losses.append(total / len(data))
        bar.close()
    model.eval()
    return losses


@zoo.register_trainer("anp_aware")
def train_anp_aware(recipe: zoo.Recipe, splits: Splits) -> nn.Module:
    """Zoo trainer: the plain backdoored model of the same attack (``standard`` recipe, cached),
    then ``extra["epochs"]`` epochs of :func:`train_under_perturbation` (``eps``, ``alpha``,
    ``steps``) on the poisoned data."""
    extra = dict(recipe.extra)
    epochs = extra.pop("epochs", 3)
    _, data = _poisoned_data(recipe, splits)
    base = replace(recipe, kind="standard", extra={})
    model = zoo.load(base, splits=splits).model
    model.to(default_device())
    train_under_perturbation(model, data, epochs, lr=recipe.train.get("lr", 1e-3),
                             batch_size=recipe.train.get("batch_size", 64), seed=recipe.seed,
                             **extra)
    return model


# ----------------------------------------------------------------------------- defense in the loop

def defend_in_place(model: nn.Module, defense: str, clean: Data | None = None, u: float = DEFAULT_U,
                    anp: dict | None = None, seed: int = 0) -> int:
    """Apply ``defense`` to ``model`` in place, as the attacker's training loop does; return how
    many channels it removed. ``"clp"``: :func:`fplab.defenses.clp.clp` (data-free);
    ``"anp"``: a short ANP on the attacker's ``clean`` images, pruned at ``anp["threshold"]``."""
    check_choice("defense", defense, DEFENSES_IN_LOOP)
    if defense == "clp":
        pruned, _ = clp_select(channel_lipschitz(model), u)
        zero_channels(model, pruned)
        return sum(len(v) for v in pruned.values())
    args = {"iterations": 100, "n_clean": min(500, len(clean)), **(anp or {})}
    threshold = args.pop("threshold", 0.2)
    masks = anp_masks(model, clean, seed=seed, progress=False, **args)
    result = prune_by_threshold(model, masks, threshold)
    model.load_state_dict(result.model.state_dict())
    return result.count


@zoo.register_trainer("defense_in_loop")
def train_defense_in_loop(recipe: zoo.Recipe, splits: Splits) -> nn.Module:
    """Zoo trainer: ``recipe.train["epochs"]`` epochs from scratch on the poisoned data, each
    followed by :func:`defend_in_place` with ``extra["defense"]`` (default CLP, ``extra["u"]``);
    a step schedule (``milestones``) sets each epoch's learning rate
    (:func:`fplab.train.epoch_options`)."""
    extra = dict(recipe.extra)
    defense = extra.pop("defense", "clp")
    check_choice("defense", defense, DEFENSES_IN_LOOP)
    _, data = _poisoned_data(recipe, splits)
    model = build_model(recipe.model, splits.shape, splits.num_classes, seed=recipe.seed)
    model.to(default_device())
    epochs = recipe.train["epochs"]
    for epoch in progress_bar(range(epochs), desc=f"training with {defense} in the loop"):
        train(model, data, epochs=1, seed=recipe.seed + epoch, progress=False,
              **epoch_options(recipe.train, epoch))
        defend_in_place(model, defense, splits.train, seed=recipe.seed, **extra)
    model.eval()
    return model


# ----------------------------------------------------------------------------- Adap-Blend

def piece_masks(shape: tuple[int, int], pieces: int) -> torch.Tensor:
    """``pieces`` boolean masks (``pieces``, H, W) tiling the image in a square grid
    (``pieces`` must be a square number: 16 -> a 4 x 4 grid)."""
    side = math.isqrt(pieces)
    if pieces < 1 or side * side != pieces:
        raise ValueError(f"pieces={pieces!r} must be a square number (4, 9, 16, ...)")
    H, W = shape
    rows = torch.arange(H) * side // H
    cols = torch.arange(W) * side // W
    cell = rows[:, None] * side + cols[None, :]
    return torch.stack([cell == k for k in range(pieces)])


def partial_blend(x: torch.Tensor, pattern: torch.Tensor, alpha: float, pieces: int, keep: float,
                  gen: torch.Generator) -> torch.Tensor:
    """Blend ``pattern`` into each image of ``x`` at ``alpha`` on a random ``keep`` share of the
    ``pieces`` grid cells (a new draw per image): ``x' = x + alpha * M_i * (pattern - x)``."""
    check_range("keep", keep, 0.0, 1.0)
    masks = piece_masks(tuple(x.shape[-2:]), pieces).float()
    chosen = max(1, round(keep * pieces))
    picks = torch.stack([torch.randperm(pieces, generator=gen)[:chosen] for _ in range(len(x))])
    m = masks[picks].amax(1)[:, None]  # (N, 1, H, W): the union of each image's pieces
    return x + alpha * m * (pattern.to(x) - x)


def adap_blend_poison(data: Data, attack: Attack, num_classes: int, pieces: int = 16,
                      keep: float = 0.5, train_alpha: float = 0.15, cover_rate: float = 0.003,
                      seed: int = 0) -> tuple[Data, torch.Tensor, torch.Tensor]:
    """Adap-Blend's training set: ``attack.rate`` of ``data`` poisoned (partial trigger, target
    label), ``cover_rate`` covers (partial trigger, own label), disjoint. Returns the new data and
    the poisoned and cover indices. The pattern is ``attack``'s blend pattern."""
    if attack.trigger != "blend" or attack.mode != "all_to_one":
        raise ValueError(f"Adap-Blend needs an all-to-one blend attack; got trigger="
                         f"{attack.trigger!r}, mode={attack.mode!r}")
    check_range("cover_rate", cover_rate, 0.0, 1.0)
    check_range("train_alpha", train_alpha, 0.0, 1.0)
    pattern = attack.make_trigger(tuple(data.x.shape[1:])).pattern
    gen = torch.Generator().manual_seed(seed)
    candidates = eligible(data.y, "all_to_one", attack.target).nonzero().flatten()
    candidates = candidates[torch.randperm(len(candidates), generator=gen)]
    n_poison, n_cover = round(attack.rate * len(data)), round(cover_rate * len(data))
    if n_poison + n_cover > len(candidates):
        raise ValueError(f"rate={attack.rate} and cover_rate={cover_rate} ask for "
                         f"{n_poison + n_cover} images but only {len(candidates)} are eligible")
    poisoned = candidates[:n_poison].sort().values
    cover = candidates[n_poison:n_poison + n_cover].sort().values
    x, y = data.x.clone(), data.y.clone()
    for index in (poisoned, cover):
        if len(index):
            x[index] = partial_blend(data.x[index], pattern, train_alpha, pieces, keep, gen)
    y[poisoned] = attack.target
    return Data(x, y), poisoned, cover


@zoo.register_trainer("adap_blend")
def train_adap_blend(recipe: zoo.Recipe, splits: Splits) -> nn.Module:
    """Zoo trainer: :func:`adap_blend_poison` with ``extra`` (``pieces``, ``keep``,
    ``train_alpha``, ``cover_rate``), then ordinary training from scratch."""
    attack = recipe.get_attack()
    if attack is None:
        raise ValueError("an 'adap_blend' recipe needs an attack")
    seed_everything(recipe.seed)
    data, _, _ = adap_blend_poison(splits.train, attack, splits.num_classes, seed=recipe.seed,
                                   **recipe.extra)
    return zoo.fit(recipe, splits, data, "Adap-Blend")
