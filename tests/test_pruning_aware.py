"""Unit tests of the pruning-aware attack (synthetic data, tiny models)."""

import pytest
import torch

from fplab.activations import mean_activations
from fplab.attacks.pruning_aware import pruning_aware_attack
from fplab.data import load_dataset
from fplab.defenses.pruning import get_channel_mask
from fplab.models import build_model, copy_model
from fplab.poison import Attack, poison
from fplab.train import train


@pytest.fixture(scope="module", params=["mnist_cnn", "mnist_cnn_bn"])
def attacked(request):
    splits = load_dataset("synthetic")
    clean = build_model(request.param, splits.shape, splits.num_classes, seed=0)
    train(clean, splits.train, epochs=2, lr=3e-3, progress=False)
    attack = Attack("square", "all_to_one", target=0, rate=0.1, trigger_options={"size": 4})
    poisoned = poison(splits.train, attack, splits.num_classes).data
    before = {k: v.clone() for k, v in clean.state_dict().items()}
    model, report = pruning_aware_attack(clean, splits.train, poisoned, attack, splits.num_classes,
                                         {"epochs": 2, "lr": 3e-3}, max_drop=0.2,
                                         max_fraction=0.6, max_rounds=1, progress=False)
    return splits, clean, before, model, report


def test_same_architecture(attacked):
    splits, clean, _, model, _ = attacked
    assert type(model) is type(clean)
    assert str(model) == str(clean)
    shapes = {k: v.shape for k, v in clean.state_dict().items()}
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes
    assert get_channel_mask(model) is None  # de-pruned: no mask left
    fresh = build_model(splits and ("mnist_cnn_bn" if hasattr(clean.features, "bn1") else "mnist_cnn"),
                        splits.shape, splits.num_classes)
    fresh.load_state_dict(model.state_dict())  # loads into the original architecture


def test_decoys_dormant_on_clean_data(attacked):
    splits, _, _, model, report = attacked
    assert report.decoys, "step 2 should have pruned some channels"
    assert report.decoy_max_activation == 0.0  # on the attacker's clean data
    means = mean_activations(model, splits.val.x)
    assert torch.all(means[report.decoys] <= 1e-3 * means.max())  # and on unseen clean data


def test_clean_model_untouched(attacked):
    _, clean, before, _, _ = attacked
    for k, v in clean.state_dict().items():
        assert torch.equal(v, before[k])


def test_report_steps(attacked):
    *_, report = attacked
    assert len(report.pruned_step2) == len(report.decoys) + len(report.reinstated)
    splits, _, _, model, _ = attacked
    assert report.rounds[-1]["active"] == report.channels - len(report.decoys)
    # the last round's model is the de-pruned one with its decoys masked again
    from fplab.defenses.pruning import set_channel_mask
    from fplab.metrics import accuracy, attack_success_rate
    remasked = set_channel_mask(copy_model(model), report.decoys)
    attack = Attack("square", "all_to_one", target=0, rate=0.1, trigger_options={"size": 4})
    assert report.rounds[-1]["asr"] == pytest.approx(
        attack_success_rate(remasked, splits.train, attack, splits.num_classes), abs=1e-6)
    assert report.rounds[-1]["clean_acc"] == pytest.approx(accuracy(remasked, splits.train), abs=1e-6)


def test_bad_input():
    splits = load_dataset("synthetic")
    m = build_model("mnist_cnn", splits.shape, splits.num_classes, seed=0)
    attack = Attack("square", "all_to_one", target=0, rate=0.1)
    with pytest.raises(ValueError, match="max_fraction"):
        pruning_aware_attack(m, splits.train, splits.train, attack, 10, {"epochs": 1},
                             max_fraction=1.5)
    with pytest.raises(ValueError, match="layer"):
        pruning_aware_attack(copy_model(m), splits.train, splits.train, attack, 10, {"epochs": 1},
                             layer="classifier.fc1")


def test_step_schedule_scales_with_the_retraining_and_later_rounds_continue_at_its_end(monkeypatch,
                                                                                      cache):
    """The recipe's milestones scale with step 3's shorter retraining; a re-instating round
    trains one more epoch at the rate the schedule ended at."""
    from fplab import zoo
    from fplab.attacks import pruning_aware as pa
    calls = []
    real = pa.train
    monkeypatch.setattr(pa, "train", lambda *a, **k: calls.append(
        (k.get("epochs"), k.get("lr"), list(k.get("milestones", ())))) or real(*a, **k))
    splits = load_dataset("synthetic")
    attack = Attack("square", "all_to_one", target=0, rate=0.1, trigger_options={"size": 4})
    clean = build_model("mnist_cnn", splits.shape, splits.num_classes, seed=0)
    train(clean, splits.train, epochs=1, lr=3e-3, progress=False)
    poisoned = poison(splits.train, attack, splits.num_classes).data
    pruning_aware_attack(clean, splits.train, poisoned, attack, splits.num_classes,
                         {"epochs": 4, "lr": 3e-3, "milestones": [2, 3]}, max_drop=0.2,
                         max_fraction=0.6, max_rounds=1, min_asr=1.01, progress=False)
    assert calls[0] == (4, 3e-3, [2, 3])
    assert calls[1][0] == 1 and calls[1][1] == pytest.approx(3e-5) and calls[1][2] == []
    recipe = zoo.Recipe(dataset="synthetic", model="mnist_cnn", attack=attack.spec(),
                        kind="pruning_aware", train={"epochs": 8, "lr": 3e-3, "milestones": [4, 6]},
                        extra={"clean_train": {"epochs": 1, "lr": 3e-3}})
    class Seen(Exception):
        pass

    def spy(*args, **kwargs):
        raise Seen(args[5])

    monkeypatch.setattr(pa, "pruning_aware_attack", spy)
    with pytest.raises(Seen) as seen:
        pa.train_pruning_aware(recipe, splits)
    assert seen.value.args[0]["epochs"] == 4 and seen.value.args[0]["milestones"] == [2, 3]
