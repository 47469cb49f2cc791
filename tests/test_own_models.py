"""The defenses on a researcher's own model (issue 15): torchvision ResNet-18 and a depthwise-conv
network through pruning, fine-pruning and ANP; save / load of every defense's output; DataLoader,
Dataset and tensor-pair inputs; bad inputs; device placement (a meta-device model); zoo states."""

import json

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fplab import zoo
from fplab.activations import mean_activations
from fplab.data import Data, as_data
from fplab.defenses import pruning
from fplab.defenses.anp import anp_masks, neuron_layers, prune_by_count, prune_by_threshold
from fplab.defenses.fineprune import fine_prune
from fplab.errors import IntegrityError
from fplab.graph import prune_site
from fplab.metrics import accuracy
from fplab.models import build_model, copy_model
from fplab.store import load_result, save_result


class DepthwiseNet(nn.Module):
    """Not an fplab layout: a grouped conv, a depthwise conv and a functional forward."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 16, 3, padding=1, groups=2)
        self.norm = nn.BatchNorm2d(16)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.norm2 = nn.BatchNorm2d(16)
        self.head = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.stem(x)), 2)
        x = torch.relu(self.norm(self.grouped(x)))
        x = nn.functional.max_pool2d(torch.relu(self.norm2(self.depthwise(x))), 2)
        return self.head(torch.flatten(x, 1))


def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10).eval()


@pytest.fixture(scope="module")
def images():
    gen = torch.Generator().manual_seed(0)
    return Data(torch.rand(48, 3, 32, 32, generator=gen), torch.randint(0, 10, (48,), generator=gen))


@pytest.fixture(scope="module")
def depthwise(synthetic):
    from fplab.train import train
    torch.manual_seed(0)
    model = DepthwiseNet()
    train(model, synthetic.train, epochs=1, lr=3e-3, progress=False)
    return model.eval()


def fc_inputs(model, x):
    seen = []
    handle = model.fc.register_forward_pre_hook(lambda m, inp: seen.append(inp[0]))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0]


def reloaded(model, fresh):
    """``model``'s state_dict saved, loaded into ``fresh`` (a new, unpruned model)."""
    import io
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    return fresh.eval()


# ----------------------------------------------------------------------------- residual networks

def test_resnet18_pruned_channel_is_zero_where_the_next_layer_reads_it(images):
    model = resnet18()
    site = prune_site(model, "layer4.1.conv2")
    assert (site.module, site.channel_layer, site.readers) == ("layer4.1", "layer4.1.bn2",
                                                              (("fc", "linear"),))
    result = pruning.prune_by_activation(model, images, fraction=0.5)
    assert result.layer == "layer4.1.conv2" and len(result.pruned) == 256
    read = fc_inputs(result.model, images.x)
    assert torch.all(read[:, result.pruned] == 0)
    kept = torch.tensor([c for c in range(512) if c not in set(result.pruned.tolist())])
    assert torch.equal(read[:, kept], fc_inputs(model, images.x)[:, kept])
    everything = pruning.prune_by_activation(model, images, fraction=1.0).model
    with torch.no_grad():
        out = everything(images.x)
    assert torch.equal(out, out[:1].expand_as(out))  # no channel left: the bias alone
    # the ranking is the activation the next layer reads
    means = mean_activations(model, images.x, "layer4.1.conv2")
    assert torch.allclose(means, fc_inputs(model, images.x).mean(0), atol=1e-6)


def test_resnet18_refusals_name_the_layer(images):
    model = resnet18()
    with pytest.raises(ValueError, match=r"layer='layer4.1.conv2'.*shortcut at 'add_7'"):
        pruning.prune_by_activation(model, images, fraction=0.25, physical=True)
    # layer4.0's output also feeds layer4.1's shortcut: it cannot be written into the weights
    with pytest.raises(ValueError, match=r"layer='layer4.0.conv2'.*addition 'add_7'"):
        pruning.prune_by_activation(model, images, fraction=0.25, layer="layer4.0.conv2")
    # a plain conv inside a block is pruned at its BatchNorm, physically too
    inner = pruning.prune_by_activation(model, images, fraction=0.25, layer="layer1.0.conv1",
                                        physical=True)
    assert inner.model.layer1[0].conv1.out_channels == 48


def test_resnet18_stopping_rule_and_curve_match_masked_models(images):
    model = resnet18()
    curve = pruning.pruning_curve(model, images, images, None, 10, progress=False)
    for k in (0, 100, 512):
        masked = pruning.prune_by_activation(model, images, fraction=k / 512).model
        assert curve.table.val_acc.iloc[k] == pytest.approx(accuracy(masked, images), abs=1e-9)
    stop = pruning.prune_by_activation(model, images)
    assert len(stop.pruned) == curve.stop


