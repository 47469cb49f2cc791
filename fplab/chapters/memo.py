"""Measurements the chapters repeat, cached.

A chapter measures the same model on the same images again on every re-run, and several
chapters measure the same models (the case studies' networks in chapters 2-4, chapter 5's
backdoored networks in its tables). :func:`measured` stores each measurement under
``$FPLAB_CACHE/evaluations``, keyed by a hash of what it measures (the model's architecture,
weights and channel masks, every tensor and argument, the compute context: :func:`fplab.store.fingerprint`),
and reads it back, verified, instead of computing it again; any change of input is another key.
"""

from __future__ import annotations

from ..defenses.pruning import model_key
from ..metrics import evaluate as _evaluate
from ..paths import cache_dir
from ..store import fingerprint, memoized
from ..train import model_device

#: Part of every key: bump it when a measurement's code changes.
VERSION = 1


def measured(tag: str, model, parts, compute):
    """``compute()`` (numbers, lists, dicts, tensors), cached by ``tag``, ``model`` and ``parts``
    (tensors and JSON-able values)."""
    key = fingerprint(tag, VERSION, *model_key(model), *parts, device=model_device(model))
    return memoized(cache_dir() / "evaluations", key, compute, {"what": tag})


def evaluate(model, data, attack, num_classes: int) -> dict:
    """:func:`fplab.metrics.evaluate` (``{"clean_acc", "asr"}``), cached."""
    return measured("evaluate", model, (data.x, data.y, attack.spec() if attack else None,
                                        num_classes),
                    lambda: _evaluate(model, data, attack, num_classes))
