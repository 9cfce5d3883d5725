"""Perception's lifecycle under faults, with real rclpy and real DDS: the node runs on its own
context and executor (``harness.Nodes``), the test talks to it through a ``Probe`` on another
context (lifecycle services, ``/diagnostics``, the graph).

- a checkpoint that fails to load leaves the node alive and UNCONFIGURED, ERROR on
  ``/diagnostics`` naming the file and the reason, until it is fixed and configured again;
"""

from __future__ import annotations

from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from test_pipeline import make_checkpoint

from etuner_ros.nodes.perception_node import PerceptionNode
from etuner_ros.ros.qos import reliable_qos

from harness import Nodes, Probe, wait_for


def _statuses(diag: list, ns: str) -> list[DiagnosticStatus]:
    return [s for a in list(diag) for s in a.status if s.hardware_id == f"/{ns}/perception"]


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
