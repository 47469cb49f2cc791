"""Unit tests of fine-tuning and fine-pruning (synthetic data, tiny models)."""

import pytest
import torch

from fplab import zoo
from fplab.data import Data
from fplab.defenses.finetune import fine_tune
from fplab.defenses.fineprune import fine_prune
from fplab.defenses.pruning import get_channel_mask
from fplab.models import copy_model
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
    from fplab.defenses.pruning import stopping_point, val_accuracy_curve
    val = recipe.splits().val
    result = fine_prune(entry.model, val, max_drop=0.04, epochs=1, progress=False)
    full = val_accuracy_curve(entry.model, val)
    assert len(result.pruned.pruned) == stopping_point(full, 0.04)
    assert result.fraction == len(result.pruned.pruned) / len(full[1:])


def test_bad_input(cached):
    recipe, _, entry = cached
    val = recipe.splits().val
    with pytest.raises(ValueError, match="fraction"):
        fine_prune(entry.model, val, fraction=2.0, progress=False)
    with pytest.raises(ValueError, match="empty"):
        fine_tune(entry.model, Data(val.x[:0], val.y[:0]), progress=False)
    with pytest.raises(ValueError, match="empty"):
        fine_prune(entry.model, Data(val.x[:0], val.y[:0]), progress=False)


def test_fine_tune_cache_reuses_verified_weights(cached, cache, monkeypatch):
    from fplab.defenses import finetune
    from fplab.defenses.pruning import set_channel_mask
    from fplab.errors import IntegrityError
    recipe, _, entry = cached
    val = recipe.splits().val
    first = fine_tune(entry.model, val, epochs=1, lr=1e-3, progress=False, cache=True)
    files = sorted((cache / "finetune").glob("*.pt"))
    assert len(files) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the result was cached")

    monkeypatch.setattr(finetune, "train", no_training)
    again = fine_tune(entry.model, val, epochs=1, lr=1e-3, progress=False, cache=True)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in first.state_dict().items())
    # another mask, learning rate or data is another key: nothing stale is reused
    masked = set_channel_mask(copy_model(entry.model), [0])
    with pytest.raises(AssertionError, match="trained although"):
        fine_tune(masked, val, epochs=1, lr=1e-3, progress=False, cache=True)
    with pytest.raises(AssertionError, match="trained although"):
        fine_tune(entry.model, val, epochs=1, lr=2e-3, progress=False, cache=True)
    # a tampered file is refused, not silently retrained over
    files[0].write_bytes(files[0].read_bytes()[:-10])
    with pytest.raises(IntegrityError):
        fine_tune(entry.model, val, epochs=1, lr=1e-3, progress=False, cache=True)


def test_select_budget_uses_held_out_clean_data_only(cached):
    from fplab.defenses.finetune import select_budget, split_for_selection
    recipe, _, entry = cached
    val = recipe.splits().val
    fit, out = split_for_selection(val, held_out=0.25, seed=0)
    assert len(fit) + len(out) == len(val) and len(out) == round(0.25 * len(val))
    before = _state(entry.model)
    # a rate that wrecks the network scores worst on the held-out part and is not chosen
    budget = select_budget(entry.model, val, lrs=(1e-3, 50.0), max_epochs=2)
    assert budget.lr == 1e-3 and budget.epochs in (1, 2)
    assert set(budget.scores) == {(lr, e) for lr in (1e-3, 50.0) for e in (1, 2)}
    assert budget.held_out_accuracy == max(a for a, _ in budget.scores.values())
    assert all(torch.equal(v, before[k]) for k, v in entry.model.state_dict().items())
    again = select_budget(entry.model, val, lrs=(1e-3, 50.0), max_epochs=2)
    assert (again.lr, again.epochs) == (budget.lr, budget.epochs)
    with pytest.raises(ValueError, match="held_out"):
        split_for_selection(val, held_out=1.5)
    with pytest.raises(ValueError, match="max_epochs"):
        select_budget(entry.model, val, max_epochs=0)


def test_compare_defenses_with_selected_budget(cached):
    from fplab.defenses.fineprune import compare_defenses
    from fplab.metrics import accuracy
    recipe, _, entry = cached
    splits = recipe.splits()
    seen = []

    def evaluate(model):
        seen.append(model)
        return {"clean_acc": accuracy(model, splits.test)}

    r = compare_defenses(entry.model, evaluate, splits.val, progress=False,
                         select={"lrs": (1e-3,), "max_epochs": 2})
    assert set(r["budget"]) == {"fine-tune", "fine-prune"}
    assert all(b.lr == 1e-3 and 1 <= b.epochs <= 2 for b in r["budget"].values())
    assert len(seen) == 4 and "budget" not in compare_defenses(
        entry.model, evaluate, splits.val, epochs=1, progress=False)


def test_best_responses_count_every_tied_defense():
    """Chapter 4's Table 2 reading: a defense tied for the highest utility in a column is a best
    response too (not only the first row of the tie), and a lower one is not."""
    import pandas as pd
    from fplab.chapters.ch04_fine_pruning import best_responses
    index = pd.MultiIndex.from_product([["a", "b"], ["prune", "fine-tune", "fine-prune"]],
                                       names=["case", "defense"])
    utility = pd.DataFrame({"vs baseline": [0.1, 0.2, 0.3, 0.5, 0.1, 0.4],
                            "vs pruning-aware": [0.6, 0.1, 0.6, 0.2, 0.9, 0.3]}, index=index)
    best = best_responses(utility)
    assert best.loc["a", "best vs pruning-aware"] == "prune / fine-prune"
    assert best.loc["a", "fine-prune best in both"]
    assert best.loc["b", "best vs baseline"] == "prune"
    assert not best.loc["b", "fine-prune best in both"]
    assert best.loc["a", "max-min defense"] == "fine-prune"
