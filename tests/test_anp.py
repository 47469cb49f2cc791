"""Adversarial Neuron Pruning (fplab.defenses.anp), PGD, CLB and PreAct-ResNet-18, on tiny inputs."""

import pytest
import torch
from torch import nn

from fplab.data import load_dataset
from fplab.defenses.anp import (NeuronPerturbation, anp_masks, neuron_layers, perturbation_effect,
                                prune_by_count, prune_by_threshold, pruning_curve,
                                reference_anp_masks)
from fplab.models import build_model
from fplab.poison import Attack


@pytest.fixture(scope="module")
def splits():
    return load_dataset("synthetic")


def tiny_model(batchnorm=True, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Conv2d(1, 4, 3, padding=1)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(4))
    layers += [nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10)]
    model = nn.Sequential(*layers)
    if batchnorm:  # non-trivial running statistics and affine parameters
        with torch.no_grad():
            model[1].running_mean.uniform_(-0.2, 0.2)
            model[1].running_var.uniform_(0.5, 1.5)
            model[1].weight.uniform_(0.5, 1.5)
            model[1].bias.uniform_(-0.3, 0.3)
    return model.eval()


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(model, state):
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_neuron_layers_default():
    assert neuron_layers(tiny_model(True)) == ["1", "5"]       # the BN and the hidden linear
    assert neuron_layers(tiny_model(False)) == ["0", "4"]      # the conv and the hidden linear
    resnet = build_model("preact_resnet18", (3, 32, 32), 10)
    names = neuron_layers(resnet)
    assert len(names) == 17 and all(isinstance(dict(resnet.named_modules())[n], nn.BatchNorm2d)
                                    for n in names)


@pytest.mark.parametrize("batchnorm", [True, False])
def test_eps_zero_mask_one_leaves_outputs_unchanged(splits, batchnorm):
    model = tiny_model(batchnorm)
    x = splits.val.x[:32]
    before = model(x)
    with NeuronPerturbation(model) as pert:
        for mode in ("clean", "perturbed", "off"):
            pert.mode = mode
            assert torch.equal(model(x), before)
        pert.mode, pert.split = "both", 32
        assert torch.equal(model(torch.cat([x, x])), torch.cat([before, before]))
    assert torch.equal(model(x), before)


def test_perturbation_matches_scaled_weights(splits):
    """The hook equals the model with (m + delta) * w and (1 + xi) * b substituted."""
    model = tiny_model(True)
    x = splits.val.x[:16]
    gen = torch.Generator().manual_seed(1)
    with NeuronPerturbation(model) as pert:
        for n in pert.layers:
            pert.mask[n] = torch.rand(len(pert.mask[n]), generator=gen)
            pert.delta[n] = torch.rand(len(pert.mask[n]), generator=gen) * 0.8 - 0.4
            pert.xi[n] = torch.rand(len(pert.mask[n]), generator=gen) * 0.8 - 0.4
        pert.mode = "perturbed"
        hooked = model(x)
        expected = {}
        for n in pert.layers:
            mod = dict(model.named_modules())[n]
            scale = (pert.mask[n] + pert.delta[n]).view(-1, *([1] * (mod.weight.dim() - 1)))
            expected[f"{n}.weight"] = mod.weight * scale
            expected[f"{n}.bias"] = mod.bias * (1 + pert.xi[n])
    plain = torch.func.functional_call(model, {**dict(model.named_parameters()), **expected}, (x,))
    assert torch.allclose(hooked, plain, atol=1e-5)


