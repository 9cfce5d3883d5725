"""--quick benchmark end to end, on the synthetic stream and on a folder-of-images stream."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from etuner_ros.bench.__main__ import main
from etuner_ros.core.policies import POLICY_NAMES


def check_results(out):
    res = json.loads((out / "results.json").read_text())
    assert set(res["policies"]) == set(POLICY_NAMES)
    for name, p in res["policies"].items():
        for key in ("tune_seconds", "energy_joules", "energy_source", "rounds", "avg_accuracy",
                    "accuracy_per_scenario", "train_flops", "deferred", "merged"):
            assert key in p, (name, key)
        assert 0.0 <= p["avg_accuracy"] <= 1.0
        assert p["tune_seconds"] >= 0 and p["energy_joules"] >= 0
    assert res["policies"]["none"]["rounds"] == 0
    assert res["policies"]["immediate"]["rounds"] >= 1
    assert res["ratios"]["immediate"]["time_x"] == pytest.approx(1.0)
    assert res["ratios"]["immediate"]["accuracy_pts"] == 0.0
    assert res["stream"]["frames"] > 0
    png = (out / "benchmark.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    return res


def test_quick_synthetic(tmp_path):
    out = tmp_path / "out"
    assert main(["--quick", "--quiet", "--out", str(out), "--data-dir",
                 str(tmp_path / "cache")]) == 0
    res = check_results(out)
    assert len(res["stream"]["scenarios"]) >= 2


def test_quick_folder_stream(tmp_path):
    root = tmp_path / "home"
    rng = np.random.default_rng(0)
    for s, shift in (("a_day", 0), ("b_night", -90)):
        for c, colour in (("cup", (200, 40, 40)), ("book", (40, 40, 200))):
            d = root / s / c
            d.mkdir(parents=True)
            for i in range(8):
                img = np.clip(rng.normal(120, 10, (40, 48, 3)) + shift, 0, 255).astype(np.uint8)
                cv2.circle(img, (24, 20), 10 + i % 4, tuple(int(v + shift) for v in colour), -1)
                cv2.imwrite(str(d / f"{i}.png"), img)
    out = tmp_path / "out"
    assert main(["--quick", "--quiet", "--stream", str(root), "--out", str(out)]) == 0
    res = check_results(out)
    assert res["stream"]["scenarios"] == ["a_day", "b_night"]
