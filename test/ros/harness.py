"""Test-side ROS helpers: a probe node spun in a thread, and the system under test as a process.

Integration tests talk to the real nodes over real DDS: the nodes run in a ``bringup`` subprocess
(the installed entry point, as on a robot) and the test's own probe node lives on a separate
rclpy context in the test process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile

from etuner_ros.ros.executor import QueueAwareExecutor
from etuner_ros.ros.stamps import stamp_ns

REPO = Path(__file__).resolve().parents[2]


class Probe:
    """A node of the test's own, on its own context, spinning in a background thread."""

    def __init__(self, name: str = "test_probe", namespace: str = "") -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node: Node = rclpy.create_node(name, namespace=namespace, context=self.context)
        self.executor = QueueAwareExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        with contextlib.suppress(Exception):  # shutdown races end the spin
            self.executor.spin()

    def collect(self, msg_type: Any, topic: str, qos: QoSProfile | int = 10) -> list[Any]:
        """Subscribe and return the list the messages are appended to."""
        got: list[Any] = []
        self.node.create_subscription(msg_type, topic, got.append, qos)
        return got

    def publisher(self, msg_type: Any, topic: str, qos: QoSProfile | int = 10) -> Any:
        return self.node.create_publisher(msg_type, topic, qos)

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 30.0) -> Any:
        """Call a service and return its response; fail the test if it does not answer."""
        client = self.node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            assert time.monotonic() < deadline, f"service {name} did not answer in {timeout}s"
            time.sleep(0.02)
        self.node.destroy_client(client)
        return future.result()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        self._thread.join(timeout=5.0)


class Nodes:
    """The system under test in this process: nodes on an rclpy context of their own, spun by a
    background executor (as bringup runs them); a Probe lives on another context, so every
    message between them crosses DDS."""

    def __init__(self, namespace: str = "") -> None:
        self.namespace = namespace
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes: list[Node] = []
        self.errors: list[Exception] = []  # exceptions out of spin
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception as exc:  # a node callback raised: fail the test in close()
            self.errors.append(exc)

    def add(self, factory: Any, **params: Any) -> Any:
        node = factory(context=self.context, namespace=self.namespace,
                       parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def close(self) -> None:
        """Stop spinning first, then destroy: a node must not vanish under a running spin."""
        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=5.0)
        for node in self.nodes:
            node.destroy_node()
        rclpy.shutdown(context=self.context)
        assert not self.errors, f"a node callback raised: {self.errors!r}"


def stamp_of(msg: Any) -> int:
    """A message's header stamp as the nodes key it (``ros/stamps.stamp_ns``)."""
    return stamp_ns(msg.header.stamp)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Bringup:
    """The installed ``bringup`` entry point in a subprocess, with its log kept for failures."""

    def __init__(self, log_path: Path, *args: str) -> None:
        exe = shutil.which("bringup") or _installed("bringup")
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, exe, *args], stdout=self._log, stderr=subprocess.STDOUT,
            env=os.environ.copy(), cwd=str(log_path.parent), start_new_session=True)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self) -> None:
        """Fail at once, with its log, if the process under test has died."""
        if not self.alive():
            raise AssertionError(f"bringup exited with {self.proc.returncode}:\n"
                                 + self.log()[-3000:])

    def stop(self, timeout: float = 20.0) -> int:
        """SIGINT, as Ctrl-C or launch would; kill if it does not stop in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def wait_until_quiet(count: Callable[[], int], quiet_s: float, timeout: float,
                     what: str) -> int:
    """Poll ``count`` until it has not grown for ``quiet_s`` seconds; return it. For a stream
    that has ended: its last messages are in flight, and how many arrive is what the caller
    then checks (a loaded machine may drop some, which a fixed count would call a hang)."""
    deadline = time.monotonic() + timeout
    last, since = count(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now_count = count()
        if now_count != last:
            last, since = now_count, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return last
    raise AssertionError(f"timed out after {timeout}s waiting for {what} to settle")


def _installed(name: str) -> str:
    path = REPO / "install" / "etuner_ros" / "lib" / "etuner_ros" / name
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run scripts/setup.sh (colcon build) first")
    return str(path)
