"""Perception's verdict on ``/diagnostics``: one level and one line from its counters.

Kept apart from the node (as ``tuner_status`` is from the tuner node) so the order of the
checks, which decides what an operator reads first, is in one small place: not configured,
inactive, silent, nothing yet, frames lost in this period, callback failures, bad frames,
failed swaps.
"""

from __future__ import annotations

from dataclasses import dataclass

from etuner_ros.ros.diagnostics import OK, WARN


@dataclass
class PerceptionState:
    configured: bool
    active: bool
    version: int
    quiet_s: float
    warn_after_s: float
    frames: int
    lost_now: int
    seen_now: int
    failures: int
    last_failure: str
    bad_frames: int
    last_error: str
    swaps_failed: int


def verdict(s: PerceptionState) -> tuple[bytes, str]:
    """The first problem that applies, else OK (WARN after a failed swap)."""
    if not s.configured:
        return WARN, f"not configured {s.last_error}".strip()
    if not s.active:
        return WARN, f"inactive (model v{s.version} loaded)"
    if s.quiet_s >= s.warn_after_s:
        return WARN, f"no frames for {s.quiet_s:.0f} s"
    if s.frames == 0:
        return WARN, "no frames received yet"
    if s.lost_now:
        return WARN, f"serving v{s.version}; lost {s.lost_now} of {s.seen_now} frames"
    if s.failures:
        return WARN, f"serving v{s.version}; callback failures: {s.last_failure}"
    if s.bad_frames and s.last_error:
        return WARN, f"some frames dropped: {s.last_error}"
    return (OK if s.swaps_failed == 0 else WARN), f"serving v{s.version}"
