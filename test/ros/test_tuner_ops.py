"""One operation at a time in the real tuner node (real rclpy, no perception): a rollback that
arrives while another one waits for perception is refused as busy, and leaves the running one's
bookkeeping alone (it used to fail with UnboundLocalError and clear it, letting a round start
beside the rollback)."""

from __future__ import annotations

import threading
import time

import rclpy
import torch
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from etuner_ros.bringup import parser, ros_args
from etuner_ros.core.model import ModelBundle, build_model
from etuner_ros.core.registry import ModelRegistry
from etuner_ros.msg import ModelInfo
from etuner_ros.srv import Rollback

ARCH = "mobilenet_v3_small"


def test_a_second_rollback_is_refused_while_one_waits_for_perception(tmp_path):
    torch.manual_seed(0)
    reg = ModelRegistry(tmp_path / "models")
    paths = {v: reg.save(ModelBundle(build_model(ARCH, 2), ARCH, ["a", "b"], v, 32))
             for v in (1, 2)}
    ctx = rclpy.Context()
    opts = parser().parse_args(["--data-dir", str(tmp_path)])
    rclpy.init(context=ctx, args=["test", *ros_args(opts)])
    from etuner_ros.nodes.tuner_node import TunerNode

    # no perception: the swap waits swap_timeout_s for its service, then gives up
    node = TunerNode(context=ctx, parameter_overrides=[
        Parameter("swap_timeout_s", value=3.0), Parameter("swap_service", value="nobody")])
    t = None
    try:
        node._on_model_info(ModelInfo(version=2, checkpoint_path=str(paths[2]),
                                      architecture=ARCH))
        first: list[Rollback.Response] = []
        t = threading.Thread(target=lambda: first.append(
            node._on_rollback(Rollback.Request(version=0), Rollback.Response())))
        t.start()
        deadline = time.monotonic() + 10
        while not node.busy and time.monotonic() < deadline:
            time.sleep(0.01)
        assert node.ops.name == "rollback to v1"

        second = node._on_rollback(Rollback.Request(version=0), Rollback.Response())
        assert not second.success and second.message.startswith(
            "refused: rollback to v1 is running"), second.message
        assert node.ops.name == "rollback to v1"  # the running one is still the one running
        force = node._on_force(Trigger.Request(), Trigger.Response())
        assert not force.success and "rollback to v1 is running" in force.message

        t.join(10)
        assert first and not first[0].success and "not available" in first[0].message
        assert not node.busy and node.active_version == 2
        assert node.ops.counts["rollbacks_refused"] == 2
    finally:
        if t is not None:
            t.join(10)
        node.destroy_node()
        rclpy.shutdown(context=ctx)
