"""The ANP paper's benchmark (Wu and Wang, 2021, Table 1) as model-zoo recipes and one table.

Attacks (all target class 0, 5% of the training set poisoned, as in the paper):

============  ==========================================================================
``BadNets``   a white square patch in the bottom-right corner, all-to-one (Gu et al., 2017)
``Blend``     a fixed random pattern blended in at alpha = 0.2, all-to-one (Chen et al., 2017)
``SIG``       a horizontal sinusoid added to target-class images only, clean label
              (Barni et al., 2019)
``CLB``       target-class images made hard by PGD on a clean model, then a checkerboard
              patch, clean label (Turner et al., 2019; :mod:`fplab.attacks.clb`)
``WaNet``     a fixed smooth warping field (control grid 4, strength 0.5), all-to-one
              (Nguyen and Tran, 2021; without its "noise mode" training)
============  ==========================================================================

WaNet stands in for the paper's fifth attack, IAB (an input-aware dynamic trigger), which is
not reproduced: both are invisible, input-dependent triggers that patch-based defenses miss.

Defenses: none; fine-tuning on the defender's clean images at two learning rates; fine-pruning
(:mod:`fplab.defenses.fineprune`, chapter 4); ANP (:mod:`fplab.defenses.anp`). Profiles: ``full``
is the paper's setting (CIFAR-10, PreAct-ResNet-18); ``fast`` is MNIST (10,000 training images)
with the BadNets CNN plus BatchNorm, which trains in seconds on a CPU.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from .data import Data, Splits
from .errors import check_choice
from .metrics import evaluate
from .poison import Attack
from .train import seed_everything
from .zoo import Recipe, fit, load, register_trainer

TARGET = 0
RATE = 0.05
ATTACKS = ("BadNets", "Blend", "SIG", "CLB", "WaNet")
#: Not in the paper: BadNets with the patch in the image centre (an ablation of the notebook).
EXTRA_ATTACKS = ("BadNets-centre",)

SETTINGS = {
    "fast": {"dataset": "mnist", "model": "mnist_cnn_bn", "sizes": {"train": 10000},
             "train": {"epochs": 2, "lr": 1e-3, "batch_size": 64},
             "patch": 4, "sig_amplitude": 0.2, "clb_eps": 0.3, "warp_strength": 0.5, "warp_grid": 4},
    "full": {"dataset": "cifar10", "model": "preact_resnet18", "sizes": None,
             "train": {"epochs": 60, "lr": 0.01, "batch_size": 128, "optimizer": "sgd",
                       "momentum": 0.9, "weight_decay": 5e-4, "shift": 4},
             "patch": 3, "sig_amplitude": 20 / 255, "clb_eps": 16 / 255, "warp_strength": 0.5,
             "warp_grid": 4},
}

#: The paper's Table 1 (CIFAR-10, ResNet-18): ACC / ASR in % after each defense.
PAPER_TABLE = pd.DataFrame(
    [("BadNets", 93.73, 99.97, 90.48, 11.70, 87.23, 2.95, 92.18, 5.34, 90.20, 0.45),
     ("Blend", 94.82, 100.0, 92.12, 47.17, 88.98, 10.20, 92.40, 65.39, 93.44, 0.46),
     ("IAB-one", 93.89, 98.49, 88.68, 0.99, 84.85, 1.70, 91.57, 20.73, 92.62, 0.88),
     ("CLB", 93.78, 99.94, 91.26, 12.51, 88.25, 1.17, 91.91, 3.40, 92.67, 3.98),
     ("SIG", 93.64, 94.26, 91.19, 0.40, 88.63, 0.39, 91.64, 0.32, 93.40, 0.28)],
    columns=["attack", "none ACC", "none ASR", "FT lr=0.01 ACC", "FT lr=0.01 ASR",
             "FT lr=0.02 ACC", "FT lr=0.02 ASR", "FP ACC", "FP ASR", "ANP ACC", "ANP ASR"],
).set_index("attack")


def attack(name: str, profile: str = "fast", rate: float = RATE) -> Attack:
    """The benchmark's attack ``name`` (see :data:`ATTACKS`, :data:`EXTRA_ATTACKS`) for ``profile``."""
    check_choice("attack", name, ATTACKS + EXTRA_ATTACKS)
    check_choice("profile", profile, tuple(SETTINGS))
    s = SETTINGS[profile]
    patch = {"size": s["patch"], "position": "bottom-right"}
    if name == "BadNets":
        return Attack("square", "all_to_one", TARGET, rate, trigger_options=patch)
    if name == "BadNets-centre":
        return Attack("square", "all_to_one", TARGET, rate,
                      trigger_options={**patch, "position": "center"})
    if name == "Blend":
        return Attack("blend", "all_to_one", TARGET, rate, trigger_options={"alpha": 0.2})
    if name == "SIG":
        return Attack("sig", "clean_label", TARGET, rate,
                      trigger_options={"amplitude": s["sig_amplitude"], "frequency": 6})
    if name == "WaNet":
        return Attack("warp", "all_to_one", TARGET, rate,
                      trigger_options={"strength": s["warp_strength"], "grid": s["warp_grid"]})
    return Attack("checkerboard", "clean_label", TARGET, rate, trigger_options=patch)


def recipe(name: str | None, profile: str = "fast", seed: int = 0, rate: float = RATE) -> Recipe:
    """The zoo recipe of the model trained under attack ``name`` (``None``: the clean model)."""
    check_choice("profile", profile, tuple(SETTINGS))
    s = SETTINGS[profile]
    base = dict(dataset=s["dataset"], model=s["model"], train=s["train"], seed=seed,
                profile=profile, sizes=s["sizes"])
    if name is None:
        return Recipe(**base)
    spec = attack(name, profile, rate).spec()
    if name == "CLB":
        return Recipe(**base, attack=spec, kind="clb",
                      extra={"pgd_eps": s["clb_eps"], "pgd_steps": 10})
    return Recipe(**base, attack=spec)


