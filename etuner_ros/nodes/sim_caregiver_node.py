"""sim_caregiver: a simulated caregiver who labels some frames, and the scorer of the live model.

Subscribes ``sim/ground_truth`` (from sim_camera) and ``detections`` (from perception) and pairs
them by header stamp; either may arrive first, and entries left unpaired are dropped after
``PAIR_TIMEOUT_S`` (or when a cache is full) and counted, so memory stays bounded whatever is lost.
For each pair it asks :class:`~etuner_ros.sim.caregiver.Caregiver` whether to speak, and publishes
``corrections`` (header = the frame's header) exactly as a caregiver UI would. Every pair also
scores the deployed model against the truth (per scenario segment and per model version): the
demo's accuracy report, measured on the real topics. Waiting times are on the node's clock (ROS
time), so with ``use_sim_time`` a partner is awaited ``PAIR_TIMEOUT_S`` of the stream's time.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any

from rclpy.node import Node

from etuner_ros.msg import DetectionArray, LabelCorrection, SimGroundTruth
from etuner_ros.ros.diagnostics import OK, WARN, Diagnostics
from etuner_ros.ros.params import ParameterError, declare
from etuner_ros.ros.qos import corrections_qos
from etuner_ros.ros.run import run_node
from etuner_ros.sim.caregiver import Caregiver

# Diagnostics packs the level with bytes([level]): hand it ints, not the msg's bytes constants.
_OK = OK[0] if isinstance(OK, bytes) else int(OK)
_WARN = WARN[0] if isinstance(WARN, bytes) else int(WARN)

PAIR_TIMEOUT_S = 5.0  # a detection later than this is not coming (perception dropped the frame)
MAX_PENDING = 500     # per cache; at 30 fps that is > 15 s of one side without the other


class _Tally:
    """Frames scored and how many the model got right."""

    def __init__(self) -> None:
        self.frames = 0
        self.correct = 0

    def add(self, correct: bool) -> None:
        self.frames += 1
        self.correct += int(correct)

    @property
    def accuracy(self) -> float:
        return self.correct / self.frames if self.frames else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "accuracy": self.accuracy}


class SimCaregiverNode(Node):
    """See the module docstring; ``accuracy_summary()`` is safe to call from any thread."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("sim_caregiver", **kwargs)
        try:
            seed = int(declare(self, "seed", 0, "seed of the caregiver's choices", minimum=0,
                               read_only=True))
            fraction = float(declare(self, "fraction", 0.25, "share of frames the caregiver "
                                     "looks at (0..1)", minimum=0.0, maximum=1.0, read_only=True))
            confirm = float(declare(self, "confirm_fraction", 0.5, "share of correct "
                                    "predictions confirmed when looked at (0..1)", minimum=0.0,
                                    maximum=1.0, read_only=True))
            self.source = str(declare(self, "source", "sim_caregiver",
                                      "LabelCorrection.source of what this caregiver says"))
        except ParameterError:  # declare() also turns rclpy's range/type refusals into it
            self.destroy_node()
            raise
        self.caregiver = Caregiver(fraction, seed, confirm)

        self._lock = threading.Lock()  # accuracy_summary() is read from other threads
        self._truths: OrderedDict[tuple[int, int], tuple[float, SimGroundTruth]] = OrderedDict()
        self._dets: OrderedDict[tuple[int, int], tuple[float, DetectionArray]] = OrderedDict()
        self.paired = self.corrections = self.confirmations = 0
        self.dropped_truths = self.dropped_detections = 0
        self._overall = _Tally()
        self._per_scenario: dict[str, _Tally] = {}
        self._per_version: dict[int, _Tally] = {}
        self._segments: list[tuple[str, _Tally]] = []

        self.pub = self.create_publisher(LabelCorrection, "corrections", corrections_qos())
        self.create_subscription(SimGroundTruth, "sim/ground_truth", self._on_truth,
                                 corrections_qos())
        self.create_subscription(DetectionArray, "detections", self._on_detections,
                                 corrections_qos())
        self.create_timer(0.5, self._expire)
        self._diag = Diagnostics(self, "sim caregiver", self._check)
        self.get_logger().info(f"looking at {fraction:.0%} of frames, confirming "
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
        predicted = (max(dets.detections, key=lambda d: d.score).class_name
                     if dets.detections else None)
        correct = predicted == truth.class_name
        self._score(truth.scenario, int(dets.model_version), correct)
        feedback = self.caregiver.feedback(truth.class_name, predicted, key=truth.frame_index)
        if feedback is None:
            return
        self.pub.publish(LabelCorrection(header=truth.header, true_class=feedback.true_label,
                                         has_box=False, source=self.source, confirms=correct))
        if correct:
            self.confirmations += 1
        else:
            self.corrections += 1

    def _score(self, scenario: str, version: int, correct: bool) -> None:
        with self._lock:
            self.paired += 1
            self._overall.add(correct)
            self._per_scenario.setdefault(scenario, _Tally()).add(correct)
            self._per_version.setdefault(version, _Tally()).add(correct)
            if not self._segments or self._segments[-1][0] != scenario:
                self._segments.append((scenario, _Tally()))
            self._segments[-1][1].add(correct)

    def accuracy_summary(self) -> dict[str, Any]:
        """Ground-truth accuracy of the served model: per scenario, per version, per segment."""
        with self._lock:
            return {
                "per_scenario": {k: t.as_dict() for k, t in self._per_scenario.items()},
                "per_version": {k: t.as_dict() for k, t in self._per_version.items()},
                "overall": self._overall.accuracy,
                "frames": self._overall.frames,
                "segments": [(name, t.frames, t.accuracy) for name, t in self._segments],
            }

    def _check(self) -> tuple[int, str, dict[str, Any]]:
        with self._lock:
            seg = self._segments[-1] if self._segments else ("-", _Tally())
            overall = self._overall.accuracy
        values = {"overall_accuracy": overall, "segment": seg[0],
                  "segment_frames": seg[1].frames, "segment_accuracy": seg[1].accuracy,
                  "paired": self.paired, "corrections": self.corrections,
                  "confirmations": self.confirmations,
                  "pending_truths": len(self._truths), "pending_detections": len(self._dets),
                  "dropped_truths": self.dropped_truths,
                  "dropped_detections": self.dropped_detections}
        if not self.paired:
            return _OK, "waiting for frames with detections", values
        dropped = self.dropped_truths + self.dropped_detections
        level = _WARN if dropped > 0.2 * (self.paired + dropped) else _OK
        return level, f"accuracy {overall:.1%} overall, {seg[1].accuracy:.1%} in {seg[0]}", values


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
