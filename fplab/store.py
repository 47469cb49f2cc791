"""Safe files: SHA-256, atomic writes and verified, weights-only loading.

Everything fplab writes to its cache (trained models, pre-processed datasets, defense results) goes through
:func:`atomic_save`, which returns the file's SHA-256; everything it reads back goes through
:func:`verified_load`, which refuses a file whose SHA-256 differs from the recorded one instead
of silently re-creating it (the model-zoo lesson of the BadNets paper, section 6).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from . import numerics
from .errors import IntegrityError
from .paths import cache_dir

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj, path: str | os.PathLike) -> str:
    """``torch.save`` ``obj`` to ``path`` through a temporary file; return the file's SHA-256."""
    path = Path(path)
    _atomic_write(path, lambda handle: torch.save(obj, handle))
    return sha256_file(path)


def atomic_write_json(obj, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True).encode()
    _atomic_write(Path(path), lambda handle: handle.write(text))


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Raise :class:`IntegrityError` unless ``path`` exists and hashes to ``expected``."""
    path = Path(path)
    if not path.exists():
        raise IntegrityError(f"{path} is missing; its manifest expects SHA-256 {expected}.")
    actual = sha256_file(path)
    if actual != expected:
        raise IntegrityError(
            f"{path} failed its SHA-256 check: expected {expected}, got {actual}. The file was "
            "modified or truncated after it was written. fplab will not load it or overwrite it: "
            "restore the file, or delete its folder to rebuild it.")


def verified_load(path: str | os.PathLike, expected_sha256: str):
    """Check ``path`` against ``expected_sha256``, then ``torch.load`` it with ``weights_only=True``."""
    verify_sha256(path, expected_sha256)
    return torch.load(path, map_location="cpu", weights_only=True)


# ----------------------------------------------------------------------------- computed results

def compute_context(device=None) -> dict:
    """What, besides a recipe and its inputs, changes the numbers training computes: the torch
    version, the device type and, on a CPU, torch's thread count (the same seed gives different
    weights on 1 and 2 threads) and its kernel choice (:func:`fplab.numerics.context`). Part of
    every cache key, so a cache filled by a 2-thread ``make book`` never stands in for the
    single-threaded results ``make test`` compares."""
    kind = torch.device(device).type if device is not None else "cpu"
    context = {"torch": torch.__version__.split("+")[0], "device": kind}
    if kind == "cpu":
        context["threads"] = torch.get_num_threads()
        context.update(numerics.context())
    return context


def fingerprint(*parts, device=None, context: bool = True) -> str:
    """First 20 hex digits of a SHA-256 over ``parts``, in order: tensors (dtype, shape and
    bytes), dicts (state dicts: every key and value) and JSON-able values, and (``context``) the
    :func:`compute_context` of ``device``. The key under which a computed result (ANP masks, a
    fine-tuned model) is cached: any change of input changes it. ``context=False``: the name of
    a result that ships like a model, read in any context (:func:`fplab.defenses.anp.anp_masks`'
    ``shipped``)."""
    digest = hashlib.sha256()
    if context:
        digest.update(json.dumps(compute_context(device), sort_keys=True).encode())

    def feed(part):
        if isinstance(part, torch.Tensor):
            t = part.detach().cpu().contiguous()
            digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.numpy().tobytes())
        elif isinstance(part, dict) and any(isinstance(v, torch.Tensor) for v in part.values()):
            for name, value in part.items():
                digest.update(str(name).encode())
                feed(value)
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())

    for part in parts:
        feed(part)
    return digest.hexdigest()[:20]


def load_result(folder: str | os.PathLike, key: str):
    """``(object, record)`` stored by :func:`save_result` under ``key``, SHA-256 verified and
    loaded weights-only; ``None`` when there is none (neither in the cache nor shipped, see
    :func:`install_shipped_result`). :class:`IntegrityError` (never a silent recomputation over
    it) for a ``.pt`` without its ``.json``, a corrupt ``.json``, or a file that does not match
    it."""
    folder = Path(folder)
    manifest, blob = folder / f"{key}.json", folder / f"{key}.pt"
    fix = f"delete {blob} and {manifest} to compute the result again"
    if not manifest.exists() and not blob.exists():
        install_shipped_result(folder, key)
    if not manifest.exists():
        if blob.exists():
            raise IntegrityError(f"{blob} has no record {manifest.name} (an interrupted or foreign "
                                 f"write); fplab will not load it or overwrite it: {fix}.")
        return None
    try:
        record = json.loads(manifest.read_text())
        expected = record["sha256"]
    except (ValueError, KeyError, TypeError) as error:
        raise IntegrityError(f"{manifest} is corrupt ({type(error).__name__}: {error}): {fix}.") from None
    try:
        return verified_load(blob, expected), record
    except IntegrityError as error:
        raise IntegrityError(f"{error} ({fix}.)") from None


def save_result(folder: str | os.PathLike, key: str, obj, record: dict | None = None) -> None:
    """Store ``obj`` (tensors, lists, numbers) as ``key.pt`` with ``key.json`` (its SHA-256 and
    ``record``) in ``folder``, atomically."""
    folder = Path(folder)
    digest = atomic_save(obj, folder / f"{key}.pt")
    atomic_write_json({**(record or {}), "sha256": digest}, folder / f"{key}.json")


def memoized(folder: str | os.PathLike, key: str, compute, record: dict | None = None):
    """``compute()``, stored under ``key`` in ``folder`` the first time (:func:`save_result`) and
    read back, verified, every later time (:func:`load_result`, shipped results included).
    ``compute`` returns what ``torch.load(weights_only=True)`` reads: tensors, lists, dicts,
    numbers, strings."""
    hit = load_result(folder, key)
    if hit is not None:
        return hit[0]
    out = compute()
    save_result(folder, key, out, record)
    return out


# ----------------------------------------------------------------------------- shipped results

#: Computed results shipped with the package: a snapshot of the cache that a single-threaded
#: fast-profile run of every notebook fills from empty (its models, ANP masks, fine-tuned
#: weights, chapter 6's attack runs; not the datasets, not the models of ``fplab/weights``),
#: taken by ``make ship-results``. ``SHIPPED_RESULTS`` mirrors the cache's layout and
#: ``RESULTS_MANIFEST`` lists every file (its path in the cache) with its SHA-256. Every entry is
#: named by the hash of all its inputs and of the compute context (a zoo key, a
#: :func:`fingerprint`), so a shipped result only ever stands for the computation that produced
#: it: any change of model, data, arguments, torch version or thread count misses it and
#: computes anew. ``FPLAB_NO_SHIPPED=1`` switches shipped models and results off (compute
#: everything), ``FPLAB_NO_SHIPPED_RESULTS=1`` the results alone, not the snapshot's models
#: (``make ship-results``, the benchmark's cold runs).
SHIPPED_RESULTS = Path(__file__).parent / "results"
#: The zoo's folder in a cache (``$FPLAB_CACHE/zoo/<key>/``, :func:`fplab.zoo.entry_dir`), and so in
#: the results snapshot, whose ``zoo/`` entries are shipped models.
ZOO_FOLDER = "zoo"
RESULTS_MANIFEST = SHIPPED_RESULTS / "SHA256SUMS.json"
RESULT_SUFFIXES = (".pt", ".json")  # a result's two files (install_shipped_files copies the .json last)


def shipped_results() -> dict:
    """``{path in the cache: sha256}`` of every shipped file (empty when none). With
    ``FPLAB_NO_SHIPPED_RESULTS`` only the snapshot's trained models (``zoo/``: shipped weights
    like those of ``fplab/weights``, retrained by ``retrain-shipped``); the results are computed."""
    if not RESULTS_MANIFEST.exists() or os.environ.get("FPLAB_NO_SHIPPED"):
        return {}
    manifest = json.loads(RESULTS_MANIFEST.read_text())
    if os.environ.get("FPLAB_NO_SHIPPED_RESULTS"):
        return {name: digest for name, digest in manifest.items() if name.startswith(f"{ZOO_FOLDER}/")}
    return manifest


def copy_verified(files: list[tuple[Path, Path, str]]) -> None:
    """Copy each ``(source, target, sha256)`` in order, each written atomically, after checking
    every source against its SHA-256 (:class:`IntegrityError` and nothing copied otherwise)."""
    for source, _, digest in files:
        verify_sha256(source, digest)
    for source, target, _ in files:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)


def install_shipped_files(paths: list[Path], last: str) -> bool:
    """Copy the shipped files of one cache entry (``paths``: where they belong in the cache) into
    the cache, verified, the one named ``last`` (its record) last; ``True`` when the entry is
    shipped and installed, ``False`` (nothing copied) when any of them is not shipped."""
    manifest, cache = shipped_results(), cache_dir().resolve()
    try:
        names = [Path(p).resolve().relative_to(cache).as_posix() for p in paths]
    except ValueError:  # a folder outside the cache
        return False
    if not names or any(n not in manifest for n in names):
        return False
    order = sorted(zip(names, paths), key=lambda item: Path(item[0]).name == last)
    copy_verified([(SHIPPED_RESULTS / n, Path(p), manifest[n]) for n, p in order])
    return True


def shipped_entry_files(folder: Path) -> list[Path]:
    """Where the shipped files of the cache folder ``folder`` (a zoo entry) belong."""
    cache = cache_dir().resolve()
    try:
        prefix = Path(folder).resolve().relative_to(cache).as_posix() + "/"
    except ValueError:
        return []
    return [Path(folder) / n[len(prefix):] for n in shipped_results() if n.startswith(prefix)]


def install_shipped_result(folder: str | os.PathLike, key: str) -> bool:
    """Copy the shipped result ``key`` of cache folder ``folder`` (if there is one) into the
    cache, verified; ``True`` when installed."""
    return install_shipped_files([Path(folder) / f"{key}{s}" for s in RESULT_SUFFIXES],
                                 last=f"{key}.json")
