"""The sklearn-digits stream: real scans on real photos, shipped with scikit-learn."""

from __future__ import annotations

import itertools

import numpy as np

from etuner_ros.bench import digits


def test_stream_layout_runs_and_shifts():
    s = digits.stream(seed=0, frames_per_scenario=40)
    assert len(s.frames) == 40 * len(digits.scenarios())
    assert s.scenarios[0] == "day_desk" and s.class_names == list(digits.CLASSES)
    assert s.description["recurring"] == {"day_desk_again": "day_desk"}
    first = [f for f in s.frames if f.scenario == "day_desk"]
    assert {f.label for f in first} <= set(digits.START_CLASSES)
    new = {f.label for f in s.frames if f.scenario == "new_digits"}
    assert new - set(digits.START_CLASSES)  # 8 or 9 appear
    runs = [len(list(g)) for _, g in itertools.groupby(f.label for f in first)]
    assert max(runs) >= 8  # a card stays in view for seconds
    for f in s.frames[:5]:
        assert f.image.shape == (digits.SIZE, digits.SIZE, 3) and f.image.dtype == np.uint8
    lamp = np.mean([f.image.mean() for f in s.frames if f.scenario == "warm_lamp"])
    day = np.mean([f.image.mean() for f in first])
    assert lamp < 0.6 * day


def test_stream_is_seeded():
    a, b = digits.stream(3, 8), digits.stream(3, 8)
    assert all(x.image.tobytes() == y.image.tobytes() for x, y in zip(a.frames, b.frames,
                                                                     strict=True))
    c = digits.stream(4, 8)
    assert any(x.image.tobytes() != y.image.tobytes() for x, y in zip(a.frames, c.frames,
                                                                     strict=True))


def test_start_data_is_balanced_over_known_classes():
    data = digits.start_data(0, 80)
    assert sorted({f.label for f in data}) == list(digits.START_CLASSES)
    assert all(sum(f.label == c for f in data) == 10 for c in digits.START_CLASSES)
