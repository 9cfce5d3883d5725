"""One fine-tuning round: train a candidate copy, validate it against the serving model.

The serving model is never touched: the round clones it, grows the head for new classes, freezes
the SimFreeze prefix, trains on new labels + a replay sample + (optionally) pseudo-labels with
per-sample weights, and validates candidate and current model on the same held-out slice,
weighted by recency (``val_half_life``: the newest held-out labels show the scene the model
will serve; uniform weights let a handful of old-scene labels veto every adaptation to a new
light). The candidate is accepted only if its weighted accuracy is at least the serving
model's (a tie passes: a round that learned a new class the validation slice does not show
yet must not be thrown away). The rule is the same for every policy.

Frozen prefix caching: the frozen groups run once per sample per round (eval mode, no grad) and
every epoch trains only the back part on the cached activations. With ``augment`` the prefix
runs on each epoch's new views instead (and is charged per epoch).

Options measured on the dev seed and left off by default (``TrainConfig`` says why each exists;
the README has the numbers): ``augment``, ``class_balance``, ``val_balanced``, ``imprint``
(shared by every labelled policy; ``replay_balanced`` is on), ``propagate_dt`` and
``consistency_weight`` (ETuner's semi-supervised part, used only for policies with
``uses_semi_supervised``; see ``core/semi_supervised.py``).

FLOPs are analytic from per-group forward FLOPs (``core/flops.py``) measured once with
``torch.utils.flop_counter.FlopCounterMode`` on a single image: a training step costs 3x the
forward FLOPs of the trained part (forward + backward for activations and weights), a cached
prefix costs one forward per sample, pseudo-labelling and validation one forward per image,
imprinting one embedding pass per example of a new class, a consistency step per unlabelled
frame one full forward (weak view) + the prefix forward and a training step (strong view).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from etuner_ros.core.augment import AUGMENTATIONS, augment
from etuner_ros.core.flops import embed_flops, group_flops
from etuner_ros.core.model import ModelBundle, embed, head, layer_groups, split_forward
from etuner_ros.core.semi_supervised import consistency_loss


@dataclass
class TrainConfig:
    """Every training default in one place (why in the comments)."""

    epochs: int = 3                 # max passes over the round's data
    batch_size: int = 32
    lr: float = 2e-4                # DEV seeds 100/101, etuner: 5e-4 50.9/59.0 %, 2e-4 57.6/59.2 %,
    #                                 1e-4 54.9/59.4 %; the recurring day kitchen 78/70 -> 92/87 %:
    #                                 smaller steps forget less of the scenes not in the round
    optimiser: str = "adam"         # "adam" or "sgd" (momentum 0.9); adam adapts faster to a
    #                                 new lighting in our checks (dim kitchen 13% -> 45% vs 30%)
    weight_decay: float = 1e-4
    replay_size: int = 128          # old labelled samples re-trained every round (forgetting)
    replay_capacity: int = 800      # reservoir of old labelled samples kept for replay
    replay_balanced: bool = True    # draw replay evenly over classes (class_balanced_sample).
    #                                 DEV seeds 100/101, etuner: 64 uniform 48.9/58.7 %, 128
    #                                 balanced 50.9/59.0 % (recurring day kitchen 59.5 -> 78.0
    #                                 on seed 100); every labelled policy uses it
    holdout_fraction: float = 0.2   # share of labels kept out for validation ...
    holdout_block_s: float = 4.0    # ... by blocks of this many seconds of the frames' stamps
    #                                 (0: by sample id): most of one object's run of
    #                                 near-copies falls on one side (label_book)
    val_size: int = 96              # newest held-out samples used to validate a round
    val_half_life: float = 8.0      # validation weight halves every this many samples back
    #                                 from the newest (0: uniform): the model serves what the
    #                                 robot sees NOW, and ~10 held-out labels cover one scene
    pseudo_threshold: float = 0.95  # min softmax confidence for a pseudo-label
    pseudo_weight: float = 0.5      # loss weight of a pseudo-labelled sample (labels: 1.0)
    max_pseudo: int = 48            # pseudo-labels per round, most confident first
    early_stop_loss: float = 0.08   # stop epochs once the mean training loss is below this
    bn_eval: bool = True            # keep BatchNorm statistics fixed: tiny batches would skew them
    clip_grad_norm: float = 2.0     # without BN updates a bad batch can blow the weights up
    augment: str = "none"           # core.augment kind applied to every training batch
    class_balance: bool = False     # loss weights 1/(count of the sample's class in the round):
    #                                 a robot looks at one object for seconds, so a batch of new
    #                                 labels is often one class and would teach "always X".
    #                                 DEV 100-103, etuner: 69.48 / 59.79 % (off: 69.52 / 60.52)
    val_balanced: bool = False      # validate on the mean over classes of per-class (recency-
    #                                 weighted) accuracy, so a one-class run cannot pass the gate
    head_lr_mult: float = 1.0       # the head's learning rate / lr. DEV 100-103, 10.0:
    #                                 etuner 66.77 / 59.93 %, immediate_adabn 62.77 /
    #                                 54.02 % (1.0: 69.52 / 60.52, 64.77 / 55.89; synthetic /
    #                                 digits): worse for both, so 1.0 stays
    consistency_weight: float = 0.0  # FixMatch loss weight on unlabelled frames (0: off);
    #                                 only rounds given ``unlabelled`` frames use it. DEV
    #                                 100-103, etuner, 1.0: 67.66 / 60.55 % against 69.52 /
    #                                 60.52 % off (synthetic / digits), at 1.8x its FLOPs
    consistency_threshold: float = 0.9  # weak-view confidence a frame needs to be a target
    propagate_dt: float = 0.0       # semi-supervised policies: unlabelled frames within this
    #                                 many seconds of agreeing new labels take their label
    #                                 (0: off; core.semi_supervised.propagate_labels)
    propagate_weight: float = 1.0   # loss weight of a propagated label
    imprint: bool = False           # a class the head has no row for yet starts from its
    #                                 examples' mean embedding (weight imprinting) instead of
    #                                 a near-zero row: a new object is recognised after one
    #                                 round, not after many. DEV 100-103, etuner: 69.39 /
    #                                 59.91 % (off: 69.52 / 60.52), the new objects unchanged
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("TrainConfig: epochs, batch_size >= 1 and lr > 0")
        if self.optimiser not in ("sgd", "adam"):
            raise ValueError(f"TrainConfig.optimiser must be 'sgd' or 'adam', got "
                             f"{self.optimiser!r}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError("TrainConfig.holdout_fraction must be in [0, 1)")
        if not 0.0 <= self.pseudo_threshold <= 1.0 or self.pseudo_weight < 0:
            raise ValueError("TrainConfig: pseudo_threshold in [0, 1], pseudo_weight >= 0")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"TrainConfig.augment must be one of {AUGMENTATIONS}, got "
                             f"{self.augment!r}")
        if self.head_lr_mult <= 0:
            raise ValueError("TrainConfig.head_lr_mult must be > 0")


@dataclass
class TrainOutcome:
    candidate: ModelBundle
    accepted: bool
    val_accuracy: float
    baseline_val_accuracy: float
    train_flops: float
    duration_s: float
    n_train: int
    epochs_run: int
    final_loss: float
    losses: list[float] = field(default_factory=list)


def is_holdout(sample_id: int, fraction: float) -> bool:
    """Deterministic by id (Knuth multiplicative hash): a sample is validation data forever."""
    if fraction <= 0:
        return False
    h = (int(sample_id) * 2654435761 + 0x9E3779B9) % (1 << 32)
    return h / float(1 << 32) < fraction


def set_train_mode(model: nn.Module, bn_eval: bool) -> None:
    model.train()
    if bn_eval:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
            batch: int = 128) -> torch.Tensor:
    if x.shape[0] == 0:
        return x
    return torch.cat([fn(x[i:i + batch]) for i in range(0, x.shape[0], batch)])


def pseudo_label(bundle: ModelBundle, x: torch.Tensor, threshold: float,
                 max_n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Confident predictions of ``bundle`` on preprocessed unlabelled ``x``: only those with
    softmax confidence >= ``threshold``, the ``max_n`` most confident. Returns (x, y, conf)."""
    if x.shape[0] == 0 or max_n <= 0:
        return x[:0], torch.zeros(0, dtype=torch.long), torch.zeros(0)
    bundle.model.eval()
    probs = torch.softmax(batched(bundle.model, x), dim=1)
    conf, y = probs.max(dim=1)
    keep = torch.nonzero(conf >= threshold).flatten()
    keep = keep[torch.argsort(conf[keep], descending=True)][:max_n]
    return x[keep], y[keep], conf[keep]


