"""BadNets (Gu, Dolan-Gavitt and Garg, 2017): the chapter-1 experiments as model-zoo recipes.

- MNIST (section 4): a clean baseline, an all-to-one BadNet (pattern -> ``MNIST_TARGET``) and an
  all-to-all BadNet (digit i -> i+1), plus all-to-one BadNets over a range of poison rates
  ("attack strength vs fraction of poisoned data").
- Traffic signs (section 5): stop -> speed-limit BadNets with the yellow square, bomb and flower
  triggers, trained on the "home" task (GTSRB classes 0-32); classes 33-42 are held out as the
  *new* task of the transfer-learning attack (:mod:`fplab.attacks.transfer`).

Hyper-parameters per profile: the fast profile is sized to train every chapter-1 model in about
two minutes on a 2-core CPU; the full profile uses whole datasets and more epochs (GPU).
"""

from __future__ import annotations

from ..errors import check_choice
from ..poison import Attack
from ..zoo import Recipe

MNIST_TARGET = 7
HOME_CLASSES = list(range(33))       # GTSRB classes of the "home" (US-like) task
NEW_CLASSES = list(range(33, 43))    # held out: the transfer-learning task (Swedish-like)
STOP, SPEED_LIMIT = 14, 2            # GTSRB "stop" and "speed limit 50"
TRAFFIC_TRIGGERS = ("yellow_square", "bomb", "flower")

_TRAIN = {
    "fast": {"mnist": {"epochs": 3, "lr": 1e-3, "batch_size": 64},
             "mnist_sweep": {"epochs": 3, "lr": 1e-3, "batch_size": 64},
             "gtsrb": {"epochs": 4, "lr": 2e-3, "batch_size": 64}},
    "full": {"mnist": {"epochs": 10, "lr": 1e-3, "batch_size": 64},
             "mnist_sweep": {"epochs": 10, "lr": 1e-3, "batch_size": 64},
             "gtsrb": {"epochs": 30, "lr": 1e-3, "batch_size": 64}},
}
_SWEEP_SIZES = {"fast": {"train": 10000}, "full": None}


def mnist_attack(mode: str = "all_to_one", rate: float = 0.1) -> Attack:
    """BadNets' MNIST "pattern" backdoor: a 4x4 checkerboard in the bottom-right corner."""
    return Attack("checkerboard", mode=mode, target=MNIST_TARGET, rate=rate,
                  trigger_options={"size": 4, "position": "bottom-right"})


def traffic_attack(trigger: str, rate: float = 0.02) -> Attack:
    """Stop signs carrying ``trigger`` (a 5x5 sticker on the lower half of the sign) -> speed limit.

    ``rate`` is the fraction of the whole training set; only stop signs are poisoned (the
    source class), so 0.02 poisons about two thirds of them.
    """
    check_choice("trigger", trigger, TRAFFIC_TRIGGERS)
    return Attack(trigger, mode="all_to_one", target=SPEED_LIMIT, rate=rate, source=STOP,
                  trigger_options={"size": 5, "position": (20, 13)})


def mnist_recipe(attack: Attack | None, profile: str = "fast", seed: int = 0,
                 sweep: bool = False) -> Recipe:
    """An MNIST BadNets-baseline network, clean (``attack=None``) or poisoned."""
    check_choice("profile", profile, tuple(_TRAIN))
    return Recipe("mnist", "mnist_cnn", attack.spec() if attack else None,
                  train=_TRAIN[profile]["mnist_sweep" if sweep else "mnist"], seed=seed,
                  profile=profile, sizes=_SWEEP_SIZES[profile] if sweep else None)


def traffic_recipe(trigger: str | None, profile: str = "fast", seed: int = 0) -> Recipe:
    """A traffic-sign network on the home task, clean (``trigger=None``) or a stop -> speed BadNet."""
    check_choice("profile", profile, tuple(_TRAIN))
    attack = traffic_attack(trigger) if trigger else None
    return Recipe("gtsrb", "traffic_cnn_bn", attack.spec() if attack else None,
                  train=_TRAIN[profile]["gtsrb"], seed=seed, profile=profile,
                  classes=HOME_CLASSES)


def success_by_position(model, data, attack: Attack, num_classes: int, step: int = 4):
    """Attack success with the trigger moved over a grid of positions (``step`` pixels apart,
    laid so that the position the trigger was trained at is on it).

    Returns ``(rows, cols, table)``: the top / left coordinates tried and the success rate at
    each. A BadNet learns its trigger *where it was placed*: moved far away, it stops working.
    """
    from dataclasses import replace

    import torch

    from ..metrics import attack_success_rate
    from ..triggers import Patch

    trained = attack.make_trigger(tuple(data.x.shape[1:]))
    if not isinstance(trained, Patch):
        raise ValueError(f"trigger={attack.trigger!r} is not a patch: it has no position to move")
    (h, w), (H, W) = trained.mask.shape, data.x.shape[2:]
    rows = list(range(trained.top % step, H - h + 1, step))
    cols = list(range(trained.left % step, W - w + 1, step))
    table = torch.zeros(len(rows), len(cols))
    for i, top in enumerate(rows):
        for j, left in enumerate(cols):
            moved = replace(attack, trigger_options={**attack.trigger_options,
                                                     "position": (top, left)})
            table[i, j] = attack_success_rate(model, data, moved, num_classes)
    return rows, cols, table
