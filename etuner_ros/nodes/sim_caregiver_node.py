"""sim_caregiver: a simulated caregiver who labels some frames, and the scorer of the live model.

Subscribes ``sim/ground_truth`` (from sim_camera) and ``detections`` (from perception) and pairs
them by header stamp; either may arrive first, and entries left unpaired are dropped after
``PAIR_TIMEOUT_S`` (or when a cache is full) and counted, so memory stays bounded whatever is lost.
For each pair it asks :class:`~etuner_ros.sim.caregiver.Caregiver` whether to speak, and publishes
``corrections`` (header = the frame's header) exactly as a caregiver UI would. Every pair also
scores the deployed model against the truth (per scenario segment and per model version): the
demo's accuracy report, measured on the real topics. Waiting times are on the node's clock (ROS
time), so with ``use_sim_time`` a partner is awaited ``PAIR_TIMEOUT_S`` of the stream's time.

Rooms world (the truth lists objects, ``ros/sim_truth.has_regions``): perception answered once
per region (a sim_detector box), so each region is matched to the truth object it covers
(``sim/scoring.py``: best IoU >= 0.5) and scored on its own: per-object accuracy per scenario,
segment and version (``accuracy_summary()["regions"]``). The frame tallies then count a frame
right when every region that covers an object is right (frames where none does are not scored).
Regions covering no object (false boxes) are counted and never labelled; objects no region
covers (missed by the detector) are counted and cannot be scored: the recogniser never saw
them. For each matched region the caregiver decides on its own key (frame index, object id),
and a correction names the region by ``detection_index`` plus its box (``has_box``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from rclpy.node import Node

from etuner_ros.msg import DetectionArray, LabelCorrection, SimGroundTruth
from etuner_ros.ros.diagnostics import OK, WARN, Diagnostics
from etuner_ros.ros.params import ParameterError, declare
from etuner_ros.ros.qos import corrections_qos
from etuner_ros.ros.run import run_node
from etuner_ros.ros.sim_truth import box_of, has_regions, truth_objects
from etuner_ros.sim.caregiver import Caregiver
from etuner_ros.sim.scoring import Scoreboard, match_regions, region_key

# Diagnostics packs the level with bytes([level]): hand it ints, not the msg's bytes constants.
_OK = OK[0] if isinstance(OK, bytes) else int(OK)
_WARN = WARN[0] if isinstance(WARN, bytes) else int(WARN)

PAIR_TIMEOUT_S = 5.0  # a detection later than this is not coming (perception dropped the frame)
MAX_PENDING = 500     # per cache; at 30 fps that is > 15 s of one side without the other


class SimCaregiverNode(Node):
    """See the module docstring; ``accuracy_summary()`` is safe to call from any thread."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("sim_caregiver", **kwargs)
        try:
            seed = int(declare(self, "seed", 0, "seed of the caregiver's choices", minimum=0,
                               read_only=True))
            fraction = float(declare(self, "fraction", 0.25, "share of frames (rooms world: "
                                     "of detected objects) the caregiver looks at (0..1)",
                                     minimum=0.0, maximum=1.0, read_only=True))
            confirm = float(declare(self, "confirm_fraction", 0.5, "share of correct "
                                    "predictions confirmed when looked at (0..1)", minimum=0.0,
                                    maximum=1.0, read_only=True))
            self.source = str(declare(self, "source", "sim_caregiver",
                                      "LabelCorrection.source of what this caregiver says",
                                      on_set=lambda v: setattr(self, "source", str(v))))
        except ParameterError:  # declare() also turns rclpy's range/type refusals into it
            self.destroy_node()
            raise
        self.caregiver = Caregiver(fraction, seed, confirm)

        self._lock = threading.Lock()  # accuracy_summary() is read from other threads
        self._truths: OrderedDict[tuple[int, int], tuple[float, SimGroundTruth]] = OrderedDict()
        self._dets: OrderedDict[tuple[int, int], tuple[float, DetectionArray]] = OrderedDict()
        self.paired = self.corrections = self.confirmations = 0
        self.dropped_truths = self.dropped_detections = 0
        self._frames = Scoreboard()  # one item per frame
        self._regions = Scoreboard()  # rooms world: one item per region covering an object
        self.false_boxes = self.missed_objects = self.region_corrections = 0

        self.pub = self.create_publisher(LabelCorrection, "corrections", corrections_qos())
        self.create_subscription(SimGroundTruth, "sim/ground_truth", self._on_truth,
                                 corrections_qos())
        self.create_subscription(DetectionArray, "detections", self._on_detections,
                                 corrections_qos())
        self.create_timer(0.5, self._expire)
        self._diag = Diagnostics(self, "sim caregiver", self._check)
        self.get_logger().info(f"looking at {fraction:.0%} of frames (or objects), confirming "
                               f"{confirm:.0%} of right answers, seed {seed}")

    def _on_truth(self, msg: SimGroundTruth) -> None:
        key = _key(msg.header)
        if key in self._dets:
            self._pair(msg, self._dets.pop(key)[1])
        elif self._remember(self._truths, key, msg, self._now()):
            self.dropped_truths += 1

    def _on_detections(self, msg: DetectionArray) -> None:
        key = _key(msg.header)
        if key in self._truths:
            self._pair(self._truths.pop(key)[1], msg)
        elif self._remember(self._dets, key, msg, self._now()):
            self.dropped_detections += 1

    def _now(self) -> float:
        """ROS time in seconds (the stream's clock under ``use_sim_time``)."""
        return self.get_clock().now().nanoseconds * 1e-9

    @staticmethod
    def _remember(cache: OrderedDict, key: tuple[int, int], msg: Any, now: float) -> bool:
        """Keep ``msg`` until its partner comes; True when the oldest entry had to make room."""
        cache[key] = (now, msg)
        cache.move_to_end(key)
        if len(cache) > MAX_PENDING:
            cache.popitem(last=False)
            return True
        return False

    def _expire(self) -> None:
        """Drop entries whose partner did not come in time (lost frame or detection)."""
        limit = self._now() - PAIR_TIMEOUT_S
        self.dropped_truths += _drop_older(self._truths, limit)
        self.dropped_detections += _drop_older(self._dets, limit)

    def _pair(self, truth: SimGroundTruth, dets: DetectionArray) -> None:
        if has_regions(truth):
            self._pair_regions(truth, dets)
            return
        predicted = (max(dets.detections, key=lambda d: d.score).class_name
                     if dets.detections else None)
        correct = predicted == truth.class_name
        with self._lock:
            self.paired += 1
            self._frames.add(truth.scenario, int(dets.model_version), correct)
        feedback = self.caregiver.feedback(truth.class_name, predicted, key=truth.frame_index)
        if feedback is not None:
            self._publish(LabelCorrection(header=truth.header, true_class=feedback.true_label,
                                          has_box=False), correct)

    def _pair_regions(self, truth: SimGroundTruth, dets: DetectionArray) -> None:
        """Score each region against the object it covers; label some of the matched ones."""
        regions = list(dets.detections)
        match = match_regions([box_of(d.bbox) for d in regions],
                              [d.class_name for d in regions], truth_objects(truth))
        version = int(dets.model_version)
        with self._lock:
            self.paired += 1
            self.false_boxes += match.false_boxes
            self.missed_objects += len(match.missed)
            for r in match.matched:
                self._regions.add(truth.scenario, version, r.correct)
            if match.all_right is not None:
                self._frames.add(truth.scenario, version, match.all_right)
        for r in match.matched:
            feedback = self.caregiver.feedback(
                r.true_label, r.predicted, key=region_key(truth.frame_index, r.object_id))
            if feedback is None:
                continue
            self._publish(LabelCorrection(
                header=truth.header, true_class=feedback.true_label, detection_index=r.index,
                has_box=True, box=regions[r.index].bbox), r.correct)
            self.region_corrections += 1

    def _publish(self, msg: LabelCorrection, confirms: bool) -> None:
        msg.source, msg.confirms = self.source, confirms
        self.pub.publish(msg)
        if confirms:
            self.confirmations += 1
        else:
            self.corrections += 1

    def accuracy_summary(self) -> dict[str, Any]:
        """Ground-truth accuracy of the served model: per scenario, per version, per segment,
        counted in frames; in the rooms world also ``regions`` (the same, counted in regions
        that cover an object, plus false boxes and missed objects)."""
        with self._lock:
            out = self._frames.summary("frames")
            if self._regions.overall.n or self.false_boxes or self.missed_objects:
                out["regions"] = {**self._regions.summary("regions"),
                                  "false_boxes": self.false_boxes,
                                  "missed_objects": self.missed_objects,
                                  "region_corrections": self.region_corrections}
            return out

    def _check(self) -> tuple[int, str, dict[str, Any]]:
        with self._lock:
            board = self._regions if self._regions.overall.n else self._frames
            name, seg = board.last_segment()
            overall = board.overall.accuracy
            unit = "regions" if board is self._regions else "frames"
        values = {"overall_accuracy": overall, "segment": name, "unit": unit,
                  "segment_" + unit: seg.n, "segment_accuracy": seg.accuracy,
                  "paired": self.paired, "corrections": self.corrections,
                  "confirmations": self.confirmations,
                  "region_corrections": self.region_corrections,
                  "false_boxes": self.false_boxes, "missed_objects": self.missed_objects,
                  "pending_truths": len(self._truths), "pending_detections": len(self._dets),
                  "dropped_truths": self.dropped_truths,
                  "dropped_detections": self.dropped_detections}
        if not self.paired:
            return _OK, "waiting for frames with detections", values
        dropped = self.dropped_truths + self.dropped_detections
        level = _WARN if dropped > 0.2 * (self.paired + dropped) else _OK
        return level, (f"accuracy {overall:.1%} of {unit} overall, {seg.accuracy:.1%} in "
                       f"{name}"), values


def _drop_older(cache: OrderedDict, limit: float) -> int:
    """Pop entries that arrived before ``limit`` (the cache is in arrival order); count them."""
    n = 0
    while cache and next(iter(cache.values()))[0] < limit:
        cache.popitem(last=False)
        n += 1
    return n


def _key(header: Any) -> tuple[int, int]:
    return int(header.stamp.sec), int(header.stamp.nanosec)


def main(args: list[str] | None = None) -> int:
    """Run the caregiver alone (``ros2 run etuner_ros sim_caregiver``)."""
    return run_node(SimCaregiverNode, "sim_caregiver", args, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
