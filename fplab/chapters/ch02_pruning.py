"""Figures, tables and the ipywidgets explorer of chapters 2-4 (pruning, pruning-aware attack,
fine-pruning)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch
import pandas as pd
import torch

from ..activations import dormant_channels, dormant_fraction, trigger_share
from ..defenses.pruning import PruningCurve, fraction_to_count


def plot_activations(clean, triggered, pruned=(), ax=None, title="Mean activation per channel"):
    """Bars of the last conv layer's mean activation per channel, clean vs triggered inputs,
    channels sorted as the defense ranks them; ``pruned`` channels drawn in grey."""
    ax = ax or plt.subplots(figsize=(8, 3))[1]
    clean, triggered = torch.as_tensor(clean), torch.as_tensor(triggered)
    order = torch.argsort(clean, stable=True)
    pos = np.arange(len(order))
    gone = set(int(c) for c in pruned)
    colours = ["lightgrey" if int(c) in gone else "tab:blue" for c in order]
    ax.bar(pos - 0.2, clean[order].numpy(), 0.4, color=colours)
    colours = ["lightgrey" if int(c) in gone else "tab:red" for c in order]
    ax.bar(pos + 0.2, triggered[order].numpy(), 0.4, color=colours)
    ax.set_xlabel("channel, in pruning order (ascending mean clean activation)")
    ax.set_ylabel("mean activation")
    ax.set_title(title)
    handles = [Patch(color="tab:blue", label="clean inputs"),
               Patch(color="tab:red", label="triggered inputs")]
    if gone:
        handles.append(Patch(color="lightgrey", label="pruned channels"))
    ax.legend(handles=handles, loc="upper left")  # colours independent of which bars are grey
    return ax


def plot_curve(curve: PruningCurve, ax=None, title="Pruning defense", paper_note=None):
    """Clean accuracy and attack success vs fraction pruned, with the stopping rule's point."""
    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    t = curve.table
    ax.plot(t.fraction, t.clean_acc, color="tab:blue", label="clean accuracy (test)")
    ax.plot(t.fraction, t.asr, color="tab:red", label="attack success")
    stop = curve.stop_row
    ax.axvline(stop.fraction, color="grey", ls="--",
               label=f"stop: {100 * curve.max_drop:.0f}% val-accuracy drop")
    ax.set_xlabel("fraction of last-conv channels pruned")
    ax.set_ylabel("rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower left")
    return ax


def plot_curves(curves: dict, suptitle: str):
    """One :func:`plot_curve` panel per case study (``{title: curve}``)."""
    fig, axes = plt.subplots(len(curves), 1, figsize=(7, 3.3 * len(curves)), squeeze=False)
    for ax, (title, curve) in zip(axes[:, 0], curves.items()):
        plot_curve(curve, ax, title)
    fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def curve_summary(curves: dict, thresholds=(0.2,)) -> pd.DataFrame:
    """Per case: unpruned numbers, the stopping rule's point, and where success first drops
    below each threshold (and the clean accuracy lost by then), in %."""
    rows = []
    for name, c in curves.items():
        t, s = c.table, c.stop_row
        row = {"case": name, "clean %": 100 * t.clean_acc[0], "success %": 100 * t.asr[0],
               "dormant %": 100 * dormant_fraction(c.means),
               "stop: pruned %": 100 * s.fraction, "stop: clean %": 100 * s.clean_acc,
               "stop: success %": 100 * s.asr}
        for th in thresholds:
            low = t[t.asr < th]
            if len(low):
                first = low.iloc[0]
                row[f"success<{th:.0%}: pruned %"] = 100 * first.fraction
                row[f"success<{th:.0%}: clean loss (pts)"] = 100 * (t.clean_acc[0] - first.clean_acc)
            else:
                row[f"success<{th:.0%}: pruned %"] = np.nan
                row[f"success<{th:.0%}: clean loss (pts)"] = np.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("case").round(1)


#: The speech case's training-length table trains it this many times as long as its recipe.
LENGTH_FACTORS = (1, 2, 4)


