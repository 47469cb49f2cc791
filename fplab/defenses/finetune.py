"""Fine-tuning defense (Liu et al. 2018, section 3.3): retrain a copy on the defender's clean data.

Starting from the suspect weights, a few epochs of training on clean validation images with a
small learning rate. It restores clean behaviour cheaply, but a backdoor that lives in channels
dormant on clean data gets no gradient (``ReLU'(z) = 0`` there) and can survive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..data import as_data
from ..metrics import accuracy_and_loss
from ..models import copy_model
from ..paths import cache_dir
from ..store import fingerprint, load_result, save_result
from ..train import model_device, train
from .pruning import channel_masks

#: The defender's fine-tuning budget (the same for fine-tuning and fine-pruning).
DEFAULT_EPOCHS = 5
DEFAULT_LR = 1e-4
#: The grid :func:`select_budget` searches: Adam learning rates, and epochs 1..max.
DEFAULT_LRS = (1e-4, 1e-3)
DEFAULT_MAX_EPOCHS = 10


def fine_tune(model: nn.Module, data, epochs: int = DEFAULT_EPOCHS, lr: float = DEFAULT_LR,
              batch_size: int = 32, seed: int = 0, progress: bool = True, cache: bool = False,
              **options) -> nn.Module:
    """A fine-tuned *copy* of ``model`` (``model`` is never modified); masks on it are kept.

    ``data``: the defender's clean images, in any form :func:`fplab.data.as_data` accepts.

    ``options`` go to :func:`fplab.train.train` (``optimizer``, ``weight_decay``, ...).
    ``cache=True`` stores the fine-tuned weights under ``$FPLAB_CACHE/finetune``, keyed by a hash
    of the weights, the channel masks, the data and every argument, and reuses them (verified).
    """
    data = as_data(data, "data", purpose="fine-tuning needs the defender's clean images")
    out = copy_model(model)
    args = dict(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, **options)
    if cache:
        folder = cache_dir() / "finetune"
        key = fingerprint(model.state_dict(), channel_masks(model), data.x, data.y, args,
                          device=model_device(model))
        hit = load_result(folder, key)
        if hit is not None:
            out.load_state_dict(hit[0])
            return out.eval()
    train(out, data, progress=progress, desc="fine-tuning", **args)
    out.eval()
    if cache:
        save_result(folder, key, out.state_dict(), {"arguments": args})
    return out


@dataclass
class Budget:
    """The fine-tuning setting chosen on the defender's clean data (:func:`select_budget`).

    ``scores`` maps ``(lr, epochs)`` to ``(held-out clean accuracy, held-out mean loss)``.
    """
    lr: float
    epochs: int
    scores: dict = field(default_factory=dict)

    @property
    def held_out_accuracy(self) -> float:
        return self.scores[self.lr, self.epochs][0]


def split_for_selection(data: Data, held_out: float = 0.25, seed: int = 0) -> tuple[Data, Data]:
    """``data`` split at random (fixed by ``seed``) into a fitting part and a held-out part."""
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out={held_out} must be in (0, 1)")
    n_out = max(1, round(held_out * len(data)))
    if len(data) - n_out < 1:
        raise ValueError(f"data has {len(data)} items: too few to hold {held_out:.0%} out")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return data.subset(order[n_out:]), data.subset(order[:n_out])


def select_budget(model: nn.Module, data: Data, lrs=DEFAULT_LRS,
                  max_epochs: int = DEFAULT_MAX_EPOCHS, held_out: float = 0.25,
                  batch_size: int = 32, seed: int = 0, progress: bool = False,
                  cache: bool = False, **options) -> Budget:
    """Choose the fine-tuning learning rate and epochs on the defender's clean ``data`` only.

    ``data`` is split (:func:`split_for_selection`); for every learning rate in ``lrs`` a copy of
    ``model`` is fine-tuned on the fitting part for ``max_epochs``, scoring the held-out part
    after every epoch. The setting with the highest held-out clean accuracy wins (ties: lower
    held-out loss, then fewer epochs, then the smaller rate). Nothing here looks at triggered
    inputs or attack success: a defender does not have them. ``model`` is never modified; masks
    on it are kept, so a pruned model is tuned with its channels still pruned.
    ``cache=True`` keeps the scores under ``$FPLAB_CACHE/finetune-select`` (hash-keyed).
    """
    if max_epochs < 1 or not lrs:
        raise ValueError(f"max_epochs={max_epochs} must be >= 1 and lrs={lrs} not empty")
    fit, out = split_for_selection(data, held_out, seed)
    args = dict(lrs=[float(lr) for lr in lrs], max_epochs=max_epochs, held_out=held_out,
                batch_size=batch_size, seed=seed, **options)
    scores = {}
    if cache:
        folder = cache_dir() / "finetune-select"
        key = fingerprint(model.state_dict(), channel_masks(model), data.x, data.y, args)
        hit = load_result(folder, key)
        if hit is not None:
            scores = {(lr, int(e)): (acc, loss) for lr, e, acc, loss in hit[0]}
            return _choose(scores)
    for lr in lrs:
        candidate = copy_model(model)

        def record(epoch, lr=lr, candidate=candidate):
            scores[lr, epoch] = accuracy_and_loss(candidate, out)

        train(candidate, fit, epochs=max_epochs, lr=lr, batch_size=batch_size, seed=seed,
              progress=progress, desc=f"selecting (lr={lr:g})", on_epoch=record, **options)
    if cache:
        save_result(folder, key, [[lr, e, acc, loss] for (lr, e), (acc, loss) in scores.items()],
                    {"arguments": args})
    return _choose(scores)


def _choose(scores: dict) -> Budget:
    """The best setting: highest held-out accuracy, then lower loss, fewer epochs, smaller rate."""
    lr, epochs = min(scores, key=lambda k: (-scores[k][0], scores[k][1], k[1], k[0]))
    return Budget(lr, epochs, scores)
