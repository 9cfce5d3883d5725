"""Run one labelled stream through one policy on a deterministic stream clock.

Same stream, same starting model, same caregiver seed for every policy; the robot's own
:class:`ContinualTuner` does the tuning. Frame ``i`` happens at ``i / fps`` seconds. Every frame
is classified by the model deployed at that moment. The caregiver looks at a share of frames
(its labels reach the tuner every ``label_period_s``); the tuner is polled every ``tick_s``. A
round starts at a poll and is charged its counted work on the stream clock
(:func:`etuner_ros.bench.clock.round_seconds`: FLOPs at a documented device speed); its model
serves from the moment the round would have finished: slow tuning costs accuracy, and the same
seed gives the same accuracy on any machine under any load. Rounds never overlap; labels
arriving meanwhile wait for the next one.

Reported beside the clock, measured the same way for every policy: wall time of the rounds plus
the tuner's drift/probe overhead (``tune_seconds``), the process CPU time of every call into the
tuner (``cpu_seconds``), energy, and counted FLOPs of rounds plus overhead.

Policies with ``label_memory`` serve as perception does with its label memory on
(``core/label_memory.py``): a frame whose view matches a labelled one is answered with that
label, and the caregiver sees (confirms or corrects) what was answered. Labels enter the memory
when they reach the tuner (every ``label_period_s``), not earlier. Its work is inference, so it
is not in the tuner's CPU time or FLOPs (keys and lookup against 512 entries: 0.4 ms per 8
frames against 21 ms for the forward pass, one thread, measured here).

Every policy gets home recall (``core/home_recall.py``; off with ``BenchConfig.home``): while
the camera's scene signature matches the frames the starting model was trained on
(``home_frames``), the starting model answers, as perception does; a label-free policy has no
veto. The label memory still answers over it. A label records which model answered
(``model_version``), so the starting model's answers are no accuracy evidence for the tuned one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch

from etuner_ros.bench.clock import round_seconds, seed_everything
from etuner_ros.bench.config import BenchConfig
from etuner_ros.core.home_recall import HomeConfig, HomeRecall, HomeSignature
from etuner_ros.core.label_memory import LabelMemory
from etuner_ros.core.model import ModelBundle
from etuner_ros.core.policies import make_policy
from etuner_ros.core.store import Sample
from etuner_ros.core.tuner import ContinualTuner
from etuner_ros.sim.caregiver import Caregiver


@dataclass
class PolicyRun:
    name: str
    correct: np.ndarray
    rounds: list[dict]
    tune_seconds: float      # measured wall time of rounds + overhead
    cpu_seconds: float       # measured process CPU time of every tuner call
    device_seconds: float    # stream-clock charge of every round (deterministic)
    energy_joules: float
    energy_source: str
    train_flops: float       # counted FLOPs of rounds + overhead
    status: dict
    wall_seconds: float      # the whole replay, inference included
    flops_by_kind: dict[str, float]  # training, pseudo-labelling, BN, probes, overhead, ...
    memory_recalls: int = 0  # predictions answered by the label memory
    home_answered: int = 0   # predictions the starting model made back in its home
    home_vetoes: int = 0     # times the caregiver's labels took the home from it


class _CpuMeter:
    """Process CPU seconds spent inside ``with meter():`` blocks (the tuner's work only)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextmanager
    def __call__(self) -> Iterator[None]:
        t0 = time.process_time()
        try:
            yield
        finally:
            self.seconds += time.process_time() - t0


def caregiver_for(cfg: BenchConfig) -> Caregiver:
    """The caregiver every policy (and the hindsight reference) meets on ``cfg.seed``."""
    return Caregiver(cfg.label_fraction, seed=cfg.seed, confirm_fraction=cfg.confirm_fraction)


def run_policy(name: str, stream, start: ModelBundle, cfg: BenchConfig,
               log: Callable[[str], None] | None = None,
               home_frames: list | None = None) -> PolicyRun:
    """Play ``stream`` once with policy ``name``; see the module docstring."""
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.torch_threads)
    policy = make_policy(name, **cfg.policy_params.get(name, {}))
    tuner = ContinualTuner(start.clone(), policy, cfg.tuner, seed=cfg.seed)
    deployed = tuner.deployed
    memory = LabelMemory(cfg.memory) if policy.label_memory else None
    home = _home_recall(cfg.home, policy.label_free, home_frames)
    home_model = start.clone()  # never tuned: the model the home was trained for
    home_labels: list[tuple[bool, int]] = []  # (was it right, its turn), until delivered
    caregiver = caregiver_for(cfg)
    cpu = _CpuMeter()
    frames = stream.frames
    n = len(frames)
    correct = np.zeros(n, dtype=bool)
    rounds: list[dict] = []
    swap: tuple[float, ModelBundle] | None = None
    busy_until = 0.0
    labels_out: list[Sample] = []
    label_keys: list[np.ndarray] = []  # their view keys, kept from when they were predicted
    next_delivery = cfg.label_period_s
    tune_s = joules = flops = device_s = 0.0
    by_kind: dict[str, float] = {}
    source = "n/a"
    per_tick = max(1, round(cfg.tick_s * cfg.fps))
    # The clock: frame position / fps; a region stream's items share their room frame's time.
    pos = [int(getattr(f, "frame_index", i)) for i, f in enumerate(frames)]
    t_start = time.perf_counter()
    for chunk in _ticks(pos, per_tick):
        # Split the chunk where a finished round's model takes over.
        i0 = 0
        while i0 < len(chunk):
            i1 = len(chunk)
            if swap is not None:
                cut = next((j for j in range(i0, len(chunk))
                            if pos[chunk[j]] / cfg.fps >= swap[0]), None)
                if cut == i0:
                    deployed = swap[1]
                    with cpu():
                        tuner.deploy(deployed)
                    swap = None
                    continue
                if cut is not None:
                    i1 = cut
            idx = chunk[i0:i1]
            images = [frames[i].image for i in idx]
            at_home = home is not None and home.observe(images, pos[idx[0]] / cfg.fps)
            answering = home_model if at_home else deployed
            ids, _ = answering.predict(images)
            preds = [answering.class_names[int(pid)] for pid in ids]
            keys = memory.keys(images) if memory is not None else None
            recalled: list[str | None] = [None] * len(preds)
            if memory is not None:
                recalled = memory.recall(keys, deployed.class_names, pos[idx[0]] / cfg.fps)
                preds = [r or p for r, p in zip(recalled, preds, strict=True)]
            for k, (i, pred) in enumerate(zip(idx, preds, strict=True)):
                f = frames[i]
                correct[i] = pred == f.label
                fb = caregiver.feedback(f.label, pred, key=f.index)
                if fb is not None:
                    # A recalled answer is a caregiver's label, not the model's prediction: no
                    # accuracy evidence for the model (as the collector stores it).
                    model_pred = None if recalled[k] else pred
                    if at_home and model_pred is not None:
                        home_labels.append((model_pred == fb.true_label, home.episode))
                    labels_out.append(Sample(i + 1, f.image, fb.true_label,
                                             int(pos[i] / cfg.fps * 1e9), predicted=model_pred,
                                             model_version=answering.version,
                                             confirms=bool(fb.confirms), source="bench",
                                             scenario=f.scenario))
                    if keys is not None:
                        label_keys.append(keys[k])
                elif i % cfg.unlabelled_every == 0:
                    with cpu():
                        tuner.observe_unlabelled([Sample(-(i + 1), f.image, None,
                                                         int(pos[i] / cfg.fps * 1e9))])
            i0 = i1
        now = (pos[chunk[-1]] + 1) / cfg.fps
        with cpu():
            tuner.observe_frames([frames[i].image for i in chunk], now)
            tuner.observe_inference_rate(cfg.fps)
            if now >= next_delivery:
                tuner.observe_labels(labels_out, now)
                if memory is not None and labels_out:
                    memory.add(np.stack(label_keys), [s.label for s in labels_out], now)
                labels_out, label_keys = [], []
                if home is not None:
                    for ok, ep in home_labels:
                        home.label(ok, ep)
                home_labels = []
                next_delivery += cfg.label_period_s
            if swap is not None and swap[0] <= now:
                deployed = swap[1]
                tuner.deploy(deployed)
                swap = None
        if now < busy_until:
            continue
        with cpu():
            decision = tuner.decide(now)
        if not decision.tune:
            continue
        with cpu():
            r = tuner.run_round(now)
        charge = round_seconds(r.train_flops, cfg.device_flops_per_s, cfg.round_fixed_s)
        busy_until = now + charge
        tuner.set_round_end(busy_until)  # periodic's timing follows the stream clock too
        tune_s += r.duration_s
        device_s += charge
        joules += r.energy_joules
        flops += r.train_flops
        for kind, v in r.flops_by_kind.items():
            by_kind[kind] = by_kind.get(kind, 0.0) + v
        source = r.energy_source
        rounds.append({"t": now, "end": busy_until, "frame": pos[chunk[-1]] + 1,
                       "accepted": r.accepted, "bn_only": r.bn_only,
                       "device_s": charge, "wall_s": r.duration_s,
                       "flops": r.train_flops,
                       "n_labels": r.n_labels, "n_replay": r.n_replay, "n_pseudo": r.n_pseudo,
                       "frozen": len(r.frozen_groups), "epochs": r.epochs_run,
                       "val": r.val_accuracy, "base_val": r.baseline_val_accuracy,
                       "why": decision.reason, "gate": r.gate,
                       "cka": [None if c is None else round(c, 4)
                               for c in tuner.simfreeze.last_cka]
                       if policy.uses_simfreeze else None})
        if r.accepted:
            swap = (busy_until, r.candidate)
        if log:
            log(f"  {name:9s} t={now:6.1f}s round {len(rounds):3d} {charge:5.2f}s "
                f"{'ok ' if r.accepted else 'rej'} {decision.reason[:60]} | {r.reason[:70]}")
    st = tuner.status()
    tune_s += st["overhead_seconds"]
    joules += st["overhead_joules"]
    flops += st["overhead_flops"]
    device_s += st["overhead_flops"] / cfg.device_flops_per_s
    for kind, v in st.get("overhead_flops_by_kind", {}).items():
        by_kind[f"overhead_{kind}"] = by_kind.get(f"overhead_{kind}", 0.0) + v
    return PolicyRun(name, correct, rounds, tune_s, cpu.seconds, device_s, joules, source,
                     flops, st, time.perf_counter() - t_start, by_kind,
                     memory.recalled if memory is not None else 0,
                     home.answered if home is not None else 0,
                     home.vetoes if home is not None else 0)


