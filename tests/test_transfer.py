"""Chapter-1 attack helpers: backdoor neurons, strengthening, transfer learning."""

import pytest
import torch

from fplab.activations import channel_activations, mean_activations
from fplab.attacks.transfer import backdoor_neurons, strengthen, transfer
from fplab.data import select_classes
from fplab.metrics import accuracy
from fplab.models import build_model, last_conv_layer


@pytest.fixture
def model():
    return build_model("mnist_cnn", (1, 16, 16), 10, seed=0)


def test_activations_shape_and_nonnegative(model, synthetic):
    acts = channel_activations(model, synthetic.val.x)
    assert acts.shape == (len(synthetic.val), 32) and (acts >= 0).all()
    assert torch.allclose(mean_activations(model, synthetic.val.x), acts.mean(0))


def test_backdoor_neurons_find_the_channel_that_fires(model, synthetic):
    x = synthetic.val.x
    conv = dict(model.named_modules())[last_conv_layer(model)]
    with torch.no_grad():
        conv.bias[5] = -100.0  # channel 5 is dead on everything...
    fired = x.clone()
    fired[:, :, :, :] = 1.0  # ...but a saturated input makes it fire once its bias is restored
    with torch.no_grad():
        conv.bias[5] = -1.0
        conv.weight[5] = 1.0
    assert backdoor_neurons(model, x, fired, count=1).tolist() == [5]


def test_strengthen_scales_only_the_chosen_channels_and_copies(model, synthetic):
    x = synthetic.val.x[:20]
    before = channel_activations(model, x)
    strong = strengthen(model, torch.tensor([1, 2]), 3.0)
    after = channel_activations(strong, x)
    assert torch.allclose(after[:, [1, 2]], 3 * before[:, [1, 2]], atol=1e-5)
    assert torch.allclose(after[:, 3:], before[:, 3:])
    assert torch.equal(channel_activations(model, x), before)  # the original is untouched
    with pytest.raises(ValueError, match="k=-1 must be >= 0"):
        strengthen(model, torch.tensor([0]), -1)


def test_transfer_retrains_only_the_classifier(model, synthetic):
    task = select_classes(synthetic, [0, 1, 2])
    adapted = transfer(model, task.train, 3, epochs=3, progress=False)
    assert adapted.classifier[-1].out_features == 3
    for (name, p), q in zip(model.features.named_parameters(), adapted.features.parameters()):
        assert torch.equal(p, q), name
    assert accuracy(adapted, task.test) > 0.5
    with pytest.raises(ValueError, match=r"retrain='all'.*'classifier', 'last'"):
        transfer(model, task.train, 3, retrain="all")
