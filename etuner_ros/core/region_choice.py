"""Which region of a frame a caregiver's correction names (the rule of ``msg/LabelCorrection.msg``).

Perception publishes one Detection per region of a frame, and a caregiver labels one of them. The
sample the collector stores must show that region and record what perception predicted *for it*,
or the tuner would learn from a crop labelled with another region's prediction. The rule, in
order:

1. ``detection_index >= 0``: that detection of the DetectionArray published for the stamp; an
   index past its end names nothing (``no_region``).
2. Else, with a box: the published detection whose box overlaps it best, if that IoU is at least
   ``min_iou``; none does: ``no_region``. A box with no usable part inside the frame (zero size,
   outside, not finite) is malformed input: ``bad_box``.
3. Else the whole frame: the frame's only published region when exactly one was published (with
   perception's default region source, "frame", that region *is* the whole frame, so old
   frame-level corrections behave as before; with boxes from a detector the crop is what
   perception classified, hence what the tuner must train on), the whole frame with no
   prediction when none was, and ``no_region`` when several were (which one is ambiguous).

A correction that names a region (1 or 2) needs the detections; before they have arrived the
rule answers "wait" (``None``), and the collector retries until its pairing timeout.
A published ``bbox`` of width and height 0 means the whole image, as
``sensor_msgs/RegionOfInterest`` defines it. This module is pure (no ROS), so the rule is tested
without DDS; ``nodes/label_collector_node.py`` applies it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from etuner_ros.core.regions import MIN_SIDE, Box, best_match, clip_box, iou

NO_REGION = "no_region"  # the correction names no region that was published for its stamp
BAD_BOX = "bad_box"      # the correction's box (or the named detection's) is no region of the frame

RawBox = tuple[float, float, float, float]  # x, y, width, height as a message carries them


@dataclass(frozen=True)
class Published:
    """One published Detection as the collector keeps it: its box and perception's answer
    (``recalled``: the answer was the label memory's, a caregiver's label, not the model's)."""

    box: RawBox
    class_name: str
    score: float = 0.0
    recalled: bool = False


@dataclass(frozen=True)
class PublishedFrame:
    """The DetectionArray published for one stamp (detections in their published order)."""

    detections: tuple[Published, ...]
    model_version: int | None = None


@dataclass(frozen=True)
class Region:
    """The region a correction names: its box in the frame, the index of its detection (-1: no
    detection was published, the whole frame), and what perception's model predicted for it
    (None when unknown: no detection, or the label memory answered)."""

    box: Box
    index: int
    predicted: str | None
    model_version: int | None


@dataclass(frozen=True)
class Rejected:
    """The correction names no usable region: ``reason`` is its counter, ``detail`` the log."""

    reason: str
    detail: str


def names_region(detection_index: int, has_box: bool) -> bool:
    """True when the correction needs the stamp's detections to know what it labels."""
    return detection_index >= 0 or has_box


def box_problem(detection_index: int, box: RawBox | None) -> str | None:
    """Why a correction's box is malformed whatever frame it names (checked on arrival, so a
    zero-size box is rejected at once instead of waiting for its frame), or None. The box is
    ignored, hence not checked, when a detection_index is given."""
    if box is None or detection_index >= 0:
        return None
    x, y, w, h = box
    if not all(math.isfinite(v) for v in box) or w < MIN_SIDE or h < MIN_SIDE:
        return f"box x={x} y={y} w={w} h={h} is not a region (under {MIN_SIDE} px or not finite)"
    return None


def resolve_box(raw: RawBox, width: int, height: int) -> Box | None:
    """A published box inside a ``width`` x ``height`` frame; (.., 0, 0) is the whole frame."""
    if raw[2] == 0 and raw[3] == 0:
        return Box(0, 0, int(width), int(height))
    return clip_box(*raw, width, height)


def choose_region(detection_index: int, box: RawBox | None, published: PublishedFrame | None,
                  width: int, height: int, min_iou: float) -> Region | Rejected | None:
    """Apply the rule (module docstring) to one correction of a ``width`` x ``height`` frame.
    ``box`` is None without has_box; ``published`` is None while no DetectionArray has arrived
    for the stamp. Returns the region, a rejection, or None: wait for the detections."""
    if detection_index >= 0:
        if published is None:
            return None
        n = len(published.detections)
        if detection_index >= n:
            return Rejected(NO_REGION, f"detection_index {detection_index}, but {n} detection(s) "
                                       "were published for this stamp")
        return _region(published, detection_index, width, height)
    if box is not None:
        mine = clip_box(*box, width, height)
        if mine is None:
            return Rejected(BAD_BOX, f"box x={box[0]} y={box[1]} w={box[2]} h={box[3]} has no "
                                     f"usable part inside the {width}x{height} frame")
        if published is None:
            return None
        theirs = [resolve_box(d.box, width, height) or Box(0, 0, 0, 0)
                  for d in published.detections]
        i = best_match(mine, theirs, min_iou)
        if i is None:
            best = max((iou(mine, b) for b in theirs), default=0.0)
            return Rejected(NO_REGION, f"box {tuple(mine)} overlaps none of the "
                                       f"{len(theirs)} published region(s) with IoU >= "
                                       f"{min_iou:.2f} (best {best:.2f})")
        return _region(published, i, width, height)
    if published is None or not published.detections:
        return Region(Box(0, 0, int(width), int(height)), -1, None, None)
    if len(published.detections) == 1:
        return _region(published, 0, width, height)
    return Rejected(NO_REGION, f"{len(published.detections)} regions were published for this "
                               "stamp and the correction names none: set detection_index or box")


def _region(published: PublishedFrame, i: int, width: int, height: int) -> Region | Rejected:
    d = published.detections[i]
    box = resolve_box(d.box, width, height)
    if box is None:
        return Rejected(BAD_BOX, f"published detection {i} has box {d.box}, no region of the "
                                 f"{width}x{height} frame")
    # a recalled answer is not the model's prediction: a label for it is no accuracy evidence
    predicted = None if d.recalled else (d.class_name or None)
    return Region(box, i, predicted, published.model_version)
