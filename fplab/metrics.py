"""How backdoors are measured (BadNets section 4; Fine-Pruning section 2.3).

- clean accuracy: accuracy on clean test images;
- attack success rate (targeted): the fraction of triggered test images, excluding those whose
  true label already is the target, classified as the attacker's label;
- untargeted effectiveness: ``1 - A_backdoor / A_clean``, where ``A_backdoor`` is the accuracy on
  triggered images: how much of the clean accuracy the trigger destroys;
- defender utility (Fine-Pruning Table 2): clean accuracy - attack success.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from .data import Data
from .poison import Attack, backdoor_labels, eligible
from .train import model_device, predict


def accuracy(model: nn.Module, data: Data) -> float:
    """Fraction of ``data`` classified correctly."""
    return (predict(model, data.x) == data.y).float().mean().item()


@torch.no_grad()
def accuracy_and_loss(model: nn.Module, data: Data, batch_size: int = 500) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``data``, in one pass (eval mode)."""
    if len(data) == 0:
        raise ValueError("data is empty: nothing to score")
    model.eval()
    device, correct, loss = model_device(model), 0, 0.0
    for i in range(0, len(data), batch_size):
        x, y = data.x[i:i + batch_size].to(device), data.y[i:i + batch_size].to(device)
        out = model(x)
        correct += int((out.argmax(1) == y).sum())
        loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
    return correct / len(data), loss / len(data)


def mean_loss(model: nn.Module, data: Data) -> float:
    """Mean cross-entropy of ``model`` on ``data``: on clean validation data, the trainer's own
    measure of whether more training still helps (it never looks at a trigger)."""
    return accuracy_and_loss(model, data)[1]


def untargeted_effectiveness(acc_clean: float, acc_backdoor: float) -> float:
    """``1 - A_backdoor / A_clean`` (Fine-Pruning, section 2.3)."""
    if acc_clean <= 0:
        raise ValueError(f"acc_clean={acc_clean} must be positive")
    return 1.0 - acc_backdoor / acc_clean


def attack_success_rate(model: nn.Module, data: Data, attack: Attack, num_classes: int,
                        clean_acc: float | None = None) -> float:
    """Attack success on ``data`` (test images), measured as the attack's mode defines it.

    ``clean_acc``: the model's accuracy on ``data`` when the caller has it already (an
    untargeted attack's success is relative to it; otherwise it is computed here)."""
    trig = attack.make_trigger(tuple(data.x.shape[1:]))
    if attack.mode == "untargeted":
        acc_clean = accuracy(model, data) if clean_acc is None else clean_acc
        acc_bd = (predict(model, trig.apply(data.x)) == data.y).float().mean().item()
        return untargeted_effectiveness(acc_clean, acc_bd)
    mode = "all_to_one" if attack.mode == "clean_label" else attack.mode
    keep = eligible(data.y, mode, attack.target, attack.source)
    if not keep.any():
        raise ValueError("no test image is eligible for this attack (check target / source)")
    x, y = data.x[keep], data.y[keep]
    wanted = backdoor_labels(y, mode, attack.target, num_classes)
    return (predict(model, trig.apply(x)) == wanted).float().mean().item()


def evaluate(model: nn.Module, data: Data, attack: Attack | None, num_classes: int) -> dict:
    """``{"clean_acc": ..., "asr": ...}`` (``asr`` is ``None`` without an attack)."""
    clean_acc = accuracy(model, data)
    asr = attack_success_rate(model, data, attack, num_classes, clean_acc) if attack else None
    return {"clean_acc": clean_acc, "asr": asr}


def per_class_errors(model: nn.Module, data: Data, attack: Attack, num_classes: int) -> pd.DataFrame:
    """Per true class: clean error, and backdoor error (triggered image not given the attacker's label).

    This is the layout of the BadNets MNIST table (errors in %, one row per class).
    """
    trig = attack.make_trigger(tuple(data.x.shape[1:]))
    clean_pred = predict(model, data.x)
    bd_pred = predict(model, trig.apply(data.x))
    wanted = backdoor_labels(data.y, attack.mode, attack.target, num_classes)
    rows = []
    for c in range(num_classes):
        mine = data.y == c
        row = {"class": c, "clean error %": 100 * (clean_pred[mine] != c).float().mean().item()}
        if attack.mode != "all_to_one" or c != attack.target:
            row["backdoor error %"] = 100 * (bd_pred[mine] != wanted[mine]).float().mean().item()
        rows.append(row)
    table = pd.DataFrame(rows).set_index("class")
    table.loc["mean"] = table.mean()
    return table
