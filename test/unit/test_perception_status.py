"""The order of perception's /diagnostics verdicts (ros/perception_status.py)."""

from __future__ import annotations

from dataclasses import replace

from etuner_ros.ros.diagnostics import ERROR, OK, WARN
from etuner_ros.ros.perception_status import PerceptionState, verdict

GOOD = PerceptionState(configured=True, active=True, version=3, quiet_s=0.1, warn_after_s=5.0,
                       frames=10, lost_now=0, seen_now=10, failures=0, last_failure="",
                       bad_frames=0, last_error="", swaps_failed=0)


def test_each_problem_and_its_precedence():
    assert verdict(GOOD) == (OK, "serving v3")
    assert verdict(replace(GOOD, swaps_failed=1)) == (WARN, "serving v3")
    assert verdict(replace(GOOD, bad_frames=2, last_error="bad encoding")) == (
        WARN, "some frames dropped: bad encoding")
    assert verdict(replace(GOOD, failures=1, last_failure="image: boom", bad_frames=2,
                           last_error="x")) == (WARN, "serving v3; callback failures: image: boom")
    assert verdict(replace(GOOD, lost_now=3, seen_now=13, failures=1)) == (
        WARN, "serving v3; lost 3 of 13 frames")
    assert verdict(replace(GOOD, frames=0, lost_now=3)) == (WARN, "no frames received yet")
    assert verdict(replace(GOOD, quiet_s=6.0, frames=0)) == (WARN, "no frames for 6 s")
    assert verdict(replace(GOOD, active=False, quiet_s=60.0)) == (WARN, "inactive (model v3 "
                                                                        "loaded)")
    assert verdict(replace(GOOD, configured=False, active=False, last_error="no file")) == (
        WARN, "not configured no file")
    assert verdict(replace(GOOD, configured=False, active=False, last_error="x",
                           configure_error="checkpoint /m.pt: bad format")) == (
        ERROR, "configure failed: checkpoint /m.pt: bad format")


def test_silence_is_measured_on_ros_time_from_activation():
    """Perception's no-frames watch follows ``core/silence.py``: nothing before activation,
    nothing while the sim clock does not run, and a clock that went back (a bag replayed
    again) restarts the watch, so the warning comes ``warn`` seconds into the replay (it used
    to wait until the clock passed the old time again)."""
    from rclpy.time import Time

    from etuner_ros.ros.perception_status import PerceptionStats

    def t(s: float) -> Time:
        return Time(nanoseconds=int(s * 1e9))

    warn = 5.0
    s = PerceptionStats()
    assert s.went_silent(t(100), True, warn) is None  # not active: not watched
    s.restart(t(0))  # activated under use_sim_time before the first /clock
    assert s.went_silent(t(0), True, warn) is None
    assert s.went_silent(t(1000), True, warn) is None  # the clock starts: watch from here
    assert s.went_silent(t(1004), True, warn) is None
    assert s.went_silent(t(1005), True, warn) == 5.0  # once per silence
    assert s.went_silent(t(1020), True, warn) is None
    assert s.received(t(1021), {}, True)  # a frame ends the reported silence
    assert s.went_silent(t(500), True, warn) is None  # the clock went back: watch again
    assert s.went_silent(t(505), True, warn) == 5.0
