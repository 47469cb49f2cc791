"""Chapter 4 (fine-pruning): the paper's Table 1 and Table 2 beside ours, and the defender's
options as a figure.

``results`` maps ``(case name, attacker)`` (attacker: ``"baseline"`` / ``"pruning_aware"``) to
:func:`fplab.defenses.fineprune.compare_defenses`'s dict: defense -> ``{"clean_acc", "asr"}``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from .. import game
from . import report
from .casestudies import PAPER_TABLE1

ATTACKERS = ("baseline", "pruning_aware")
STRATEGIES = ("none", "prune", "fine-tune", "fine-prune")
# Table 2 of Liu et al. (2018): defender utility (clean accuracy - attack success), speech
PAPER_UTILITY = {("speech", "fine-tune"): (0.555, 0.468), ("speech", "fine-prune"): (0.968, 0.986)}


def _label(kind: str) -> str:
    return kind.replace("_", "-")


def table1(cases, results: dict) -> pd.DataFrame:
    """Clean accuracy (cl) and attack success (bd) per case, attacker and defense, with the
    paper's Table 1 beside them."""
    rows = []
    for c in cases:
        paper = PAPER_TABLE1[c.name]
        for a, kind in enumerate(ATTACKERS):
            for i, strat in enumerate(("none", "fine-tune", "fine-prune")):
                r = results[c.name, kind][strat]
                rows.append({"case": c.name, "attack": _label(kind), "defense": strat,
                             "cl": r["clean_acc"], "bd": r["asr"],
                             "paper cl": paper[6 * a + 2 * i], "paper bd": paper[6 * a + 2 * i + 1]})
    return pd.DataFrame(rows).set_index(["case", "attack", "defense"]).round(3)


def utility_table(cases, results: dict) -> pd.DataFrame:
    """The defender's utility (clean accuracy - attack success) per defense and attacker: the
    paper's Table 2 (which it reports for speech)."""
    rows = []
    for c in cases:
        for strat in STRATEGIES:
            row = {"case": c.name, "defense": strat}
            for kind in ATTACKERS:
                r = results[c.name, kind][strat]
                row[f"vs {_label(kind)}"] = r["clean_acc"] - r["asr"]
            if (c.name, strat) in PAPER_UTILITY:
                row["paper vs baseline"], row["paper vs pruning-aware"] = PAPER_UTILITY[c.name, strat]
            rows.append(row)
    return pd.DataFrame(rows).set_index(["case", "defense"]).round(3)


def plot_defenses(cases, results: dict):
    """Clean accuracy and attack success of every defense, one panel per case and attacker."""
    fig, axes = plt.subplots(2, len(cases), figsize=(8, 6.5), sharey=True, squeeze=False)
    xs = range(len(STRATEGIES))
    for col, c in enumerate(cases):
        for row, kind in enumerate(ATTACKERS):
            ax, r = axes[row, col], results[c.name, kind]
            ax.bar([x - 0.2 for x in xs], [100 * r[s]["clean_acc"] for s in STRATEGIES], 0.4,
                   label="clean accuracy", color="tab:blue")
            ax.bar([x + 0.2 for x in xs], [100 * r[s]["asr"] for s in STRATEGIES], 0.4,
                   label="attack success", color="tab:red")
            ax.set_xticks(list(xs), STRATEGIES, rotation=30, fontsize=8)
            ax.set_title(f"{c.name}, {_label(kind)} attack", fontsize=9)
            ax.set_ylim(0, 105)
            if col == 0:
                ax.set_ylabel("%")
    axes[0, 0].legend(loc="lower left", fontsize=7)
    fig.suptitle("The defender's options against each attacker (fast profile)")
    fig.tight_layout()
    return fig


def table1_view(cases, results: dict):
    """:func:`table1` as an HTML table in percent (one decimal), with the differences
    (ours - paper, points)."""
    t = table1(cases, results)
    t["cl - paper"], t["bd - paper"] = t["cl"] - t["paper cl"], t["bd"] - t["paper bd"]
    return report.table(t, percent_columns=list(t.columns),
                        caption="Table 1, ours beside the paper's (differences in points, as %)")


def utility_view(cases, results: dict):
    """:func:`utility_table` in percent points (clean accuracy - attack success)."""
    t = utility_table(cases, results)
    return report.table(t, percent_columns=list(t.columns),
                        caption="Defender's utility, clean accuracy - attack success (Table 2)")


