"""Chapter 1 (BadNets): the transfer-learning attack's tables and the trigger explorer.

The explorer is an ipywidgets app: it runs in Jupyter / Colab; the static site shows a figure.
"""

from __future__ import annotations

from dataclasses import replace

import matplotlib.pyplot as plt
import pandas as pd

from ..attacks.transfer import transfer
from ..data import Splits
from ..metrics import accuracy, attack_success_rate
from ..poison import Attack
from ..train import predict
from ..triggers import Trigger
from .memo import measured

# Gu et al. (2017), US -> Swedish signs: clean network / BadNet, clean and triggered accuracy (%)
PAPER_TRANSFER = {"paper: clean %": [72.7, 74.9], "paper: triggered %": [70.2, 61.6],
                  "paper: drop": [2.5, 13.3]}


def pct(value: float) -> float:
    """A fraction as a percentage with one decimal."""
    return round(100 * value, 1)


def transfer_scores(network, task: Splits, trigger: Trigger, epochs: int, seed: int = 0):
    """Retrain ``network``'s fully connected layers on ``task`` (the transfer-learning attack's
    victim) and return its new-task accuracy (%) on clean and on triggered test images. Cached
    (:func:`fplab.chapters.memo.measured`)."""
    triggered = trigger.apply(task.test.x)

    def compute():
        adapted = transfer(network, task.train, task.num_classes, epochs=epochs, seed=seed)
        triggered_acc = (adapted(triggered).argmax(1) == task.test.y).float().mean().item()
        return [pct(accuracy(adapted, task.test)), pct(triggered_acc)]

    parts = (task.train.x, task.train.y, task.test.x, task.test.y, triggered, task.num_classes,
             epochs, seed)
    return tuple(measured("transfer_scores", network, parts, compute))


def transfer_table(networks: dict, task: Splits, trigger: Trigger, epochs: int,
                   seed: int = 0) -> pd.DataFrame:
    """New-task clean and triggered accuracy of each of ``networks`` (name -> model) after
    transfer learning, the drop between them, and the paper's figures beside them."""
    columns = ["new-task clean accuracy %", "new-task triggered accuracy %"]
    table = pd.DataFrame([dict(zip(columns, transfer_scores(net, task, trigger, epochs, seed)),
                               network=name) for name, net in networks.items()]).set_index("network")
    table["drop (points)"] = (table[columns[0]] - table[columns[1]]).round(1)
    for column, values in PAPER_TRANSFER.items():
        table[column] = values
    return table


def trigger_explorer(model, data, attack: Attack, num_classes: int, sweep: dict[float, dict]):
    """Move the trigger (top / left sliders) or pick a poison rate, and see the effect.

    ``model`` / ``attack``: the BadNet and its attack, evaluated live on ``data`` (a few hundred
    test images) with the trigger at the chosen position. ``sweep`` maps each trained poison rate
    to its measured ``{"clean_acc", "asr"}`` (precomputed, so choosing a rate is instant).
    """
    import ipywidgets as w

    _, H, W = data.x.shape[1:]
    size = attack.trigger_options.get("size", 4)
    top = w.IntSlider(value=H - size - 1, min=0, max=H - size, description="trigger top")
    left = w.IntSlider(value=W - size - 1, min=0, max=W - size, description="trigger left")
    rate = w.SelectionSlider(options=sorted(sweep), value=max(sweep), description="poison rate")
    out = w.Output()

    def redraw(*_):
        moved = replace(attack, trigger_options={**attack.trigger_options,
                                                 "position": (top.value, left.value)})
        triggered = moved.make_trigger(tuple(data.x.shape[1:])).apply(data.x[:8])
        preds = predict(model, triggered).tolist()
        asr = attack_success_rate(model, data, moved, num_classes)
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, 8, figsize=(8, 1.6))
            for ax, img, p in zip(axes, triggered, preds):
                ax.imshow(img[0] if img.shape[0] == 1 else img.permute(1, 2, 0), cmap="gray")
                ax.set_title(f"predicted {p}", fontsize=9)
                ax.axis("off")
            r = sweep[rate.value]
            fig.suptitle(f"trigger at ({top.value}, {left.value}): attack success "
                         f"{100 * asr:.1f}%   |   BadNet trained with {100 * rate.value:g}% "
                         f"poison: clean {100 * r['clean_acc']:.1f}%, success {100 * r['asr']:.1f}%")
            fig.tight_layout()
            plt.show()

    for control in (top, left, rate):
        control.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([top, left, rate]), out])


