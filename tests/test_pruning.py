"""Unit tests of the pruning defense (synthetic data, tiny models: seconds)."""

import pytest
import torch

from fplab.data import Data, load_dataset
from fplab.defenses import pruning
from fplab.models import build_model, copy_model
from fplab.poison import Attack
from fplab.train import predict, train


@pytest.fixture(scope="module")
def splits():
    return load_dataset("synthetic")


@pytest.fixture(scope="module", params=["mnist_cnn", "mnist_cnn_bn"])
def model(request, splits):
    m = build_model(request.param, splits.shape, splits.num_classes, seed=0)
    train(m, splits.train, epochs=1, lr=3e-3, progress=False)
    return m


def test_mask_equals_physical_removal(model, splits):
    x = splits.test.x[:64]
    pruned = [0, 3, 5, 11]
    masked = pruning.set_channel_mask(copy_model(model), pruned)
    shrunk = pruning.shrink(model, pruned)
    assert shrunk.features.conv2.out_channels == model.features.conv2.out_channels - len(pruned)
    with torch.no_grad():
        assert torch.allclose(masked(x), shrunk(x), atol=1e-5)


def test_pruned_channel_contributes_exactly_zero(model, splits):
    from fplab.activations import channel_activations
    masked = pruning.set_channel_mask(copy_model(model), [1, 2])
    acts = channel_activations(masked, splits.test.x[:50])
    assert torch.all(acts[:, [1, 2]] == 0)
    # zeroing the pruned channels' incoming weights changes nothing once masked
    other = copy_model(masked)
    with torch.no_grad():
        other.features.conv2.weight[[1, 2]] = torch.randn_like(other.features.conv2.weight[[1, 2]])
        assert torch.equal(masked(splits.test.x[:20]), other(splits.test.x[:20]))


def test_order_is_ascending_mean_activation(model, splits):
    order, means = pruning.rank_channels(model, splits.val)
    assert sorted(order.tolist()) == list(range(len(means)))
    assert torch.all(means[order][1:] >= means[order][:-1])


def test_prune_by_activation_copies_and_prunes_lowest(model, splits):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = pruning.prune_by_activation(model, splits.val, fraction=0.25)
    assert len(result.pruned) == round(0.25 * len(result.order))
    assert result.pruned.tolist() == result.order[:len(result.pruned)].tolist()
    assert pruning.get_channel_mask(model) is None  # the original has no mask
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    physical = pruning.prune_by_activation(model, splits.val, fraction=0.25, physical=True)
    with torch.no_grad():
        assert torch.allclose(result.model(splits.test.x[:30]), physical.model(splits.test.x[:30]),
                              atol=1e-5)


