"""A model zoo: a recipe maps to a trained model, cached on disk under the recipe's hash.

A :class:`Recipe` says everything that determines a model (dataset, profile, sizes, model,
attack, training hyper-parameters, seed, and which *trainer* builds it). Its SHA-256 over the
canonical JSON is the cache key. :func:`load` returns the cached model when it is there, and
trains, saves and returns it otherwise. Every entry is a folder ``$FPLAB_CACHE/zoo/<key>/``
holding ``model.pt`` (a ``state_dict``), any file the trainer wrote beside it (the pruning-aware
attack's report) and ``manifest.json`` (the recipe, the architecture and the SHA-256 of every
file), each written atomically. Training runs on the GPU when there is one
(:func:`fplab.train.default_device`); models are stored on the CPU and returned on ``device``
(default: that same device).

Loading verifies the SHA-256 and uses ``torch.load(weights_only=True)``, so a tampered or
truncated file is refused with :class:`~fplab.errors.IntegrityError` and never silently trained
over: the BadNets paper's point (section 6) that a downloaded model must match its published
hash, or it may be someone else's backdoored network. The zoo never overwrites: a model file
without its manifest, a manifest that does not parse, or a manifest without its file are refused
the same way, with the folder to delete to rebuild the entry.

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

import torch
from torch import nn

from . import __version__
from .data import Splits, load_dataset, select_classes
from .errors import IntegrityError, check_choice
from .models import build_model
from .numerics import machine
from .paths import cache_dir
from .poison import Attack, poison
from .store import (ZOO_FOLDER, atomic_save, atomic_write_json, compute_context,
                    install_shipped_files, sha256_file, shipped_entry_files, verified_load,
                    verify_sha256)
from .train import default_device, preserved_rng, seed_everything, train


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

    def recipe_hash(self) -> str:
        """First 16 hex digits of the SHA-256 of the recipe's canonical JSON alone (what names a
        model shipped with fplab, which stands for its recipe in any compute context)."""
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def key(self) -> str:
        """The cache key: first 16 hex digits of the SHA-256 of the recipe's canonical JSON and
        the compute context it trains in (:func:`fplab.store.compute_context` on the default
        device: the same seed gives other weights on another thread count)."""
        text = json.dumps({"recipe": asdict(self), "context": compute_context(default_device())},
                          sort_keys=True, separators=(",", ":"))
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
    """The entry's folder; while its trainer runs, the folder being built (trainers write their
    extra files there, and :func:`load` records their SHA-256 in the manifest)."""
    if _BUILDING and _BUILDING[-1][0] == recipe.key():
        return _BUILDING[-1][1]
    return cache_dir(cache) / ZOO_FOLDER / recipe.key()


#: Trained weights shipped with the package (issue 8): ``<recipe_hash>/`` folders, copies of zoo
#: entries (a shipped model stands for its recipe in any compute context, so the single-threaded
#: weights serve a 2-thread ``make book`` too),
#: listed with the SHA-256 of every file in ``SHIPPED_MANIFEST``. :func:`load` installs a shipped
#: entry into the cache (verified) instead of training it; ``python -m fplab retrain-shipped``
#: retrains each from its recipe and compares.
SHIPPED_DIR = Path(__file__).parent / "weights"
SHIPPED_MANIFEST = SHIPPED_DIR / "SHA256SUMS.json"


def shipped_entries() -> dict:
    """``{key: {"files": {name: sha256}, "recipe": ..., "measured": {...}}}`` (empty when none)."""
    if not SHIPPED_MANIFEST.exists():
        return {}
    return json.loads(SHIPPED_MANIFEST.read_text())


def install_shipped(recipe: Recipe, cache=None) -> bool:
    """Copy the shipped entry of ``recipe`` (if there is one) into the cache, each file checked
    against :data:`SHIPPED_MANIFEST` first; ``True`` when installed. A file that does not match
    raises :class:`~fplab.errors.IntegrityError` and nothing is copied."""
    import os
    from .store import copy_verified
    entry = shipped_entries().get(recipe.recipe_hash())
    if entry is None or os.environ.get("FPLAB_NO_SHIPPED"):
        return False
    source, folder = SHIPPED_DIR / recipe.recipe_hash(), entry_dir(recipe, cache)
    copy_verified([(source / name, folder / name, entry["files"][name])
                   for name in sorted(entry["files"], key=lambda n: n == "manifest.json")])
    return True  # (manifest last: an interrupted copy is never a hit)


_BUILDING: list[tuple[str, Path]] = []


def _refuse(folder: Path, problem: str) -> IntegrityError:
    return IntegrityError(f"zoo entry {folder}: {problem}. fplab will not load it or train over "
                          f"it. To rebuild it, delete the folder (rm -r '{folder}') and load the "
                          "recipe again (fplab.zoo.load trains it anew).")


def _manifest(folder: Path) -> dict | None:
    """The entry's verified manifest, ``None`` for an absent entry, else :class:`IntegrityError`."""
    path = folder / "manifest.json"
    if not path.exists():
        stray = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) \
            if folder.is_dir() else []
        if stray:
            raise _refuse(folder, f"{', '.join(stray)} without manifest.json (an interrupted or "
                                  "foreign write)")
        return None
    try:
        manifest = json.loads(path.read_text())
        manifest["sha256"], manifest["architecture"]["model"]  # noqa: B018 (the keys load needs)
    except (ValueError, KeyError, TypeError) as error:
        raise _refuse(folder, f"manifest.json is corrupt ({type(error).__name__}: {error})") from None
    if not (folder / "model.pt").exists():
        raise _refuse(folder, "manifest.json is there but model.pt is missing")
    return manifest