def best_responses(utility: pd.DataFrame) -> pd.DataFrame:
    """Per case: the defenses with the highest utility in each column
    (:func:`fplab.game.best_responses`; ties joined by " / ": each is a best response), and the
    max-min defense."""
    rows = []
    for case in utility.index.get_level_values(0).unique():
        u = utility.loc[case][["vs baseline", "vs pruning-aware"]]
        best = game.best_responses(u)["defender"]
        worst = u.min(axis=1)
        rows.append({"case": case, "best vs baseline": " / ".join(best["vs baseline"]),
                     "best vs pruning-aware": " / ".join(best["vs pruning-aware"]),
                     "max-min defense": " / ".join(worst.index[worst >= worst.max() - game.TOLERANCE]),
                     "its worst-case utility": worst.max(),
                     "fine-prune best in both": all("fine-prune" in b for b in best.values())})
    return pd.DataFrame(rows).set_index("case")


def budget_frames(cases, results: dict):
    """The defender's fine-tuning budget as a kernel-free slider over the epochs (1..max) of the
    grid :func:`~fplab.defenses.finetune.select_budget` searched. One panel per case (columns)
    and attacker (rows): the held-out clean accuracy after each epoch, per learning rate
    (colour), for fine-tuning (solid) and fine-pruning (dashed), drawn up to the slider's epoch
    and faint beyond it; dots mark what the defender sees at that epoch, a star the setting she
    chose (the best held-out accuracy over the whole grid). Every frame is read from the
    ``"budget"`` scores already in ``results`` (``compare_defenses(..., select=...)``):
    nothing is trained or evaluated here."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    from ..plots import slider_explorer
    budgets = {}
    for c in cases:
        for kind in ATTACKERS:
            if "budget" not in results[c.name, kind]:
                raise ValueError(f"results[{c.name!r}, {kind!r}] has no 'budget': run "
                                 "compare_defenses with select=... (a dict, {} for defaults)")
            budgets[c.name, kind] = results[c.name, kind]["budget"]
    keys = {key for per_defense in budgets.values() for b in per_defense.values()
            for key in b.scores}
    lrs, epochs = sorted({lr for lr, _ in keys}), sorted({e for _, e in keys})
    defenses = list(dict.fromkeys(d for per_defense in budgets.values() for d in per_defense))
    dashes = dict(zip(defenses, ("-", "--", ":", "-.")))
    color = {lr: f"C{i}" for i, lr in enumerate(lrs)}
    handles = [Line2D([], [], color=color[lr], ls=dashes[d], label=f"{d}, lr {lr:.0e}")
               for d in defenses for lr in lrs]
    handles += [Line2D([], [], ls="", marker="o", color="grey", label="at this epoch"),
                Line2D([], [], ls="", marker="*", ms=11, color="grey", mec="black",
                       label="chosen budget")]

    def draw(fig, epoch):
        grid = fig.add_gridspec(len(ATTACKERS) + 1, len(cases),
                                height_ratios=(4,) * len(ATTACKERS) + (1.3,))
        for row, kind in enumerate(ATTACKERS):
            for col, c in enumerate(cases):
                ax = fig.add_subplot(grid[row, col])
                for d, b in budgets[c.name, kind].items():
                    for lr in lrs:
                        xs = [e for e in epochs if (lr, e) in b.scores]
                        ys = [100 * b.scores[lr, e][0] for e in xs]
                        seen = sum(e <= epoch for e in xs)
                        style = dict(color=color[lr], ls=dashes[d])
                        ax.plot(xs, ys, alpha=0.25, lw=1, **style)
                        ax.plot(xs[:seen], ys[:seen], lw=1.8, **style)
                        if (lr, epoch) in b.scores:
                            ax.plot([epoch], [100 * b.scores[lr, epoch][0]], "o", ms=5,
                                    color=color[lr])
                    ax.plot([b.epochs], [100 * b.held_out_accuracy], "*", ms=11,
                            color=color[b.lr], mec="black", mew=0.6)
                ax.axvline(epoch, color="black", lw=0.8)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.tick_params(labelsize=9)
                ax.set_title(f"{c.name}, {_label(kind)} attack", fontsize=9)
                if row == len(ATTACKERS) - 1:
                    ax.set_xlabel("epochs", fontsize=9)
                if col == 0:
                    ax.set_ylabel("held-out clean\naccuracy (%)", fontsize=9)
        legend = fig.add_subplot(grid[-1, :])
        legend.axis("off")
        legend.legend(handles=handles, loc="center", ncol=3, fontsize=9, frameon=False)

    return slider_explorer(draw, epochs, "fine-tuning epochs", figsize=(7, 4.5))
