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
``ship-weights``   maintainers: the shipped case-study models (``fplab/weights``)
``ship-results``   maintainers: the shipped computed results (``fplab/results``)
=================  ==================================================================
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .paths import REPO_ROOT
from .runner import BUILD, NOTEBOOKS, execute, notebook_paths, resolve_user_paths
from .scoreboard import write_scoreboard
from .store import sha256_file


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
    write_scoreboard(site / "book" / "scoreboard.md",
                     [site / "notebooks" / p.name for p in notebook_paths()])
    script = Path(sys.executable).with_name("jupyter-book")  # installed beside this Python
    command = [str(script) if script.exists() else "jupyter-book", "build", str(site),
               "--path-output", str(REPO_ROOT), "--all", "-W", "--keep-going"]  # site: _build/html
    subprocess.run(command, check=True)
    index = BUILD / "html" / "index.html"
    print(f"\nThe site is built: {index}\nOpen it in a browser, or serve it with "
          f"`python -m http.server -d {index.parent}`.")
    return index


def _case_recipes(profile: str = "fast", seed: int = 0):
    """``[(case, kind, recipe)]``: every case-study recipe whose training is shipped
    (:data:`fplab.chapters.casestudies.SHIPPED_CASES`), the clean model included."""
    from .chapters.casestudies import SHIPPED_CASES, case_study
    out = []
    for name in SHIPPED_CASES:
        c = case_study(name, profile, seed)
        for kind in ("clean", "baseline", "pruning_aware"):
            out.append((c, kind, getattr(c, f"{kind}_recipe")()))
    return out


def _chapter_recipes(profile: str = "fast", seed: int = 0):
    """``[(label, recipe)]``: the models of chapters 5-7 (ANP's attacks on GTSRB-10, chapter 6's
    defended MNIST networks, chapter 7's adaptive attackers). Together they are most of the
    course's training time (chapter 5's six GTSRB models alone about 25 minutes on one CPU thread,
    its four quarter-width ResNet-18s about 20), so they ship."""
    from .chapters import ch05_anp as ch5, ch06_adaptive_attacks as ch6
    from .chapters import ch07_adaptive_backdoors as ch7
    splits5 = ch5.base_recipe(profile, seed).splits()
    out = [(f"ch05/{name or 'clean'}", ch5.recipe(name, profile, seed, splits=splits5))
           for name in (None, *ch5.ATTACKS)]
    out += [(f"ch05/deep-{name}", ch5.deep_recipe(name, profile, seed, splits=splits5))
            for name in ch5.DEEP_ATTACKS]
    out += [(f"ch05/deep-BadNets-seed{s}", ch5.deep_recipe("BadNets", profile, s, splits=splits5))
            for s in ch5.deep_seeds(seed)[1:]]
    out += [(f"ch05/mnist-{position}", ch5.mnist_corner(position, seed)[0])
            for position in ("bottom-right", "center")]
    out += [(f"ch06/{name}", r) for name, r in ch6.recipes(profile, seed).items()]
    out += [(f"ch07/{name or 'clean'}", ch7.recipe(name, profile, seed))
            for name in (None, *ch7.ATTACKERS)]
    return out


def _measure(case, recipe, cache) -> dict:
    """Clean accuracy and attack success of ``recipe``'s model: the case study's own evaluation,
    or (``case=None``) on the recipe's test split with its own attack."""
    from . import zoo
    splits = case.splits() if case is not None else recipe.splits()
    model = zoo.load(recipe, cache=cache, splits=splits).model
    if case is not None:
        return {k: round(v, 4) for k, v in case.evaluate(model, splits).items()}
    return _scores(model, recipe, splits)


def _scores(model, recipe, splits) -> dict:
    """Clean accuracy on ``recipe``'s test split and, for a poisoned recipe, its attack's success
    (:func:`fplab.metrics.evaluate`, rounded; no ``asr`` for a clean recipe)."""
    from .metrics import evaluate
    scores = evaluate(model, splits.test, recipe.get_attack(), splits.num_classes)
    return {k: round(v, 4) for k, v in scores.items() if v is not None}


