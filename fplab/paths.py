"""Where fplab reads data and writes its cache.

Two environment variables, each overridable by a function argument:

``FPLAB_DATA``
    The data root, a torchvision-style folder (``MNIST/raw``, ``gtsrb/``, ``FSDD/recordings``,
    ``scikit_learn_data/``). Default: the repository's ``data/`` folder (or ``./data`` when fplab
    is installed elsewhere). Downloads go there.
``FPLAB_CACHE``
    Trained models (the zoo) and pre-processed tensors. Default: ``$XDG_CACHE_HOME/fplab`` or
    ``~/.cache/fplab``. Deleting it only costs re-training time.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_data_root() -> Path:
    if (REPO_ROOT / "_config.yml").exists():
        return REPO_ROOT / "data"
    return Path.cwd() / "data"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$FPLAB_DATA``, else the repository's ``data/``."""
    if root is None or str(root) == "":
        root = os.environ.get("FPLAB_DATA") or _default_data_root()
    return Path(root).expanduser().resolve()


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache`` if given, else ``$FPLAB_CACHE``, else ``~/.cache/fplab``."""
    if cache is None or str(cache) == "":
        cache = os.environ.get("FPLAB_CACHE")
    if not cache:
        xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        cache = Path(xdg) / "fplab"
    path = Path(cache).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def describe(root: str | os.PathLike | None = None) -> str:
    """Where data will be read (and downloaded) and where trained models are cached, and why."""
    source = ("argument" if root else "FPLAB_DATA" if os.environ.get("FPLAB_DATA")
              else "default")
    cache = "FPLAB_CACHE" if os.environ.get("FPLAB_CACHE") else "default"
    return (f"data root: {data_root(root)} ({source}; datasets download there on first use)\n"
            f"cache:     {cache_dir()} ({cache}; trained models and results, safe to delete)")
