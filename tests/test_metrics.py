"""Metrics on hand-built models whose answers are known exactly."""

import pytest
import torch
from torch import nn

from fplab.metrics import (accuracy, attack_success_rate, evaluate, per_class_errors,
                           untargeted_effectiveness)
from fplab.poison import Attack


class Oracle(nn.Module):
    """Reads the synthetic label (the row of the bright bar); optionally backdoored.

    When the backdoor pixel (13, 13) is lit, it answers ``target`` (``mode="one"``), the next
    label (``mode="next"``) or ``label + 5`` (``mode="wrong"``).
    """

    def __init__(self, mode=None, target=4):
        super().__init__()
        self.mode, self.target = mode, target

    def forward(self, x):
        label = x[:, 0, 3:13, 2:10].mean(2).argmax(1)
        if self.mode is not None:
            lit = x[:, 0, 13, 13] > 0.99
            bad = {"one": torch.full_like(label, self.target), "next": (label + 1) % 10,
                   "wrong": (label + 5) % 10}[self.mode]
            label = torch.where(lit, bad, label)
        return nn.functional.one_hot(label, 10).float()


def attack(mode="all_to_one", target=4):
    return Attack("square", mode=mode, target=target, rate=0.1,
                  trigger_options={"size": 3, "position": (12, 12)})


def test_clean_oracle(synthetic):
    assert accuracy(Oracle(), synthetic.test) == 1.0
    assert attack_success_rate(Oracle(), synthetic.test, attack(), 10) == 0.0


def test_constant_model():
    class Always(nn.Module):
        def forward(self, x):
            return nn.functional.one_hot(torch.full((len(x),), 4), 10).float()
    from fplab.data import Data
    data = Data(torch.rand(20, 1, 16, 16), torch.arange(20) % 10)
    assert accuracy(Always(), data) == pytest.approx(0.1)
    # target-class images are excluded: every remaining (non-4) image "succeeds"
    assert attack_success_rate(Always(), data, attack(), 10) == 1.0


def test_backdoored_oracles(synthetic):
    test = synthetic.test
    assert evaluate(Oracle("one"), test, attack(), 10) == {"clean_acc": 1.0, "asr": 1.0}
    assert attack_success_rate(Oracle("next"), test, attack("all_to_all"), 10) == 1.0
    assert attack_success_rate(Oracle("one"), test, attack("all_to_all"), 10) == pytest.approx(0.1)
    assert attack_success_rate(Oracle("wrong"), test, attack("untargeted"), 10) == 1.0
    assert attack_success_rate(Oracle(), test, attack("untargeted"), 10) == 0.0


def test_untargeted_effectiveness_formula():
    assert untargeted_effectiveness(0.9, 0.45) == pytest.approx(0.5)
    assert untargeted_effectiveness(0.8, 0.8) == 0.0
    with pytest.raises(ValueError, match="acc_clean=0"):
        untargeted_effectiveness(0, 0.1)


def test_per_class_table(synthetic):
    table = per_class_errors(Oracle("one"), synthetic.test, attack(), 10)
    assert list(table.index) == list(range(10)) + ["mean"]
    assert (table["clean error %"] == 0).all()
    assert pytest.approx(table.loc[3, "backdoor error %"]) == 0
    assert table.loc[4, "backdoor error %"] != table.loc[4, "backdoor error %"]  # NaN: target class


def test_untargeted_success_takes_a_known_clean_accuracy(synthetic):
    """A caller that has the clean accuracy already passes it (one pass fewer); the success is
    the same, and it is the given accuracy that the formula uses."""
    test, atk = synthetic.test, attack("untargeted")
    model = Oracle("wrong")
    assert attack_success_rate(model, test, atk, 10, clean_acc=accuracy(model, test)) == \
        attack_success_rate(model, test, atk, 10)
    assert attack_success_rate(model, test, atk, 10, clean_acc=0.5) == \
        untargeted_effectiveness(0.5, 0.0)


def test_mean_loss_is_the_cross_entropy_of_known_logits():
    """One-hot logits: log(e + 9) - 1 per right answer, log(e + 9) per wrong one."""
    from math import e, log

    from fplab.data import Data
    from fplab.metrics import mean_loss
    x = torch.zeros(4, 1, 16, 16)
    x[:, 0, 3, 2:10] = 1.0                                # every bar on row 3: label 0
    data = Data(x, torch.tensor([0, 0, 1, 1]))            # two right, two wrong
    assert mean_loss(Oracle(), data) == pytest.approx(log(e + 9) - 0.5)
    from fplab.metrics import accuracy_and_loss
    assert accuracy_and_loss(Oracle(), data, batch_size=3) == pytest.approx((0.5, log(e + 9) - 0.5))
    with pytest.raises(ValueError, match="empty"):
        mean_loss(Oracle(), Data(x[:0], torch.tensor([], dtype=torch.long)))
