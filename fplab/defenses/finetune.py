"""Fine-tuning defense (Liu et al. 2018, section 3.3): retrain a copy on the defender's clean data.

Starting from the suspect weights, a few epochs of training on clean validation images with a
small learning rate. It restores clean behaviour cheaply, but a backdoor that lives in channels
dormant on clean data gets no gradient (``ReLU'(z) = 0`` there) and can survive.
"""

from __future__ import annotations

from torch import nn

from ..data import Data
from ..models import copy_model
from ..paths import cache_dir
from ..store import fingerprint, load_result, save_result
from ..train import train
from .pruning import channel_masks

#: The defender's fine-tuning budget (the same for fine-tuning and fine-pruning).
DEFAULT_EPOCHS = 5
DEFAULT_LR = 1e-4


def fine_tune(model: nn.Module, data: Data, epochs: int = DEFAULT_EPOCHS, lr: float = DEFAULT_LR,
              batch_size: int = 32, seed: int = 0, progress: bool = True, cache: bool = False,
              **options) -> nn.Module:
    """A fine-tuned *copy* of ``model`` (``model`` is never modified); masks on it are kept.

    ``options`` go to :func:`fplab.train.train` (``optimizer``, ``weight_decay``, ...).
    ``cache=True`` stores the fine-tuned weights under ``$FPLAB_CACHE/finetune``, keyed by a hash
    of the weights, the channel masks, the data and every argument, and reuses them (verified).
    """
    if data is None or len(data) == 0:
        raise ValueError("data is empty: fine-tuning needs the defender's clean images")
    out = copy_model(model)
    args = dict(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, **options)
    if cache:
        folder = cache_dir() / "finetune"
        key = fingerprint(model.state_dict(), channel_masks(model), data.x, data.y, args)
        hit = load_result(folder, key)
        if hit is not None:
            out.load_state_dict(hit[0])
            return out.eval()
    train(out, data, progress=progress, desc="fine-tuning", **args)
    out.eval()
    if cache:
        save_result(folder, key, out.state_dict(), {"arguments": args})
    return out
