"""Shipped weights (issue 8): installed into the cache only when every file matches its SHA-256,
and (marked ``retrain``) the quickest shipped model trained on this kind of processor, and the
quickest MNIST model of the results snapshot, retrain from their recipes to the same clean
accuracy and attack success within 1 point."""

import json
import shutil

import pytest

from fplab import zoo
from fplab.errors import IntegrityError
from fplab.numerics import family, machine

from conftest import flip_last_byte


def _fake_shipped(tmp_path, monkeypatch, synthetic_recipe):
    """Train a tiny recipe into a scratch cache and ship it from a scratch weights folder."""
    from fplab.store import sha256_file
    entry = zoo.load(synthetic_recipe)
    shipped = tmp_path / "weights"
    (shipped / synthetic_recipe.recipe_hash()).mkdir(parents=True)
    files = {}
    for path in entry.path.parent.iterdir():
        shutil.copyfile(path, shipped / synthetic_recipe.recipe_hash() / path.name)
        files[path.name] = sha256_file(path)
    (shipped / "SHA256SUMS.json").write_text(json.dumps({synthetic_recipe.recipe_hash(): {"files": files}}))
    monkeypatch.setattr(zoo, "SHIPPED_DIR", shipped)
    monkeypatch.setattr(zoo, "SHIPPED_MANIFEST", shipped / "SHA256SUMS.json")
    shutil.rmtree(entry.path.parent)
    return shipped, entry


RECIPE = zoo.Recipe("synthetic", "mnist_cnn", None, {"epochs": 1, "lr": 1e-2, "batch_size": 64})


def test_load_installs_a_shipped_entry_instead_of_training(cache, tmp_path, monkeypatch):
    _, first = _fake_shipped(tmp_path, monkeypatch, RECIPE)
    again = zoo.load(RECIPE)
    assert not again.trained_now and again.sha256 == first.sha256


def test_a_tampered_shipped_file_is_refused(cache, tmp_path, monkeypatch):
    shipped, _ = _fake_shipped(tmp_path, monkeypatch, RECIPE)
    model = shipped / RECIPE.recipe_hash() / "model.pt"
    flip_last_byte(model)
    with pytest.raises(IntegrityError):
        zoo.load(RECIPE)
    folder = zoo.entry_dir(RECIPE)
    assert not folder.exists() or not (folder / "manifest.json").exists()


def test_shipped_manifest_lists_existing_files():
    for key, entry in zoo.shipped_entries().items():
        for name in entry["files"]:
            assert (zoo.SHIPPED_DIR / key / name).exists(), (key, name)
    files = zoo.SHIPPED_DIR.rglob("*") if zoo.SHIPPED_DIR.exists() else []
    total = sum(p.stat().st_size for p in files if p.is_file())
    # 31 small networks and a map (four quarter-width ResNet-18s for chapter 5, 2.9 MB each:
    # 48.3 MiB in all, 2026-12-07): the repository stays a quick clone
    assert total < 52 * 2**20


@pytest.mark.retrain
def test_the_cheapest_shipped_model_of_this_processor_retrains_to_the_same_numbers(cache):
    """CI retrains a shipped model: the quickest to train among those trained on this processor
    family (the same seed trains other weights on another family, even in a portable run:
    :func:`fplab.numerics.family`), so the check holds on every machine of a family that trained
    one."""
    from fplab.cli import retrain_shipped
    from types import SimpleNamespace
    entries = zoo.shipped_entries()
    if not entries:
        pytest.skip("no shipped weights")
    records = {k: json.loads((zoo.SHIPPED_DIR / k / "manifest.json").read_text())
               for k in entries if (zoo.SHIPPED_DIR / k / "manifest.json").exists()}
    here = sorted((r["train_seconds"], k) for k, r in records.items()
                  if r.get("machine") and family(r["machine"]) == family())
    if not here:
        pytest.skip(f"the shipped models were trained on {sorted({str(r.get('machine')) for r in records.values()})}, "
                    f"this is {machine()!r}: retrained weights differ across processor families")
    assert retrain_shipped(SimpleNamespace(only=[here[0][1]]))


