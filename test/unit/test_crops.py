"""Crops of boxes with context (core.crops) and the room world's labelled crop dataset."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from etuner_ros.core.crops import CROP_MARGIN, crop_box, crop_boxes, expand_box
from etuner_ros.sim.room_crops import crop_dataset
from etuner_ros.sim.rooms import RoomWorld
from etuner_ros.sim.world import BASE_CLASSES, Frame


def test_expand_box_adds_the_margin_and_clips():
    assert CROP_MARGIN == 0.1
    assert expand_box((10, 10, 20, 10), 0.1, (100, 100)) == (8, 9, 24, 12)
    assert expand_box((10, 10, 20, 10), 0.0, (100, 100)) == (10, 10, 20, 10)
    assert expand_box((0, 0, 20, 10), 0.5, (25, 12)) == (0, 0, 25, 12)
    assert expand_box((90, 95, 20, 20), 0.1, (100, 100)) == (88, 93, 12, 7)
    with pytest.raises(ValueError, match="no pixel"):
        expand_box((200, 10, 5, 5), 0.1, (100, 100))
    with pytest.raises(ValueError, match="margin"):
        expand_box((1, 1, 5, 5), -0.1, (100, 100))


def test_crop_box_cuts_the_right_pixels():
    img = np.arange(40 * 50 * 3, dtype=np.int64).reshape(40, 50, 3).astype(np.uint8)
    c = crop_box(img, (10, 5, 20, 10))
    assert c.shape == (12, 24, 3) and c.dtype == np.uint8 and c.flags["C_CONTIGUOUS"]
    assert (c == img[4:16, 8:32]).all()
    c[:] = 0  # a copy, not a view
    assert img[4:16, 8:32].any()
    assert [x.shape for x in crop_boxes(img, [(0, 0, 5, 5), (45, 35, 5, 5)], 0.0)] == [
        (5, 5, 3), (5, 5, 3)]


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