def load_json(recipe: Recipe, name: str, cache=None):
    """A JSON file a trainer wrote into ``recipe``'s entry, verified against the SHA-256 that the
    manifest records for it (:class:`~fplab.errors.IntegrityError` otherwise)."""
    folder = entry_dir(recipe, cache)
    manifest = _manifest(folder)
    if manifest is None:
        raise _refuse(folder, f"there is no trained entry, so no {name}")
    expected = manifest.get("files", {}).get(name)
    if expected is None:
        raise _refuse(folder, f"the manifest records no SHA-256 for {name}")
    try:
        verify_sha256(folder / name, expected)
    except IntegrityError as error:
        raise _refuse(folder, str(error)) from None
    return json.loads((folder / name).read_text())


def load(recipe: Recipe, root=None, cache=None, splits: Splits | None = None,
         device=None) -> ZooModel:
    """The model of ``recipe``: from the cache (verified), else trained now and cached; returned
    on ``device`` (default :func:`~fplab.train.default_device`).

    ``splits`` may be passed to save reloading the dataset when the caller already has it
    (it must be ``recipe.splits()``). Raises :class:`~fplab.errors.IntegrityError` when the
    cached file does not match its manifest, when a file is there without its manifest or the
    manifest without its file, or when the manifest is corrupt; the files are left as they are.

    The global random generators are left as they were, trained or loaded (a notebook's
    later random draws do not depend on what was in the cache).
    """
    with preserved_rng():
        return _load(recipe, root, cache, splits, device)


def entry_model(folder: Path, manifest: dict | None = None) -> nn.Module:
    """The network stored in zoo entry ``folder`` (a cache entry, or one the package ships), on
    the CPU in eval mode: built from its manifest's architecture, the weights read
    ``weights_only`` after their SHA-256 is checked against the manifest's."""
    manifest = manifest if manifest is not None else _manifest(Path(folder))
    if manifest is None:
        raise FileNotFoundError(f"{folder} holds no zoo entry (no manifest.json)")
    state = verified_load(Path(folder) / "model.pt", manifest["sha256"])
    arch = manifest["architecture"]
    model = build_model(arch["model"], arch["in_shape"], arch["num_classes"])
    model.load_state_dict(state)
    return model.eval()


def _load(recipe: Recipe, root, cache, splits: Splits | None, device) -> ZooModel:
    check_choice("kind", recipe.kind, sorted(_TRAINERS))
    device = torch.device(device) if device is not None else default_device()
    folder = entry_dir(recipe, cache)
    manifest = _manifest(folder)
    if manifest is None and (install_shipped(recipe, cache) or install_shipped_files(
            shipped_entry_files(folder), last="manifest.json")):
        manifest = _manifest(folder)
    if manifest is not None:
        model = entry_model(folder, manifest).to(device)
        return ZooModel(model, recipe, folder / "model.pt", manifest["sha256"], False,
                        manifest["train_seconds"])
    splits = splits or recipe.splits(root)
    start = time.perf_counter()
    _BUILDING.append((recipe.key(), folder))
    try:
        model = _TRAINERS[recipe.kind](recipe, splits)
    finally:
        _BUILDING.pop()
    seconds = time.perf_counter() - start
    model.cpu().eval()  # models are stored on the CPU
    files = {p.name: sha256_file(p) for p in sorted(folder.iterdir())
             if not p.name.startswith(".")} if folder.is_dir() else {}
    digest = atomic_save(model.state_dict(), folder / "model.pt")
    out = model.classifier[-1].out_features
    atomic_write_json({
        "recipe": asdict(recipe), "key": recipe.key(), "sha256": digest,
        "context": compute_context(default_device()), "machine": machine(),
        "architecture": {"model": recipe.model, "in_shape": list(splits.shape), "num_classes": out},
        "train_seconds": round(seconds, 2), "fplab_version": __version__, "files": files,
    }, folder / "manifest.json")
    return ZooModel(model.to(device), recipe, folder / "model.pt", digest, True, seconds)
