"""sim/scoring.py: regions matched to truth objects, per-object scoring, the caregiver's keys."""

from __future__ import annotations

import math

import pytest

from etuner_ros.sim.caregiver import Caregiver
from etuner_ros.sim.detector import SimDetector
from etuner_ros.sim.rooms import RoomWorld
from etuner_ros.sim.scoring import (
    MATCH_IOU,
    Scoreboard,
    TruthObject,
    match_regions,
    region_key,
)

CUP = TruthObject(11, "cup", (10, 10, 20, 20))
BOOK = TruthObject(22, "book", (50, 40, 30, 30))
KEYS = TruthObject(33, "keys", (90, 5, 10, 10))


def test_each_region_covers_its_best_object_false_boxes_and_misses_are_counted():
    boxes = [(52, 41, 29, 30), (11, 9, 20, 21), (100, 60, 20, 20)]  # book, cup, background
    m = match_regions(boxes, ["book", "bottle", "cup"], [CUP, BOOK, KEYS])
    assert [(r.index, r.object_id, r.true_label) for r in m.regions] == [
        (0, 22, "book"), (1, 11, "cup"), (2, None, None)]
    assert [r.correct for r in m.regions] == [True, False, False]
    assert [r.index for r in m.matched] == [0, 1]
    assert m.false_boxes == 1 and m.missed == (33,)
    assert m.all_right is False


def test_iou_threshold_and_empty_cases():
    shifted = (20, 10, 20, 20)  # IoU with CUP = 10*20 / (2*400 - 200) = 1/3
    assert match_regions([shifted], ["cup"], [CUP]).regions[0].object_id is None
    assert match_regions([shifted], ["cup"], [CUP], min_iou=0.3).regions[0].object_id == 11
    assert MATCH_IOU == 0.5
    none = match_regions([], [], [CUP, BOOK])
    assert none.regions == () and none.missed == (11, 22) and none.all_right is None
    only_false = match_regions([(0, 0, 5, 5)], ["cup"], [])
    assert only_false.false_boxes == 1 and only_false.all_right is None
    with pytest.raises(ValueError, match="predictions"):
        match_regions([(0, 0, 5, 5)], [], [CUP])


def test_two_boxes_on_one_object_are_both_scored():
    m = match_regions([(10, 10, 20, 20), (11, 11, 19, 19)], ["cup", "cup"], [CUP])
    assert [r.object_id for r in m.regions] == [11, 11] and m.missed == ()
    assert m.all_right is True


def test_region_key_is_distinct_per_frame_and_object_and_fixed():
    keys = {region_key(f, o) for f in range(50) for o in (0, 1, 100_000, 6_300_017)}
    assert len(keys) == 200
    assert region_key(3, 7) == (3 << 32) + 7


def test_scoreboard_per_scenario_version_and_segment():
    b = Scoreboard()
    for scenario, version, ok in [("a", 1, True), ("a", 1, False), ("b", 2, True),
                                  ("a", 2, True)]:
        b.add(scenario, version, ok)
    s = b.summary("regions")
    assert s["regions"] == 4 and s["overall"] == 0.75
    assert s["per_scenario"] == {"a": {"regions": 3, "accuracy": 2 / 3},
                                 "b": {"regions": 1, "accuracy": 1.0}}
    assert s["per_version"][1] == {"regions": 2, "accuracy": 0.5}
    assert s["segments"] == [("a", 2, 0.5), ("b", 1, 1.0), ("a", 1, 1.0)]
    assert b.last_segment()[0] == "a"
    empty = Scoreboard().summary()
    assert empty["frames"] == 0 and math.isnan(empty["overall"]) and empty["segments"] == []


def test_on_the_room_world_every_detected_object_is_matched_to_its_own_truth():
    """The simulated detector's jittered boxes cover the object they came from (IoU >= 0.5)
    and its false boxes cover none: what the caregiver relies on."""
    world, det = RoomWorld(1), SimDetector(1, false_rate=1.0)
    agree = total = false_boxes = 0
    for frame in world.frames(world.scenarios[0].name, 40):
        found = det.detect(frame)
        truth = [TruthObject(o.object_id, o.label, o.box) for o in frame.objects]
        m = match_regions([d.box for d in found], [d.name for d in found], truth)
        for d, r in zip(found, m.regions, strict=True):
            total += 1
            agree += r.object_id == d.truth_id
            false_boxes += d.truth_id is None
        assert m.false_boxes == sum(d.truth_id is None for d in found)
        assert set(m.missed) == {o.object_id for o in frame.objects} - {
            d.truth_id for d in found}
    assert false_boxes > 10 and agree == total


def test_caregiver_decisions_per_region_do_not_depend_on_the_prediction():
    care = Caregiver(0.5, seed=4, confirm_fraction=1.0)
    keys = [region_key(f, o) for f in range(40) for o in (5, 6)]
    looked = [care.feedback("cup", "cup", key=k) is not None for k in keys]
    wrong = [care.feedback("cup", "book", key=k) is not None for k in keys]
    assert looked == wrong and 0.3 < sum(looked) / len(keys) < 0.7