def test_resnet18_fine_prune_and_anp_survive_save_load(images):
    model = resnet18()
    fp = fine_prune(model, images, fraction=0.5, epochs=1, batch_size=16, progress=False)
    assert torch.all(fc_inputs(fp.model, images.x)[:, fp.pruned.pruned] == 0)
    back = reloaded(fp.model, torchvision.models.resnet18(weights=None, num_classes=10))
    with torch.no_grad():
        assert torch.allclose(back(images.x), fp.model(images.x), atol=1e-5)
    masks = anp_masks(model, images, iterations=2, batch_size=16, n_clean=48, progress=False)
    assert "fc" not in masks.masks and len(masks.masks) == 20  # every BatchNorm, not the output
    for result in (prune_by_threshold(model, masks, 0.999), prune_by_count(model, masks, 40)):
        back = reloaded(result.model, torchvision.models.resnet18(weights=None, num_classes=10))
        with torch.no_grad():
            assert torch.equal(back(images.x), result.model(images.x))


# ----------------------------------------------------------------------------- depthwise / grouped

def test_depthwise_model_through_every_defense(depthwise, synthetic):
    val = synthetic.val
    site = prune_site(depthwise, "depthwise")
    assert (site.module, site.readers) == ("norm2", (("head", "linear"),))
    result = pruning.prune_by_activation(depthwise, val, fraction=0.5)
    back = reloaded(result.model, DepthwiseNet())
    x = synthetic.test.x[:32]
    with torch.no_grad():
        assert torch.equal(back(x), result.model(x))
    assert torch.all(mean_activations(back, x, "depthwise")[result.pruned] == 0)
    with pytest.raises(ValueError, match="grouped convolution"):
        pruning.prune_by_activation(depthwise, val, fraction=0.5, physical=True)
    # the grouped conv is read by the depthwise conv (a grouped reader): masked, not shrunk
    inner = pruning.prune_by_activation(depthwise, val, fraction=0.25, layer="grouped")
    assert torch.all(mean_activations(inner.model, x, "grouped")[inner.pruned] == 0)
    fp = fine_prune(depthwise, val, epochs=1, progress=False)
    curve = pruning.val_accuracy_curve(depthwise, val, max_drop=0.04)
    assert len(fp.pruned.pruned) == pruning.stopping_point(curve, 0.04)
    tuned = reloaded(fp.model, DepthwiseNet())
    assert accuracy(tuned, synthetic.test) == accuracy(fp.model, synthetic.test)
    masks = anp_masks(depthwise, val, iterations=3, batch_size=32, n_clean=64, progress=False)
    assert list(masks.masks) == ["norm", "norm2"]
    pruned = prune_by_count(depthwise, masks, 5)
    assert accuracy(reloaded(pruned.model, DepthwiseNet()), synthetic.test) == \
        accuracy(pruned.model, synthetic.test)


@pytest.mark.parametrize("name", ["mnist_cnn", "mnist_cnn_bn"])
def test_course_model_pruning_survives_save_load(name, synthetic):
    model = build_model(name, synthetic.shape, 10, seed=0).eval()
    result = pruning.prune_by_activation(model, synthetic.val, fraction=0.5)
    back = reloaded(result.model, build_model(name, synthetic.shape, 10, seed=1))
    with torch.no_grad():
        assert torch.equal(back(synthetic.test.x), result.model(synthetic.test.x))


def test_untraceable_model_falls_back_with_a_warning(synthetic):
    class Branchy(DepthwiseNet):
        def forward(self, x):
            if x.sum() > -1:  # data-dependent control flow: torch.fx cannot trace it
                return super().forward(x)
            return x

    torch.manual_seed(0)
    model = Branchy().eval()
    with pytest.warns(UserWarning, match="cannot be traced"):
        result = pruning.prune_by_activation(model, synthetic.val, fraction=0.5)
    with pytest.warns(UserWarning):
        curve = pruning.val_accuracy_curve(model, synthetic.val, order=result.order)
    masked = result.model
    assert curve[len(result.pruned)] == pytest.approx(accuracy(masked, synthetic.val), abs=1e-9)


# ----------------------------------------------------------------------------- inputs

