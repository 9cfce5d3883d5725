"""sim_camera: a camera driver for the synthetic household world, plus the truth behind each frame.

Publishes ``image`` (sensor_msgs/Image rgb8, camera QoS) and ``sim/ground_truth``
(etuner_ros/SimGroundTruth, reliable) with the very same header, so the simulated caregiver and the
demo can pair truth, frame and detection by stamp exactly as a real caregiver UI would. Frames are
sent from a fixed-period timer, so the rate is steady whatever the subscribers do; a thread renders
ahead, because the world renders a whole scenario at once (~0.2 s for 120 frames), which would
stall the timer at every scenario change. At the end of the stream it either starts again
(``loop``) or stops and latches ``~/finished`` = true.

``world`` picks what is shown: ``objects`` (default), one household object per frame
(``sim/world.py``); ``rooms``, rooms with several objects at once (``sim/rooms.py``), whose truth
lists every object in view with its id and box (``msg/SimGroundTruth.msg``), for sim_detector to
play an upstream detector and sim_caregiver to score and label each region. The room world's
objects come and go on its own clock of ``rooms.FPS`` (8) frames per second, whatever ``fps``
is, so a seed gives the same frames as the benchmark's and pretraining's room world.

Stamps, the frame timer and the measured rate follow the node's clock (ROS time): with
``use_sim_time`` the camera runs on ``/clock`` (a bag player's or a simulator's), faster or slower
than the wall clock, and stops while the clock stands still.
"""

from __future__ import annotations

import math
import queue
import threading
from collections import deque
from typing import Any

from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Header

from etuner_ros.msg import SimGroundTruth
from etuner_ros.ros.diagnostics import OK, Diagnostics
from etuner_ros.ros.image import rgb_to_image
from etuner_ros.ros.params import ParameterError, declare
from etuner_ros.ros.qos import RELIABILITY_CHOICES, image_qos, latched_qos, reliable_qos
from etuner_ros.ros.run import run_node
from etuner_ros.ros.sim_truth import truth_message
from etuner_ros.sim.rooms import RoomWorld
from etuner_ros.sim.world import SyntheticWorld

# Diagnostics packs the level with bytes([level]): hand it ints, not the msg's bytes constants.
_OK = OK[0] if isinstance(OK, bytes) else int(OK)


_END = object()  # queued after the last frame when not looping
WORLDS: tuple[str, ...] = ("objects", "rooms")  # the `world` parameter's choices


