"""Adversarial Neuron Pruning (fplab.defenses.anp), PGD, CLB and PreAct-ResNet-18, on tiny inputs."""

import pytest
import torch
from torch import nn

from fplab.data import load_dataset
from fplab.defenses import anp as anp_module
from fplab.defenses.anp import (NeuronPerturbation, anp_masks, neuron_layers, perturbation_effect,
                                prune_by_count, prune_by_threshold, prune_by_validation,
                                pruning_curve)
from fplab.benchmark import reference_anp_masks
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
        # the doubled batch against itself unhooked: CPU kernels may sum a batch of 64 in another
        # order than one of 32 (they do on AVX-512 machines), so compare like with like
        pert.mode = "off"
        doubled = model(torch.cat([x, x]))
        pert.mode, pert.split = "both", 32
        assert torch.equal(model(torch.cat([x, x])), doubled)
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


@pytest.mark.parametrize("mode,batch_stats", [("faithful", None), ("fplab", False), ("fplab", True)])
def test_model_restored_exactly_after_optimisation(splits, mode, batch_stats):
    model = tiny_model(True)
    model.train()
    state = snapshot(model)
    flags = [p.requires_grad for p in model.parameters()]
    result = anp_masks(model, splits.val, iterations=5, batch_size=32, n_clean=64, progress=False,
                       mode=mode, batch_stats=batch_stats)
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
    # the values, not just a range: the original loop gives the same masks, bit for bit
    kw = dict(iterations=20, batch_size=32, n_clean=64, lr=5.0)
    assert torch.equal(flat, reference_anp_masks(model, splits.val, channels_last=True, **kw).flat())
    assert flat.min() >= 0 and flat.max() <= 1
    assert (flat == 0).any() and (flat == 1).any()  # a large learning rate reaches the bounds


@pytest.mark.parametrize("steps", [1, 2])
def test_faithful_mode_matches_the_original_loop(splits, steps):
    """anp_masks(mode="faithful") == the original's loop (train mode, unclipped noise, batches
    with replacement) bit for bit, over enough iterations that any difference in the arithmetic
    would show (a signed step amplifies rounding); the earlier fplab mode does not match."""
    model = tiny_model(True)
    kw = dict(iterations=60, batch_size=32, n_clean=64, lr=1.0, steps=steps)
    ours = anp_masks(model, splits.val, progress=False, **kw)
    ref = reference_anp_masks(model, splits.val, channels_last=True, **kw)
    assert torch.equal(ours.flat(), ref.flat())
    assert ours.losses == ref.losses
    other = anp_masks(model, splits.val, progress=False, mode="fplab", **kw)
    assert not torch.allclose(other.flat(), ref.flat(), atol=1e-3)


def test_faithful_noise_is_not_clipped(splits):
    """After one signed step of eps from a uniform start in [-eps, eps] the original's noise
    spans [-2 eps, 2 eps]; the fplab mode clips it back to [-eps, eps]."""
    model = tiny_model(True)
    x, y = splits.val.x[:32], splits.val.y[:32]
    spans = {}
    for clip in (False, True):
        with NeuronPerturbation(model) as pert:
            anp_module._maximise_noise(pert, model, x, y, 0.4, 1, torch.Generator().manual_seed(0),
                                       clip=clip)
            spans[clip] = max(t.abs().max().item() for t in [*pert.delta.values(), *pert.xi.values()])
    assert spans[True] <= 0.4 + 1e-6 < spans[False] <= 0.8 + 1e-6


def test_train_mode_uses_batch_statistics(splits):
    """Faithful mode sees batch statistics: with eps = 0 and alpha = 1 the loss of the first
    iteration is the train-mode loss of that batch, not the eval-mode one."""
    model = tiny_model(True)
    r = anp_masks(model, splits.val, eps=0.0, alpha=1.0, iterations=1, batch_size=64, n_clean=64,
                  progress=False)
    idx = torch.randint(64, (64,), generator=torch.Generator().manual_seed(0))
    clean = anp_module.clean_subset(splits.val, 64, 0)
    x, y = clean.x[idx], clean.y[idx]
    model.train()
    with torch.no_grad():
        train_loss = nn.functional.cross_entropy(model(x), y).item()
    model.eval()
    eval_loss = nn.functional.cross_entropy(model(x), y).item()
    assert r.losses[0] == pytest.approx(train_loss, abs=1e-5)
    assert abs(train_loss - eval_loss) > 1e-3


