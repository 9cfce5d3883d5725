"""The latency benchmark's arithmetic (the ROS driver is scripts/latency_bench.py)."""

from __future__ import annotations

import json

import pytest

from etuner_ros.bench.latency import phase, table, verdict, write_json


def test_phase_counts_only_frames_of_the_window_and_takes_percentiles():
    sent = list(range(100))
    lat = {s: 0.010 + 0.001 * (s % 10) for s in sent if s % 20 != 0}  # 5 never answered
    lat[1000] = 9.0  # a frame of another window must not count
    p = phase("idle", sent, lat, 3.3)
    assert (p.sent, p.answered) == (100, 95) and p.fraction == pytest.approx(0.95)
    assert p.p50_ms == pytest.approx(15.0) and p.p95_ms == pytest.approx(19.0)
    assert p.max_ms == pytest.approx(19.0)


def test_no_answers_reads_as_zero_not_a_crash():
    p = phase("round", [1, 2, 3], {}, 1.0)
    assert p.answered == 0 and p.fraction == 0.0
    assert "round" in table([p])


def test_verdict_and_json(tmp_path):
    idle = phase("idle", [1, 2], {1: 0.01, 2: 0.01}, 1.0)
    busy = phase("round", [3, 4], {3: 0.02, 4: 0.02}, 1.0)
    v = verdict(idle, busy)
    assert v["p95_ratio"] == pytest.approx(2.0) and not v["p95_ratio_ok"]
    assert v["answered_idle_ok"] and v["answered_round_ok"]
    doc = json.loads(write_json(tmp_path / "x.json", [idle, busy], {"fps": 30},
                                {"verdict": v}).read_text())
    assert doc["phases"]["round"]["p95_ms"] == pytest.approx(20.0)
    assert doc["setup"]["fps"] == 30 and doc["verdict"]["p95_ratio_ok"] is False


def test_camera_log_windows_skips_and_gap(tmp_path):
    from etuner_ros.bench.latency import read_camera_log

    path = tmp_path / "camera.log"
    path.write_text("100\n200\nskip 3\n600\n700\n\n")
    log = read_camera_log(path)
    assert log.stamps == [100, 200, 600, 700] and log.skips == [(200, 3)]
    assert log.sent_in([(150, 650)]) == [200, 600]  # end excluded, start included
    assert log.sent_in([(0, 150), (700, 800)]) == [100, 700]
    assert log.skipped_in([(150, 650)]) == 3 and log.skipped_in([(600, 800)]) == 0
    assert log.max_gap_ms() == pytest.approx(400 / 1e6)
