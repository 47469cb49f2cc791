"""Issue 8: the dormancy meter, the width x epochs map, and the pruning defense on hand-built
networks whose backdoor provably lives in a dormant channel, or shares a clean one."""

import pytest
import torch

from fplab import zoo
from fplab.activations import dormant_channels, dormant_fraction, mean_activations
from fplab.capacity import capacity_map, capacity_recipes, width_model
from fplab.defenses.pruning import prune_by_activation, pruning_curve
from fplab.metrics import accuracy, attack_success_rate
from fplab.models import ConvNet, build_model
from fplab.poison import Attack

TRIGGER = Attack("square", "all_to_one", target=0, rate=0.1,
                 trigger_options={"size": 3, "position": "bottom-right", "margin": 0})


def test_dormancy_meter_counts_channels_under_one_percent_of_the_largest():
    means = torch.tensor([10.0, 0.09, 0.1, 0.0, 5.0])
    assert dormant_channels(means).tolist() == [False, True, False, True, False]
    assert dormant_fraction(means) == pytest.approx(0.4)
    assert dormant_fraction(means, relative=0.5) == pytest.approx(0.6)


def test_dropout_adds_no_parameters_and_is_off_in_eval():
    wide = build_model("face_cnn_wide2", (1, 64, 64), 40, seed=0)
    assert any(isinstance(m, torch.nn.Dropout) for m in wide.modules())
    assert not any(isinstance(m, torch.nn.Dropout) for m in build_model("face_cnn", (1, 64, 64), 40).modules())
    wide.eval()
    x = torch.rand(2, 1, 64, 64)
    assert torch.equal(wide(x), wide(x))
    keys = {k for k in wide.state_dict() if "drop" in k}
    assert not keys


def _hand_built(shared: bool) -> ConvNet:
    """One 16x16 conv (the last conv layer) over the synthetic images: channel c (0..9) detects
    class c's bar at row c + 3; channel 10 detects the 3x3 trigger in the bottom-right corner and
    votes for class 0 (``shared=False``), or is unused and the trigger detector is added to the
    clean channel 0 instead (``shared=True``)."""
    net = ConvNet((1, 16, 16), 10, [(11, 16, 1, 0, False)], [])
    conv, fc = net.features.conv1, net.classifier.fc1
    with torch.no_grad():
        conv.weight.zero_(), conv.bias.fill_(-3.0), fc.weight.zero_(), fc.bias.zero_()
        for c in range(10):
            conv.weight[c, 0, c + 3, 2:10] = 1.0
            fc.weight[c, c] = 1.0
        detector = 0 if shared else 10
        conv.weight[detector, 0, 13:16, 13:16] = 2.0
        if not shared:
            conv.bias[10] = -6.0          # noise in the corner is <= 0.3 per pixel: never fires
            fc.weight[0, 10] = 10.0
    return net.eval()


def test_pruning_removes_a_backdoor_in_a_dormant_channel(synthetic):
    net = _hand_built(shared=False)
    assert dormant_channels(mean_activations(net, synthetic.val.x))[10]
    assert attack_success_rate(net, synthetic.test, TRIGGER, 10) == 1.0
    pruned = prune_by_activation(net, synthetic.val)
    assert 10 in pruned.pruned.tolist()
    assert attack_success_rate(pruned.model, synthetic.test, TRIGGER, 10) == 0.0
    assert accuracy(pruned.model, synthetic.test) == accuracy(net, synthetic.test) == 1.0


def test_pruning_leaves_a_backdoor_that_shares_a_clean_channel(synthetic):
    net = _hand_built(shared=True)
    assert attack_success_rate(net, synthetic.test, TRIGGER, 10) == 1.0
    pruned = prune_by_activation(net, synthetic.val)
    assert 0 not in pruned.pruned.tolist()   # removing it would cost 10 points: the rule stops
    assert attack_success_rate(pruned.model, synthetic.test, TRIGGER, 10) == 1.0
    curve = pruning_curve(net, synthetic.val, synthetic.test, TRIGGER, 10)
    assert curve.stop_row.asr == 1.0


def test_width_model_names_and_recipes():
    assert width_model("mnist_cnn", 64) == "mnist_cnn_w64"
    assert width_model("mnist_cnn", 32) == "mnist_cnn"        # its own width: the same network
    assert width_model("speech_cnn_wide", 64) == "speech_cnn_wide_w64"
    assert width_model("speech_cnn_wide", 256) == "speech_cnn_wide"
    with pytest.raises(ValueError, match="width"):
        width_model("mnist_cnn", 7)
    with pytest.raises(ValueError, match="model"):
        width_model("no_such_net", 64)
    base = zoo.Recipe("synthetic", "mnist_cnn", TRIGGER.spec(), {"epochs": 1, "lr": 1e-2, "batch_size": 64})
    recipes = capacity_recipes(base, (8, 16), (1, 2))
    assert recipes[16, 2].model == "mnist_cnn_w16" and recipes[16, 2].train["epochs"] == 2
    assert len({r.key() for r in recipes.values()}) == 4
    with pytest.raises(ValueError, match="backdoored"):
        capacity_recipes(zoo.Recipe("synthetic", "mnist_cnn"), (8,), (1,))


def test_capacity_map_on_a_tiny_model(cache):
    base = zoo.Recipe("synthetic", "mnist_cnn", TRIGGER.spec(), {"epochs": 1, "lr": 1e-2, "batch_size": 64})
    table = capacity_map(base, (8, 16), (1, 2), progress=False)
    assert list(table[["width", "epochs"]].itertuples(index=False, name=None)) == [
        (8, 1), (8, 2), (16, 1), (16, 2)]
    for column in ("clean_acc", "asr", "dormant", "stop_fraction", "stop_clean_acc", "stop_asr"):
        assert table[column].between(0, 1).all(), column
    again = capacity_map(base, (8, 16), (1, 2), progress=False)   # from the zoo: identical
    assert again.equals(table)


def test_the_speech_map_shares_the_training_length_models():
    """The map on the speech case study: its widest row is the case's own network at the epochs
    of the training-length table (the same zoo entries), and both maps ship under their labels."""
    from fplab.chapters.casestudies import case_study
    from fplab.chapters.ch02_pruning import shipped_maps, speech_map_grid, training_lengths
    recipe, widths, epochs = speech_map_grid()
    speech = case_study("speech")
    assert widths[-1] == 256 and epochs == tuple(training_lengths(speech)) == (30, 60, 120)
    cells = capacity_recipes(recipe, widths, epochs, base="speech_cnn_wide")
    for e, case in training_lengths(speech).items():
        assert cells[256, e].recipe_hash() == case.baseline_recipe().recipe_hash()
    assert cells[64, 30].model == "speech_cnn_wide_w64" and cells[64, 30].attack == recipe.attack
    assert [m[0] for m in shipped_maps()] == ["capacity", "capacity-speech"]