def test_cache_key_includes_algorithm_version(tmp_path, monkeypatch, splits):
    monkeypatch.setenv("FPLAB_CACHE", str(tmp_path))
    model = tiny_model(True)
    kw = dict(iterations=2, batch_size=32, n_clean=64, cache=True, progress=False)
    first = anp_masks(model, splits.val, **kw)
    assert anp_masks(model, splits.val, **kw).cached
    assert not anp_masks(model, splits.val, mode="fplab", **kw).cached
    monkeypatch.setattr(anp_module, "ANP_VERSION", anp_module.ANP_VERSION + 1)
    again = anp_masks(model, splits.val, **kw)
    assert not again.cached and torch.equal(again.flat(), first.flat())


def test_shipped_masks_are_read_in_any_context_verified_and_only_when_asked(tmp_path, monkeypatch,
                                                                           splits, cache):
    """Masks that ship (``fplab/weights/anp-<hash>``) stand in for the computation whatever the
    thread count or numerics (the cache's keys include them, the shipped name does not); a changed
    byte is refused; ``shipped=False`` or ``FPLAB_NO_SHIPPED`` computes; other arguments miss."""
    import json
    from fplab import store, zoo
    from fplab.errors import IntegrityError
    from conftest import flip_last_byte
    model = tiny_model(True)
    kw = dict(iterations=3, batch_size=32, n_clean=64, progress=False, record_at=[2])
    computed = anp_masks(model, splits.val, **kw)
    folder = tmp_path / "weights"
    files = anp_module.ship_masks(computed, folder / computed.shipped_key)
    monkeypatch.setattr(zoo, "SHIPPED_DIR", folder)
    monkeypatch.setattr(zoo, "shipped_entries",
                        lambda: {computed.shipped_key: {"kind": "anp_masks", "files": files}})
    context = store.compute_context()
    monkeypatch.setattr(store, "compute_context", lambda device=None: {**context, "threads": 99})
    read = anp_masks(model, splits.val, shipped=True, cache=True, **kw)
    assert read.cached and read.shipped_key == computed.shipped_key
    assert torch.equal(read.flat(), computed.flat()) and read.losses == computed.losses
    assert torch.equal(torch.cat(list(read.history[2].values())),
                       torch.cat(list(computed.history[2].values())))
    assert not anp_masks(model, splits.val, **kw).cached  # not asked for: computed
    assert not anp_masks(model, splits.val, shipped=True, **{**kw, "iterations": 4}).cached
    monkeypatch.setenv("FPLAB_NO_SHIPPED", "1")
    assert not anp_masks(model, splits.val, shipped=True, **kw).cached
    monkeypatch.delenv("FPLAB_NO_SHIPPED")
    flip_last_byte(folder / computed.shipped_key / "masks.pt")
    with pytest.raises(IntegrityError):
        anp_masks(model, splits.val, shipped=True, **kw)
    assert json.loads((folder / computed.shipped_key / "masks.json").read_text())["iterations"] == 3


def test_record_at_keeps_intermediate_masks(splits):
    model = tiny_model(True)
    kw = dict(batch_size=32, n_clean=64, progress=False)
    long = anp_masks(model, splits.val, iterations=6, record_at=[3, 6, 99], **kw)
    short = anp_masks(model, splits.val, iterations=3, **kw)
    assert sorted(long.history) == [3, 6]
    assert torch.equal(torch.cat(list(long.history[3].values())), short.flat())
    assert torch.equal(torch.cat(list(long.history[6].values())), long.flat())


def test_prune_by_threshold_removes_exactly_masks_below(splits):
    model = tiny_model(True)
    state = snapshot(model)
    masks = {"1": torch.tensor([0.1, 0.5, 0.19, 0.2]), "5": torch.linspace(0, 1, 8)}
    result = prune_by_threshold(model, masks, 0.2, inclusive=False)  # fplab's earlier rule: m < t
    assert result.pruned["1"].tolist() == [0, 2]
    assert result.pruned["5"].tolist() == [0, 1]  # 0 and 1/7; 2/7 > 0.2
    assert result.count == 4
    assert prune_by_threshold(model, masks, 0.2).pruned["1"].tolist() == [0, 2, 3]  # m <= t
    assert prune_by_threshold(model, masks, 0.0).count == 1  # a mask at exactly 0 goes
    pruned = dict(result.model.named_modules())
    assert (pruned["1"].weight[[0, 2]] == 0).all() and (pruned["1"].weight[[1, 3]] != 0).all()
    assert (pruned["5"].weight[[0, 1]] == 0).all() and (pruned["5"].weight[2:] != 0).any(1).all()
    assert same_state(model, state)  # the original is untouched
    assert prune_by_threshold(model, masks, 0.0, inclusive=False).count == 0
    by_count = prune_by_count(model, masks, 3)
    assert by_count.pruned["1"].tolist() == [0] and by_count.pruned["5"].tolist() == [0, 1]


