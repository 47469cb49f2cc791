"""A model zoo: a recipe maps to a trained model, cached on disk under the recipe's hash.

A :class:`Recipe` says everything that determines a model (dataset, profile, sizes, model,
attack, training hyper-parameters, seed, and which *trainer* builds it). Its SHA-256 over the
canonical JSON is the cache key. :func:`load` returns the cached model when it is there, and
trains, saves and returns it otherwise. Every entry is a folder ``$FPLAB_CACHE/zoo/<key>/``
holding ``model.pt`` (a ``state_dict``) and ``manifest.json`` (the recipe, the architecture and
the SHA-256 of ``model.pt``), each written atomically. Training runs on the GPU when there is
one (:func:`fplab.train.default_device`); models are stored and returned on the CPU.

Loading verifies the SHA-256 and uses ``torch.load(weights_only=True)``, so a tampered or
truncated file is refused with :class:`~fplab.errors.IntegrityError` and never silently trained
over: the BadNets paper's point (section 6) that a downloaded model must match its published
hash, or it may be someone else's backdoored network.

Trainers are registered by name (``kind``); chapters add their own (pruning-aware attack,
transfer learning) with :func:`register_trainer`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from torch import nn

from . import __version__
from .data import Splits, load_dataset, select_classes
from .errors import check_choice
from .models import build_model
from .paths import cache_dir
from .poison import Attack, poison
from .store import atomic_save, atomic_write_json, verified_load
from .train import default_device, seed_everything, train


@dataclass(frozen=True)
class Recipe:
    """Everything that determines a trained model. Equal recipes give equal models."""

    dataset: str
    model: str
    attack: dict | None = None            # Attack.spec(), or None for a clean model
    train: dict = field(default_factory=lambda: {"epochs": 2, "lr": 1e-3, "batch_size": 128})
    seed: int = 0
    profile: str = "fast"
    sizes: dict | None = None
    classes: list | None = None           # keep only these classes, relabelled 0..k-1
    kind: str = "standard"                # which registered trainer builds it
    extra: dict = field(default_factory=dict)  # trainer-specific options

    def key(self) -> str:
        """First 16 hex digits of the SHA-256 of the recipe's canonical JSON."""
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def clean(self, train: dict | None = None) -> "Recipe":
        """The clean model's recipe for the same data, network and seed (``train``: its training
        hyper-parameters, default this recipe's): the starting point of the CLB and pruning-aware
        trainers."""
        return replace(self, attack=None, kind="standard", extra={},
                       train=dict(self.train if train is None else train))

    def get_attack(self) -> Attack | None:
        return Attack(**self.attack) if self.attack else None

    def splits(self, root=None) -> Splits:
        splits = load_dataset(self.dataset, root=root, profile=self.profile, sizes=self.sizes,
                              seed=self.seed)
        return select_classes(splits, self.classes) if self.classes is not None else splits


@dataclass
class ZooModel:
    """A model from the zoo and where it came from."""

    model: nn.Module
    recipe: Recipe
    path: Path
    sha256: str
    trained_now: bool
    train_seconds: float


_TRAINERS: dict[str, Callable[[Recipe, Splits], nn.Module]] = {}


def register_trainer(kind: str):
    """Decorator: ``fn(recipe, splits) -> nn.Module`` builds models of recipes with this ``kind``."""
    def wrap(fn):
        _TRAINERS[kind] = fn
        return fn
    return wrap


def fit(recipe: Recipe, splits: Splits, data, label: str) -> nn.Module:
    """A new ``recipe.model`` (seeded), on :func:`~fplab.train.default_device`, trained on ``data``
    with ``recipe.train``: the last step of every from-scratch trainer."""
    model = build_model(recipe.model, splits.shape, splits.num_classes, seed=recipe.seed)
    model.to(default_device())
    train(model, data, seed=recipe.seed, desc=f"training {recipe.dataset}/{recipe.model} {label}",
          **recipe.train)
    return model


@register_trainer("standard")
def train_standard(recipe: Recipe, splits: Splits) -> nn.Module:
    """Train ``recipe.model`` from scratch on the (possibly poisoned) training split."""
    seed_everything(recipe.seed)
    data = splits.train
    attack = recipe.get_attack()
    if attack is not None:
        data = poison(data, attack, splits.num_classes, seed=recipe.seed).data
    return fit(recipe, splits, data, attack.trigger if attack else "clean")


def entry_dir(recipe: Recipe, cache=None) -> Path:
    return cache_dir(cache) / "zoo" / recipe.key()


def load(recipe: Recipe, root=None, cache=None, splits: Splits | None = None) -> ZooModel:
    """The model of ``recipe``: from the cache (verified), else trained now and cached.

    ``splits`` may be passed to save reloading the dataset when the caller already has it
    (it must be ``recipe.splits()``). Raises :class:`~fplab.errors.IntegrityError` when the
    cached file does not match its manifest; the file is left as it is.
    """
    check_choice("kind", recipe.kind, sorted(_TRAINERS))
    folder = entry_dir(recipe, cache)
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        state = verified_load(folder / "model.pt", manifest["sha256"])
        arch = manifest["architecture"]
        model = build_model(arch["model"], arch["in_shape"], arch["num_classes"])
        model.load_state_dict(state)
        model.eval()
        return ZooModel(model, recipe, folder / "model.pt", manifest["sha256"], False,
                        manifest["train_seconds"])
    splits = splits or recipe.splits(root)
    start = time.perf_counter()
    model = _TRAINERS[recipe.kind](recipe, splits)
    seconds = time.perf_counter() - start
    model.cpu().eval()  # models are stored and returned on the CPU
    digest = atomic_save(model.state_dict(), folder / "model.pt")
    out = model.classifier[-1].out_features
    atomic_write_json({
        "recipe": asdict(recipe), "key": recipe.key(), "sha256": digest,
        "architecture": {"model": recipe.model, "in_shape": list(splits.shape), "num_classes": out},
        "train_seconds": round(seconds, 2), "fplab_version": __version__,
    }, manifest_path)
    return ZooModel(model, recipe, folder / "model.pt", digest, True, seconds)
