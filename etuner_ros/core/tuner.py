"""ContinualTuner: the engine both ``tuner_node`` and the benchmark drive.

It owns the serving-model reference it compares against, the policy, the pending labels, the
replay reservoir, the held-out validation slice, the unlabelled pool, the drift detector and the
SimFreeze state. Thread-safety: every ``observe_*``/``decide``/``status`` call takes one lock
briefly; ``run_round`` snapshots its inputs under the lock, trains without it (so the ROS
executor keeps answering), and commits its bookkeeping under it again. Labels arriving during a
round stay pending for the next one.

Cost accounting is the same for every policy: a round's time/energy/FLOPs cover pseudo-labelling,
SimFreeze probes, training and validation; embedding frames for the drift detector (only for
policies that use it) is accumulated as ``overhead_*`` and reported in ``status()``; the
benchmark adds it to the policy's tuning time, energy and FLOPs.

Semi-supervised rounds (policies with ``uses_semi_supervised``, i.e. ``etuner``):

* AdaBN: the candidate adopts the BatchNorm statistics of the newest ``adabn_frames`` camera
  frames (those passed to ``observe_frames``; the unlabelled pool if there are none) before it
  trains: one forward pass, BN in train mode, no gradients, only BN buffers change. A new light
  or camera mostly shifts low-level activation statistics, which this re-centres for free; the
  training that follows (BN frozen) adapts the weights to the re-normalised features. Its
  forward pass is inside the round's time/energy/FLOPs.
* Pseudo-labels: only from the newest ``pseudo_pool`` unlabelled frames, only while the
  deployed model's ``recent_accuracy`` is at least ``pseudo_min_accuracy`` (a struggling model
  would teach itself its own mistakes), at most ``pseudo_per_label`` per real label in the round
  (and ``max_pseudo``), confidence >= ``pseudo_threshold``, loss weight ``pseudo_weight``. No
  pool/gate passes: no pseudo-labelling inference is run at all.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from etuner_ros.core.drift import DriftConfig, DriftDetector
from etuner_ros.core.energy import EnergyMeter
from etuner_ros.core.model import ModelBundle, embed, layer_groups, preprocess
from etuner_ros.core.policies import Decision, Observation, Policy, make_policy
from etuner_ros.core.simfreeze import SimFreeze, SimFreezeConfig
from etuner_ros.core.trainer import (
    TrainConfig,
    adapt_bn,
    batched,
    group_flops,
    is_holdout,
    pseudo_label,
    train_round,
)


@dataclass
class TunerConfig:
    """All tuner defaults in one place (policy parameters go to ``make_policy``)."""

    train: TrainConfig = field(default_factory=TrainConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    simfreeze: SimFreezeConfig = field(default_factory=SimFreezeConfig)
    policy_params: dict = field(default_factory=dict)
    unlabelled_capacity: int = 256  # newest unlabelled frames kept for pseudo-labels
    accuracy_window: int = 24       # labels behind recent_accuracy
    accuracy_min: int = 8           # recent_accuracy is None below this many
    drift_every: int = 4            # embed every n-th observed frame for the drift detector:
    #                                 embedding every frame cost ~20% of etuner's tuning time
    # Semi-supervised policies only (see the module docstring, "Semi-supervised rounds"):
    adabn_frames: int = 48          # newest camera frames whose BN statistics a round adopts
    adabn_momentum: float = 1.0     # 1.0: replace BN statistics; <1: blend with the old ones
    pseudo_pool: int = 32           # pseudo-label only the newest frames (the current scene)
    pseudo_min_accuracy: float = 0.7  # no pseudo-labels while recent_accuracy is below this
    pseudo_per_label: float = 1.0   # at most this many pseudo-labels per real label in a round


@dataclass
class RoundResult:
    candidate: ModelBundle
    accepted: bool
    val_accuracy: float
    baseline_val_accuracy: float
    duration_s: float
    train_flops: float
    energy_joules: float
    energy_source: str
    n_labels: int
    n_replay: int
    n_pseudo: int
    frozen_groups: list[str]
    reason: str
    epochs_run: int = 0


@dataclass
class _Item:
    id: int
    x: torch.Tensor
    label: str


class ContinualTuner:
    """See the module docstring."""

    def __init__(self, bundle: ModelBundle, policy: Policy | str,
                 config: TunerConfig | None = None, seed: int = 0) -> None:
        self.config = config or TunerConfig()
        self.policy = make_policy(policy, **self.config.policy_params) \
            if isinstance(policy, str) else policy
        self.seed = int(seed)
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._meter = EnergyMeter()
        self.deployed = bundle
        self.class_names: list[str] = list(bundle.class_names)
        self._pending: list[_Item] = []
        self._pending_batches = 0
        self._oldest_pending: float | None = None
        self._replay: list[_Item] = []
        self._seen_replay = 0
        self._holdout: deque[_Item] = deque(maxlen=self.config.train.val_size)
        self._unlabelled: deque[torch.Tensor] = deque(maxlen=self.config.unlabelled_capacity)
        self._frames: deque[torch.Tensor] = deque(maxlen=max(1, self.config.adabn_frames))
        self._recent: deque[bool] = deque(maxlen=self.config.accuracy_window)
        self._window: deque[torch.Tensor] = deque(maxlen=self.config.drift.window)
        self._frame_count = 0
        self.drift = DriftDetector(self.config.drift)
        groups = [n for n, _ in layer_groups(bundle.model, bundle.arch)]
        self.simfreeze = SimFreeze(groups, self.config.simfreeze)
        self._probe: list[torch.Tensor] = []
        self._unfreeze_next = False
        self._trained_since_check = 0
        self._fps = 0.0
        self._last_round_end: float | None = None
        self._new_since_decide = 0
        self._rejected_streak = 0
        self._bn_only_next = False
        self._bn_ref: torch.Tensor | None = None  # input stats the serving BN was adapted to
        self._input_shift = 0.0
        self._adapted: dict[int, torch.Tensor] = {}  # id(candidate) -> its AdaBN input stats
        self._bn_only_ids: set[int] = set()
        self.rounds_done = self.rounds_deferred = self.rounds_merged = 0
        self.labels_seen = 0
        self.overhead_seconds = self.overhead_joules = self.overhead_flops = 0.0
        self.last_reason = "no decision yet"
        self.last_round: dict = {}
        self.busy = False

    # --- inputs ---------------------------------------------------------------------------
    def _x(self, images: list[np.ndarray]) -> torch.Tensor:
        return preprocess(images, self.deployed.input_size)

    def _name(self, label, names: list[str]) -> str:
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            return names[int(label)]
        return str(label)

    def observe_labels(self, samples: list, now: float) -> None:
        """Corrections and confirmations (both are labels) from the store or the caregiver."""
        if not samples:
            return
        xs = self._x([s.image for s in samples])
        with self._lock:
            if self._last_round_end is None:
                self._last_round_end = now
            served = list(self.deployed.class_names)
            added = False
            for s, x in zip(samples, xs, strict=True):
                label = self._name(s.label, self.class_names)
                if label not in self.class_names:
                    self.class_names.append(label)
                if getattr(s, "predicted", None) is not None:
                    pred = self._name(s.predicted, served) if not isinstance(
                        s.predicted, (int, np.integer)) or int(s.predicted) < len(served) \
                        else "?"
                    self._recent.append(pred == label)
                item = _Item(int(s.id), x, label)
                self.labels_seen += 1
                if is_holdout(item.id, self.config.train.holdout_fraction):
                    self._holdout.append(item)
                    continue
                if len(self._probe) < self.config.simfreeze.probe_size:
                    self._probe.append(x)
                self._pending.append(item)
                self._new_since_decide += 1
                added = True
            if added:
                self._pending_batches += 1
                if self._oldest_pending is None:
                    self._oldest_pending = now

    def observe_unlabelled(self, samples: list) -> None:
        """Frames nobody labelled: the pool pseudo-labels come from (semi-supervised policies)."""
        if not samples or not self.policy.uses_semi_supervised:
            return
        xs = self._x([s.image if hasattr(s, "image") else s for s in samples])
        with self._lock:
            self._unlabelled.extend(xs)

    def observe_inference_rate(self, fps: float) -> None:
        with self._lock:
            self._fps = float(fps)

    def observe_frames(self, images: list[np.ndarray], now: float) -> float:
        """Embed frames with the deployed model and update the drift score (overhead); semi-
        supervised policies also keep the newest ``adabn_frames`` of them for AdaBN."""
        if not images:
            return self.drift.score
        if not self.policy.uses_drift:
            if self.policy.uses_semi_supervised and self.config.adabn_frames > 0:
                with self._meter.measure() as m:
                    t0 = time.perf_counter()
                    x = self._x(images[-self.config.adabn_frames:])
                    with self._lock:
                        self._frames.extend(x)
                        self._update_input_shift()
                    dt = time.perf_counter() - t0
                with self._lock:
                    self.overhead_seconds += dt
                    self.overhead_joules += m.joules
            return self.drift.score
        with self._lock:
            if self._last_round_end is None:
                self._last_round_end = now
            sel = [i for i in range(len(images))
                   if (self._frame_count + i) % self.config.drift_every == 0]
            self._frame_count += len(images)
            semi = self.policy.uses_semi_supervised and self.config.adabn_frames > 0
            if not sel and not semi:
                return self.drift.score
            with self._meter.measure() as m:
                t0 = time.perf_counter()
                # AdaBN wants every recent frame; the detector only every drift_every-th.
                xa = self._x(images[-self.config.adabn_frames:] if semi and not sel
                             else images)
                if semi:
                    self._frames.extend(xa[-self.config.adabn_frames:])
                    self._update_input_shift()
                score = self.drift.score
                if sel:
                    x = xa[sel] if xa.shape[0] == len(images) else self._x(
                        [images[i] for i in sel])
                    feats = self._embed(self.deployed, x)
                    score = self.drift.update(feats.numpy())
                    self._window.extend(x)
                dt = time.perf_counter() - t0
            self.overhead_seconds += dt
            self.overhead_joules += m.joules
            self.overhead_flops += len(sel) * sum(group_flops(self.deployed)[:-1])
            return score

    @staticmethod
    def _input_stats(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))])

    def _update_input_shift(self) -> None:
        """Max |change| of per-channel input mean/std since the serving BN was adapted (the
        first full pool is the reference of the starting model)."""
        if len(self._frames) < self.config.adabn_frames:
            return
        s = self._input_stats(torch.stack(list(self._frames)))
        if self._bn_ref is None:
            self._bn_ref = s
        self._input_shift = float((s - self._bn_ref).abs().max())

    def _embed(self, bundle: ModelBundle, x: torch.Tensor) -> torch.Tensor:
        bundle.model.eval()
        return batched(lambda b: embed(bundle.model, bundle.arch, b), x)

    # --- deciding -------------------------------------------------------------------------
    def _observation(self, now: float) -> Observation:
        last = self._last_round_end if self._last_round_end is not None else now
        acc = (sum(self._recent) / len(self._recent)
               if len(self._recent) >= self.config.accuracy_min else None)
        return Observation(
            now=now, pending_labels=len(self._pending),
            new_labels_since_decide=self._new_since_decide,
            seconds_since_last_round=max(0.0, now - last),
            seconds_since_oldest_pending=(0.0 if self._oldest_pending is None
                                          else max(0.0, now - self._oldest_pending)),
            inference_fps=self._fps, recent_accuracy=acc,
            change_score=self.drift.score if self.policy.uses_drift else 0.0,
            change_detected=bool(self.drift.changed) if self.policy.uses_drift else False,
            rejected_streak=self._rejected_streak,
            input_shift=self._input_shift if self.policy.uses_semi_supervised else 0.0)

    def decide(self, now: float, force: bool = False) -> Decision:
        """Ask the policy; ``force`` tunes whenever there is anything to train on."""
        with self._lock:
            obs = self._observation(now)
            self._new_since_decide = 0
            if force:
                if not self._pending and not self._replay:
                    d = Decision(False, "no labelled samples to train on")
                else:
                    d = Decision(True, f"forced: {obs.pending_labels} labels pending")
            else:
                d = self.policy.decide(obs)
                if not d.tune and obs.pending_labels > 0:
                    self.rounds_deferred += 1
            if d.tune and not d.bn_only and (d.unfreeze or obs.change_detected):
                self._unfreeze_next = True
            self._bn_only_next = bool(d.tune and d.bn_only)
            self.last_reason = d.reason
            return d

    # --- the round ------------------------------------------------------------------------
    def run_round(self, now: float, progress: Callable[[str], None] | None = None,
                  version: int | None = None) -> RoundResult:
        """Train on all pending labels + replay (+ pseudo-labels); see the module docstring.
        ``version``: the candidate's (the tuner node's registry keeps versions unique across
        runs); default the serving version + 1."""
        result = self._run_round(now, progress)
        if version is not None:
            result.candidate.version = int(version)
        return result

    def _run_round(self, now: float, progress: Callable[[str], None] | None) -> RoundResult:
        cfg = self.config.train
        with self._lock:
            bn_only, self._bn_only_next = self._bn_only_next, False
        if bn_only:
            return self._adapt_round(now)
        with self._lock:
            self.busy = True
            new, self._pending = self._pending, []
            self.rounds_merged += max(0, self._pending_batches - 1)
            self._pending_batches, self._oldest_pending = 0, None
            k = min(cfg.replay_size, len(self._replay))
            replay = self._rng.sample(self._replay, k)
            val = list(self._holdout)
            semi = self.policy.uses_semi_supervised
            tc = self.config
            acc = self._observation(now).recent_accuracy
            n_pseudo_max = min(cfg.max_pseudo, int(tc.pseudo_per_label * len(new)))
            unl = torch.stack(list(self._unlabelled)[-tc.pseudo_pool:]) \
                if semi and self._unlabelled and tc.pseudo_pool > 0 and n_pseudo_max > 0 \
                and acc is not None and acc >= tc.pseudo_min_accuracy else None
            pool = self._frames if self._frames else self._unlabelled
            bn_x = torch.stack(list(pool)[-tc.adabn_frames:]) \
                if semi and tc.adabn_frames > 0 and len(pool) >= 2 else None
            names = list(self.class_names)
            current = self.deployed
            cand = current.clone()
            use_sf = self.policy.uses_simfreeze
            if use_sf and self._unfreeze_next:
                self.simfreeze.unfreeze_all()
            self._unfreeze_next = False
            if use_sf and self.simfreeze.probe is None and len(self._probe) >= 2:
                self.simfreeze.set_probe(torch.stack(self._probe))
            frozen = self.simfreeze.frozen_prefix if use_sf else 0
            frozen_names = self.simfreeze.group_names[:frozen]
        try:
            with self._meter.measure() as meter:
                t0 = time.perf_counter()
                flops = 0.0
                gf = group_flops(cand)
                if bn_x is not None:
                    adapt_bn(cand.model, bn_x, tc.adabn_momentum)
                    flops += bn_x.shape[0] * sum(gf)
                    self._adapted[id(cand)] = self._input_stats(bn_x)
                n_items = len(new) + len(replay)
                sf_check = use_sf and self.simfreeze.probe is not None and \
                    n_items * cfg.epochs >= self.config.simfreeze.check_every
                if sf_check:  # before training (after AdaBN): what this round's training moves
                    self.simfreeze.set_reference(self._group_outputs(cand, self.simfreeze.probe))
                    flops += self.simfreeze.probe.shape[0] * sum(gf[:-1])
                items = new + replay
                x = torch.stack([it.x for it in items]) if items else \
                    torch.zeros(0, 3, cand.input_size, cand.input_size)
                y = torch.tensor([names.index(it.label) for it in items], dtype=torch.long)
                w = torch.ones(len(items))
                n_pseudo = 0
                if unl is not None:
                    px, py, _ = pseudo_label(cand, unl, cfg.pseudo_threshold, n_pseudo_max)
                    flops += unl.shape[0] * sum(gf)
                    n_pseudo = int(px.shape[0])
                    if n_pseudo:
                        x, y = torch.cat([x, px]), torch.cat([y, py])
                        w = torch.cat([w, torch.full((n_pseudo,), cfg.pseudo_weight)])
                vx = torch.stack([it.x for it in val]) if val else x[:0]
                vy = torch.tensor([names.index(it.label) for it in val], dtype=torch.long)
                out = train_round(current, names, x, y, w, vx, vy, frozen, cfg, progress,
                                  candidate=cand)
                flops += out.train_flops
                if sf_check and out.n_train * out.epochs_run >= \
                        self.config.simfreeze.check_every:
                    self.simfreeze.check(self._group_outputs(out.candidate,
                                                             self.simfreeze.probe))
                    flops += self.simfreeze.probe.shape[0] * sum(gf[:-1])
                duration = time.perf_counter() - t0
        finally:
            with self._lock:
                self.busy = False
        reason = (f"{len(new)} labels + {len(replay)} replay + {n_pseudo} pseudo, "
                  f"{len(frozen_names)} groups frozen, {out.epochs_run} epochs: val "
                  f"{out.val_accuracy:.3f} vs {out.baseline_val_accuracy:.3f} -> "
                  f"{'accept' if out.accepted else 'reject'}")
        result = RoundResult(out.candidate, out.accepted, out.val_accuracy,
                             out.baseline_val_accuracy, duration, flops, meter.joules,
                             meter.source, len(new), len(replay), n_pseudo, frozen_names,
                             reason, out.epochs_run)
        with self._lock:
            for it in new:  # reservoir: every label ever seen has the same chance to stay
                self._seen_replay += 1
                if len(self._replay) < cfg.replay_capacity:
                    self._replay.append(it)
                else:
                    j = self._rng.randrange(self._seen_replay)
                    if j < cfg.replay_capacity:
                        self._replay[j] = it
            self.rounds_done += 1
            self._rejected_streak = 0 if out.accepted else self._rejected_streak + 1
            self._last_round_end = now + duration
            if self.drift.changed and not out.accepted:
                # The round handled the change even though the serving model stays: the
                # current frames (seen by that model) are the new normal, or every poll
                # would start another round for the same change.
                self.drift.reset_reference(self.drift.recent_features())
            self.last_round = {"duration_s": duration, "accepted": out.accepted,
                               "val_accuracy": out.val_accuracy,
                               "baseline_val_accuracy": out.baseline_val_accuracy,
                               "n_labels": len(new), "n_replay": len(replay),
                               "n_pseudo": n_pseudo, "frozen_groups": frozen_names,
                               "train_flops": flops, "reason": reason}
        return result

    def _adapt_round(self, now: float) -> RoundResult:
        """AdaBN-only round: the serving model adopts the newest frames' BN statistics. No
        labels are used (pending ones stay pending), nothing is trained, so there is nothing
        to validate on: held-out labels of the new scene do not exist yet, and old-scene ones
        would veto exactly the adaptation this round is for. The next full round's validation
        compares against this model."""
        tc = self.config
        with self._lock:
            self.busy = True
            pool = self._frames if self._frames else self._unlabelled
            bn_x = torch.stack(list(pool)[-tc.adabn_frames:]) if len(pool) >= 2 else None
            current = self.deployed
        try:
            with self._meter.measure() as meter:
                t0 = time.perf_counter()
                cand = current.clone()
                cand.version = current.version + 1
                flops = 0.0
                if bn_x is not None:
                    adapt_bn(cand.model, bn_x, tc.adabn_momentum)
                    flops = bn_x.shape[0] * sum(group_flops(cand))
                duration = time.perf_counter() - t0
        finally:
            with self._lock:
                self.busy = False
        n = 0 if bn_x is None else int(bn_x.shape[0])
        reason = f"AdaBN only: BN statistics of the newest {n} frames, no training"
        with self._lock:
            if bn_x is not None:
                self._adapted[id(cand)] = self._input_stats(bn_x)
                self._bn_only_ids.add(id(cand))
            self.rounds_done += 1
            self.last_round = {"duration_s": duration, "accepted": bn_x is not None,
                               "val_accuracy": float("nan"),
                               "baseline_val_accuracy": float("nan"), "n_labels": 0,
                               "n_replay": 0, "n_pseudo": 0, "frozen_groups": [],
                               "train_flops": flops, "reason": reason}
        return RoundResult(cand, bn_x is not None, float("nan"), float("nan"), duration, flops,
                           meter.joules, meter.source, 0, 0, 0, [], reason, 0)

    def _group_outputs(self, bundle: ModelBundle, probe: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of every group but the head on the probe (groups in order = forward)."""
        bundle.model.eval()
        outs, z = [], probe
        with torch.no_grad():
            for _, g in layer_groups(bundle.model, bundle.arch)[:-1]:
                z = g(z)
                outs.append(z)
        return outs

    def restore(self, trained: list, seen: int) -> None:
        """Labels an earlier run already trained on (a bounded sample from the store): held-out
        ones refill the validation slice, the others the replay reservoir, as if ``seen``
        labels had passed through it. None becomes pending: a restart does not retrain them."""
        if not trained:
            return
        xs = self._x([s.image for s in trained])
        with self._lock:
            for s, x in zip(trained, xs, strict=True):
                label = self._name(s.label, self.class_names)
                if label not in self.class_names:
                    self.class_names.append(label)
                item = _Item(int(s.id), x, label)
                if is_holdout(item.id, self.config.train.holdout_fraction):
                    self._holdout.append(item)
                elif len(self._replay) < self.config.train.replay_capacity:
                    self._replay.append(item)
            self._seen_replay = max(self._seen_replay, int(seen), len(self._replay))

    def deploy(self, bundle: ModelBundle) -> None:
        """The serving model changed: compare against it, and re-base the drift detector on
        the newest frames as the new model sees them (its feature space moved)."""
        with self._lock:
            self.deployed = bundle
            for name in bundle.class_names:
                if name not in self.class_names:
                    self.class_names.append(name)
            stats = self._adapted.pop(id(bundle), None)
            if stats is not None:
                self._bn_ref = stats
                self._input_shift = 0.0
            self._adapted.clear()
            if id(bundle) in self._bn_only_ids:
                # Same weights, new BN statistics: keep the accuracy evidence (clearing it
                # at every refresh would blind LazyTune's accuracy rule) and let the drift
                # reference refill from the next frames (no re-embedding cost).
                self._bn_only_ids.clear()
                self.drift.reset_reference(None)
                return
            self._bn_only_ids.clear()
            self._recent.clear()  # accuracy of the old model says nothing about the new one
            if self.policy.uses_drift:
                with self._meter.measure() as m:
                    t0 = time.perf_counter()
                    ref = self._embed(bundle, torch.stack(list(self._window))).numpy() \
                        if len(self._window) >= 2 else None
                    self.drift.reset_reference(ref)
                    dt = time.perf_counter() - t0
                self.overhead_seconds += dt
                self.overhead_joules += m.joules
                self.overhead_flops += len(self._window) * sum(group_flops(bundle)[:-1])
                self._window.clear()

    # --- reporting ------------------------------------------------------------------------
    def status(self) -> dict:
        with self._lock:
            obs = self._observation(self._last_round_end or 0.0)
            return {"state": "tuning" if self.busy else "idle", "policy": self.policy.name,
                    "pending": len(self._pending), "rounds_done": self.rounds_done,
                    "rounds_deferred": self.rounds_deferred,
                    "rounds_merged": self.rounds_merged,
                    "frozen_groups": list(self.simfreeze.frozen_groups)
                    if self.policy.uses_simfreeze else [],
                    "change_score": float(self.drift.score),
                    "change_detected": bool(self.drift.changed),
                    "recent_accuracy": obs.recent_accuracy, "last_reason": self.last_reason,
                    "replay_size": len(self._replay), "holdout_size": len(self._holdout),
                    "unlabelled": len(self._unlabelled), "classes": list(self.class_names),
                    "overhead_seconds": self.overhead_seconds,
                    "overhead_joules": self.overhead_joules,
                    "overhead_flops": self.overhead_flops, "last_round": dict(self.last_round)}
