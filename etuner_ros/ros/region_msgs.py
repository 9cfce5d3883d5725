"""Regions as the messages carry them <-> the plain values of ``core/region_choice.py``.

The region rule is pure Python so it is tested without ROS; these conversions are the only
place that knows the field names of ``DetectionArray`` and ``LabelCorrection`` (perception's
answer for a frame is built here too).
"""

from __future__ import annotations

from collections.abc import Sequence

from sensor_msgs.msg import RegionOfInterest

from etuner_ros.core.region_choice import Published, PublishedFrame, RawBox
from etuner_ros.msg import Detection, DetectionArray, LabelCorrection


def _roi(r) -> RawBox:  # sensor_msgs/RegionOfInterest
    return (int(r.x_offset), int(r.y_offset), int(r.width), int(r.height))


def published_frame(msg: DetectionArray) -> PublishedFrame:
    """What perception published for one stamp: each detection's box and answer, in order
    (the order is what a correction's ``detection_index`` counts)."""
    return PublishedFrame(
        tuple(Published(_roi(d.bbox), str(d.class_name), float(d.score), bool(d.recalled))
              for d in msg.detections),
        int(msg.model_version))


def correction_box(msg: LabelCorrection) -> RawBox | None:
    """The correction's box, or None without ``has_box``."""
    return _roi(msg.box) if msg.has_box else None


def detection_array(header, version: int, class_names: Sequence[str], regions: Sequence,
                    names: Sequence[str], scores: Sequence[float],
                    recalled: Sequence[bool]) -> DetectionArray:
    """Perception's answer for one frame (header = the image's): one Detection per region
    (``ros/region_input.Region``), with the upstream detector's view of it."""
    out = DetectionArray(header=header, model_version=version)
    for r, name, score, mem in zip(regions, names, scores, recalled, strict=True):
        out.detections.append(Detection(
            class_id=class_names.index(name), class_name=name, score=float(score),
            recalled=mem, model_version=version, upstream_class=r.upstream_class,
            upstream_id=r.upstream_id, upstream_score=float(r.upstream_score),
            bbox=RegionOfInterest(x_offset=r.box.x, y_offset=r.box.y, width=r.box.w,
                                  height=r.box.h)))
    return out
