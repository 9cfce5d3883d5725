"""Regions of a frame: boxes, crops, and which box a caregiver meant.

Perception recognises each region of interest (an upstream detector's box, a proposer's box or
the whole frame) on a crop, and the label collector stores the crop a correction names. Both
must cut the *same* crop for the tuner to train on what perception serves, so the cutting rule
lives here once: the box grown by ``context`` of its size on every side (objects are recognised
partly by what surrounds them, and a detector's box is a few pixels off), clipped to the image.
Boxes are ``(x, y, w, h)`` in pixels of the source image, as in ``sensor_msgs/RegionOfInterest``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

CROP_CONTEXT = 0.1  # default share of a box's width/height added on each side of a crop
MIN_SIDE = 2        # a box narrower or lower than this (after clipping) is not a region


class Box(NamedTuple):
    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h


def clip_box(x: float, y: float, w: float, h: float, width: int, height: int,
             min_side: int = MIN_SIDE) -> Box | None:
    """The part of a box inside a ``width`` x ``height`` image, or None when nothing usable is
    left (non-finite numbers, non-positive size, outside the image, thinner than ``min_side``)."""
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        return None
    x0, y0 = max(0, round(x)), max(0, round(y))
    x1, y1 = min(int(width), round(x + w)), min(int(height), round(y + h))
    if x1 - x0 < min_side or y1 - y0 < min_side:
        return None
    return Box(x0, y0, x1 - x0, y1 - y0)


def whole_frame(rgb: np.ndarray) -> Box:
    """The box of the whole image (region source "frame")."""
    return Box(0, 0, int(rgb.shape[1]), int(rgb.shape[0]))


def context_box(box: Box, width: int, height: int, context: float = CROP_CONTEXT) -> Box:
    """``box`` grown by ``context`` of its size on each side, clipped to the image."""
    dx, dy = box.w * context, box.h * context
    grown = clip_box(box.x - dx, box.y - dy, box.w + 2 * dx, box.h + 2 * dy, width, height, 1)
    return grown if grown is not None else box


def crop(rgb: np.ndarray, box: Box, context: float = CROP_CONTEXT) -> np.ndarray:
    """The region's pixels with context (a contiguous copy: the frame buffer may be reused)."""
    c = context_box(box, rgb.shape[1], rgb.shape[0], context)
    return np.ascontiguousarray(rgb[c.y:c.y + c.h, c.x:c.x + c.w])


def served_views(rgb: np.ndarray, boxes: Sequence[Sequence[float]],
                 context: float = CROP_CONTEXT) -> list[np.ndarray]:
    """What perception classified in ``rgb`` for ``boxes`` (its published detections): each
    box's crop, the image itself for a whole-frame box; a box with nothing usable inside the
    image is skipped. One rule for every image the tuner learns from without a label (the
    tuner's camera feed, the collector's unlabelled reservoir), so it is the served model's."""
    whole = whole_frame(rgb)
    out = []
    for b in boxes:
        c = clip_box(*b, rgb.shape[1], rgb.shape[0])
        if c is not None:
            out.append(rgb if c == whole else crop(rgb, c, context))
    return out


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes (0 when either is empty)."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def best_match(box: Box, boxes: Sequence[Box], min_iou: float) -> int | None:
    """Index of the box in ``boxes`` overlapping ``box`` most, if that IoU is >= ``min_iou``
    (ties: the first, i.e. the lower detection index)."""
    best, best_iou = None, float(min_iou)
    for i, other in enumerate(boxes):
        v = iou(box, other)
        if v > best_iou or (v == best_iou and best is None and v > 0):
            best, best_iou = i, v
    return best


def classify_regions(bundle, rgb: np.ndarray, boxes: Sequence[Box],
                     context: float = CROP_CONTEXT) -> tuple[np.ndarray, np.ndarray]:
    """Class ids and confidences of ``bundle`` (a ``core.model.ModelBundle``) for each region:
    the crops are resized to the model's input and go through ONE batched forward pass, so a
    frame with 8 regions costs one call, not 8."""
    return bundle.predict([crop(rgb, b, context) for b in boxes])