def training_lengths(case, factors=LENGTH_FACTORS) -> dict:
    """``{epochs: case}``: the case study ``case`` trained ``factors`` times as many epochs as its
    recipe (the rest of the recipe unchanged): the training-length axis of the map of when pruning
    works, on a case study (Liu et al. 2018 trained their speech network for about 970 epochs)."""
    epochs = case.train["epochs"]
    return {f * epochs: case.variant(case.model, epochs=f * epochs) for f in factors}


def length_table(curves: dict, val_losses: dict) -> pd.DataFrame:
    """:func:`curve_summary` of one case trained for different numbers of epochs (``curves``:
    epochs -> its pruning curve), with the loss each model ends at on clean validation data
    (``val_losses``, same keys; shown x 1000, in millinats, so that the guarded table prints no
    bare fraction): the criterion a trainer would stop on, blind to the trigger."""
    table = curve_summary(curves)
    table.index.name = "epochs"
    table.insert(0, "val loss x 1000", (1000 * pd.Series(val_losses)).round().astype(int))
    return table


def trigger_placement(clean_means, triggered_means, curve: PruningCurve) -> dict:
    """Where the activation a trigger adds to the pruned layer lands, in %
    (:func:`fplab.activations.trigger_share`): on the channels dormant on clean data, on those the
    stopping rule prunes, and on the less active half of the layer. The pruning defense assumes
    the first two are large (Liu et al. 2018, section 3.1 and Fig. 4)."""
    order = curve.order
    return {"dormant channels %": 100 * dormant_fraction(clean_means),
            "stop rule prunes %": 100 * curve.stop / len(order),
            "added by trigger, on dormant %":
                100 * trigger_share(clean_means, triggered_means, dormant_channels(clean_means)),
            "on stop-rule pruned %": 100 * trigger_share(clean_means, triggered_means, order[:curve.stop]),
            "on less active half %":
                100 * trigger_share(clean_means, triggered_means, order[:len(order) // 2])}


def pruning_explorer(curve: PruningCurve, clean_means, triggered_means, title=""):
    """An ipywidgets slider over the fraction pruned: redraws the activations with the pruned
    channels greyed out and reports accuracy / success from the precomputed ``curve``."""
    import ipywidgets as widgets

    out = widgets.Output()

    def show(fraction):
        k = fraction_to_count(fraction, len(curve.order))
        row = curve.table.iloc[k]
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(8, 3))
            plot_activations(clean_means, triggered_means, curve.order[:k].tolist(), ax,
                             f"{title}: {k} of {len(curve.order)} channels pruned - clean accuracy "
                             f"{100 * row.clean_acc:.1f}%, attack success {100 * row.asr:.1f}%")
            plt.show()

    slider = widgets.FloatSlider(value=curve.stop_row.fraction, min=0.0, max=1.0,
                                 step=1 / len(curve.order), description="pruned",
                                 readout_format=".2f", continuous_update=True)
    widgets.interactive_output(show, {"fraction": slider})
    return widgets.VBox([slider, out])


def pruning_frames(curve: PruningCurve, clean_means, triggered_means, title="",
                   fractions=tuple(i / 10 for i in range(11))):
    """The kernel-free version of :func:`pruning_explorer`, for the static site as for Jupyter:
    one frame per fraction pruned (every frame read from the precomputed ``curve``; nothing is
    recomputed), shown with a slider. Top: the activations with the pruned channels in grey;
    bottom: the pruning curve with the chosen fraction marked."""
    from ..plots import slider_explorer
    table = curve.table

    def draw(fig, fraction):
        k = fraction_to_count(fraction, len(curve.order))
        row = table.iloc[k]
        top, bottom = fig.subplots(2, 1, height_ratios=(3, 2))
        plot_activations(clean_means, triggered_means, curve.order[:k].tolist(), top,
                         f"{title}: {k} of {len(curve.order)} channels pruned")
        bottom.plot(100 * table.fraction, 100 * table.clean_acc, color="tab:blue",
                    label=f"clean accuracy: {100 * row.clean_acc:.1f}%")
        bottom.plot(100 * table.fraction, 100 * table.asr, color="tab:red",
                    label=f"attack success: {100 * row.asr:.1f}%")
        bottom.axvline(100 * row.fraction, color="black", lw=1)
        bottom.set(xlabel="channels pruned (%)", ylabel="%", ylim=(-3, 103))
        bottom.legend(fontsize=8, loc="lower left")

    return slider_explorer(draw, [round(f, 2) for f in fractions], "fraction pruned",
                           figsize=(7, 5.5))


#: The map of when pruning works (issue 8): last-conv widths x training epochs, per profile.
CAPACITY_GRID = {"fast": {"widths": (16, 64, 256), "epochs": (1, 3, 9),
                          "sizes": {"train": 4000, "val": 1000, "test": 2000}},
                 "full": {"widths": (16, 32, 64, 128, 256), "epochs": (2, 8, 32), "sizes": None}}


def capacity_recipe(profile: str = "fast", seed: int = 0):
    """The backdoored MNIST recipe whose widths x epochs the map varies (chapter 1's BadNet on
    :data:`CAPACITY_GRID`'s subset sizes)."""
    from dataclasses import replace
    from ..attacks import badnets
    recipe = badnets.mnist_recipe(badnets.mnist_attack(), profile, seed)
    sizes = CAPACITY_GRID[profile]["sizes"]
    return replace(recipe, sizes=sizes) if sizes else recipe


#: The map on a case study: the speech case's last conv layer at these widths (its own is 256),
#: each trained 1, 2 and 4 times its recipe's epochs (:data:`LENGTH_FACTORS`).
SPEECH_MAP_WIDTHS = (64, 128, 256)
SPEECH_MAP_BASE = "speech_cnn_wide"


def speech_map_grid(profile: str = "fast", seed: int = 0):
    """``(recipe, widths, epochs)`` of the map on the speech case study: its baseline recipe,
    :data:`SPEECH_MAP_WIDTHS` and the epochs of :func:`training_lengths` (so its 256-channel row
    is the training-length table's models)."""
    from .casestudies import case_study
    speech = case_study("speech", profile, seed)
    return speech.baseline_recipe(), SPEECH_MAP_WIDTHS, tuple(training_lengths(speech))


def shipped_maps(profile: str = "fast") -> list[tuple[str, object, tuple, tuple, str]]:
    """``(label, recipe, widths, epochs, base network)`` of each capacity map whose table ships
    with fplab (``ship-weights`` writes them, ``retrain-shipped --only <label>`` recomputes them):
    the MNIST map (``capacity``) and the speech case study's (``capacity-speech``)."""
    grid = CAPACITY_GRID[profile]
    return [("capacity", capacity_recipe(profile), grid["widths"], grid["epochs"], "mnist_cnn"),
            ("capacity-speech", *speech_map_grid(profile), SPEECH_MAP_BASE)]


def plot_capacity_map(table: pd.DataFrame, title="When pruning works: MNIST BadNet"):
    """Two heatmaps (one per row, 784 px wide): attack success at the stopping rule, and the
    dormant fraction of the last conv layer, per width (rows) and epochs (columns)."""
    fig, axes = plt.subplots(2, 1, figsize=(6.5, 7))
    for ax, (column, label, cmap) in zip(axes, (
            ("stop_asr", "attack success at the stopping rule", "Reds"),
            ("dormant", "dormant channels (mean clean act. < 1% of max)", "Blues"))):
        grid = table.pivot(index="width", columns="epochs", values=column)
        image = ax.imshow(100 * grid.values, cmap=cmap, vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(len(grid.columns)), grid.columns)
        ax.set_yticks(range(len(grid.index)), grid.index)
        ax.set_xlabel("training epochs")
        ax.set_ylabel("last-conv channels")
        ax.set_title(label, fontsize=11)
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                v = 100 * grid.values[i, j]
                ax.text(j, i, f"{v:.1f}%", ha="center", va="center", fontsize=10,
                        color="white" if v > 60 else "black")
        fig.colorbar(image, ax=ax, label="%")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