class SimCameraNode(Node):
    """Streams SyntheticWorld or RoomWorld frames at ``fps``; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        self._stop = threading.Event()  # before Node.__init__: destroy_node() may run early
        self._producer: threading.Thread | None = None
        super().__init__("sim_camera", **kwargs)
        try:
            self._declare_parameters()
        except ParameterError:  # declare() also turns rclpy's range/type refusals into it
            self.destroy_node()
            raise

        size = (self.width, self.height)
        self.world = SyntheticWorld(self.seed, image_size=size) if self.world_kind == "objects" \
            else RoomWorld(self.seed, image_size=size)
        self._scenario_names = [_name(s) for s in getattr(self.world, "scenarios", [])]
        # About half a second of frames: covers a scenario's render, bounds memory.
        self._frames: queue.Queue = queue.Queue(maxsize=min(64, math.ceil(self.fps / 2) + 1))
        self.frames_sent = 0
        self.late_ticks = 0  # periods with no frame ready (renderer behind)
        self.passes = 1  # how many times the stream was started (grows with loop)
        self.scenario = ""
        self.finished = False
        self._sent_at: deque[float] = deque(maxlen=50)

        self.image_pub = self.create_publisher(
            Image, "image", image_qos(self.image_reliability))
        self.truth_pub = self.create_publisher(SimGroundTruth, "sim/ground_truth",
                                               reliable_qos(50))
        self.finished_pub = self.create_publisher(Bool, "~/finished", latched_qos())
        self._timer = self.create_timer(1.0 / self.fps, self._tick)
        self._diag = Diagnostics(self, "sim camera", self._check)
        self._producer = threading.Thread(target=self._produce, name="sim_camera_render",
                                          daemon=True)
        self._producer.start()
        self.get_logger().info(
            f"streaming {self.width}x{self.height} at {self.fps:g} fps, "
            f"{self.frames_per_scenario} frames per scenario, "
            f"{len(self._scenario_names) or '?'} scenarios of the {self.world_kind} world, "
            f"seed {self.seed}, loop {self.loop}")

    def _declare_parameters(self) -> None:
        self.seed = int(declare(self, "seed", 0, "seed of the synthetic world (same seed, same "
                                "frames)", minimum=0, read_only=True))
        self.fps = float(declare(self, "fps", 8.0, "frames per second published (> 0)",
                                 minimum=1e-3, maximum=1000.0, read_only=True))
        self.frames_per_scenario = int(declare(
            self, "frames_per_scenario", 120, "frames shown of each scenario before the next",
            minimum=1, read_only=True))
        self.width = int(declare(self, "width", 128, "image width in pixels", minimum=16,
                                 maximum=4096, read_only=True))
        self.height = int(declare(self, "height", 96, "image height in pixels", minimum=16,
                                  maximum=4096, read_only=True))
        self.frame_id = str(declare(self, "frame_id", "camera_optical_frame",
                                    "header.frame_id of the images", read_only=True))
        self.loop = bool(declare(self, "loop", False, "start the stream again at its end "
                                 "instead of stopping"))
        self.world_kind = str(declare(
            self, "world", "objects", "objects: one object per frame; rooms: several objects "
            "per frame, every one in the truth (for sim_detector)", choices=WORLDS,
            read_only=True))
        self.image_reliability = str(declare(
            self, "image_reliability", "best_effort", "QoS reliability of the image publisher",
            choices=RELIABILITY_CHOICES, read_only=True))

    def _produce(self) -> None:
        """Render frames into the bounded queue; at the end, loop or queue the end marker."""
        while True:
            for frame in self.world.stream(self.frames_per_scenario):
                if not self._put(frame):
                    return
            if not self.get_parameter("loop").value:
                self._put(_END)
                return
            self.passes += 1
            self.get_logger().info(f"stream ended; looping (pass {self.passes})")

    def _put(self, item: Any) -> bool:
        """Block until there is room (False when the node is being destroyed)."""
        while not self._stop.is_set():
            try:
                self._frames.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def _tick(self) -> None:
        if self.finished:
            return
        try:
            frame = self._frames.get_nowait()
        except queue.Empty:  # skip the period rather than block the executor
            self.late_ticks += int(self.frames_sent > 0)
            return
        if frame is _END:
            self._finish()
            return
        scenario = _name(frame.scenario)
        if scenario != self.scenario:
            self.scenario = scenario
            self.get_logger().info(f"scenario {self._scenario_position(scenario)}: {scenario}")
        now = self.get_clock().now()
        header = Header(stamp=now.to_msg(), frame_id=self.frame_id)
        # Truth first: the caregiver must not see the detection of a frame before its truth.
        self.truth_pub.publish(truth_message(frame, header, scenario))
        self.image_pub.publish(rgb_to_image(frame.image, header))
        self.frames_sent += 1
        self._sent_at.append(now.nanoseconds * 1e-9)

    def _finish(self) -> None:
        self.finished = True
        self._timer.cancel()
        self.finished_pub.publish(Bool(data=True))
        self.get_logger().info(f"stream finished after {self.frames_sent} frames")

    def _scenario_position(self, scenario: str) -> str:
        names = self._scenario_names
        return f"{names.index(scenario) + 1}/{len(names)}" if scenario in names else "?/?"

    def measured_fps(self) -> float:
        """Rate over the last frames sent, in frames per second of ROS time (0 before two)."""
        if len(self._sent_at) < 2 or self.finished:
            return 0.0
        span = self._sent_at[-1] - self._sent_at[0]
        return (len(self._sent_at) - 1) / span if span > 0 else 0.0

    def _check(self) -> tuple[int, str, dict[str, Any]]:
        state = "finished" if self.finished else f"streaming {self.scenario or '-'}"
        return _OK, state, {"frames_sent": self.frames_sent, "scenario": self.scenario,
                           "fps_configured": self.fps, "fps_measured": self.measured_fps(),
                           "pass": self.passes, "late_ticks": self.late_ticks}

    def destroy_node(self) -> None:
        """Stop the render thread too, so nothing renders for a node that is gone."""
        self._stop.set()
        if self._producer is not None:
            self._producer.join(timeout=2.0)
        super().destroy_node()


def _name(scenario: Any) -> str:
    """Scenario name whether the world hands out names or scenario objects."""
    return str(getattr(scenario, "name", scenario))


def main(args: list[str] | None = None) -> int:
    """Run the camera alone (``ros2 run etuner_ros sim_camera``)."""
    return run_node(SimCameraNode, "sim_camera", args, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
