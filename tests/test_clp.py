"""Unit tests of channel Lipschitzness pruning (CLP; Zheng et al. 2022)."""

import pytest
import torch
from torch import nn

from fplab.defenses.clp import channel_lipschitz, clp, clp_select, conv_bn_pairs, zero_channels
from fplab.models import build_model


def hand_built(outlier: int = 5, channels: int = 16, batchnorm: bool = True) -> nn.Module:
    """One conv (+ BN) whose channels all have the same kernel norm except ``outlier`` (x10)."""
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, channels, 3, padding=1)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(channels))
    model = nn.Sequential(*layers, nn.ReLU(), nn.Flatten(), nn.Linear(channels * 16, 2))
    with torch.no_grad():
        w = torch.randn(3, 3, 3)
        layers[0].weight.copy_(w.expand(channels, 3, 3, 3))
        layers[0].weight[outlier] *= 10
    return model.eval()


@pytest.mark.parametrize("batchnorm", [True, False])
def test_finds_the_outlier_channel(batchnorm):
    model = hand_built(outlier=5, batchnorm=batchnorm)
    result = clp(model, u=3)
    assert result.pruned["0"].tolist() == [5]
    assert result.count == 1
    x = torch.rand(4, 3, 4, 4)
    layer = result.model[1] if batchnorm else result.model[0]
    out = result.model[0](x) if not batchnorm else layer(result.model[0](x))
    assert out[:, 5].abs().max() == 0          # the pruned channel outputs exactly 0
    assert out[:, 4].abs().max() > 0


def test_uclc_is_scaled_by_batchnorm():
    model = hand_built(outlier=5)
    bn = model[1]
    with torch.no_grad():
        bn.weight.fill_(1.0)
        bn.running_var.fill_(1.0)
        bn.weight[5] = 0.1                      # undoes the x10 kernel
        bn.running_var[2] = 0.01                # sigma 0.1: channel 2 becomes the outlier
    scores = channel_lipschitz(model)["0"]
    plain = torch.linalg.matrix_norm(model[0].weight[0].reshape(3, 9), ord=2)
    eps = bn.eps
    assert torch.allclose(scores[5], 10 * plain * 0.1 / (1 + eps) ** 0.5, rtol=1e-5)
    assert torch.allclose(scores[2], plain / (0.01 + eps) ** 0.5, rtol=1e-5)
    assert clp(model).pruned["0"].tolist() == [2]


def test_model_untouched_and_architecture_kept():
    model = build_model("traffic_cnn_bn", (3, 32, 32), 10, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = clp(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert {k: v.shape for k, v in result.model.state_dict().items()} == {k: v.shape for k, v in before.items()}
    assert [c for c, _ in conv_bn_pairs(model)] == ["features.conv1", "features.conv2", "features.conv3"]
    assert all(bn is not None for _, bn in conv_bn_pairs(model))


def test_larger_u_prunes_less():
    model = build_model("traffic_cnn_bn", (3, 32, 32), 10, seed=0)
    scores = channel_lipschitz(model)
    counts = [sum(len(v) for v in clp_select(scores, u)[0].values()) for u in (0.5, 1, 2, 3)]
    assert counts == sorted(counts, reverse=True)
    assert counts[0] > 0


@pytest.mark.parametrize("u", [0, -1, float("nan"), "3"])
def test_bad_u(u):
    with pytest.raises(ValueError, match="u="):
        clp(hand_built(), u=u)


def test_errors_name_the_parameter():
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        clp(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    with pytest.raises(ValueError, match="pruned names"):
        zero_channels(hand_built(), {"nope": torch.tensor([0])})


def test_benchmark_clp_reports_figures():
    from fplab.chapters.ch07_adaptive_backdoors import benchmark_clp
    figures = benchmark_clp(repeats=2)
    assert figures["channels"] == 16 + 32 + 64 and figures["repeats"] == 2
    assert 0 < figures["best_s"] <= figures["median_s"]
