"""Run one labelled stream through every policy on a simulated stream clock.

Same stream, same starting model, same caregiver seed for every policy; the robot's own
:class:`ContinualTuner` does the tuning. Frame ``i`` happens at ``i / fps`` seconds. Every frame
is classified by the model deployed at that moment. The caregiver looks at a share of frames
(its labels reach the tuner every ``label_period_s``); the tuner is polled every ``tick_s``. A
round starts at a poll, takes its *measured* wall time on the stream clock, and its model serves
from the moment it would have finished: slow tuning costs accuracy. Rounds never overlap; labels
arriving meanwhile wait for the next one. Every policy's tuning time = its rounds' wall time +
the tuner's drift/probe overhead, measured the same way for all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from etuner_ros.core.model import ModelBundle
from etuner_ros.core.policies import POLICY_NAMES, make_policy
from etuner_ros.core.store import Sample
from etuner_ros.core.tuner import ContinualTuner, TunerConfig
from etuner_ros.sim.caregiver import Caregiver


@dataclass
class BenchConfig:
    """Benchmark defaults in one place."""

    seed: int = 0
    frames_per_scenario: int = 200
    fps: float = 8.0                 # stream clock: frame i at i / fps seconds
    label_fraction: float = 0.25     # share of frames the caregiver looks at
    confirm_fraction: float = 0.5    # share of correct predictions it confirms
    label_period_s: float = 2.0      # the caregiver's labels reach the tuner in batches
    tick_s: float = 1.0              # tuner poll period (as tuner_node's poll_period_s)
    unlabelled_every: int = 4        # every n-th unlabelled frame goes to the unlabelled pool
    arch: str = "mobilenet_v3_small"
    input_size: int = 64
    torch_threads: int = 1            # one thread: OpenMP spin-waits ruin timings on a shared CPU
    policies: tuple[str, ...] = POLICY_NAMES
    policy_params: dict = field(default_factory=lambda: {"periodic": {"period_s": 30.0}})
    tuner: TunerConfig = field(default_factory=TunerConfig)
    pretrain_frames: int = 1200      # synthetic: sim.pretrain's budget (cached per key)
    pretrain_epochs: int = 8


@dataclass
class PolicyRun:
    name: str
    correct: np.ndarray
    rounds: list[dict]
    tune_seconds: float
    energy_joules: float
    energy_source: str
    train_flops: float
    status: dict
    wall_seconds: float


def _feedback(caregiver: Caregiver, frame, predicted: str):
    """Adapter to the caregiver's signature: (true label, confirms) or None."""
    fb = caregiver.feedback(frame.label, predicted, key=frame.index)
    if fb is None:
        return None
    return fb.true_label, bool(fb.confirms)


