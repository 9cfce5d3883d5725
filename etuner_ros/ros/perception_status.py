"""Perception's counters and its verdict on ``/diagnostics``: one level and one line.

Kept apart from the node (as ``tuner_status`` is from the tuner node): :class:`PerceptionStats`
holds what the node counts and when frames came, and builds the :class:`PerceptionState` that
:func:`verdict` judges, so the node file is only ROS glue, and the order of the checks, which
decides what an operator reads first, is in one small place: shut down, configure failed, not
configured, inactive, silent, nothing yet, frames lost in this period, callback failures, bad
frames, failed swaps.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from rclpy.time import Time

from etuner_ros.core.silence import Silence
from etuner_ros.ros.diagnostics import ERROR, OK, WARN
from etuner_ros.ros.frame_loss import FrameLoss
from etuner_ros.ros.guard import CallbackGuard


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
    configure_error: str = ""  # why the last configure failed (cleared by one that succeeds)
    shut_down: bool = False


def verdict(s: PerceptionState) -> tuple[bytes, str]:
    """The first problem that applies, else OK (WARN after a failed swap); ERROR only when
    configure failed: the node cannot serve until someone fixes the cause."""
    if s.shut_down:
        return WARN, "shut down (finalized): holds no model, serves nothing"
    if not s.configured and s.configure_error:
        return ERROR, f"configure failed: {s.configure_error}"
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


class PerceptionStats:
    """What perception counts and when frames came (node clock), under one lock; the node adds
    what it holds (model, subscription, feeds, guard) when :meth:`report` builds the state."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.frames = self.bad_frames = self.forwards = self.regions = 0
        self.while_inactive = 0  # frames a callback got while the node was not active
        self.swaps_ok = self.swaps_failed = 0
        self.last_error = ""
        self.configure_error = ""
        self.loss = FrameLoss()  # frames the camera sent that never reached the callback
        self.latency: deque[float] = deque(maxlen=300)  # s of CPU work per frame
        self.stamps: deque[int] = deque(maxlen=50)  # receipt times, ns of the node clock
        self.quiet = Silence()  # since activation or the last frame, node clock (core/silence)
        self.watching = False   # activated or a frame came: silence is measured
        self.silent = False
        self._prev = (0, 0)  # (frames, frames_lost) at the previous report

    def restart(self, now: Time) -> None:
        """Activation: silence is measured from now (from the first running clock under
        ``use_sim_time``)."""
        with self.lock:
            self.quiet, self.watching, self.silent = Silence(), True, False
            self.quiet.seen(_seconds(now))

    def received(self, now: Time, info: object, one_publisher: bool | None) -> bool:
        """Book a frame's arrival (``info``: its MessageInfo; ``one_publisher``: None when not
        checked this time); True when it ends a silence that was reported."""
        with self.lock:
            if one_publisher is not None:
                self.loss.set_single_publisher(one_publisher)
            self.loss.observe(info)
            self.quiet.seen(_seconds(now))
            self.watching = True
            self.stamps.append(now.nanoseconds)
            back, self.silent = self.silent, False
            return back

    def went_silent(self, now: Time, one_publisher: bool, warn_after_s: float) -> float | None:
        """Seconds without frames when they just reached ``warn_after_s`` (once per silence),
        else None. On ROS time: a clock that does not run yet (``use_sim_time`` before the
        first ``/clock``) or that went back restarts the watch (``core/silence.py``)."""
        with self.lock:
            self.loss.set_single_publisher(one_publisher)
            if not self.watching or self.silent:
                return None
            quiet = self.quiet.seconds(_seconds(now))
            if quiet < warn_after_s:
                return None
            self.silent = True
            return quiet

    def report(self, now: Time, *, configured: bool, active: bool, version: int,
               warn_after_s: float, guard: CallbackGuard, extra: dict[str, Any],
               shut_down: bool = False) -> tuple[PerceptionState, dict[str, Any]]:
        """The state for :func:`verdict` and the values for ``/diagnostics`` (``extra``: the
        feeds' counters); each call starts a new period for the frames lost in it."""
        with self.lock:
            lat = np.array(self.latency) * 1e3 if self.latency else np.array([np.nan])
            span = (self.stamps[-1] - self.stamps[0]) / 1e9 if len(self.stamps) > 1 else 0.0
            fps = (len(self.stamps) - 1) / span if span > 0 else 0.0
            quiet = self.quiet.seconds(_seconds(now)) if self.watching else 0.0
            lost_now = self.loss.lost - self._prev[1]
            seen_now = self.frames - self._prev[0] + lost_now
            self._prev = (self.frames, self.loss.lost)
            values = {"model_version": version, "frames": self.frames,
                      "bad_frames": self.bad_frames, "frames_lost": self.loss.lost,
                      "frames_while_inactive": self.while_inactive,
                      "fps": fps,
                      "latency_ms": float(np.mean(lat)),
                      "latency_p50_ms": float(np.percentile(lat, 50)),
                      "latency_p95_ms": float(np.percentile(lat, 95)),
                      "seconds_since_frame": quiet,
                      "swaps_ok": self.swaps_ok, "swaps_failed": self.swaps_failed,
                      "regions": self.regions, "forward_passes": self.forwards,
                      **extra, "last_error": self.last_error, **guard.values()}
            state = PerceptionState(
                configured, active, version, quiet, warn_after_s, self.frames, lost_now,
                seen_now, guard.total(), str(values.get("last_failure", "")), self.bad_frames,
                self.last_error, self.swaps_failed, self.configure_error, shut_down)
        return state, values


def _seconds(t: Time) -> float:
    return t.nanoseconds / 1e9
