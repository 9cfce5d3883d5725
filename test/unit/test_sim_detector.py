"""The simulated detector: deterministic, bounded jitter, miss and false rates as configured,
the truth link, generic names."""

from __future__ import annotations

import numpy as np
import pytest

from etuner_ros.core.regions import iou
from etuner_ros.sim.detector import FALSE_NAMES, GENERIC_NAMES, Detection, SimDetector
from etuner_ros.sim.rooms import RoomFrame, RoomObject, RoomWorld
from etuner_ros.sim.world import BASE_CLASSES, NEW_CLASSES

# the 80 COCO names a YOLO-like detector knows (the ones used here, and some neighbours)
COCO = {"cup", "bottle", "book", "cell phone", "remote", "scissors", "chair", "bowl", "vase",
        "clock", "keyboard", "mouse", "laptop", "toothbrush", "wine glass", "couch", "tv"}


@pytest.fixture(scope="module")
def frames() -> list[RoomFrame]:
    return RoomWorld(5).frames("day_kitchen", 300)


def _true(dets: list[Detection]) -> list[Detection]:
    return [d for d in dets if d.truth_id is not None]


def test_deterministic_by_seed_and_frame_index(frames):
    a = [SimDetector(1)(f) for f in frames[:50]]
    assert a == [SimDetector(1)(f) for f in frames[:50]]
    assert a != [SimDetector(2)(f) for f in frames[:50]]
    late = SimDetector(1)
    assert late(frames[40]) == a[40]  # no state carried from frame to frame


def test_jitter_is_bounded(frames):
    det = SimDetector(0, miss_rate=0, occluded_miss=0, small_miss=0, false_rate=0,
                      confusion=0, jitter=0.05)
    shifts = []
    for f in frames[:100]:
        truth = {o.object_id: o.box for o in f.objects}
        dets = det(f)
        assert len(dets) == len(truth)
        for d in dets:
            x, y, w, h = truth[d.truth_id]
            dx, dy, dw, dh = d.box
            edges = np.abs([dx - x, dx + dw - x - w, dy - y, dy + dh - y - h])
            assert (edges <= 0.05 * np.array([w, w, h, h]) + 1).all(), (d, truth[d.truth_id])
            shifts.append(edges.max())
    assert max(shifts) >= 1  # boxes do move


def test_miss_and_false_rates_as_configured(frames):
    det = SimDetector(3, miss_rate=0.2, occluded_miss=0, small_miss=0, false_rate=0.5)
    dets = [det(f) for f in frames]
    recall = sum(len(_true(d)) for d in dets) / sum(len(f.objects) for f in frames)
    assert 0.75 < recall < 0.85
    false = sum(len(d) - len(_true(d)) for d in dets) / len(frames)
    assert 0.35 < false < 0.6  # a false box that finds no free background is dropped


def test_small_and_covered_objects_are_missed_more(frames):
    det = SimDetector(3)
    found = {(f.index, d.truth_id) for f in frames for d in _true(det(f))}
    objs = [(f.index, o) for f in frames for o in f.objects]
    covered = [(i, o) for i, o in objs if o.visible < 0.6]
    clear = [(i, o) for i, o in objs if o.visible > 0.95 and min(o.box[2:]) > 20]
    rate = [np.mean([(i, o.object_id) in found for i, o in group]) for group in (covered, clear)]
    assert len(covered) > 50 and len(clear) > 50
    assert rate[0] < rate[1] - 0.1, rate
    small = det.miss_probability(RoomObject(0, "keys", (0, 0, 3, 3), 1.0), 96)
    assert small > det.miss_probability(RoomObject(0, "keys", (0, 0, 40, 40), 1.0), 96)


def test_truth_link_names_scores_and_ids(frames):
    det = SimDetector(0, confusion=0)
    n_false = 0
    for f in frames[:150]:
        dets = det(f)
        truth = {o.object_id: o for o in f.objects}
        assert [d.upstream_id for d in dets] == [f"{f.index}-{k}" for k in range(len(dets))]
        assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
        for d in dets:
            assert 0 < d.score < 1
            x, y, w, h = d.box
            assert x >= 0 and y >= 0 and w >= 1 and h >= 1 and x + w <= 128 and y + h <= 96
            if d.truth_id is None:
                n_false += 1
                assert d.truth_label is None and d.name in FALSE_NAMES
                assert all(iou(d.box, o.box) < 0.2 for o in f.objects + f.hidden)
            else:
                o = truth[d.truth_id]
                assert d.truth_label == o.label and d.name == GENERIC_NAMES[o.label]
                assert iou(d.box, o.box) > 0.6
    assert n_false > 5


def test_generic_names_are_coco_and_cover_every_class():
    assert set(GENERIC_NAMES) == set(BASE_CLASSES + NEW_CLASSES)
    assert set(GENERIC_NAMES.values()) | set(FALSE_NAMES) <= COCO
    assert GENERIC_NAMES["medicine_bottle"] == GENERIC_NAMES["bottle"] == "bottle"
    det = SimDetector(0, names={"cup": "mug"})
    assert det.generic_name("cup") == "mug" and det.generic_name("keys") == "keys"
    with pytest.raises(ValueError):
        SimDetector(0, miss_rate=1.5)
    with pytest.raises(ValueError):
        SimDetector(0, false_rate=-1)


def test_real_camera_size():
    world = RoomWorld(1, image_size=(640, 480), objects=(4, 8))
    det = SimDetector(1, false_rate=1.0)
    for f in world.frames("day_kitchen", 3):
        for d in det(f):
            x, y, w, h = d.box
            assert x + w <= 640 and y + h <= 480
            if d.truth_id is not None:
                assert iou(d.box, next(o.box for o in f.objects
                                       if o.object_id == d.truth_id)) > 0.6
