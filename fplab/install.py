"""Set up (or repair) the project's virtual environment: what ``make book`` / ``make test`` run
first, every time (``python3 -m fplab.install .venv``; standard library only, so it runs before
anything is installed).

1. Create the venv if it is missing; install fplab with the pinned versions of
   ``constraints.txt`` (``pip install -c constraints.txt -e ".[course]"``) when the venv is new or
   ``pyproject.toml`` / ``constraints.txt`` changed since the last install (a stamp file records
   their hash).
2. Check that torch and torchvision load each other (``torchvision.ops.nms`` runs). Some machines'
   pip is configured (``PIP_FIND_LINKS``, ``/etc/pip.conf``) to prefer a CPU-only torch wheel
   (``2.13.0+cpu``) that PyPI's torchvision cannot load ("operator torchvision::nms does not
   exist"); pip counts that wheel as satisfying ``torch==2.13.0``, so installing again changes
   nothing. The repair uninstalls both and installs PyPI's standard builds of the pinned versions
   with that configuration switched off.
3. If the pair still cannot load, stop with one message naming the command that fixes it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAMP = ".fplab-installed"
CHECK = ("import torch, torchvision; "
         "torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5); "
         "print(torch.__version__, torchvision.__version__)")


def pinned(name: str, constraints: Path) -> str | None:
    """The version ``constraints.txt`` pins for package ``name`` (``None`` if it pins none)."""
    for line in constraints.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.lower().startswith(f"{name.lower()}=="):
            return line.split("==", 1)[1].strip()
    return None


def requirements_hash(root: Path = ROOT) -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((root / name).read_bytes())
    return digest.hexdigest()[:16]


def python_of(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def torch_pair_works(python: Path) -> tuple[bool, str]:
    """Whether torch and torchvision import and run together in ``python``; and what they said."""
    done = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True)
    said = (done.stdout if done.returncode == 0 else done.stderr).strip().splitlines()
    return done.returncode == 0, said[-1] if said else ""


def standard_pip_env(env: dict | None = None) -> dict:
    """The environment for pip with the machine's find-links / config preferences switched off."""
    env = dict(os.environ if env is None else env)
    env.pop("PIP_FIND_LINKS", None)
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def repair_command(venv: Path, constraints: Path) -> list[list[str]]:
    """The commands that replace a broken torch / torchvision pair by PyPI's standard builds."""
    pip = [str(python_of(venv)), "-m", "pip"]
    pins = [f"{n}=={v}" if v else n for n in ("torch", "torchvision")
            for v in [pinned(n, constraints)]]
    return [pip + ["uninstall", "-y", "torch", "torchvision"],
            pip + ["install", "-q", "-c", str(constraints), *pins]]


def run(command: list[str], env: dict | None = None) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, env=env)


def ensure(venv: str | os.PathLike = ".venv", root: Path = ROOT, python: str = sys.executable,
           repair: bool = True) -> Path:
    """Make ``venv`` ready (see the module docstring); return its Python."""
    venv = Path(venv)
    venv = venv if venv.is_absolute() else root / venv
    constraints = root / "constraints.txt"
    py = python_of(venv)
    if not py.exists():
        run([python, "-m", "venv", str(venv)])
    stamp = venv / STAMP
    wanted = requirements_hash(root)
    if not stamp.exists() or stamp.read_text().strip() != wanted:
        run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"])
        run([str(py), "-m", "pip", "install", "-q", "-c", str(constraints), "-e", f"{root}[course]"])
    ok, said = torch_pair_works(py)
    if not ok and repair:
        print(f"torch and torchvision in {venv} cannot load each other ({said}).\n"
              "Replacing them with the standard PyPI builds of the pinned versions "
              "(this machine's pip prefers a torch wheel that PyPI's torchvision cannot load).",
              flush=True)
        for command in repair_command(venv, constraints):
            run(command, env=standard_pip_env())
        ok, said = torch_pair_works(py)
    if not ok:
        raise SystemExit(
            f"torch and torchvision in {venv} still cannot load each other: {said}\n"
            f"Fix: rm -rf {venv} && make   (this recreates the environment from scratch)")
    stamp.write_text(wanted + "\n")
    print(f"environment ready: {venv} (torch, torchvision {said})", flush=True)
    return py


if __name__ == "__main__":
    ensure(*(sys.argv[1:2] or [".venv"]))
