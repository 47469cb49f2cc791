"""Shipped computed results (``fplab/results``, a snapshot of a fast-profile run's cache): an
entry the cache lacks is installed from the package only when every one of its files matches
its SHA-256, never with ``FPLAB_NO_SHIPPED``; ``ship-results`` ships exactly what the cache
holds, and the snapshot in the repository lists every file it has."""

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from fplab import cli, store, zoo
from fplab.errors import IntegrityError
from fplab.paths import cache_dir

from conftest import flip_last_byte

RECIPE = zoo.Recipe("synthetic", "mnist_cnn", None, {"epochs": 1, "lr": 1e-2, "batch_size": 64})


@pytest.fixture
def shipped(cache, tmp_path, monkeypatch):
    """A result and a model computed into a scratch cache, shipped into a scratch snapshot, and
    the cache emptied again: ``(folder, key, object, model)``."""
    results = tmp_path / "results"
    monkeypatch.setattr(store, "SHIPPED_RESULTS", results)
    monkeypatch.setattr(store, "RESULTS_MANIFEST", results / "SHA256SUMS.json")
    folder, key, obj = cache_dir() / "anp", "0123abcd", {"masks": [torch.arange(4.0)]}
    store.save_result(folder, key, obj, {"seconds": 1.5})
    model = zoo.load(RECIPE)
    cli.ship_results(SimpleNamespace())
    shutil.rmtree(cache_dir())
    return folder, key, obj, model


def test_a_shipped_result_stands_in_for_a_missing_one(shipped):
    folder, key, obj, _ = shipped
    names = set(json.loads(store.RESULTS_MANIFEST.read_text()))
    assert {f"anp/{key}.pt", f"anp/{key}.json"} <= names
    loaded, record = store.load_result(folder, key)
    assert torch.equal(loaded["masks"][0], obj["masks"][0]) and record["seconds"] == 1.5
    assert (folder / f"{key}.pt").exists()  # installed into the cache


def test_a_shipped_model_is_loaded_not_trained(shipped):
    *_, first = shipped
    again = zoo.load(RECIPE)
    assert not again.trained_now and again.sha256 == first.sha256


def test_a_tampered_shipped_file_is_refused(shipped):
    folder, key, _, first = shipped
    for path in (store.SHIPPED_RESULTS / "anp" / f"{key}.pt",
                 store.SHIPPED_RESULTS / first.path.relative_to(first.path.parents[2])):
        flip_last_byte(path)
    with pytest.raises(IntegrityError):
        store.load_result(folder, key)
    assert not (folder / f"{key}.json").exists()
    with pytest.raises(IntegrityError):
        zoo.load(RECIPE)
    assert not (zoo.entry_dir(RECIPE) / "manifest.json").exists()


def test_no_shipped_computes_again(shipped, monkeypatch):
    folder, key, _, _ = shipped
    monkeypatch.setenv("FPLAB_NO_SHIPPED", "1")
    assert store.load_result(folder, key) is None
    assert zoo.load(RECIPE).trained_now


def test_no_shipped_results_computes_results_but_keeps_shipped_models(shipped, monkeypatch):
    folder, key, _, first = shipped
    monkeypatch.setenv("FPLAB_NO_SHIPPED_RESULTS", "1")
    assert store.load_result(folder, key) is None
    again = zoo.load(RECIPE)
    assert not again.trained_now and again.sha256 == first.sha256


def test_the_snapshot_lists_every_file_and_stays_small():
    manifest = store.shipped_results()
    for name, digest in manifest.items():
        assert store.sha256_file(store.SHIPPED_RESULTS / name) == digest, name
    files = {p.relative_to(store.SHIPPED_RESULTS).as_posix()
             for p in store.SHIPPED_RESULTS.rglob("*") if p.is_file()} \
        if store.SHIPPED_RESULTS.exists() else set()
    assert files - {"SHA256SUMS.json"} == set(manifest)  # nothing unlisted, nothing missing
    total = sum((store.SHIPPED_RESULTS / n).stat().st_size for n in files)
    # a fast-profile cache snapshot: 99 MiB, then 111.6 MiB with chapter 5's deeper network (its six
    # fine-tuned ResNets are 17 MiB, 2026-12-07), 117.1 MiB with chapter 2's two longer-trained
    # speech models (session 17); shrink it before it grows further
    assert total < 120 * 2**20
