"""A small /diagnostics publisher in the spirit of diagnostic_updater.

diagnostic_updater is not available from PyPI; this keeps its contract (a DiagnosticArray on the
absolute topic ``/diagnostics`` once per period, one DiagnosticStatus per node named
``<node>: <task>``) so the robot's aggregator and rqt_robot_monitor show our nodes unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

# DiagnosticStatus levels are single bytes (msg type ``byte``).
OK: bytes = DiagnosticStatus.OK
WARN: bytes = DiagnosticStatus.WARN
ERROR: bytes = DiagnosticStatus.ERROR

Check = Callable[[], tuple[bytes, str, dict[str, Any]]]


class Diagnostics:
    """Publish the result of ``check()`` on ``/diagnostics`` every ``period_s`` seconds."""

    def __init__(self, node: Node, task: str, check: Check, period_s: float = 1.0,
                 hardware_id: str = "") -> None:
        self._node = node
        self._task = task
        self._check = check
        self._hardware_id = hardware_id or node.get_fully_qualified_name()
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._timer = node.create_timer(period_s, self.publish)

    def publish(self) -> None:
        """Run the check and publish it; a failing check is reported as ERROR, not raised."""
        try:
            level, message, values = self._check()
        except Exception as exc:  # a broken check must not take the node down
            level, message, values = ERROR, f"diagnostic check failed: {exc}", {}
        if not isinstance(level, bytes):
            level = bytes([int(level)])
        status = DiagnosticStatus(
            level=level, name=f"{self._node.get_name()}: {self._task}", message=message,
            hardware_id=self._hardware_id,
            values=[KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()])
        arr = DiagnosticArray()
        arr.header.stamp = self._node.get_clock().now().to_msg()
        arr.status = [status]
        self._pub.publish(arr)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
