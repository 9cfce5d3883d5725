"""Synthetic frames with several objects and their true boxes, for training the region proposer.

The classifier's world (``sim/world.py``) shows one object per frame; a proposer must learn to find
1-4 of them at once, small or large, anywhere. This generator reuses that world's drawing (room
textures, object shapes and colours, clutter, lighting and camera) so the proposer sees the same
objects the recogniser knows, and pastes each object at a random place and size. An object never
hides much of another (boxes of a frame overlap little), so every true box is visible enough to
be found; background clutter stays unlabelled, as a proposer must learn to ignore it.

Every scene is a pure function of (seed, split, index): same seed, same bytes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from etuner_ros.sim.shapes import CLASS_PALETTES
from etuner_ros.sim.world import (
    _UPRIGHT,
    BASE_CLASSES,
    LIGHTINGS,
    NEW_CLASSES,
    ROOMS,
    Scenario,
    SyntheticWorld,
    _camera,
    _draw_object,
    _jitter,
    _View,
)

CLASSES = BASE_CLASSES + NEW_CLASSES
DEFAULT_IMAGE_SIZE = (160, 120)  # (w, h), 4:3 like a camera
SIZE_RANGE = (0.28, 0.6)  # object size as a share of the frame height
MAX_OVERLAP = 0.15  # largest share of either box that another box may cover
_LIGHT_P = (0.6, 0.25, 0.15)  # day, dim, night_grey: mostly daylight, some of each shift


@dataclass(frozen=True, eq=False)
class BoxScene:
    """One frame: RGB uint8 HxWx3, true boxes [N, 4] float (x0, y0, x1, y1) pixels, labels."""

    image: np.ndarray
    boxes: np.ndarray
    labels: tuple[str, ...]


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box's area: containment counts as full overlap."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(iw * ih / max(small, 1e-6))


class BoxSceneMaker:
    """Renders scenes; holds the room textures of one seed (built once, reused)."""

    def __init__(self, seed: int, image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
                 max_objects: int = 4) -> None:
        if not 1 <= int(max_objects) <= 8:
            raise ValueError(f"max_objects must be in 1..8, got {max_objects}")
        self.seed = int(seed)
        self.world = SyntheticWorld(seed, image_size)
        self.image_size = self.world.image_size
        self.max_objects = int(max_objects)

    def scene(self, index: int, split: str = "train") -> BoxScene:
        """Scene ``index`` of ``split``; different splits never share a random stream."""
        w, h = self.image_size
        rng = np.random.default_rng([self.seed, zlib.crc32(split.encode()), int(index)])
        room = ROOMS[int(rng.integers(len(ROOMS)))]
        lighting = LIGHTINGS[int(rng.choice(len(LIGHTINGS), p=_LIGHT_P))]
        sc = Scenario("boxes", room, lighting, float(rng.uniform(1.0, 5.0)), 0.0, CLASSES, 0.0)
        texture, clutter = self.world._room(room)
        th, tw = texture.shape[:2]
        oy, ox = int(rng.integers(0, th - h + 1)), int(rng.integers(0, tw - w + 1))
        img = texture[oy:oy + h, ox:ox + w].copy()
        for _ in range(int(rng.integers(0, 4))):  # unlabelled clutter a proposer must ignore
            colour = clutter[int(rng.integers(len(clutter)))]
            c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(3, w // 8)), int(rng.integers(2, h // 10)))
            cv2.ellipse(img, c, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1,
                        cv2.LINE_AA)
        boxes: list[np.ndarray] = []
        labels: list[str] = []
        for _ in range(int(rng.integers(1, self.max_objects + 1))):
            for _attempt in range(12):  # a free spot; give up on this object if none is found
                label = CLASSES[int(rng.integers(len(CLASSES)))]
                view = self._view(label, rng)
                trial = img.copy()
                box = np.array(_draw_object(trial, label, view), float) + np.array([0, 0, 1, 1])
                if all(_overlap(box, b) <= MAX_OVERLAP for b in boxes):
                    img = trial
                    boxes.append(box)
                    labels.append(label)
                    break
        light = (rng.uniform(0.9, 1.1) * rng.uniform(0.95, 1.05, 3) if lighting == "day" else
                 np.full(3, rng.uniform(0.3, 0.42)) if lighting == "dim" else
                 np.array([rng.uniform(80, 105), rng.uniform(0.5, 0.62), 0.0]))
        image = _camera(img, sc, light, rng)
        return BoxScene(image, np.array(boxes, np.float32).reshape(-1, 4), tuple(labels))

    def _view(self, label: str, rng: np.random.Generator) -> _View:
        """Pose, size, place and colours of one object; it fits the frame (its long side is
        about ``size`` pixels around ``centre``)."""
        w, h = self.image_size
        lo, hi = SIZE_RANGE
        size = h * rng.uniform(lo, hi) * (1.3 if label == "walker" else 1.0)
        half = 0.5 * size
        centre = np.array([rng.uniform(half, w - half), rng.uniform(half, h - half)])
        limit = _UPRIGHT.get(label, 60 if label != "keys" else 180)  # as world.py poses them
        angle = np.deg2rad(rng.uniform(-limit, limit))
        roles = {role: _jitter(opts[int(rng.integers(len(opts)))], rng, 18)
                 for role, opts in CLASS_PALETTES[label].items()}
        return _View(np.zeros(2), [], float(size), float(angle),
                     -1.0 if rng.random() < 0.5 else 1.0, float(rng.uniform(0.9, 1.1)), centre,
                     roles, None, np.ones(3))


def box_scenes(seed: int, n: int, split: str = "train",
               image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE, start: int = 0,
               max_objects: int = 4) -> list[BoxScene]:
    """Scenes ``start .. start+n-1`` of ``split`` (e.g. "train", "val")."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    maker = BoxSceneMaker(seed, image_size, max_objects)
    return [maker.scene(start + i, split) for i in range(n)]


__all__ = ["CLASSES", "DEFAULT_IMAGE_SIZE", "BoxScene", "BoxSceneMaker", "box_scenes"]