def _results_models():
    """``[(label, recipe, folder)]``: the trained models the results snapshot ships
    (``fplab/results/zoo``: chapter 1's networks, chapter 2's contrast cases) beside
    ``fplab/weights``. They are shipped weights too, so ``retrain-shipped`` retrains them."""
    from .store import SHIPPED_RESULTS, ZOO_FOLDER
    from .zoo import Recipe
    return [(f"results/{m.parent.name}", Recipe(**json.loads(m.read_text())["recipe"]), m.parent)
            for m in sorted((SHIPPED_RESULTS / ZOO_FOLDER).glob("*/manifest.json"))]


def _selected(only, label: str, key: str) -> bool:
    """Whether ``--only`` (labels or keys; empty: everything) selects the entry ``label`` / ``key``."""
    return not only or label in only or key in only


def _shipped_recipes():
    """``[(label, case or None, recipe)]``: everything ``ship-weights`` ships."""
    return ([(f"{c.name}/{kind}", c, r) for c, kind, r in _case_recipes()]
            + [(label, None, r) for label, r in _chapter_recipes()])


def ship_weights(args) -> None:
    """Maintainers: train (or take from the cache, never from fplab/weights itself) every shipped
    case-study model and chapter 2's fast capacity maps, copy them into fplab/weights and write
    its manifest: SHA-256 of every file, and the clean accuracy / attack success each model
    measures. Run it under ``make`` 's portable numerics (``make ship-weights``) so that
    ``retrain-shipped`` reproduces the files on any machine.

    ``--only`` labels (``ch07/ANP-aware``), keys or a map's label (``capacity``,
    ``capacity-speech``): ship just those and keep every
    other entry as shipped (refused if another recipe has changed and has no shipped entry)."""
    import shutil
    from dataclasses import asdict
    from . import zoo
    from .capacity import MAP_FILE, capacity_map, map_key
    from .chapters.ch02_pruning import shipped_maps
    from .store import atomic_write_json
    only = set(getattr(args, "only", None) or ())
    old = zoo.shipped_entries() if only else {}
    entries = _ship_deep_masks(only, old)  # of the models as shipped: before shipping is off
    os.environ["FPLAB_NO_SHIPPED"] = "1"
    missing = []
    for label, case, recipe in _shipped_recipes():
        key = recipe.recipe_hash()
        if not _selected(only, label, key):
            if key in old:
                entries[key] = old[key]
            else:
                missing.append(label)
            continue
        measured = _measure(case, recipe, None)
        source, target = zoo.entry_dir(recipe), zoo.SHIPPED_DIR / key
        target.mkdir(parents=True, exist_ok=True)
        files = {}
        for path in sorted(source.iterdir()):
            shutil.copyfile(path, target / path.name)
            files[path.name] = sha256_file(target / path.name)
        entries[key] = {"label": label, "kind": recipe.kind, "recipe": asdict(recipe),
                        "files": files, "measured": measured}
        if case is not None:
            entries[key].update(case=case.name, kind=label.split("/")[1])
        print(f"shipped {label} {key}: {measured}")
    if missing:
        raise SystemExit(f"ship-weights --only: these recipes changed and have no shipped entry; "
                         f"ship them too: {' '.join(missing)}")
    for label, recipe, widths, epochs, base in shipped_maps("fast"):
        key = map_key(recipe, widths, epochs, base)
        if only and label not in only and key in old:
            entries[key] = old[key]
            continue
        table = capacity_map(recipe, widths, epochs, base, shipped=False)
        (zoo.SHIPPED_DIR / key).mkdir(parents=True, exist_ok=True)
        (zoo.SHIPPED_DIR / key / MAP_FILE).write_text(table.to_json(orient="records", indent=1))
        entries[key] = {"label": label, "kind": "capacity_map", "profile": "fast",
                        "files": {MAP_FILE: sha256_file(zoo.SHIPPED_DIR / key / MAP_FILE)},
                        "recipe": {"base": asdict(recipe), "network": base,
                                   "widths": list(widths), "epochs": list(epochs)}}
        print(f"shipped the fast capacity map {label} {key}")
    for stale in zoo.SHIPPED_DIR.iterdir():  # entries of recipes that no longer exist
        if stale.is_dir() and stale.name not in entries:
            shutil.rmtree(stale)
    atomic_write_json(entries, zoo.SHIPPED_MANIFEST)