def recency_weights(n: int, half_life: float) -> torch.Tensor:
    """Weights for ``n`` samples ordered oldest -> newest: 1 for the newest, halving every
    ``half_life`` samples back (uniform when ``half_life`` <= 0)."""
    if half_life <= 0:
        return torch.ones(n)
    age = torch.arange(n - 1, -1, -1, dtype=torch.float32)
    return torch.pow(0.5, age / float(half_life))


def class_balanced_weights(y: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    """``w`` (default ones) scaled so every class present in ``y`` carries the same total
    weight, normalised to mean 1 over the samples."""
    w = torch.ones(y.shape[0]) if w is None else w.float()
    if y.shape[0] == 0:
        return w
    classes, inv = torch.unique(y, return_inverse=True)
    totals = torch.zeros(classes.shape[0]).index_add_(0, inv, w)
    out = w / totals[inv].clamp_min(1e-12)
    return out * (y.shape[0] / out.sum().clamp_min(1e-12))


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             weights: torch.Tensor | None = None, balanced: bool = False) -> float:
    """Top-1 accuracy (optionally weighted; ``balanced``: mean over the classes in ``y`` of
    each class's weighted accuracy); a label the model has no row for counts as wrong."""
    if x.shape[0] == 0:
        return float("nan")
    model.eval()
    pred = batched(model, x).argmax(dim=1)
    hit = (pred == y).float()
    if weights is None:
        weights = torch.ones(y.shape[0])
    if balanced:
        weights = class_balanced_weights(y, weights)
    return float((hit * weights).sum() / weights.sum().clamp_min(1e-12))


