"""Fine-pruning (Liu et al. 2018, section 3.3): prune, then fine-tune the pruned network.

Pruning removes the channels dormant on clean data (where a baseline backdoor hides);
fine-tuning on clean data then restores the accuracy pruning cost and updates the remaining
channels, which is where a pruning-aware attacker had to put her backdoor. The pruned channels
stay pruned (their masks are kept during and after fine-tuning).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..data import Data
from .finetune import DEFAULT_EPOCHS, DEFAULT_LR, fine_tune
from .pruning import DEFAULT_MAX_DROP, Pruned, prune_by_activation


@dataclass
class FinePruned:
    model: nn.Module
    pruned: Pruned           # the pruning step (its model is the pruned, not yet fine-tuned copy)

    @property
    def fraction(self) -> float:
        return self.pruned.fraction


def fine_prune(model: nn.Module, val: Data, fraction: float | None = None,
               max_drop: float = DEFAULT_MAX_DROP, epochs: int = DEFAULT_EPOCHS,
               lr: float = DEFAULT_LR, batch_size: int = 32, layer: str | None = None,
               seed: int = 0, progress: bool = True, **options) -> FinePruned:
    """Prune a copy of ``model`` on clean ``val`` (``fraction``, or the stopping rule with
    ``max_drop``), then fine-tune it on ``val`` for ``epochs`` (``options``, e.g. ``cache``, go to
    :func:`~fplab.defenses.finetune.fine_tune`). ``model`` is never modified."""
    pruned = prune_by_activation(model, val, fraction=fraction, layer=layer, max_drop=max_drop)
    tuned = fine_tune(pruned.model, val, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                      progress=progress, **options)
    return FinePruned(tuned, pruned)


def compare_defenses(model: nn.Module, evaluate, val: Data, epochs: int = DEFAULT_EPOCHS,
                     lr: float = DEFAULT_LR, max_drop: float = DEFAULT_MAX_DROP, seed: int = 0,
                     progress: bool = True, cache: bool = False) -> dict:
    """The defender's strategies on one suspect ``model``, with the same fine-tuning budget:
    ``{"none", "prune", "fine-tune", "fine-prune"}`` -> ``evaluate(model)`` (a dict such as
    ``{"clean_acc", "asr"}``), plus ``"pruned fraction"``. ``cache`` keeps the fine-tuned
    weights (:func:`~fplab.defenses.finetune.fine_tune`)."""
    pruned = prune_by_activation(model, val, max_drop=max_drop)
    tuned = fine_tune(model, val, epochs=epochs, lr=lr, seed=seed, progress=progress, cache=cache)
    fp = fine_tune(pruned.model, val, epochs=epochs, lr=lr, seed=seed, progress=progress,
                   cache=cache)
    return {"none": evaluate(model), "prune": evaluate(pruned.model),
            "fine-tune": evaluate(tuned), "fine-prune": evaluate(fp),
            "pruned fraction": pruned.fraction}