def test_pruning_curve(splits):
    model = tiny_model(True)
    masks = {"1": torch.tensor([0.1, 0.5, 0.19, 0.2]), "5": torch.linspace(0, 1, 8)}
    atk = Attack("square", target=0, trigger_options={"size": 3})
    curve = pruning_curve(model, masks, splits.test, atk, 10, thresholds=[0.0, 0.2, 1.01 - 0.01])
    assert curve["pruned"].tolist() == [1, 5, 12]
    assert set(curve.columns) == {"threshold", "pruned", "clean_acc", "asr"}
    assert pruning_curve(model, masks, splits.test, None, 10, counts=[0, 12])["pruned"].tolist() == [0, 12]



def test_cached_pruning_curve_reads_back_the_computed_table(splits, tmp_path, monkeypatch):
    monkeypatch.setenv("FPLAB_CACHE", str(tmp_path))
    model = tiny_model(True)
    masks = {"1": torch.tensor([0.1, 0.5, 0.19, 0.2]), "5": torch.linspace(0, 1, 8)}
    atk = Attack("square", target=0, trigger_options={"size": 3})
    plain = pruning_curve(model, masks, splits.test, atk, 10, thresholds=[0.0, 0.2, 0.5])
    for _ in range(2):  # computed and stored, then read back
        cached = pruning_curve(model, masks, splits.test, atk, 10, thresholds=[0.0, 0.2, 0.5],
                               cache=True)
        assert cached.equals(plain)
    assert len(list((tmp_path / "anp").glob("*.pt"))) == 1
    other = {**masks, "1": torch.tensor([0.3, 0.5, 0.19, 0.2])}  # other masks: another entry
    pruning_curve(model, other, splits.test, atk, 10, thresholds=[0.0, 0.2, 0.5], cache=True)
    assert len(list((tmp_path / "anp").glob("*.pt"))) == 2


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
    with pytest.warns(UserWarning, match="n_clean=1000000 is more than the 200 images"):
        anp_masks(model, splits.val, n_clean=10**6, iterations=1, progress=False)
    with pytest.raises(ValueError, match="n_clean"):
        anp_masks(model, splits.val, n_clean=0, iterations=1, progress=False)
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
    ref = reference_anp_masks(model, data, iterations=2, batch_size=8, n_clean=16, channels_last=True)
    assert torch.equal(flat, ref.flat())
    pruned = prune_by_count(model, result, 5)
    assert pruned.count == 5 and same_state(model, state)


def test_prune_by_validation_uses_clean_accuracy_only(splits):
    model = tiny_model(True)
    masks = {"1": torch.tensor([0.0, 0.3, 0.6, 0.9]), "5": torch.linspace(0.05, 0.95, 8)}
    base = prune_by_threshold(model, masks, 0.0)
    lenient = prune_by_validation(model, masks, splits.val, max_drop=1.0)
    assert lenient.threshold == max(anp_module.THRESHOLDS)
    strict = prune_by_validation(model, masks, splits.val, max_drop=0.0,
                                 thresholds=[0.0, 0.5, 0.95])
    from fplab.metrics import accuracy
    acc0 = accuracy(model, splits.val)
    assert acc0 - accuracy(strict.model, splits.val) <= 0
    assert strict.count >= base.count


# ----------------------------------------------------------------------------- any nn.Module

