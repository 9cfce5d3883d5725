#!/usr/bin/env python3
"""Why the caregiver's labels do not beat label-free AdaBN in the benchmark's stream.

Evidence for an open issue: on the synthetic stream ``etuner`` (labels + AdaBN) does not beat
``adabn`` (BatchNorm statistics re-estimated, no label used). Two measurements on one DEV seed
(test seeds are refused: constants are tuned on DEV seeds); every number is accuracy in %, over
the stream and per scenario (200 frames, 25 s each):

``timing``: is it *when* rounds run? The default ``etuner`` run beside the same policy with an
oracle's timing (training rounds ``--offsets`` s after each scenario starts, BN-only rounds as
usual), both through the benchmark's ``run_policy``, then every training round of each.

``heads``: is it *what* is learned? Frozen features (penultimate embeddings + logits) of every
frame under the starting model (``start``) or a per-scene shallow AdaBN model (``adabn``: the
front ``TunerConfig.adabn_depth`` groups' BN statistics from each scenario's first
``adabn_frames`` frames, used from the next frame on), replayed through the benchmark's
caregiver (labels batched every ``label_period_s``, usable ``--delay`` s later) with learners
that use labels only (each answers with the model until its first labels arrive): ``knn``
(the nearest labelled frame's class above cosine similarity tau), ``prototypes`` (cosine class
means mixed with the softmax), ``logistic head`` (the last Linear refit on all labels) and
``bias-only`` (its bias refit on the newest labels). At ``--delay 0`` kNN gains mostly because
the labelled object is still in view (a robot looks at one object for 1-4 s); not 1 s later.

    . scripts/env.sh && python scripts/label_probe.py timing --seed 100 --offsets 10,18
    . scripts/env.sh && python scripts/label_probe.py heads --seed 100
    . scripts/env.sh && python scripts/label_probe.py heads --seed 100 --delay 0
    . scripts/env.sh && python scripts/label_probe.py ceiling --seed 100
    . scripts/env.sh && python scripts/label_probe.py ceiling --seed 100 --stream sklearn-digits
    . scripts/env.sh && python scripts/label_probe.py ceiling --seed 100 --no-runs

``ceiling``: could *any* round on the labels so far do better, with compute unlimited? At the middle
of each scenario after the first, the starting model is fine-tuned on ``--core`` frames of its
own training data plus every label the caregiver gave before that moment (the labels the
``hindsight`` reference uses, cut at the midpoint), ``--epochs`` epochs of Adam at ``--lr`` with
BatchNorm in training mode, then BN statistics re-estimated over that training set (the
hindsight recipe, from the starting model instead of from scratch). Scored on the scenario's
second half beside the starting model, shallow AdaBN (the engine's ``adabn_depth`` front groups
on the ``adabn_frames`` frames before the midpoint), the fine-tuned model with the same AdaBN,
and ``round``: the engine's own training round (``train_round`` with the default ``TrainConfig``,
no gate) on that AdaBN model, given the scenario's labels so far and a class-balanced replay of
the earlier ones, as a well-timed ``etuner`` round would be. Beside them: ``hinds``, the
``hindsight`` reference (trained offline on every label of the stream, the second half's own
included) on the same frames, and ``known``, the share of the second half whose class this
scenario's labels so far show. ``--stream sklearn-digits`` runs it on the digits stream,
``--no-runs`` with every frame a new view (the benchmark's ``--run-seconds 0 0``).
Each half-scenario shows about five objects, so single cells move in steps of ~20 points.

(From a source checkout without ``install/``: ``PYTHONPATH=. python scripts/label_probe.py``.)
"""

from __future__ import annotations

import argparse
import random
from unittest import mock

import numpy as np
import torch
from probe_common import header, load, row, start_probe
from probe_heads import heads
from torch.nn.functional import cross_entropy

import etuner_ros.bench.runner as runner
from etuner_ros.core.adabn import adapt_bn_front
from etuner_ros.core.model import ModelBundle, preprocess
from etuner_ros.core.policies import Decision, Observation
from etuner_ros.core.policies.base import bn_shift
from etuner_ros.core.policies.etuner import ETunerPolicy

# ------------------------------------------------------------------ timing: an oracle's rounds

