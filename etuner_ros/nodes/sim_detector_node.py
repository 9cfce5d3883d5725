"""sim_detector: plays the robot's upstream object detector (a YOLO-like one) in simulation.

Perception recognises each box an upstream detector publishes (``region_source: topic``). On a
robot that is yolo_ros or another ROS detector; in simulation this node stands in for it. It
subscribes ``sim/ground_truth`` (from sim_camera with ``world: rooms``) and, for every truth,
publishes ``regions`` (etuner_ros/DetectionArray) with the truth's header, which is the image's
header, so perception pairs boxes and frame by stamp exactly as it would a real detector's.

The boxes are ``sim/detector.py``'s ``SimDetector`` on that frame: jittered, some objects
missed (more often small or covered ones), some false boxes on background, each with a generic
(COCO) class name, a score and an upstream id. The message carries every object in view, the
hidden ones (mostly covered) included, so the boxes are exactly ``SimDetector(seed, ...)
.detect(frame)`` on the rendered frame: a pure function of (seed, frame index). A frame with
nothing detected gets an empty array, as a detector publishes one per frame, so perception
never waits for boxes that are not coming. A one-object truth (``world: objects``) lists no
objects: it gets an empty array too, or only false boxes.

/diagnostics counts frames, boxes published, false boxes and misses (objects in view that got
no box). Every decision depends on the truth only, never on the time it arrives.
"""

from __future__ import annotations

from typing import Any

from rclpy.node import Node

from etuner_ros.msg import Detection, DetectionArray, SimGroundTruth
from etuner_ros.ros.diagnostics import OK, Diagnostics
from etuner_ros.ros.params import ParameterError, declare
from etuner_ros.ros.qos import reliable_qos
from etuner_ros.ros.run import run_node
from etuner_ros.ros.sim_truth import roi, room_frame
from etuner_ros.sim.detector import JITTER, SimDetector

# Diagnostics packs the level with bytes([level]): hand it ints, not the msg's bytes constants.
_OK = OK[0] if isinstance(OK, bytes) else int(OK)


class SimDetectorNode(Node):
    """Publishes SimDetector's boxes for each ground truth; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("sim_detector", **kwargs)
        try:
            self.detector = self._declare_detector()
        except ParameterError:  # declare() also turns rclpy's range/type refusals into it
            self.destroy_node()
            raise
        except ValueError as exc:  # SimDetector refused the combination
            self.destroy_node()
            raise ParameterError(f"sim_detector: {exc}") from None
        self.frames = self.boxes = self.false_boxes = self.misses = self.objects = 0
        self.pub = self.create_publisher(DetectionArray, "regions", reliable_qos(50))
        self.create_subscription(SimGroundTruth, "sim/ground_truth", self._on_truth,
                                 reliable_qos(50))
        self._diag = Diagnostics(self, "sim detector", self._check)
        d = self.detector
        self.get_logger().info(
            f"detecting with seed {d.seed}: miss rate {d.miss_rate:g} (+{d.occluded_miss:g} "
            f"when covered, +{d.small_miss:g} when small), {d.false_rate:g} false boxes per "
            f"frame, jitter {d.jitter:g}, confusion {d.confusion:g}")

    def _declare_detector(self) -> SimDetector:
        def rate(name: str, default: float, description: str) -> float:
            return float(declare(self, name, default, description, minimum=0.0, maximum=1.0,
                                 read_only=True))

        seed = int(declare(self, "seed", 0, "seed of the detector's choices (same seed and "
                           "frame, same boxes)", minimum=0, read_only=True))
        return SimDetector(
            seed,
            miss_rate=rate("miss_rate", 0.05, "chance to miss any object (0..1)"),
            occluded_miss=rate("occluded_miss", 0.3, "extra miss chance of a fully covered "
                               "object, times its covered share (0..1)"),
            small_miss=rate("small_miss", 0.3, "extra miss chance of an object much smaller "
                            "than small_side (0..1)"),
            small_side=float(declare(self, "small_side", 0.12, "objects smaller than this "
                                     "share of the image height are missed more often",
                                     minimum=1e-3, maximum=1.0, read_only=True)),
            false_rate=float(declare(self, "false_rate", 0.2, "mean number of false boxes "
                                     "on background per frame (Poisson)", minimum=0.0,
                                     maximum=20.0, read_only=True)),
            jitter=float(declare(self, "jitter", JITTER, "each box edge moves by up to this "
                                 "share of the box's size (0..0.5)", minimum=0.0,
                                 maximum=0.49, read_only=True)),
            confusion=rate("confusion", 0.03, "chance that a detected object gets another "
                           "generic class name (0..1)"))

    def _on_truth(self, truth: SimGroundTruth) -> None:
        found = self.detector.detect(room_frame(truth))
        out = DetectionArray(header=truth.header)
        out.detections = [Detection(class_name=d.name, score=float(d.score), bbox=roi(d.box),
                                    upstream_id=d.upstream_id) for d in found]
        self.pub.publish(out)
        hits = {d.truth_id for d in found if d.truth_id is not None}
        self.frames += 1
        self.boxes += len(found)
        self.false_boxes += sum(d.truth_id is None for d in found)
        self.objects += len(truth.objects)
        self.misses += sum(int(o.object_id) not in hits for o in truth.objects)

    def _check(self) -> tuple[int, str, dict[str, Any]]:
        values = {"frames": self.frames, "boxes": self.boxes, "false_boxes": self.false_boxes,
                  "objects": self.objects, "misses": self.misses}
        if not self.frames:
            return _OK, "waiting for sim/ground_truth", values
        return _OK, (f"{self.boxes} boxes on {self.frames} frames ({self.misses} of "
                     f"{self.objects} objects missed, {self.false_boxes} false)"), values


def main(args: list[str] | None = None) -> int:
    """Run the detector alone (``ros2 run etuner_ros sim_detector``)."""
    return run_node(SimDetectorNode, "sim_detector", args, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
