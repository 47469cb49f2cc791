"""Executing the chapter notebooks with papermill, as ``make book``, ``make test`` and
``python -m fplab run`` do.

papermill starts each kernel in ``notebooks/``, so a relative path the user gave
(``FPLAB_DATA=../shared/datasets``, ``FPLAB_CACHE``, ``--data-root``) would be read from there, not
from where it was typed: :func:`resolve_user_paths` makes them absolute first, against the
directory the command was started in.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .paths import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
BUILD = REPO_ROOT / "_build"
PATH_VARIABLES = ("FPLAB_DATA", "FPLAB_CACHE")
#: A cell that runs longer than this (seconds) fails the notebook instead of hanging it: the
#: longest fast-profile cell, from an empty cache with nothing shipped, takes well under it.
#: ``FPLAB_CELL_TIMEOUT`` overrides it (``0``: no limit, e.g. for the full profile on a CPU).
CELL_TIMEOUT = 3600


def resolve_user_paths(env: dict | None = None, cwd: str | os.PathLike | None = None) -> dict:
    """Make ``FPLAB_DATA`` / ``FPLAB_CACHE`` in ``env`` (default: ``os.environ``, changed in
    place) absolute, relative to ``cwd`` (default: the current directory); return ``env``."""
    env = os.environ if env is None else env
    base = Path(cwd) if cwd is not None else Path.cwd()
    for name in PATH_VARIABLES:
        value = env.get(name)
        if value:
            path = Path(value).expanduser()
            env[name] = str((path if path.is_absolute() else base / path).resolve())
    return env


def notebook_paths(names: list[str] | None = None) -> list[Path]:
    """The chapter notebooks, in order (optionally only those whose name starts with ``names``)."""
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if names:
        chosen = [p for p in paths if any(p.name.startswith(n) for n in names)]
        if not chosen:
            raise SystemExit(f"no notebook matches {names}; available: {[p.name for p in paths]}")
        return chosen
    return paths


def cell_timeout(env: dict | None = None) -> int | None:
    """Seconds a cell may run (:data:`CELL_TIMEOUT`, or ``FPLAB_CELL_TIMEOUT``); ``None``: no limit."""
    env = os.environ if env is None else env
    value = env.get("FPLAB_CELL_TIMEOUT", "").strip()
    if not value:
        return CELL_TIMEOUT
    if not value.isdigit():
        raise ValueError(f"FPLAB_CELL_TIMEOUT={value!r} must be a whole number of seconds >= 0 "
                         "(0: no limit)")
    return int(value) or None


def execute(path: Path, output: Path, parameters: dict, timeout: int | None = None) -> float:
    """Run one notebook with papermill (working directory: ``notebooks/``); return seconds.

    Relative data and cache paths in the environment are resolved first (see the module's
    docstring), so the kernel reads the folders the user meant. A cell running longer than
    ``timeout`` seconds (default :func:`cell_timeout`) fails the run: a stuck kernel ends in an
    error naming the cell, not in a command that never returns."""
    import papermill
    resolve_user_paths()
    timeout = cell_timeout() if timeout is None else timeout
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    papermill.execute_notebook(str(path), str(output), parameters=parameters, cwd=str(NOTEBOOKS),
                               kernel_name="python3", progress_bar=False,
                               execution_timeout=timeout)
    seconds = time.perf_counter() - start
    drop_widget_state(output)
    return seconds


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def drop_widget_state(path: Path) -> int:
    """Remove what only a live kernel can draw from an executed notebook: the saved ipywidgets
    state (``metadata.widgets``, tens of KB per chapter) and the widget outputs (tqdm's progress
    bars, the explorers' sliders), which a static page cannot render. Return how many outputs
    went. The explorers come alive again when the notebook is run in Jupyter or Colab."""
    import nbformat
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)
    dropped = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            kept = [o for o in cell.outputs if WIDGET_VIEW not in o.get("data", {})]
            dropped += len(cell.outputs) - len(kept)
            cell.outputs = kept
    nbformat.write(nb, path)
    return dropped


#: The first code cell of every chapter: on Colab or Binder (no fplab installed) it installs
#: fplab from the course repository; where fplab is installed it only says where data will go.
SETUP_CELL = '''# Set-up: installs fplab where it is missing (Colab, Binder); does nothing locally.
import importlib, importlib.util, subprocess, sys
if importlib.util.find_spec("fplab") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "fplab @ git+https://github.com/fplab-course/fplab"], check=True)
    importlib.invalidate_caches()
from fplab.paths import describe
print(describe())'''
