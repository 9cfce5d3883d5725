"""DriftDetector: quiet on one distribution, fires on a shift (after confirm), hysteresis,
reset_reference with cool-down."""

from __future__ import annotations

import numpy as np

from etuner_ros.core.drift import DriftConfig, DriftDetector


def feed(det, rng, mean, n, step=8, d=16):
    scores = []
    for _ in range(n // step):
        scores.append(det.update(rng.normal(loc=mean, size=(step, d))))
    return scores


def test_stable_stream_never_changes():
    rng = np.random.default_rng(0)
    det = DriftDetector()
    scores = feed(det, rng, 0.0, 1200)
    assert not det.changed
    assert max(scores) < det.config.on_threshold


def test_shift_is_detected_then_reset_absorbs_it():
    rng = np.random.default_rng(1)
    det = DriftDetector(DriftConfig(window=32, reference=64, confirm=2, cooldown=8))
    feed(det, rng, 0.0, 160)
    assert not det.changed
    feed(det, rng, 1.0, 64)
    assert det.changed and det.score > det.config.on_threshold
    new_normal = rng.normal(loc=1.0, size=(64, 16))
    det.reset_reference(new_normal)
    assert not det.changed and det.score == 0.0
    feed(det, rng, 1.0, 200)
    assert not det.changed  # the shifted distribution is the new normal


def test_confirm_needs_consecutive_updates():
    rng = np.random.default_rng(2)
    det = DriftDetector(DriftConfig(window=16, reference=64, min_recent=16, confirm=3))
    feed(det, rng, 0.0, 64)
    det.update(rng.normal(loc=3.0, size=(16, 16)))
    assert det.score > det.config.on_threshold and not det.changed
    det.update(rng.normal(loc=3.0, size=(1, 16)))
    det.update(rng.normal(loc=3.0, size=(1, 16)))
    assert det.changed


def test_hysteresis_keeps_flag_until_score_falls_below_off():
    rng = np.random.default_rng(3)
    cfg = DriftConfig(window=16, reference=64, confirm=1, on_threshold=4.0, off_threshold=2.0)
    det = DriftDetector(cfg)
    feed(det, rng, 0.0, 64)
    det.update(rng.normal(loc=2.0, size=(16, 16)))
    assert det.changed
    seen_between = False
    for _ in range(64):  # back to the reference distribution, one frame at a time
        det.update(rng.normal(loc=0.0, size=(1, 16)))
        if det.score >= cfg.off_threshold:
            assert det.changed  # still above "off": the flag holds even below "on"
            seen_between |= det.score < cfg.on_threshold
        if not det.changed:
            break
    assert seen_between and not det.changed


def test_cooldown_blocks_immediate_retrigger():
    rng = np.random.default_rng(4)
    det = DriftDetector(DriftConfig(window=16, reference=32, confirm=1, cooldown=1000))
    det.reset_reference(rng.normal(size=(32, 16)))
    feed(det, rng, 5.0, 64)
    assert det.score > det.config.on_threshold and not det.changed
