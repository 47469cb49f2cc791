"""Datasets: one registry, three splits, profile-sized, checksum-verified.

Every dataset comes back as a :class:`Splits` of in-memory tensors: images ``x`` as float32
``(N, C, H, W)`` in ``[0, 1]`` and labels ``y`` as int64. Three splits follow the threat model
of the course (book/intro.md): ``train`` is what the (possibly malicious) trainer uses, ``val``
is the defender's small clean validation set (used by pruning, fine-tuning and ANP), ``test``
is held out for reporting.

=============  ==========================  =====================================================
name           source                      splits
=============  ==========================  =====================================================
``mnist``      torchvision MNIST           val = 5,000 images held out of train (fixed)
``gtsrb``      torchvision GTSRB (32x32)   val = whole *tracks* held out of train (no leakage)
``fsdd``       Free Spoken Digit wav files test = takes 0-4 (official), val = takes 5-9
``olivetti``   scikit-learn Olivetti faces per person: 6 train / 2 val / 2 test images
``synthetic``  generated in code           for unit tests; needs no files
=============  ==========================  =====================================================

The data root comes from the ``root`` argument or ``$FPLAB_DATA`` (:mod:`fplab.paths`).
Raw files are verified by SHA-256 the first time a dataset is read; the decoded tensors are then
cached (``$FPLAB_CACHE/datasets``) so later loads take a fraction of a second.
"""

from __future__ import annotations

import hashlib
import json
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .errors import DatasetNotFoundError, IntegrityError, check_choice
from .paths import cache_dir, data_root
from .store import atomic_save, atomic_write_json, sha256_file, verified_load

PROFILES = ("fast", "full")

#: Subset sizes per profile (``None`` = the whole split). The fast profile is sized for a 2-core
#: laptop CPU; the full profile uses everything the data root holds.
PROFILE_SIZES: dict[str, dict[str, dict[str, int | None]]] = {
    "fast": {
        "mnist": {"train": 20000, "val": 2000, "test": 5000},
        # caps above the offline subset's sizes (10,625 / 1,705 / 2,580): they only bite on the
        # full download (26,640 training images), so both give a laptop-sized fast profile
        "gtsrb": {"train": 12000, "val": 2000, "test": 3000},
        "fsdd": {"train": None, "val": None, "test": None},
        "olivetti": {"train": None, "val": None, "test": None},
        "synthetic": {"train": None, "val": None, "test": None},
    },
    "full": {},
}

_SPLITS = ("train", "val", "test")
_CACHE_VERSION = 1


@dataclass
class Data:
    """A labelled set of images held in memory: ``x`` (N, C, H, W) float in [0, 1], ``y`` (N,)."""

    x: Tensor
    y: Tensor

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} items but y has {len(self.y)}")

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index):
        return self.x[index], self.y[index]

    def subset(self, index) -> "Data":
        """A new :class:`Data` with the items at ``index`` (a tensor of indices or a mask)."""
        return Data(self.x[index], self.y[index])

    def where(self, condition: Tensor) -> "Data":
        """The items whose labels satisfy a boolean ``condition`` tensor."""
        return self.subset(condition.nonzero().flatten())


#: The most bytes :func:`as_data` materialises from a ``DataLoader`` / ``Dataset`` (4 GiB);
#: ``$FPLAB_MAX_DATA_BYTES`` overrides it.
MAX_DATA_BYTES = 4 * 2**30