@register_trainer("clb")
def train_clb(recipe: Recipe, splits: Splits) -> nn.Module:
    """CLB: PGD-harden the poisoned target-class images on the clean model of the same recipe
    (from the zoo), add the trigger, train from scratch."""
    from .attacks.clb import clb_poison
    clean = load(recipe.clean(), splits=splits).model
    seed_everything(recipe.seed)
    data = clb_poison(splits.train, recipe.get_attack(), splits.num_classes, clean,
                      recipe.extra["pgd_eps"], recipe.extra["pgd_steps"], seed=recipe.seed).data
    return fit(recipe, splits, data, "CLB")


# ----------------------------------------------------------------------------- defenses

def fine_tune(model: nn.Module, clean: Data, lr: float, epochs: int = 10, seed: int = 0) -> nn.Module:
    """The paper's fine-tuning baseline: chapter 4's :func:`~fplab.defenses.finetune.fine_tune`
    (a copy, trained on the clean images) with SGD (momentum 0.9) at learning rate ``lr``."""
    from .defenses.finetune import fine_tune as ft
    return ft(model, clean, epochs=epochs, lr=lr, optimizer="sgd", seed=seed, progress=False)


def run_defenses(model: nn.Module, splits: Splits, atk: Attack, clean: Data, anp: dict,
                 fp: dict | None = None, ft_epochs: int = 10, seed: int = 0) -> dict:
    """Clean accuracy / ASR (in %) of ``model`` before and after each defense.

    ``clean`` is the defender's clean data (the same images for every defense); ``anp`` holds
    the arguments of :func:`fplab.defenses.anp.anp_masks` plus ``threshold``; ``fp`` those of
    chapter 4's :func:`~fplab.defenses.fineprune.fine_prune` (``None`` skips it).
    """
    from .defenses.anp import anp_masks, prune_by_threshold
    K = splits.num_classes

    def score(m):
        r = evaluate(m, splits.test, atk, K)
        return 100 * r["clean_acc"], 100 * r["asr"]

    out = {"none": score(model)}
    for lr in (0.01, 0.02):
        out[f"FT lr={lr}"] = score(fine_tune(model, clean, lr, ft_epochs, seed))
    if fp is not None:
        from .defenses.fineprune import fine_prune
        out["FP"] = score(fine_prune(model, clean, seed=seed, progress=False, **fp).model)
    args = dict(anp)
    threshold = args.pop("threshold", 0.2)
    masks = anp_masks(model, clean, n_clean=len(clean), seed=seed, cache=True, progress=False, **args)
    out["ANP"] = score(prune_by_threshold(model, masks, threshold).model)
    return out


def benchmark_table(results: dict[str, dict]) -> pd.DataFrame:
    """``{attack: run_defenses(...)}`` -> one row per attack, ``<defense> ACC`` / ``ASR`` columns,
    plus a row of average drops (ACC and ASR, relative to no defense)."""
    rows = {}
    for name, res in results.items():
        rows[name] = {f"{d} {k}": v for d, (acc, asr) in res.items()
                      for k, v in (("ACC", acc), ("ASR", asr))}
    table = pd.DataFrame(rows).T
    drop = {}
    for col in table.columns:
        base = table["none ACC" if col.endswith("ACC") else "none ASR"]
        drop[col] = (base - table[col]).mean() if not col.startswith("none") else float("nan")
    table.loc["avg drop"] = pd.Series(drop)
    return table


# ----------------------------------------------------------------------------- notebook helpers

def neuron_sensitivity(models: dict[str, nn.Module], clean: Data, eps_values, target: int = TARGET,
                       steps: int = 10, seed: int = 0) -> pd.DataFrame:
    """Adversarial neuron perturbation alone (no trigger) on each model, over ``eps_values``:
    error rate and share of images predicted as ``target`` (in %), one row per (model, eps)."""
    from .defenses.anp import perturbation_effect
    rows = []
    for name, model in models.items():
        for eps in eps_values:
            r = perturbation_effect(model, clean, eps, target=target, steps=steps, seed=seed)
            rows.append({"model": name, "eps": eps, "error %": 100 * r["error"],
                         "predicted target %": 100 * r["predicted_target"]})
    return pd.DataFrame(rows)


def sensitivity(model: nn.Module, clean: Data, test: Data, atk: Attack, num_classes: int,
                base: dict, param: str, values, threshold: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """ANP with one argument of :func:`~fplab.defenses.anp.anp_masks` varied over ``values``
    (the others as in ``base``); clean accuracy and ASR (%) after pruning at ``threshold``.

    ``n_clean`` draws that many of the ``clean`` images (the first ``n`` of one fixed shuffle)."""
    from .defenses.anp import anp_masks, clean_subset, prune_by_threshold
    rows = []
    for value in values:
        args = {**base, param: value}
        n = args.pop("n_clean", len(clean))
        subset = clean_subset(clean, n, seed) if n < len(clean) else clean
        result = anp_masks(model, subset, n_clean=len(subset), seed=seed, cache=True,
                           progress=False, **args)
        pruned = prune_by_threshold(model, result, threshold)
        r = evaluate(pruned.model, test, atk, num_classes)
        rows.append({param: value, "pruned": pruned.count, "ACC": 100 * r["clean_acc"],
                     "ASR": 100 * r["asr"]})
    return pd.DataFrame(rows)
