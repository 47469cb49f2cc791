"""The model zoo: cache miss trains, hit loads, tampering is refused and nothing is retrained."""

import json

import pytest
import torch

from fplab import zoo
from fplab.errors import IntegrityError
from fplab.numerics import machine
from fplab.poison import Attack

RECIPE = zoo.Recipe("synthetic", "mnist_cnn", Attack("square", target=1, rate=0.1,
                    trigger_options={"size": 3}).spec(),
                    train={"epochs": 1, "lr": 1e-3, "batch_size": 64}, seed=0)


def test_key_depends_on_every_field():
    assert RECIPE.key() == zoo.Recipe(**{**RECIPE.__dict__}).key()
    assert RECIPE.key() != zoo.Recipe(**{**RECIPE.__dict__, "seed": 1}).key()
    assert RECIPE.key() != zoo.Recipe(**{**RECIPE.__dict__, "train": {"epochs": 2}}).key()


def test_miss_then_hit(cache):
    first = zoo.load(RECIPE)
    assert first.trained_now and first.path.exists()
    manifest = json.loads((first.path.parent / "manifest.json").read_text())
    assert manifest["sha256"] == first.sha256 and manifest["recipe"]["seed"] == 0
    second = zoo.load(RECIPE)
    assert not second.trained_now and second.sha256 == first.sha256
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)


def test_training_is_deterministic(cache, tmp_path):
    a = zoo.load(RECIPE)
    b = zoo.load(RECIPE, cache=tmp_path / "other")
    assert b.trained_now and a.sha256 == b.sha256
    record = json.loads((b.path.parent / "manifest.json").read_text())
    assert record["machine"] == machine() and machine()  # who trained it (weights depend on it)


@pytest.mark.parametrize("damage", ["tamper", "truncate", "delete"])
def test_damaged_file_is_refused_not_retrained(cache, damage):
    entry = zoo.load(RECIPE)
    blob = entry.path.read_bytes()
    if damage == "tamper":
        entry.path.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    elif damage == "truncate":
        entry.path.write_bytes(blob[: len(blob) // 2])
    else:
        entry.path.unlink()
    before = entry.path.read_bytes() if entry.path.exists() else None
    with pytest.raises(IntegrityError, match="SHA-256|missing"):
        zoo.load(RECIPE)
    after = entry.path.read_bytes() if entry.path.exists() else None
    assert before == after  # left exactly as it was: nothing retrained over it


def test_unknown_trainer_kind(cache):
    with pytest.raises(ValueError, match=r"kind='magic'.*'standard'"):
        zoo.load(zoo.Recipe("synthetic", "mnist_cnn", kind="magic"))


def test_cache_keys_include_the_thread_count():
    """Same seed, 1 vs 2 threads: different weights, so different zoo keys and fingerprints."""
    from fplab.store import compute_context, fingerprint
    recipe = zoo.Recipe("synthetic", "mnist_cnn")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = (recipe.key(), fingerprint({"w": torch.ones(2)}), compute_context())
        torch.set_num_threads(2)
        two = (recipe.key(), fingerprint({"w": torch.ones(2)}), compute_context())
    finally:
        torch.set_num_threads(before)
    assert one[0] != two[0] and one[1] != two[1]
    assert (one[2]["threads"], two[2]["threads"]) == (1, 2)
    assert compute_context("cuda") == {"torch": torch.__version__.split("+")[0], "device": "cuda"}


def test_step_schedule_divides_the_learning_rate_at_each_milestone():
    """``train(milestones=...)``: the ANP code's step schedule. One image of class 0, a zero
    two-class linear model, plain SGD: weight [0, 0] moves by lr * (1 - sigmoid(2 w)) per step
    (the other class's weight mirrors it), so the trajectory shows each epoch's learning rate;
    bad milestones name the parameter."""
    import math
    from fplab.data import Data
    from fplab.train import train
    x, y = torch.ones(1, 1), torch.tensor([0])
    from fplab.train import lr_at
    for milestones, rates in (((), (0.5, 0.5, 0.5)), ((1, 2), (0.5, 0.05, 0.005))):
        # lr_at (for trainers that train an epoch at a time) gives the same rates
        assert [lr_at(0.5, milestones, e) for e in range(3)] == pytest.approx(rates)
        model = torch.nn.Linear(1, 2, bias=False)
        torch.nn.init.zeros_(model.weight)
        seen = []
        train(model, Data(x, y), epochs=3, lr=0.5, optimizer="sgd", momentum=0.0, batch_size=1,
              progress=False, milestones=milestones,
              on_epoch=lambda _: seen.append(model.weight[0, 0].item()))
        w, expected = 0.0, []
        for lr in rates:
            w += lr * (1 - 1 / (1 + math.exp(-2 * w)))
            expected.append(w)
        assert seen == pytest.approx(expected, rel=1e-6), milestones
    for bad in ((3,), (2, 1), (0,), (1, 1)):
        with pytest.raises(ValueError, match="milestones"):
            train(torch.nn.Linear(1, 2), Data(x, y), epochs=3, milestones=bad, progress=False)