def _home_recall(cfg: HomeConfig, label_free: bool, home_frames: list | None
                 ) -> HomeRecall | None:
    """Home recall (``core/home_recall.py``) for a policy, when the home is known: every
    policy gets it (for ``none`` it changes nothing); a label-free one without the veto."""
    if not cfg.enabled or not home_frames:
        return None
    return HomeRecall(HomeSignature.from_images([f.image for f in home_frames]),
                      replace(cfg, veto_min=0) if label_free else cfg)


def _ticks(pos: list[int], per_tick: int) -> Iterator[list[int]]:
    """Item indices grouped by tuner poll: ``per_tick`` frames of the clock each (one item per
    frame for a frame stream, every region of those frames for a region stream)."""
    chunk: list[int] = []
    for i, p in enumerate(pos):
        if chunk and p // per_tick != pos[chunk[-1]] // per_tick:
            yield chunk
            chunk = []
        chunk.append(i)
    if chunk:
        yield chunk


def summarise(run: PolicyRun, stream, cfg: BenchConfig) -> dict:
    """One policy's entry for one seed."""
    scen = np.array([f.scenario for f in stream.frames])
    per = {s: float(run.correct[scen == s].mean()) for s in dict.fromkeys(scen.tolist())}
    return {"tune_seconds": run.tune_seconds, "cpu_seconds": run.cpu_seconds,
            "device_seconds": run.device_seconds, "energy_joules": run.energy_joules,
            "energy_source": run.energy_source, "rounds": len(run.rounds),
            "rounds_accepted": sum(r["accepted"] for r in run.rounds),
            "avg_accuracy": float(run.correct.mean()), "accuracy_per_scenario": per,
            "train_flops": run.train_flops, "flops_by_kind": run.flops_by_kind,
            "deferred": int(run.status.get("rounds_deferred", 0)),
            "merged": int(run.status.get("rounds_merged", 0)),
            "overhead_seconds": float(run.status.get("overhead_seconds", 0.0)),
            "wall_seconds": run.wall_seconds, "round_log": run.rounds,
            "memory_recalls": run.memory_recalls, "home_answered": run.home_answered,
            "home_vetoes": run.home_vetoes,
            "policy_params": cfg.policy_params.get(run.name, {})}
