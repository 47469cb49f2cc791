import pytest
import torch

from fplab.triggers import PATCH_SHAPES, TRIGGERS, Blend, Patch, draw, make_trigger


def test_square_is_pasted_exactly_where_asked():
    x = torch.zeros(2, 3, 32, 32)
    trig = make_trigger("square", (3, 32, 32), size=4, position=(5, 7))
    out = trig.apply(x)
    assert torch.equal(out[:, :, 5:9, 7:11], torch.ones(2, 3, 4, 4))
    out[:, :, 5:9, 7:11] = 0
    assert torch.count_nonzero(out) == 0


def test_named_positions_and_margin():
    trig = make_trigger("square", (1, 28, 28), size=4, position="bottom-right", margin=1)
    assert (trig.top, trig.left) == (23, 23)
    trig = make_trigger("square", (1, 28, 28), size=4, position="top-left", margin=0)
    assert (trig.top, trig.left) == (0, 0)


def test_yellow_square_colour_and_grey_luminance():
    rgb = make_trigger("yellow_square", (3, 32, 32), size=3).apply(torch.zeros(1, 3, 32, 32))
    t = make_trigger("yellow_square", (3, 32, 32), size=3)
    assert rgb[0, :, t.top, t.left].tolist() == pytest.approx([1.0, 0.85, 0.0])
    grey = make_trigger("yellow_square", (1, 32, 32), size=3).pattern
    assert grey[0, 0, 0].item() == pytest.approx(0.299 + 0.587 * 0.85)


def test_input_is_not_modified():
    x = torch.rand(4, 3, 32, 32)
    before = x.clone()
    for name in TRIGGERS:
        make_trigger(name, (3, 32, 32)).apply(x)
    assert torch.equal(x, before)


@pytest.mark.parametrize("shape", PATCH_SHAPES)
def test_icons_have_a_visible_mask(shape):
    pattern, mask = draw(shape, 9, 9)
    assert pattern.shape == (3, 9, 9) and mask.shape == (9, 9)
    assert 0 < mask.sum() <= 81 and set(mask.unique().tolist()) <= {0.0, 1.0}


def test_bomb_and_flower_only_touch_their_mask():
    x = torch.full((1, 3, 32, 32), 0.5)
    trig = make_trigger("flower", (3, 32, 32), size=8, position=(0, 0))
    out = trig.apply(x)
    changed = (out != x).any(1)[0, :8, :8]
    assert torch.equal(changed, trig.mask.bool() & (trig.pattern != 0.5).any(0))


def test_blend_ratio():
    x = torch.zeros(1, 1, 8, 8)
    trig = make_trigger("blend", (1, 8, 8), alpha=0.2)
    assert isinstance(trig, Blend)
    assert torch.allclose(trig.apply(x), 0.2 * trig.pattern[None])


def test_noise_is_additive_and_clipped():
    x = torch.full((1, 1, 8, 8), 0.9)
    trig = make_trigger("noise", (1, 8, 8), amplitude=0.5)
    out = trig.apply(x)
    assert torch.allclose(out, (0.9 + trig.pattern[None]).clamp(0, 1))
    assert out.max() <= 1


def test_sig_is_a_horizontal_sinusoid():
    trig = make_trigger("sig", (1, 8, 16), amplitude=0.1, frequency=2)
    row = trig.pattern[0, 0]
    assert torch.allclose(trig.pattern[0], row.expand(8, 16))
    assert row.abs().max() == pytest.approx(0.1, abs=1e-6)


def test_unknown_trigger_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"trigger='heart'.*'square'.*'flower'"):
        make_trigger("heart", (3, 32, 32))


def test_trigger_larger_than_image():
    with pytest.raises(ValueError, match=r"size=40x40 is larger than the 32x32 image"):
        make_trigger("square", (3, 32, 32), size=40)


def test_trigger_outside_image():
    with pytest.raises(ValueError, match=r"position=\(30, 0\).*top in \[0, 28\]"):
        make_trigger("square", (3, 32, 32), size=4, position=(30, 0))
    with pytest.raises(ValueError, match=r"position='middle'.*'bottom-right'"):
        make_trigger("square", (3, 32, 32), position="middle")


def test_bad_alpha_and_channels():
    with pytest.raises(ValueError, match=r"alpha=1.5 is outside the allowed range \[0.0, 1.0\]"):
        make_trigger("blend", (3, 8, 8), alpha=1.5)
    trig = make_trigger("square", (3, 8, 8), size=2)
    with pytest.raises(ValueError, match=r"batch of shape \(N, 3, H, W\)"):
        trig.apply(torch.zeros(1, 1, 8, 8))
    assert isinstance(trig, Patch)


def test_warp_is_a_smooth_resampling():
    x = torch.rand(4, 3, 32, 32)
    same = make_trigger("warp", (3, 32, 32), strength=0.0)
    assert torch.allclose(same.apply(x), x, atol=1e-5)          # no displacement: the image itself
    warp = make_trigger("warp", (3, 32, 32), strength=0.5, grid=4, seed=1)
    out = warp.apply(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, x, atol=1e-3)
    assert torch.equal(warp.flow, make_trigger("warp", (3, 32, 32), seed=1).flow)  # seeded
    with pytest.raises(ValueError, match="strength"):
        make_trigger("warp", (1, 28, 28), strength=-1)
    with pytest.raises(ValueError, match="grid"):
        make_trigger("warp", (1, 28, 28), grid=1)
    with pytest.raises(ValueError, match="shape"):
        warp.apply(torch.rand(2, 3, 16, 16))
