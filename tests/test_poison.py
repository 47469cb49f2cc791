import pytest
import torch

from fplab.poison import Attack, backdoor_labels, eligible, poison


def attack(**kw):
    base = dict(trigger="square", mode="all_to_one", target=3, rate=0.1,
                trigger_options={"size": 3})
    base.update(kw)
    return Attack(**base)


def test_exact_count_and_labels_all_to_one(synthetic):
    data = synthetic.train
    out = poison(data, attack(rate=0.1), 10)
    assert len(out.index) == round(0.1 * len(data)) == 60
    assert (data.y[out.index] != 3).all()
    assert (out.data.y[out.index] == 3).all()
    untouched = torch.ones(len(data), dtype=torch.bool)
    untouched[out.index] = False
    assert torch.equal(out.data.x[untouched], data.x[untouched])
    assert torch.equal(out.data.y[untouched], data.y[untouched])


def test_clean_dataset_is_never_mutated(synthetic):
    x, y = synthetic.train.x.clone(), synthetic.train.y.clone()
    poison(synthetic.train, attack(rate=0.5), 10)
    assert torch.equal(synthetic.train.x, x) and torch.equal(synthetic.train.y, y)


def test_all_to_all_label_map(synthetic):
    data = synthetic.train
    out = poison(data, attack(mode="all_to_all", rate=0.25), 10)
    assert len(out.index) == 150
    assert torch.equal(out.data.y[out.index], (data.y[out.index] + 1) % 10)
    assert backdoor_labels(torch.tensor([0, 8, 9]), "all_to_all", 0, 10).tolist() == [1, 9, 0]


def test_untargeted_labels_are_always_wrong(synthetic):
    data = synthetic.train
    out = poison(data, attack(mode="untargeted", rate=1.0), 10)
    assert len(out.index) == len(data)
    assert (out.data.y != data.y).all()


def test_clean_label_keeps_labels_and_poisons_target_only(synthetic):
    data = synthetic.train
    out = poison(data, attack(mode="clean_label", rate=0.05), 10)
    assert (data.y[out.index] == 3).all()
    assert torch.equal(out.data.y, data.y)


def test_source_restricts_poisoned_class(synthetic):
    out = poison(synthetic.train, attack(source=5, rate=0.05), 10)
    assert (synthetic.train.y[out.index] == 5).all()
    assert eligible(torch.tensor([3, 5, 1]), "all_to_one", 3, source=5).tolist() == [False, True, False]


def test_same_seed_same_poison(synthetic):
    a = poison(synthetic.train, attack(), 10, seed=1)
    b = poison(synthetic.train, attack(), 10, seed=1)
    c = poison(synthetic.train, attack(), 10, seed=2)
    assert torch.equal(a.index, b.index) and not torch.equal(a.index, c.index)


def test_rate_outside_unit_interval():
    for rate in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"rate=.* is outside the allowed range \[0.0, 1.0\]"):
            attack(rate=rate)


def test_unknown_mode():
    with pytest.raises(ValueError, match=r"mode='some_to_one'.*'all_to_one'.*'untargeted'"):
        attack(mode="some_to_one")


def test_target_out_of_range(synthetic):
    with pytest.raises(ValueError, match=r"target=10 is out of range; allowed: 0 to 9"):
        poison(synthetic.train, attack(target=10), 10)
    with pytest.raises(ValueError, match=r"target=-1 is out of range"):
        poison(synthetic.train, attack(target=-1), 10)


def test_too_many_poisoned_items(synthetic):
    with pytest.raises(ValueError, match=r"only 60 are eligible"):
        poison(synthetic.train, attack(mode="clean_label", rate=0.5), 10)


def test_success_by_position_grid_passes_through_the_trained_position(synthetic):
    """The heat map of chapter 1 moves the trigger over a grid laid through the position it was
    trained at; a model that answers the target only for a patch exactly there scores 100% at
    that cell of the grid and nowhere else."""
    from torch import nn

    from fplab.attacks.badnets import success_by_position

    atk = Attack("square", "all_to_one", target=4, rate=0.1, trigger_options={"size": 3})
    patch = atk.make_trigger(tuple(synthetic.test.x.shape[1:]))

    class AtTrainedPosition(nn.Module):
        def forward(self, x):
            region = x[:, 0, patch.top:patch.top + 3, patch.left:patch.left + 3]
            hit = region.flatten(1).min(1).values > 0.99
            return nn.functional.one_hot(torch.where(hit, 4, 0), 10).float()

    rows, cols, table = success_by_position(AtTrainedPosition(), synthetic.test, atk, 10, step=5)
    assert patch.top in rows and patch.left in cols and patch.top % 5 == rows[0]
    assert table[rows.index(patch.top), cols.index(patch.left)] == 1.0
    assert table.sum() == 1.0
    with pytest.raises(ValueError, match="not a patch"):
        success_by_position(AtTrainedPosition(), synthetic.test, Attack("blend", rate=0.1), 10)
