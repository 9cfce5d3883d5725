"""Perception's lifecycle under faults, with real rclpy and real DDS: the node runs on its own
context and executor (``harness.Nodes``), the test talks to it through a ``Probe`` on another
context (lifecycle services, ``/diagnostics``, the graph).

- a checkpoint that fails to load leaves the node alive and UNCONFIGURED, ERROR on
  ``/diagnostics`` naming the file and the reason, until it is fixed and configured again;
- a frame that reaches the image callback after deactivate or cleanup is counted
  (``frames_while_inactive``), not answered and not lost without a trace;
- shutdown releases what cleanup releases, the subscriptions and the timers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from test_pipeline import make_checkpoint

from etuner_ros.msg import DetectionArray
from etuner_ros.nodes.perception_node import PerceptionNode
from etuner_ros.ros.image import rgb_to_image
from etuner_ros.ros.qos import image_qos, reliable_qos

from harness import Nodes, Probe, wait_for


def _statuses(diag: list, ns: str) -> list[DiagnosticStatus]:
    return [s for a in list(diag) for s in a.status if s.hardware_id == f"/{ns}/perception"]


def _values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def _frame(sec: int, width: int = 64, height: int = 48) -> Image:
    rgb = np.random.default_rng(sec).integers(0, 255, (height, width, 3), np.uint8)
    return rgb_to_image(rgb, Header(stamp=Time(sec=sec), frame_id="cam"))


def _transition(probe: Probe, transition: int) -> bool:
    req = ChangeState.Request(transition=Transition(id=transition))
    return probe.call(ChangeState, "perception/change_state", req).success


def _state(probe: Probe) -> int:
    return probe.call(GetState, "perception/get_state", GetState.Request()).current_state.id


def test_a_bad_checkpoint_leaves_perception_unconfigured_until_it_is_fixed(tmp_path: Path,
                                                                            capfd) -> None:
    """autostart with a broken file used to raise out of the constructor (exit code 2, and the
    launch file respawned it every 2 s). Now: alive, UNCONFIGURED, ERROR naming the file and
    the reason, one clear log line; configure + activate through the lifecycle service once
    the file is fixed."""
    ns = "badckpt"
    ckpt = tmp_path / "base.pt"
    ckpt.write_bytes(b"not a checkpoint")
    sut, probe = Nodes(ns), Probe(f"{ns}_probe", namespace=ns)
    diag = probe.collect(DiagnosticArray, "/diagnostics", reliable_qos(100))
    try:
        sut.add(PerceptionNode, checkpoint=str(ckpt), data_dir=str(tmp_path))  # autostart
        assert _state(probe) == State.PRIMARY_STATE_UNCONFIGURED
        err = wait_for(lambda: [s for s in _statuses(diag, ns)
                                if s.level == DiagnosticStatus.ERROR], 15,
                       "ERROR on /diagnostics")[-1]
        assert err.message.startswith("configure failed: ") and str(ckpt) in err.message
        log = capfd.readouterr()
        assert "configure failed, staying unconfigured" in log.out + log.err
        assert f"ros2 lifecycle set /{ns}/perception configure" in log.out + log.err

        make_checkpoint(ckpt, 1)  # the operator fixes the file
        assert _transition(probe, Transition.TRANSITION_CONFIGURE)
        assert _transition(probe, Transition.TRANSITION_ACTIVATE)
        assert _state(probe) == State.PRIMARY_STATE_ACTIVE
        diag.clear()
        ok = wait_for(lambda: _statuses(diag, ns), 15, "perception on /diagnostics")[-1]
        assert ok.level == DiagnosticStatus.WARN and ok.message == "no frames received yet"
    finally:
        probe.close()
        sut.close()


def test_frames_that_reach_an_inactive_perception_are_counted(tmp_path: Path) -> None:
    """A frame the executor took before deactivate (or cleanup) removed the subscription still
    reaches the image callback, on another executor thread than the transition. Its answer
    used to vanish in the disabled lifecycle publisher (and was counted as served), or after
    cleanup with no model, without a count. Here the subscription's callback is called with
    such a frame as the executor calls it (message, MessageInfo), after the real transitions."""
    ns = "inactive"
    ckpt = make_checkpoint(tmp_path / "base.pt", 1)
    sut, probe = Nodes(ns), Probe(f"{ns}_probe", namespace=ns)
    dets = probe.collect(DetectionArray, "detections", reliable_qos(50))
    diag = probe.collect(DiagnosticArray, "/diagnostics", reliable_qos(100))
    img = probe.publisher(Image, "image", image_qos("reliable", 5))
    try:
        node = sut.add(PerceptionNode, checkpoint=str(ckpt), data_dir=str(tmp_path),
                       image_reliability="reliable")
        wait_for(lambda: img.get_subscription_count() >= 1, 30, "perception subscribed")
        img.publish(_frame(1))
        wait_for(lambda: [d for d in dets if d.header.stamp.sec == 1], 30, "frame 1 answered")
        deliver = node._sub.callback  # what the executor runs for a frame it took
        assert _transition(probe, Transition.TRANSITION_DEACTIVATE)
        deliver(_frame(2), {})
        assert _transition(probe, Transition.TRANSITION_CLEANUP)
        deliver(_frame(3), {})
        diag.clear()
        st = wait_for(lambda: _statuses(diag, ns), 15, "perception on /diagnostics")[-1]
        v = _values(st)
        assert v["frames_while_inactive"] == "2" and v["frames"] == "1", v
        assert not [d for d in dets if d.header.stamp.sec in (2, 3)]
    finally:
        probe.close()
        sut.close()


def test_shutdown_releases_what_cleanup_releases(tmp_path: Path) -> None:
    """Shutdown from ACTIVE used to drop the subscriptions only: the model, the publishers,
    the swap service, the timers and a frame waiting for its boxes stayed held by a node
    that can never serve again."""
    ns = "shutdown"
    ckpt = make_checkpoint(tmp_path / "base.pt", 1)
    sut, probe = Nodes(ns), Probe(f"{ns}_probe", namespace=ns)
    diag = probe.collect(DiagnosticArray, "/diagnostics", reliable_qos(100))
    img = probe.publisher(Image, "image", image_qos("reliable", 5))
    try:
        node = sut.add(PerceptionNode, checkpoint=str(ckpt), data_dir=str(tmp_path),
                       image_reliability="reliable", region_source="topic",
                       region_timeout_s=60.0)
        wait_for(lambda: img.get_subscription_count() >= 1, 30, "perception subscribed")
        img.publish(_frame(1))  # no boxes ever come: it waits
        wait_for(lambda: [s for s in _statuses(diag, ns)
                          if _values(s).get("pairing_frames_waiting") == "1"], 30,
                 "the frame waiting for its boxes")
        timers_before = len(list(node.timers))
        assert _transition(probe, Transition.TRANSITION_ACTIVE_SHUTDOWN)
        assert _state(probe) == State.PRIMARY_STATE_FINALIZED
        assert node._bundle is None and node.feed.proposer is None
        assert len(list(node.timers)) == timers_before - 2  # watchdog, region expiry
        g = probe.node

        def released() -> bool:
            services = {n for n, _ in g.get_service_names_and_types()}
            return (f"/{ns}/perception/swap_weights" not in services
                    and all(g.count_publishers(f"/{ns}/{t}") == 0
                            for t in ("detections", "detections/image", "model_info"))
                    and all(g.count_subscribers(f"/{ns}/{t}") == 0
                            for t in ("image", "regions")))

        wait_for(released, 15, "publishers, service and subscriptions gone from the graph")
        diag.clear()
        st = wait_for(lambda: _statuses(diag, ns), 15, "perception on /diagnostics")[-1]
        v = _values(st)
        assert st.message.startswith("shut down") and st.level == DiagnosticStatus.WARN
        assert v["pairing_frames_flushed"] == "1" and v["pairing_frames_waiting"] == "0", v
    finally:
        probe.close()
        sut.close()
