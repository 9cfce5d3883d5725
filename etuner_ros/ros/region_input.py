"""An upstream detector's boxes, from whichever message it publishes, as perception's regions.

Three message types carry boxes on a robot; each has its own geometry convention, so each has a
small reader here and nothing else in perception knows about them:

* ``etuner_ros/DetectionArray`` (this package; the only one installed on the development
  machine): ``bbox`` is a ``RegionOfInterest`` (top-left corner, size), ``class_name``,
  ``score`` and ``upstream_id`` are the detector's.
* ``vision_msgs/Detection2DArray`` (most ROS detectors): ``bbox.center.position`` is the box
  centre, ``bbox.size_x``/``size_y`` its size, ``results[0].hypothesis`` class id and score,
  ``id`` the box or track id.
* ``yolo_msgs/DetectionArray`` (yolo_ros): ``bbox.center.position`` centre, ``bbox.size.x``/``.y``
  size, ``class_name``, ``score``, ``id``.

The readers only read attributes, so they are tested here with stand-ins of the same shape;
vision_msgs and yolo_msgs cannot be installed on this machine (no ROS apt packages), so their
subscriptions themselves run only on a robot. A box that is not a region (non-finite, empty,
outside the frame) is counted, never passed on; so are boxes beyond ``max_regions`` (the least
confident upstream go first).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from etuner_ros.core.regions import Box, clip_box

MESSAGE_TYPES: tuple[str, ...] = ("etuner_ros", "vision_msgs", "yolo_msgs")


@dataclass(frozen=True)
class Region:
    box: Box
    upstream_class: str = ""
    upstream_id: str = ""
    upstream_score: float = 0.0


@dataclass
class RegionBatch:
    regions: list[Region]
    bad: int = 0        # boxes that are not regions of this frame
    over_limit: int = 0  # valid boxes beyond max_regions


def message_class(kind: str) -> type:
    """The ROS message type of a ``region_message`` parameter value; ImportError names the
    package to install when it is missing."""
    if kind not in MESSAGE_TYPES:
        raise ValueError(f"region_message must be one of {MESSAGE_TYPES}, got {kind!r}")
    module = {"etuner_ros": "etuner_ros.msg", "vision_msgs": "vision_msgs.msg",
              "yolo_msgs": "yolo_msgs.msg"}[kind]
    name = "Detection2DArray" if kind == "vision_msgs" else "DetectionArray"
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise ImportError(f"region_message {kind!r} needs the {kind} package (on a robot: apt "
                          f"install ros-jazzy-{kind.replace('_', '-')}): {exc}") from exc


def _corner(x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
    return x, y, w, h


def _centre(cx: float, cy: float, w: float, h: float) -> tuple[float, float, float, float]:
    return cx - w / 2.0, cy - h / 2.0, w, h


def _read_etuner(d: Any) -> tuple[tuple, str, str, float]:
    b = d.bbox
    return (_corner(b.x_offset, b.y_offset, b.width, b.height), d.class_name,
            d.upstream_id, float(d.score))


def _read_vision(d: Any) -> tuple[tuple, str, str, float]:
    b = d.bbox
    hyp = d.results[0].hypothesis if len(d.results) else None
    return (_centre(b.center.position.x, b.center.position.y, b.size_x, b.size_y),
            str(hyp.class_id) if hyp is not None else "", str(d.id),
            float(hyp.score) if hyp is not None else 0.0)


def _read_yolo(d: Any) -> tuple[tuple, str, str, float]:
    b = d.bbox
    return (_centre(b.center.position.x, b.center.position.y, b.size.x, b.size.y),
            d.class_name, str(d.id), float(d.score))


_READERS = {"etuner_ros": _read_etuner, "vision_msgs": _read_vision, "yolo_msgs": _read_yolo}


def read_regions(msg: Any, kind: str, width: int, height: int, max_regions: int) -> RegionBatch:
    """The regions of ``msg`` (of type ``kind``) inside a ``width`` x ``height`` frame."""
    read = _READERS[kind]
    ok: list[Region] = []
    bad = 0
    for d in msg.detections:
        try:
            xywh, cls, ident, score = read(d)
            box = clip_box(*(float(v) for v in xywh), width, height)
        except (AttributeError, TypeError, ValueError, IndexError):
            box = None
        if box is None:
            bad += 1
            continue
        ok.append(Region(box, str(cls)[:64], str(ident)[:64], score))
    over = max(0, len(ok) - max_regions)
    if over:
        keep = sorted(range(len(ok)), key=lambda i: -ok[i].upstream_score)[:max_regions]
        ok = [ok[i] for i in sorted(keep)]
    return RegionBatch(ok, bad, over)