def _ship_deep_masks(only, old: dict) -> dict:
    """Chapter 5's deeper-network ANP runs (:func:`fplab.chapters.ch05_anp.shipped_deep_runs`:
    an hour each on one CPU thread) into fplab/weights, for the models as they ship: read from
    the cache, the results snapshot or fplab/weights itself (:func:`masks_for`), else computed. ``{key: manifest entry}``; with ``only``,
    the runs not named keep their shipped entries."""
    from . import zoo
    from .chapters.ch05_anp import masks_for, shipped_deep_runs
    from .defenses.anp import ship_masks
    entries = {}
    for label, recipe, clean, anp, seed in shipped_deep_runs():
        kept = [k for k, e in old.items() if e.get("label") == label]
        if only and label not in only and kept:
            entries[kept[0]] = old[kept[0]]
            continue
        model = zoo.load(recipe, splits=recipe.splits()).model
        result = masks_for(model, clean, anp, seed, progress=True)
        files = ship_masks(result, zoo.SHIPPED_DIR / result.shipped_key)
        entries[result.shipped_key] = {"label": label, "kind": "anp_masks", "files": files,
                                       "model": recipe.recipe_hash(), "seed": seed,
                                       "anp": {k: list(v) if isinstance(v, tuple) else v
                                               for k, v in anp.items()}}
        print(f"shipped {label} {result.shipped_key} (model {recipe.recipe_hash()})")
    return entries


def retrain_shipped(args) -> bool:
    """Retrain every shipped model (or the ``--only`` keys) from its recipe in a fresh cache and
    report whether it reaches the shipped clean accuracy and attack success within 1 point: the
    models of ``fplab/weights``, the models the results snapshot ships (``fplab/results/zoo``)
    and the shipped capacity maps."""
    import tempfile
    from . import zoo
    ok = True
    saved = {k: os.environ.get(k) for k in ("FPLAB_NO_SHIPPED", "FPLAB_CACHE")}
    os.environ["FPLAB_NO_SHIPPED"] = "1"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["FPLAB_CACHE"] = tmp  # every model retrained here, a PA's clean model too
            for label, case, recipe in _shipped_recipes():
                entry = zoo.shipped_entries().get(recipe.recipe_hash())
                if entry is None or not _selected(args.only, label, recipe.recipe_hash()):
                    continue
                ok &= _compare(f"{label} {recipe.recipe_hash()}", entry["measured"],
                               _measure(case, recipe, None), zoo.entry_dir(recipe),
                               zoo.SHIPPED_DIR / recipe.recipe_hash())
            ok &= _retrain_results_models(args.only)
            ok &= _recompute_shipped_maps(args.only)
            ok &= _recompute_deep_masks(args.only)
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return ok


def _retrain_results_models(only) -> bool:
    """Retrain each model of the results snapshot (:func:`_results_models`) into the current
    ``$FPLAB_CACHE`` and compare its clean accuracy and attack success with the shipped model's,
    measured now on the same data, within 1 point (the caller has switched shipped files off)."""
    from . import zoo
    ok = True
    for label, recipe, folder in _results_models():
        if not _selected(only, label, folder.name):
            continue
        splits = recipe.splits()
        ok &= _compare(label, _scores(zoo.entry_model(folder), recipe, splits),
                       _scores(zoo.load(recipe, splits=splits).model, recipe, splits),
                       zoo.entry_dir(recipe), folder)
    return ok


def _compare(name: str, shipped: dict, again: dict, retrained: Path, original: Path) -> bool:
    """Print and return whether the retrained model's scores are within 1 point of the shipped
    ones; say whether the two entry folders' weights are bit-identical."""
    from .numerics import family, machine
    same = all(abs(again[k] - shipped[k]) <= 0.01 + 1e-9 for k in again)
    identical = _same_tensors(retrained / "model.pt", original / "model.pt")
    manifest = original / "manifest.json"
    trained_on = json.loads(manifest.read_text()).get("machine") if manifest.exists() else None
    if trained_on is None:
        origin = "shipped from an unrecorded processor"
    elif family(trained_on) == family():
        origin = "shipped from this processor family"
    else:
        origin = f"shipped from another processor family: {trained_on}; here: {machine()}"
    print(f"{name}: shipped {shipped}, retrained {again} -> "
          f"{'same within 1 point' if same else 'DIFFERENT'}"
          f" ({'bit-identical weights' if identical else 'other weights'}; {origin})")
    return same


