"""Boxes from the three message types perception can subscribe to (ros/region_input.py).

vision_msgs and yolo_msgs cannot be installed here (no ROS apt packages): the readers are
checked on stand-ins with their field layout (Jazzy's vision_msgs 4.x Detection2D, yolo_ros'
yolo_msgs/Detection), which is all the readers touch.
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest

from etuner_ros.core.regions import Box
from etuner_ros.ros.region_input import message_class, read_regions


def etuner_det(x, y, w, h, cls="cup", score=0.9, ident="7"):
    return NS(bbox=NS(x_offset=x, y_offset=y, width=w, height=h), class_name=cls, score=score,
              upstream_id=ident)


def vision_det(cx, cy, w, h, cls="44", score=0.8, ident="a"):
    return NS(bbox=NS(center=NS(position=NS(x=cx, y=cy), theta=0.0), size_x=w, size_y=h),
              results=[NS(hypothesis=NS(class_id=cls, score=score))], id=ident)


def yolo_det(cx, cy, w, h, cls="bottle", score=0.7, ident="3"):
    return NS(bbox=NS(center=NS(position=NS(x=cx, y=cy), theta=0.0), size=NS(x=w, y=h)),
              class_name=cls, score=score, id=ident)


def test_each_reader_gives_the_same_top_left_box():
    for kind, det in (("etuner_ros", etuner_det(10, 20, 30, 40)),
                      ("vision_msgs", vision_det(25.0, 40.0, 30.0, 40.0)),
                      ("yolo_msgs", yolo_det(25.0, 40.0, 30.0, 40.0))):
        batch = read_regions(NS(detections=[det]), kind, 100, 100, 8)
        assert [r.box for r in batch.regions] == [Box(10, 20, 30, 40)], kind
        assert batch.bad == 0 and batch.over_limit == 0
    r = read_regions(NS(detections=[vision_det(25, 40, 30, 40)]), "vision_msgs", 100, 100,
                     8).regions[0]
    assert (r.upstream_class, r.upstream_id, r.upstream_score) == ("44", "a", 0.8)


def test_boxes_that_are_not_regions_are_counted_and_extra_ones_cut_by_confidence():
    dets = [etuner_det(0, 0, 0, 5), etuner_det(200, 200, 5, 5), etuner_det(float("nan"), 0, 5, 5),
            NS(bbox=None, class_name="x", score=1.0, upstream_id="")]  # malformed
    dets += [etuner_det(i * 10, 0, 8, 8, score=s) for i, s in enumerate([0.2, 0.9, 0.5, 0.8])]
    batch = read_regions(NS(detections=dets), "etuner_ros", 100, 100, 2)
    assert batch.bad == 4 and batch.over_limit == 2
    assert [r.upstream_score for r in batch.regions] == [0.9, 0.8]  # kept in message order
    no_hyp = vision_det(25, 40, 30, 40)
    no_hyp.results = []
    r = read_regions(NS(detections=[no_hyp]), "vision_msgs", 100, 100, 8).regions[0]
    assert (r.upstream_class, r.upstream_score) == ("", 0.0)


def test_message_class_names_the_missing_package():
    with pytest.raises(ValueError):
        message_class("darknet")
    with pytest.raises(ImportError, match="ros-jazzy-vision-msgs"):
        message_class("vision_msgs")