def run_policy(name: str, stream, start: ModelBundle, cfg: BenchConfig,
               log: Callable[[str], None] | None = None) -> PolicyRun:
    """Play ``stream`` once with policy ``name``; see the module docstring."""
    torch.manual_seed(cfg.seed)
    policy = make_policy(name, **cfg.policy_params.get(name, {}))
    tuner = ContinualTuner(start.clone(), policy, cfg.tuner, seed=cfg.seed)
    deployed = tuner.deployed
    caregiver = Caregiver(cfg.label_fraction, seed=cfg.seed,
                          confirm_fraction=cfg.confirm_fraction)
    frames = stream.frames
    n = len(frames)
    correct = np.zeros(n, dtype=bool)
    rounds: list[dict] = []
    swap: tuple[float, ModelBundle] | None = None
    busy_until = 0.0
    labels_out: list[Sample] = []
    next_delivery = cfg.label_period_s
    tune_s = joules = flops = 0.0
    source = "n/a"
    per_tick = max(1, round(cfg.tick_s * cfg.fps))
    t_start = time.perf_counter()
    for start_i in range(0, n, per_tick):
        chunk = list(range(start_i, min(n, start_i + per_tick)))
        # Split the chunk where a finished round's model takes over.
        i0 = 0
        while i0 < len(chunk):
            i1 = len(chunk)
            if swap is not None:
                cut = next((j for j in range(i0, len(chunk)) if chunk[j] / cfg.fps >= swap[0]),
                           None)
                if cut == i0:
                    deployed = swap[1]
                    tuner.deploy(deployed)
                    swap = None
                    continue
                if cut is not None:
                    i1 = cut
            idx = chunk[i0:i1]
            ids, _ = deployed.predict([frames[i].image for i in idx])
            for i, pid in zip(idx, ids, strict=True):
                f = frames[i]
                pred = deployed.class_names[int(pid)]
                correct[i] = pred == f.label
                fb = _feedback(caregiver, f, pred)
                if fb is not None:
                    labels_out.append(Sample(i + 1, f.image, fb[0], int(i / cfg.fps * 1e9),
                                             predicted=pred, model_version=deployed.version,
                                             confirms=fb[1], source="bench",
                                             scenario=f.scenario))
                elif i % cfg.unlabelled_every == 0:
                    tuner.observe_unlabelled([Sample(-(i + 1), f.image, None,
                                                     int(i / cfg.fps * 1e9))])
            i0 = i1
        now = (chunk[-1] + 1) / cfg.fps
        tuner.observe_frames([frames[i].image for i in chunk], now)
        tuner.observe_inference_rate(cfg.fps)
        if now >= next_delivery:
            tuner.observe_labels(labels_out, now)
            labels_out = []
            next_delivery += cfg.label_period_s
        if swap is not None and swap[0] <= now:
            deployed = swap[1]
            tuner.deploy(deployed)
            swap = None
        if now < busy_until:
            continue
        decision = tuner.decide(now)
        if not decision.tune:
            continue
        r = tuner.run_round(now)
        busy_until = now + r.duration_s
        tune_s += r.duration_s
        joules += r.energy_joules
        flops += r.train_flops
        source = r.energy_source
        rounds.append({"t": now, "end": busy_until, "frame": chunk[-1] + 1,
                       "accepted": r.accepted, "duration_s": r.duration_s,
                       "n_labels": r.n_labels, "n_replay": r.n_replay, "n_pseudo": r.n_pseudo,
                       "frozen": len(r.frozen_groups), "epochs": r.epochs_run,
                       "val": r.val_accuracy, "base_val": r.baseline_val_accuracy,
                       "why": decision.reason,
                       "cka": [None if c is None else round(c, 4)
                               for c in tuner.simfreeze.last_cka]
                       if policy.uses_simfreeze else None})
        if r.accepted:
            swap = (busy_until, r.candidate)
        if log:
            log(f"  {name:9s} t={now:6.1f}s round {len(rounds):3d} {r.duration_s:5.2f}s "
                f"{'ok ' if r.accepted else 'rej'} {decision.reason[:60]} | {r.reason[:70]}")
    st = tuner.status()
    tune_s += st["overhead_seconds"]
    joules += st["overhead_joules"]
    flops += st["overhead_flops"]
    return PolicyRun(name, correct, rounds, tune_s, joules, source, flops, st,
                     time.perf_counter() - t_start)


def summarise(run: PolicyRun, stream, cfg: BenchConfig) -> dict:
    """One policy's entry in results.json."""
    scen = np.array([f.scenario for f in stream.frames])
    per = {s: float(run.correct[scen == s].mean()) for s in dict.fromkeys(scen.tolist())}
    return {"tune_seconds": run.tune_seconds, "energy_joules": run.energy_joules,
            "energy_source": run.energy_source, "rounds": len(run.rounds),
            "rounds_accepted": sum(r["accepted"] for r in run.rounds),
            "avg_accuracy": float(run.correct.mean()), "accuracy_per_scenario": per,
            "train_flops": run.train_flops,
            "deferred": int(run.status.get("rounds_deferred", 0)),
            "merged": int(run.status.get("rounds_merged", 0)),
            "overhead_seconds": float(run.status.get("overhead_seconds", 0.0)),
            "wall_seconds": run.wall_seconds, "round_log": run.rounds,
            "policy_params": cfg.policy_params.get(run.name, {})}


def ratios(policies: dict) -> dict:
    """Each policy's time and energy / immediate's, accuracy - immediate's in points."""
    base = policies.get("immediate")
    if base is None:
        return {}
    out = {}
    for name, p in policies.items():
        out[name] = {
            "time_x": p["tune_seconds"] / base["tune_seconds"] if base["tune_seconds"] else None,
            "energy_x": (p["energy_joules"] / base["energy_joules"]
                         if base["energy_joules"] else None),
            "flops_x": p["train_flops"] / base["train_flops"] if base["train_flops"] else None,
            "accuracy_pts": 100.0 * (p["avg_accuracy"] - base["avg_accuracy"])}
    return out


def config_dict(cfg: BenchConfig) -> dict:
    d = asdict(cfg)
    d["policies"] = list(cfg.policies)
    return d