def _same_tensors(a: Path, b: Path) -> bool:
    """Whether two saved state dicts hold bit-identical tensors (the files' bytes differ anyway:
    torch writes a fresh serialization id into every file)."""
    import torch
    first, second = (torch.load(p, weights_only=True, map_location="cpu") for p in (a, b))
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def _recompute_shipped_maps(only) -> bool:
    """Recompute each shipped capacity map (chapter 2) from its recipes and compare every cell's
    attack success, success at the stopping rule and dormant fraction within 1 point."""
    from . import zoo
    from .capacity import capacity_map, map_key, shipped_map
    from .chapters.ch02_pruning import shipped_maps
    ok = True
    for label, recipe, widths, epochs, base in shipped_maps("fast"):
        key = map_key(recipe, widths, epochs, base)
        if (only and label not in only) or key not in zoo.shipped_entries():
            continue
        os.environ.pop("FPLAB_NO_SHIPPED", None)
        shipped = shipped_map(key)
        os.environ["FPLAB_NO_SHIPPED"] = "1"
        again = capacity_map(recipe, widths, epochs, base, shipped=False)
        columns = ["asr", "stop_asr", "dormant", "clean_acc"]
        diff = (again[columns] - shipped[columns]).abs().max().max()
        ok &= bool(diff <= 0.01 + 1e-9)
        print(f"capacity map {label} {key}: largest difference {100 * diff:.1f} points -> "
              f"{'same within 1 point' if diff <= 0.01 + 1e-9 else 'DIFFERENT'}")
    return ok


def _recompute_deep_masks(only) -> bool:
    """Recompute the shipped ANP runs of chapter 5's deeper network that ``only`` names (an hour
    each on one CPU thread: never without ``--only``) on the shipped models, and compare every
    mask (final and recorded) with the shipped ones within 0.01."""
    from . import zoo
    from .chapters.ch05_anp import shipped_deep_runs
    from .defenses.anp import anp_masks, read_shipped_masks
    ok = True
    for label, recipe, clean, anp, seed in shipped_deep_runs():
        if not only or label not in only:
            continue
        model = zoo.entry_model(zoo.SHIPPED_DIR / recipe.recipe_hash())
        again = anp_masks(model, clean, n_clean=len(clean), seed=seed, **anp)
        os.environ.pop("FPLAB_NO_SHIPPED", None)
        shipped = read_shipped_masks(again.shipped_key)
        os.environ["FPLAB_NO_SHIPPED"] = "1"
        if shipped is None:
            print(f"{label}: no shipped masks for the shipped model and these arguments -> DIFFERENT")
            ok = False
            continue
        pairs = [(shipped.masks, again.masks)] + [(shipped.history[i], again.history[i])
                                                 for i in shipped.history]
        diff = max((a[n] - b[n]).abs().max().item() for a, b in pairs for n in a)
        ok &= diff <= 0.01
        print(f"{label} {again.shipped_key}: largest mask difference {diff:.4f} -> "
              f"{'same within 0.01' if diff <= 0.01 else 'DIFFERENT'}")
    return ok


