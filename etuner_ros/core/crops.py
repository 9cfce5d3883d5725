"""Cut a detector's boxes out of a camera frame, with some context around each.

The recogniser classifies one object at a time, on the crop of its box. A detector's box hugs
the object (and is a few per cent off); a margin of context around it keeps the whole object in
the crop and matches what the model saw in training. The same helper serves real frames (boxes
from an upstream detector) and the simulated world, so training and serving crop alike.

Boxes are (x, y, w, h) in pixels, x and y of the top-left corner.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CROP_MARGIN = 0.1  # context on every side, as a fraction of the box's width (left/right), height

Box = tuple[int, int, int, int]


def expand_box(box: Sequence[float], margin: float, image_size: tuple[int, int]) -> Box:
    """``box`` grown by ``margin`` times its width (left and right) and height (top and
    bottom), rounded outwards and clipped to an image of ``image_size`` = (width, height).
    Raises ValueError for a box with no pixel inside the image or a negative margin."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    x, y, w, h = (float(v) for v in box)
    iw, ih = (int(v) for v in image_size)
    dx, dy = margin * max(w, 0.0), margin * max(h, 0.0)
    x0, y0 = max(0, int(np.floor(x - dx))), max(0, int(np.floor(y - dy)))
    x1, y1 = min(iw, int(np.ceil(x + w + dx))), min(ih, int(np.ceil(y + h + dy)))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {tuple(box)} has no pixel inside a {iw}x{ih} image")
    return x0, y0, x1 - x0, y1 - y0


def crop_box(image: np.ndarray, box: Sequence[float], margin: float = CROP_MARGIN) -> np.ndarray:
    """The pixels of ``box`` plus ``margin`` context (see ``expand_box``), as a contiguous
    copy of ``image``'s dtype (RGB uint8 for camera frames)."""
    h, w = image.shape[:2]
    x, y, cw, ch = expand_box(box, margin, (w, h))
    return np.ascontiguousarray(image[y:y + ch, x:x + cw])


def crop_boxes(image: np.ndarray, boxes: Sequence[Sequence[float]],
               margin: float = CROP_MARGIN) -> list[np.ndarray]:
    """``crop_box`` for each box, in order."""
    return [crop_box(image, b, margin) for b in boxes]
