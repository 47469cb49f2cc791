"""Figures, tables and the ipywidgets explorer of chapters 2-4 (pruning, pruning-aware attack,
fine-pruning)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch
import pandas as pd
import torch

from .activations import dormant_channels, dormant_fraction, trigger_share
from .defenses.pruning import PruningCurve, fraction_to_count


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
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.8))
    for ax, (title, curve) in zip(np.atleast_1d(axes), curves.items()):
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
