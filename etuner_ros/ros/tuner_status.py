"""The tuner node's state as the outside sees it: the ``~/status`` message and the verdict on
``/diagnostics``.

Both are built from one ``TunerNode.status_dict()`` snapshot (the engine's status with the
node's state, counters and callback failures over it), so the topic and the diagnostics never
disagree about the state they describe.
"""

from __future__ import annotations

import math
from typing import Any

from etuner_ros.msg import TunerStatus
from etuner_ros.ros.diagnostics import ERROR, OK, WARN


def status_message(s: dict[str, Any], policy: str, kept_versions: list[int]) -> TunerStatus:
    """``~/status`` from a ``status_dict()`` snapshot; the caller stamps the header."""
    return TunerStatus(state=s["state"], policy=policy,
                       pending_samples=int(s.get("pending", 0)),
                       rounds_done=s["rounds_done"],
                       rounds_deferred=int(s.get("rounds_deferred", 0)),
                       rounds_merged=int(s.get("rounds_merged", 0)),
                       last_round_duration=float(s["last_round_duration"]),
                       last_val_accuracy=float(s["last_val_accuracy"]),
                       active_version=int(s["active_version"]),
                       last_decision_reason=s["reason"],
                       frozen_groups=[str(g) for g in s.get("frozen_groups", [])],
                       change_score=float(s.get("change_score", 0.0)),
                       change_detected=bool(s.get("change_detected", False)),
                       recent_accuracy=_float(s.get("recent_accuracy")),
                       trained_through=int(s["trained_through"]),
                       kept_versions=list(kept_versions))


def diagnosis(s: dict[str, Any], seconds_since_frame: float, *, ready: bool,
              no_frames_warn_s: float, failures: int) -> tuple[bytes, str, dict[str, Any]]:
    """Level, message and values for ``/diagnostics`` from a ``status_dict()`` snapshot.

    ``ready``: an engine exists (perception's model_info arrived). A silent camera is a WARN,
    not an ERROR: tuning on labels still works, but change detection and BatchNorm adaptation
    do not, and a wrong remapping of ``image`` looks exactly like this.
    """
    values = {k: v for k, v in s.items() if not isinstance(v, (dict, list))}
    values["seconds_since_frame"] = seconds_since_frame
    state = s["state"]
    if state == TunerStatus.STATE_ERROR:
        return ERROR, s["last_error"], values
    if not ready:
        return WARN, s["reason"], values
    if seconds_since_frame > no_frames_warn_s:
        return WARN, (f"no camera frame for {seconds_since_frame:.0f} s: no change detection, "
                      "no BatchNorm adaptation (is 'image' remapped?)"), values
    if failures:
        return WARN, f"{state}: {failures} callback failure(s)", values
    return OK, f"{state}: {s['reason']}", values


def _float(v: Any) -> float:
    """NaN for a missing or NaN value (the message field has no 'unknown')."""
    return float("nan") if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
