"""Labelled object crops from the room world, for pretraining the starting model on crops.

The robot classifies crops of a detector's boxes, so its starting model should learn on crops
cut the same way: from rooms with several objects (neighbours at the crop's edges, covered
parts), around boxes a few per cent off (the detector's jitter), with the same context margin
(``core.regions.CROP_CONTEXT``: perception and the label collector cut the same). Each crop
comes from an i.i.d. room scene of a training split ("train", "val": independent of each other
and of the benchmark's stream) and classes are balanced, the way a dataset is collected. The
result is a list of world ``Frame`` objects (image = the crop), so
``sim.pretrain.train_base_model`` takes it as it is.
"""

from __future__ import annotations

import zlib
from collections import Counter

import numpy as np

from etuner_ros.core.regions import CROP_CONTEXT, Box, crop
from etuner_ros.sim.detector import JITTER, jitter_box
from etuner_ros.sim.rooms import RoomWorld
from etuner_ros.sim.world import Frame


def crop_dataset(world: RoomWorld, scenario: str, n: int, *, split: str = "train",
                 margin: float = CROP_CONTEXT, jitter: float = JITTER) -> list[Frame]:
    """``n`` labelled crops (RGB uint8, sizes vary) of the truth objects in ``split``'s i.i.d.
    frames of ``scenario``, each class at most ceil(n / classes) times, boxes jittered by
    ``jitter`` (see ``detector.jitter_box``) then grown by ``margin``. A pure function of
    (world seed and settings, scenario, n, split, margin, jitter)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if split == "stream":
        raise ValueError('split "stream" is the benchmark\'s; use e.g. "train" or "val"')
    sc = world.scenario(scenario)
    pos = world.scenarios.index(sc)
    quota = -(-n // len(sc.classes))
    counts: Counter[str] = Counter()
    out: list[Frame] = []
    i = 0
    while len(out) < n:
        if i > 50 * n + 100:  # cannot happen with the world's settings; guard anyway
            raise RuntimeError(f"only {len(out)} of {n} crops after {i} frames")
        frame = world.frame(scenario, i, split=split)
        rng = np.random.default_rng([world.seed, zlib.crc32(split.encode()), pos, 7, i])
        h, w = frame.image.shape[:2]
        for obj in frame.objects:
            box = jitter_box(obj.box, jitter, rng, (w, h))
            if counts[obj.label] >= quota or len(out) >= n:
                continue
            counts[obj.label] += 1
            out.append(Frame(len(out), crop(frame.image, Box(*box), margin), obj.label, sc.name))
        i += 1
    return out
