"""Training, fine-tuning and prediction on in-memory tensors, with progress bars.

Mini-batches are drawn by indexing the tensors directly (no DataLoader workers), with the
shuffle order fixed by ``seed``: on a CPU the same call gives the same weights every time.
"""

from __future__ import annotations

import os
import random
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor, nn
from .progress import progress_bar

from .data import Data
from .errors import check_choice

OPTIMIZERS = ("adam", "sgd")


def default_device() -> torch.device:
    """``$FPLAB_DEVICE`` if set, else CUDA when available, else the CPU (where models train)."""
    return torch.device(os.environ.get("FPLAB_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters live (the CPU for a model without parameters)."""
    return next(model.parameters(), torch.empty(0)).device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU runs are then deterministic)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def preserved_rng():
    """Run a block without changing the global generators (torch's CPU and CUDA ones, Python's,
    NumPy's). Around work that is done only on a cache miss (training a zoo model, computing an
    attack): a notebook then draws the same random numbers after it whether the result was
    computed or loaded, so a cold and a warm run print the same."""
    py, npy = random.getstate(), np.random.get_state()
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def random_shift(x: Tensor, pixels: int, gen: torch.Generator) -> Tensor:
    """Shift each image by up to ``pixels`` in each direction (zero padding): cheap augmentation."""
    if pixels <= 0:
        return x
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (pixels,) * 4)
    dy, dx = torch.randint(0, 2 * pixels + 1, (2, n), generator=gen)
    rows = (torch.arange(h)[None, :] + dy[:, None])[:, None, :, None]
    cols = (torch.arange(w)[None, :] + dx[:, None])[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None],
                  rows, cols]


#: :func:`train`'s default learning rate.
LR = 1e-3


def lr_at(lr: float, milestones, epoch: int) -> float:
    """The learning rate :func:`train`'s step schedule gives epoch ``epoch`` (0-based; ``epoch =
    epochs``: the rate it ends at): ``lr`` divided by 10 for every milestone at or before it."""
    return lr * 0.1 ** sum(m <= epoch for m in milestones)


def epoch_options(options: dict, epoch: int) -> dict:
    """:func:`train`'s keyword arguments ``options`` (a recipe's ``train``) for epoch ``epoch``
    alone (0-based; ``epoch = epochs``: one more after the last): the step schedule's rate then
    (:func:`lr_at`), without ``epochs`` and ``milestones``. For trainers that call :func:`train`
    one epoch at a time, or continue after it."""
    rest = {k: v for k, v in options.items() if k not in ("epochs", "milestones")}
    rest["lr"] = lr_at(options.get("lr", LR), options.get("milestones", ()), epoch)
    return rest


def train(model: nn.Module, data: Data, epochs: int, lr: float = LR, batch_size: int = 128,
          optimizer: str = "adam", weight_decay: float = 0.0, momentum: float = 0.9,
          shift: int = 0, seed: int = 0, params=None, desc: str = "training",
          progress: bool = True, on_epoch=None, milestones=()) -> list[float]:
    """Train ``model`` in place on ``data`` with cross-entropy; return the mean loss per epoch.

    ``params`` restricts the update to some parameters (fine-tuning only the last layers, as in
    the BadNets transfer-learning attack); ``shift`` adds random-shift augmentation.
    ``on_epoch(epoch)`` (1-based) is called after every epoch, e.g. to score a held-out set; it
    does not change the training (the model is put back in training mode after it).

    ``milestones``: epochs after which the learning rate is divided by 10 (a step schedule:
    torch's ``MultiStepLR`` with ``gamma=0.1``; empty: constant ``lr``).

    ``seed`` fixes everything random here: the batch order, the shifts and the dropout masks
    (torch's global generator is seeded inside a fork of it, so the caller's is left as it was).
    Without that, a network with dropout trained differently after a cached model was loaded
    than after one was trained, and chapter 4's fine-tuning budget changed between runs.
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"epochs={epochs} must be >= 0 and batch_size={batch_size} >= 1")
    if len(data) == 0:
        raise ValueError("data is empty: nothing to train on")
    if any(not 0 < m < epochs for m in milestones) or list(milestones) != sorted(set(milestones)):
        raise ValueError(f"milestones={list(milestones)} must be increasing epochs in "
                         f"1..{epochs - 1}")
    params = list(model.parameters() if params is None else params)
    opt = (torch.optim.Adam(params, lr=lr, weight_decay=weight_decay) if optimizer == "adam"
           else torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay))
    schedule = torch.optim.lr_scheduler.MultiStepLR(opt, list(milestones), gamma=0.1)
    gen = torch.Generator().manual_seed(seed)
    device = model_device(model)  # batches follow the model (CPU or GPU)
    steps = (len(data) + batch_size - 1) // batch_size
    losses = []
    model.train()
    with preserved_rng(), progress_bar(total=epochs * steps, desc=desc, progress=progress) as bar:
        torch.manual_seed(seed)
        for _ in range(epochs):
            order, total = torch.randperm(len(data), generator=gen), 0.0
            for start in range(0, len(data), batch_size):
                idx = order[start:start + batch_size]
                x = random_shift(data.x[idx], shift, gen).to(device)
                loss = nn.functional.cross_entropy(model(x), data.y[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                bar.update()
            losses.append(total / len(data))
            schedule.step()
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if on_epoch is not None:
                on_epoch(len(losses))
                model.train()
    model.eval()
    return losses


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    """Predicted labels for ``x``, on the CPU (the model is put in eval mode and left there)."""
    model.eval()
    device = model_device(model)
    return torch.cat([model(x[i:i + batch_size].to(device)).argmax(1).cpu()
                      for i in range(0, len(x), batch_size)])
