"""Boxes, crops, box matching (core/regions.py); pairing by stamp (core/region_pairing.py)."""

from __future__ import annotations

import numpy as np
import pytest

from etuner_ros.core.region_pairing import StampPairer
from etuner_ros.core.regions import (
    Box,
    best_match,
    clip_box,
    context_box,
    crop,
    iou,
    served_views,
    whole_frame,
)


def test_clip_box_keeps_the_inside_and_refuses_what_is_not_a_region():
    assert clip_box(10, 20, 30, 40, 100, 100) == Box(10, 20, 30, 40)
    assert clip_box(-5, -5, 20, 20, 100, 100) == Box(0, 0, 15, 15)
    assert clip_box(90, 90, 50, 50, 100, 100) == Box(90, 90, 10, 10)
    for bad in [(0, 0, 0, 10), (0, 0, 10, -1), (200, 0, 10, 10), (float("nan"), 0, 5, 5),
                (0, 0, float("inf"), 5), (99, 99, 10, 10)]:
        assert clip_box(*bad, 100, 100) is None, bad


def test_crop_adds_context_clipped_to_the_image():
    rgb = np.arange(100 * 80 * 3, dtype=np.uint8).reshape(80, 100, 3)
    b = Box(40, 30, 20, 10)
    assert context_box(b, 100, 80, 0.1) == Box(38, 29, 24, 12)
    assert crop(rgb, b, 0.0).shape == (10, 20, 3)
    assert np.array_equal(crop(rgb, b, 0.0), rgb[30:40, 40:60])
    assert crop(rgb, b, 0.1).shape == (12, 24, 3)
    edge = crop(rgb, Box(0, 0, 10, 10), 0.5)  # cannot grow past the corner
    assert edge.shape == (15, 15, 3)
    assert np.array_equal(crop(rgb, whole_frame(rgb)), rgb)  # whole frame: unchanged


def test_served_views_are_the_crops_perception_classifies():
    rgb = np.arange(100 * 80 * 3, dtype=np.uint8).reshape(80, 100, 3)
    [whole] = served_views(rgb, [whole_frame(rgb)])
    assert whole is rgb  # whole-frame mode: the frame itself, not a copy
    views = served_views(rgb, [(40, 30, 20, 10), (0, 0, 0, 5), (500, 500, 10, 10),
                               (-10, -10, 20, 20)], 0.1)
    assert len(views) == 2  # the empty box and the one outside the image give nothing
    assert np.array_equal(views[0], crop(rgb, Box(40, 30, 20, 10), 0.1))
    assert np.array_equal(views[1], crop(rgb, Box(0, 0, 10, 10), 0.1))  # clipped first
    assert served_views(rgb, []) == []


def test_iou_and_best_match():
    a = Box(0, 0, 10, 10)
    assert iou(a, a) == 1.0
    assert iou(a, Box(20, 20, 5, 5)) == 0.0
    assert iou(a, Box(5, 0, 10, 10)) == pytest.approx(50 / 150)
    boxes = [Box(50, 50, 10, 10), Box(1, 1, 10, 10), Box(0, 0, 9, 9)]
    assert best_match(a, boxes, 0.5) == 2  # IoU 0.81 beats 0.68
    assert best_match(Box(30, 30, 5, 5), boxes, 0.5) is None
    assert best_match(a, [], 0.5) is None


def test_pairer_pairs_in_either_order_and_counts_every_unpaired_half():
    p: StampPairer[str, list] = StampPairer(capacity=2, timeout_ns=100)
    assert p.add_frame(1, "f1", 0) is None
    assert p.add_regions(1, ["b"], 10) == ("f1", ["b"])
    assert p.add_regions(2, ["c"], 20) is None          # boxes first this time
    assert p.add_frame(2, "f2", 25) == ("f2", ["c"])
    assert p.waiting() == (0, 0)
    p.add_frame(3, "f3", 30)
    p.add_frame(3, "f3b", 31)                           # republished: replaces, counted
    p.add_frame(4, "f4", 40)
    p.add_frame(5, "f5", 50)                            # bound 2: f3b pushed out
    assert p.counts.duplicates == 1 and p.counts.frames_pushed_out == 1
    p.add_regions(9, ["x"], 60)
    assert p.expire(139) == (0, 0)                      # f4 has waited 99 of 100
    assert p.expire(140) == (1, 0)                      # f4 times out
    assert p.expire(150) == (1, 0)                      # f5
    assert p.expire(160) == (0, 1)                      # the boxes of stamp 9
    c = p.counts
    assert c.frames_timed_out == 2 and c.regions_timed_out == 1
    assert p.waiting() == (0, 0)


def test_pairer_times_frames_out_on_every_arrival_not_only_on_expire():
    """A busy stream: the first frame's boxes never come; the next arrivals (a frame, then
    boxes) drop and count it without anyone calling expire() (it used to wait for the node's
    1 s watchdog)."""
    p: StampPairer[str, list] = StampPairer(capacity=50, timeout_ns=100, max_frame_bytes=10**6)
    p.add_frame(1, "f1", 0, 1000)
    p.add_regions(7, ["b"], 50)
    assert p.add_frame(2, "f2", 100, 1000) is None          # f1 waited 100: out
    assert p.counts.frames_timed_out == 1 and p.waiting() == (1, 1)
    assert p.waiting_frame_bytes() == 1000
    assert p.add_regions(8, ["c"], 150) is None             # boxes of stamp 7 waited 100: out
    assert p.counts.regions_timed_out == 1 and p.waiting() == (1, 1)


def test_pairer_bounds_the_bytes_of_waiting_frames_oldest_out_first():
    p: StampPairer[str, list] = StampPairer(capacity=50, timeout_ns=10**9, max_frame_bytes=100)
    for k in range(3):
        assert p.add_frame(k, f"f{k}", k, 40) is None      # 120 > 100: f0 goes
    assert p.counts.frames_over_bytes == 1 and p.waiting() == (2, 0)
    assert p.waiting_frame_bytes() == 80
    assert p.add_regions(0, ["b"], 5) is None              # f0 is gone: these boxes wait
    assert p.add_regions(1, ["b"], 5) == ("f1", ["b"])      # f1 still waited
    assert p.waiting_frame_bytes() == 40
    assert p.add_frame(9, "huge", 6, 101) is None          # alone over the bound: dropped
    assert p.counts.frames_over_bytes == 2 and p.waiting() == (1, 1)
    assert p.waiting_frame_bytes() == 40                   # f2 is kept
    p.add_frame(2, "f2b", 7, 30)                           # a republished frame replaces f2
    assert p.counts.duplicates == 1 and p.waiting_frame_bytes() == 30
    p.add_regions(5, ["d"], 8)
    assert p.drain() == (1, 2) and p.waiting() == (0, 0)   # the owner stops: all counted
    assert p.waiting_frame_bytes() == 0
    assert p.counts.as_dict() == {"frames_timed_out": 0, "regions_timed_out": 0,
                                  "frames_pushed_out": 0, "regions_pushed_out": 0,
                                  "frames_over_bytes": 2, "frames_flushed": 1,
                                  "regions_flushed": 2, "duplicates": 1}


def test_pairer_refuses_nonsense_bounds():
    with pytest.raises(ValueError):
        StampPairer(capacity=0, timeout_ns=1)
    with pytest.raises(ValueError):
        StampPairer(capacity=1, timeout_ns=0)
    with pytest.raises(ValueError):
        StampPairer(capacity=1, timeout_ns=1, max_frame_bytes=0)