def test_dataloader_dataset_and_pair_inputs_match_data(synthetic):
    model = build_model("mnist_cnn_bn", synthetic.shape, 10, seed=0).eval()
    val = synthetic.val
    expected = pruning.prune_by_activation(model, val)
    uint8 = (val.x * 255).round().to(torch.uint8)
    assert torch.allclose(uint8.float() / 255, val.x)
    for given in (DataLoader(TensorDataset(val.x, val.y), batch_size=32),
                  TensorDataset(val.x, val.y.float()), (val.x, val.y), (uint8, val.y.int())):
        got = pruning.prune_by_activation(model, given)
        assert torch.equal(got.order, expected.order) and torch.equal(got.pruned, expected.pruned)
    loader = DataLoader(TensorDataset(val.x[:40], val.y[:40]), batch_size=32)  # 2 batches
    masks = anp_masks(model, loader, n_clean=32, iterations=2, batch_size=16, progress=False)
    ref = anp_masks(model, val.subset(torch.arange(40)), n_clean=32, iterations=2, batch_size=16,
                    progress=False)
    assert torch.equal(masks.flat(), ref.flat())
    with pytest.warns(UserWarning, match="n_clean=500 is more than the 40 images"):
        anp_masks(model, loader, iterations=1, progress=False)


@pytest.mark.parametrize("given, error, match", [
    ((torch.rand(4, 1, 16, 16), torch.tensor([0.0, 1.5, 2.0, 3.0])), ValueError, "whole class"),
    ((torch.rand(4, 1, 16, 16), torch.zeros(4, 10)), ValueError, "one-hot"),
    ((torch.rand(4, 1, 16, 16), torch.tensor([0, 1, -1, 2])), ValueError, ">= 0"),
    ((torch.randint(0, 9, (4, 1, 16, 16)), torch.arange(4)), TypeError, "int64"),
    ((torch.rand(4, 1, 16, 16), torch.arange(3)), ValueError, "4 items but y has 3"),
    ((torch.rand(0, 1, 16, 16), torch.arange(0)), ValueError, "empty"),
    ("images.npz", TypeError, "DataLoader"),
    ([(torch.rand(1, 16, 16), 0, "extra")], TypeError, r"\(x, y\) pair"),
])
def test_bad_data_names_the_parameter(given, error, match):
    with pytest.raises(error, match=f"val.*{match}|{match}"):
        as_data(given, "val")
    if not isinstance(given, (str, list)):
        model = build_model("mnist_cnn", (1, 16, 16), 10, seed=0)
        with pytest.raises(error, match=match):
            pruning.prune_by_activation(model, given, fraction=0.5)


def test_too_large_dataset_is_refused(monkeypatch):
    data = TensorDataset(torch.rand(100, 1, 16, 16), torch.arange(100) % 10)
    with pytest.raises(ValueError, match="max_bytes=10000"):
        as_data(data, "val", max_bytes=10_000)
    monkeypatch.setenv("FPLAB_MAX_DATA_BYTES", "10000")
    with pytest.raises(ValueError, match=r"val: 100 items .* max_bytes=10000"):
        pruning.prune_by_activation(build_model("mnist_cnn", (1, 16, 16), 10), data, fraction=0.5)


def test_bad_anp_arguments_name_the_parameter(synthetic):
    model = build_model("mnist_cnn_bn", synthetic.shape, 10, seed=0).eval()
    val = synthetic.val
    kw = dict(iterations=1, n_clean=32, batch_size=16, progress=False)
    with pytest.raises(ValueError, match=r"'classifier.fc2', which is the output layer.*allowed"):
        anp_masks(model, val, layers="classifier.fc2", **kw)
    one = anp_masks(model, val, layers="features.bn2", **kw)  # a string is one layer name
    assert list(one.masks) == ["features.bn2"]
    assert neuron_layers(model, ("features.bn1",)) == ["features.bn1"]
    with pytest.raises(ValueError, match="lr=0 must be a number > 0"):
        anp_masks(model, val, lr=0, **kw)
    with pytest.raises(ValueError, match="iterations=-1"):
        anp_masks(model, val, **{**kw, "iterations": -1})
    with pytest.raises(ValueError, match="batch_size=0"):
        anp_masks(model, val, **{**kw, "batch_size": 0})
    with pytest.raises(TypeError, match="steps"):
        anp_masks(model, val, steps="2", **kw)
    with pytest.raises(ValueError, match=r"masks has layer 'nope'.*allowed"):
        prune_by_threshold(model, {"nope": torch.ones(3)}, 0.2)
    with pytest.raises(ValueError, match=r"masks\['features.bn1'\] has shape \(3,\).*16 channels"):
        prune_by_count(model, {"features.bn1": torch.ones(3)}, 1)


# ----------------------------------------------------------------------------- devices

