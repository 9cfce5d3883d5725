"""One operation at a time in the real tuner node (real rclpy, no perception): a rollback that
arrives while another one waits for perception is refused as busy, and leaves the running one's
bookkeeping alone (it used to fail with UnboundLocalError and clear it, letting a round start
beside the rollback)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import rclpy
import torch
from rclpy.parameter import Parameter
from std_srvs.srv import SetBool, Trigger

from etuner_ros.bringup import parser, ros_args
from etuner_ros.core.model import ModelBundle, build_model
from etuner_ros.core.registry import ModelRegistry
from etuner_ros.msg import ModelInfo
from etuner_ros.srv import Rollback

ARCH = "mobilenet_v3_small"


@contextmanager
def tuner_node(tmp_path, **params) -> Iterator:
    """A real TunerNode on an rclpy context of its own (no perception), its callbacks called
    directly; ``params``: parameter overrides."""
    ctx = rclpy.Context()
    opts = parser().parse_args(["--data-dir", str(tmp_path)])
    rclpy.init(context=ctx, args=["test", *ros_args(opts)])
    from etuner_ros.nodes.tuner_node import TunerNode

    node = TunerNode(context=ctx, parameter_overrides=[Parameter(k.replace("__", "."), value=v)
                                                       for k, v in params.items()])
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_a_second_rollback_is_refused_while_one_waits_for_perception(tmp_path):
    torch.manual_seed(0)
    reg = ModelRegistry(tmp_path / "models")
    paths = {v: reg.save(ModelBundle(build_model(ARCH, 2), ARCH, ["a", "b"], v, 32))
             for v in (1, 2)}
    # no perception: the swap waits swap_timeout_s for its service, then gives up
    t = None
    with tuner_node(tmp_path, swap_timeout_s=3.0, swap_service="nobody") as node:
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


@contextmanager
def round_whose_swap_failed(tmp_path) -> Iterator[tuple]:
    """A real tuner serving v1 whose forced round made v2 and found no perception to swap it:
    yields (node, registry, path of v1) once the round has ended."""
    import numpy as np

    from etuner_ros.core.store import Sample

    torch.manual_seed(0)
    reg = ModelRegistry(tmp_path / "models")
    path = reg.save(ModelBundle(build_model(ARCH, 2), ARCH, ["a", "b"], 1, 32))
    with tuner_node(tmp_path, swap_timeout_s=1.0, swap_service="nobody", policy="immediate",
                    holdout_fraction=0.0, epochs=1) as node:
        node._on_model_info(ModelInfo(version=1, checkpoint_path=str(path),
                                      architecture=ARCH))
        rng = np.random.default_rng(0)
        node.engine.observe_labels(
            [Sample(i + 1, rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), "ab"[i % 2], 0)
             for i in range(8)], now=1.0)
        assert node._on_force(Trigger.Request(), Trigger.Response()).success
        deadline = time.monotonic() + 60
        while node.busy and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not node.busy
        yield node, reg, path


def test_a_failed_swap_keeps_error_on_status_until_the_next_operation(tmp_path):
    """A round whose swap finds no perception: ``~/status`` shows ERROR with the cause through
    later polls, paused or not (the next poll used to overwrite it with idle before anything
    published it), and the next operation clears it."""
    from etuner_ros.msg import TunerStatus

    with round_whose_swap_failed(tmp_path) as (node, _, _):
        for paused in (False, True):
            node._on_pause(SetBool.Request(data=paused), SetBool.Response())
            node._tick()
            s = node.status_dict()
            assert s["state"] == TunerStatus.STATE_ERROR, s["reason"]
            assert s["reason"].startswith("swap to v2 failed") and "not available" in s["reason"]
        node._on_pause(SetBool.Request(data=False), SetBool.Response())
        with node.ops.lock:
            node.ops.start("next")
        assert node.ops.state == TunerStatus.STATE_IDLE
        node.ops.finish()
        assert node.active_version == 1


def test_a_failed_swap_perception_announces_later_ends_the_error(tmp_path):
    """The round's swap got no answer and the operation ended in ERROR; perception's
    ``model_info`` then names the candidate (it served it after all): the tuner serves it,
    counts a late answer and is idle again (the ERROR used to stand until the next operation,
    over a tuner that was doing fine)."""
    from etuner_ros.msg import TunerStatus

    with round_whose_swap_failed(tmp_path) as (node, reg, path):
        assert node.status_dict()["state"] == TunerStatus.STATE_ERROR
        # the version already serving, announced again, answers nothing: the error stands
        node._on_model_info(ModelInfo(version=1, checkpoint_path=str(path), architecture=ARCH))
        assert node.status_dict()["state"] == TunerStatus.STATE_ERROR
        node._on_model_info(ModelInfo(version=2, checkpoint_path=str(reg.versions()[2]),
                                      architecture=ARCH))
        node._tick()
        s = node.status_dict()
        assert s["state"] == TunerStatus.STATE_IDLE, s["reason"]
        assert node.active_version == 2 and reg.read_pointer().version == 2
        assert s["swaps_answered_late"] == 1 and "swap to v2 failed" in s["last_error"]


def test_a_parameter_no_policy_declares_is_named_not_silently_ignored(tmp_path):
    """``etuner.max_wait_s`` is no knob (etuner reads ``lazytune.max_wait_s``): ROS would
    ignore it without a word; the node names it at start-up."""
    from etuner_ros.ros.params import undeclared_overrides

    with tuner_node(tmp_path, etuner__max_wait_s=5.0, lazytune__max_wait_s=5.0,
                    policy="etuner") as node:
        assert undeclared_overrides(node) == ["etuner.max_wait_s"]
        assert node.policy.max_wait_s == 5.0  # the real knob took effect


def test_a_model_info_the_tuner_cannot_load_is_an_error_with_its_cause(tmp_path):
    """model_info is latched and will not come again by itself: a checkpoint the tuner cannot
    read is reported as ERROR naming the file, not left as "waiting for model_info"."""
    from etuner_ros.msg import TunerStatus

    with tuner_node(tmp_path) as node:
        node._on_model_info(ModelInfo(version=4, checkpoint_path=str(tmp_path / "gone.pt"),
                                      architecture=ARCH))
        s = node.status_dict()
        assert s["state"] == TunerStatus.STATE_ERROR and node.engine is None
        assert "cannot load v4" in s["reason"] and "gone.pt" in s["reason"]


@contextmanager
def slow_perception(node, answer_after_s: float, accept: bool) -> Iterator[list]:
    """A peer on the tuner's context with the ``swap_weights`` service perception offers: it
    announces the requested version on ``model_info`` when ``accept`` (as perception does once
    it serves it), then answers after ``answer_after_s``; both nodes spun by one executor.
    Yields the requests it received."""
    from rclpy.callback_groups import ReentrantCallbackGroup
    from rclpy.executors import MultiThreadedExecutor

    from etuner_ros.ros.qos import latched_qos
    from etuner_ros.srv import SwapWeights

    peer = rclpy.create_node("slow_perception", context=node.context)
    info = peer.create_publisher(ModelInfo, "model_info", latched_qos())
    seen: list = []
    answered = threading.Semaphore(0)

    def swap(req, res):
        seen.append(req)
        if accept:
            info.publish(ModelInfo(version=req.version, checkpoint_path=req.checkpoint_path,
                                   architecture=ARCH))
        time.sleep(answer_after_s)
        res.success, res.active_version = accept, req.version if accept else node.active_version
        res.message = "served" if accept else "refused: not active"
        answered.release()
        return res

    peer.create_service(SwapWeights, "slow_swap", swap, callback_group=ReentrantCallbackGroup())
    ex = MultiThreadedExecutor(num_threads=4, context=node.context)
    ex.add_node(node)
    ex.add_node(peer)
    t = threading.Thread(target=ex.spin, daemon=True)
    t.start()
    try:
        yield seen
    finally:
        for _ in seen:  # let every answer go out before the peer is destroyed
            answered.acquire(timeout=10)
        time.sleep(0.2)
        ex.shutdown(timeout_sec=10)
        t.join(10)
        peer.destroy_node()


def test_a_swap_answered_too_late_is_believed_from_model_info(tmp_path):
    """Perception serves the version but its answer comes after ``swap_timeout_s``: its
    latched ``model_info`` (heard during the swap, when the tuner leaves that version to the
    answer) says so, and the tuner serves it too (it used to stay at the old version with an
    error, unaware of what perception served, and the pointer kept the old one)."""
    torch.manual_seed(0)
    reg = ModelRegistry(tmp_path / "models")
    paths = {v: reg.save(ModelBundle(build_model(ARCH, 2), ARCH, ["a", "b"], v, 32))
             for v in (1, 2)}
    with tuner_node(tmp_path, swap_timeout_s=1.0, swap_service="slow_swap") as node:
        node._on_model_info(ModelInfo(version=2, checkpoint_path=str(paths[2]),
                                      architecture=ARCH))
        with slow_perception(node, answer_after_s=2.5, accept=True) as seen:
            res = node._on_rollback(Rollback.Request(version=1), Rollback.Response())
            assert len(seen) == 1
        assert res.success and res.active_version == 1, res.message
        assert "no answer in 1 s" in res.message and "model_info says it serves v1" in res.message
        assert node.active_version == 1 and node.serving.counts["swaps_answered_late"] == 1
        assert reg.read_pointer().version == 1


def test_a_candidate_perception_refused_is_set_aside_not_a_rollback_target(tmp_path):
    """A round's candidate that perception refused is moved to ``models/failed/``: it stayed
    a kept version that ``~/rollback`` could later serve although it never served."""
    import numpy as np

    from etuner_ros.core.store import Sample

    torch.manual_seed(0)
    reg = ModelRegistry(tmp_path / "models")
    path = reg.save(ModelBundle(build_model(ARCH, 2), ARCH, ["a", "b"], 1, 32))
    with tuner_node(tmp_path, swap_timeout_s=5.0, swap_service="slow_swap", policy="immediate",
                    holdout_fraction=0.0, epochs=1) as node:
        node._on_model_info(ModelInfo(version=1, checkpoint_path=str(path), architecture=ARCH))
        rng = np.random.default_rng(0)
        node.engine.observe_labels(
            [Sample(i + 1, rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), "ab"[i % 2], 0)
             for i in range(8)], now=1.0)
        with slow_perception(node, answer_after_s=0.0, accept=False) as seen:
            assert node._on_force(Trigger.Request(), Trigger.Response()).success
            deadline = time.monotonic() + 60
            while node.busy and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not node.busy and [r.version for r in seen] == [2]
        s = node.status_dict()
        assert s["candidates_set_aside"] == 1 and "refused: not active" in s["reason"]
        assert "moved to" in s["reason"] and "failed" in s["reason"]
        assert 2 not in reg.kept() and (tmp_path / "models" / "failed").is_dir()
        assert list(reg.set_aside_versions()) == [2] and reg.next_version() == 3
        again = node._on_rollback(Rollback.Request(version=2), Rollback.Response())
        assert not again.success and "not kept" in again.message


def test_a_model_info_heard_during_an_operation_is_settled_when_it_ends(tmp_path):
    """perception's model_info for the version being swapped is left to the operation; one
    that arrives after the swap gave up but before the operation ended would be lost (latched:
    it does not come again). The end of every operation settles it."""
    torch.manual_seed(0)
    reg = ModelRegistry(tmp_path / "models")
    paths = {v: reg.save(ModelBundle(build_model(ARCH, 2), ARCH, ["a", "b"], v, 32))
             for v in (1, 2)}
    with tuner_node(tmp_path) as node:
        node._on_model_info(ModelInfo(version=1, checkpoint_path=str(paths[1]),
                                      architecture=ARCH))
        with node.ops.lock:
            node.ops.start("round 1")
            node.ops.swapping = 2
        node._on_model_info(ModelInfo(version=2, checkpoint_path=str(paths[2]),
                                      architecture=ARCH))
        assert node.active_version == 1  # left to the operation
        node.ops.finish()
        node._settle()
        assert node.active_version == 2 and reg.read_pointer().version == 2
