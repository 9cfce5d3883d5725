"""AdaBN: BatchNorm statistics re-estimated on unlabelled camera frames (Li et al., 2016).

Label-free; the ``adabn`` policy is nothing but this, and ``immediate_adabn`` and ``etuner`` run
it before training. Only statistics move, never a weight, so it costs forward passes only.
"""

from __future__ import annotations

import torch
from torch import nn

from etuner_ros.core.flops import group_flops
from etuner_ros.core.model import ModelBundle, layer_groups, split_forward


@torch.no_grad()
def adapt_bn(model: nn.Module, x: torch.Tensor, momentum: float = 1.0,
             prefix: nn.Module | None = None) -> int:
    """AdaBN: re-estimate BatchNorm running mean/var on preprocessed unlabelled frames ``x``
    (forward passes only, BN layers in train mode, no gradients, one batch so the statistics
    are exactly those of ``x``). ``momentum`` 1.0 replaces the old statistics, less blends
    ``new * momentum + old * (1 - momentum)``.

    ``prefix``: a front part of ``model`` (``split_forward``'s first half, sharing its modules):
    only its BN layers are re-estimated and only it runs. Shallow layers' statistics describe
    the light, noise and camera; deep layers' describe which objects are in view, and a robot's
    camera shows only a few objects in any short window, so re-estimating those collapses the
    classifier (see ``TunerConfig.adabn_depth``).

    Only BN buffers change (weights, biases and ``num_batches_tracked`` stay); the model is left
    in eval mode. Returns the number of BN layers adapted (0 when ``x`` has fewer than 2
    frames: variance needs two)."""
    target = model if prefix is None else prefix
    bns = [m for m in target.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
           and m.track_running_stats]
    if x.shape[0] < 2 or not bns:
        return 0
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(),
              m.num_batches_tracked.clone()) for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch -> exactly its statistics
        m.train()
    target(x)
    model.eval()
    for m, (mom, mean, var, nbt) in zip(bns, saved, strict=True):
        m.momentum = mom
        m.running_mean.mul_(momentum).add_(mean, alpha=1.0 - momentum)
        m.running_var.mul_(momentum).add_(var, alpha=1.0 - momentum)
        m.num_batches_tracked.copy_(nbt)
    return len(bns)


def adapt_bn_front(bundle: ModelBundle, x: torch.Tensor, momentum: float = 1.0,
                   depth: int = 0) -> float:
    """:func:`adapt_bn` on the first ``depth`` layer groups of ``bundle`` (0 or more than the
    groups: all of them). Returns the forward FLOPs spent."""
    n = len(layer_groups(bundle.model, bundle.arch))
    gf = group_flops(bundle)
    if 0 < depth < n:
        adapt_bn(bundle.model, x, momentum, split_forward(bundle.model, bundle.arch, depth)[0])
        return float(x.shape[0] * sum(gf[:depth]))
    adapt_bn(bundle.model, x, momentum)
    return float(x.shape[0] * sum(gf))
