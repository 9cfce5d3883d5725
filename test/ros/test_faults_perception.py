"""Hostile and careless input to the real perception node (bringup subprocess, real DDS): every
case is refused or counted with a clear reason, the process lives, the old model keeps serving.
Issue 7 cases 1 (input_size 100000), 6 (version 4294967295), a silent camera, and use_sim_time.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from test_pipeline import make_checkpoint

from etuner_ros.msg import DetectionArray, ModelInfo
from etuner_ros.ros.image import rgb_to_image
from etuner_ros.ros.qos import image_qos, latched_qos, reliable_qos
from etuner_ros.srv import SwapWeights

from harness import Bringup, Probe, wait_for


def start(d: Path, ns: str, *extra: str, overlay: str = "", base: Path | None = None
          ) -> tuple[Bringup, Probe, dict]:
    """A bringup in namespace ``ns`` (tests with their own bringup run beside the module's);
    ``base``: the starting checkpoint (default: a fresh v1 without a home signature)."""
    ckpt = base or make_checkpoint(d / "base.pt", 1)
    params = d / "overlay.yaml"
    params.write_text(f"/**:\n  ros__parameters:\n    data_dir: '{d}'\n"
                      "/**/tuner:\n  ros__parameters:\n    policy: none\n"
                      "/**/perception:\n  ros__parameters:\n    image_reliability: reliable\n"
                      "    image_queue_depth: 20\n" + overlay)
    sut = Bringup(d / "bringup.log", "--params-file", str(params), "--checkpoint", str(ckpt),
                  "--namespace", ns, *extra)
    probe = Probe(f"{ns}_probe", namespace=ns)
    ctx = {"dir": d, "sut": sut, "probe": probe, "sec": 100, "ns": ns,
           "dets": probe.collect(DetectionArray, "detections", reliable_qos(200)),
           "info": probe.collect(ModelInfo, "model_info", latched_qos()),
           "diag": probe.collect(DiagnosticArray, "/diagnostics", reliable_qos(100)),
           "img": probe.publisher(Image, "image", image_qos("reliable", 20))}
    wait_for(lambda: sut.check() or ctx["info"], 90, "perception's model_info")
    return sut, probe, ctx


def stop(sut: Bringup, probe: Probe) -> None:
    probe.close()
    code = sut.stop()
    print(sut.log()[-4000:])
    assert code == 0, f"bringup exited with {code}"


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    sut, probe, ctx = start(tmp_path_factory.mktemp("faults"), "faults")
    try:
        yield ctx
    finally:
        stop(sut, probe)


def frame_answered(ctx, width: int = 64, height: int = 48) -> DetectionArray:
    """Publish one frame and return perception's answer to it."""
    ctx["sec"] += 1
    stamp = Time(sec=ctx["sec"])
    rgb = np.random.default_rng(ctx["sec"]).integers(0, 255, (height, width, 3), np.uint8)
    wait_for(lambda: ctx["img"].get_subscription_count() >= 1, 30, "perception subscribed")
    ctx["img"].publish(rgb_to_image(rgb, Header(stamp=stamp, frame_id="cam")))
    return wait_for(lambda: [d for d in ctx["dets"] if d.header.stamp == stamp], 30,
                    f"an answer to frame {stamp.sec}")[0]


def swap(ctx, path: Path | str, version: int) -> SwapWeights.Response:
    return ctx["probe"].call(SwapWeights, "perception/swap_weights",
                             SwapWeights.Request(checkpoint_path=str(path), version=version))


def statuses(ctx, prefix: str = "") -> list[DiagnosticStatus]:
    """This bringup's perception statuses (/diagnostics is shared by every bringup)."""
    return [s for a in list(ctx["diag"]) for s in a.status
            if s.hardware_id == f"/{ctx['ns']}/perception" and s.message.startswith(prefix)]


def perception_status(ctx) -> DiagnosticStatus:
    ctx["diag"].clear()
    return wait_for(lambda: statuses(ctx), 15, "perception on /diagnostics")[-1]


def values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_input_size_100000_is_refused_and_the_old_model_keeps_serving(system):
    """Issue 7, case 1: was accepted, then MemoryError on the next frame ended the process."""
    active = system["info"][-1].version
    bad = make_checkpoint(system["dir"] / "huge_input.pt", 5)
    data = torch.load(bad, weights_only=True)
    data["input_size"] = 100000
    torch.save(data, bad)
    res = swap(system, bad, 5)
    assert not res.success and res.active_version == active
    assert "input_size 100000 is outside 16..1024 pixels" in res.message, res.message
    assert f"still serving v{active}" in res.message
    det = frame_answered(system)
    assert det.model_version == active
    system["sut"].check()
    assert "input_size 100000" in system["sut"].log()


@pytest.mark.parametrize("version, why", [
    (4294967295, "outside 1..2147483647"),  # issue 7, case 6: wrapped to 0 later
    (2**31, "outside 1..2147483647"),
])
def test_out_of_range_versions_are_refused(system, version, why):
    active = system["info"][-1].version
    ckpt = make_checkpoint(system["dir"] / f"v{version}.pt", 3)
    res = swap(system, ckpt, version)
    assert not res.success and why in res.message and res.active_version == active
    assert frame_answered(system).model_version == active


def test_version_contract_new_retry_other_file_and_rollback(system):
    """srv/SwapWeights.srv: any in-range version but the serving one; same version + same file
    is an idempotent retry; same version + another file is refused; lower is a rollback."""
    classes = list(system["info"][-1].class_names)
    old = system["info"][-1].version
    new_path = make_checkpoint(system["dir"] / "v40.pt", 40, classes)
    res = swap(system, new_path, 40)
    assert res.success and res.active_version == 40, res.message
    again = swap(system, new_path, 40)
    assert again.success and "already serving" in again.message
    other = swap(system, make_checkpoint(system["dir"] / "v40b.pt", 41, classes), 40)
    assert not other.success and "other weights need another version" in other.message
    assert frame_answered(system).model_version == 40
    back = swap(system, make_checkpoint(system["dir"] / "v_old.pt", old, classes), old)
    assert back.success and back.active_version == old, back.message
    assert frame_answered(system).model_version == old
    own = make_checkpoint(system["dir"] / "v0_own.pt", 0, classes)  # version 0 in the file
    res = swap(system, own, 0)
    assert not res.success and "checkpoint's version 0" in res.message


def test_bad_frames_are_counted_and_the_node_goes_on(system):
    before = int(values(perception_status(system))["bad_frames"])
    header = Header(stamp=Time(sec=5), frame_id="cam")
    bad = [Image(header=header, height=48, width=64, encoding="16UC1", step=128,
                 data=bytes(48 * 128)),
           Image(header=header, height=48, width=64, encoding="rgb8", step=192, data=bytes(10)),
           Image(header=header, height=100000, width=100000, encoding="rgb8", step=300000,
                 data=bytes(30))]
    for msg in bad:
        system["img"].publish(msg)
    assert frame_answered(system).detections  # a good frame after the bad ones
    wait_for(lambda: int(values(perception_status(system))["bad_frames"]) >= before + 3, 20,
             "three more bad frames counted")
    st = perception_status(system)
    assert st.level == DiagnosticStatus.WARN and "dropped" in st.message
    assert "callback_failures" in values(st)
    system["sut"].check()


def test_large_frames_are_answered(system):
    det = frame_answered(system, 1280, 720)
    assert (det.detections[0].bbox.width, det.detections[0].bbox.height) == (1280, 720)


def test_a_silent_camera_is_reported(tmp_path):
    sut, probe, ctx = start(tmp_path, "silent",
                            overlay="    no_frames_warn_s: 1.0\n")
    try:
        st = wait_for(lambda: statuses(ctx, "no frames for"), 30,
                      "'no frames for N s' on /diagnostics")[-1]
        assert st.level == DiagnosticStatus.WARN
        wait_for(lambda: "no frames for" in sut.log(), 10, "the warning in the log")
        ctx["diag"].clear()

        def serving() -> bool:  # a camera again: frames until the status says so
            frame_answered(ctx)
            return bool(statuses(ctx, "serving"))

        wait_for(serving, 60, "back to serving once frames arrive")
        wait_for(lambda: "frames arrive again" in sut.log(), 10, "the recovery in the log")
    finally:
        stop(sut, probe)


def test_use_sim_time_drives_the_silence_watchdog(tmp_path):
    """With use_sim_time, stream times follow /clock: a 2 h jump of the sim clock makes a
    one-hour silence limit fire within seconds of wall time (the wall clock could not)."""
    sut, probe, ctx = start(tmp_path, "simtime", "--ros-args", "-p", "use_sim_time:=true",
                            overlay="    no_frames_warn_s: 3600.0\n")
    clock = probe.publisher(Clock, "/clock", 10)
    stop_clock = threading.Event()

    def tick() -> None:  # a /clock source, as a bag player would be
        t = 1_000_000
        while not stop_clock.is_set():
            clock.publish(Clock(clock=Time(sec=t)))
            t += 60  # one minute of sim time per 50 ms
            time.sleep(0.05)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        st = wait_for(lambda: statuses(ctx, "no frames for"), 90,
                      "the sim-time silence warning")[-1]
        assert st.level == DiagnosticStatus.WARN
        stamps = [a.header.stamp.sec for a in list(ctx["diag"])
                  if any(s.hardware_id == "/simtime/perception" for s in a.status)]
        assert max(stamps) >= 1_000_000, "diagnostics are stamped with the sim clock"
    finally:
        stop_clock.set()
        thread.join(timeout=5)
        stop(sut, probe)


def test_a_missing_region_message_package_fails_configure_and_leaves_nothing_subscribed(
        tmp_path):
    """``region_message: yolo_msgs`` without the package (as here): configure fails naming the
    package, and no image subscription is left taking frames (activation used to subscribe to
    images, then fail on the import and leave that subscription running, with a second one
    after each retry). Real rclpy node in this process; its transitions called directly."""
    import rclpy
    from rclpy.parameter import Parameter

    from etuner_ros.nodes.perception_node import PerceptionNode

    ckpt = make_checkpoint(tmp_path / "base.pt", 1)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = PerceptionNode(context=ctx, parameter_overrides=[
        Parameter("checkpoint", value=str(ckpt)), Parameter("data_dir", value=str(tmp_path)),
        Parameter("autostart", value=False), Parameter("region_source", value="topic"),
        Parameter("region_message", value="yolo_msgs")])
    try:
        from lifecycle_msgs.msg import State
        from rclpy.lifecycle import TransitionCallbackReturn

        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "yolo_msgs" in node.last_error and "install" in node.last_error
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
        assert node.count_subscribers(node.resolve_topic_name("image")) == 0
        assert node._sub is None and node.feed._sub is None
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)
