"""CallbackGuard on a real rclpy node over real DDS: failing subscription, timer and service
callbacks are counted, logged once per cause, answered, and the executor keeps spinning."""

from __future__ import annotations

import threading

import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor
from std_msgs.msg import String
from std_srvs.srv import Trigger

from etuner_ros.ros.guard import CallbackGuard

from harness import wait_for


@pytest.fixture()
def node():
    context = rclpy.Context()
    rclpy.init(context=context)
    n = rclpy.create_node("guard_test", context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(n)
    errors: list[BaseException] = []

    def spin() -> None:
        try:
            executor.spin()
        except BaseException as exc:  # recorded: an escape is exactly what the test looks for
            errors.append(exc)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    n.spin_errors = errors
    n.spin_thread = thread
    yield n
    executor.shutdown(timeout_sec=2.0)
    n.destroy_node()
    rclpy.shutdown(context=context)
    thread.join(timeout=5.0)


def test_subscription_failure_is_counted_and_later_messages_still_arrive(node, capfd):
    guard = CallbackGuard(node)
    good: list[str] = []

    def on_msg(msg: String) -> None:
        if msg.data.startswith("bad"):
            raise ValueError("cannot parse\nforged line")
        good.append(msg.data)

    node.create_subscription(String, "chatter", guard.wrap(on_msg, "chatter"), 50)
    pub = node.create_publisher(String, "chatter", 50)
    wait_for(lambda: pub.get_subscription_count() > 0, 10, "subscription matched")
    for i in range(5):
        pub.publish(String(data=f"bad {i}"))
    pub.publish(String(data="good"))
    wait_for(lambda: good == ["good"], 10, "the good message after five failing ones")
    assert guard.count("chatter") == 5 and guard.total() == 5
    values = guard.values()
    assert values["callback_failures"] == 5 and values["failures.chatter"] == 5
    assert "ValueError" in values["last_failure"] and "\n" not in values["last_failure"]
    assert node.spin_thread.is_alive() and not node.spin_errors
    err = capfd.readouterr().err
    # one cause, five failures: one ERROR line (escaped newline: no forged second line)
    lines = [ln for ln in err.splitlines() if "callback chatter failed" in ln]
    assert len(lines) == 1, err
    assert "forged line" in lines[0] and "\\n" in lines[0]


def test_timer_failure_does_not_stop_the_timer(node):
    guard = CallbackGuard(node)
    ticks = []

    def tick() -> None:
        ticks.append(1)
        raise RuntimeError("boom")

    node.create_timer(0.02, guard.wrap(tick, "tick"))
    wait_for(lambda: guard.count("tick") >= 5, 10, "five failing ticks")
    assert len(ticks) >= 5 and node.spin_thread.is_alive() and not node.spin_errors


def test_failing_service_still_answers(node):
    guard = CallbackGuard(node)

    def explode(req, res):
        raise MemoryError("out of memory in preprocess")

    def refuse(req, res, exc):
        res.success, res.message = False, f"failed: {type(exc).__name__}"
        return res

    node.create_service(Trigger, "with_reason", guard.wrap(explode, "with_reason", refuse))
    node.create_service(Trigger, "plain", guard.wrap(explode, "plain"))
    for name, message in (("with_reason", "failed: MemoryError"), ("plain", "")):
        client = node.create_client(Trigger, name)  # answered through the spinning executor
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(Trigger.Request())
        wait_for(future.done, 20, f"an answer from {name}")
        assert not future.result().success and future.result().message == message
    assert guard.count("with_reason") == 1 and guard.count("plain") == 1
    assert not node.spin_errors


def test_on_error_failure_is_counted_too(node):
    guard = CallbackGuard(node)

    def bad(*_):
        raise ValueError("first")

    def worse(*_):
        raise KeyError("second")

    wrapped = guard.wrap(bad, "cb", worse)
    assert wrapped("msg") is None
    assert guard.count("cb") == 1 and guard.count("cb.on_error") == 1


def test_varying_messages_cannot_flood_the_log(node, capfd, monkeypatch):
    guard = CallbackGuard(node)
    monkeypatch.setattr(CallbackGuard, "MAX_CAUSES", 3)
    wrapped = guard.wrap(lambda i: (_ for _ in ()).throw(ValueError(f"frame {i}")), "img")
    for i in range(50):
        wrapped(i)
    assert guard.count("img") == 50
    lines = [ln for ln in capfd.readouterr().err.splitlines() if "callback img failed" in ln]
    assert 3 <= len(lines) <= 4, lines  # 3 remembered causes, then one per RELOG_S


def test_spin_loop_survives_an_escaped_exception():
    """An unguarded callback's exception escapes executor.spin(); the shared spin loop of
    run_node and bringup logs it and spins on: the other timer keeps ticking."""
    from etuner_ros.ros.run import spin_until_shutdown

    context = rclpy.Context()
    rclpy.init(context=context)
    n = rclpy.create_node("escape_test", context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(n)
    raised, ticks = [], []

    def unguarded() -> None:
        raised.append(1)
        raise RuntimeError("escapes on purpose")

    n.create_timer(0.05, unguarded)
    n.create_timer(0.02, lambda: ticks.append(1))
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(
        spin_until_shutdown(executor, "escape_test", stop, max_escapes=10_000)), daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(raised) >= 5, 20, "five escaped exceptions")
        seen = len(ticks)
        wait_for(lambda: len(ticks) > seen + 5, 20, "the other timer ticking after them")
        assert thread.is_alive()
    finally:
        stop.set()
        executor.shutdown(timeout_sec=2.0)
        thread.join(timeout=10)
        n.destroy_node()
        rclpy.shutdown(context=context)
    assert result == [0]


def test_spin_loop_gives_up_on_a_flood():
    """More than max_escapes within the window: exit code 1, so a supervisor can respawn."""
    from etuner_ros.ros.run import spin_until_shutdown

    context = rclpy.Context()
    rclpy.init(context=context)
    n = rclpy.create_node("flood_test", context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(n)
    n.create_timer(0.01, lambda: 1 / 0)
    try:
        assert spin_until_shutdown(executor, "flood_test", max_escapes=3, window_s=60.0) == 1
    finally:
        executor.shutdown(timeout_sec=2.0)
        n.destroy_node()
        rclpy.shutdown(context=context)
