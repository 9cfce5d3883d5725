"""Cheap, seeded augmentation of preprocessed frames for the few labels a round trains on.

A caregiver labels a handful of frames per scene; trained on them as they are, the model
memorises those exact pixels. Random translation, mirroring, light (gain, offset, tint) and an
occasional greyscale copy make each label stand for the views the robot will really get:
the same object a little off-centre, mirrored, under another lamp or the IR camera. Everything
runs on the normalised ``[N, 3, S, S]`` tensors ``model.preprocess`` makes, on CPU, in
microseconds per image, and draws its randomness from a caller's ``torch.Generator`` so a round
is reproducible. ``strong`` adds cutout and noise: the strong view of FixMatch-style
consistency training (``core.semi_supervised``).

Costs: no model FLOPs; a frozen prefix can no longer be cached across epochs when the input
changes every epoch, so the trainer charges the prefix's forward pass once per epoch then.
"""

from __future__ import annotations

import torch

from etuner_ros.core.model import IMAGENET_MEAN, IMAGENET_STD

_MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
AUGMENTATIONS: tuple[str, ...] = ("none", "weak", "light", "strong")


def _u(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def translate_flip(x: torch.Tensor, gen: torch.Generator, max_shift: float = 0.125,
                   flip: float = 0.5) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` of its side (reflect padding) and mirror it with
    probability ``flip``."""
    n, _, h, w = x.shape
    if n == 0:
        return x
    p = max(1, round(max_shift * max(h, w)))
    padded = torch.nn.functional.pad(x, (p, p, p, p), mode="reflect")
    dy = torch.randint(0, 2 * p + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * p + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h))  # [n, h]
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w))  # [n, w]
    out = padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(3).view(1, 3, 1, 1),
                 rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
    mirror = torch.rand(n, generator=gen) < flip
    out[mirror] = out[mirror].flip(-1)
    return out


def photometric(x: torch.Tensor, gen: torch.Generator, gain: tuple[float, float] = (0.5, 1.4),
                tint: float = 0.15, offset: float = 0.08, grey: float = 0.2) -> torch.Tensor:
    """Random light on normalised frames: overall gain, per-channel tint, an offset (in [0, 1]
    pixel units), greyscale with probability ``grey``; clipped to the valid pixel range."""
    n = x.shape[0]
    if n == 0:
        return x
    px = x * _STD + _MEAN
    g = _u(n, *gain, gen).view(n, 1, 1, 1)
    t = 1.0 + _u(n * 3, -tint, tint, gen).view(n, 3, 1, 1)
    o = _u(n, -offset, offset, gen).view(n, 1, 1, 1)
    px = px * g * t + o
    greyed = torch.rand(n, generator=gen) < grey
    if bool(greyed.any()):
        lum = (0.299 * px[greyed, 0] + 0.587 * px[greyed, 1] + 0.114 * px[greyed, 2])
        px[greyed] = lum.unsqueeze(1).expand(-1, 3, -1, -1)
    return (px.clamp(0.0, 1.0) - _MEAN) / _STD


def cutout(x: torch.Tensor, gen: torch.Generator, size: float = 0.35) -> torch.Tensor:
    """Blank one square of side ``size`` x the image side per image (to the mean colour)."""
    n, _, h, w = x.shape
    if n == 0:
        return x
    s = max(1, round(size * min(h, w)))
    cy = torch.randint(0, h, (n,), generator=gen)
    cx = torch.randint(0, w, (n,), generator=gen)
    ys, xs = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    mask = ((ys - cy.view(n, 1, 1)).abs() <= s // 2) & ((xs - cx.view(n, 1, 1)).abs() <= s // 2)
    return x.masked_fill(mask.unsqueeze(1), 0.0)


def augment(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    """``none``: ``x`` itself; ``weak``: translate + mirror; ``light``: weak + photometric;
    ``strong``: light with wider light changes, cutout and sensor noise."""
    if kind not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {kind!r}; known: {', '.join(AUGMENTATIONS)}")
    if kind == "none" or x.shape[0] == 0:
        return x
    out = translate_flip(x, gen)
    if kind == "weak":
        return out
    if kind == "light":
        return photometric(out, gen)
    out = photometric(out, gen, gain=(0.35, 1.6), tint=0.25, offset=0.12, grey=0.3)
    out = cutout(out, gen)
    return out + 0.1 * torch.randn(out.shape, generator=gen)
