"""SimFreeze: unchanged groups freeze front to back (never the head), a changing group stops the
prefix, unfreeze_all thaws."""

from __future__ import annotations

import pytest
import torch

from etuner_ros.core.simfreeze import SimFreeze, SimFreezeConfig

torch.set_num_threads(1)  # shared CPU: one thread is faster and steadier

NAMES = ["g0", "g1", "g2", "head"]


def outs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(16, 4, 3, 3, generator=g) for _ in range(3)]


def test_identical_representations_freeze_all_but_head():
    sf = SimFreeze(NAMES, SimFreezeConfig(threshold=0.99, patience=1, min_trainable=1))
    o = outs()
    assert sf.check(o) == 0  # first check only records
    assert sf.check([t.clone() for t in o]) == 3
    assert sf.frozen_groups == ["g0", "g1", "g2"] and "head" not in sf.frozen_groups


def test_patience_counts_consecutive_checks():
    sf = SimFreeze(NAMES, SimFreezeConfig(threshold=0.99, patience=2, min_trainable=1))
    o = outs()
    sf.check(o)
    assert sf.check(o) == 0
    assert sf.check(o) == 3


def test_changing_group_blocks_the_groups_behind_it():
    sf = SimFreeze(NAMES, SimFreezeConfig(threshold=0.99, patience=1, min_trainable=1))
    a = outs(0)
    sf.check(a)
    b = [a[0].clone(), outs(7)[1], a[2].clone()]  # g1 changed completely
    assert sf.check(b) == 1
    assert sf.frozen_groups == ["g0"]


def test_unfreeze_all_thaws_and_requires_new_evidence():
    sf = SimFreeze(NAMES, SimFreezeConfig(threshold=0.99, patience=1, min_trainable=1))
    o = outs()
    sf.check(o)
    sf.check(o)
    assert sf.frozen_prefix == 3
    sf.unfreeze_all()
    assert sf.frozen_prefix == 0 and sf.frozen_groups == []
    assert sf.check(o) == 3  # stable again at the next check


def test_wrong_number_of_outputs_raises():
    sf = SimFreeze(NAMES)  # min_trainable 2: g0, g1 may freeze
    with pytest.raises(ValueError):
        sf.check(outs()[:1])
    with pytest.raises(ValueError):
        sf.check(outs(), start=1)  # g1..g3: more groups than there are
    assert sf.check(outs()[:2]) == 0  # the groups that may freeze are enough


def test_checks_skip_frozen_groups_and_stop_when_done():
    sf = SimFreeze(NAMES, SimFreezeConfig(threshold=0.99, patience=1, min_trainable=2))
    o = outs()
    sf.set_reference(o[:2])
    assert sf.check([o[0].clone(), outs(7)[1]]) == 1 and not sf.done
    sf.set_reference([o[1]], start=1)  # g0 frozen: only g1 is probed
    assert sf.check([o[1].clone()], start=1) == 2 and sf.done


def test_reference_before_training_measures_what_the_round_moved():
    sf = SimFreeze(NAMES, SimFreezeConfig(min_trainable=1))  # default threshold, patience 1
    before = outs()
    sf.set_reference(before)
    moved = [before[0].clone(), outs(seed=7)[1], before[2].clone()]
    assert sf.checks == 0 and sf.check(moved) == 1  # g1 moved: it and g2 behind it train
    sf.unfreeze_all()
    assert sf.frozen_prefix == 0
    sf.set_reference(before)
    assert sf.check([t.clone() for t in before]) == 3  # re-freezes after one quiet round


def test_the_back_groups_never_freeze_and_a_new_probe_keeps_the_counts():
    sf = SimFreeze(NAMES, SimFreezeConfig(threshold=0.99, patience=2, min_trainable=2))
    o = outs()
    sf.set_probe(torch.zeros(4, 3, 8, 8))
    sf.set_reference(o)
    assert sf.check([t.clone() for t in o]) == 0  # one stable check, patience 2
    sf.set_probe(torch.ones(4, 3, 8, 8), keep_history=True)  # next round's frames
    sf.set_reference(o)
    assert sf.check([t.clone() for t in o]) == 2  # g0, g1; g2 and the head keep training
    assert sf.frozen_groups == ["g0", "g1"]
    sf.set_probe(torch.ones(4, 3, 8, 8))  # without keep_history: counts restart
    assert sf.stable == [0, 0, 0]