def test_the_shipped_capacity_map_is_used_verified_and_refused_when_tampered(monkeypatch):
    """Chapter 2's fast map ships (nine networks to train otherwise): it loads without training,
    and a changed byte is refused."""
    from fplab import capacity
    from fplab.chapters.ch02_pruning import CAPACITY_GRID, capacity_recipe
    grid = CAPACITY_GRID["fast"]
    recipe = capacity_recipe("fast")
    monkeypatch.setattr(zoo, "load", lambda *a, **k: pytest.fail("the map must not train"))
    table = capacity.capacity_map(recipe, grid["widths"], grid["epochs"], progress=False)
    assert len(table) == 9 and set(table["width"]) == set(grid["widths"])
    key = capacity.map_key(recipe, grid["widths"], grid["epochs"])
    entry = dict(zoo.shipped_entries()[key])
    monkeypatch.setattr(zoo, "shipped_entries",
                        lambda: {key: {**entry, "files": {capacity.MAP_FILE: "0" * 64}}})
    with pytest.raises(IntegrityError):
        capacity.capacity_map(recipe, grid["widths"], grid["epochs"], progress=False)


@pytest.mark.retrain
def test_a_model_of_the_results_snapshot_retrains_to_the_same_numbers(cache, capsys):
    """The results snapshot ships trained models too (``fplab/results/zoo``: chapter 1's networks,
    chapter 2's contrast cases); ``retrain-shipped`` covers them. CI retrains the quickest MNIST one
    (10,000 test digits: a point is 100 of them, so the 1-point check is not a coin toss)."""
    from fplab.cli import _results_models, retrain_shipped
    from types import SimpleNamespace
    models = [(json.loads((folder / "manifest.json").read_text())["train_seconds"], label)
              for label, recipe, folder in _results_models() if recipe.dataset == "mnist"]
    if not models:
        pytest.skip("the results snapshot ships no MNIST model")
    label = min(models)[1]
    assert retrain_shipped(SimpleNamespace(only=[label]))
    assert f"{label}: shipped" in capsys.readouterr().out  # it was retrained, not skipped


def test_the_deeper_networks_anp_runs_ship_for_the_notebooks_own_arguments(cache, monkeypatch):
    """Chapter 5's four 2000-iteration ANP runs (an hour each on one CPU thread) ship for the
    shipped models, the notebook's clean images and its arguments (its parameters cell is
    :data:`NOTEBOOK_ANP`), so no reader's run of the chapter computes them, whatever its thread
    count: they are read, verified, without one optimisation step."""
    import nbformat
    from fplab.chapters import ch05_anp as bench
    from fplab.defenses import anp
    from fplab.paths import REPO_ROOT
    nb = nbformat.read(REPO_ROOT / "notebooks" / "05_anp.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params: dict = {}
    exec(cell.source, params)
    notebook = {"eps": params["eps"], "steps": params["steps"], "alpha": params["alpha"],
                "lr": params["mask_lr"], "iterations": params["fast_iterations"],
                "batch_size": params["batch_size"]}
    assert notebook == bench.NOTEBOOK_ANP and params["n_clean"] == bench.NOTEBOOK_N_CLEAN
    monkeypatch.setattr(anp, "_maximise_noise", lambda *a, **k: pytest.fail("computed, not read"))
    monkeypatch.setenv("FPLAB_NO_SHIPPED_RESULTS", "1")  # not from the snapshot (a cold run's view)
    runs = bench.shipped_deep_runs()
    assert len(runs) == len(bench.DEEP_ATTACKS) + bench.DEEP_REPLICATES - 1
    for label, recipe, clean, args, seed in runs:
        model = zoo.load(recipe, splits=recipe.splits()).model
        result = bench.deep_masks(model, clean, bench.NOTEBOOK_ANP, seed)
        assert result.cached and zoo.shipped_entries()[result.shipped_key]["label"] == label
        assert sorted(result.history) == list(bench.DEEP_ITERATIONS) and result.iterations == 2000
        # the section's benchmark table (run_defenses) asks for the same run through masks_for
        assert bench.masks_for(model, clean, bench.deep_anp(bench.NOTEBOOK_ANP), seed).cached
