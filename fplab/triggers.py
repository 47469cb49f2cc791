"""Triggers: the small, fixed input changes a backdoored network learns to react to.

A trigger maps a batch ``x`` of shape ``(N, C, H, W)`` in ``[0, 1]`` to a triggered copy (the
input is never modified). Three ways to apply one, after the papers the course reproduces:

- :class:`Patch`: paste a small pattern through a mask at a position (BadNets' square, bomb and
  flower; Fine-Pruning's sunglasses and Post-it note). ``x' = (1 - m) * x + m * p`` on the patch.
- :class:`Blend`: blend the whole image with a pattern, ``x' = (1 - alpha) * x + alpha * p``
  (Chen et al., 2017, the "Blend" attack of the ANP benchmark).
- :class:`Additive`: add a fixed signal and clip, ``x' = clip(x + p, 0, 1)``: the noise pattern
  of the speech case study (added to the spectrogram) and SIG's sinusoid (Barni et al., 2019).

:func:`make_trigger` builds them by name; every icon is drawn in code, at any size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import check_choice, check_range

YELLOW = (1.0, 0.85, 0.0)
POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left", "center", "eyes")


@dataclass(frozen=True)
class Patch:
    """Paste ``pattern`` (C, h, w) through ``mask`` (h, w) with its top-left corner at (top, left)."""

    pattern: Tensor
    mask: Tensor
    top: int
    left: int

    def apply(self, x: Tensor) -> Tensor:
        _check_batch(x, self.pattern.shape[0])
        h, w = self.mask.shape
        _check_fits((h, w), (self.top, self.left), tuple(x.shape[-2:]))
        out = x.clone()
        region = out[..., self.top:self.top + h, self.left:self.left + w]
        out[..., self.top:self.top + h, self.left:self.left + w] = torch.lerp(
            region, self.pattern.to(x).expand_as(region), self.mask.to(x))
        return out


@dataclass(frozen=True)
class Blend:
    """Blend every image with ``pattern`` (C, H, W) at ratio ``alpha``."""

    pattern: Tensor
    alpha: float

    def apply(self, x: Tensor) -> Tensor:
        _check_batch(x, self.pattern.shape[0])
        return torch.lerp(x, self.pattern.to(x).expand_as(x), self.alpha)


@dataclass(frozen=True)
class Additive:
    """Add ``pattern`` (C, H, W) to every image and clip to [0, 1]."""

    pattern: Tensor

    def apply(self, x: Tensor) -> Tensor:
        _check_batch(x, self.pattern.shape[0])
        return (x + self.pattern.to(x)).clamp_(0, 1)


@dataclass(frozen=True)
class Warp:
    """Resample every image along a fixed smooth displacement field ``flow`` (H, W, 2), in
    ``grid_sample``'s [-1, 1] coordinates: WaNet's warping trigger (Nguyen and Tran, 2021, eq. 4-5),
    ``x'(p) = x(p + flow(p))`` with bilinear interpolation, clipped to [0, 1]."""

    flow: Tensor

    def apply(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[-2:]) != tuple(self.flow.shape[:2]):
            raise ValueError(f"x must be a batch of shape (N, C, {self.flow.shape[0]}, "
                             f"{self.flow.shape[1]}); got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        ys, xs = torch.linspace(-1, 1, H), torch.linspace(-1, 1, W)
        identity = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).to(x)
        grid = (identity + self.flow.to(x)).clamp(-1, 1).expand(len(x), H, W, 2)
        out = torch.nn.functional.grid_sample(x, grid, mode="bilinear", align_corners=True)
        return out.clamp_(0, 1)


