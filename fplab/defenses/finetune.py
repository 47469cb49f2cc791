"""Fine-tuning defense (Liu et al. 2018, section 3.3): retrain a copy on the defender's clean data.

Starting from the suspect weights, a few epochs of training on clean validation images with a
small learning rate. It restores clean behaviour cheaply, but a backdoor that lives in channels
dormant on clean data gets no gradient (``ReLU'(z) = 0`` there) and can survive.
"""

from __future__ import annotations

from torch import nn

from ..data import Data
from ..models import copy_model
from ..train import train

#: The defender's fine-tuning budget (the same for fine-tuning and fine-pruning).
DEFAULT_EPOCHS = 5
DEFAULT_LR = 1e-4


def fine_tune(model: nn.Module, data: Data, epochs: int = DEFAULT_EPOCHS, lr: float = DEFAULT_LR,
              batch_size: int = 32, seed: int = 0, progress: bool = True, **options) -> nn.Module:
    """A fine-tuned *copy* of ``model`` (``model`` is never modified); masks on it are kept."""
    if data is None or len(data) == 0:
        raise ValueError("data is empty: fine-tuning needs the defender's clean images")
    out = copy_model(model)
    train(out, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, progress=progress,
          desc="fine-tuning", **options)
    out.eval()
    return out