@torch.no_grad()
def imprint(bundle: ModelBundle, x: torch.Tensor, y: torch.Tensor, rows: Sequence[int]) -> float:
    """Weight imprinting (Qi et al., CVPR 2018): each head row in ``rows`` whose class has
    examples in ``(x, y)`` becomes the direction of their mean embedding, scaled to the mean
    norm of the other rows, with the other rows' mean bias. Returns the FLOPs spent (one
    embedding pass per example used)."""
    lin = head(bundle.model, bundle.arch)
    others = [i for i in range(lin.out_features) if i not in set(rows)]
    use = torch.zeros(y.shape[0], dtype=torch.bool)
    for r in rows:
        use |= y == r
    if not bool(use.any()):
        return 0.0
    bundle.model.eval()
    f = batched(lambda b: embed(bundle.model, bundle.arch, b), x[use])
    yu = y[use]
    scale = float(lin.weight[others].norm(dim=1).mean()) if others else 1.0
    bias = float(lin.bias[others].mean()) if others else 0.0
    for r in rows:
        m = yu == r
        if bool(m.any()):
            mu = f[m].mean(dim=0)
            lin.weight[r] = mu / mu.norm().clamp_min(1e-12) * scale
            lin.bias[r] = bias
    return float(int(use.sum()) * embed_flops(bundle))


