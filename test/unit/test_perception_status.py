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
