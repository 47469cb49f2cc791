"""Figures the chapters share: image grids, activation bars, curves. Each returns the figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from torch import Tensor


def image_grid(images: Tensor, titles: list[str] | None = None, ncols: int = 8,
               title: str | None = None, size: float = 1.6, cmap: str = "gray"):
    """Show a batch ``(N, C, H, W)`` of images in [0, 1] as a grid with optional titles."""
    n = len(images)
    ncols = min(ncols, n)
    size = min(size, 8 / ncols)  # the page column: at most 8 inches wide
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = images[i].detach().cpu()
            ax.imshow(img[0] if img.shape[0] == 1 else img.permute(1, 2, 0), cmap=cmap,
                      vmin=0, vmax=1, interpolation="nearest")
            if titles:
                ax.set_title(titles[i], fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def activation_bars(clean: Tensor, triggered: Tensor, highlight: Tensor | None = None,
                    title: str = "Mean activation of each channel of the last conv layer"):
    """Per-channel mean activations on clean and triggered inputs (top) and their difference
    (bottom), with the ``highlight`` channels (e.g. the backdoor neurons) in red."""
    channels = torch.arange(len(clean))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.4), sharex=True)
    top.bar(channels - 0.2, clean, width=0.4, label="clean inputs", color="tab:blue")
    top.bar(channels + 0.2, triggered, width=0.4, label="triggered inputs", color="tab:orange")
    top.set_ylabel("mean activation\n(after ReLU)")
    top.set_title(title)
    top.legend()
    colours = ["tab:grey"] * len(clean)
    for c in (highlight.tolist() if highlight is not None else []):
        colours[c] = "tab:red"
    bottom.bar(channels, triggered - clean, color=colours)
    bottom.axhline(0, color="black", linewidth=0.8)
    bottom.set_ylabel("triggered - clean")
    bottom.set_xlabel("channel of the last convolutional layer (red: backdoor neurons)")
    fig.tight_layout()
    return fig


def curves(x, series: dict[str, list[float]], xlabel: str, ylabel: str, title: str,
           logx: bool = False, reference: dict[str, float] | None = None):
    """Line plot of several named series over ``x``; ``reference`` adds dashed horizontal lines."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, values in series.items():
        ax.plot(x, values, marker="o", label=name)
    for name, value in (reference or {}).items():
        ax.axhline(value, linestyle="--", color="grey", linewidth=1)
        ax.annotate(name, (x[0], value), fontsize=8, color="grey", va="bottom")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def heatmap(values: Tensor, xlabel: str, ylabel: str, title: str, colorbar: str,
            ticks: tuple[list, list] | None = None):
    """A labelled heat map of a 2-D tensor (e.g. attack success per trigger position)."""
    fig, ax = plt.subplots(figsize=(4.8, 4.0))
    im = ax.imshow(values, cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label=colorbar)
    if ticks:
        ax.set_yticks(range(len(ticks[0])), ticks[0])
        ax.set_xticks(range(len(ticks[1])), ticks[1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def slider_explorer(draw, values, label: str, figsize=(7, 3.6), dpi: int = 80):
    """An explorer that needs no kernel: ``draw(fig, value)`` is drawn for every one of
    ``values`` now, and the frames are shown with a slider (matplotlib's JavaScript animation
    player; self-contained HTML, no server, no CDN), so it works on the static site as in
    Jupyter. Returns an IPython ``HTML`` object; the figure itself is closed."""
    from IPython.display import HTML
    from matplotlib import animation

    values = list(values)
    if not values:
        raise ValueError("values must list at least one setting to explore")
    fig = plt.figure(figsize=figsize, dpi=dpi)

    def frame(i):
        fig.clear()
        draw(fig, values[i])
        fig.suptitle(f"{label} = {values[i]}", fontsize=11)
        fig.tight_layout()

    anim = animation.FuncAnimation(fig, frame, frames=len(values), interval=600, repeat=False)
    try:
        return HTML(f'<div class="fplab-explorer">{anim.to_jshtml(default_mode="once")}</div>')
    finally:
        plt.close(fig)
