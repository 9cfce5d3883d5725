"""Regions as the messages carry them -> the plain values of ``core/region_choice.py``.

The region rule is pure Python so it is tested without ROS; these two conversions are the only
place that knows the field names of ``DetectionArray`` and ``LabelCorrection``.
"""

from __future__ import annotations

from etuner_ros.core.region_choice import Published, PublishedFrame, RawBox
from etuner_ros.msg import DetectionArray, LabelCorrection


def _roi(r) -> RawBox:  # sensor_msgs/RegionOfInterest
    return (int(r.x_offset), int(r.y_offset), int(r.width), int(r.height))


def published_frame(msg: DetectionArray) -> PublishedFrame:
    """What perception published for one stamp: each detection's box and answer, in order
    (the order is what a correction's ``detection_index`` counts)."""
    return PublishedFrame(
        tuple(Published(_roi(d.bbox), str(d.class_name), float(d.score)) for d in msg.detections),
        int(msg.model_version))


def correction_box(msg: LabelCorrection) -> RawBox | None:
    """The correction's box, or None without ``has_box``."""
    return _roi(msg.box) if msg.has_box else None
