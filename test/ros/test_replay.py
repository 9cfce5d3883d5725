"""Replay of a recording: the ``replay`` command plays a bag the test makes through the real nodes.

The bag holds synthetic rgb8 frames (``sim/world.py``) and LabelCorrections, written with
rosbags. The installed ``replay`` executable plays it over real DDS into a ``bringup`` subprocess
running with ``use_sim_time:=true``: perception must answer every frame with the frame's own
recorded header, the collector must store every correction, and the nodes' clocks must follow
the bag's ``/clock``. The player alone is checked for loop stamps, compressed frames and its
clock; sim_camera is checked to stamp and pace its frames by ``/clock`` under use_sim_time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
import torch
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import Bool

from etuner_ros.core.bag import write_bag
from etuner_ros.core.checkpoint import save_checkpoint
from etuner_ros.core.model import ModelBundle, build_model
from etuner_ros.core.store import SampleStore
from etuner_ros.msg import DetectionArray, LabelCorrection, ModelInfo
from etuner_ros.nodes.bag_player_node import clock_qos
from etuner_ros.ros.image import image_to_rgb
from etuner_ros.ros.qos import image_qos, latched_qos, reliable_qos
from etuner_ros.sim.world import BASE_CLASSES, SyntheticWorld

from harness import Bringup, Probe, _installed, wait_for

T0 = 1_000_000_000 * 10**9  # September 2001: far from the wall clock, so sim time is visible
PERIOD = 125_000_000  # 8 fps
N_FRAMES = 40
CORRECTED = range(0, N_FRAMES, 7)  # 6 frames get a correction, 0.3 s after the frame
FRAME_ID = "head_camera"


def recording(n: int = N_FRAMES):
    """Frames (receive time, header stamp 3 ms earlier, rgb) and corrections of a small day."""
    frames = list(SyntheticWorld(0, image_size=(64, 48)).stream(n))[:n]
    images = [(T0 + i * PERIOD, T0 + i * PERIOD - 3_000_000, f.image)
              for i, f in enumerate(frames)]
    corrections = [(images[i][0] + 300_000_000, images[i][1], frames[i].label, i % 2 == 0)
                   for i in CORRECTED if i < n]
    return images, corrections


def _ns(t: Time) -> int:
    return t.sec * 1_000_000_000 + t.nanosec


class Replay:
    """The installed ``replay`` command in a subprocess, with its log kept for failures."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen([sys.executable, _installed("replay"), *args],
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     env=os.environ.copy(), start_new_session=True)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("replay did not finish:\n" + self.log()) from None

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()


def test_replay_through_the_real_nodes(tmp_path: Path) -> None:
    images, corrections = recording()
    bag = write_bag(tmp_path / "home_day1", images, corrections, frame_id=FRAME_ID)
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "base.pt", ModelBundle(
        build_model("mobilenet_v3_small", len(BASE_CLASSES)), "mobilenet_v3_small",
        list(BASE_CLASSES), 1, 32))
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        "/**:\n  ros__parameters:\n"
        f"    data_dir: '{tmp_path}'\n"
        "/**/tuner:\n  ros__parameters:\n    policy: none\n"
        # Reliable images end to end: the test counts answered frames.
        "/**/label_collector:\n  ros__parameters:\n    image_reliability: reliable\n"
        "    image_queue_depth: 50\n"
        "/**/perception:\n  ros__parameters:\n    image_reliability: reliable\n"
        "    image_queue_depth: 50\n")
    sut = Bringup(tmp_path / "bringup.log", "--params-file", str(overlay), "--checkpoint",
                  str(ckpt), "--namespace", "robot", "--ros-args", "-p", "use_sim_time:=true")
    probe = Probe("replay_probe", namespace="robot")
    player = None
    try:
        dets = probe.collect(DetectionArray, "detections", reliable_qos(100))
        info = probe.collect(ModelInfo, "model_info", latched_qos())
        diags = probe.collect(DiagnosticArray, "/diagnostics", reliable_qos(100))
        wait_for(lambda: sut.check() or info, 90, "perception's model_info")
        # perception, collector and tuner all subscribe to the camera
        player = Replay(tmp_path / "replay.log", str(bag), "--wait-for-subscribers", "3",
                        "--delay", "1", "--ros-args", "-r", "__ns:=/robot",
                        "-p", "ack_timeout_s:=2.0")
        assert player.wait(180) == 0, player.log()
        assert "finished: 40 frames, 6 corrections in 1 pass(es)" in player.log()

        wait_for(lambda: sut.check() or len(dets) >= N_FRAMES, 60,
                 f"detections of all {N_FRAMES} frames")
        sent = {(s, FRAME_ID) for _, s, _ in images}
        got = [(_ns(d.header.stamp), d.header.frame_id) for d in dets]
        assert len(got) == N_FRAMES and set(got) == sent  # each frame once, its own header

        store = SampleStore(tmp_path / "samples.db")
        try:
            wait_for(lambda: sut.check() or store.count_labelled() >= len(corrections), 60,
                     "the collector storing every correction")
            stored = sorted((s.stamp_ns, s.label, s.confirms) for s in store.labelled_since(0))
        finally:
            store.close()
        assert stored == sorted((s, c, k) for _, s, c, k in corrections)

        # The nodes ran on the bag's clock: their /diagnostics are stamped in bag time.
        end = T0 + N_FRAMES * PERIOD + 3 * 10**9
        node_stamps = [_ns(d.header.stamp) for d in diags
                       if d.status and d.status[0].name.split(":")[0] in ("perception",
                                                                          "label_collector")]
        assert node_stamps and all(T0 <= s <= end for s in node_stamps if s), node_stamps[:5]
    finally:
        if player is not None:
            player.stop()
        probe.close()
        code = sut.stop()
    assert code == 0, sut.log()[-3000:]


