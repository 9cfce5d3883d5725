"""Label memory: near-identical views recall their label; other views, old or unknown labels
do not."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from etuner_ros.core.label_memory import LabelMemory, MemoryConfig, view_keys


def texture(seed: int, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """A smooth random RGB scene (blobs, as an object on clutter)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return cv2.resize(small, size[::-1], interpolation=cv2.INTER_CUBIC)


def sway(img: np.ndarray, dx: int, gain: float) -> np.ndarray:
    """The same view a moment later: shifted a few pixels, light a little brighter."""
    moved = np.roll(img, dx, axis=1).astype(np.float32) * gain
    return np.clip(moved, 0, 255).astype(np.uint8)


def test_a_labelled_view_is_recalled_for_the_same_view_moments_later_only():
    mem = LabelMemory()
    a, b = texture(1), texture(2)
    mem.add(mem.keys([a]), ["cup"], t=1.0)
    later = [sway(a, 3, 1.15), sway(a, -2, 0.9), b]
    assert mem.recall(mem.keys(later), ["cup", "pills"], now=2.0) == ["cup", "cup", None]
    (label, cosine), none = mem.match(mem.keys([sway(a, 3, 1.15), b]), ["cup"], now=2.0)
    assert label == "cup" and 0.95 <= cosine <= 1.0 and none is None
    assert mem.recalled == 3 and mem.added == 1 and len(mem) == 1


def test_different_scenes_almost_never_match():
    """Of 40 unrelated scenes none recalls another's label at the default threshold."""
    mem = LabelMemory()
    scenes = [texture(s) for s in range(40)]
    mem.add(mem.keys(scenes[:20]), [f"c{i}" for i in range(20)], t=0.0)
    assert mem.recall(mem.keys(scenes[20:]), [f"c{i}" for i in range(20)], now=1.0) == \
        [None] * 20


def test_only_labels_the_serving_model_knows_are_recalled():
    mem = LabelMemory()
    a = texture(3)
    mem.add(mem.keys([a]), ["new_thing"], t=0.0)
    assert mem.recall(mem.keys([a]), ["cup"], now=0.0) == [None]
    assert mem.recall(mem.keys([a]), ["cup", "new_thing"], now=0.0) == ["new_thing"]


def test_a_second_word_on_the_same_view_replaces_the_first():
    mem = LabelMemory()
    a = texture(4)
    mem.add(mem.keys([a]), ["cup"], t=0.0)
    mem.add(mem.keys([a]), ["mug"], t=1.0)
    assert mem.recall(mem.keys([a]), ["cup", "mug"], now=2.0) == ["mug"]


def test_capacity_and_age_bound_the_memory():
    mem = LabelMemory(MemoryConfig(capacity=2, max_age_s=10.0))
    a, b, c = texture(5), texture(6), texture(7)
    mem.add(mem.keys([a, b]), ["x", "y"], t=0.0)
    mem.add(mem.keys([c]), ["z"], t=5.0)  # a is pushed out
    known = ["x", "y", "z"]
    assert mem.recall(mem.keys([a, b, c]), known, now=6.0) == [None, "y", "z"]
    assert mem.recall(mem.keys([a, b, c]), known, now=12.0) == [None, None, "z"]
    mem.clear()
    assert len(mem) == 0 and mem.recall(mem.keys([c]), known, now=12.0) == [None]


def test_a_label_answers_for_max_age_s_by_default_and_for_ever_with_zero():
    a = texture(8)
    mem = LabelMemory()
    mem.add(mem.keys([a]), ["cup"], t=10.0)
    assert mem.config.max_age_s == 5.0
    assert mem.recall(mem.keys([a]), ["cup"], now=15.0) == ["cup"]
    assert mem.recall(mem.keys([a]), ["cup"], now=15.1) == [None]
    keep = LabelMemory(MemoryConfig(max_age_s=0.0))
    keep.add(keep.keys([a]), ["cup"], t=10.0)
    assert keep.recall(keep.keys([a]), ["cup"], now=1e6) == ["cup"]


def test_a_flat_image_matches_nothing():
    flat = np.full((32, 32, 3), 128, np.uint8)
    assert not view_keys([flat]).any()
    mem = LabelMemory()
    mem.add(mem.keys([flat]), ["wall"], t=0.0)
    assert mem.recall(mem.keys([flat]), ["wall"], now=0.0) == [None]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="RGB uint8"):
        view_keys([np.zeros((8, 8), np.uint8)])
    with pytest.raises(ValueError, match="threshold"):
        MemoryConfig(threshold=0.0)
    with pytest.raises(ValueError, match="key_size"):
        MemoryConfig(key_size=1)
    with pytest.raises(ValueError, match="capacity"):
        MemoryConfig(capacity=0)
    with pytest.raises(ValueError, match="max_age_s"):
        MemoryConfig(max_age_s=-1)
    with pytest.raises(ValueError, match="keys of shape"):
        LabelMemory().add(np.zeros((2, 64), np.float32), ["one"], t=0.0)
