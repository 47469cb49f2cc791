"""ipywidgets explorers. They run in Jupyter / Colab; the static site shows a figure instead."""

from __future__ import annotations

from dataclasses import replace

import matplotlib.pyplot as plt

from .metrics import attack_success_rate
from .poison import Attack
from .train import predict


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
            fig, axes = plt.subplots(1, 8, figsize=(12, 2))
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