def as_data(data, name: str = "data", purpose: str | None = None,
            max_bytes: int | None = None) -> Data:
    """The defenses' one input conversion: ``data`` as a :class:`Data` of float32 images and
    int64 labels, or a ``TypeError`` / ``ValueError`` naming parameter ``name``.

    Accepted: a :class:`Data` (returned as it is when already float32 / int64), an ``(x, y)``
    pair of tensors or arrays, a ``torch.utils.data.DataLoader`` or a ``Dataset`` of ``(x, y)``
    items (read once, in order; refused when it would take more than ``max_bytes``, default
    :data:`MAX_DATA_BYTES`). uint8 images become ``x / 255``; float64 / float16 images float32;
    integer labels, and float labels with whole values, int64. Refused: other integer or boolean
    images, fractional, negative or one-hot labels, and an empty set (``purpose`` says why one
    is needed).
    """
    import os
    from torch.utils.data import DataLoader, Dataset
    if max_bytes is None:
        max_bytes = int(os.environ.get("FPLAB_MAX_DATA_BYTES", MAX_DATA_BYTES))
    if isinstance(data, Data):
        x, y = data.x, data.y
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = (torch.as_tensor(v) for v in data)
    elif isinstance(data, (DataLoader, Dataset)):
        x, y = _materialise(data, name, max_bytes)
    else:
        raise TypeError(f"{name} must be a fplab.data.Data, an (x, y) pair of tensors, a "
                        f"DataLoader or a Dataset of (x, y) items; got {type(data).__name__}")
    if len(x) != len(y):
        raise ValueError(f"{name}: x has {len(x)} items but y has {len(y)}")
    if len(y) == 0:
        raise ValueError(f"{name} is empty" + (f": {purpose}" if purpose else ""))
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    elif x.dtype in (torch.float64, torch.float16, torch.bfloat16):
        x = x.float()
    elif x.dtype != torch.float32:
        raise TypeError(f"{name}: images of dtype {x.dtype} are not supported; allowed: "
                        "float32 in [0, 1] (float64 / float16 are converted) or uint8 in [0, 255]")
    if y.dim() != 1:
        raise ValueError(f"{name}: labels must be one class index per item, shape (N,); got shape "
                         f"{tuple(y.shape)} (one-hot labels: pass y.argmax(1))")
    if y.dtype.is_floating_point:
        if not torch.equal(y, y.round()):
            raise ValueError(f"{name}: labels must be whole class indices; got float labels such "
                             f"as {y[y != y.round()][0].item()}")
        y = y.long()
    elif y.dtype == torch.bool or y.dtype.is_complex:
        raise TypeError(f"{name}: labels of dtype {y.dtype} are not supported; allowed: integer "
                        "class indices (or floats with whole values)")
    elif y.dtype != torch.long:
        y = y.long()
    if (y < 0).any():
        raise ValueError(f"{name}: labels must be class indices >= 0; got {int(y.min())}")
    if isinstance(data, Data) and x is data.x and y is data.y:
        return data
    return Data(x, y)


def _materialise(data, name: str, max_bytes: int) -> tuple[Tensor, Tensor]:
    """Every ``(x, y)`` of a DataLoader (its batches) or a Dataset (its items), read once."""
    from torch.utils.data import DataLoader
    batched = isinstance(data, DataLoader)
    xs, ys, size = [], [], 0
    total = None
    try:
        total = len(data.dataset if batched else data)
    except TypeError:  # an IterableDataset without a length
        pass
    for item in data:
        if isinstance(item, dict) or not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"{name}: each {'batch' if batched else 'item'} must be an (x, y) "
                            f"pair; got {type(item).__name__}")
        x, y = (torch.as_tensor(v) for v in item)
        if not batched:
            x, y = x[None], y.reshape(1)
        if not xs and total is not None and x.element_size() * x[0].numel() * total > max_bytes:
            raise ValueError(f"{name}: {total} items of shape {tuple(x.shape[1:])} ({x.dtype}) "
                             f"take more than max_bytes={max_bytes} in memory; pass a subset "
                             "(torch.utils.data.Subset) or raise FPLAB_MAX_DATA_BYTES")
        size += x.element_size() * x.numel()
        if size > max_bytes:
            raise ValueError(f"{name} takes more than max_bytes={max_bytes} in memory; pass a "
                             "subset (torch.utils.data.Subset) or raise FPLAB_MAX_DATA_BYTES")
        xs.append(x)
        ys.append(y)
    if not xs:
        raise ValueError(f"{name} is empty: it yielded no items")
    return torch.cat(xs), torch.cat(ys)


