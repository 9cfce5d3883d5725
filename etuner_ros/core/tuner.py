"""ContinualTuner: the engine both ``tuner_node`` and the benchmark drive; a thin coordinator.

The parts, one idea each:

* ``core/label_book.py``: label intake, held-out validation slice, replay reservoir, accuracy
  evidence;
* ``core/frames.py``: which unlabelled frames a round may use (newest camera frames, pool for
  pseudo-labels);
* ``core/changes.py``: input-statistics shift (BN rounds) and scenario change (drift detector);
* ``core/rounds.py``: what a round does, step by step; ``core/gate.py``: the validation gate;
* ``core/costs.py``: time, CPU time, energy and FLOPs of every piece of work;
* ``core/policies/``: *when* to tune (one file per policy).

Model bookkeeping is keyed by model *version*, never by object identity. :meth:`deploy` of the
version already serving is a no-op: the tuner node hears of one swap twice (the swap answer and
perception's ``model_info``, in either order, with different objects for the same weights), and
the second must not re-base the drift detector, wipe the accuracy evidence or lose the BN
reference (which made a BN round be asked for on every poll).

Thread-safety: every ``observe_*``/``decide``/``status`` call takes one lock briefly;
``run_round`` snapshots its inputs under the lock, works without it (so the ROS executor keeps
answering), and commits its bookkeeping under it again. Labels arriving during a round stay
pending for the next one.

A BN-only round whose candidate was rejected is not asked for again until ``adabn_frames`` new
camera frames arrived (``Observation.input_shift`` reads 0 meanwhile): the same frames would give
the same verdict.

Pseudo-labels (``uses_semi_supervised``): only from the newest ``pseudo_pool`` unlabelled
frames, only while the serving lineage's ``recent_accuracy`` is at least ``pseudo_min_accuracy``
(a struggling model would teach itself its own mistakes), at most ``pseudo_per_label`` per real
label in the round (and ``max_pseudo``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from etuner_ros.core.changes import ChangeWatch, InputShift
from etuner_ros.core.costs import CostLedger, RoundCost
from etuner_ros.core.drift import DriftConfig
from etuner_ros.core.frames import FramePools
from etuner_ros.core.label_book import LabelBook
from etuner_ros.core.model import ModelBundle, embed, layer_groups, preprocess
from etuner_ros.core.policies import Decision, Observation, Policy, make_policy
from etuner_ros.core.rounds import TrainingInputs, run_bn_only, run_training
from etuner_ros.core.semi_supervised import propagated
from etuner_ros.core.simfreeze import SimFreeze, SimFreezeConfig
from etuner_ros.core.trainer import TrainConfig, batched, group_flops


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
    adabn_frames: int = 48          # camera frames whose BN statistics a round adopts ...
    adabn_window: int = 48          # ... spread over the newest this many (6 s at 8 fps)
    adabn_momentum: float = 1.0     # 1.0: replace BN statistics; <1: blend with the old ones
    adabn_depth: int = 3            # front layer groups whose BN statistics AdaBN re-estimates
    #                                 (0: all). Shallow statistics follow light, noise and
    #                                 camera; deep ones follow which few objects the window
    #                                 showed (a robot looks at one object for 1-4 s). DEV seeds
    #                                 100/101, adabn: all layers over 160 frames 46.9/57.7 %;
    #                                 depth 3 over 48 frames 52.1/63.9 %, over 80 56.0/59.3 %;
    #                                 depth 4 over 48 frames 45.7/48.1 %. A short window follows
    #                                 a new scene sooner, and shallow statistics need few objects
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
    train_flops: float          # every FLOP of the round (all kinds, see ``flops_by_kind``)
    energy_joules: float
    energy_source: str
    n_labels: int
    n_replay: int
    n_pseudo: int
    frozen_groups: list[str]
    reason: str
    epochs_run: int = 0
    cpu_seconds: float = 0.0
    flops_by_kind: dict[str, float] = field(default_factory=dict)
    bn_only: bool = False
    gate: str = ""              # evidence the gate used: "labels:N", "information:N", ...


class ContinualTuner:
    """See the module docstring."""

    def __init__(self, bundle: ModelBundle, policy: Policy | str,
                 config: TunerConfig | None = None, seed: int = 0) -> None:
        self.config = cfg = config or TunerConfig()
        self.policy = make_policy(policy, **cfg.policy_params) \
            if isinstance(policy, str) else policy
        self.seed = int(seed)
        self._lock = threading.RLock()
        self.costs = CostLedger()
        self.deployed = bundle
        tc = cfg.train
        self.labels = LabelBook(bundle.class_names, holdout_fraction=tc.holdout_fraction,
                                val_size=tc.val_size, replay_capacity=tc.replay_capacity,
                                accuracy_window=cfg.accuracy_window,
                                accuracy_min=cfg.accuracy_min, seed=seed,
                                holdout_block_s=tc.holdout_block_s)
        self.labels.lineage_start = bundle.version
        self.frames = FramePools(max(2, cfg.adabn_frames, cfg.adabn_window),
                                 cfg.unlabelled_capacity)
        self.shift = InputShift(max(2, cfg.adabn_frames))
        self.changes = ChangeWatch(cfg.drift, cfg.drift_every, bundle)
        self.simfreeze = SimFreeze([n for n, _ in layer_groups(bundle.model, bundle.arch)],
                                   cfg.simfreeze)
        self._unfreeze_next = False
        self._bn_only_next = False
        self._bn_only: set[int] = set()   # candidate versions that only changed BN statistics
        self._bn_wait = 0                 # camera frames to wait after a rejected BN round
        self._fps = 0.0
        self._last_round_end: float | None = None
        self._rejected_streak = 0
        self.rounds_done = self.rounds_deferred = self.rounds_merged = 0
        self.last_reason = "no decision yet"
        self.last_round: dict = {}
        self.busy = False

    # --- compatibility views ----------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        return self.labels.class_names

    @property
    def labels_seen(self) -> int:
        return self.labels.labels_seen

    @property
    def drift(self):
        """The scenario-change detector (``DriftDetector``)."""
        return self.changes.detector

    # --- inputs -----------------------------------------------------------------------------
    def _x(self, images: list[np.ndarray]) -> torch.Tensor:
        return preprocess(images, self.deployed.input_size)

    def observe_labels(self, samples: list, now: float) -> None:
        """Corrections and confirmations (both are labels) from the store or the caregiver."""
        if not samples:
            return
        xs = self._x([s.image for s in samples])
        with self._lock:
            if self._last_round_end is None:
                self._last_round_end = now
            self.labels.add(samples, xs, now, list(self.deployed.class_names))
            if self.policy.label_free:  # never trains: keep only the accuracy evidence
                self.labels.take_pending()
                self.labels.new_since_decide = 0

    def observe_unlabelled(self, samples: list) -> None:
        """Frames nobody labelled: the pool pseudo-labels come from (semi-supervised policies)."""
        if not samples or not self.policy.uses_semi_supervised:
            return
        xs = self._x([s.image if hasattr(s, "image") else s for s in samples])
        stamps = [int(s.stamp_ns) * 1e-9 if getattr(s, "stamp_ns", None) is not None
                  else float("nan") for s in samples]
        with self._lock:
            self.frames.add_unlabelled(xs, stamps)

    def observe_inference_rate(self, fps: float) -> None:
        with self._lock:
            self._fps = float(fps)

    def observe_frames(self, images: list[np.ndarray], now: float) -> float:
        """Camera frames: policies with ``adapts_bn`` keep the newest ``adabn_window`` and track
        the input shift; policies with ``uses_drift`` embed every ``drift_every``-th with the
        serving model for the change detector. Both are overhead in the cost ledger."""
        keep_bn = self.policy.adapts_bn and self.config.adabn_frames > 0
        if not images or not (keep_bn or self.policy.uses_drift):
            return self.changes.score
        with self._lock:
            if self._last_round_end is None:
                self._last_round_end = now
            sel = self.changes.select(len(images)) if self.policy.uses_drift else []
            if not sel and not keep_bn:
                return self.changes.score
            with self.costs.measure() as cost:
                if keep_bn:
                    xa = self._x(images[-max(self.config.adabn_frames, self.config.adabn_window):])
                    self.frames.add_camera(xa, now)
                    self._bn_wait = max(0, self._bn_wait - len(images))
                    self.shift.update(self.frames.camera(self.config.adabn_frames))
                if sel:
                    x = self._x([images[i] for i in sel])
                    self.changes.update(x, self._embed)
                    cost.add_flops("embed", len(sel) *
                                   sum(group_flops(self.changes.embedder)[:-1]))
            self.costs.add_overhead(cost)
            return self.changes.score

    def _embed(self, bundle: ModelBundle, x: torch.Tensor) -> torch.Tensor:
        bundle.model.eval()
        return batched(lambda b: embed(bundle.model, bundle.arch, b), x)

    # --- deciding ---------------------------------------------------------------------------
    def _observation(self, now: float) -> Observation:
        last = self._last_round_end if self._last_round_end is not None else now
        lb = self.labels
        drift = self.policy.uses_drift
        shift = self.shift.shift if self.policy.adapts_bn and self._bn_wait == 0 else 0.0
        return Observation(
            now=now, pending_labels=len(lb.pending),
            new_labels_since_decide=lb.new_since_decide,
            seconds_since_last_round=max(0.0, now - last),
            seconds_since_oldest_pending=(0.0 if lb.oldest_pending is None
                                          else max(0.0, now - lb.oldest_pending)),
            inference_fps=self._fps, recent_accuracy=lb.recent_accuracy(),
            change_score=self.changes.score if drift else 0.0,
            change_detected=self.changes.changed if drift else False,
            rejected_streak=self._rejected_streak, input_shift=shift)

    def decide(self, now: float, force: bool = False) -> Decision:
        """Ask the policy; ``force`` tunes whenever there is anything to train on (for a
        label-free policy: whenever there are frames to adapt BN to)."""
        with self._lock:
            obs = self._observation(now)
            self.labels.new_since_decide = 0
            if force and self.policy.label_free:
                d = Decision(True, "forced: BN re-estimation", bn_only=True) \
                    if self.frames.n_camera >= 2 else \
                    Decision(False, "no camera frames to adapt to")
            elif force:
                if not self.labels.pending and not self.labels.replay:
                    d = Decision(False, "no labelled samples to train on")
                else:
                    d = Decision(True, f"forced: {obs.pending_labels} labels pending")
            else:
                d = self.policy.decide(obs)
                if not d.tune and obs.pending_labels > 0:
                    self.rounds_deferred += 1
            if d.tune and d.bn_only and self.frames.camera(self.config.adabn_frames) is None:
                d = Decision(False, "BN round asked for but no camera frames yet")
            if d.tune and not d.bn_only and (d.unfreeze or obs.change_detected):
                self._unfreeze_next = True
            self._bn_only_next = bool(d.tune and d.bn_only)
            self.last_reason = d.reason
            return d

    # --- rounds -----------------------------------------------------------------------------
    def run_round(self, now: float, progress: Callable[[str], None] | None = None,
                  version: int | None = None) -> RoundResult:
        """The round :meth:`decide` asked for (training, or BN-only); see ``core/rounds.py``.
        ``version``: the candidate's (the tuner node's registry keeps versions unique across
        runs); default the serving version + 1. It is set before any bookkeeping keyed by it."""
        with self._lock:
            bn_only, self._bn_only_next = self._bn_only_next, False
            bn_only = bn_only or self.policy.label_free
            self.busy = True
            try:
                snap = self._bn_inputs() if bn_only else self._training_inputs(now)
            except Exception:
                self.busy = False
                raise
        try:
            with self.costs.measure() as cost:
                if bn_only:
                    frames, val, current = snap
                    cand, verdict = run_bn_only(current, frames, val,
                                                self.config.train.val_half_life,
                                                not self.policy.label_free, cost,
                                                self.config.adabn_momentum,
                                                self.config.train.val_balanced,
                                                self.config.adabn_depth)
                else:
                    done = run_training(snap, self.config.train,
                                        self.config.simfreeze.check_every, cost, progress)
        finally:
            with self._lock:
                self.busy = False
        if version is not None:
            (cand if bn_only else done.outcome.candidate).version = int(version)
        with self._lock:
            self._last_round_end = now + cost.seconds
            if bn_only:
                result = self._bn_commit(cand, verdict, frames, cost)
            else:
                result = self._training_commit(snap, done, cost)
            self._finish(result)
        return result

    def _training_commit(self, inp: TrainingInputs, done, cost: RoundCost) -> RoundResult:
        out = done.outcome
        frozen_names = self.simfreeze.group_names[:inp.frozen]
        reason = (f"{len(inp.new)} labels + {len(inp.replay)} replay + {done.n_pseudo} pseudo, "
                  f"{len(frozen_names)} groups frozen, {out.epochs_run} epochs: val "
                  f"{out.val_accuracy:.3f} vs {out.baseline_val_accuracy:.3f} -> "
                  f"{'accept' if out.accepted else 'reject'}")
        gate = f"labels:{len(inp.val)}" if inp.val else "no held-out labels: accepted"
        if inp.bn_frames is not None and out.accepted:
            self.shift.candidate_adapted(out.candidate.version, inp.bn_frames)
        else:
            self.shift.discard(out.candidate.version)
        self._bn_only.discard(out.candidate.version)  # this version changed weights
        self.labels.remember(inp.new)
        self._rejected_streak = 0 if out.accepted else self._rejected_streak + 1
        if not out.accepted:
            self.changes.round_absorbed()
        return self._result(out.candidate, out.accepted, out.val_accuracy,
                            out.baseline_val_accuracy, cost, len(inp.new), len(inp.replay),
                            done.n_pseudo, frozen_names, reason, out.epochs_run, False, gate)

    def _bn_inputs(self) -> tuple[torch.Tensor, list, ModelBundle]:
        tc = self.config
        frames = self.frames.camera(tc.adabn_frames)
        if frames is None:
            raise RuntimeError("BN-only round without camera frames (decide() refuses these)")
        since = self.frames.camera_since(tc.adabn_frames)
        val = [] if self.policy.label_free else self.labels.validation(since)
        return frames, val, self.deployed

    def _bn_commit(self, cand: ModelBundle, v, frames: torch.Tensor,
                   cost: RoundCost) -> RoundResult:
        reason = (f"BN only: statistics of the newest {frames.shape[0]} frames; gate "
                  f"{v.evidence} {v.candidate_score:.3f} vs {v.serving_score:.3f} -> "
                  f"{'accept' if v.accepted else 'reject'}")
        if v.accepted:
            self.shift.candidate_adapted(cand.version, frames)
            self._bn_only.add(cand.version)
        else:
            self.shift.discard(cand.version)
            self._bn_only.discard(cand.version)
            self._bn_wait = self.config.adabn_frames
        return self._result(cand, v.accepted, v.candidate_score, v.serving_score, cost,
                            0, 0, 0, [], reason, 0, True, v.evidence)

    def restore(self, trained: list, seen: int) -> None:
        """Labels an earlier run already trained on (a bounded sample from the store): held-out
        ones refill the validation slice, the others the replay reservoir, as if ``seen``
        labels had passed through it. None becomes pending: a restart does not retrain them."""
        if not trained:
            return
        xs = self._x([s.image for s in trained])
        with self._lock:
            self.labels.restore(trained, xs, seen)

    def _training_inputs(self, now: float) -> TrainingInputs:
        """Snapshot under the lock: what this round trains on."""
        cfg, tc, pol = self.config.train, self.config, self.policy
        new, merged = self.labels.take_pending()
        self.rounds_merged += merged
        acc = self.labels.recent_accuracy()
        n_pseudo_max = min(cfg.max_pseudo, int(tc.pseudo_per_label * len(new)))
        unl = self.frames.unlabelled(tc.pseudo_pool) if pol.uses_semi_supervised and \
            n_pseudo_max > 0 and acc is not None and acc >= tc.pseudo_min_accuracy else None
        bn_x = self.frames.camera(tc.adabn_frames) \
            if pol.adabn_in_rounds and tc.adabn_frames > 0 else None
        sf = None
        frozen = 0
        if pol.uses_simfreeze:
            sf = self.simfreeze
            if self._unfreeze_next:
                sf.unfreeze_all()
            frozen = sf.frozen_prefix
        self._unfreeze_next = False
        names = list(self.labels.class_names)
        prop = propagated(new, self.frames.unlabelled_stamped(), names, cfg.propagate_dt) \
            if pol.uses_semi_supervised and cfg.propagate_dt > 0 else None
        return TrainingInputs(self.deployed, names, new,
                              self.labels.sample_replay(cfg.replay_size,
                                                        cfg.replay_balanced),
                              self.labels.validation(), bn_x, tc.adabn_momentum,
                              tc.adabn_depth, unl,
                              n_pseudo_max, frozen, sf, prop)

    @staticmethod
    def _result(cand, accepted, val, base, cost: RoundCost, n_labels, n_replay, n_pseudo,
                frozen, reason, epochs, bn_only, gate) -> RoundResult:
        return RoundResult(cand, accepted, val, base, cost.seconds, cost.flops, cost.joules,
                           cost.source, n_labels, n_replay, n_pseudo, list(frozen), reason,
                           epochs, cost.cpu_seconds, dict(cost.flops_by_kind), bn_only, gate)

    def _finish(self, r: RoundResult) -> None:
        self.rounds_done += 1
        self.last_round = {"duration_s": r.duration_s, "cpu_seconds": r.cpu_seconds,
                           "accepted": r.accepted, "val_accuracy": r.val_accuracy,
                           "baseline_val_accuracy": r.baseline_val_accuracy,
                           "n_labels": r.n_labels, "n_replay": r.n_replay,
                           "n_pseudo": r.n_pseudo, "frozen_groups": list(r.frozen_groups),
                           "train_flops": r.train_flops, "flops_by_kind": r.flops_by_kind,
                           "bn_only": r.bn_only, "gate": r.gate, "reason": r.reason}

    def set_round_end(self, end: float) -> None:
        """When the last round ended on the caller's clock. By default a round ends at its start
        plus its measured duration; the benchmark's deterministic stream clock charges rounds
        from their counted FLOPs instead, so machine load cannot move ``periodic``'s timing."""
        with self._lock:
            self._last_round_end = float(end)

    # --- the serving model ------------------------------------------------------------------
    def deploy(self, bundle: ModelBundle) -> None:
        """``bundle`` serves now. The version already serving: no-op (see the module
        docstring). A BN-only candidate keeps the accuracy evidence (same weights); any other
        new version starts a new accuracy lineage and, while a change is flagged, re-bases the
        change detector on it (``ChangeWatch.weights_deployed``)."""
        with self._lock:
            version = int(bundle.version)
            if version == self.deployed.version:
                return
            self.deployed = bundle
            for name in bundle.class_names:
                if name not in self.labels.class_names:
                    self.labels.class_names.append(name)
            self.shift.deployed(version)
            bn_only = version in self._bn_only
            self._bn_only = {v for v in self._bn_only if v > version}
            if bn_only:
                return
            self.labels.new_lineage(version)
            if self.policy.uses_drift and self.changes.changed:
                with self.costs.measure() as cost:
                    n = self.changes.weights_deployed(bundle, self._embed)
                    cost.add_flops("embed", n * sum(group_flops(bundle)[:-1]))
                self.costs.add_overhead(cost)

    # --- reporting --------------------------------------------------------------------------
    def status(self) -> dict:
        with self._lock:
            lb = self.labels
            return {"state": "tuning" if self.busy else "idle", "policy": self.policy.name,
                    "pending": len(lb.pending), "rounds_done": self.rounds_done,
                    "rounds_deferred": self.rounds_deferred,
                    "rounds_merged": self.rounds_merged,
                    "frozen_groups": list(self.simfreeze.frozen_groups)
                    if self.policy.uses_simfreeze else [],
                    "change_score": self.changes.score,
                    "change_detected": self.changes.changed,
                    "input_shift": self.shift.shift,
                    "recent_accuracy": lb.recent_accuracy(), "last_reason": self.last_reason,
                    "replay_size": len(lb.replay), "holdout_size": len(lb.holdout),
                    "unlabelled": self.frames.n_unlabelled, "classes": list(lb.class_names),
                    "deployed_version": self.deployed.version,
                    **self.costs.status(), "last_round": dict(self.last_round)}
