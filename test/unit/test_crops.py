"""The room world's labelled crop dataset, cut as core.regions cuts (perception, collector)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from etuner_ros.core.regions import CROP_CONTEXT, Box, context_box, crop
from etuner_ros.sim.room_crops import crop_dataset
from etuner_ros.sim.rooms import RoomWorld
from etuner_ros.sim.world import BASE_CLASSES, Frame


def test_crop_matches_the_worked_examples_and_is_a_copy():
    """The cut every part shares (core.regions): 10 % context, clipped to the image."""
    assert CROP_CONTEXT == 0.1
    assert context_box(Box(10, 10, 20, 10), 100, 100) == (8, 9, 24, 12)
    assert context_box(Box(90, 95, 20, 20), 100, 100) == (88, 93, 12, 7)
    img = np.arange(40 * 50 * 3, dtype=np.int64).reshape(40, 50, 3).astype(np.uint8)
    c = crop(img, Box(10, 5, 20, 10))
    assert c.shape == (12, 24, 3) and c.dtype == np.uint8 and c.flags["C_CONTIGUOUS"]
    assert (c == img[4:16, 8:32]).all()
    c[:] = 0  # a copy, not a view
    assert img[4:16, 8:32].any()


def test_crop_dataset_is_balanced_deterministic_and_trainable():
    world = RoomWorld(0)
    a = crop_dataset(world, "day_kitchen", 48)
    assert all(isinstance(f, Frame) for f in a)  # what sim.pretrain.train_base_model takes
    assert len(a) == 48 and [f.index for f in a] == list(range(48))
    assert Counter(f.label for f in a) == dict.fromkeys(BASE_CLASSES, 6)
    assert all(f.image.dtype == np.uint8 and f.image.ndim == 3 and f.image.shape[2] == 3
               and min(f.image.shape[:2]) >= 4 for f in a)
    b = crop_dataset(RoomWorld(0), "day_kitchen", 48)
    assert all(x.image.tobytes() == y.image.tobytes() and x.label == y.label
               for x, y in zip(a, b, strict=True))
    val = crop_dataset(world, "day_kitchen", 16, split="val")
    assert {x.image.tobytes() for x in a}.isdisjoint(y.image.tobytes() for y in val)
    with pytest.raises(ValueError, match="stream"):
        crop_dataset(world, "day_kitchen", 4, split="stream")