def device_checked(model):
    """Every leaf module refuses an input that is not on its parameters' device."""
    def check(module, inputs):
        param = next(module.parameters(recurse=False), None)
        for t in inputs:
            if param is not None and isinstance(t, torch.Tensor) and t.device != param.device:
                raise AssertionError(f"input on {t.device}, {type(module).__name__} on {param.device}")
    for m in model.modules():
        if not list(m.children()):
            m.register_forward_pre_hook(check)
    return model


@pytest.mark.parametrize("call", [
    lambda m, d: mean_activations(m, d.x),
    lambda m, d: pruning.prune_by_activation(m, d),
    lambda m, d: pruning.prune_by_activation(m, d, fraction=0.5),
    lambda m, d: pruning.val_accuracy_curve(m, d, order=torch.arange(32)),
    lambda m, d: pruning.pruning_curve(m, d, d, None, 10, progress=False),
    lambda m, d: accuracy(m, d),
    lambda m, d: anp_masks(m, d, iterations=1, n_clean=32, batch_size=16, progress=False),
    lambda m, d: fine_prune(m, d, fraction=0.5, epochs=1, progress=False),
])
def test_inputs_follow_a_meta_device_model(call, synthetic):
    """On a ``meta`` model every forward pass must get ``meta`` inputs; the only failure left is
    reading a number back from a meta tensor (no data), never an input on the wrong device."""
    model = device_checked(build_model("mnist_cnn_bn", synthetic.shape, 10, seed=0).to("meta"))
    with pytest.raises((NotImplementedError, RuntimeError), match="meta"):
        call(model.eval(), synthetic.val)


def test_zoo_returns_models_on_the_chosen_device(cache):
    recipe = zoo.Recipe("synthetic", "mnist_cnn", train={"epochs": 1, "lr": 1e-3, "batch_size": 64})
    zoo.load(recipe)
    loaded = zoo.load(recipe, device="meta")
    assert next(loaded.model.parameters()).device.type == "meta"


# ----------------------------------------------------------------------------- zoo states

RECIPE = zoo.Recipe("synthetic", "mnist_cnn", train={"epochs": 1, "lr": 1e-3, "batch_size": 64})


@pytest.mark.parametrize("state, match", [
    ("model without manifest", "model.pt without manifest.json"),
    ("corrupt manifest", "manifest.json is corrupt"),
    ("manifest without model", "model.pt is missing"),
    ("manifest without sha256", "manifest.json is corrupt"),
])
def test_zoo_never_overwrites(cache, state, match):
    entry = zoo.load(RECIPE)
    folder = entry.path.parent
    manifest = folder / "manifest.json"
    if state == "model without manifest":
        manifest.unlink()
    elif state == "corrupt manifest":
        manifest.write_text(manifest.read_text()[:-20])
    elif state == "manifest without model":
        entry.path.unlink()
    else:
        manifest.write_text(json.dumps({k: v for k, v in json.loads(manifest.read_text()).items()
                                        if k != "sha256"}))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(IntegrityError, match=match) as error:
        zoo.load(RECIPE)
    assert str(folder) in str(error.value) and f"rm -r '{folder}'" in str(error.value)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing rewritten


def test_trainer_files_are_hashed_and_verified(cache):
    @zoo.register_trainer("with_report")
    def trainer(recipe, splits):
        from fplab.store import atomic_write_json
        atomic_write_json({"answer": 42}, zoo.entry_dir(recipe) / "report.json")
        return zoo.train_standard(recipe, splits)

    recipe = zoo.Recipe("synthetic", "mnist_cnn", kind="with_report",
                        train={"epochs": 1, "lr": 1e-3, "batch_size": 64})
    entry = zoo.load(recipe)
    assert zoo.load_json(recipe, "report.json") == {"answer": 42}
    report = entry.path.parent / "report.json"
    report.write_text(json.dumps({"answer": 41}, indent=2, sort_keys=True))
    with pytest.raises(IntegrityError, match="SHA-256"):
        zoo.load_json(recipe, "report.json")
    with pytest.raises(IntegrityError, match="no SHA-256 for other.json"):
        zoo.load_json(recipe, "other.json")


def test_result_cache_refuses_orphans_and_corrupt_records(tmp_path):
    save_result(tmp_path, "k", {"a": torch.ones(2)}, {"note": 1})
    obj, record = load_result(tmp_path, "k")
    assert torch.equal(obj["a"], torch.ones(2)) and record["note"] == 1
    (tmp_path / "k.json").write_text("{not json")
    with pytest.raises(IntegrityError, match="k.json is corrupt"):
        load_result(tmp_path, "k")
    (tmp_path / "k.json").unlink()
    with pytest.raises(IntegrityError, match="k.pt has no record"):
        load_result(tmp_path, "k")
    assert load_result(tmp_path, "absent") is None
