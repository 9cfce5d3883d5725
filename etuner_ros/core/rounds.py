"""Round execution: what a round trains on, and the work it does, charged to its cost.

A *training round* (labels pending) works on a clone of the serving model, in this order:

1. AdaBN (policies with ``adabn_in_rounds``): the clone adopts the BN statistics of the newest
   camera frames, so the training that follows (BN frozen) adapts weights to re-normalised
   features. Charged as ``adabn``.
2. SimFreeze reference (policies with ``uses_simfreeze``, rounds that train at least
   ``check_every`` sample-passes): the probe is the round's newest new labels (replay fills it
   up to ``probe_size`` when they are fewer; it used to take the oldest); the clone's
   group outputs on it, after AdaBN so new statistics are not mistaken for learning. Charged
   as ``probe``.
3. Pseudo-labels (semi-supervised policies, when the tuner's gate allowed them): confident
   predictions of the clone on the newest unlabelled frames. Charged as ``pseudo``.
4. Training on new labels + a replay sample (+ pseudo-labels), the frozen prefix cached, and
   the validation gate (``trainer.train_round``). Charged as ``train`` and ``validate``.
5. SimFreeze check: group outputs after training against step 2. Charged as ``probe``.

A *BN-only round* (no labels trained on: pending labels stay pending) clones the serving model,
re-estimates its BN statistics on the newest camera frames and passes the gate of
:mod:`etuner_ros.core.gate`. Charged as ``adabn`` and ``validate``.

Nothing here touches the serving model or the tuner's state; the tuner snapshots the inputs
under its lock and commits the bookkeeping afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from etuner_ros.core.adabn import adapt_bn_front
from etuner_ros.core.costs import RoundCost
from etuner_ros.core.gate import Verdict, bn_round_gate
from etuner_ros.core.label_book import LabelItem
from etuner_ros.core.model import ModelBundle, layer_groups
from etuner_ros.core.simfreeze import SimFreeze
from etuner_ros.core.trainer import (
    TrainConfig,
    TrainOutcome,
    group_flops,
    pseudo_label,
    train_round,
)


@dataclass
class TrainingInputs:
    """A training round's snapshot, taken under the tuner's lock."""

    current: ModelBundle
    names: list[str]
    new: list[LabelItem]
    replay: list[LabelItem]
    val: list[LabelItem]
    bn_frames: torch.Tensor | None     # AdaBN frames (None: no AdaBN)
    bn_momentum: float                 # 1.0 replaces BN statistics, less blends
    bn_depth: int                      # front layer groups whose BN statistics adapt (0: all)
    unlabelled: torch.Tensor | None    # pseudo-label candidates (None: no pseudo-labels)
    n_pseudo_max: int
    frozen: int                        # SimFreeze prefix to freeze
    simfreeze: SimFreeze | None        # None: the policy does not use SimFreeze
    propagated: tuple[torch.Tensor, torch.Tensor] | None = None  # (x, y) labels propagated
    #                                    in time from new labels (semi_supervised.propagated)


@dataclass
class TrainingDone:
    outcome: TrainOutcome
    n_pseudo: int
    probed: bool


def group_outputs(bundle: ModelBundle, probe: torch.Tensor, start: int = 0,
                  stop: int | None = None) -> list[torch.Tensor]:
    """Outputs of groups ``start..stop-1`` (default: every group but the head) on ``probe``,
    which must already be the output of group ``start - 1`` (the raw probe for 0)."""
    bundle.model.eval()
    groups = layer_groups(bundle.model, bundle.arch)[:-1]
    stop = len(groups) if stop is None else stop
    outs, z = [], probe
    with torch.no_grad():
        for _, g in groups[start:stop]:
            z = g(z)
            outs.append(z)
    return outs


def run_training(inp: TrainingInputs, cfg: TrainConfig, check_every: int, cost: RoundCost,
                 progress: Callable[[str], None] | None = None) -> TrainingDone:
    """Steps 1-5 of the module docstring; FLOPs are charged to ``cost``."""
    cand = inp.current.clone()
    gf = group_flops(cand)
    if inp.bn_frames is not None:
        cost.add_flops("adabn", adapt_bn_front(cand, inp.bn_frames, inp.bn_momentum,
                                               inp.bn_depth))
    items = inp.new + inp.replay
    sf = inp.simfreeze
    probed = sf is not None and not sf.done and len(items) >= 2 and \
        len(items) * cfg.epochs >= check_every
    if probed:
        size = sf.config.probe_size  # the newest new labels, replay only to fill up
        sf.set_probe(torch.stack([it.x for it in (inp.new[-size:] + inp.replay)[:size]]),
                     keep_history=True)
        k, cap = inp.frozen, sf.cap
        z_k = group_outputs(cand, sf.probe, 0, k)[-1] if k else sf.probe  # unchanged by training
        sf.set_reference(group_outputs(cand, z_k, k, cap), k)
        cost.add_flops("probe", sf.probe.shape[0] * sum(gf[:cap]))
    size = cand.input_size
    x = torch.stack([it.x for it in items]) if items else torch.zeros(0, 3, size, size)
    y = torch.tensor([inp.names.index(it.label) for it in items], dtype=torch.long)
    w = torch.ones(len(items))
    if inp.propagated is not None and inp.propagated[0].shape[0]:
        px, py = inp.propagated
        x, y = torch.cat([x, px]), torch.cat([y, py])
        w = torch.cat([w, torch.full((px.shape[0],), cfg.propagate_weight)])
    n_pseudo = 0
    if inp.unlabelled is not None and inp.n_pseudo_max > 0:
        px, py, _ = pseudo_label(cand, inp.unlabelled, cfg.pseudo_threshold, inp.n_pseudo_max)
        cost.add_flops("pseudo", inp.unlabelled.shape[0] * sum(gf))
        n_pseudo = int(px.shape[0])
        if n_pseudo:
            x, y = torch.cat([x, px]), torch.cat([y, py])
            w = torch.cat([w, torch.full((n_pseudo,), cfg.pseudo_weight)])
    vx = torch.stack([it.x for it in inp.val]) if inp.val else x[:0]
    vy = torch.tensor([inp.names.index(it.label) for it in inp.val], dtype=torch.long)
    consist = inp.unlabelled if cfg.consistency_weight > 0 else None
    out = train_round(inp.current, inp.names, x, y, w, vx, vy, inp.frozen, cfg, progress,
                      candidate=cand, unlabelled=consist)
    val_flops = 2.0 * int(vx.shape[0]) * sum(group_flops(out.candidate))
    cost.add_flops("validate", val_flops)
    cost.add_flops("train", max(0.0, out.train_flops - val_flops))
    if probed and out.n_train * out.epochs_run >= check_every:
        sf.check(group_outputs(out.candidate, z_k, k, cap), k)
        cost.add_flops("probe", sf.probe.shape[0] * sum(gf[k:cap]))
    return TrainingDone(out, n_pseudo, probed)


def run_bn_only(current: ModelBundle, frames: torch.Tensor, val: list[LabelItem],
                half_life: float, use_labels: bool, cost: RoundCost, momentum: float = 1.0,
                balanced: bool = False, depth: int = 0) -> tuple[ModelBundle, Verdict]:
    """Clone, re-estimate BN on ``frames``, gate; see the module docstring."""
    cand = current.clone()
    cand.version = current.version + 1
    gf = sum(group_flops(cand))
    cost.add_flops("adabn", adapt_bn_front(cand, frames, momentum, depth))
    verdict = bn_round_gate(cand, current, val, frames, half_life, use_labels=use_labels,
                            balanced=balanced)
    cost.add_flops("validate", 2.0 * verdict.images * gf)
    return cand, verdict
