"""Training-set poisoning (BadNets, Gu et al. 2017, section 3).

The attacker adds the trigger to an exact fraction ``rate`` of the training images and relabels
them according to the attack ``mode``:

===============  ======================================================================
``all_to_one``   targeted: every triggered image -> ``target`` (optionally only images
                 of one ``source`` class, e.g. "Mark Wahlberg with sunglasses -> A. J. Cook")
``all_to_all``   digit ``i`` -> ``(i + 1) mod K``
``untargeted``   any wrong label: each poisoned image gets a random label other than its own
``clean_label``  images of ``target`` get the trigger and keep their (correct) label (SIG, CLB)
===============  ======================================================================

The clean dataset is never modified: :func:`poison` returns new tensors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from .data import Data
from .errors import check_choice, check_range
from .triggers import Trigger, make_trigger

MODES = ("all_to_one", "all_to_all", "untargeted", "clean_label")


@dataclass(frozen=True)
class Attack:
    """What a backdoor attacker chooses: trigger (by name and options), mode, target, rate."""

    trigger: str
    mode: str = "all_to_one"
    target: int = 0
    rate: float = 0.1
    source: int | None = None
    trigger_options: dict = field(default_factory=dict)

    def __post_init__(self):
        check_choice("mode", self.mode, MODES)
        check_range("rate", self.rate, 0.0, 1.0)

    def make_trigger(self, shape) -> Trigger:
        return make_trigger(self.trigger, shape, **self.trigger_options)

    def spec(self) -> dict:
        """A JSON-able description (used in model-zoo recipes)."""
        return asdict(self)


@dataclass
class Poisoned:
    """A poisoned training set and the indices of the poisoned items in it."""

    data: Data
    index: Tensor


def _check_label(param: str, value: int | None, num_classes: int) -> None:
    if value is not None and not (0 <= int(value) < num_classes):
        raise ValueError(f"{param}={value!r} is out of range; allowed: 0 to {num_classes - 1}")


def backdoor_labels(y: Tensor, mode: str, target: int, num_classes: int) -> Tensor:
    """The label the attacker wants for triggered inputs of true label ``y``.

    For ``untargeted`` there is no single wanted label; ``y`` is returned (success is any
    other prediction).
    """
    check_choice("mode", mode, MODES)
    _check_label("target", target, num_classes)
    if mode in ("all_to_one", "clean_label"):
        return torch.full_like(y, target)
    if mode == "all_to_all":
        return (y + 1) % num_classes
    return y.clone()


def eligible(y: Tensor, mode: str, target: int, source: int | None = None) -> Tensor:
    """Boolean mask of the items an attack of ``mode`` can poison (or is measured on).

    all-to-one: images not already of ``target`` (of ``source`` only, when given);
    clean-label: images of ``target``; otherwise every image.
    """
    if mode == "all_to_one":
        mask = y != target
        return mask & (y == source) if source is not None else mask
    if mode == "clean_label":
        return y == target
    return torch.ones_like(y, dtype=torch.bool)


def poison(data: Data, attack: Attack, num_classes: int, seed: int = 0) -> Poisoned:
    """Poison exactly ``round(attack.rate * len(data))`` items of ``data`` (a new copy).

    The poisoned items are drawn at random (``seed``) among the :func:`eligible` ones.
    """
    _check_label("target", attack.target, num_classes)
    _check_label("source", attack.source, num_classes)
    if attack.source is not None and attack.source == attack.target:
        raise ValueError(f"source={attack.source} must differ from target={attack.target}")
    gen = torch.Generator().manual_seed(seed)
    candidates = eligible(data.y, attack.mode, attack.target, attack.source).nonzero().flatten()
    count = round(attack.rate * len(data))
    if count > len(candidates):
        raise ValueError(f"rate={attack.rate} asks for {count} poisoned items but only "
                         f"{len(candidates)} are eligible for mode={attack.mode!r}")
    index = candidates[torch.randperm(len(candidates), generator=gen)[:count]].sort().values
    x, y = data.x.clone(), data.y.clone()
    if count:
        x[index] = attack.make_trigger(tuple(data.x.shape[1:])).apply(data.x[index])
        if attack.mode == "untargeted":
            shift = torch.randint(1, num_classes, (count,), generator=gen)
            y[index] = (y[index] + shift) % num_classes
        else:
            y[index] = backdoor_labels(y[index], attack.mode, attack.target, num_classes)
    return Poisoned(Data(x, y), index)
