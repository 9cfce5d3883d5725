"""LabelBook: every label goes to one place by id, the reservoir keeps old scenes, accuracy
evidence is per lineage (a label predicted by a model no longer serving does not count)."""

from __future__ import annotations

import numpy as np
import torch

from etuner_ros.core.changes import InputShift
from etuner_ros.core.label_book import LabelBook
from etuner_ros.core.store import Sample
from etuner_ros.core.trainer import is_holdout


def book(**kw) -> LabelBook:
    args = dict(holdout_fraction=0.2, val_size=8, replay_capacity=10, accuracy_window=6,
                accuracy_min=2, seed=0)
    args.update(kw)
    return LabelBook(["a", "b"], **args)


def samples(ids, label="a", predicted=None, version=None):
    img = np.zeros((4, 4, 3), np.uint8)
    return [Sample(i, img, label, 0, predicted=predicted, model_version=version) for i in ids]


def test_each_label_is_held_out_or_pending_by_its_id_and_new_classes_are_added():
    b = book()
    ids = list(range(1, 41))
    b.add(samples(ids, label="c"), torch.zeros(40, 3, 2, 2), 1.0, ["a", "b"])
    held = [i for i in ids if is_holdout(i, 0.2)]
    assert [it.id for it in b.holdout] == held[-8:]
    assert len(b.pending) == 40 - len(held) and "c" in b.class_names
    new, merged = b.take_pending()
    assert len(new) == 40 - len(held) and merged == 0 and not b.pending


def test_reservoir_is_bounded_and_keeps_early_items():
    b = book(holdout_fraction=0.0)
    for k in range(20):
        b.add(samples(range(10 * k, 10 * k + 10)), torch.zeros(10, 3, 2, 2), k, ["a", "b"])
        new, _ = b.take_pending()
        b.remember(new)
    assert len(b.replay) == 10
    assert min(it.id for it in b.replay) < 100  # the first scene is still represented


def test_accuracy_evidence_counts_only_the_serving_lineage():
    b = book(holdout_fraction=0.0)
    b.add(samples([1, 2], predicted="b", version=1), torch.zeros(2, 3, 2, 2), 0, ["a", "b"])
    assert b.recent_accuracy() == 0.0
    b.new_lineage(2)
    assert b.recent_accuracy() is None
    b.add(samples([3, 4], predicted="b", version=1), torch.zeros(2, 3, 2, 2), 0, ["a", "b"])
    b.add(samples([5, 6], predicted="a", version=2), torch.zeros(2, 3, 2, 2), 0, ["a", "b"])
    assert b.recent_accuracy() == 1.0  # version 1's late labels did not count


def test_after_a_rollback_the_newer_models_late_labels_are_not_its_evidence():
    b = book(holdout_fraction=0.0)
    b.new_lineage(3)
    b.same_weights(4)  # a BN-only candidate of v3's weights
    b.new_lineage(7)
    b.new_lineage(3)  # rolled back to v3
    b.add(samples([1, 2], predicted="b", version=7), torch.zeros(2, 3, 2, 2), 0, ["a", "b"])
    assert b.recent_accuracy() is None  # v7's late labels say nothing about v3
    b.add(samples([3, 4], predicted="a", version=3), torch.zeros(2, 3, 2, 2), 0, ["a", "b"])
    assert b.recent_accuracy() == 1.0


def test_a_rollback_restores_the_input_reference_of_the_version_it_serves_again():
    s = InputShift(min_frames=2, serving=1)
    dark, bright = torch.zeros(4, 3, 2, 2), torch.ones(4, 3, 2, 2)
    s.update(dark)  # v1's reference: dark
    s.candidate_adapted(2, bright)
    s.deployed(2)
    assert s.update(bright) == 0.0 and s.update(dark) == 1.0
    s.deployed(1)  # rollback: v1's own reference, not v2's
    assert s.update(dark) == 0.0 and s.update(bright) == 1.0
    s.deployed(2)  # and forward again
    assert s.update(bright) == 0.0


def test_input_shift_reference_moves_only_when_the_adapted_version_serves():
    s = InputShift(min_frames=2)
    dark, bright = torch.zeros(4, 3, 2, 2), torch.ones(4, 3, 2, 2)
    s.update(dark)
    assert s.update(bright) == 1.0
    s.candidate_adapted(2, dark)
    s.discard(2)
    s.deployed(2)  # rejected statistics never become the reference
    assert s.shift == 1.0
    s.candidate_adapted(3, bright)
    s.deployed(3)
    assert s.shift == 0.0 and s.update(bright) == 0.0
    s.update(dark)
    s.deployed(3)  # again: nothing left to adopt, the shift stays measured
    assert s.shift == 1.0


def test_blocks_of_time_are_held_out_whole_so_near_copies_never_straddle_train_and_val():
    """A robot sees one object for seconds: labels of one block of time are trained on or
    held out together (label_book's docstring says why)."""
    b = book(holdout_block_s=4.0, val_size=1000)
    img = np.zeros((4, 4, 3), np.uint8)
    # 8 labels per second for 200 s: stamps in ns, ids unrelated to time
    stamps = [int(k / 8 * 1e9) for k in range(1600)]
    b.add([Sample(10_000 + k, img, "a", st) for k, st in enumerate(stamps)],
          torch.zeros(1600, 3, 2, 2), 1.0, ["a", "b"])
    held_blocks = {int(it.stamp // 4.0) for it in b.holdout}
    pending_blocks = {int(it.stamp // 4.0) for it in b.pending}
    assert held_blocks and pending_blocks and not held_blocks & pending_blocks
    assert 0.05 < len(held_blocks) / 50 < 0.4  # about holdout_fraction of the 50 blocks
    # blocks off: the sample id decides, as before
    nb = book(holdout_block_s=0.0)
    nb.add(samples(range(1, 41)), torch.zeros(40, 3, 2, 2), 1.0, ["a", "b"])
    assert len(nb.pending) == 40 - sum(is_holdout(i, 0.2) for i in range(1, 41))
