"""The transfer-learning attack (BadNets, section 5.3) and "backdoor neurons".

A user downloads a backdoored network trained on one task and adapts it to a new task by
retraining only its fully connected layers (the convolutional features stay frozen). The
backdoor was not retrained away: the conv channels that fire on the trigger ("backdoor neurons")
still fire, and the new classifier, never having seen them fire, misclassifies triggered inputs
of the new task. Scaling the backdoor neurons' outputs by a *strength* ``k`` makes the effect
stronger (BadNets' table of k = 1 ... 100).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..activations import mean_activations
from ..data import Data
from ..errors import check_choice
from ..models import channel_layer, copy_model, last_conv_layer
from ..train import seed_everything, train


def backdoor_neurons(model: nn.Module, clean: Tensor, triggered: Tensor, count: int = 3) -> Tensor:
    """The ``count`` last-conv channels whose mean activation rises most when the trigger is added."""
    gap = mean_activations(model, triggered) - mean_activations(model, clean)
    return gap.argsort(descending=True)[:count]


@torch.no_grad()
def strengthen(model: nn.Module, channels: Tensor, k: float, conv: str | None = None) -> nn.Module:
    """A copy of ``model`` whose ``channels`` of conv layer ``conv`` output ``k`` times as much.

    The channel's scale and shift are multiplied by ``k`` (BatchNorm weight and bias when the
    conv is followed by BatchNorm, else the conv's filters and bias), so its pre-ReLU output is
    multiplied by ``k``.
    """
    if k < 0:
        raise ValueError(f"k={k} must be >= 0")
    out = copy_model(model)
    layer = dict(out.named_modules())[channel_layer(out, conv or last_conv_layer(out))]
    layer.weight[channels] *= k
    if layer.bias is not None:
        layer.bias[channels] *= k
    return out


def transfer(model: nn.Module, new_task_train: Data, num_classes: int, epochs: int = 15,
             lr: float = 2e-3, batch_size: int = 256, seed: int = 0, retrain: str = "classifier",
             progress: bool = True) -> nn.Module:
    """A copy of ``model`` adapted to a new task by retraining only its last layers.

    ``retrain="classifier"`` retrains every fully connected layer (a fresh output layer with
    ``num_classes`` outputs, the hidden ones from their downloaded weights) on frozen conv
    features, as in BadNets; ``retrain="last"`` retrains only the new output layer.
    """
    check_choice("retrain", retrain, ("classifier", "last"))
    seed_everything(seed)
    out = copy_model(model)
    old = out.classifier[-1]
    out.classifier[-1] = nn.Linear(old.in_features, num_classes)
    out.requires_grad_(False)
    trainable = out.classifier if retrain == "classifier" else out.classifier[-1]
    trainable.requires_grad_(True)
    # The frozen features are computed once; the head trains on them (same result, much faster).
    with torch.no_grad():
        out.eval()
        feats = torch.cat([out.features(new_task_train.x[i:i + 1000])
                           for i in range(0, len(new_task_train), 1000)])
    head = out.classifier
    train(head, Data(feats, new_task_train.y), epochs=epochs, lr=lr, batch_size=batch_size,
          seed=seed, params=[p for p in head.parameters() if p.requires_grad],
          desc="retraining the last layers", progress=progress)
    out.eval()
    return out

