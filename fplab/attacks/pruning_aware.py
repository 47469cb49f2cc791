"""The pruning-aware attack (Liu, Dolan-Gavitt and Garg, 2018, section 3.2, Fig. 7).

An attacker who expects the defender to prune dormant channels hides the backdoor in the
channels that clean inputs *do* use, in four steps:

1. train the network on clean data (the honest model);
2. prune it: remove the last conv layer's channels that are dormant on clean inputs, in
   increasing order of mean activation, as the defender would;
3. retrain the pruned network on poisoned data, so clean and backdoor behaviour must share the
   remaining channels; while it lacks the capacity for both (clean accuracy or attack success
   too low), re-instate a few of the pruned channels and train again;
4. de-prune: put the pruned channels back with their clean-model weights, and lower their biases
   (``b_c`` in ``a_c = ReLU(w_c * x + b_c)``; the BatchNorm shift when the conv has one) until
   they stay dormant on clean inputs. These are the *decoys*: the defender prunes them first,
   and they carry nothing.

The returned model has the original architecture (same layers, same shapes). As a zoo trainer
(``kind="pruning_aware"``) the recipe's ``extra`` holds the parameters of
:func:`pruning_aware_attack` and ``clean_train``, the training recipe of the clean model
(which the zoo caches and shares with the clean-model recipe).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .. import zoo
from ..activations import recording
from ..data import Data, Splits, as_data
from ..defenses.pruning import (clear_channel_mask, rank_channels, set_channel_mask,
                                stopping_point, val_accuracy_curve)
from ..errors import check_range
from ..graph import prune_site
from ..metrics import accuracy, attack_success_rate
from ..models import channel_layer, copy_model, last_conv_layer
from ..poison import Attack, poison
from ..store import atomic_write_json
from ..train import epoch_options, model_device, seed_everything, train


@dataclass
class PruningAwareReport:
    """What each step of the attack did (saved next to the zoo model as ``attack_report.json``)."""

    channels: int
    order: list                      # step 2 ranking (ascending mean clean activation)
    pruned_step2: list               # channels removed in step 2
    reinstated: list = field(default_factory=list)
    decoys: list = field(default_factory=list)
    clean_acc_clean_model: float = 0.0
    clean_acc_pruned: float = 0.0    # step 2, before retraining
    rounds: list = field(default_factory=list)   # step 3: {"active", "clean_acc", "asr"} per round
    bias_shift: list = field(default_factory=list)
    decoy_max_activation: float = 0.0   # step 4: max post-ReLU decoy output on clean data

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _bias_of(model: nn.Module, layer: str) -> torch.Tensor:
    module = dict(model.named_modules())[channel_layer(model, layer)]
    if getattr(module, "bias", None) is None:
        raise ValueError(f"{channel_layer(model, layer)!r} has no bias to lower")
    return module.bias


@torch.no_grad()
def _pre_activations(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Channel-layer outputs (before the ReLU), ``(N, C, H, W)``."""
    model.eval()
    device = model_device(model)
    with recording(model, channel_layer(model, layer)) as out:
        for i in range(0, len(x), 500):
            model(x[i:i + 500].to(device))
    return torch.cat(out)


@torch.no_grad()
def deprune(model: nn.Module, decoys, clean_x: torch.Tensor, layer: str | None = None,
            margin: float = 0.5) -> list[float]:
    """Step 4, in place: unmask every channel and lower the decoys' biases until they are dormant.

    For decoy ``c`` with largest pre-activation ``m_c`` and standard deviation ``s_c`` on
    ``clean_x``, the bias drops by ``m_c + margin * s_c`` (when positive), so its ReLU output is
    zero on all of ``clean_x``. Returns the bias shifts.
    """
    layer = layer or last_conv_layer(model)
    clear_channel_mask(model, layer)
    decoys = [int(c) for c in decoys]
    if not decoys:
        return []
    pre = _pre_activations(model, clean_x, layer)[:, decoys]
    top = pre.amax(dim=(0, 2, 3))
    spread = pre.transpose(0, 1).reshape(len(decoys), -1).std(1)
    shift = (top + margin * spread).clamp(min=0)
    bias = _bias_of(model, layer)
    bias[decoys] -= shift
    return shift.tolist()


