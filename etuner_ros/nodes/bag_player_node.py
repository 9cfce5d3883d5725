"""bag_player (``ros2 run etuner_ros replay BAG``): play a robot's recording through the real nodes.

Design. The player is a process of its own, like ``ros2 bag play``: it plays a bag's camera
frames on ``image`` and its caregivers' corrections on ``corrections`` (both relative, so
``--ros-args -r __ns:=/robot`` or ``-r image:=...`` place them) and publishes the bag's clock on
``/clock``; the nodes under test (``bringup`` or the launch file) run unchanged, in their own
process, with ``use_sim_time:=true``. Nothing of the player lives in the nodes, so what a replay
exercises is exactly what runs on the robot. It reads the bag with ``rosbags`` (sqlite3 or mcap,
no ROS bag install needed; ``etuner_ros/core/bag.py`` picks the topics and decodes).

Timing. ``/clock`` carries the recorder's receive time of each message (the bag's clock), as
``ros2 bag play --clock`` does: it advances every ``1/clock_hz`` wall seconds at ``rate`` times
real time, never past the next unplayed message, and each message goes out at its recorded
time. Headers are the recorded ones, so perception's detections carry the source frames'
stamps and the collector pairs the recorded corrections with them by stamp. When the player
falls behind (slow disk, decoding), it publishes at once and counts the message as late.
After the last message the clock runs on for ``tail_s`` of bag time, so timers that wait on
stream time (pairing timeouts, a tuner's max wait) can fire; then ``~/finished`` latches true
and the ``replay`` command exits. With ``loop`` every pass is shifted by the bag's span plus one
frame period, clock and header stamps alike, so time never runs backwards and no stamp repeats.

Frames are re-published as recorded (``sensor_msgs/Image``, any encoding: perception reports
the ones it cannot read); ``sensor_msgs/CompressedImage`` frames are decoded here into ``rgb8``
Images, because perception subscribes to raw images.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

import rclpy
from builtin_interfaces.msg import Time
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Header

from etuner_ros.core.bag import BagError, BagRecord, BagSource
from etuner_ros.core.text import printable
from etuner_ros.msg import LabelCorrection
from etuner_ros.ros.diagnostics import ERROR, OK, WARN, Diagnostics
from etuner_ros.ros.image import rgb_to_image
from etuner_ros.ros.params import ParameterError, declare
from etuner_ros.ros.qos import (
    RELIABILITY_CHOICES,
    corrections_qos,
    image_qos,
    latched_qos,
)

_OK, _WARN, _ERROR = (x[0] if isinstance(x, bytes) else int(x) for x in (OK, WARN, ERROR))
LATE_S = 0.1  # wall seconds after its due time from which a message counts as late


def clock_qos() -> QoSProfile:
    """/clock as the ROS clients subscribe it: reliable publisher, shallow, volatile."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def _time(ns: int) -> Time:
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class BagPlayerNode(Node):
    """See the module docstring. ``done`` is set when the last pass has been played."""

    def __init__(self, **kwargs: Any) -> None:
        self._stop = threading.Event()  # before Node.__init__: destroy_node() may run early
        self._thread: threading.Thread | None = None
        self.done = threading.Event()
        super().__init__("bag_player", **kwargs)
        try:
            self._declare_parameters()
            try:
                self.source = BagSource(self.bag, self.camera_topic, self.corrections_topic)
            except BagError as exc:
                raise ParameterError(f"bag_player: {exc}") from None
        except ParameterError:
            self.destroy_node()
            raise
        info = self.source.info
        self.frames_published = self.corrections_published = 0
        self.undecodable = self.late = self.unacked = 0
        self._bad_logged = False
        self.passes = 0
        self.bag_now_ns = info.start_ns
        self.state = "waiting"
        self.last_error = ""
        self._span_ns = max(0, info.end_ns - info.start_ns)
        self._gap_ns = (self._span_ns // (info.frames - 1) if info.frames > 1
                        else 1_000_000_000)

        self.image_pub = self.create_publisher(
            Image, "image", image_qos(self.image_reliability, self.image_queue_depth))
        self.corrections_pub = self.create_publisher(LabelCorrection, "corrections",
                                                     corrections_qos())
        self.clock_pub = self.create_publisher(Clock, "/clock", clock_qos())
        self.finished_pub = self.create_publisher(Bool, "~/finished", latched_qos())
        self._diag = Diagnostics(self, "bag player", self._check)
        log = self.get_logger()
        for line in info.lines():
            log.info(printable(line, 300))
        if not info.corrections_topic:
            log.info("the bag has no LabelCorrection topic: playing camera frames only")
        self._thread = threading.Thread(target=self._play, name="bag_player", daemon=True)
        self._thread.start()

    def _param(self, name: str, default: Any, description: str, **rules: Any) -> Any:
        return declare(self, name, default, description, read_only=True, **rules)

    def _declare_parameters(self) -> None:
        if self.get_parameter("use_sim_time").value:
            raise ParameterError("bag_player: use_sim_time must be false: the player is the "
                                 "source of /clock and runs on the wall clock")
        p = self._param
        self.bag = str(p("bag", "", "path of the bag (directory, or its .mcap/.db3 file)"))
        if not self.bag:
            raise ParameterError("bag_player: parameter 'bag' is empty: name the bag to play")
        self.camera_topic = str(p("camera_topic", "", "bag topic of the camera "
                                  "(sensor_msgs/Image or CompressedImage); empty: the bag's "
                                  "only image topic"))
        self.corrections_topic = str(p("corrections_topic", "", "bag topic of "
                                       "etuner_ros/LabelCorrection; empty: the bag's only one, "
                                       "if any"))
        self.play_corrections = bool(p("play_corrections", True, "publish the bag's "
                                       "corrections on 'corrections'"))
        self.rate = float(p("rate", 1.0, "playback speed, times real time", minimum=0.01,
                            maximum=100.0))
        self.loop = bool(p("loop", False, "play the bag again at its end (stamps shifted so "
                           "time runs on)"))
        self.clock_hz = float(p("clock_hz", 50.0, "/clock messages per wall second between "
                                "messages", minimum=1.0, maximum=1000.0))
        self.start_delay_s = float(p("start_delay_s", 0.0, "wall seconds to wait before "
                                     "playing", minimum=0.0, maximum=3600.0))
        self.wait_for_subscribers = int(p("wait_for_subscribers", 0, "wait until 'image' has "
                                          "this many subscribers before playing (0: at once)",
                                          minimum=0, maximum=100))
        self.tail_s = float(p("tail_s", 2.0, "bag seconds the clock runs on after the last "
                              "message", minimum=0.0, maximum=3600.0))
        self.image_reliability = str(p("image_reliability", "reliable", "QoS reliability of "
                                       "the image publisher (reliable also serves best-effort "
                                       "subscribers)", choices=RELIABILITY_CHOICES))
        self.image_queue_depth = int(p("image_queue_depth", 10, "image publisher queue depth",
                                       minimum=1, maximum=1000))
        self.ack_timeout_s = float(p("ack_timeout_s", 0.0, "after each frame, wait up to this "
                                     "long for every reliable subscriber to acknowledge it "
                                     "(lossless transport, slower pace; 0: do not wait)",
                                     minimum=0.0, maximum=60.0))

    # -- playing (own thread: it sleeps on the wall clock between messages) -----------------

    def _play(self) -> None:
        try:
            if not self._wait_to_start():
                return
            self.state = "playing"
            info = self.source.info
            wall0, offset = time.monotonic(), 0
            while True:
                self.passes += 1
                if not self._play_pass(offset, wall0):
                    return
                if not self.loop:
                    break
                offset += self._span_ns + self._gap_ns
                self.get_logger().info(f"bag played; looping (pass {self.passes + 1})")
            if not self._clock_until(info.end_ns + offset + int(self.tail_s * 1e9), wall0):
                return
            for pub in (self.image_pub, self.corrections_pub):  # deliver the last ones too
                pub.wait_for_all_acked(Duration(seconds=5.0))
            self.finished_pub.publish(Bool(data=True))
            self.state = "finished"
            self.get_logger().info(
                f"finished: {self.frames_published} frames, {self.corrections_published} "
                f"corrections in {self.passes} pass(es); {self.late} late, "
                f"{self.undecodable} undecodable, {self.source.bad_messages} unreadable, "
                f"{self.unacked} not acknowledged in time")
        except Exception as exc:  # a broken bag must end the replay with a reason, not silently
            self.state = "error"
            self.last_error = printable(f"{type(exc).__name__}: {exc}", 300)
            self.get_logger().error(f"playing stopped: {self.last_error}")
        finally:
            self.done.set()

    def _wait_to_start(self) -> bool:
        deadline = time.monotonic() + self.start_delay_s
        next_note = time.monotonic() + 5.0
        while not self._stop.is_set():
            subs = self.image_pub.get_subscription_count()
            if time.monotonic() >= deadline and subs >= self.wait_for_subscribers:
                return True
            if time.monotonic() >= next_note:
                self.get_logger().info(f"waiting for {self.wait_for_subscribers} subscribers "
                                       f"of {self.image_pub.topic_name} (have {subs})")
                next_note += 5.0
            self._stop.wait(0.05)
        return False

    def _bag_time(self, wall: float, wall0: float) -> int:
        """The bag time (unshifted, plus loop offsets) due at wall time ``wall``."""
        return self.source.info.start_ns + int((wall - wall0) * self.rate * 1e9)

    def _play_pass(self, offset: int, wall0: float) -> bool:
        """One pass through the bag, ``offset`` ns later than recorded; False when stopped."""
        for rec in self.source.records():
            if self.source.bad_messages and not self._bad_logged:
                self._bad_logged = True
                why = printable(self.source.last_bad, 300)
                self.get_logger().error(f"unreadable message skipped ({why}); counted as "
                                        "bad_messages on /diagnostics")
            t = rec.time_ns + offset
            if not self._clock_until(t, wall0):
                return False
            if self._bag_time(time.monotonic(), wall0) - t > LATE_S * self.rate * 1e9:
                self.late += 1
            self._publish(rec, offset)
        return True

    def _clock_until(self, t_ns: int, wall0: float) -> bool:
        """Publish /clock every 1/clock_hz wall seconds until bag time ``t_ns`` is due (the
        clock ends at ``t_ns``, never past it); False when stopped."""
        period = 1.0 / self.clock_hz
        while not self._stop.is_set():
            now_ns = self._bag_time(time.monotonic(), wall0)
            if now_ns >= t_ns:
                self._tick(t_ns)
                return True
            self._tick(now_ns)
            self._stop.wait(min(period, (t_ns - now_ns) / 1e9 / self.rate))
        return False

    def _tick(self, t_ns: int) -> None:
        self.bag_now_ns = max(self.bag_now_ns, t_ns)
        self.clock_pub.publish(Clock(clock=_time(self.bag_now_ns)))

    def _publish(self, rec: BagRecord, offset: int) -> None:
        header = Header(stamp=_time(rec.stamp_ns + offset), frame_id=rec.frame_id)
        if rec.correction is not None:
            if not self.play_corrections:
                return
            c = rec.correction
            msg = LabelCorrection(header=header, true_class=c.true_class, source=c.source,
                                  confirms=c.confirms, has_box=c.box is not None,
                                  detection_index=c.detection_index)
            if c.box is not None:
                (msg.box.x_offset, msg.box.y_offset, msg.box.width, msg.box.height) = c.box
            self.corrections_pub.publish(msg)
            self.corrections_published += 1
            return
        img = rec.image
        if img.compressed:
            try:
                out = rgb_to_image(img.rgb(), header)
            except BagError as exc:
                self._count_undecodable(exc)
                return
        else:
            out = Image(header=header, height=img.height, width=img.width,
                        encoding=img.encoding, is_bigendian=img.is_bigendian, step=img.step,
                        data=img.data)
        self.image_pub.publish(out)
        if self.ack_timeout_s > 0 and not self.image_pub.wait_for_all_acked(
                Duration(nanoseconds=int(self.ack_timeout_s * 1e9))):
            self.unacked += 1
        self.frames_published += 1

    def _count_undecodable(self, exc: Exception) -> None:
        self.undecodable += 1
        if self.undecodable == 1:
            self.get_logger().error(f"frame not played: {printable(str(exc), 200)} (counted "
                                    "as 'undecodable' on /diagnostics)")

    def _check(self) -> tuple[int, str, dict[str, Any]]:
        info = self.source.info
        values = {"bag": info.path, "camera_topic": info.camera_topic,
                  "corrections_topic": info.corrections_topic or "-", "pass": self.passes,
                  "frames_published": self.frames_published,
                  "corrections_published": self.corrections_published,
                  "undecodable": self.undecodable, "late": self.late,
                  "unacked": self.unacked, "bad_messages": self.source.bad_messages,
                  "last_bad_message": self.source.last_bad or "-",
                  "bag_time_s": self.bag_now_ns / 1e9, "rate": self.rate}
        if self.state == "error":
            return _ERROR, f"stopped: {self.last_error}", values
        level = _WARN if (self.undecodable or self.source.bad_messages
                          or self.late > 0.1 * max(1, self.frames_published)) else _OK
        return level, f"{self.state} at {self.rate:g}x", values

    def destroy_node(self) -> None:
        """Stop the player thread and close the bag."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if getattr(self, "source", None) is not None:
            self.source.close()
        super().destroy_node()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="replay", description=__doc__.splitlines()[0],
        epilog="The nodes under test run with use_sim_time:=true, e.g. "
               "`ros2 run etuner_ros bringup --ros-args -p use_sim_time:=true`. Options given "
               "here win over the player's parameters from --ros-args (-p, --params-file); "
               "remaps (-r image:=..., -r __ns:=...) go after --ros-args.")
    p.add_argument("bag", help="bag directory (or its .mcap / .db3 file)")
    p.add_argument("--camera-topic", help="bag topic of the camera images")
    p.add_argument("--corrections-topic", help="bag topic of LabelCorrections")
    p.add_argument("--no-corrections", action="store_const", const=True,
                   help="play camera frames only")
    p.add_argument("--rate", type=float, help="playback speed (x real time, default 1)")
    p.add_argument("--loop", action="store_const", const=True, help="play again at the end")
    p.add_argument("--delay", type=float, help="wall seconds before playing")
    p.add_argument("--wait-for-subscribers", type=int,
                   help="wait until 'image' has N subscribers before playing")
    p.add_argument("--hold", action="store_true",
                   help="keep running (and serving /diagnostics) after the end")
    return p


def overrides(opts: argparse.Namespace) -> list[Parameter]:
    """The options given on the command line, as parameters of the player node."""
    given = {"bag": opts.bag, "camera_topic": opts.camera_topic,
             "corrections_topic": opts.corrections_topic,
             "play_corrections": None if opts.no_corrections is None else False,
             "rate": opts.rate, "loop": opts.loop, "start_delay_s": opts.delay,
             "wait_for_subscribers": opts.wait_for_subscribers}
    return [Parameter(k, value=v) for k, v in given.items() if v is not None]


def main(argv: list[str] | None = None) -> int:
    """``replay BAG [options] [--ros-args ...]``: play, then exit 0 (2: bad bag or option)."""
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    opts = parser().parse_args(argv[:split])
    rclpy.init(args=["replay", *argv[split:]])
    try:
        node = BagPlayerNode(parameter_overrides=overrides(opts))
    except ParameterError as exc:
        rclpy.logging.get_logger("bag_player").fatal(str(exc))
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    code = 0
    try:
        while rclpy.ok() and (opts.hold or not node.done.is_set()):
            executor.spin_once(timeout_sec=0.1)
        code = 1 if node.state == "error" else 0
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
