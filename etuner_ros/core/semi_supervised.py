"""ETuner's semi-supervised part: learn from the frames nobody labelled.

Two mechanisms, both built on how a robot's camera works (it looks at one object for one to
four seconds, with small pose changes, before turning to the next):

* Temporal label propagation (:func:`propagate_labels`): an unlabelled frame taken within
  ``max_dt`` seconds of caregiver-labelled frames that all say the same class very likely
  shows that object too. Where labelled neighbours disagree the frame sits at a change of
  object and gets nothing. An optional embedding gate (cosine similarity to the nearest
  labelled neighbour at least ``min_similarity``) drops frames where the view changed anyway.
  Costs no training and, without the gate, no model FLOPs; with it, one embedding pass per
  frame (the caller counts it).
* Consistency training (:func:`consistency_loss`, FixMatch, Sohn et al. 2020): the model's
  confident prediction on a weakly augmented unlabelled frame is the target for a strongly
  augmented view of the same frame. It teaches the current scene's look from the scene
  itself; the confidence gate keeps a struggling model from learning its own mistakes.
  Costs per frame one no-grad forward (weak view) plus one training step (strong view).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from etuner_ros.core.augment import augment


def propagate_labels(labelled_t: np.ndarray, labelled_y: np.ndarray, unlabelled_t: np.ndarray,
                     max_dt: float, labelled_f: np.ndarray | None = None,
                     unlabelled_f: np.ndarray | None = None,
                     min_similarity: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels for unlabelled frames from labelled frames near them in time.

    ``labelled_t``/``unlabelled_t`` are stamps in seconds, ``labelled_y`` class ids. A frame
    gets class c when every labelled frame within ``max_dt`` of it has class c (at least one).
    With ``min_similarity`` and features ``labelled_f``/``unlabelled_f`` ([N, D]), the cosine
    similarity to the nearest-in-time labelled neighbour must reach it as well.
    Returns (indices into the unlabelled frames, their class ids), indices ascending.
    """
    lt = np.asarray(labelled_t, dtype=np.float64).reshape(-1)
    ly = np.asarray(labelled_y, dtype=np.int64).reshape(-1)
    ut = np.asarray(unlabelled_t, dtype=np.float64).reshape(-1)
    if lt.shape != ly.shape:
        raise ValueError(f"{lt.shape[0]} labelled stamps but {ly.shape[0]} labels")
    if max_dt < 0:
        raise ValueError(f"max_dt must be >= 0, got {max_dt}")
    gate = min_similarity is not None
    if gate and (labelled_f is None or unlabelled_f is None):
        raise ValueError("min_similarity needs labelled_f and unlabelled_f")
    empty = np.zeros(0, dtype=np.int64)
    if lt.size == 0 or ut.size == 0:
        return empty, empty
    near = np.abs(ut[:, None] - lt[None, :]) <= max_dt  # [U, L]
    has = near.any(axis=1)
    big = np.iinfo(np.int64).max
    lo = np.where(near, ly[None, :], big).min(axis=1)
    hi = np.where(near, ly[None, :], -1).max(axis=1)
    ok = has & (lo == hi)
    if gate:
        lf = np.asarray(labelled_f, dtype=np.float64)
        uf = np.asarray(unlabelled_f, dtype=np.float64)
        lf = lf / np.maximum(np.linalg.norm(lf, axis=1, keepdims=True), 1e-12)
        uf = uf / np.maximum(np.linalg.norm(uf, axis=1, keepdims=True), 1e-12)
        nearest = np.abs(ut[:, None] - lt[None, :]).argmin(axis=1)
        sim = (uf * lf[nearest]).sum(axis=1)
        ok &= sim >= float(min_similarity)
    idx = np.nonzero(ok)[0].astype(np.int64)
    return idx, lo[idx].astype(np.int64)


def consistency_loss(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                     threshold: float, gen: torch.Generator,
                     prefix: nn.Module | None = None) -> tuple[torch.Tensor, int]:
    """FixMatch loss on unlabelled preprocessed frames ``x``: cross-entropy of the strong
    view's logits against the weak view's arg-max, only where the weak view's softmax
    confidence is at least ``threshold``; mean over the whole batch (masked frames count 0).

    ``model`` is the trainable part; ``prefix`` (no grad) a frozen front run on both views.
    Returns (loss, number of frames that passed the gate).
    """
    if x.shape[0] == 0:
        return torch.zeros(()), 0
    weak = augment(x, "weak", gen)
    strong = augment(x, "strong", gen)
    with torch.no_grad():
        if prefix is not None:
            weak, strong = prefix(weak), prefix(strong)
        probs = torch.softmax(model(weak), dim=1)
        conf, target = probs.max(dim=1)
        mask = (conf >= threshold).float()
    logits = model(strong)
    loss = (nn.functional.cross_entropy(logits, target, reduction="none") * mask).mean()
    return loss, int(mask.sum())


def propagated(new: list, pool: tuple[torch.Tensor, list[float]] | None, names: list[str],
               max_dt: float) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The round's view of :func:`propagate_labels`: ``new`` are label items with ``x``,
    ``label`` and ``stamp`` (seconds, None if unknown), ``pool`` the unlabelled frames and
    their stamps (NaN if unknown). Returns (frames, class ids) or None when nothing gets a
    label. No model FLOPs (no embedding gate)."""
    if pool is None or not new:
        return None
    lab = [it for it in new if it.stamp is not None and it.label in names]
    ux, ut = pool
    t = np.asarray(ut, dtype=np.float64)
    known = np.nonzero(np.isfinite(t))[0]
    if not lab or known.size == 0:
        return None
    idx, y = propagate_labels(np.array([it.stamp for it in lab]),
                              np.array([names.index(it.label) for it in lab]), t[known], max_dt)
    if idx.size == 0:
        return None
    return ux[torch.from_numpy(known[idx])], torch.from_numpy(y)
