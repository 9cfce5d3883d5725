"""ContinualTuner: the engine both ``tuner_node`` and the benchmark drive; a thin coordinator.

The parts, one idea each:

* ``core/label_book.py``: label intake, held-out validation slice, replay reservoir, accuracy
  evidence;
* ``core/frames.py``: which unlabelled frames a round may use (newest camera frames, pool for
  pseudo-labels);
* ``core/changes.py``: input-statistics shift (BN rounds) and scenario change (drift detector);
* ``core/bn_book.py``: BatchNorm-only rounds: when one may be asked for, on which frames, which
  candidate versions only changed BN statistics;
* ``core/rounds.py``: what a round does, step by step; ``core/gate.py``: the validation gate;
  ``core/round_result.py``: what a round reports;
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
camera frames arrived (``Observation.input_shift`` reads 0 meanwhile; ``core/bn_book.py``).

Pseudo-labels (``uses_semi_supervised``): only from the newest ``pseudo_pool`` unlabelled
frames, only once ``recent_accuracy`` is known and at least ``pseudo_min_accuracy`` (0 by
default: a higher bar never let LazyTune's rounds, which come when accuracy dropped, have any;
``core/tuner_config.py``), only predictions at ``pseudo_threshold`` confidence, at most
``pseudo_per_label`` per real label in the round (and ``max_pseudo``); the candidate then faces
the same validation gate on held-out caregiver labels.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import torch

from etuner_ros.core.bn_book import BnBook
from etuner_ros.core.changes import ChangeWatch
from etuner_ros.core.costs import CostLedger, RoundCost
from etuner_ros.core.flops import embed_flops
from etuner_ros.core.frames import FramePools
from etuner_ros.core.label_book import LabelBook
from etuner_ros.core.model import ModelBundle, embed, layer_groups, preprocess
from etuner_ros.core.policies import Decision, Observation, Policy, make_policy
from etuner_ros.core.round_result import RoundResult
from etuner_ros.core.rounds import TrainingInputs, run_bn_only, run_training
from etuner_ros.core.semi_supervised import propagated
from etuner_ros.core.simfreeze import SimFreeze
from etuner_ros.core.trainer import batched
from etuner_ros.core.tuner_config import TunerConfig

__all__ = ["ContinualTuner", "RoundResult", "TunerConfig"]  # where callers import them


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
        self.labels.new_lineage(bundle.version)
        self.frames = FramePools(max(2, cfg.adabn_frames, cfg.adabn_window),
                                 cfg.unlabelled_capacity)
        self.bn = BnBook(self.frames, cfg.adabn_frames, bundle.version)
        self.changes = ChangeWatch(cfg.drift, cfg.drift_every, bundle)
        self.simfreeze = SimFreeze([n for n, _ in layer_groups(bundle.model, bundle.arch)],
                                   cfg.simfreeze)
        self._unfreeze_next = False
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
                    self.bn.add_camera(xa, now, len(images))
                if sel:
                    x = self._x([images[i] for i in sel])
                    self.changes.update(x, self._embed)
                    cost.add_flops("embed", len(sel) * embed_flops(self.changes.embedder))
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
        shift = self.bn.shift_seen if self.policy.adapts_bn else 0.0
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
                d = self.bn.forced()
            elif force:
                if not self.labels.pending and not self.labels.replay:
                    d = Decision(False, "no labelled samples to train on")
                else:
                    d = Decision(True, f"forced: {obs.pending_labels} labels pending")
            else:
                d = self.policy.decide(obs)
                if not d.tune and obs.pending_labels > 0:
                    self.rounds_deferred += 1
            d = self.bn.decided(d)  # a BN round needs frames
            if d.tune and not d.bn_only and (d.unfreeze or obs.change_detected):
                self._unfreeze_next = True
            self.last_reason = d.reason
            return d

    # --- rounds -----------------------------------------------------------------------------
    def run_round(self, now: float, progress: Callable[[str], None] | None = None,
                  version: int | None = None) -> RoundResult:
        """The round :meth:`decide` asked for (training, or BN-only); see ``core/rounds.py``.
        ``version``: the candidate's (the tuner node's registry keeps versions unique across
        runs); default the serving version + 1. It is set before any bookkeeping keyed by it."""
        with self._lock:
            bn_only = self.bn.take_next() or self.policy.label_free
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
        except Exception:
            if not bn_only:  # nothing was trained: its labels wait for the next round
                with self._lock:
                    self.labels.give_back(snap.new)
            raise
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
        self.bn.training_round_done(out.candidate.version,
                                    inp.bn_frames if out.accepted else None)
        self.labels.remember(inp.new)
        self._rejected_streak = 0 if out.accepted else self._rejected_streak + 1
        if not out.accepted:
            self.changes.round_absorbed()
        return RoundResult.measured(out.candidate, out.accepted, out.val_accuracy,
                                    out.baseline_val_accuracy, cost, len(inp.new),
                                    len(inp.replay), done.n_pseudo, frozen_names, reason,
                                    out.epochs_run, False, gate)

    def _bn_inputs(self) -> tuple[torch.Tensor, list, ModelBundle]:
        frames, since = self.bn.round_frames()
        val = [] if self.policy.label_free else self.labels.validation(since)
        return frames, val, self.deployed

    def _bn_commit(self, cand: ModelBundle, v, frames: torch.Tensor,
                   cost: RoundCost) -> RoundResult:
        reason = (f"BN only: statistics of the newest {frames.shape[0]} frames; gate "
                  f"{v.evidence} {v.candidate_score:.3f} vs {v.serving_score:.3f} -> "
                  f"{'accept' if v.accepted else 'reject'}")
        self.bn.bn_round_done(cand.version, frames, v.accepted)
        return RoundResult.measured(cand, v.accepted, v.candidate_score, v.serving_score, cost,
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
        bn_x = self.bn.camera() if pol.adabn_in_rounds and tc.adabn_frames > 0 else None
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

    def _finish(self, r: RoundResult) -> None:
        self.rounds_done += 1
        self.last_round = r.summary()

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
            if self.bn.deployed(version):  # BN statistics only: same weights, same evidence
                self.labels.same_weights(version)
                return
            self.labels.new_lineage(version)
            if self.policy.uses_drift and self.changes.changed:
                with self.costs.measure() as cost:
                    n = self.changes.weights_deployed(bundle, self._embed)
                    cost.add_flops("embed", n * embed_flops(bundle))
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
                    "input_shift": self.bn.shift.shift,
                    "recent_accuracy": lb.recent_accuracy(), "last_reason": self.last_reason,
                    "replay_size": len(lb.replay), "holdout_size": len(lb.holdout),
                    "unlabelled": self.frames.n_unlabelled, "classes": list(lb.class_names),
                    "deployed_version": self.deployed.version,
                    **self.costs.status(), "last_round": dict(self.last_round)}
