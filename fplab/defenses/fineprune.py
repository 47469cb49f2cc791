"""Fine-pruning (Liu et al. 2018, section 3.3): prune, then fine-tune the pruned network.

Pruning removes the channels dormant on clean data (where a baseline backdoor hides);
fine-tuning on clean data then restores the accuracy pruning cost and updates the remaining
channels, which is where a pruning-aware attacker had to put her backdoor. The pruned channels
stay pruned (their masks are kept during and after fine-tuning).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..data import as_data
from .finetune import DEFAULT_EPOCHS, DEFAULT_LR, fine_tune, select_budget
from .pruning import DEFAULT_MAX_DROP, Pruned, prune_by_activation


@dataclass
class FinePruned:
    model: nn.Module
    pruned: Pruned           # the pruning step (its model is the pruned, not yet fine-tuned copy)

    @property
    def fraction(self) -> float:
        return self.pruned.fraction


def fine_prune(model: nn.Module, val, fraction: float | None = None,
               max_drop: float = DEFAULT_MAX_DROP, epochs: int = DEFAULT_EPOCHS,
               lr: float = DEFAULT_LR, batch_size: int = 32, layer: str | None = None,
               seed: int = 0, progress: bool = True, **options) -> FinePruned:
    """Prune a copy of ``model`` on clean ``val`` (``fraction``, or the stopping rule with
    ``max_drop``), then fine-tune it on ``val`` for ``epochs`` (``options``, e.g. ``cache``, go to
    :func:`~fplab.defenses.finetune.fine_tune`, ``cache`` also to :func:`prune_by_activation`).
    ``model`` is never modified; ``val`` is any input
    :func:`fplab.data.as_data` accepts (read once)."""
    val = as_data(val, "val", purpose="fine-pruning needs the defender's clean images")
    pruned = prune_by_activation(model, val, fraction=fraction, layer=layer, max_drop=max_drop,
                                 cache=options.get("cache", False))
    tuned = fine_tune(pruned.model, val, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                      progress=progress, **options)
    return FinePruned(tuned, pruned)


def compare_defenses(model: nn.Module, evaluate, val, epochs: int = DEFAULT_EPOCHS,
                     lr: float = DEFAULT_LR, max_drop: float = DEFAULT_MAX_DROP, seed: int = 0,
                     progress: bool = True, cache: bool = False,
                     select: dict | None = None) -> dict:
    """The defender's strategies on one suspect ``model``, with the same fine-tuning budget:
    ``{"none", "prune", "fine-tune", "fine-prune"}`` -> ``evaluate(model)`` (a dict such as
    ``{"clean_acc", "asr"}``), plus ``"pruned fraction"``. ``cache`` keeps the pruning step's
    ranking and the fine-tuned weights (:func:`~fplab.defenses.pruning.prune_by_activation`,
    :func:`~fplab.defenses.finetune.fine_tune`).

    ``select`` (a dict of :func:`~fplab.defenses.finetune.select_budget` arguments, ``{}`` for
    its defaults) replaces ``epochs`` and ``lr``: each of fine-tuning and fine-pruning gets the
    setting that scores best on held-out clean validation data, from the same grid; the choices
    are returned under ``"budget"`` (defense -> :class:`~fplab.defenses.finetune.Budget`).
    """
    val = as_data(val, "val", purpose="the defenses need the defender's clean images")
    pruned = prune_by_activation(model, val, max_drop=max_drop, cache=cache)
    budgets = {}
    if select is not None:
        for name, start in (("fine-tune", model), ("fine-prune", pruned.model)):
            budgets[name] = select_budget(start, val, seed=seed,
                                          **{"cache": cache, **select})
    ft = budgets.get("fine-tune")
    fpb = budgets.get("fine-prune")
    tuned = fine_tune(model, val, epochs=ft.epochs if ft else epochs, lr=ft.lr if ft else lr,
                      seed=seed, progress=progress, cache=cache)
    fp = fine_tune(pruned.model, val, epochs=fpb.epochs if fpb else epochs,
                   lr=fpb.lr if fpb else lr, seed=seed, progress=progress, cache=cache)
    out = {"none": evaluate(model), "prune": evaluate(pruned.model),
           "fine-tune": evaluate(tuned), "fine-prune": evaluate(fp),
           "pruned fraction": pruned.fraction}
    if budgets:
        out["budget"] = budgets
    return out