def _optimiser(params: list[nn.Parameter], head_params: list[nn.Parameter],
               cfg: TrainConfig) -> torch.optim.Optimizer:
    """The head gets ``head_lr_mult`` x lr: new classes start from near-zero rows and must
    catch up within a few steps, while the backbone should move little."""
    hp = {id(p) for p in head_params}  # identity within this call only, never stored
    groups = [{"params": [p for p in params if id(p) not in hp], "lr": cfg.lr},
              {"params": [p for p in params if id(p) in hp], "lr": cfg.lr * cfg.head_lr_mult}]
    groups = [g for g in groups if g["params"]]
    if cfg.optimiser == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def train_round(current: ModelBundle, class_names: Sequence[str], x: torch.Tensor,
                y: torch.Tensor, w: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
                frozen_prefix: int, cfg: TrainConfig,
                progress: Callable[[str], None] | None = None,
                candidate: ModelBundle | None = None,
                unlabelled: torch.Tensor | None = None) -> TrainOutcome:
    """Train a candidate copy of ``current`` on ``(x, y, w)`` (preprocessed, label ids in
    ``class_names`` order, loss weights), the first ``frozen_prefix`` layer groups frozen and
    cached; validate both on ``(val_x, val_y)``. ``candidate`` may be a clone made earlier.
    With ``unlabelled`` frames and ``cfg.consistency_weight`` > 0, every step adds the
    FixMatch loss (``core.semi_supervised``) on a batch of them."""
    t0 = time.perf_counter()
    cand = candidate if candidate is not None else current.clone()
    cand.version = current.version + 1
    added = cand.ensure_classes(list(class_names))
    model, arch = cand.model, cand.arch
    flops = 0.0
    if cfg.imprint and added:
        flops += imprint(cand, x, y, [cand.class_names.index(c) for c in added])
    n_groups = len(layer_groups(model, arch))
    k = int(min(max(frozen_prefix, 0), n_groups - 1))  # the head group always trains
    front, back = split_forward(model, arch, k)
    for p in front.parameters():
        p.requires_grad_(False)
    for p in back.parameters():
        p.requires_grad_(True)
    gflops = group_flops(cand)
    gen = torch.Generator().manual_seed(int(cfg.seed) * 1_000_003 + int(current.version))
    losses: list[float] = []
    n = int(x.shape[0])
    if cfg.class_balance:
        w = class_balanced_weights(y, w)
    if n:
        front.eval()
        aug = cfg.augment != "none"
        # The cache: without augmentation the frozen prefix runs once per round.
        z = batched(front, x) if k and not aug else x
        flops += n * sum(gflops[:k]) if not aug else 0.0
        params = [p for p in back.parameters() if p.requires_grad]
        opt = _optimiser(params, list(head(model, arch).parameters()), cfg)
        set_train_mode(back, cfg.bn_eval)
        loss_fn = nn.CrossEntropyLoss(reduction="none")
        back_flops = 3.0 * sum(gflops[k:])
        unl = unlabelled if unlabelled is not None and cfg.consistency_weight > 0 and \
            unlabelled.shape[0] > 0 else None
        # weak view: a forward of everything; strong view: the prefix forward + a train step
        u_flops = sum(gflops) + sum(gflops[:k]) + back_flops
        for epoch in range(cfg.epochs):
            order = torch.randperm(n, generator=gen)
            total, weight = 0.0, 0.0
            for i in range(0, n, cfg.batch_size):
                idx = order[i:i + cfg.batch_size]
                bw = w[idx]
                zb = z[idx]
                if aug:
                    zb = augment(zb, cfg.augment, gen)
                    if k:
                        with torch.no_grad():
                            zb = front(zb)
                loss = (loss_fn(back(zb), y[idx]) * bw).sum() / bw.sum().clamp_min(1e-8)
                if unl is not None:
                    ui = torch.randint(0, unl.shape[0], (min(cfg.batch_size, unl.shape[0]),),
                                       generator=gen)
                    u_loss, _ = consistency_loss(back, unl[ui], cfg.consistency_threshold, gen,
                                                 front if k else None)
                    loss = loss + cfg.consistency_weight * u_loss
                    flops += int(ui.shape[0]) * u_flops
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip_grad_norm > 0:
                    nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
                opt.step()
                total += float(loss.detach()) * float(bw.sum())
                weight += float(bw.sum())
            flops += n * back_flops + (n * sum(gflops[:k]) if aug else 0.0)
            losses.append(total / max(weight, 1e-8))
            if progress:
                progress(f"epoch {epoch + 1}/{cfg.epochs}: loss {losses[-1]:.3f} "
                         f"({n} samples, {k} groups frozen)")
            if losses[-1] < cfg.early_stop_loss:
                break
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    vw = recency_weights(int(val_x.shape[0]), cfg.val_half_life)  # val_x is oldest first
    val = accuracy(model, val_x, val_y, vw, cfg.val_balanced)
    base = accuracy(current.model, val_x, val_y, vw, cfg.val_balanced)
    flops += 2 * int(val_x.shape[0]) * sum(gflops)
    accepted = bool(np.isnan(val) or np.isnan(base) or val >= base)
    return TrainOutcome(cand, accepted, val, base, flops, time.perf_counter() - t0, n,
                        len(losses), losses[-1] if losses else float("nan"), losses)


def class_balanced_sample(labels: Sequence[str], k: int, rng) -> list[int]:
    """``k`` indices into ``labels`` (without replacement) spread as evenly over the classes as
    they allow: round-robin over the classes in a shuffled order, each class's members drawn
    at random. Replay drawn uniformly mirrors what the caregiver happened to label lately (one
    object for seconds at a time); drawn this way every class the robot knows keeps its say.
    ``rng`` is a ``random.Random``."""
    k = min(int(k), len(labels))
    if k <= 0:
        return []
    by_class: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(lab, []).append(i)
    pools = [rng.sample(v, len(v)) for _, v in sorted(by_class.items())]
    rng.shuffle(pools)
    out: list[int] = []
    while len(out) < k:
        for pool in pools:
            if pool and len(out) < k:
                out.append(pool.pop())
    return out
