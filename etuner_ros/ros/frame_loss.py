"""Count frames a publisher sent that never reached our callback (best-effort drops).

Best effort drops are silent in DDS. rmw reports each sample's ``publication_sequence_number``
(numbered per publisher, from 1), so a gap between consecutive numbers is a lost frame, whether
the transport dropped it or the subscription's queue overflowed. Numbers are per publisher and
rclpy's MessageInfo does not say which publisher sent a sample, so counting is only right while
the topic has exactly one publisher (a camera); the caller says when that holds.
"""

from __future__ import annotations


class FrameLoss:
    """Gaps in one publisher's sequence numbers; not thread-safe (callers hold their lock)."""

    def __init__(self) -> None:
        self.lost = 0
        self._last: int | None = None
        self._one_publisher = False

    def set_single_publisher(self, one: bool) -> None:
        """Count only while True; any change restarts from the next sample."""
        if one != self._one_publisher:
            self._one_publisher, self._last = one, None

    def observe(self, info: object) -> int:
        """Record a received sample's MessageInfo (a dict in rclpy); return frames lost before
        it. A number at or below the last one (a restarted publisher) starts counting again."""
        seq = info.get("publication_sequence_number") if isinstance(info, dict) else None
        if seq is None or not self._one_publisher:
            return 0
        gap = seq - self._last - 1 if self._last is not None and seq > self._last + 1 else 0
        self._last = seq
        self.lost += gap
        return gap
