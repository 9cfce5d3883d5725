"""Perception latency figures (no ROS here): frames answered and latency percentiles per phase.

The ROS driver (``scripts/latency_bench.py``) runs a camera process (``scripts/latency_camera.py``)
through the real nodes and records, for every frame, when it was published and when its
detections came back; this module turns those records into the numbers the issue asks for
(fraction answered, p50/p95 idle and during a tuning round), the table and the JSON, and reads
the camera's log (frames published, slots it skipped because it was late).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: Goals of issue 7: answered fraction, and p95 during a round relative to idle.
GOAL_ANSWERED = 0.95
GOAL_P95_RATIO = 1.5


@dataclass
class Phase:
    """One measuring window: frames sent in it and the latencies of those answered."""

    name: str
    sent: int
    answered: int
    p50_ms: float
    p95_ms: float
    mean_ms: float
    max_ms: float
    seconds: float

    @property
    def fraction(self) -> float:
        return self.answered / self.sent if self.sent else 0.0


def phase(name: str, sent_ns: Sequence[int], latency_s: dict[int, float],
          seconds: float) -> Phase:
    """``sent_ns``: stamps of the frames published in the window; ``latency_s``: stamp ->
    seconds from publishing to receiving its detections (frames never answered are absent)."""
    lat = np.array([latency_s[s] for s in sent_ns if s in latency_s], dtype=float) * 1e3
    if lat.size == 0:
        lat = np.array([np.nan])
        answered = 0
    else:
        answered = int(lat.size)
    return Phase(name, len(sent_ns), answered, float(np.percentile(lat, 50)),
                 float(np.percentile(lat, 95)), float(np.mean(lat)), float(np.max(lat)),
                 float(seconds))


@dataclass
class CameraLog:
    """What the camera process published: header stamps (ns) in order, and the slots it skipped
    as ``(stamp of the frame before, slots)``."""

    stamps: list[int]
    skips: list[tuple[int, int]]

    def sent_in(self, windows: Sequence[tuple[int, int]]) -> list[int]:
        """Stamps published inside any of ``windows`` (start, end ns, end excluded)."""
        return [s for s in self.stamps if any(a <= s < b for a, b in windows)]

    def skipped_in(self, windows: Sequence[tuple[int, int]]) -> int:
        return sum(n for s, n in self.skips if any(a <= s < b for a, b in windows))

    def max_gap_ms(self) -> float:
        """Longest time between two published frames (a stalled camera shows here)."""
        return float(np.max(np.diff(self.stamps)) / 1e6) if len(self.stamps) > 1 else 0.0


def read_camera_log(path: Path) -> CameraLog:
    """Parse the camera's log: one stamp per line, ``skip N`` after a late frame."""
    log = CameraLog([], [])
    for line in Path(path).read_text().splitlines():
        if line.startswith("skip "):
            log.skips.append((log.stamps[-1] if log.stamps else 0, int(line.split()[1])))
        elif line.strip():
            log.stamps.append(int(line))
    return log


def table(phases: Sequence[Phase]) -> str:
    head = (f"{'phase':<8} {'sent':>6} {'answered':>9} {'%':>6} {'p50 ms':>8} {'p95 ms':>8} "
            f"{'mean ms':>8} {'max ms':>8} {'s':>6}")
    rows = [head, "-" * len(head)]
    for p in phases:
        rows.append(f"{p.name:<8} {p.sent:>6} {p.answered:>9} {100 * p.fraction:>6.1f} "
                    f"{p.p50_ms:>8.1f} {p.p95_ms:>8.1f} {p.mean_ms:>8.1f} {p.max_ms:>8.1f} "
                    f"{p.seconds:>6.1f}")
    return "\n".join(rows)


def verdict(idle: Phase, busy: Phase) -> dict[str, object]:
    """The issue's goals, met or not (reported either way)."""
    ratio = busy.p95_ms / idle.p95_ms if idle.p95_ms > 0 else float("nan")
    return {"answered_idle_ok": idle.fraction >= GOAL_ANSWERED,
            "answered_round_ok": busy.fraction >= GOAL_ANSWERED,
            "p95_ratio": ratio, "p95_ratio_ok": bool(ratio <= GOAL_P95_RATIO)}


def write_json(path: Path, phases: Sequence[Phase], setup: dict[str, object],
               extra: dict[str, object] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"setup": setup,
           "phases": {p.name: {**asdict(p), "fraction": p.fraction} for p in phases},
           **(extra or {})}
    path.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    return path