@pytest.mark.parametrize("batch_stats", [False, True])
def test_model_restored_exactly_after_optimisation(splits, batch_stats):
    model = tiny_model(True)
    model.train()
    state = snapshot(model)
    flags = [p.requires_grad for p in model.parameters()]
    result = anp_masks(model, splits.val, iterations=5, batch_size=32, n_clean=64, progress=False,
                       batch_stats=batch_stats)
    assert same_state(model, state)  # running statistics included
    assert all(m.training for m in model.modules())
    assert model[1].track_running_stats
    assert [p.requires_grad for p in model.parameters()] == flags
    assert not any(m._forward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert result.iterations == 5 and len(result.losses) == 5


def test_masks_stay_in_unit_interval(splits):
    model = tiny_model(True)
    result = anp_masks(model, splits.val, iterations=20, batch_size=32, n_clean=64, lr=5.0,
                       progress=False)
    flat = result.flat()
    assert flat.min() >= 0 and flat.max() <= 1
    assert flat.min() < 1  # something moved (a large learning rate pushes masks to the bounds)


def test_matches_plain_reference_loop(splits):
    model = tiny_model(True)
    ours = anp_masks(model, splits.val, iterations=4, batch_size=32, n_clean=64, progress=False)
    ref = reference_anp_masks(model, splits.val, iterations=4, batch_size=32, n_clean=64)
    assert torch.allclose(ours.flat(), ref.flat(), atol=1e-5)
    assert ours.losses == pytest.approx(ref.losses, abs=1e-5)


def test_prune_by_threshold_removes_exactly_masks_below(splits):
    model = tiny_model(True)
    state = snapshot(model)
    masks = {"1": torch.tensor([0.1, 0.5, 0.19, 0.2]), "5": torch.linspace(0, 1, 8)}
    result = prune_by_threshold(model, masks, 0.2)
    assert result.pruned["1"].tolist() == [0, 2]
    assert result.pruned["5"].tolist() == [0, 1]  # 0 and 1/7; 2/7 > 0.2
    assert result.count == 4
    pruned = dict(result.model.named_modules())
    assert (pruned["1"].weight[[0, 2]] == 0).all() and (pruned["1"].weight[[1, 3]] != 0).all()
    assert (pruned["5"].weight[[0, 1]] == 0).all() and (pruned["5"].weight[2:] != 0).any(1).all()
    assert same_state(model, state)  # the original is untouched
    assert prune_by_threshold(model, masks, 0.0).count == 0
    by_count = prune_by_count(model, masks, 3)
    assert by_count.pruned["1"].tolist() == [0] and by_count.pruned["5"].tolist() == [0, 1]


def test_pruning_curve(splits):
    model = tiny_model(True)
    masks = {"1": torch.tensor([0.1, 0.5, 0.19, 0.2]), "5": torch.linspace(0, 1, 8)}
    atk = Attack("square", target=0, trigger_options={"size": 3})
    curve = pruning_curve(model, masks, splits.test, atk, 10, thresholds=[0.0, 0.2, 1.01 - 0.01])
    assert curve["pruned"].tolist() == [0, 4, 11]
    assert set(curve.columns) == {"threshold", "pruned", "clean_acc", "asr"}
    assert pruning_curve(model, masks, splits.test, None, 10, counts=[0, 12])["pruned"].tolist() == [0, 12]


def test_cached_source_model_never_modified(tmp_path, monkeypatch, splits):
    from fplab import zoo
    monkeypatch.setenv("FPLAB_CACHE", str(tmp_path))
    recipe = zoo.Recipe("synthetic", "mnist_cnn_bn", train={"epochs": 1, "lr": 1e-3, "batch_size": 64})
    # the synthetic images are 16x16: mnist_cnn's two 5x5 convs and pools still fit
    first = zoo.load(recipe)
    state = snapshot(first.model)
    result = anp_masks(first.model, splits.val, iterations=3, batch_size=32, n_clean=64,
                       cache=True, progress=False)
    prune_by_threshold(first.model, result, 0.5)
    perturbation_effect(first.model, splits.val.subset(torch.arange(50)), 0.3, target=0, steps=2)
    assert same_state(first.model, state)
    again = zoo.load(recipe)  # the cached file still verifies and holds the same weights
    assert not again.trained_now and again.sha256 == first.sha256
    assert same_state(again.model, state)
    cached = anp_masks(first.model, splits.val, iterations=3, batch_size=32, n_clean=64,
                       cache=True, progress=False)
    assert cached.cached and torch.equal(cached.flat(), result.flat())


def test_perturbation_effect_eps_zero_is_plain_error(splits):
    model = tiny_model(True)
    out = perturbation_effect(model, splits.val, 0.0, target=0)
    pred = model(splits.val.x).argmax(1)
    assert out["error"] == pytest.approx((pred != splits.val.y).float().mean().item())


def test_bad_input(splits):
    model = tiny_model(True)
    with pytest.raises(ValueError, match="eps"):
        anp_masks(model, splits.val, eps=-0.1, iterations=1, progress=False)
    for alpha in (-0.1, 1.5):
        with pytest.raises(ValueError, match="alpha"):
            anp_masks(model, splits.val, alpha=alpha, iterations=1, progress=False)
    with pytest.raises(ValueError, match="n_clean"):
        anp_masks(model, splits.val, n_clean=10**6, iterations=1, progress=False)
    with pytest.raises(ValueError, match="no prunable layer"):
        anp_masks(nn.Sequential(nn.Flatten(), nn.Linear(256, 10)), splits.val, iterations=1,
                  progress=False)
    with pytest.raises(ValueError, match="threshold"):
        prune_by_threshold(model, {"1": torch.ones(4)}, 1.5)
    with pytest.raises(ValueError, match="count"):
        prune_by_count(model, {"1": torch.ones(4)}, 5)
    with pytest.raises(ValueError, match="layers"):
        neuron_layers(model, ["nope"])


def test_pgd_stays_in_ball_and_raises_loss(splits):
    from fplab.attacks.adversarial import pgd
    model = tiny_model(True)
    x, y = splits.val.x[:64], splits.val.y[:64]
    state = snapshot(model)
    adv = pgd(model, x, y, eps=0.1, steps=5)
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    loss = nn.functional.cross_entropy
    assert loss(model(adv), y) > loss(model(x), y)
    assert same_state(model, state)
    with pytest.raises(ValueError, match="eps"):
        pgd(model, x, y, eps=-1)


def test_clb_poison_keeps_labels(splits):
    from fplab.attacks.clb import clb_poison
    atk = Attack("checkerboard", "clean_label", target=3, rate=0.05, trigger_options={"size": 3})
    out = clb_poison(splits.train, atk, 10, tiny_model(True), eps=0.1, steps=2)
    assert len(out.index) == 30 and (splits.train.y[out.index] == 3).all()
    assert torch.equal(out.data.y, splits.train.y)
    changed = (out.data.x != splits.train.x).flatten(1).any(1)
    assert changed[out.index].all() and changed.sum() == len(out.index)
    with pytest.raises(ValueError, match="clean_label"):
        clb_poison(splits.train, Attack("square"), 10, tiny_model(True), eps=0.1)


def test_preact_resnet18_shapes():
    model = build_model("preact_resnet18", (3, 32, 32), 10)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert model.classifier[-1].out_features == 10
    assert 11_000_000 < sum(p.numel() for p in model.parameters()) < 11_300_000


def test_anp_on_preact_resnet18_restores_and_prunes():
    """The full profile's path: ANP on the paper's network (two iterations on random images)."""
    from fplab.data import Data
    torch.manual_seed(0)
    model = build_model("preact_resnet18", (3, 32, 32), 10).eval()
    state = snapshot(model)
    data = Data(torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,)))
    result = anp_masks(model, data, iterations=2, batch_size=8, n_clean=16, progress=False)
    assert same_state(model, state)
    assert not any(m._forward_hooks for m in model.modules())
    flat = result.flat()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(flat) == sum(m.num_features for m in norms)  # ANP's neurons: the BN channels
    assert flat.min() >= 0 and flat.max() <= 1
    pruned = prune_by_count(model, result, 5)
    assert pruned.count == 5 and same_state(model, state)