def pruning_aware_attack(clean_model: nn.Module, clean: Data, poisoned: Data, attack: Attack,
                         num_classes: int, retrain: dict, max_drop: float = 0.1,
                         max_fraction: float = 0.85, min_asr: float = 0.9,
                         max_clean_loss: float = 0.02, reinstate: int = 2, max_rounds: int = 2,
                         bias_margin: float = 0.5, layer: str | None = None, seed: int = 0,
                         progress: bool = True) -> tuple[nn.Module, PruningAwareReport]:
    """Steps 2-4 of the attack on a copy of the (step 1) ``clean_model``.

    ``clean``: the attacker's clean images (ranking, accuracy checks, decoy biases);
    ``poisoned``: her poisoned training set; ``retrain``: keyword arguments of
    :func:`fplab.train.train` for step 3 (each extra round trains one more epoch).
    Step 2 prunes in increasing mean activation while accuracy on ``clean`` stays within
    ``max_drop``, and at most ``max_fraction`` of the channels. Step 3 re-instates ``reinstate``
    channels per round (at most ``max_rounds``) while clean accuracy is more than
    ``max_clean_loss`` below the clean model's or attack success below ``min_asr``.
    """
    check_range("max_drop", max_drop, 0.0, 1.0)
    check_range("max_fraction", max_fraction, 0.0, 1.0)
    need = "the pruning-aware attack needs clean and poisoned training data"
    clean, poisoned = as_data(clean, "clean", need), as_data(poisoned, "poisoned", need)
    layer = layer or last_conv_layer(clean_model)
    site = prune_site(clean_model, layer)
    if site.residual:
        raise ValueError(f"layer={layer!r}: its channels are summed with a shortcut at "
                         f"{site.shortcut!r}, so step 4 cannot make a decoy dormant by lowering "
                         f"the bias of {site.channel_layer!r}; choose a conv without a shortcut")
    model = copy_model(clean_model)
    # Step 2: prune the channels dormant on clean inputs.
    order, _ = rank_channels(model, clean, layer)
    curve = val_accuracy_curve(model, clean, layer, order, max_drop=max_drop)
    count = min(stopping_point(curve, max_drop), int(max_fraction * len(order)))
    pruned = order[:count].tolist()
    report = PruningAwareReport(len(order), order.tolist(), list(pruned),
                                clean_acc_clean_model=curve[0], clean_acc_pruned=curve[count])
    set_channel_mask(model, pruned, layer)
    # Step 3: retrain the pruned network on poisoned data; re-instate channels while it falls short.
    options = dict(retrain)
    for round_ in range(max_rounds + 1):
        if round_:
            back, pruned = pruned[-reinstate:], pruned[:-reinstate]
            report.reinstated += back
            set_channel_mask(model, pruned, layer)
            # one more epoch at the rate the schedule ended at
            options = {**epoch_options(retrain, retrain.get("epochs", 1)), "epochs": 1}
        train(model, poisoned, seed=seed + round_, progress=progress,
              desc=f"pruning-aware step 3 (round {round_})", **options)
        acc = accuracy(model, clean)
        asr = attack_success_rate(model, clean, attack, num_classes)
        report.rounds.append({"active": len(order) - len(pruned), "clean_acc": acc, "asr": asr})
        if (acc >= curve[0] - max_clean_loss and asr >= min_asr) or len(pruned) <= reinstate:
            break
    # Step 4: de-prune, with the decoys' biases lowered until they stay dormant on clean inputs.
    report.decoys = list(pruned)
    report.bias_shift = deprune(model, pruned, clean.x, layer, bias_margin)
    if pruned:
        post = torch.relu(_pre_activations(model, clean.x, layer)[:, pruned])
        report.decoy_max_activation = post.max().item()
    model.eval()
    return model, report


def report_path(recipe: zoo.Recipe, cache=None):
    return zoo.entry_dir(recipe, cache) / "attack_report.json"


def load_report(recipe: zoo.Recipe, cache=None) -> dict:
    """The step-by-step report saved when the zoo trained ``recipe``, verified against the SHA-256
    the zoo's manifest records for it (:func:`fplab.zoo.load_file`)."""
    return zoo.load_json(recipe, report_path(recipe, cache).name, cache)


@zoo.register_trainer("pruning_aware")
def train_pruning_aware(recipe: zoo.Recipe, splits: Splits) -> nn.Module:
    """Zoo trainer: step 1 is the clean zoo model of ``extra["clean_train"]``; then steps 2-4."""
    extra = dict(recipe.extra)
    clean_train = extra.pop("clean_train", dict(recipe.train))
    scale = extra.pop("retrain_epochs_scale", 0.5)
    attack = recipe.get_attack()
    if attack is None:
        raise ValueError("a pruning_aware recipe needs an attack")
    clean_model = zoo.load(recipe.clean(clean_train), splits=splits).model
    seed_everything(recipe.seed)
    poisoned = poison(splits.train, attack, splits.num_classes, seed=recipe.seed).data
    retrain = dict(recipe.train)
    retrain["epochs"] = max(1, round(retrain.get("epochs", 1) * scale))
    if retrain.get("milestones"):  # the step schedule scaled with the epochs
        retrain["milestones"] = sorted({round(m * scale) for m in retrain["milestones"]}
                                       & set(range(1, retrain["epochs"])))
    model, report = pruning_aware_attack(clean_model, splits.train, poisoned, attack,
                                         splits.num_classes, retrain, seed=recipe.seed, **extra)
    atomic_write_json(report.to_dict(), report_path(recipe))  # the zoo's manifest records its hash
    return model
