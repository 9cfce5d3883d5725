"""How long a source has been silent, on a clock that may not run yet or may jump back.

Under ``use_sim_time`` a node's clock reads 0 until ``/clock`` arrives, then jumps to the
recording's time; a replayed bag that restarts sends it back. Measured naively from the node's
start, the first ``/clock`` made every node warn "no frames for 1700000000 s". So silence is
measured from the first time seen on a running clock (or the last event), and a clock that went
back restarts the watch. Plain floats in seconds, no ROS: the nodes pass their clock's time.
"""

from __future__ import annotations


class Silence:
    """See the module docstring."""

    def __init__(self) -> None:
        self._last: float | None = None

    def seen(self, now: float) -> None:
        """The source spoke at ``now`` (ignored while the clock does not run)."""
        if now > 0:
            self._last = now

    def seconds(self, now: float) -> float:
        """Seconds since the source spoke, or since the clock started running; 0 before."""
        if now > 0 and (self._last is None or now < self._last):
            self._last = now  # start watching (or the clock went back)
        return 0.0 if self._last is None else now - self._last
