"""linear_cka: 1 for identical or rotated/scaled copies, low for unrelated data, safe edges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from etuner_ros.core.cka import linear_cka

torch.set_num_threads(1)  # shared CPU: one thread is faster and steadier


def test_identical_is_one():
    x = np.random.default_rng(0).normal(size=(20, 7))
    assert linear_cka(x, x) == 1.0
    assert linear_cka(x, x.copy()) == 1.0


def test_invariant_to_rotation_scale_and_shift():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 8))
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(x, 5.0 * x @ q + 3.0) == pytest.approx(1.0, abs=1e-9)


def test_unrelated_is_low_and_perturbation_lowers_it():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 32))
    assert linear_cka(x, rng.normal(size=(64, 32))) < 0.7
    slight = linear_cka(x, x + 0.05 * rng.normal(size=x.shape))
    strong = linear_cka(x, x + 1.0 * rng.normal(size=x.shape))
    assert 1.0 > slight > strong


def test_flattens_tensors_per_sample():
    t = torch.randn(10, 4, 3, 3)
    assert linear_cka(t, t.clone()) == 1.0
    assert linear_cka(t, t.reshape(10, -1).numpy()) == pytest.approx(1.0)


def test_constant_inputs_are_defined():
    c = np.ones((10, 5))
    x = np.random.default_rng(3).normal(size=(10, 5))
    assert linear_cka(c, 2 * c) == 1.0  # nothing distinguishes them: unchanged
    assert linear_cka(c, x) == 0.0
    assert linear_cka(x, c) == 0.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        linear_cka(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError):
        linear_cka(np.full((3, 2), np.nan), np.zeros((3, 2)))
