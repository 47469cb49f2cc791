"""``python -m fplab``: execute the notebooks, build the book, benchmark, hash a file.

=================  ==================================================================
``run``            execute every notebook with papermill into ``_build/executed/``
                   (your notebooks in ``notebooks/`` are never overwritten, unless
                   ``--in-place`` is given: that refreshes the committed outputs)
``book``           ``run``, then build the HTML site from the executed copies and print
                   where it is (``--no-execute`` builds from the committed notebooks)
``benchmark``      per notebook: wall time and peak memory, cold and warm zoo cache;
                   then the chapters' own micro-benchmarks
``sha256 FILE``    print a file's SHA-256 (to compare with a model zoo's published hash)
=================  ==================================================================
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .paths import REPO_ROOT
from .store import sha256_file

NOTEBOOKS = REPO_ROOT / "notebooks"
BUILD = REPO_ROOT / "_build"


def notebook_paths(names: list[str] | None = None) -> list[Path]:
    """The chapter notebooks, in order (optionally only those whose name starts with ``names``)."""
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if names:
        chosen = [p for p in paths if any(p.name.startswith(n) for n in names)]
        if not chosen:
            raise SystemExit(f"no notebook matches {names}; available: {[p.name for p in paths]}")
        return chosen
    return paths


def execute(path: Path, output: Path, parameters: dict) -> float:
    """Run one notebook with papermill (working directory: ``notebooks/``); return seconds."""
    import papermill
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    papermill.execute_notebook(str(path), str(output), parameters=parameters, cwd=str(NOTEBOOKS),
                               kernel_name="python3", progress_bar=False)
    return time.perf_counter() - start


def run(args) -> list[Path]:
    # only what differs from the notebooks' defaults: papermill then injects no extra cell
    params = {k: v for k, v in (("profile", args.profile), ("seed", args.seed))
              if v != {"profile": "fast", "seed": 0}[k]}
    outputs = []
    for path in notebook_paths(args.only):
        out = path if args.in_place else BUILD / "executed" / "notebooks" / path.name
        print(f"executing {path.name} (profile={args.profile}, seed={args.seed}) ...", flush=True)
        print(f"  done in {execute(path, out, params):.0f} s -> {out}", flush=True)
        outputs.append(out)
    return outputs


def book(args) -> Path:
    """Stage the book sources with the notebooks to publish, then build it with jupyter-book."""
    site = BUILD / "site"
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO_ROOT / name, site / name)
    shutil.copytree(REPO_ROOT / "book", site / "book")
    source = NOTEBOOKS
    if not args.no_execute:
        run(args)
        source = BUILD / "executed" / "notebooks"
    (site / "notebooks").mkdir()
    for path in notebook_paths():
        shutil.copy(source / path.name if (source / path.name).exists() else path,
                    site / "notebooks" / path.name)
    script = Path(sys.executable).with_name("jupyter-book")  # installed beside this Python
    command = [str(script) if script.exists() else "jupyter-book", "build", str(site),
               "--path-output", str(REPO_ROOT), "-W", "--keep-going"]  # site: _build/html
    subprocess.run(command, check=True)
    index = BUILD / "html" / "index.html"
    print(f"\nThe site is built: {index}\nOpen it in a browser, or serve it with "
          f"`python -m http.server -d {index.parent}`.")
    return index


def _measure_child(path: str, parameters: str) -> None:
    """Run in a fresh process: execute one notebook, print seconds and the kernel's peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        seconds = execute(Path(path), Path(tmp) / "out.ipynb", json.loads(parameters))
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_rss_gib": peak_kib / 2**20}))


def benchmark(args) -> None:
    """Per notebook, cold (empty cache) then warm (same cache) wall time and peak memory."""
    import pandas as pd
    params = json.dumps({"profile": args.profile, "seed": args.seed})
    rows = []
    shared = tempfile.mkdtemp(prefix="fplab-bench-")
    try:
        for path in notebook_paths(args.only):
            # a fresh, empty cache per notebook (cold), then the same cache again (warm)
            cache = shared if args.shared_cache else tempfile.mkdtemp(prefix="fplab-bench-")
            env = dict(os.environ, FPLAB_CACHE=cache)
            for state in ("cold", "warm"):
                child = subprocess.run(
                    [sys.executable, "-m", "fplab", "_measure", str(path), params], env=env,
                    capture_output=True, text=True, check=True)
                figures = json.loads(child.stdout.strip().splitlines()[-1])
                rows.append({"notebook": path.name, "cache": state,
                             "wall time (s)": round(figures["seconds"], 1),
                             "peak RSS (GiB)": round(figures["peak_rss_gib"], 2)})
                print(rows[-1], flush=True)
            if cache != shared:
                shutil.rmtree(cache, ignore_errors=True)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    print("\nNotebooks (papermill, profile=%s):" % args.profile)
    print(pd.DataFrame(rows).to_string(index=False))
    for name, figures in _micro_benchmarks():
        print(f"\n{name}:")
        for key, value in figures.items():
            print(f"  {key}: {value}")


def _micro_benchmarks():
    """The chapters' own benchmarks: the pruning curve (chapter 2) and ANP's throughput (chapter 5)."""
    from .defenses.anp import benchmark_anp
    from .defenses.pruning import benchmark_pruning_curve
    yield "fplab.defenses.pruning.benchmark_pruning_curve", benchmark_pruning_curve()
    yield "fplab.defenses.anp.benchmark_anp", benchmark_anp()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fplab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "book", "benchmark"):
        p = sub.add_parser(name)
        p.add_argument("--profile", default="fast", choices=["fast", "full"])
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 01 02")
        if name != "benchmark":
            p.add_argument("--in-place", action="store_true",
                           help="overwrite notebooks/ with the executed copies (maintainers)")
        if name == "book":
            p.add_argument("--no-execute", action="store_true",
                           help="publish the committed notebooks as they are")
        if name == "benchmark":
            p.add_argument("--shared-cache", action="store_true",
                           help="keep the zoo between notebooks (later chapters reuse models)")
    p = sub.add_parser("sha256")
    p.add_argument("file")
    p = sub.add_parser("_measure")
    p.add_argument("path")
    p.add_argument("parameters")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args)
    elif args.command == "book":
        book(args)
    elif args.command == "benchmark":
        benchmark(args)
    elif args.command == "sha256":
        print(f"{sha256_file(args.file)}  {args.file}")
    else:
        _measure_child(args.path, args.parameters)


if __name__ == "__main__":
    main()
