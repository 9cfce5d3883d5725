"""Policy rules: each fires on its own evidence, and every decision says why."""

from __future__ import annotations

import pytest

from etuner_ros.core.policies import POLICY_NAMES, Observation, make_policy


def obs(**kw) -> Observation:
    base = dict(now=100.0, pending_labels=10, new_labels_since_decide=2,
                seconds_since_last_round=20.0, seconds_since_oldest_pending=10.0,
                inference_fps=8.0, recent_accuracy=0.95, change_score=0.5,
                change_detected=False)
    base.update(kw)
    return Observation(**base)


def test_registry_builds_every_policy_and_rejects_unknown():
    assert set(POLICY_NAMES) == {"none", "immediate", "periodic", "lazytune", "simfreeze",
                                 "etuner", "adabn", "immediate_adabn", "adabn_memory"}
    for name in POLICY_NAMES:
        p = make_policy(name)
        assert p.name == name
        assert p.decide(obs()).reason
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("sometimes")
    with pytest.raises(ValueError, match="bad parameters"):
        make_policy("periodic", nonsense=1)


def test_flags():
    assert make_policy("etuner").uses_simfreeze and make_policy("etuner").uses_semi_supervised
    assert make_policy("simfreeze").uses_simfreeze
    assert not make_policy("simfreeze").uses_semi_supervised
    assert not make_policy("lazytune").uses_simfreeze
    assert not make_policy("immediate").uses_drift


def test_none_never_and_immediate_always():
    assert not make_policy("none").decide(obs(pending_labels=500)).tune
    assert make_policy("immediate").decide(obs(pending_labels=1)).tune
    assert not make_policy("immediate").decide(obs(pending_labels=0)).tune


def test_periodic_waits_for_its_period():
    p = make_policy("periodic", period_s=30)
    assert not p.decide(obs(seconds_since_last_round=10)).tune
    assert p.decide(obs(seconds_since_last_round=31)).tune


@pytest.mark.parametrize("name", ["lazytune", "etuner"])
def test_stable_accurate_model_defers(name):
    d = make_policy(name).decide(obs(pending_labels=10))
    assert not d.tune and d.reason.startswith("defer")
    assert "10/" in d.reason


@pytest.mark.parametrize("name", ["lazytune", "etuner"])
def test_scenario_change_tunes_soon_and_unfreezes(name):
    p = make_policy(name)
    d = p.decide(obs(pending_labels=p.min_labels, change_detected=True, change_score=7.0))
    assert d.tune and d.unfreeze and "scenario change" in d.reason
    # ... but not on too few labels to learn from
    assert not p.decide(obs(pending_labels=p.min_labels - 1, change_detected=True)).tune


def test_staleness_bound_forces_a_round():
    p = make_policy("lazytune", max_wait_s=90)
    d = p.decide(obs(pending_labels=1, seconds_since_oldest_pending=95))
    assert d.tune and "staleness" in d.reason
    assert not p.decide(obs(pending_labels=1, seconds_since_oldest_pending=80)).tune


def test_accuracy_drop_tunes():
    p = make_policy("lazytune", acc_threshold=0.6, min_labels=6)
    assert p.decide(obs(recent_accuracy=0.3)).tune
    assert not p.decide(obs(recent_accuracy=0.8)).tune


def test_enough_labels_and_inference_intensity():
    p = make_policy("lazytune", batch_labels=40, fps_ref=8.0)
    assert p.decide(obs(pending_labels=40)).tune
    assert p.target(16.0) < p.target(8.0) < p.target(2.0)  # busier robot: merge less
    assert p.decide(obs(pending_labels=25, inference_fps=16.0)).tune
    assert not p.decide(obs(pending_labels=25, inference_fps=8.0)).tune


def test_simfreeze_policy_unfreezes_on_change():
    d = make_policy("simfreeze").decide(obs(change_detected=True, change_score=9.0))
    assert d.tune and d.unfreeze


def test_backoff_after_rejected_rounds_needs_more_labels():
    p = make_policy("lazytune", acc_threshold=0.6, min_labels=6, backoff=True)
    assert p.decide(obs(recent_accuracy=0.3, pending_labels=6)).tune
    assert not p.decide(obs(recent_accuracy=0.3, pending_labels=6, rejected_streak=1)).tune
    assert p.decide(obs(recent_accuracy=0.3, pending_labels=12, rejected_streak=1)).tune
    # a detected change still tunes promptly, whatever the streak
    assert p.decide(obs(pending_labels=6, rejected_streak=3, change_detected=True)).tune


def test_etuner_adapts_bn_only_when_the_camera_statistics_moved():
    p = make_policy("etuner", adapt_shift=0.3, min_labels=6)
    d = p.decide(obs(pending_labels=0, input_shift=0.8))
    assert d.tune and d.bn_only and "adapt BN" in d.reason
    assert not p.decide(obs(pending_labels=0, input_shift=0.1)).tune
    full = p.decide(obs(recent_accuracy=0.1, pending_labels=10, input_shift=0.8))
    assert full.tune and not full.bn_only  # a due full round includes AdaBN anyway


def test_adabn_never_trains_and_adapts_only_on_a_shift():
    p = make_policy("adabn")
    assert p.label_free and p.adapts_bn and not p.adabn_in_rounds
    assert not p.decide(obs(pending_labels=500, input_shift=0.1)).tune  # labels never train it
    d = p.decide(obs(pending_labels=0, input_shift=0.8))
    assert d.tune and d.bn_only and "adapt BN" in d.reason
    with pytest.raises(ValueError, match="adapt_shift"):
        make_policy("adabn", adapt_shift=0.0)


def test_immediate_adabn_is_immediate_plus_the_same_bn_rule():
    p, e = make_policy("immediate_adabn"), make_policy("etuner")
    assert p.adapts_bn and p.adabn_in_rounds and not p.label_free
    assert p.adapt_shift == e.adapt_shift  # the same BN re-estimation as etuner's
    d = p.decide(obs(pending_labels=3, input_shift=0.8))
    assert d.tune and not d.bn_only  # immediate's round first (it re-estimates BN itself)
    d = p.decide(obs(pending_labels=0, input_shift=0.8))
    assert d.tune and d.bn_only
    assert not p.decide(obs(pending_labels=0, input_shift=0.1)).tune


def test_label_memory_goes_to_every_policy_that_uses_labels():
    """The memory is a mechanism of its own: every labelled row has it (so no row's gain over
    another is the memory), adabn_memory shows it without a training round, and the two
    label-free rows stay without it."""
    with_memory = {n for n in POLICY_NAMES if make_policy(n).label_memory}
    assert with_memory == set(POLICY_NAMES) - {"none", "adabn"}
    a, m = make_policy("adabn"), make_policy("adabn_memory")
    assert m.label_free and m.adapts_bn
    o = obs(input_shift=0.9)
    assert a.decide(o) == m.decide(o)