def ship_results(args) -> None:
    """Maintainers: replace ``fplab/results`` with a snapshot of the cache (see
    :data:`fplab.store.SHIPPED_RESULTS`): every file but the datasets and the zoo entries that
    ``fplab/weights`` already ships, with its SHA-256. Run it on a cache that a single-threaded
    fast-profile run of every notebook has just filled from empty (``make ship-results`` does
    both), so that exactly what ``make test`` computes ships. Prints how many files are the same
    as in the previous snapshot, bit for bit (a re-computation's check), changed, new or gone."""
    from . import zoo
    from .paths import cache_dir
    from .store import (RESULTS_MANIFEST, SHIPPED_RESULTS, ZOO_FOLDER, atomic_write_json,
                        copy_verified)
    cache = cache_dir()
    curated = {e["files"].get("manifest.json") for e in zoo.shipped_entries().values()}
    files = []
    for path in sorted(p for p in cache.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = path.relative_to(cache)
        if rel.parts[0] == "datasets":
            continue
        if rel.parts[0] == ZOO_FOLDER:
            record = cache / ZOO_FOLDER / rel.parts[1] / "manifest.json"
            if not record.exists() or sha256_file(record) in curated:
                continue
        files.append((path, SHIPPED_RESULTS / rel, sha256_file(path)))
    if not files:
        raise SystemExit(f"ship-results: nothing computed in {cache}")
    old = json.loads(RESULTS_MANIFEST.read_text()) if RESULTS_MANIFEST.exists() else {}
    if SHIPPED_RESULTS.exists():
        shutil.rmtree(SHIPPED_RESULTS)
    copy_verified(files)
    manifest = {target.relative_to(SHIPPED_RESULTS).as_posix(): digest for _, target, digest in files}
    atomic_write_json(manifest, RESULTS_MANIFEST)
    same = sum(old.get(n) == d for n, d in manifest.items())
    changed = sum(n in old and old[n] != d for n, d in manifest.items())
    size = sum(p.stat().st_size for _, p, _ in files)
    print(f"shipped {len(manifest)} files from {cache} ({size / 2**20:.1f} MiB): {same} the same "
          f"as before, {changed} changed, {len(set(manifest) - set(old))} new, "
          f"{len(set(old) - set(manifest))} gone")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fplab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "book", "benchmark"):
        p = sub.add_parser(name)
        p.add_argument("--profile", default="fast", choices=["fast", "full"])
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 01 02")
        p.add_argument("--data-root", help="the data root (default: $FPLAB_DATA, else data/); "
                       "a relative path is read from the current directory")
        p.add_argument("--cache", help="the cache folder (default: $FPLAB_CACHE, else "
                       "~/.cache/fplab); a relative path is read from the current directory")
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
    p = sub.add_parser("ship-weights", help="maintainers: copy the trained case-study models into "
                   "fplab/weights (with their SHA-256 manifest)")
    p.add_argument("--only", nargs="*", help="labels, keys or a map ('capacity', 'capacity-speech'): "
                   "ship just these, keep "
                   "the rest, e.g. ch07/ANP-aware")
    sub.add_parser("ship-results", help="maintainers: copy the computed results in the cache "
                   "(ANP masks, fine-tuned weights) into fplab/results (with their SHA-256)")
    p = sub.add_parser("retrain-shipped", help="retrain every shipped model from its recipe and "
                       "check it reaches the same clean accuracy and attack success (1 point)")
    p.add_argument("--only", nargs="*", help="keys or labels, e.g. speech/clean, ch07/ANP-aware, "
                   "results/085dc6b1288c79f7 (a model of fplab/results/zoo), capacity, "
                   "capacity-speech")
    p = sub.add_parser("_measure")
    p.add_argument("path")
    p.add_argument("parameters")
    args = parser.parse_args(argv)
    for option, variable in (("data_root", "FPLAB_DATA"), ("cache", "FPLAB_CACHE")):
        if getattr(args, option, None):
            os.environ[variable] = getattr(args, option)
    resolve_user_paths()  # before any notebook runs (papermill starts kernels in notebooks/)
    if args.command == "run":
        run(args)
    elif args.command == "book":
        book(args)
    elif args.command == "benchmark":
        from .benchmark import benchmark
        benchmark(args)
    elif args.command == "ship-weights":
        ship_weights(args)
    elif args.command == "ship-results":
        ship_results(args)
    elif args.command == "retrain-shipped":
        raise SystemExit(0 if retrain_shipped(args) else 1)
    elif args.command == "sha256":
        print(f"{sha256_file(args.file)}  {args.file}")
    else:
        from .benchmark import measure_child
        measure_child(args.path, args.parameters)


if __name__ == "__main__":
    main()