class DepthwiseNet(nn.Module):
    """Grouped and depthwise convolutions, no BatchNorm."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.grouped = nn.Conv2d(8, 8, 1, groups=2, bias=False)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x):
        return self.head(torch.relu(self.grouped(torch.relu(self.depthwise(torch.relu(self.stem(x)))))))


def _colour_data(n=24, classes=5, size=16):
    from fplab.data import Data
    gen = torch.Generator().manual_seed(0)
    return Data(torch.rand(n, 3, size, size, generator=gen), torch.randint(0, classes, (n,), generator=gen))


def _check_any_model(model, data):
    state = snapshot(model)
    kw = dict(iterations=2, batch_size=8, n_clean=len(data), lr=2.0)
    results = {mode: anp_masks(model, data, progress=False, mode=mode, **kw)
               for mode in ("fplab", "faithful")}
    assert same_state(model, state)
    for r in results.values():
        assert 0 <= r.flat().min() and r.flat().max() <= 1
    result = results["faithful"]
    # the original loop gives the same masks, bit for bit
    assert torch.equal(result.flat(), reference_anp_masks(model, data, channels_last=True, **kw).flat())
    pruned = prune_by_count(model, result, 3)
    assert pruned.count == 3 and same_state(model, state)
    assert pruned.model(data.x[:2]).shape == model(data.x[:2]).shape
    return result


def test_torchvision_resnet18_with_a_new_head():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(weights=None)
    model.fc = nn.Linear(model.fc.in_features, 5)
    model.eval()
    result = _check_any_model(model, _colour_data(size=32))
    assert len(result.masks) == 20  # every BatchNorm, shortcuts included; fc is the output


def test_model_without_batchnorm_and_depthwise_convs():
    model = DepthwiseNet().eval()
    result = _check_any_model(model, _colour_data())
    assert list(result.masks) == ["stem", "depthwise", "grouped"]
    assert [len(m) for m in result.masks.values()] == [8, 8, 8]
    result = _check_any_model(tiny_model(False), load_dataset("synthetic").val.subset(torch.arange(24)))
    assert list(result.masks) == ["0", "4"]


def test_model_with_nothing_to_prune_gives_a_clear_error(splits):
    for model in (nn.Sequential(nn.Flatten(), nn.Linear(256, 10)), nn.Sequential(nn.ReLU())):
        with pytest.raises(ValueError, match="no prunable layer"):
            anp_masks(model, splits.val, iterations=1, progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_anp_on_the_gpu():
    model = DepthwiseNet().cuda().eval()
    data = _colour_data()
    result = anp_masks(model, data, iterations=2, batch_size=8, n_clean=len(data), progress=False)
    cpu = anp_masks(DepthwiseNet().eval(), data, iterations=2, batch_size=8, n_clean=len(data),
                    progress=False)
    assert torch.allclose(result.flat(), cpu.flat(), atol=1e-4)
    pruned = prune_by_threshold(model, result, 0.5)
    assert next(pruned.model.parameters()).is_cuda


def test_full_profile_path_on_a_tiny_cifar_shaped_set(tmp_path, monkeypatch):
    """The full profile's code path (ResNet-18 of the ANP code, its recipes, ANP and pruning) on
    16 random CIFAR-shaped images instead of CIFAR-10."""
    from fplab.chapters import ch05_anp as ch
    from fplab.data import Data, Splits
    model = build_model(ch.SETTINGS["full"]["model"], (3, 32, 32), 10, seed=0).eval()
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 20
    data = _colour_data(n=16, classes=10, size=32)
    splits = Splits("tiny-cifar", data, data, data, 10)
    for name in ch.ATTACKS:
        r = ch.recipe(name, "full", splits=splits)
        assert r.model == "resnet18" and r.get_attack().target == ch.TARGET
    state = snapshot(model)
    result = anp_masks(model, data, iterations=2, batch_size=8, n_clean=16, progress=False)
    assert len(result.flat()) == 4800 and same_state(model, state)
    pruned = prune_by_threshold(model, result, 0.2)
    assert pruned.model(data.x[:2]).shape == (2, 10)


def test_deep_section_table_and_verdict(splits, monkeypatch, cache):
    """Chapter 5's deeper-network section: the recipe, one ANP run read at several iteration
    counts (each row from that count's recorded masks), and the expectation's verdict both ways."""
    import pandas as pd
    from fplab.chapters import ch05_anp as ch
    r = ch.deep_recipe("BadNets", "full", splits=splits)
    assert (r.model, r.train) == (ch.DEEP["model"], ch.DEEP["train"])
    assert r.attack == ch.recipe("BadNets", "full", splits=splits).attack
    monkeypatch.setattr(ch, "DEEP_ITERATIONS", (1, 3))
    model, data = tiny_model(True), splits.val.subset(torch.arange(32))
    atk = Attack("checkerboard", "all_to_one", 0, 0.1)
    run = ch.deep_masks(model, data, {"batch_size": 8, "lr": 2.0})
    assert run.iterations == 3 and sorted(run.history) == [1, 3]
    deep = ch.deep_table({"BadNets": model}, {"BadNets": atk}, {"BadNets": run}, data, data,
                         10, threshold=0.5, max_drop=1.0)
    assert list(deep.index) == [("BadNets", 1), ("BadNets", 3)]
    for it in (1, 3):
        assert deep.loc[("BadNets", it), "pruned"] == prune_by_threshold(model, run.history[it],
                                                                         0.5).count
    assert (deep["rule threshold"] == max(anp_module.THRESHOLDS)).all()  # max_drop 1: all allowed
    reps = ch.replicate_table({0: model, 1: model}, atk, {0: run, 1: run}, data, data, 10,
                              threshold=0.5, max_drop=1.0)
    assert list(reps.index.names) == ["seed", "iterations"]
    assert reps.loc[1].equals(deep.loc["BadNets"]) and reps.loc[0].equals(deep.loc["BadNets"])
    assert ch.deep_seeds(3) == tuple(range(3, 3 + ch.DEEP_REPLICATES))
    # the verdict averages the seeds' last rows: ASR and clean loss of the mean, not of one seed
    monkeypatch.setattr(ch, "DEEP_ITERATIONS", (1000, 2000))
    early = {"before ACC": 0.92, "before ASR": 1.0, "ACC": 0.5, "ASR": 0.9}  # never read
    def verdict(first, second):
        rows = [early, {"before ACC": 0.92, "before ASR": 1.0, **first},
                early, {"before ACC": 0.92, "before ASR": 1.0, **second}]
        index = pd.MultiIndex.from_product([[0, 1], [1000, 2000]], names=["seed", "iterations"])
        return ch.deep_expectation(pd.DataFrame(rows, index=index))
    ok = {"ACC": 0.90, "ASR": 0.04}
    assert verdict(ok, ok)["holds"] and "2 seeds" in verdict(ok, ok)["expectation"]
    assert verdict({"ACC": 0.90, "ASR": 0.0}, {"ACC": 0.90, "ASR": 0.09})["holds"]  # mean 4.5%
    assert not verdict(ok, {"ACC": 0.90, "ASR": 0.06})["holds"]  # mean 5%
    assert not verdict(ok, {"ACC": 0.879, "ASR": 0.04})["holds"]  # mean loss 3.05 points


def test_strength_table_scales_only_the_test_trigger(splits, cache):
    """Chapter 5's weak-backdoor table: factor 1 is the benchmark's test attack, factor k scales
    SIG's amplitude / WaNet's strength k times and nothing else; a model that ignores its input
    scores the same success under every factor, and bad input names the parameter."""
    from fplab.chapters import ch05_anp as ch
    for name, option in ch.STRENGTH_OPTION.items():
        assert ch.scaled_test_attack(name, 1) == ch.test_attack(name)
        base, double = ch.test_attack(name), ch.scaled_test_attack(name, 2)
        assert double.trigger_options[option] == pytest.approx(2 * base.trigger_options[option])
        assert {k: v for k, v in double.trigger_options.items() if k != option} == \
            {k: v for k, v in base.trigger_options.items() if k != option}
    with pytest.raises(ValueError, match="name"):
        ch.scaled_test_attack("BadNets", 2)
    with pytest.raises(ValueError, match="factor"):
        ch.scaled_test_attack("SIG", 0)

    class Constant(nn.Module):  # always predicts class 0, the target: every trigger "succeeds"
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.zeros(len(x), dtype=torch.long), 10).float()

    data = splits.test.subset(torch.arange(40))
    table = ch.strength_table({"SIG": Constant(), "WaNet": Constant(), "clean": Constant()},
                              data, 10, factors=(1, 3))
    assert list(table.index) == [1, 3] and table.loc[3, "SIG amplitude"] == "60/255"
    assert table.loc[1, "WaNet strength"] == "0.5 px" and table.loc[3, "WaNet strength"] == "1.5 px"
    models = [c for c in table.columns if "model" in c]
    assert len(models) == 4 and (table[models] == table.loc[1, models]).all().all()
