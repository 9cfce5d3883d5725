"""Temporal label propagation and FixMatch consistency: who gets a label, and when not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from etuner_ros.core.semi_supervised import consistency_loss, propagate_labels

torch.set_num_threads(1)


def test_frames_near_agreeing_labels_get_them_and_boundaries_get_nothing():
    lt = np.array([0.0, 1.0, 3.0])
    ly = np.array([2, 2, 5])
    ut = np.array([0.4, 0.9, 2.0, 2.6, 5.0])
    idx, y = propagate_labels(lt, ly, ut, max_dt=0.5)
    # 0.4 and 0.9 sit between two "2" labels; 2.0 is 1 s from both (none within 0.5);
    # 2.6 is near the "5"; 5.0 is far from everything
    assert idx.tolist() == [0, 1, 3] and y.tolist() == [2, 2, 5]
    idx, y = propagate_labels(lt, ly, ut, max_dt=1.0)
    # 2.0 now sees labels 2 (t=1) and 5 (t=3): a change of object, no label
    assert 2 not in idx.tolist() and dict(zip(idx.tolist(), y.tolist(), strict=True)) == {
        0: 2, 1: 2, 3: 5}


def test_similarity_gate_drops_frames_that_look_different():
    lt, ly = np.array([0.0]), np.array([1])
    ut = np.array([0.1, 0.2])
    lf = np.array([[1.0, 0.0]])
    uf = np.array([[0.9, 0.1], [0.0, 1.0]])
    idx, y = propagate_labels(lt, ly, ut, 0.5, lf, uf, min_similarity=0.8)
    assert idx.tolist() == [0] and y.tolist() == [1]
    with pytest.raises(ValueError, match="needs labelled_f"):
        propagate_labels(lt, ly, ut, 0.5, min_similarity=0.8)


def test_nothing_to_propagate_from_or_to():
    e = np.zeros(0)
    assert propagate_labels(e, e, np.array([1.0]), 1.0)[0].size == 0
    assert propagate_labels(np.array([1.0]), np.array([0]), e, 1.0)[0].size == 0
    with pytest.raises(ValueError):
        propagate_labels(np.array([1.0, 2.0]), np.array([0]), np.array([1.0]), 1.0)


def test_consistency_gate_and_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    x = torch.randn(6, 3, 8, 8)
    loss, n = consistency_loss(model, x, threshold=1.01, gen=torch.Generator().manual_seed(0))
    assert n == 0 and float(loss.detach()) == 0.0  # nobody is that confident: nothing is learnt
    loss, n = consistency_loss(model, x, threshold=0.0, gen=torch.Generator().manual_seed(0))
    assert n == 6 and float(loss.detach()) > 0
    loss.backward()
    assert model[1].weight.grad is not None and model[1].weight.grad.abs().sum() > 0
    e_loss, e_n = consistency_loss(model, x[:0], 0.5, torch.Generator())
    assert e_n == 0 and float(e_loss) == 0.0


def test_round_view_uses_stamped_labels_and_frames_only():
    from etuner_ros.core.frames import FramePools
    from etuner_ros.core.label_book import LabelItem
    from etuner_ros.core.semi_supervised import propagated

    pools = FramePools(4, 8)
    ux = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 3, 2, 2)
    pools.add_unlabelled(ux, [10.1, 10.3, float("nan"), 20.0])
    new = [LabelItem(1, torch.zeros(3, 2, 2), "cup", 12.0, 10.0),
           LabelItem(2, torch.zeros(3, 2, 2), "book", 12.0, None)]
    x, y = propagated(new, pools.unlabelled_stamped(), ["book", "cup"], 0.5)
    assert y.tolist() == [1, 1] and x[:, 0, 0, 0].tolist() == [0.0, 1.0]
    assert propagated(new[1:], pools.unlabelled_stamped(), ["book", "cup"], 0.5) is None
    assert propagated(new, None, ["book", "cup"], 0.5) is None