def trigger_frames(model, data, attack: Attack, rows, cols, grid, n: int = 6):
    """The kernel-free version of :func:`trigger_explorer`: a slider that moves the trigger
    along the diagonal of the grid of :func:`~fplab.attacks.badnets.success_by_position`
    (``rows``, ``cols``, ``grid``: its result). Each frame shows ``n`` test digits with the
    trigger at that position and the BadNet's predictions (red: the target label), and the
    success map with the position marked; the success rates are the precomputed ``grid``, so
    only ``n`` predictions are made per frame, when the notebook runs."""
    import numpy as np

    from ..plots import slider_explorer
    size = attack.trigger_options.get("size", 4)
    success = np.asarray(grid.numpy() if hasattr(grid, "numpy") else grid, dtype=float)
    steps = min(len(rows), len(cols))
    positions = [(rows[round(i * (len(rows) - 1) / max(steps - 1, 1))],
                  cols[round(i * (len(cols) - 1) / max(steps - 1, 1))]) for i in range(steps)]

    def draw(fig, position):
        top, left = position
        moved = replace(attack, trigger_options={**attack.trigger_options,
                                                 "position": (top, left)})
        images = moved.make_trigger(tuple(data.x.shape[1:])).apply(data.x[:n])
        preds = predict(model, images).tolist()
        grid_spec = fig.add_gridspec(2, n // 2 + 2)  # digits on the left, the map on the right
        for k in range(n):
            ax = fig.add_subplot(grid_spec[k // (n // 2), k % (n // 2)])
            ax.imshow(images[k, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"pred {preds[k]}", fontsize=9,
                         color="red" if preds[k] == attack.target else "black")
            ax.axis("off")
        ax = fig.add_subplot(grid_spec[:, n // 2:])
        shown = ax.imshow(100 * success, cmap="Reds", vmin=0, vmax=100)
        i, j = rows.index(top), cols.index(left)
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2, color="black"))
        ax.set_xticks(range(len(cols)), cols, fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set(xlabel="trigger left (px)", ylabel="trigger top (px)")
        ax.set_title(f"attack success here: {100 * success[i, j]:.1f}%", fontsize=9)
        fig.colorbar(shown, ax=ax, label="attack success (%)", shrink=0.8)

    return slider_explorer(draw, positions, f"trigger ({size}x{size}) at (top, left)",
                           figsize=(7, 3.4))


def expectations(mnist_table: pd.DataFrame, traffic_table: pd.DataFrame,
                 transfer_table: pd.DataFrame, triggers) -> list[dict]:
    """Chapter 1's claims (BadNets, Gu et al. 2017/2019) checked against its tables (in %), as
    rows for :func:`fplab.chapters.report.show_expectations`."""
    from .report import expectation

    def row(claim, measured, threshold, paper, higher=True):
        holds = measured >= threshold if higher else measured <= threshold
        return expectation(claim, holds, f"{measured:.1f}%", paper)

    m, t = mnist_table, traffic_table
    rows = [row("MNIST all-to-one: clean accuracy >= 98%", m.loc["all-to-one", "clean accuracy %"],
                98.0, "99.5%"),
            row("MNIST all-to-one: attack success >= 99%", m.loc["all-to-one", "attack success %"],
                99.0, "~100%"),
            row("MNIST all-to-all: clean accuracy >= baseline - 1",
                m.loc["all-to-all", "clean accuracy %"], m.loc["baseline", "clean accuracy %"] - 1,
                "99.5%"),
            row("MNIST all-to-all: backdoor success >= 90%", m.loc["all-to-all", "attack success %"],
                90.0, "99.4%")]
    for trig in triggers:
        rows += [row(f"GTSRB {trig}: attack success >= 90%", t.loc[trig, "stop -> speed limit %"],
                     90.0, "90-94%"),
                 row(f"GTSRB {trig}: clean accuracy >= clean model - 3",
                     t.loc[trig, "clean accuracy %"], t.loc["clean", "clean accuracy %"] - 3,
                     "87-90%")]
    bd, clean = transfer_table.loc["BadNet"], transfer_table.loc["clean network"]
    rows.append(row("transfer: triggered accuracy <= clean - 5 points",
                    bd["new-task triggered accuracy %"], bd["new-task clean accuracy %"] - 5,
                    "61.6% vs 74.9%", higher=False))
    rows.append(expectation("transfer: the BadNet drops more than the clean network",
                            bd["drop (points)"] > clean["drop (points)"],
                            f"{bd['drop (points)']:.1f} vs {clean['drop (points)']:.1f} points",
                            "13.3 vs 2.5 points"))
    return rows