class OracleTiming(ETunerPolicy):
    """``etuner`` that trains ``offsets`` s after each scenario's start (the first poll at or
    past an offset with labels pending; the first offset thaws every group, as a detected scene
    change does) and otherwise only answers ``etuner``'s BN-only rounds."""

    def __init__(self, offsets: list[float], scene_s: float, **etuner) -> None:
        super().__init__(**etuner)
        self.offsets, self.scene_s = offsets, scene_s
        self._done: set[tuple[int, int]] = set()

    def decide(self, obs: Observation) -> Decision:
        scene = int(obs.now // self.scene_s)
        for k, off in enumerate(self.offsets):
            if (obs.now - scene * self.scene_s >= off and (scene, k) not in self._done
                    and obs.pending_labels > 0):
                self._done.add((scene, k))
                return Decision(True, f"oracle: scene {scene} +{off:g} s", unfreeze=k == 0)
        return bn_shift(obs, self.adapt_shift, "oracle: wait") or Decision(False, "oracle: wait")


def timing(seed: int, offsets: list[float], epochs: int | None) -> None:
    cfg, stream, start = load(seed)
    if epochs is not None:
        cfg.tuner.train.epochs = epochs
    scen = np.array([f.scenario for f in stream.frames])
    runs = [("etuner", runner.run_policy("etuner", stream, start, cfg))]
    oracle = OracleTiming(offsets, cfg.frames_per_scenario / cfg.fps,
                          **cfg.policy_params.get("etuner", {}))
    # run_policy builds its policy with runner.make_policy(name, ...) and has no other hook:
    # during this one call that name answers the oracle (mock restores it on exit).
    with mock.patch.object(runner, "make_policy", lambda name, **params: oracle):
        runs.append(("oracle " + ",".join(f"{o:g}" for o in offsets),
                     runner.run_policy("etuner", stream, start, cfg)))
    print(header(seed, scen, f", epochs {cfg.tuner.train.epochs}") +
          "  rounds train ok   gflop  tuner_cpu_s")
    for label, r in runs:
        train = sum(not x["bn_only"] for x in r.rounds)
        ok = sum(x["accepted"] for x in r.rounds)
        print(row(label, r.correct, scen, f" | {len(r.rounds):6d} {train:5d} {ok:3d} "
                                          f"{r.train_flops / 1e9:7.1f}  {r.cpu_seconds:.1f}"))
    for label, r in runs:
        print(f"\n{label}: training rounds (t, end: stream clock s; val/base: candidate/serving"
              " validation accuracy; lab/rep/ps: labels, replayed, pseudo-labels)")
        for x in (x for x in r.rounds if not x["bn_only"]):
            print(f"  t={x['t']:6.1f} end={x['end']:6.1f} {'ok ' if x['accepted'] else 'rej'} "
                  f"val={x['val']:.3f} base={x['base_val']:.3f} lab={x['n_labels']:3d} "
                  f"rep={x['n_replay']:3d} ps={x['n_pseudo']:3d} frozen={x['frozen']} "
                  f"ep={x['epochs']} {x['why'][:50]}")


def recalibrate(model: torch.nn.Module, x: torch.Tensor) -> None:
    """BN running statistics set to exactly those of ``x`` (one batch), eval mode after."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    for m in bns:
        m.momentum = 0.01
    model.eval()


def ceiling(seed: int, core: int, epochs: int, lr: float, stream_name: str = "synthetic",
            runs: bool = True) -> None:
    from etuner_ros.bench.hindsight import caregiver_labels, hindsight
    from etuner_ros.bench.suite import start_data
    from etuner_ros.core.trainer import class_balanced_sample, train_round

    cfg, stream, start = load(seed, stream_name, runs)
    frames, names = list(stream.frames), list(stream.class_names)
    scen = np.array([f.scenario for f in frames])
    x = preprocess([f.image for f in frames], start.input_size)
    y = torch.tensor([names.index(f.label) for f in frames])
    labelled = np.array(caregiver_labels(stream, start, cfg))
    data = start_data(stream_name, stream, cfg)
    pick = np.random.default_rng(seed).choice(len(data), min(core, len(data)), replace=False)
    cx = preprocess([data[i].image for i in pick], start.input_size)
    cy = torch.tensor([names.index(data[i].label) for i in pick])
    base = start.clone()
    base.ensure_classes(names)
    tc = cfg.tuner
    batch = round(cfg.label_period_s * cfg.fps)  # labels leave in batches: one batch of delay
    _, offline = hindsight(stream, start, data, cfg)  # every label, future ones included

    def score(model: torch.nn.Module, idx: np.ndarray) -> float:
        model.eval()
        with torch.no_grad():
            return float((model(x[idx]).argmax(1) == y[idx]).float().mean()) * 100

    def adapted(bundle: ModelBundle, recent: torch.Tensor) -> ModelBundle:
        out = bundle.clone()
        adapt_bn_front(out, recent, 1.0, tc.adabn_depth)
        return out

    print(f"seed {seed}: second half of each scenario; fine-tuned on {len(pick)} starting "
          f"frames + the labels before the midpoint, {epochs} epochs, lr {lr:g}")
    print(f"{'scenario':22s} {'labels':>6s} {'in it':>5s} {'known':>5s} | {'start':>5s} "
          f"{'adabn':>5s} {'tuned':>5s} {'t+ada':>5s} {'round':>5s} | {'hinds':>5s}")
    rows = []
    for s in list(dict.fromkeys(scen.tolist()))[1:]:
        ids = np.nonzero(scen == s)[0]
        cut = int(ids[0] + len(ids) // 2)
        test = np.arange(cut, ids[-1] + 1)
        have = labelled[labelled < cut - batch]
        recent = x[max(int(ids[0]), cut - tc.adabn_frames):cut]
        torch.manual_seed(seed * 1000 + int(ids[0]))  # each row alone reproduces its numbers
        tuned = base.clone()
        model = tuned.model
        tx, ty = torch.cat([cx, x[have]]), torch.cat([cy, y[have]])
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(tx.shape[0])
            for j in range(0, tx.shape[0], 32):
                idx = order[j:j + 32]
                if len(idx) > 1:
                    loss = cross_entropy(model(tx[idx]), ty[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
        recalibrate(model, tx)
        ada = adapted(base, recent)
        new, old = have[have >= ids[0]], have[have < ids[0]]
        rep = old[class_balanced_sample([names[int(y[i])] for i in old], tc.train.replay_size,
                                        random.Random(seed))] if len(old) else old
        both = np.concatenate([new, rep]).astype(int)
        engine = train_round(ada, names, x[both], y[both], torch.ones(len(both)), x[:0], y[:0],
                             0, tc.train, candidate=ada.clone()).candidate
        r = [score(base.model, test), score(ada.model, test), score(model, test),
             score(adapted(tuned, recent).model, test), score(engine.model, test)]
        # known: share of the second half whose class this scenario's labels so far show
        known = float(np.isin(y[test].numpy(), y[new].numpy()).mean()) * 100
        r += [float(offline[test].mean()) * 100]
        rows.append([known, *r])
        print(f"{s:22s} {len(have):6d} {int((have >= ids[0]).sum()):5d} {known:5.1f} | "
              + " ".join(f"{v:5.1f}" for v in r[:-1]) + f" | {r[-1]:5.1f}", flush=True)
    m = np.mean(rows, axis=0)
    print(f"{'mean':22s} {'':6s} {'':5s} {m[0]:5.1f} | " + " ".join(f"{v:5.1f}" for v in m[1:-1])
          + f" | {m[-1]:5.1f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("timing", "heads", "ceiling"))
    p.add_argument("--seed", type=int, default=100, help="a DEV seed (test seeds are refused)")
    p.add_argument("--offsets", default="10,18",
                   help="timing: seconds after each scenario's start at which rounds run")
    p.add_argument("--epochs", type=int, default=None, help="timing: TrainConfig.epochs")
    p.add_argument("--delay", type=float, default=1.0,
                   help="heads: seconds from a label batch leaving to its use")
    p.add_argument("--core", type=int, default=400,
                   help="ceiling: starting-data frames replayed beside the labels")
    p.add_argument("--ceiling-epochs", type=int, default=6, help="ceiling: epochs")
    p.add_argument("--lr", type=float, default=1e-3, help="ceiling: Adam learning rate")
    p.add_argument("--stream", default="synthetic", choices=("synthetic", "sklearn-digits"),
                   help="ceiling: the benchmark stream")
    p.add_argument("--no-runs", action="store_true",
                   help="ceiling: every frame a new view (the benchmark's --run-seconds 0 0)")
    a = p.parse_args()
    start_probe(p, a.seed)
    if a.what == "timing":
        timing(a.seed, [float(v) for v in a.offsets.split(",")], a.epochs)
    elif a.what == "heads":
        heads(a.seed, a.delay)
    else:
        ceiling(a.seed, a.core, a.ceiling_epochs, a.lr, a.stream, not a.no_runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