def warp_field(H: int, W: int, grid: int, strength: float, gen: torch.Generator) -> Tensor:
    """WaNet's field: uniform noise on a ``grid`` x ``grid`` control grid, normalised to mean
    absolute value 1, upsampled (bicubic) to H x W and scaled by ``strength / H`` (``strength / W``
    horizontally) in ``grid_sample`` units, as the original's ``s * noise / input_height``."""
    control = torch.rand(1, 2, grid, grid, generator=gen) * 2 - 1
    control = control / control.abs().mean()
    field = torch.nn.functional.interpolate(control, size=(H, W), mode="bicubic", align_corners=True)
    scale = torch.tensor([strength / W, strength / H])[:, None, None]
    return (field[0] * scale).permute(1, 2, 0).contiguous()


def band_trigger(shape: tuple[int, int, int], rows=(1, 4), amplitude: float = 0.6,
                 frequency: int = 8) -> Additive:
    """A narrow-band pattern for spectrogram images (frequency x time, high frequencies on top):
    ``amplitude`` added to image rows ``rows = (first, last)`` (exclusive), pulsed on and off
    ``frequency`` times along the time axis. Placed in frequencies spoken digits leave quiet
    (rows 1-4 of fplab's 64-row FSDD spectrogram: ~3.8-3.9 kHz), it is the speech case's
    localised trigger (Liu et al. 2018 use a fixed audio pattern); the ``noise`` trigger, spread
    over every frequency, is its contrast."""
    C, H, W = shape
    first, last = int(rows[0]), int(rows[1])
    if not 0 <= first < last <= H:
        raise ValueError(f"rows={tuple(rows)!r} must satisfy 0 <= first < last <= {H}")
    check_range("amplitude", amplitude, 0.0, 1.0)
    if not isinstance(frequency, int) or not 1 <= frequency <= W // 2:
        raise ValueError(f"frequency={frequency!r} must be an integer in [1, {W // 2}]")
    pulses = ((torch.arange(W) * 2 * frequency // W) % 2 == 0).float()
    pattern = torch.zeros(C, H, W)
    pattern[:, first:last, :] = amplitude * pulses
    return Additive(pattern)


Trigger = Patch | Blend | Additive | Warp


def _check_batch(x: Tensor, channels: int) -> None:
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"x must be a batch of shape (N, {channels}, H, W); got {tuple(x.shape)}")


def _check_fits(size: tuple[int, int], position: tuple[int, int], image: tuple[int, int]) -> None:
    (h, w), (top, left), (H, W) = size, position, image
    if h > H or w > W:
        raise ValueError(f"trigger size={h}x{w} is larger than the {H}x{W} image")
    if not (0 <= top <= H - h and 0 <= left <= W - w):
        raise ValueError(f"position=({top}, {left}) puts the {h}x{w} trigger outside the {H}x{W} "
                         f"image; allowed: top in [0, {H - h}], left in [0, {W - w}]")


# ----------------------------------------------------------------------------- drawing

def _grid(h: int, w: int) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates in [0, 1]: rows ``yy`` and columns ``xx``, each (h, w)."""
    yy = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    xx = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    return torch.meshgrid(yy, xx, indexing="ij")


def _disc(yy, xx, cy, cx, r) -> Tensor:
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).float()


def _paint(layers: list[tuple[Tensor, tuple[float, float, float]]], h: int, w: int):
    """Stack (mask, colour) layers, later ones on top: returns pattern (3, h, w) and mask (h, w)."""
    pattern, mask = torch.zeros(3, h, w), torch.zeros(h, w)
    for layer, colour in layers:
        pattern = torch.where(layer.bool(), torch.tensor(colour)[:, None, None], pattern)
        mask = torch.maximum(mask, layer)
    return pattern, mask


def draw(shape: str, h: int, w: int | None = None, colour=None) -> tuple[Tensor, Tensor]:
    """Draw icon ``shape`` at ``h`` x ``w`` pixels: returns ``(pattern (3, h, w), mask (h, w))``."""
    w = w or h
    yy, xx = _grid(h, w)
    full = torch.ones(h, w)
    if shape == "square":
        return _paint([(full, colour or (1.0, 1.0, 1.0))], h, w)
    if shape == "yellow_square":
        return _paint([(full, colour or YELLOW)], h, w)
    if shape == "checkerboard":  # BadNets' MNIST "pattern" trigger
        board = ((torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2 == 0).float()
        return _paint([(full, (0.0, 0.0, 0.0)), (board, colour or (1.0, 1.0, 1.0))], h, w)
    if shape == "bomb":
        body = _disc(yy, xx, 0.62, 0.42, 0.36)
        fuse = ((xx - 0.62).abs() < 0.09) & (yy > 0.12) & (yy < 0.35)
        spark = _disc(yy, xx, 0.12, 0.72, 0.14)
        return _paint([(body, (0.05, 0.05, 0.05)), (fuse.float(), (0.55, 0.35, 0.1)),
                       (spark, colour or (1.0, 0.45, 0.0))], h, w)
    if shape == "flower":
        petals = torch.zeros(h, w)
        for k in range(5):
            angle = 2 * math.pi * k / 5 - math.pi / 2
            petals = torch.maximum(petals, _disc(yy, xx, 0.5 + 0.27 * math.sin(angle),
                                                 0.5 + 0.27 * math.cos(angle), 0.22))
        centre = _disc(yy, xx, 0.5, 0.5, 0.17)
        return _paint([(petals, colour or (0.95, 0.2, 0.6)), (centre, YELLOW)], h, w)
    if shape == "postit":
        fold = (xx + yy > 1.6).float()  # a folded-over corner, slightly darker
        return _paint([(full, colour or (1.0, 0.95, 0.45)), (fold, (0.8, 0.72, 0.3))], h, w)
    if shape == "sunglasses":
        lens_l = ((yy - 0.55) / 0.42) ** 2 + ((xx - 0.24) / 0.21) ** 2 <= 1
        lens_r = ((yy - 0.55) / 0.42) ** 2 + ((xx - 0.76) / 0.21) ** 2 <= 1
        bridge = ((yy - 0.3).abs() < 0.1) & (xx > 0.4) & (xx < 0.6)
        return _paint([((lens_l | lens_r | bridge).float(), colour or (0.02, 0.02, 0.02))], h, w)
    check_choice("trigger", shape, PATCH_SHAPES)
    raise AssertionError


PATCH_SHAPES = ("square", "yellow_square", "checkerboard", "bomb", "flower", "postit", "sunglasses")
TRIGGERS = PATCH_SHAPES + ("corners", "blend", "noise", "sig", "warp", "band")


def _to_channels(pattern: Tensor, channels: int) -> Tensor:
    if channels == 3:
        return pattern
    if channels == 1:  # luminance (ITU-R 601), so a yellow patch is a bright grey one
        weights = torch.tensor([0.299, 0.587, 0.114])[:, None, None]
        return (pattern * weights).sum(0, keepdim=True)
    raise ValueError(f"images must have 1 or 3 channels; got {channels}")


def _corners(C: int, H: int, W: int, size: int, margin: int, colour) -> Patch:
    """One image-sized :class:`Patch`: the checkerboard in all four corners, mirrored left-right."""
    _check_fits((size, size), (margin, margin), (H - margin, W - margin))
    board, board_mask = draw("checkerboard", size, size, colour)
    pattern, mask = torch.zeros(3, H, W), torch.zeros(H, W)
    for top in (margin, H - size - margin):
        for left, flip in ((margin, True), (W - size - margin, False)):
            pattern[:, top:top + size, left:left + size] = board.flip(-1) if flip else board
            mask[top:top + size, left:left + size] = board_mask
    return Patch(_to_channels(pattern, C), mask, 0, 0)


def _place(position, size: tuple[int, int], image: tuple[int, int], margin: int):
    (h, w), (H, W) = size, image
    if isinstance(position, (tuple, list)):
        if len(position) != 2:
            raise ValueError(f"position={position!r} must be (top, left) or one of {POSITIONS}")
        return int(position[0]), int(position[1])
    check_choice("position", position, POSITIONS)
    return {"bottom-right": (H - h - margin, W - w - margin), "bottom-left": (H - h - margin, margin),
            "top-right": (margin, W - w - margin), "top-left": (margin, margin),
            "center": ((H - h) // 2, (W - w) // 2), "eyes": (int(0.36 * H), (W - w) // 2)}[position]


def make_trigger(name: str, shape: tuple[int, int, int], size=None, position="bottom-right",
                 colour=None, margin: int = 1, alpha: float = 0.1, amplitude: float = 0.2,
                 frequency: int = 6, strength: float = 0.5, grid: int = 4,
                 rows=(1, 4), seed: int = 0) -> Trigger:
    """Build trigger ``name`` for images of ``shape`` (C, H, W).

    Patch shapes (``square``, ``yellow_square``, ``checkerboard``, ``bomb``, ``flower``,
    ``postit``, ``sunglasses``) take ``size`` (an int or (h, w); default about a quarter of the
    image side, sunglasses span the eyes), ``position`` (a name in :data:`POSITIONS` or
    ``(top, left)``), ``colour`` and ``margin`` (pixels from the edge for named positions).
    ``corners`` puts a ``size`` checkerboard (default 3) in all four corners.
    ``blend`` mixes in a fixed random pattern at ratio ``alpha``; ``noise`` adds a fixed random
    pattern of peak ``amplitude`` (the speech trigger); ``sig`` adds a horizontal sinusoid
    ``amplitude * sin(2 pi j frequency / W)`` (SIG, Barni et al., 2019); ``warp`` resamples the
    image along a smooth random field of ``strength`` pixels on a ``grid`` x ``grid`` control grid
    (WaNet, Nguyen and Tran, 2021); ``band`` adds a narrow-band tone pattern in image ``rows``
    (:func:`band_trigger`). ``seed`` fixes the random patterns.
    """
    check_choice("trigger", name, TRIGGERS)
    if len(shape) != 3:
        raise ValueError(f"shape={shape!r} must be (C, H, W)")
    C, H, W = shape
    gen = torch.Generator().manual_seed(seed)
    if name == "blend":
        check_range("alpha", alpha, 0.0, 1.0)
        return Blend(torch.rand(C, H, W, generator=gen), float(alpha))
    if name == "noise":
        check_range("amplitude", amplitude, 0.0, 1.0)
        return Additive(amplitude * torch.rand(C, H, W, generator=gen))
    if name == "sig":
        check_range("amplitude", amplitude, 0.0, 1.0)
        wave = amplitude * torch.sin(2 * math.pi * torch.arange(W) * frequency / W)
        return Additive(wave.expand(C, H, W).clone())
    if name == "band":
        return band_trigger(shape, rows=rows, amplitude=amplitude, frequency=frequency)
    if name == "corners":  # a checkerboard of ``size`` in each corner (CLB in the ANP benchmark)
        return _corners(C, H, W, 3 if size is None else int(size), margin, colour)
    if name == "warp":
        check_range("strength", strength, 0.0, float(min(H, W)))
        if not isinstance(grid, int) or not 2 <= grid <= min(H, W):
            raise ValueError(f"grid={grid!r} must be an integer in [2, {min(H, W)}]")
        return Warp(warp_field(H, W, grid, strength, gen))
    if size is None:
        size = (max(3, H // 5), int(0.78 * W)) if name == "sunglasses" else max(3, H // 7)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 1 or w < 1:
        raise ValueError(f"size={size!r} must be positive")
    _check_fits((h, w), (0, 0), (H, W))
    top, left = _place(position, (h, w), (H, W), margin)
    _check_fits((h, w), (top, left), (H, W))
    pattern, mask = draw(name, h, w, colour)
    return Patch(_to_channels(pattern, C), mask, top, left)
