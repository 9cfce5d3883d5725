"""The simulated caregiver: argument checks, feedback kinds, rates, determinism."""

from __future__ import annotations

import pytest

from etuner_ros.sim.caregiver import Caregiver, Feedback


@pytest.mark.parametrize("kwargs", [{"fraction": -0.1}, {"fraction": 1.5},
                                    {"confirm_fraction": 2.0}, {"fraction": float("nan")},
                                    {"fraction": "0.5"}])
def test_rejects_bad_fractions(kwargs):
    with pytest.raises(ValueError, match="fraction"):
        Caregiver(**kwargs)


def test_correction_when_wrong_confirmation_when_right():
    cg = Caregiver(fraction=1.0, seed=0, confirm_fraction=1.0)
    assert cg.feedback("cup", "book") == Feedback("cup", confirms=False)
    assert cg.feedback("cup", "cup") == Feedback("cup", confirms=True)
    assert cg.feedback("cup", None) == Feedback("cup", confirms=False)
    assert cg.stats() == {"frames": 3, "corrections": 2, "confirmations": 1}


def test_edge_fractions():
    silent = Caregiver(fraction=0.0)
    assert all(silent.feedback("cup", p) is None for p in ("cup", "keys") * 50)
    never_confirms = Caregiver(fraction=1.0, confirm_fraction=0.0)
    assert all(never_confirms.feedback("cup", "cup") is None for _ in range(50))
    assert all(never_confirms.feedback("cup", "keys") is not None for _ in range(50))


def test_rates_match_the_fractions():
    cg = Caregiver(fraction=0.2, seed=3, confirm_fraction=0.5)
    n = 5000
    wrong = sum(cg.feedback("cup", "keys") is not None for _ in range(n)) / n
    right = sum(cg.feedback("cup", "cup") is not None for _ in range(n)) / n
    assert 0.17 < wrong < 0.23
    assert 0.07 < right < 0.13


def test_deterministic_per_seed_and_independent_of_predictions():
    def picked(seed, predicted):
        cg = Caregiver(fraction=0.3, seed=seed, confirm_fraction=1.0)
        return [cg.feedback("cup", predicted) is not None for _ in range(300)]

    assert picked(1, "cup") == picked(1, "cup")
    assert picked(1, "cup") == picked(1, "keys")  # which frames are looked at: same for any model
    assert picked(1, "cup") != picked(2, "cup")


def test_explicit_keys_tie_decisions_to_frames():
    a = Caregiver(fraction=0.5, seed=4, confirm_fraction=1.0)
    b = Caregiver(fraction=0.5, seed=4, confirm_fraction=1.0)
    seq = [a.feedback("cup", "keys") for _ in range(40)]
    skipping = [b.feedback("cup", "keys", key=k) for k in range(0, 40, 2)]
    assert skipping == seq[::2]
    assert [b("cup", "keys", key=k) for k in (7, 3)] == [seq[7], seq[3]]  # __call__, any order
