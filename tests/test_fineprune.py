"""Unit tests of fine-tuning and fine-pruning (synthetic data, tiny models)."""

import pytest
import torch

from fplab import zoo
from fplab.data import Data
from fplab.defenses.finetune import fine_tune
from fplab.defenses.fineprune import fine_prune
from fplab.defenses.pruning import get_channel_mask
from fplab.poison import Attack


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    attack = Attack("square", "all_to_one", target=0, rate=0.1)
    recipe = zoo.Recipe("synthetic", "mnist_cnn", attack.spec(), {"epochs": 1, "lr": 3e-3})
    entry = zoo.load(recipe, cache=cache)
    return recipe, cache, entry


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_fine_prune_never_touches_cached_model(cached):
    recipe, cache, entry = cached
    splits = recipe.splits()
    before = _state(entry.model)
    result = fine_prune(entry.model, splits.val, fraction=0.5, epochs=1, lr=1e-3, progress=False)
    for k, v in entry.model.state_dict().items():
        assert torch.equal(v, before[k])
    assert get_channel_mask(entry.model) is None
    again = zoo.load(recipe, cache=cache)  # the file still verifies and holds the same weights
    assert again.sha256 == entry.sha256
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, before[k])
    # the pruned channels stay pruned after fine-tuning
    mask = get_channel_mask(result.model)
    assert mask is not None and int((mask == 0).sum()) == len(result.pruned.pruned)


def test_fine_tune_copies(cached):
    recipe, _, entry = cached
    before = _state(entry.model)
    tuned = fine_tune(entry.model, recipe.splits().val, epochs=1, progress=False)
    assert tuned is not entry.model
    for k, v in entry.model.state_dict().items():
        assert torch.equal(v, before[k])


def test_fine_prune_stopping_rule(cached):
    recipe, _, entry = cached
    result = fine_prune(entry.model, recipe.splits().val, max_drop=0.04, epochs=1, progress=False)
    assert 0.0 <= result.fraction <= 1.0


def test_bad_input(cached):
    recipe, _, entry = cached
    val = recipe.splits().val
    with pytest.raises(ValueError, match="fraction"):
        fine_prune(entry.model, val, fraction=2.0, progress=False)
    with pytest.raises(ValueError, match="empty"):
        fine_tune(entry.model, Data(val.x[:0], val.y[:0]), progress=False)
    with pytest.raises(ValueError, match="empty"):
        fine_prune(entry.model, Data(val.x[:0], val.y[:0]), progress=False)
