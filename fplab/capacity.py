"""A map of when pruning works: last-conv width x training length (issue 8, chapter 2).

Fine-Pruning's defense assumes spare capacity: channels that clean inputs leave dormant, where
a backdoor can live and from where pruning removes it. :func:`capacity_map` trains one backdoored
network per (width, epochs) cell (zoo recipes ``<base>_w<width>``, :data:`fplab.models.CAPACITY_WIDTHS`),
runs the pruning defense with the stopping rule and records, per cell, the *dormancy meter*
(:func:`fplab.activations.dormant_fraction`: the share of last-conv channels whose mean clean
activation is under 1% of the largest), and the attack success at the stopping rule.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
from .progress import progress_bar

from . import zoo
from .activations import dormant_fraction
from .defenses.pruning import DEFAULT_MAX_DROP, pruning_curve
from .errors import check_choice
from .models import ARCHITECTURES, CAPACITY_WIDTHS, MODELS
from .poison import Attack


def width_model(base: str, width: int) -> str:
    """The registered name of network ``base`` with its last conv layer ``width`` channels wide:
    ``base`` itself at its own width (the same network, so the same zoo entries), else
    ``<base>_w<width>``."""
    check_choice("width", width, CAPACITY_WIDTHS)
    check_choice("model", base, MODELS)
    convs = ARCHITECTURES.get(base, ([], []))[0]
    if convs and convs[-1][0] == width:  # (out_channels, kernel, stride, padding, pool)
        return base
    name = f"{base}_w{width}"
    check_choice("model", name, MODELS)
    return name


def capacity_recipes(recipe: zoo.Recipe, widths, epochs, base: str = "mnist_cnn"):
    """``{(width, epochs): recipe}``: ``recipe`` (a backdoored standard recipe) with network
    ``base`` at each width and its training at each number of epochs."""
    if recipe.attack is None:
        raise ValueError("the capacity map needs a backdoored recipe (recipe.attack is None)")
    return {(w, e): replace(recipe, model=width_model(base, w), train={**recipe.train, "epochs": e})
            for w in widths for e in epochs}


MAP_FILE = "capacity_map.json"


def map_key(recipe: zoo.Recipe, widths, epochs, base: str = "mnist_cnn",
            max_drop: float = DEFAULT_MAX_DROP) -> str:
    """What names a computed map: the hash of every cell's recipe and the stopping rule."""
    import hashlib
    import json
    cells = sorted((w, e, r.recipe_hash())
                   for (w, e), r in capacity_recipes(recipe, widths, epochs, base).items())
    text = json.dumps({"cells": cells, "max_drop": max_drop}, sort_keys=True)
    return "map-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def shipped_map(key: str) -> pd.DataFrame | None:
    """The map shipped with fplab under ``key`` (SHA-256 verified), ``None`` when there is none
    or ``FPLAB_NO_SHIPPED`` is set. Computing the fast profile's 3 x 3 map trains nine networks
    (minutes on a CPU), so the map ships like the case studies' weights, and
    ``python -m fplab retrain-shipped --only capacity`` recomputes it and compares."""
    import io
    import os
    from .store import verify_sha256
    entry = zoo.shipped_entries().get(key)
    if entry is None or os.environ.get("FPLAB_NO_SHIPPED"):
        return None
    path = zoo.SHIPPED_DIR / key / MAP_FILE
    verify_sha256(path, entry["files"][MAP_FILE])
    return pd.read_json(io.StringIO(path.read_text()), orient="records")


def capacity_map(recipe: zoo.Recipe, widths, epochs, base: str = "mnist_cnn",
                 max_drop: float = DEFAULT_MAX_DROP, root=None, progress: bool = True,
                 shipped: bool = True) -> pd.DataFrame:
    """One row per (width, epochs): clean accuracy and attack success unpruned, the dormant
    fraction on clean validation data, and the fraction pruned, clean accuracy and attack success
    at the stopping rule (``max_drop`` of validation accuracy). Models come from the zoo; with
    ``shipped``, a map shipped for exactly these recipes is returned instead (:func:`shipped_map`)."""
    if shipped:
        table = shipped_map(map_key(recipe, widths, epochs, base, max_drop))
        if table is not None:
            return table
    recipes = capacity_recipes(recipe, widths, epochs, base)
    splits = recipe.splits(root)
    attack = Attack(**recipe.attack)
    rows = []
    for (w, e), r in progress_bar(recipes.items(), desc="capacity map", progress=progress, leave=True):
        model = zoo.load(r, splits=splits).model
        curve = pruning_curve(model, splits.val, splits.test, attack, splits.num_classes,
                              max_drop=max_drop, progress=False, cache=True)  # shared, e.g.
        # with chapter 2's training-length table, whose models are the speech map's 256 row
        first, stop = curve.table.iloc[0], curve.stop_row
        rows.append({"width": w, "epochs": e, "clean_acc": first.clean_acc, "asr": first.asr,
                     "dormant": dormant_fraction(curve.means), "stop_fraction": stop.fraction,
                     "stop_clean_acc": stop.clean_acc, "stop_asr": stop.asr})
    return pd.DataFrame(rows)
