"""Label-consistent (clean-label) backdoor, CLB (Turner, Tsipras and Madry, 2019).

A clean-label attack only adds its trigger to images that already belong to the target class and
keeps their (correct) labels, so a human inspecting the data sees nothing wrong. Plain clean-label
poisoning is weak: the network classifies those images by their real content and has little
reason to learn the trigger. CLB first makes them *hard*: an adversarial perturbation (PGD in an
L_inf ball, computed on a clean model the attacker trained) destroys the natural features, so the
trigger becomes the easiest feature that explains the label. Then the trigger is pasted on.

    x_poison = T(x + delta*),   delta* = argmax_{||delta||_inf <= eps} L(f_clean(x + delta), y_target)
"""

from __future__ import annotations

from torch import nn

from ..data import Data
from ..poison import Attack, Poisoned, poison
from .adversarial import pgd


def clb_poison(data: Data, attack: Attack, num_classes: int, clean_model: nn.Module,
               eps: float, steps: int = 10, seed: int = 0) -> Poisoned:
    """Poison ``round(attack.rate * len(data))`` target-class images the CLB way (a new copy).

    The images are the ones :func:`fplab.poison.poison` picks for the clean-label ``attack``
    (same ``seed``); each is perturbed with PGD (``eps``, ``steps``) against ``clean_model`` and
    then gets the trigger. Labels are unchanged.
    """
    if attack.mode != "clean_label":
        raise ValueError(f"CLB is a clean-label attack: attack.mode={attack.mode!r} must be "
                         "'clean_label'")
    base = poison(data, attack, num_classes, seed=seed)
    x = base.data.x.clone()
    if len(base.index):
        hard = pgd(clean_model, data.x[base.index], data.y[base.index], eps, steps, seed=seed)
        x[base.index] = attack.make_trigger(tuple(data.x.shape[1:])).apply(hard)
    return Poisoned(Data(x, base.data.y), base.index)