@dataclass
class Splits:
    """A dataset's train / val / test splits and what describes it."""

    name: str
    train: Data
    val: Data
    test: Data
    num_classes: int
    class_names: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Image shape ``(C, H, W)``."""
        return tuple(self.train.x.shape[1:])

    def sizes(self) -> dict[str, int]:
        return {s: len(getattr(self, s)) for s in _SPLITS}


def select_classes(splits: Splits, classes) -> Splits:
    """Keep only ``classes`` (a list of labels), relabelled ``0..len(classes)-1`` in that order.

    Used to make two tasks out of one dataset, e.g. the BadNets transfer-learning attack: a
    "source" task on some traffic-sign classes and a new task on held-out ones.
    """
    classes = [int(c) for c in classes]
    for c in classes:
        if not 0 <= c < splits.num_classes:
            raise ValueError(f"classes contains {c}; allowed: 0 to {splits.num_classes - 1}")
    if len(set(classes)) != len(classes) or not classes:
        raise ValueError(f"classes={classes} must be a non-empty list without repeats")
    relabel = torch.full((splits.num_classes,), -1, dtype=torch.long)
    relabel[classes] = torch.arange(len(classes))

    def keep(data: Data) -> Data:
        new = relabel[data.y]
        mask = new >= 0
        return Data(data.x[mask], new[mask])

    names = [splits.class_names[c] for c in classes] if splits.class_names else []
    return Splits(splits.name, keep(splits.train), keep(splits.val), keep(splits.test),
                  len(classes), names)


# ----------------------------------------------------------------------------- registry

_LOADERS: dict[str, Callable] = {}
_INFO: dict[str, dict] = {}


def _register(name: str, num_classes: int, where: str, how: str):
    def wrap(loader):
        _LOADERS[name] = loader
        _INFO[name] = {"num_classes": num_classes, "where": where, "how": how}
        return loader
    return wrap


def available_datasets() -> list[str]:
    return sorted(_LOADERS)


def load_dataset(name: str, root=None, profile: str = "fast", sizes: dict | None = None,
                 seed: int = 0, download: bool = True, cache=None) -> Splits:
    """Load dataset ``name`` as :class:`Splits`, sized by ``profile`` (or explicit ``sizes``).

    ``sizes`` maps a split name to a number of items (``None`` keeps the split whole) and
    overrides the profile. Subsets are drawn with ``seed`` and stratified by nothing but chance,
    so every class keeps about its share. ``download=False`` never touches the network.
    """
    check_choice("dataset", name, available_datasets())
    check_choice("profile", profile, PROFILES)
    wanted = dict(PROFILE_SIZES[profile].get(name, {}))
    for split, n in (sizes or {}).items():
        check_choice("sizes key", split, _SPLITS)
        if n is not None and (int(n) != n or n < 1):
            raise ValueError(f"sizes[{split!r}]={n!r} must be a positive integer or None")
        wanted[split] = n
    full = _cached_tensors(name, root, download, cache)
    parts = {}
    for i, split in enumerate(_SPLITS):
        x = full[f"{split}_x"].float().div_(255.0)
        data = Data(x, full[f"{split}_y"].long())
        n = wanted.get(split)
        if n is not None and n < len(data):
            gen = torch.Generator().manual_seed(seed * 1000 + i)
            data = data.subset(torch.randperm(len(data), generator=gen)[:n].sort().values)
        parts[split] = data
    info = _INFO[name]
    names = full.get("class_names")
    return Splits(name, parts["train"], parts["val"], parts["test"], info["num_classes"],
                  list(names) if names is not None else [str(c) for c in range(info["num_classes"])])


def _cached_tensors(name: str, root, download: bool, cache) -> dict:
    """Decoded uint8 tensors of all splits, from the cache or freshly read and verified."""
    if name == "synthetic":
        return _LOADERS[name](None, download)
    root = data_root(root)
    folder = cache_dir(cache) / "datasets"
    path = folder / f"{name}-v{_CACHE_VERSION}.pt"
    manifest = path.with_suffix(".json")
    if path.exists() and manifest.exists():
        record = json.loads(manifest.read_text())
        if record.get("root") == str(root):
            return verified_load(path, record["sha256"])
    tensors = _LOADERS[name](root, download)
    digest = atomic_save(tensors, path)
    atomic_write_json({"sha256": digest, "root": str(root), "dataset": name}, manifest)
    return tensors


def _missing(name: str, root: Path, looked: Path, error: Exception | None = None):
    info = _INFO[name]
    reason = f" ({type(error).__name__}: {error})" if error else ""
    return DatasetNotFoundError(
        f"dataset {name!r} was not found: looked for {info['where']} under {looked}, and it could "
        f"not be downloaded{reason}. To get it: {info['how']} Or point FPLAB_DATA (or root=...) "
        f"at a folder that already holds it (data root now: {root}).")


# ----------------------------------------------------------------------------- checksums

def _verify_files(root: Path, files: list[Path], known: dict[str, str] | None = None) -> None:
    """Verify ``files`` against ``known`` hashes, else against ``root/SHA256SUMS`` if present.

    The offline copy in ``../shared/datasets`` ships a ``SHA256SUMS`` for every file; a fresh
    download into ``data/`` is checked by torchvision's own MD5 on the archive, and MNIST /
    FSDD / Olivetti additionally against the digests recorded here.
    """
    sums = {}
    manifest = root / "SHA256SUMS"
    if manifest.exists():
        for line in manifest.read_text().splitlines():
            digest, _, rel = line.partition("  ")
            sums[rel.strip()] = digest
    for path in files:
        rel = path.relative_to(root).as_posix()
        expected = (known or {}).get(path.name) or sums.get(rel)
        if expected is None:
            continue
        actual = sha256_file(path)
        if actual != expected:
            raise IntegrityError(f"data file {path} failed its SHA-256 check (expected {expected}, "
                                 f"got {actual}); delete it and download it again.")


def _digest_of_digests(files: list[Path]) -> str:
    lines = "".join(f"{sha256_file(p)}  {p.name}\n" for p in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def _fixed_perm(n: int, salt: int) -> Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(12345 + salt))


# ----------------------------------------------------------------------------- MNIST

_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


@_register("mnist", 10, "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
           "run fplab.data.load_dataset('mnist') with internet access (torchvision downloads it).")
def _load_mnist(root: Path, download: bool) -> dict:
    from torchvision.datasets import MNIST
    try:
        train = MNIST(str(root), train=True, download=download)
        test = MNIST(str(root), train=False, download=download)
    except Exception as error:  # torchvision raises RuntimeError offline, URLError on a bad net
        raise _missing("mnist", root, root / "MNIST" / "raw", error) from None
    raw = root / "MNIST" / "raw"
    _verify_files(root, [raw / f for f in _MNIST_SHA256], _MNIST_SHA256)
    perm = _fixed_perm(len(train.targets), 0)
    val_idx, train_idx = perm[:5000].sort().values, perm[5000:].sort().values
    x, y = train.data.unsqueeze(1), train.targets
    return {"train_x": x[train_idx], "train_y": y[train_idx], "val_x": x[val_idx],
            "val_y": y[val_idx], "test_x": test.data.unsqueeze(1), "test_y": test.targets}


# ----------------------------------------------------------------------------- GTSRB

GTSRB_CLASS_NAMES = [
    "speed 20", "speed 30", "speed 50", "speed 60", "speed 70", "speed 80", "end speed 80",
    "speed 100", "speed 120", "no passing", "no passing >3.5t", "right of way", "priority road",
    "yield", "stop", "no vehicles", "no vehicles >3.5t", "no entry", "caution", "curve left",
    "curve right", "double curve", "bumpy road", "slippery road", "road narrows", "road work",
    "traffic signals", "pedestrians", "children", "bicycles", "ice/snow", "wild animals",
    "end limits", "turn right", "turn left", "ahead only", "ahead or right", "ahead or left",
    "keep right", "keep left", "roundabout", "end no passing", "end no passing >3.5t",
]


@_register("gtsrb", 43, "gtsrb/GTSRB/Training and gtsrb/GTSRB/Final_Test",
           "run fplab.data.load_dataset('gtsrb') with internet access (torchvision downloads it).")
def _load_gtsrb(root: Path, download: bool) -> dict:
    from PIL import Image
    from torchvision.datasets import GTSRB
    try:
        splits = {s: GTSRB(str(root), split=s, download=download) for s in ("train", "test")}
    except Exception as error:
        raise _missing("gtsrb", root, root / "gtsrb", error) from None
    out = {}
    for split, ds in splits.items():
        files = [Path(p) for p, _ in ds._samples]
        _verify_files(root, files)
        images = np.stack([np.asarray(Image.open(p).convert("RGB").resize((32, 32), Image.BILINEAR))
                           for p in files])
        out[split] = (torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
                      torch.tensor([label for _, label in ds._samples]), files)
    x, y, files = out["train"]
    # Frames of one track are near-duplicates: hold out whole tracks (about 1 in 7 per class).
    tracks = [f"{label}/{path.name.split('_')[0]}" for path, label in zip(files, y.tolist())]
    unique = sorted(set(tracks))
    gen = torch.Generator().manual_seed(7)
    held = {t for t, r in zip(unique, torch.rand(len(unique), generator=gen).tolist()) if r < 0.15}
    for label in range(43):  # every class keeps at least one validation track
        mine = [t for t in unique if t.startswith(f"{label}/")]
        if not held.intersection(mine):
            held.add(mine[len(mine) // 2])
    is_val = torch.tensor([t in held for t in tracks])
    return {"train_x": x[~is_val], "train_y": y[~is_val], "val_x": x[is_val], "val_y": y[is_val],
            "test_x": out["test"][0], "test_y": out["test"][1], "class_names": GTSRB_CLASS_NAMES}


# ----------------------------------------------------------------------------- FSDD

_FSDD_URL = ("https://github.com/Jakobovski/free-spoken-digit-dataset/archive/"
             "26eb9aaf76e81b692f806f9140c2d2777410d7a1.zip")
#: SHA-256 over the sorted per-file SHA-256 lines of the 3000 recordings (snapshot 26eb9aa).
_FSDD_DIGEST = "1801eae019c063377d98f831d3f93574f259475df7332bb0e3d1b080fb5e6959"
SPECTROGRAM_SIZE = 64


def spectrogram(samples: Tensor, size: int = SPECTROGRAM_SIZE, n_fft: int = 256) -> Tensor:
    """Decibel STFT magnitude of 1 s of 8 kHz audio, ``size`` x ``size`` (freq x time), in dB."""
    samples = samples[:8000]
    samples = torch.nn.functional.pad(samples, (0, 8000 - len(samples)))
    stft = torch.stft(samples, n_fft=n_fft, hop_length=n_fft // 4, window=torch.hann_window(n_fft),
                      return_complex=True)
    power = torch.nn.functional.interpolate(stft.abs().square()[None, None], size=(size, size),
                                            mode="area")[0]
    return 10 * torch.log10(power + 1e-10).flip(1)  # low frequencies at the bottom, as drawn


def _read_wav(path: Path) -> Tensor:
    with wave.open(str(path), "rb") as handle:
        frames = handle.readframes(handle.getnframes())
    return torch.from_numpy(np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0)


@_register("fsdd", 10, "FSDD/recordings/{digit}_{speaker}_{take}.wav",
           f"download {_FSDD_URL} and copy its recordings/ folder to <data root>/FSDD/recordings "
           "(load_dataset('fsdd') does this when online).")
def _load_fsdd(root: Path, download: bool) -> dict:
    folder = root / "FSDD" / "recordings"
    files = sorted(folder.glob("*.wav")) if folder.exists() else []
    if len(files) < 3000 and download:
        try:
            _download_fsdd(root)
        except Exception as error:
            raise _missing("fsdd", root, folder, error) from None
        files = sorted(folder.glob("*.wav"))
    if len(files) < 3000:
        raise _missing("fsdd", root, folder)
    if (root / "SHA256SUMS").exists():
        _verify_files(root, files)
    elif _digest_of_digests(files) != _FSDD_DIGEST:
        raise IntegrityError(f"the recordings in {folder} do not match the FSDD snapshot fplab "
                             "expects; delete the folder and download it again.")
    specs = torch.cat([spectrogram(_read_wav(p)) for p in files])
    digits, takes = zip(*[(int(p.stem.split("_")[0]), int(p.stem.split("_")[2])) for p in files])
    y, take = torch.tensor(digits), torch.tensor(takes)
    top = specs[take >= 10].amax()  # map [top - 80 dB, top] to [0, 1]
    x = ((specs - top + 80) / 80).clamp(0, 1).mul(255).round().to(torch.uint8).unsqueeze(1)
    out = {}
    for split, mask in (("train", take >= 10), ("val", (take >= 5) & (take < 10)), ("test", take < 5)):
        out[f"{split}_x"], out[f"{split}_y"] = x[mask], y[mask]
    return out


def _download_fsdd(root: Path) -> None:
    import shutil
    import tempfile
    from torchvision.datasets.utils import download_and_extract_archive
    with tempfile.TemporaryDirectory() as tmp:
        download_and_extract_archive(_FSDD_URL, download_root=tmp)
        src = next(Path(tmp).glob("free-spoken-digit-dataset-*/recordings"))
        (root / "FSDD").mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, root / "FSDD" / "recordings", dirs_exist_ok=True)


# ----------------------------------------------------------------------------- Olivetti faces

#: SHA-256 of scikit-learn's ``faces.images`` array (float32, C order).
_OLIVETTI_DIGEST = "e6b9b0fe62f642f64e4e6e584295133cd9aff7e5820c052fd52eb9ffea205c09"


@_register("olivetti", 40, "scikit_learn_data/olivetti_py3.pkz",
           "run fplab.data.load_dataset('olivetti') with internet access (scikit-learn downloads it).")
def _load_olivetti(root: Path, download: bool) -> dict:
    from sklearn.datasets import fetch_olivetti_faces
    home = root / "scikit_learn_data"
    try:
        faces = fetch_olivetti_faces(data_home=str(home), download_if_missing=download)
    except Exception as error:
        raise _missing("olivetti", root, home, error) from None
    images = np.ascontiguousarray(faces.images, dtype=np.float32)
    digest = hashlib.sha256(images.tobytes()).hexdigest()
    if digest != _OLIVETTI_DIGEST:
        raise IntegrityError(f"the Olivetti faces under {home} do not match the array fplab "
                             f"expects (SHA-256 {digest}); delete the cache file and download again.")
    x = torch.from_numpy(images).mul(255).round().to(torch.uint8).unsqueeze(1)
    y = torch.from_numpy(faces.target.astype(np.int64))
    shot = torch.arange(len(y)) % 10  # 10 consecutive images per person
    out = {}
    for split, mask in (("train", shot < 6), ("val", (shot >= 6) & (shot < 8)), ("test", shot >= 8)):
        out[f"{split}_x"], out[f"{split}_y"] = x[mask], y[mask]
    out["class_names"] = [f"person {i}" for i in range(40)]
    return out


# ----------------------------------------------------------------------------- CIFAR-10

CIFAR10_CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                       "ship", "truck"]


@_register("cifar10", 10, "cifar-10-batches-py/{data_batch_1..5,test_batch}",
           "run fplab.data.load_dataset('cifar10') with internet access (torchvision downloads "
           "it); it is not part of the offline copy, so the fast profile uses MNIST or GTSRB.")
def _load_cifar10(root: Path, download: bool) -> dict:
    """CIFAR-10 (the full profile of the ANP chapter): val = 5,000 images held out of train."""
    from torchvision.datasets import CIFAR10
    try:
        train = CIFAR10(str(root), train=True, download=download)
        test = CIFAR10(str(root), train=False, download=download)
    except Exception as error:  # torchvision raises RuntimeError when the files are missing
        raise _missing("cifar10", root, root / "cifar-10-batches-py", error) from None
    x = torch.from_numpy(train.data).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor(train.targets)
    perm = _fixed_perm(len(y), 3)
    val_idx, train_idx = perm[:5000].sort().values, perm[5000:].sort().values
    return {"train_x": x[train_idx], "train_y": y[train_idx], "val_x": x[val_idx],
            "val_y": y[val_idx], "test_x": torch.from_numpy(test.data).permute(0, 3, 1, 2).contiguous(),
            "test_y": torch.tensor(test.targets), "class_names": CIFAR10_CLASS_NAMES}


# ----------------------------------------------------------------------------- synthetic

@_register("synthetic", 10, "(nothing: generated in code)", "nothing to get.")
def _load_synthetic(root, download) -> dict:
    """Ten classes of 1x16x16 images: class c is a bright bar at row c+3, plus noise."""
    gen = torch.Generator().manual_seed(0)
    out = {}
    for split, n in (("train", 600), ("val", 200), ("test", 200)):
        y = torch.arange(n) % 10
        x = torch.rand(n, 1, 16, 16, generator=gen) * 0.3
        x[torch.arange(n), 0, y + 3, 2:10] += 0.7
        out[f"{split}_x"] = x.clamp(0, 1).mul(255).round().to(torch.uint8)
        out[f"{split}_y"] = y
    return out
