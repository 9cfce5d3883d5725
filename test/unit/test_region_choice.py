"""Which region a correction names (core/region_choice.py): the rule of LabelCorrection.msg."""

from __future__ import annotations

import pytest

from etuner_ros.core.region_choice import (
    BAD_BOX,
    NO_REGION,
    Published,
    PublishedFrame,
    Region,
    Rejected,
    box_problem,
    choose_region,
    names_region,
    resolve_box,
)
from etuner_ros.core.regions import Box

W, H = 160, 120
THREE = PublishedFrame((Published((10, 10, 40, 30), "cup", 0.9),
                        Published((60, 20, 30, 60), "book", 0.6),
                        Published((100, 70, 50, 40), "bottle", 0.7)), model_version=4)


def choose(index: int = -1, box=None, published=THREE, min_iou: float = 0.5):
    return choose_region(index, box, published, W, H, min_iou)


def test_detection_index_names_that_detection_with_its_prediction():
    assert choose(1) == Region(Box(60, 20, 30, 60), 1, "book", 4)
    assert choose(2, box=(0, 0, 5, 5)) == Region(Box(100, 70, 50, 40), 2, "bottle", 4)  # index wins
    out = choose(3)
    assert isinstance(out, Rejected) and out.reason == NO_REGION and "3 detection(s)" in out.detail


def test_box_names_the_best_overlapping_detection_at_min_iou():
    assert choose(box=(12, 11, 38, 30)).index == 0
    assert choose(box=(95, 65, 55, 45)) == Region(Box(100, 70, 50, 40), 2, "bottle", 4)
    assert choose(box=(58, 18, 34, 64), min_iou=0.9).reason == NO_REGION  # IoU ~0.83
    assert choose(box=(58, 18, 34, 64), min_iou=0.7).index == 1
    miss = choose(box=(0, 90, 20, 20))
    assert miss.reason == NO_REGION and "best 0.00" in miss.detail
    # partly outside the frame: clipped, then matched
    assert choose(box=(100, 70, 80, 60)).index == 2  # clipped to (100, 70, 60, 50)


@pytest.mark.parametrize("box", [(200, 10, 20, 20), (10, 130, 20, 20), (-50, -50, 40, 40),
                                 (159, 0, 5, 5), (float("nan"), 0, 5, 5)])
def test_box_outside_the_frame_is_bad_box(box):
    out = choose(box=box)
    assert isinstance(out, Rejected) and out.reason == BAD_BOX
    assert choose(box=box, published=None).reason == BAD_BOX  # known without the detections


@pytest.mark.parametrize("box", [(0, 0, 0, 10), (0, 0, 10, 0), (0, 0, 1, 10), (0, 0, -5, 10),
                                 (0, 0, float("inf"), 5)])
def test_zero_size_box_is_malformed_on_arrival(box):
    assert box_problem(-1, box) is not None
    assert box_problem(0, box) is None  # ignored when an index names the detection
    assert box_problem(-1, None) is None and box_problem(-1, (0, 0, 2, 2)) is None


def test_whole_frame_is_the_only_region_or_ambiguous():
    out = choose()
    assert out.reason == NO_REGION and "3 regions" in out.detail
    one_box = PublishedFrame((Published((10, 10, 40, 30), "cup", 0.9),), 2)
    assert choose(published=one_box) == Region(Box(10, 10, 40, 30), 0, "cup", 2)
    frame = PublishedFrame((Published((0, 0, W, H), "cup", 0.9),), 2)  # region_source "frame"
    assert choose(published=frame) == Region(Box(0, 0, W, H), 0, "cup", 2)
    assert choose(published=None) == Region(Box(0, 0, W, H), -1, None, None)  # none received
    assert choose(published=PublishedFrame((), 2)) == Region(Box(0, 0, W, H), -1, None, None)


def test_named_region_waits_for_the_detections():
    assert choose(0, published=None) is None
    assert choose(box=(10, 10, 40, 30), published=None) is None
    assert names_region(0, False) and names_region(-1, True) and not names_region(-1, False)


def test_no_detections_published_names_no_region():
    empty = PublishedFrame((), 1)
    assert choose(0, published=empty).reason == NO_REGION
    assert choose(box=(10, 10, 40, 30), published=empty).reason == NO_REGION


def test_published_zero_box_is_the_whole_frame_and_a_broken_one_is_refused():
    assert resolve_box((0, 0, 0, 0), W, H) == Box(0, 0, W, H)  # RegionOfInterest convention
    legacy = PublishedFrame((Published((0, 0, 0, 0), "cup"),), 1)
    assert choose(published=legacy) == Region(Box(0, 0, W, H), 0, "cup", 1)
    assert choose(box=(5, 5, 150, 110), published=legacy).index == 0
    broken = PublishedFrame((Published((500, 500, 10, 10), "cup"),), 1)
    out = choose(0, published=broken)
    assert out.reason == BAD_BOX and "published detection 0" in out.detail
    assert choose(box=(10, 10, 40, 30), published=broken).reason == NO_REGION


def test_empty_class_name_is_no_prediction():
    unnamed = PublishedFrame((Published((10, 10, 40, 30), ""),), 1)
    assert choose(0, published=unnamed).predicted is None


def test_a_recalled_answer_is_not_the_models_prediction():
    """The label memory's answer is a caregiver's label: a correction of it carries no
    prediction, so it is no accuracy evidence for the model (issue 6: LazyTune's accuracy
    trigger and etuner's pseudo-label gate read that evidence)."""
    frame = PublishedFrame((Published((10, 10, 40, 30), "cup", 0.97, recalled=True),
                            Published((60, 20, 30, 60), "book", 0.6)), model_version=4)
    assert choose(0, published=frame) == Region(Box(10, 10, 40, 30), 0, None, 4)
    assert choose(1, published=frame).predicted == "book"
