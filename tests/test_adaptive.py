"""Unit tests of the adaptive attackers (synthetic data, tiny models)."""

from dataclasses import replace

import pytest
import torch

from fplab import zoo
from fplab.attacks.adaptive import (adap_blend_poison, defend_in_place, partial_blend, piece_masks,
                                    train_under_perturbation)
from fplab.defenses.clp import channel_lipschitz, clp_select
from fplab.models import build_model
from fplab.poison import Attack

PATCH = Attack("square", "all_to_one", 0, 0.1, trigger_options={"size": 4}).spec()
BLEND = Attack("blend", "all_to_one", 0, 0.1, trigger_options={"alpha": 0.2}).spec()
TRAIN = {"epochs": 1, "lr": 3e-3, "batch_size": 64}


def recipes():
    base = zoo.Recipe(dataset="synthetic", model="mnist_cnn_bn", train=TRAIN)
    return {
        "anp_aware": replace(base, attack=PATCH, kind="anp_aware", extra={"epochs": 1, "eps": 0.4}),
        "defense_in_loop": replace(base, attack=PATCH, kind="defense_in_loop", extra={"u": 3.0}),
        "adap_blend": replace(base, attack=BLEND, kind="adap_blend",
                              extra={"pieces": 16, "keep": 0.5, "train_alpha": 0.15, "cover_rate": 0.05}),
    }


@pytest.mark.parametrize("kind", ["anp_aware", "defense_in_loop", "adap_blend"])
def test_registered_and_hash_follows_parameters(kind):
    assert kind in zoo._TRAINERS
    recipe = recipes()[kind]
    key = next(iter(recipe.extra))
    value = recipe.extra[key]
    changed = replace(recipe, extra={**recipe.extra, key: value * 2 if not isinstance(value, str) else "anp"})
    assert changed.key() != recipe.key()
    assert replace(recipe, extra=dict(recipe.extra)).key() == recipe.key()


@pytest.mark.parametrize("kind", ["anp_aware", "defense_in_loop", "adap_blend"])
def test_trains_through_the_zoo_and_caches(kind, cache, synthetic):
    recipe = recipes()[kind]
    first = zoo.load(recipe, splits=synthetic)
    assert first.trained_now
    again = zoo.load(recipe, splits=synthetic)
    assert not again.trained_now and again.sha256 == first.sha256


def test_anp_aware_leaves_a_working_model(synthetic):
    model = build_model("mnist_cnn_bn", synthetic.shape, synthetic.num_classes, seed=0)
    losses = train_under_perturbation(model, synthetic.train, 2, eps=0.2, lr=3e-3, progress=False)
    assert len(losses) == 2 and losses[1] < losses[0]
    assert not model.training
    assert not any(m._forward_hooks for m in model.modules())  # perturbation hooks removed
    with pytest.raises(ValueError, match="eps="):
        train_under_perturbation(model, synthetic.train, 1, eps=0)
    with pytest.raises(ValueError, match="alpha="):
        train_under_perturbation(model, synthetic.train, 1, alpha=2)


def test_defense_in_place_removes_what_clp_finds():
    model = build_model("traffic_cnn_bn", (3, 32, 32), 10, seed=0)
    with torch.no_grad():
        model.features.bn2.weight[7] = 50.0
    expected, _ = clp_select(channel_lipschitz(model), 3.0)
    assert 7 in expected["features.conv2"].tolist()
    count = defend_in_place(model, "clp")
    assert count == sum(len(v) for v in expected.values())
    assert model.features.bn2.weight[7] == 0 and model.features.bn2.bias[7] == 0
    with pytest.raises(ValueError, match="defense="):
        defend_in_place(model, "magic")


def test_pieces_tile_the_image():
    masks = piece_masks((32, 32), 16)
    assert masks.shape == (16, 32, 32)
    assert torch.equal(masks.sum(0), torch.ones(32, 32, dtype=torch.long))
    assert int(masks[0].sum()) == 64
    with pytest.raises(ValueError, match="pieces="):
        piece_masks((32, 32), 15)


def test_partial_blend_touches_half_the_pieces():
    x = torch.zeros(3, 1, 32, 32)
    pattern = torch.ones(1, 32, 32)
    out = partial_blend(x, pattern, 0.15, 16, 0.5, torch.Generator().manual_seed(0))
    changed = (out > 0).float().mean((1, 2, 3))
    assert torch.allclose(changed, torch.full((3,), 0.5))
    assert torch.allclose(out.max(), torch.tensor(0.15))


def test_adap_blend_poison_and_cover(synthetic):
    atk = Attack(**BLEND)
    data, poisoned, cover = adap_blend_poison(synthetic.train, atk, synthetic.num_classes,
                                              cover_rate=0.05, seed=0)
    n = len(synthetic.train)
    assert len(poisoned) == round(0.1 * n) and len(cover) == round(0.05 * n)
    assert not set(poisoned.tolist()) & set(cover.tolist())
    assert (data.y[poisoned] == 0).all()
    assert torch.equal(data.y[cover], synthetic.train.y[cover])          # covers keep their label
    assert not torch.equal(data.x[cover], synthetic.train.x[cover])      # but carry the trigger
    with pytest.raises(ValueError, match="blend"):
        adap_blend_poison(synthetic.train, Attack(**PATCH), synthetic.num_classes)
    with pytest.raises(ValueError, match="cover_rate"):
        adap_blend_poison(synthetic.train, atk, synthetic.num_classes, cover_rate=2)


def test_defense_in_place_with_a_short_anp(synthetic):
    model = build_model("mnist_cnn_bn", synthetic.shape, synthetic.num_classes, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count = defend_in_place(model, "anp", synthetic.train,
                            anp={"iterations": 3, "n_clean": 64, "threshold": 0.99})
    assert count >= 0
    changed = [k for k, v in model.state_dict().items() if not torch.equal(before[k], v)]
    assert (count == 0) == (not changed)


def test_defense_in_the_loop_follows_the_recipes_step_schedule(monkeypatch, synthetic):
    """Trained one epoch at a time, the defense-in-the-loop model gets each epoch's rate of the
    recipe's step schedule (lr / 10 after each milestone); without milestones every epoch gets lr."""
    from fplab.attacks import adaptive
    rates = []
    real = adaptive.train
    monkeypatch.setattr(adaptive, "train", lambda *a, **k: rates.append(k["lr"]) or real(*a, **k))
    monkeypatch.setattr(adaptive, "defend_in_place", lambda *a, **k: 0)
    recipe = replace(recipes()["defense_in_loop"], train={**TRAIN, "epochs": 4, "milestones": [2, 3]})
    adaptive.train_defense_in_loop(recipe, synthetic)
    assert rates == pytest.approx([3e-3, 3e-3, 3e-4, 3e-5])
    rates.clear()
    adaptive.train_defense_in_loop(replace(recipe, train={**TRAIN, "epochs": 2}), synthetic)
    assert rates == [3e-3, 3e-3]
