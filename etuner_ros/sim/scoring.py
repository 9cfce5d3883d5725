"""Scoring the served model against the simulated truth: per frame, or per region of a room.

The simulated caregiver is also the demo's referee: it knows what is really in each frame and
compares perception's answers with it. In the objects world a frame holds one object, so a
frame is scored once. In the rooms world perception answers once per region (an upstream
detector's box), so each region is matched to the truth object it covers and scored on its own:
the per-object accuracy of issue 8. What matching cannot score is said here, once:

* a region covering no truth object (IoU < ``MATCH_IOU`` with every one: the detector's false
  box, or a box too far off) has no true class; it is counted and never labelled;
* a truth object no region covers (the detector missed it) was never shown to the recogniser;
  it is counted as missed, and cannot count for or against the recogniser's accuracy;
* each region is matched on its own (best IoU), so two boxes on one object are both scored and
  both may be labelled: each is a region perception served.

Pure Python without ROS, so the rules are unit-tested (test/unit/test_scoring.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from etuner_ros.core.regions import Box, best_match

MATCH_IOU = 0.5  # a region covers the truth object it overlaps best, if at least this much
_MASK = (1 << 64) - 1


class TruthObject(NamedTuple):
    """One object of the truth (``SimObject``): stable id, household class, visible box."""

    object_id: int
    label: str
    box: Box


@dataclass(frozen=True)
class RegionVerdict:
    """One region of perception's answer set against the truth."""

    index: int  # its index in the DetectionArray (what a correction's detection_index names)
    predicted: str  # perception's class name for it
    object_id: int | None  # the truth object it covers; None: a false box
    true_label: str | None

    @property
    def matched(self) -> bool:
        return self.object_id is not None

    @property
    def correct(self) -> bool:
        return self.matched and self.predicted == self.true_label


@dataclass(frozen=True)
class FrameMatch:
    """Every region of one frame with its truth object, and the truth objects no region covers."""

    regions: tuple[RegionVerdict, ...]
    missed: tuple[int, ...]  # object ids

    @property
    def matched(self) -> tuple[RegionVerdict, ...]:
        return tuple(r for r in self.regions if r.matched)

    @property
    def false_boxes(self) -> int:
        return sum(not r.matched for r in self.regions)

    @property
    def all_right(self) -> bool | None:
        """Every covered object recognised; None when no region covers an object."""
        matched = self.matched
        return all(r.correct for r in matched) if matched else None


def match_regions(boxes: Sequence[Sequence[int]], predicted: Sequence[str],
                  objects: Sequence[TruthObject], min_iou: float = MATCH_IOU) -> FrameMatch:
    """Match each region (``boxes[i]`` answered ``predicted[i]``) to the truth object it
    overlaps best with IoU >= ``min_iou`` (``core.regions.best_match``: ties go to the first
    object, i.e. the farther one); objects matched by no region are ``missed``."""
    if len(boxes) != len(predicted):
        raise ValueError(f"{len(boxes)} boxes but {len(predicted)} predictions")
    truth_boxes = [Box(*o.box) for o in objects]
    verdicts, covered = [], set()
    for i, (box, name) in enumerate(zip(boxes, predicted, strict=True)):
        j = best_match(Box(*box), truth_boxes, min_iou)
        if j is None:
            verdicts.append(RegionVerdict(i, str(name), None, None))
        else:
            covered.add(j)
            verdicts.append(RegionVerdict(i, str(name), int(objects[j].object_id),
                                          str(objects[j].label)))
    missed = tuple(int(o.object_id) for j, o in enumerate(objects) if j not in covered)
    return FrameMatch(tuple(verdicts), missed)


def region_key(frame_index: int, object_id: int) -> int:
    """The caregiver's key for one object in one frame: whether it looks at it depends on the
    frame and the object only (never on the detector's order or perception's answer), so every
    policy run on one seed is offered the same labels. Room-world object ids are a few million
    (< 2**32), so distinct pairs give distinct keys."""
    return ((int(frame_index) << 32) ^ int(object_id)) & _MASK


class Tally:
    """Items scored and how many the model got right."""

    def __init__(self) -> None:
        self.n = 0
        self.correct = 0

    def add(self, correct: bool) -> None:
        self.n += 1
        self.correct += int(correct)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else math.nan


class Scoreboard:
    """Accuracy overall, per scenario, per model version and per scenario segment (a run of
    consecutive items of one scenario, so a scenario shown twice gets two segments). Not
    thread-safe: the caller locks."""

    def __init__(self) -> None:
        self.overall = Tally()
        self.per_scenario: dict[str, Tally] = {}
        self.per_version: dict[int, Tally] = {}
        self.segments: list[tuple[str, Tally]] = []

    def add(self, scenario: str, version: int, correct: bool) -> None:
        self.overall.add(correct)
        self.per_scenario.setdefault(scenario, Tally()).add(correct)
        self.per_version.setdefault(int(version), Tally()).add(correct)
        if not self.segments or self.segments[-1][0] != scenario:
            self.segments.append((scenario, Tally()))
        self.segments[-1][1].add(correct)

    def last_segment(self) -> tuple[str, Tally]:
        return self.segments[-1] if self.segments else ("-", Tally())

    def summary(self, unit: str = "frames") -> dict[str, Any]:
        """A plain dict; counts are named ``unit`` ("frames" or "regions")."""
        def row(t: Tally) -> dict[str, Any]:
            return {unit: t.n, "accuracy": t.accuracy}

        return {"per_scenario": {k: row(t) for k, t in self.per_scenario.items()},
                "per_version": {k: row(t) for k, t in self.per_version.items()},
                "overall": self.overall.accuracy, unit: self.overall.n,
                "segments": [(name, t.n, t.accuracy) for name, t in self.segments]}
