"""The ANP paper's benchmark (Wu and Wang, 2021, Table 1) as model-zoo recipes and one table.

Attacks (all target class 0, at the strength of their own papers as the ANP benchmark used them):

============  ==========================================================================
``BadNets``   a 3x3 checkerboard in the bottom-right corner, 5% relabelled (Gu et al., 2017)
``Blend``     a fixed random pattern blended in at alpha = 0.2 (train and test), 5% relabelled
              (Chen et al., 2017)
``SIG``       a horizontal sinusoid (amplitude 20/255, frequency 6) added to 80% of the
              target-class images, clean label (Barni et al., 2019)
``CLB``       80% of the target-class images made hard by PGD (eps 16/255) on a clean model,
              then a 3x3 checkerboard in each corner, clean label (Turner et al., 2019)
``WaNet``     a fixed smooth warping field (control grid 4, strength 0.5), 5% relabelled
              (Nguyen and Tran, 2021; without its "noise mode" training)
============  ==========================================================================

WaNet stands in for the paper's IAB (an input-aware dynamic trigger needing a trained generator),
which is not reproduced. Defenses: none; fine-tuning on the defender's clean images at lr 0.01
and 0.02; fine-pruning (chapter 4); ANP. Profiles: ``fast`` is ten GTSRB classes at 32x32 (the
offline stand-in for CIFAR-10: 2,314 training, 626 held-out-track validation, 600 test images)
with ``traffic_cnn_bn`` (three conv + BatchNorm blocks of 16, 32, 64 channels, fc 128), which
trains in about four minutes on one CPU thread; ``full`` is CIFAR-10 with the ANP code's ResNet-18
(post-activation, 20 BatchNorm layers), which needs the dataset and a GPU. Both train as the ANP
code's ``train_backdoor_cifar.py`` does (:data:`ANP_TRAIN`): SGD at lr 0.1 with momentum 0.9,
weight decay 5e-4, batch 128, random shifts of up to 4 pixels (its ``RandomCrop(32,
padding=4)``; no horizontal flips: they would mirror a traffic sign, and the full profile leaves
them out too), the learning rate divided by 10 at half and three quarters of the training: 200
epochs (milestones 100 and 150, the original's) in the full profile, 100 (milestones 50 and 75:
1,900 steps on 2,314 images) in the fast one. An earlier version trained at a constant lr 0.01
for 40 epochs: its final clean accuracy depended on where in a noisy trajectory training stopped
(80-95% from one epoch to the next), so the same recipe retrained on another processor landed
4-9 points away from the shipped model (two threads instead of one: 10.8 points on the clean
model); with the step schedule the last epochs change little (1.5 points with two threads).
The section on a deeper network repeats BadNets and Blend on a quarter-width ResNet-18
(:data:`DEEP`, :func:`deep_recipe`, :func:`deep_masks`: the paper's 2000 iterations, masks and
models shipped), BadNets on three training seeds (:func:`deep_seeds`, :func:`replicate_table`).
The MNIST corner case (:func:`mnist_corner_case`) shows where ANP cannot see.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from ..data import Data, Splits
from ..errors import check_choice
from ..poison import Attack
from ..train import seed_everything
from ..zoo import Recipe, fit, load, register_trainer
from .memo import evaluate, measured
from dataclasses import replace

TARGET = 0
RATE = 0.05
#: Clean-label attacks poison this share of the target class (the ANP benchmark's CLB setting).
TARGET_SHARE = 0.8
ATTACKS = ("BadNets", "Blend", "SIG", "CLB", "WaNet")

#: The fast profile's ten GTSRB classes: those with the most held-out (validation) images, so the
#: defender has 500 clean images of whole held-out tracks. Relabelled 0..9 in this order (class 0,
#: the target, is "speed 70").
GTSRB10 = [4, 9, 25, 13, 17, 27, 3, 21, 2, 20]

#: The ANP code's training (``train_backdoor_cifar.py``: SGD at lr 0.1, momentum 0.9, weight
#: decay 5e-4, batch 128, random crops as shifts of up to 4 pixels, lr divided by 10 at half and
#: three quarters of the epochs); both profiles, with their own epochs and milestones.
ANP_TRAIN = {"lr": 0.1, "batch_size": 128, "optimizer": "sgd", "momentum": 0.9,
             "weight_decay": 5e-4, "shift": 4}
#: Each attack's strength (its own paper's, as the ANP benchmark used it); both profiles.
STRENGTHS = {"patch": 3, "margin": 0, "blend_alpha": 0.2, "sig_amplitude": 20 / 255,
             "sig_test_amplitude": 20 / 255, "clb_eps": 16 / 255, "warp_strength": 0.5,
             "warp_grid": 4}

SETTINGS = {
    "fast": {"dataset": "gtsrb", "classes": GTSRB10, "model": "traffic_cnn_bn", "sizes": None,
             "train": {**ANP_TRAIN, "epochs": 100, "milestones": [50, 75]}, **STRENGTHS},
    "full": {"dataset": "cifar10", "classes": None, "model": "resnet18", "sizes": None,
             "train": {**ANP_TRAIN, "epochs": 200, "milestones": [100, 150]}, **STRENGTHS},
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


def attack(name: str, profile: str = "fast", rate: float = RATE, test: bool = False) -> Attack:
    """The benchmark's attack ``name`` (see :data:`ATTACKS`) for ``profile``; ``test=True``: the
    trigger the attacker uses at test time (SIG's test amplitude; the others are the same)."""
    check_choice("attack", name, ATTACKS)
    check_choice("profile", profile, tuple(SETTINGS))
    s = SETTINGS[profile]
    patch = {"size": s["patch"], "position": "bottom-right", "margin": s["margin"]}
    if name == "BadNets":
        return Attack("checkerboard", "all_to_one", TARGET, rate, trigger_options=patch)
    if name == "Blend":
        return Attack("blend", "all_to_one", TARGET, rate, trigger_options={"alpha": s["blend_alpha"]})
    if name == "SIG":
        amplitude = s["sig_test_amplitude" if test else "sig_amplitude"]
        return Attack("sig", "clean_label", TARGET, rate,
                      trigger_options={"amplitude": amplitude, "frequency": 6})
    if name == "WaNet":
        return Attack("warp", "all_to_one", TARGET, rate,
                      trigger_options={"strength": s["warp_strength"], "grid": s["warp_grid"]})
    return Attack("corners", "clean_label", TARGET, rate,
                  trigger_options={"size": s["patch"], "margin": s["margin"]})


def base_recipe(profile: str = "fast", seed: int = 0) -> Recipe:
    """The clean model's recipe (the data, network and training every attack shares)."""
    check_choice("profile", profile, tuple(SETTINGS))
    s = SETTINGS[profile]
    return Recipe(dataset=s["dataset"], model=s["model"], train=s["train"], seed=seed,
                  profile=profile, sizes=s["sizes"], classes=s["classes"])


def clean_label_rate(splits: Splits, share: float = TARGET_SHARE) -> float:
    """The poisoning rate (of the whole training set) that poisons ``share`` of the target class."""
    n_target = int((splits.train.y == TARGET).sum())
    return round(share * n_target) / len(splits.train)


def recipe(name: str | None, profile: str = "fast", seed: int = 0, splits: Splits | None = None) -> Recipe:
    """The zoo recipe of the model trained under attack ``name`` (``None``: the clean model).

    All-to-one attacks poison :data:`RATE` of the training set; clean-label ones (SIG, CLB)
    :data:`TARGET_SHARE` of the target class (``splits``: the recipe's data, loaded if not given).
    """
    base = base_recipe(profile, seed)
    if name is None:
        return base
    rate = RATE
    if attack(name, profile).mode == "clean_label":
        rate = clean_label_rate(splits if splits is not None else base.splits())
    spec = attack(name, profile, rate).spec()
    if name == "CLB":
        return replace(base, attack=spec, kind="clb",
                       extra={"pgd_eps": SETTINGS[profile]["clb_eps"], "pgd_steps": 10})
    return replace(base, attack=spec)


def test_attack(name: str, profile: str = "fast") -> Attack:
    """The attack as evaluated (attack success on the test set)."""
    return attack(name, profile, test=True)


#: The trigger option :func:`scaled_test_attack` scales, for the two attacks that do not implant
#: here: SIG's sinusoid amplitude and WaNet's warp strength (in pixels).
STRENGTH_OPTION = {"SIG": "amplitude", "WaNet": "strength"}


def scaled_test_attack(name: str, factor: float, profile: str = "fast") -> Attack:
    """The test-time trigger of ``name`` (``"SIG"`` or ``"WaNet"``) at ``factor`` times the
    strength its paper uses (:data:`STRENGTHS`); the model was trained at ``factor = 1``."""
    check_choice("name", name, tuple(STRENGTH_OPTION))
    if not factor > 0:
        raise ValueError(f"factor={factor} must be > 0 (1: the paper's strength)")
    atk = test_attack(name, profile)
    option = STRENGTH_OPTION[name]
    return replace(atk, trigger_options={**atk.trigger_options,
                                         option: factor * atk.trigger_options[option]})


def strength_table(models: dict, test: Data, num_classes: int, factors=(1, 2, 3, 4),
                   profile: str = "fast") -> pd.DataFrame:
    """Attack success of the SIG and WaNet models (``models[name]``) and of the clean model
    (``models["clean"]``) under the same trigger, when the test-time trigger is ``factor`` times
    its paper's strength (:func:`scaled_test_attack`; training unchanged): whether a backdoor is
    there but weak. Fractions; one row per factor."""
    rows = []
    for factor in factors:
        row = {"strength (x paper)": factor}
        for name, option in STRENGTH_OPTION.items():
            atk = scaled_test_attack(name, factor, profile)
            value = atk.trigger_options[option]
            row[f"{name} {option}"] = (f"{round(255 * value)}/255" if name == "SIG"
                                       else f"{value:g} px")
            row[f"{name} model"] = evaluate(models[name], test, atk, num_classes)["asr"]
            row[f"clean model, {name} trigger"] = evaluate(models["clean"], test, atk,
                                                           num_classes)["asr"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("strength (x paper)")


#: Chapter 5's "where ANP cannot see" case: BadNets' 4x4 corner patch on MNIST (black corner).
MNIST_CORNER = {"dataset": "mnist", "model": "mnist_cnn_bn", "sizes": {"train": 10000},
                "train": {"epochs": 2, "lr": 1e-3, "batch_size": 64}}


def mnist_corner(position: str = "bottom-right", seed: int = 0) -> tuple[Recipe, Attack]:
    """The MNIST BadNets model (patch at ``position``) and its attack."""
    atk = Attack("square", "all_to_one", TARGET, RATE,
                 trigger_options={"size": 4, "position": position})
    return Recipe(**MNIST_CORNER, seed=seed, attack=atk.spec()), atk


@register_trainer("clb")
def train_clb(recipe: Recipe, splits: Splits) -> nn.Module:
    """CLB: PGD-harden the poisoned target-class images on the clean model of the same recipe
    (from the zoo), add the trigger, train from scratch."""
    from ..attacks.clb import clb_poison
    clean = load(recipe.clean(), splits=splits).model
    seed_everything(recipe.seed)
    data = clb_poison(splits.train, recipe.get_attack(), splits.num_classes, clean,
                      recipe.extra["pgd_eps"], recipe.extra["pgd_steps"], seed=recipe.seed).data
    return fit(recipe, splits, data, "CLB")


# ----------------------------------------------------------------------------- defenses

#: The deeper network of the section "A deeper network": ResNet-18 at a quarter of its width
#: (``resnet18_w16``: 16-32-64-128 channels, 1,200 BatchNorm neurons), trained with Adam (lr 0.001,
#: 20 epochs, batch 64). With the ANP code's SGD it does not learn the patch (constant lr 0.01,
#: 40 epochs: 13.7% attack success, 85.5% clean; lr 0.1 with the step schedule, 80 epochs: 5.9%),
#: so it keeps the recipe under which it learns.
DEEP = {"model": "resnet18_w16", "train": {"epochs": 20, "lr": 1e-3, "batch_size": 64}}
#: The attacks of that section, and the iterations at which its one ANP run records the masks
#: (up to the paper's 2000).
DEEP_ATTACKS = ("BadNets", "Blend")
DEEP_ITERATIONS = (100, 500, 1000, 2000)
#: How many BadNets models of the deeper network the section trains (:func:`deep_seeds`).
DEEP_REPLICATES = 3


def deep_seeds(seed: int = 0) -> tuple[int, ...]:
    """The training seeds of the deeper network's BadNets replicates: ``seed`` (the section's own
    model) and the next :data:`DEEP_REPLICATES` - 1. Each replicate's ANP run uses its model's
    seed; the data splits and the defender's clean images stay those of ``seed``."""
    return tuple(seed + k for k in range(DEEP_REPLICATES))


def deep_recipe(name: str, profile: str = "fast", seed: int = 0,
                splits: Splits | None = None) -> Recipe:
    """:func:`recipe` ``name`` with the deeper network and its training (:data:`DEEP`)."""
    return replace(recipe(name, profile, seed, splits), **DEEP)


def deep_anp(anp: dict) -> dict:
    """ANP's arguments ``anp`` for the deeper network: the paper's 2000 iterations
    (``max(DEEP_ITERATIONS)``), the masks recorded at each of :data:`DEEP_ITERATIONS`."""
    return {**anp, "iterations": max(DEEP_ITERATIONS), "record_at": DEEP_ITERATIONS}


def deep_masks(model: nn.Module, clean: Data, anp: dict, seed: int = 0):
    """One ANP run on the deeper network: :func:`masks_for` with :func:`deep_anp` ``(anp)``
    (``result.history``: the masks at each of :data:`DEEP_ITERATIONS`) and a progress bar (46 to
    57 minutes on one CPU thread). The runs of the notebook's own arguments
    (:func:`shipped_deep_runs`) ship with fplab like the models they belong to, and are read in
    any context (thread count, numerics) instead of computed."""
    return masks_for(model, clean, deep_anp(anp), seed, progress=True)


#: ANP's arguments as the notebook's parameters set them (the paper's eps, steps, alpha, mask
#: learning rate and batch; the fast profile's 100 iterations): the runs that ship.
NOTEBOOK_ANP = {"eps": 0.4, "steps": 1, "alpha": 0.2, "lr": 0.2, "iterations": 100,
                "batch_size": 128}
#: How many clean images the notebook gives the defender (``n_clean``).
NOTEBOOK_N_CLEAN = 500


def shipped_deep_runs(profile: str = "fast", seed: int = 0):
    """``[(label, model recipe, clean images, ANP arguments, ANP seed)]``: the deeper network's
    ANP runs as the notebook makes them (:data:`NOTEBOOK_ANP`, :func:`deep_anp`; one per model of
    :data:`DEEP_ATTACKS` and of the BadNets replicates), which ``make ship-weights`` ships."""
    from ..defenses.anp import clean_subset
    splits = base_recipe(profile, seed).splits()
    clean = clean_subset(splits.val, min(NOTEBOOK_N_CLEAN, len(splits.val)), seed)
    args = deep_anp(NOTEBOOK_ANP)
    runs = [(f"ch05/deep-{name}/anp", deep_recipe(name, profile, seed, splits), clean, args, seed)
            for name in DEEP_ATTACKS]
    runs += [(f"ch05/deep-BadNets-seed{s}/anp", deep_recipe("BadNets", profile, s, splits), clean,
              args, s) for s in deep_seeds(seed)[1:]]
    return runs


def deep_table(models: dict, attacks: dict, runs: dict, clean: Data, test: Data, num_classes: int,
               threshold: float = 0.2, max_drop: float = 0.02) -> pd.DataFrame:
    """The deeper network's ANP after each of :data:`DEEP_ITERATIONS` (``runs``: attack ->
    :func:`deep_masks`' result), per attack: before any defense, pruned at ``threshold``, and at
    the threshold the clean-validation rule picks (``max_drop`` on the ``clean`` images only):
    neurons pruned, ACC and ASR (fractions). One row per (attack, iterations)."""
    from ..defenses.anp import prune_by_threshold
    rows = []
    for name, model in models.items():
        before = evaluate(model, test, attacks[name], num_classes)
        for it in DEEP_ITERATIONS:
            masks = runs[name].history[it]
            fixed = prune_by_threshold(model, masks, threshold)
            chosen = rule_threshold(model, masks, clean, max_drop)
            rule = prune_by_threshold(model, masks, chosen)
            a = evaluate(fixed.model, test, attacks[name], num_classes)
            b = evaluate(rule.model, test, attacks[name], num_classes)
            rows.append({"attack": name, "iterations": it, "before ACC": before["clean_acc"],
                         "before ASR": before["asr"], "pruned": fixed.count, "ACC": a["clean_acc"],
                         "ASR": a["asr"], "rule threshold": chosen, "rule pruned": rule.count,
                         "rule ACC": b["clean_acc"], "rule ASR": b["asr"]})
    return pd.DataFrame(rows).set_index(["attack", "iterations"])


def replicate_table(models: dict, atk, runs: dict, clean: Data, test: Data, num_classes: int,
                    threshold: float = 0.2, max_drop: float = 0.02) -> pd.DataFrame:
    """:func:`deep_table` for models trained under the same attack ``atk`` with different seeds
    (``models`` and ``runs``: seed -> model, seed -> :func:`deep_masks`' result): one row per
    (seed, iterations)."""
    table = deep_table(models, dict.fromkeys(models, atk), runs, clean, test, num_classes,
                       threshold, max_drop)
    return table.rename_axis(["seed", "iterations"])


def paper_anp(name: str) -> tuple[float, float]:
    """The paper's ANP result on attack ``name`` (:data:`PAPER_TABLE`): ASR after ANP and the
    clean accuracy it cost, in %."""
    row = PAPER_TABLE.loc[name]
    return row["ANP ASR"], row["none ACC"] - row["ANP ACC"]


def deep_expectation(replicates: pd.DataFrame, threshold: float = 0.2) -> dict:
    """The paper's BadNets claim (ANP at ``threshold`` after its 2000 iterations: ASR < 5% for
    <= 3 points of clean accuracy) on the deeper network, averaged over the BadNets replicates
    (:func:`replicate_table`): a row for ``show_expectations``."""
    from .report import expectation
    last = replicates.xs(max(DEEP_ITERATIONS), level="iterations")
    asr, loss = 100 * last["ASR"], 100 * (last["before ACC"] - last["ACC"])
    return expectation(
        f"deeper network ({DEEP['model']}, {len(last)} seeds): ANP at threshold {threshold} after "
        f"{max(DEEP_ITERATIONS)} iterations brings BadNets under 5% ASR with <= 3 points clean "
        "loss (mean over seeds)",
        asr.mean() < 5 and loss.mean() <= 3,
        f"ASR {' / '.join(f'{a:.1f}' for a in asr)}% (mean {asr.mean():.1f}%), clean loss "
        f"{' / '.join(f'{x:.1f}' for x in loss)} points (mean {loss.mean():.1f})",
        "ASR {:.2f}%, clean loss {:.1f} points (ResNet-18)".format(*paper_anp("BadNets")))


def fine_tune(model: nn.Module, clean: Data, lr: float, epochs: int = 10, seed: int = 0) -> nn.Module:
    """The paper's fine-tuning baseline: chapter 4's :func:`~fplab.defenses.finetune.fine_tune`
    (a copy, trained on the clean images) with SGD (momentum 0.9) at learning rate ``lr``."""
    from ..defenses.finetune import fine_tune as ft
    return ft(model, clean, epochs=epochs, lr=lr, optimizer="sgd", seed=seed, progress=False,
              cache=True)


def masks_for(model: nn.Module, clean: Data, anp: dict, seed: int = 0, progress: bool = False):
    """ANP's masks for ``model`` on all of ``clean`` (``anp``: arguments of
    :func:`~fplab.defenses.anp.anp_masks`), cached, or read as they ship with fplab where they
    do (the deeper network's hour-long runs, :func:`shipped_deep_runs`: in any context)."""
    from ..defenses.anp import anp_masks
    return anp_masks(model, clean, n_clean=len(clean), seed=seed, cache=True, progress=progress,
                     shipped=True, **anp)


def run_defenses(model: nn.Module, splits: Splits, atk: Attack, clean: Data, anp: dict,
                 threshold: float = 0.2, fp: dict | None = None, ft_epochs: int = 10,
                 seed: int = 0) -> dict:
    """Clean accuracy / ASR (in %) of ``model`` before and after each defense of the paper's
    table: fine-tuning at lr 0.01 and 0.02, fine-pruning (chapter 4's, its 4% stopping rule on
    the clean images) and ANP pruned at ``threshold``. Every defense gets the same ``clean``
    images; nothing is chosen by attack success."""
    from ..defenses.anp import prune_by_threshold
    from ..defenses.fineprune import fine_prune
    K = splits.num_classes

    def score(m):
        r = evaluate(m, splits.test, atk, K)
        return 100 * r["clean_acc"], 100 * r["asr"]

    out = {"none": score(model)}
    for lr in (0.01, 0.02):
        out[f"FT lr={lr}"] = score(fine_tune(model, clean, lr, ft_epochs, seed))
    out["FP"] = score(fine_prune(model, clean, seed=seed, progress=False, cache=True,
                                 **(fp or {})).model)
    out["ANP"] = score(prune_by_threshold(model, masks_for(model, clean, anp, seed), threshold).model)
    return out


def benchmark_table(results: dict[str, dict], excluded=()) -> pd.DataFrame:
    """``{attack: run_defenses(...)}`` -> one row per attack, ``<defense> ACC`` / ``ASR`` columns,
    plus a row of average drops (ACC and ASR, relative to no defense) over the attacks not in
    ``excluded`` (those that did not implant)."""
    rows = {}
    for name, res in results.items():
        rows[name] = {f"{d} {k}": v for d, (acc, asr) in res.items()
                      for k, v in (("ACC", acc), ("ASR", asr))}
    table = pd.DataFrame(rows).T
    kept = table.drop(index=[e for e in excluded if e in table.index])
    drop = {}
    for col in table.columns:
        base = kept["none ACC" if col.endswith("ACC") else "none ASR"]
        drop[col] = (base - kept[col]).mean() if not col.startswith("none") else float("nan")
    table.loc["avg drop"] = pd.Series(drop)
    return table


def implanted(asr_before: float, name: str) -> bool:
    """The issue's bar for a backdoor that took hold: ASR >= 90% (SIG: >= 80%), in %."""
    return asr_before >= (80 if name == "SIG" else 90)


def side_by_side(table: pd.DataFrame) -> pd.DataFrame:
    """Ours and the paper's ACC / ASR (in %) per attack and defense, as one long table."""
    rows = []
    for name in table.index.drop("avg drop"):
        for col in table.columns:
            defense, metric = col.rsplit(" ", 1)
            paper = PAPER_TABLE.loc[name, col] if name in PAPER_TABLE.index else float("nan")
            rows.append({"attack": name, "defense": defense, "metric": metric,
                         "ours": table.loc[name, col], "paper": paper})
    long = pd.DataFrame(rows)
    return long.pivot_table(index=["attack", "defense"], columns="metric", values=["ours", "paper"],
                            sort=False)


def mode_comparison(models: dict, attacks: dict, clean: Data, test: Data, num_classes: int,
                    anp: dict, threshold: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """ANP in its faithful mode and in fplab's earlier mode, per attack: neurons pruned at
    ``threshold``, clean accuracy and ASR (fractions), and the seconds each optimisation took."""
    from ..defenses.anp import prune_by_threshold
    rows = []
    for name, model in models.items():
        for mode in ("faithful", "fplab"):
            masks = masks_for(model, clean, {**anp, "mode": mode}, seed)
            pruned = prune_by_threshold(model, masks, threshold)
            r = evaluate(pruned.model, test, attacks[name], num_classes)
            rows.append({"attack": name, "mode": mode, "pruned": pruned.count,
                         "ACC": r["clean_acc"], "ASR": r["asr"], "seconds": masks.seconds})
    return pd.DataFrame(rows).set_index(["attack", "mode"])


def rule_threshold(model: nn.Module, masks: dict, clean: Data, max_drop: float) -> float:
    """The threshold :func:`~fplab.defenses.anp.prune_by_validation` picks for ``masks`` (layer ->
    values) on the defender's ``clean`` images, cached."""
    from ..defenses.anp import ANP_VERSION, prune_by_validation
    return measured("anp.prune_by_validation", model,
                    (ANP_VERSION, masks, clean.x, clean.y, max_drop),
                    lambda: prune_by_validation(model, masks, clean, max_drop).threshold)


def validation_rule(models: dict, attacks: dict, clean: Data, test: Data, num_classes: int,
                    anp: dict, max_drop: float, seed: int = 0) -> pd.DataFrame:
    """ANP pruned at the threshold chosen on the defender's clean images only
    (:func:`~fplab.defenses.anp.prune_by_validation`): the threshold, neurons pruned, ACC, ASR."""
    from ..defenses.anp import prune_by_threshold
    rows = []
    for name, model in models.items():
        masks = masks_for(model, clean, anp, seed)
        threshold = rule_threshold(model, masks.masks, clean, max_drop)
        pruned = prune_by_threshold(model, masks, threshold)  # the rule's choice, as it pruned
        r = evaluate(pruned.model, test, attacks[name], num_classes)
        rows.append({"attack": name, "threshold": pruned.threshold, "pruned": pruned.count,
                     "ACC": r["clean_acc"], "ASR": r["asr"]})
    return pd.DataFrame(rows).set_index("attack")


def neuron_sensitivity(models: dict[str, nn.Module], clean: Data, eps_values, target: int = TARGET,
                       steps: int = 10, seed: int = 0) -> pd.DataFrame:
    """Adversarial neuron perturbation alone (no trigger) on each model, over ``eps_values``:
    error rate and share of images predicted as ``target`` (fractions), one row per (model, eps)."""
    from ..defenses.anp import perturbation_effect
    rows = []
    for name, model in models.items():
        for eps in eps_values:
            r = measured("anp.perturbation_effect", model, (clean.x, clean.y, eps, target, steps, seed),
                         lambda: perturbation_effect(model, clean, eps, target=target, steps=steps,
                                                     seed=seed))
            rows.append({"model": name, "eps": eps, "error": r["error"],
                         "predicted target": r["predicted_target"]})
    return pd.DataFrame(rows)


def sensitivity(model: nn.Module, clean: Data, test: Data, atk: Attack, num_classes: int,
                base: dict, sweeps: dict, threshold: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """ANP with one argument varied at a time (``sweeps``: name -> values; the others as in
    ``base``); clean accuracy and ASR (fractions) after pruning at ``threshold``.

    ``n_clean`` draws that many of the ``clean`` images (one fixed shuffle); ``iterations`` is
    one run of the largest value with the masks recorded at the others."""
    from ..defenses.anp import clean_subset, prune_by_threshold
    rows = []

    def row(param, value, masks):
        pruned = prune_by_threshold(model, masks, threshold)
        r = evaluate(pruned.model, test, atk, num_classes)
        rows.append({"parameter": param, "value": value, "pruned": pruned.count,
                     "ACC": r["clean_acc"], "ASR": r["asr"]})

    for param, values in sweeps.items():
        if param == "iterations":
            result = masks_for(model, clean, {**base, "iterations": max(values),
                                              "record_at": list(values)}, seed)
            for value in values:
                row(param, value, result.history[value])
            continue
        for value in values:
            if param == "n_clean":
                row(param, value, masks_for(model, clean_subset(clean, value, seed), base, seed))
            else:
                row(param, value, masks_for(model, clean, {**base, param: value}, seed))
    return pd.DataFrame(rows)


def mnist_corner_models(root=None, seed: int = 0) -> dict:
    """The two MNIST BadNets models of :func:`mnist_corner_case` (from the zoo, trained once):
    patch position -> (model, splits, attack)."""
    out = {}
    for position in ("bottom-right", "center"):
        rec, atk = mnist_corner(position, seed)
        splits = rec.splits(root)
        out[position] = (load(rec, root=root, splits=splits).model, splits, atk)
    return out


def mnist_corner_case(models: dict, eps_values=(0.0, 0.2, 0.4), anp: dict | None = None,
                      threshold: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """Where ANP cannot see: BadNets on MNIST with its patch in the black corner vs in the centre
    of the digit (``models``: :func:`mnist_corner_models`). Per model: ASR before, the share of
    clean images sent to the target by an adversarial neuron perturbation of each ``eps`` (no
    trigger), and ASR after ANP (fractions)."""
    from ..defenses.anp import clean_subset, perturbation_effect, prune_by_threshold
    anp = anp or {}
    rows = []
    for position, (model, splits, atk) in models.items():
        clean = clean_subset(splits.val, 500, seed)
        row = {"patch": position, "ASR before": evaluate(model, splits.test, atk, 10)["asr"]}
        for eps in eps_values:
            r = perturbation_effect(model, clean_subset(clean, 250, seed), eps, target=TARGET,
                                    steps=5, seed=seed)
            row[f"to target, eps {eps}"] = r["predicted_target"]
        pruned = prune_by_threshold(model, masks_for(model, clean, anp, seed), threshold)
        r = evaluate(pruned.model, splits.test, atk, 10)
        row.update({"pruned": pruned.count, "ACC after ANP": r["clean_acc"], "ASR after ANP": r["asr"]})
        rows.append(row)
    return pd.DataFrame(rows).set_index("patch")


# ----------------------------------------------------------------------------- expectations

def expectations(table: pd.DataFrame, excluded, sweep: pd.DataFrame, threshold: float = 0.2) -> list:
    """The issue's expectations for the fast profile, each checked against the benchmark table
    (in %) and the sensitivity sweep (fractions): rows for :func:`~fplab.chapters.report.show_expectations`."""
    from .report import expectation
    rows = []
    for name in ("BadNets", "Blend", "SIG"):
        acc_loss = table.loc[name, "none ACC"] - table.loc[name, "ANP ACC"]
        asr = table.loc[name, "ANP ASR"]
        note = " (not implanted: excluded)" if name in excluded else ""
        rows.append(expectation(
            f"ANP at threshold {threshold} brings {name} under 5% ASR with <= 3 points clean loss",
            name not in excluded and asr < 5 and acc_loss <= 3,
            f"ASR {asr:.1f}%, clean loss {acc_loss:.1f} points{note}",
            "ASR {:.1f}%, clean loss {:.1f} points".format(*paper_anp(name))))
    drops = table.loc["avg drop"]
    rows.append(expectation("average ASR drop of ANP over the implanted attacks >= 85 points",
                            drops["ANP ASR"] >= 85, f"{drops['ANP ASR']:.1f} points", "96.4 points"))
    rows.append(expectation("ANP beats fine-pruning and fine-tuning (lr 0.01) on average ASR drop",
                            drops["ANP ASR"] > max(drops["FP ASR"], drops["FT lr=0.01 ASR"]),
                            f"ANP {drops['ANP ASR']:.1f}, FP {drops['FP ASR']:.1f}, "
                            f"FT {drops['FT lr=0.01 ASR']:.1f} points", "ANP 96.4, FP 76.3, FT 85.2 points"))
    # The paper's claim is that ANP still *works* with few clean images: an attack left at 100%
    # by every image count is insensitive too, but not what the paper shows.
    n = sweep[sweep["parameter"] == "n_clean"]
    spread = 100 * (n["ASR"].max() - n["ASR"].min())
    rows.append(expectation(
        f"insensitive to the number of clean images ({int(n['value'].min())} to "
        f"{int(n['value'].max())}: ASR after ANP within 5 points, and under 6% as in the paper)",
        spread <= 5 and 100 * n["ASR"].max() < 6,
        f"ASR {100 * n['ASR'].min():.1f}% to {100 * n['ASR'].max():.1f}% ({spread:.1f} points)",
        "ASR < 6% from 50 images up"))
    return rows


# ----------------------------------------------------------------------------- figures

def _panels(n: int, height: float = 3.4, width: float = 8):
    """``n`` panels in a row, at most 8 inches wide (a 784 px column), fonts >= 10 pt."""
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 10})
    if n > 2:  # two per row
        rows = (n + 1) // 2
        fig, axes = plt.subplots(rows, 2, figsize=(width, height * rows), squeeze=False)
        flat = axes.flatten()
        for ax in flat[n:]:
            ax.set_visible(False)
        return fig, flat[None, :n]
    return plt.subplots(1, n, figsize=(width, height), squeeze=False)


def plot_neuron_sensitivity(sens: pd.DataFrame, target: int = TARGET):
    """Error on clean images and share predicted as ``target`` vs the perturbation budget, one
    line per model (:func:`neuron_sensitivity`'s table)."""
    fig, axes = _panels(2)
    axes = axes[0]
    for name, group in sens.groupby("model", sort=False):
        style = dict(marker="o", linestyle="--" if name == "clean" else "-")
        axes[0].plot(group["eps"], 100 * group["error"], label=name, **style)
        axes[1].plot(group["eps"], 100 * group["predicted target"], label=name, **style)
    axes[0].set(xlabel="perturbation budget $\\epsilon$", ylabel="error on clean images (%)",
                title="Clean error")
    axes[1].set(xlabel="perturbation budget $\\epsilon$", ylabel=f"predicted as class {target} (%)",
                title=f"Sent to the target class {target}")
    fig.suptitle("Adversarial neuron perturbation, no trigger", fontsize=11)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=10)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    return fig


def plot_masks(masks: pd.DataFrame, losses, threshold: float, name: str):
    """Histogram of ANP's mask values with the pruning threshold, and the objective per iteration."""
    fig, axes = _panels(2)
    axes = axes[0]
    axes[0].hist(masks["mask"], bins=40, color="tab:blue")
    axes[0].axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold}")
    axes[0].set(xlabel="mask value", ylabel="neurons", title=f"Masks after ANP ({name})")
    axes[0].legend(loc="lower center", bbox_to_anchor=(0.5, -0.45), fontsize=10)
    axes[1].plot(losses, color="tab:gray")
    axes[1].set(xlabel="iteration", ylabel="ANP objective", title="Mask optimisation")
    fig.tight_layout()
    return fig


def plot_pruning(by_threshold: pd.DataFrame, by_count: pd.DataFrame, threshold: float, name: str):
    """Clean accuracy and attack success when pruning by mask threshold and by neuron count."""
    fig, axes = _panels(2)
    axes = axes[0]
    for ax, frame, x, label, how in [
            (axes[0], by_threshold, "threshold", "pruning threshold", "by mask threshold"),
            (axes[1], by_count, "count", "neurons pruned (smallest masks first)", "by count")]:
        ax.plot(frame[x], 100 * frame["clean_acc"], marker="o", label="clean accuracy")
        ax.plot(frame[x], 100 * frame["asr"], marker="s", label="attack success")
        ax.set(xlabel=label, ylabel="%", title=f"{name}: pruning {how}", ylim=(-5, 105))
    axes[0].axvline(threshold, color="tab:red", linestyle="--", linewidth=1, label="threshold")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def plot_replicates(replicates: pd.DataFrame, threshold: float):
    """Attack success after ANP against the iterations, one line per seed (:func:`replicate_table`):
    pruned at ``threshold`` (left) and at the clean-validation rule's threshold (right)."""
    fig, axes = _panels(2)
    axes = axes[0]
    its = replicates.index.unique("iterations")
    for s, group in replicates.groupby(level="seed", sort=False):
        axes[0].plot(its, 100 * group["ASR"], marker="o", label=f"seed {s}")
        axes[1].plot(its, 100 * group["rule ASR"], marker="o", label=f"seed {s}")
    for ax, title in zip(axes, (f"threshold {threshold}", "clean-validation rule")):
        ax.axhline(5, color="tab:red", linestyle="--", linewidth=1)
        ax.set(xscale="log", xlabel="ANP iterations", ylabel="attack success (%)",
               title=f"Pruned at the {title}", ylim=(-5, 105))
        ax.set_xticks(its, [str(i) for i in its], minor=False)
        ax.minorticks_off()
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def plot_sensitivity(sweep: pd.DataFrame):
    """ANP's clean accuracy and attack success against each swept hyper-parameter."""
    groups = list(sweep.groupby("parameter", sort=False))
    fig, axes = _panels(len(groups), height=3.0)
    for ax, (param, frame) in zip(axes[0], groups):
        ax.plot(frame["value"], 100 * frame["ACC"], marker="o", label="clean accuracy")
        ax.plot(frame["value"], 100 * frame["ASR"], marker="s", label="attack success")
        ax.set(xlabel=param, ylabel="%", title=f"ANP vs {param}", ylim=(-5, 105))
    axes[0][0].legend(loc="upper center", bbox_to_anchor=(1.1, -0.3), ncol=2, fontsize=10)
    fig.tight_layout()
    return fig


def threshold_frames(curves, masks=None, threshold: float | None = None):
    """ANP's pruning threshold as a kernel-free slider, one frame per threshold of ``curves``:
    ``{attack: table}`` (or one table) of :func:`~fplab.defenses.anp.pruning_curve` by
    threshold (columns ``threshold``, ``pruned``, ``clean_acc``, ``asr``). Right: clean
    accuracy and attack success against the threshold, per attack, with the values at the
    slider's threshold marked and given in the legend; ``threshold`` (the benchmark's fixed
    one) dotted. Left, given ``masks`` (one model's mask values, ``result.table()["mask"]``):
    their histogram, the neurons pruned at that threshold (mask <= threshold) in red. Every
    frame is read from these precomputed tables: nothing is pruned or evaluated here."""
    import numpy as np

    from ..plots import slider_explorer
    if isinstance(curves, pd.DataFrame):
        curves = {"": curves}
    rows = {name: {round(float(r.threshold), 6): r for r in table.itertuples()}
            for name, table in curves.items()}
    values = sorted(set().union(*rows.values()))
    mask_values = None if masks is None else np.asarray(masks, dtype=float)
    bins = np.linspace(0, 1, 41)

    def draw(fig, t):
        axes = fig.subplots(1, 1 if mask_values is None else 2, squeeze=False)[0]
        if mask_values is not None:
            pruned = mask_values <= t
            axes[0].hist([mask_values[pruned], mask_values[~pruned]], bins, stacked=True,
                         color=["tab:red", "tab:blue"], label=["pruned", "kept"])
            axes[0].axvline(t, color="black", lw=1)
            axes[0].set_title(f"{int(pruned.sum())} of {len(mask_values)} neurons pruned",
                              fontsize=10)
            axes[0].set_xlabel("ANP mask value", fontsize=10)
            axes[0].set_ylabel("neurons", fontsize=10)
            axes[0].legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
        ax = axes[-1]
        for i, (name, table) in enumerate(curves.items()):
            colors = ("tab:blue", "tab:red") if len(curves) == 1 else (f"C{i}", f"C{i}")
            prefix = f"{name} " if name else ""
            row = rows[name].get(t)
            for metric, what, color, dash in (("clean_acc", "clean accuracy", colors[0], "-"),
                                              ("asr", "attack success", colors[1], "--")):
                label = prefix + what + ("" if row is None
                                         else f": {100 * getattr(row, metric):.1f}%")
                ax.plot(table["threshold"], 100 * table[metric], color=color, ls=dash,
                        marker=".", label=label)
                if row is not None:
                    ax.plot([t], [100 * getattr(row, metric)], "o", ms=8, color=color)
        if threshold is not None:
            ax.axvline(threshold, color="grey", ls=":", lw=1.5,
                       label=f"benchmark's threshold {threshold:g}")
        ax.axvline(t, color="black", lw=1)
        if len(curves) == 1 and row is not None:
            ax.set_title(f"{prefix}after pruning {int(row.pruned)} neurons", fontsize=10)
        ax.set_xlabel("pruning threshold", fontsize=10)
        ax.set_ylabel("%", fontsize=10)
        ax.set_ylim(-3, 103)
        ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                  ncol=1 if len(curves) == 1 else 2)
        for a in axes:
            a.tick_params(labelsize=9)

    return slider_explorer(draw, values, "pruning threshold", figsize=(7, 4.2))