def test_player_loops_with_shifted_stamps_and_decodes_compressed(tmp_path: Path) -> None:
    images, corrections = recording(12)
    bag = write_bag(tmp_path / "b", images, corrections[:2], storage="mcap", compressed=True,
                    camera_topic="/cam/compressed")
    ns = f"/replay_test_{os.getpid()}"
    probe = Probe("player_probe", namespace=ns)
    player = None
    try:
        got = probe.collect(Image, "frames", image_qos("reliable", 100))
        cors = probe.collect(LabelCorrection, "corrections", reliable_qos(100))
        clock: list[int] = []
        probe.node.create_subscription(Clock, "/clock", lambda m: clock.append(_ns(m.clock)),
                                       clock_qos())
        player = Replay(tmp_path / "replay.log", str(bag), "--loop", "--rate", "4",
                        "--wait-for-subscribers", "1", "--ros-args", "-r", f"__ns:={ns}",
                        "-r", "image:=frames")
        wait_for(lambda: len(got) >= 2 * len(images) + 1 and len(cors) >= 4, 90,
                 f"two passes of the bag:\n{player.log()}")
    finally:
        if player is not None:
            player.stop()
        probe.close()
    shift = images[-1][0] - images[0][0] + PERIOD  # span of the bag plus one frame period
    first, second = got[: len(images)], got[len(images): 2 * len(images)]
    assert [_ns(m.header.stamp) for m in first] == [s for _, s, _ in images]
    assert [_ns(m.header.stamp) for m in second] == [s + shift for _, s, _ in images]
    for m, (_, _, rgb) in zip(first, images, strict=True):
        assert m.encoding == "rgb8" and m.header.frame_id == "camera_optical_frame"
        np.testing.assert_array_equal(image_to_rgb(m), rgb)  # PNG in the bag: lossless
    assert [_ns(c.header.stamp) for c in cors[:4]] == [
        corrections[0][1], corrections[1][1], corrections[0][1] + shift,
        corrections[1][1] + shift]
    assert clock == sorted(clock) and clock[0] >= images[0][0]


def test_sim_camera_runs_on_sim_time(tmp_path: Path) -> None:
    """With use_sim_time, sim_camera stamps and paces frames by /clock (here 5x real time)."""
    from etuner_ros.nodes.sim_camera_node import SimCameraNode

    ns = f"/simtime_test_{os.getpid()}"
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    probe = Probe("simtime_probe", namespace=ns)
    stop = threading.Event()
    published: list[int] = []
    cam = None
    try:
        got = probe.collect(Image, "image", image_qos("reliable", 100))
        finished = probe.collect(Bool, f"{ns}/sim_camera/finished", latched_qos())
        pub = probe.publisher(Clock, "/clock", clock_qos())

        def drive() -> None:  # 10 ms of wall time = 50 ms of sim time
            t = T0
            while not stop.is_set():
                published.append(t)
                pub.publish(Clock(clock=Time(sec=t // 10**9, nanosec=t % 10**9)))
                t += 50_000_000
                time.sleep(0.01)

        cam = SimCameraNode(context=ctx, namespace=ns, parameter_overrides=[
            Parameter("use_sim_time", value=True), Parameter("fps", value=4.0),
            Parameter("frames_per_scenario", value=2), Parameter("width", value=64),
            Parameter("height", value=48), Parameter("image_reliability", value="reliable")])
        executor.add_node(cam)
        spin = threading.Thread(target=executor.spin, daemon=True)
        spin.start()
        driver = threading.Thread(target=drive, daemon=True)
        driver.start()
        wait_for(lambda: finished, 90, "sim_camera to finish its 14 frames")
    finally:
        stop.set()
        executor.shutdown(timeout_sec=2.0)
        if cam is not None:
            cam.destroy_node()
        rclpy.shutdown(context=ctx)
        probe.close()
    stamps = [_ns(m.header.stamp) for m in got]
    assert len(stamps) >= 10 and stamps == sorted(stamps)
    assert all(T0 <= s <= published[-1] for s in stamps)
    gaps = np.diff(stamps) / 1e9
    # 4 fps of sim time: a frame every 0.25 s of /clock (each tick is 0.05 s late at most)
    assert abs(float(np.median(gaps)) - 0.25) <= 0.05, gaps