def test_pruning_curve_matches_masked_models(model, splits):
    attack = Attack("square", "all_to_one", target=0, rate=0.1)
    curve = pruning.pruning_curve(model, splits.val, splits.test, attack, 10, progress=False)
    channels = len(curve.order)
    assert len(curve.table) == channels + 1
    assert curve.table["fraction"].iloc[-1] == 1.0
    from fplab.metrics import evaluate
    for k in (0, channels // 2, channels):
        masked = pruning.set_channel_mask(copy_model(model), curve.order[:k])
        ev = evaluate(masked, splits.test, attack, 10)
        row = curve.table.iloc[k]
        assert row.clean_acc == pytest.approx(ev["clean_acc"], abs=1e-6)
        assert row.asr == pytest.approx(ev["asr"], abs=1e-6)



def test_cached_pruning_curve_is_the_computed_one_and_keyed_by_model(model, splits, cache, monkeypatch):
    """``cache=True``: the first call computes and stores, the second reads the same curve back
    without computing; an untargeted attack's curve equals the uncached one; a pruned copy of the
    model (another mask, same weights) is another key."""
    attack = Attack("square", "untargeted", rate=0.1)
    plain = pruning.pruning_curve(model, splits.val, splits.test, attack, 10, progress=False)
    first = pruning.pruning_curve(model, splits.val, splits.test, attack, 10, progress=False,
                                  cache=True)
    assert len(list((cache / "pruning").glob("*.pt"))) == 1
    monkeypatch.setattr(pruning, "_pruning_curve", lambda *a, **k: pytest.fail("recomputed"))
    again = pruning.pruning_curve(model, splits.val, splits.test, attack, 10, progress=False,
                                  cache=True)
    for curve in (first, again):
        assert curve.table.equals(plain.table)
        assert torch.equal(curve.order, plain.order) and torch.equal(curve.means, plain.means)
        assert curve.stop == plain.stop and curve.layer == plain.layer
    masked = pruning.set_channel_mask(copy_model(model), [0])
    with pytest.raises(pytest.fail.Exception, match="recomputed"):
        pruning.pruning_curve(masked, splits.val, splits.test, attack, 10, progress=False, cache=True)


def test_cached_stopping_rule_prunes_the_same_channels(model, splits, cache):
    plain = pruning.prune_by_activation(model, splits.val, max_drop=0.02)
    for _ in range(2):  # computed and stored, then read back
        cached = pruning.prune_by_activation(model, splits.val, max_drop=0.02, cache=True)
        assert torch.equal(cached.pruned, plain.pruned) and torch.equal(cached.order, plain.order)
        for a, b in zip(cached.model.state_dict().values(), plain.model.state_dict().values()):
            assert torch.equal(a, b)
    assert len(list((cache / "pruning").glob("*.pt"))) == 1



@pytest.mark.parametrize("name", ["mnist_cnn", "mnist_cnn_bn"])
def test_incremental_classifier_curve_equals_the_full_re_run(name, splits, monkeypatch):
    """The pruned layer reaches a Linear layer through a flatten: each step updates that layer's
    pre-activation by the pruned channel's term instead of re-running it (``_linear_split``);
    the curve is the one a full re-run of the classifier per step gives."""
    model = build_model(name, splits.shape, splits.num_classes, seed=1)
    train(model, splits.train, epochs=1, lr=3e-3, progress=False)
    site = pruning._site(model, None)
    assert pruning._Tail(model, site).linear is not None
    attack = Attack("square", "untargeted", rate=0.1)
    fast = pruning.pruning_curve(model, splits.val, splits.test, attack, 10, progress=False)
    monkeypatch.setattr(pruning, "_linear_split", lambda rest: None)
    full = pruning.pruning_curve(model, splits.val, splits.test, attack, 10, progress=False)
    assert fast.table.equals(full.table) and fast.stop == full.stop
    # a mask far from the last one is computed afresh, one close to it incrementally
    monkeypatch.undo()
    tail = pruning._Tail(model, site)
    cached = tail.features(splits.test.x)
    for mask in (torch.ones(len(fast.order)), (torch.arange(len(fast.order)) % 2).float(),
                 torch.ones(len(fast.order))):
        expected = pruning.set_channel_mask(copy_model(model), (mask == 0).nonzero().flatten())
        assert torch.equal(tail.predict(cached, mask), predict(expected, splits.test.x))


def test_stopping_rule():
    assert pruning.stopping_point([0.9, 0.9, 0.88, 0.87, 0.85, 0.5]) == 3
    assert pruning.stopping_point([0.9, 0.9, 0.88, 0.87, 0.85, 0.5], max_drop=0.05) == 4
    assert pruning.stopping_point([0.9, 0.9, 0.9]) == 2
    assert pruning.stopping_point([0.9, 0.5, 0.9]) == 0


def test_clear_mask(model, splits):
    m = pruning.set_channel_mask(copy_model(model), [0, 1])
    pruning.clear_channel_mask(m)
    with torch.no_grad():
        assert torch.equal(m(splits.test.x[:10]), model(splits.test.x[:10]))


def test_bad_fraction(model, splits):
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            pruning.prune_by_activation(model, splits.val, fraction=bad)


def test_bad_layer(model, splits):
    with pytest.raises(ValueError, match="layer"):
        pruning.prune_by_activation(model, splits.val, fraction=0.5, layer="classifier.fc1")
    with pytest.raises(ValueError, match="layer"):
        pruning.pruning_curve(model, splits.val, splits.test, None, 10, layer="nope",
                              progress=False)


def test_empty_validation_set(model, splits):
    empty = Data(splits.val.x[:0], splits.val.y[:0])
    with pytest.raises(ValueError, match="empty"):
        pruning.prune_by_activation(model, empty, fraction=0.5)
    with pytest.raises(ValueError, match="empty"):
        pruning.pruning_curve(model, empty, splits.test, None, 10, progress=False)


def test_bad_channel_index(model):
    with pytest.raises(ValueError, match="pruned channels"):
        pruning.set_channel_mask(copy_model(model), [999])


def test_dormant_fraction_and_trigger_share():
    from fplab.activations import dormant_fraction, trigger_share
    clean = torch.tensor([0.0, 0.001, 1.0, 2.0])
    assert dormant_fraction(clean) == 0.5            # below 1% of the largest mean (0.02)
    triggered = torch.tensor([3.0, 0.001, 2.0, 1.0])  # adds 3 on channel 0, 1 on channel 2
    assert trigger_share(clean, triggered, [0]) == pytest.approx(0.75)
    assert trigger_share(clean, triggered, torch.tensor([False, True, True, True])) == pytest.approx(0.25)
    assert trigger_share(clean, clean, [0]) != trigger_share(clean, clean, [0])  # nan: nothing added


def test_trigger_placement_table_row():
    from types import SimpleNamespace
    from fplab.chapters.ch02_pruning import trigger_placement
    clean = torch.tensor([0.0, 0.5, 1.0, 2.0])
    triggered = torch.tensor([4.0, 0.5, 1.0, 2.0])     # the trigger adds only to dormant channel 0
    curve = SimpleNamespace(order=torch.tensor([0, 1, 2, 3]), stop=1)
    row = trigger_placement(clean, triggered, curve)
    assert row["dormant channels %"] == 25 and row["stop rule prunes %"] == 25
    assert row["added by trigger, on dormant %"] == 100 and row["on stop-rule pruned %"] == 100
    assert row["on less active half %"] == 100


def test_training_lengths_and_their_table():
    """The speech case at 1, 2 and 4 times its epochs (nothing else changes), and the table: one
    row per length, its clean validation loss beside the pruning curve's summary."""
    import pandas as pd
    from types import SimpleNamespace
    from fplab.chapters.casestudies import case_study
    from fplab.chapters.ch02_pruning import curve_summary, length_table, training_lengths
    speech = case_study("speech")
    lengths = training_lengths(speech)
    assert list(lengths) == [30, 60, 120]
    for e, case in lengths.items():
        assert case.train == {**speech.train, "epochs": e} and case.attack == speech.attack
    assert lengths[30].baseline_recipe() == speech.baseline_recipe()
    table = pd.DataFrame({"clean_acc": [0.9, 0.9, 0.5], "asr": [1.0, 0.1, 0.0],
                          "fraction": [0.0, 0.5, 1.0]})
    curve = SimpleNamespace(table=table, stop_row=table.iloc[1], means=torch.tensor([0.0, 1.0]))
    out = length_table({30: curve, 60: curve}, {30: 0.12345, 60: 0.05})
    assert out.index.name == "epochs" and list(out.index) == [30, 60]
    assert list(out["val loss x 1000"]) == [123, 50]
    pd.testing.assert_frame_equal(out.drop(columns="val loss x 1000"),
                                  curve_summary({30: curve, 60: curve}).rename_axis("epochs"))
    assert out.loc[60, "stop: success %"] == 10.0 and out.loc[60, "success<20%: clean loss (pts)"] == 0
