import pytest
import torch

from fplab.models import MODELS, build_model, channel_layer, copy_model, last_conv_layer


@pytest.mark.parametrize("name,shape,classes", [
    ("mnist_cnn", (1, 28, 28), 10), ("traffic_cnn", (3, 32, 32), 43),
    ("speech_cnn", (1, 64, 64), 10), ("face_cnn", (1, 64, 64), 40),
    ("traffic_cnn_bn", (3, 32, 32), 43), ("face_cnn_wide", (1, 64, 64), 40)])
def test_models_output_logits(name, shape, classes):
    model = build_model(name, shape, classes, seed=0)
    assert model(torch.rand(2, *shape)).shape == (2, classes)


def test_last_conv_and_channel_layer():
    plain = build_model("mnist_cnn", (1, 28, 28), 10)
    assert last_conv_layer(plain) == "features.conv2"
    assert channel_layer(plain, "features.conv2") == "features.conv2"
    bn = build_model("mnist_cnn_bn", (1, 28, 28), 10)
    assert channel_layer(bn, last_conv_layer(bn)) == "features.bn2"
    with pytest.raises(ValueError, match=r"layer='classifier.fc1'.*'features.conv1'"):
        channel_layer(plain, "classifier.fc1")


def test_no_conv_layer():
    with pytest.raises(ValueError, match="has no nn.Conv2d layer"):
        last_conv_layer(torch.nn.Linear(3, 2))


def test_unknown_model():
    with pytest.raises(ValueError, match=r"model='resnet50'.*'mnist_cnn'"):
        build_model("resnet50", (1, 28, 28), 10)
    assert "preact_resnet18" in MODELS


def test_resnet18_w16_is_resnet18_at_a_quarter_width():
    nets = [build_model(name, (3, 32, 32), 10, seed=0) for name in ("resnet18", "resnet18_w16")]
    bns = [[m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)] for net in nets]
    assert [len(b) for b in bns] == [20, 20]
    assert [sum(m.num_features for m in b) for b in bns] == [4800, 1200]
    assert nets[1](torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_same_seed_same_weights_and_copies_are_independent():
    a = build_model("mnist_cnn", (1, 28, 28), 10, seed=3)
    b = build_model("mnist_cnn", (1, 28, 28), 10, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = copy_model(a)
    with torch.no_grad():
        next(c.parameters()).add_(1)
    assert torch.equal(next(a.parameters()), next(b.parameters()))


def test_batchnorm_face_is_the_same_attack_on_the_batchnorm_network():
    from fplab.chapters.casestudies import batchnorm_face, case_study
    face, bn = case_study("face"), batchnorm_face()
    assert bn.model == "face_cnn_bn" and bn.train["epochs"] == 8
    assert bn.attack == face.attack and bn.asr_shift == face.asr_shift
    assert bn.baseline_recipe().key() != face.baseline_recipe().key()


def test_case_study_variant_is_a_different_recipe():
    from fplab.chapters.casestudies import case_study
    face = case_study("face")
    wide = face.variant("face_cnn_wide", epochs=60, lr=1e-3)
    assert wide.model == "face_cnn_wide" and wide.train["epochs"] == 60
    assert wide.train["batch_size"] == face.train["batch_size"]   # the rest is kept
    assert wide.baseline_recipe().key() != face.baseline_recipe().key()
    assert face.model == "face_cnn_wide2"                         # the original is untouched
    with pytest.raises(ValueError, match=r"model='vgg'"):
        face.variant("vgg")


def test_case_study_measurements_are_cached_per_model(cache, synthetic):
    """``CaseStudy.evaluate`` / ``activation_means`` equal the direct measurements, are stored
    once per model and read back; another model (here: a pruned copy) is measured anew."""
    from dataclasses import replace
    from fplab.activations import mean_activations
    from fplab.chapters.casestudies import case_study
    from fplab.defenses.pruning import set_channel_mask
    from fplab.metrics import evaluate
    from fplab.models import build_model, copy_model
    from fplab.poison import Attack
    attack = Attack("square", "untargeted", rate=0.1)
    case = replace(case_study("traffic"), dataset="synthetic", attack=attack)
    model = build_model("mnist_cnn", synthetic.shape, synthetic.num_classes, seed=0).eval()
    direct = evaluate(model, synthetic.test, attack, synthetic.num_classes)
    for _ in range(2):
        assert case.evaluate(model, synthetic) == direct
        clean, triggered = case.activation_means(model, synthetic)
        assert torch.equal(clean, mean_activations(model, synthetic.val.x))
    assert len(list((cache / "evaluations").glob("*.pt"))) == 2
    pruned = set_channel_mask(copy_model(model), [0, 1, 2])
    case.evaluate(pruned, synthetic)
    assert len(list((cache / "evaluations").glob("*.pt"))) == 3
