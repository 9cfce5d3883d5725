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
the earlier ones, as a well-timed ``etuner`` round would be.
Each half-scenario shows about five objects, so single cells move in steps of ~20 points.

(From a source checkout without ``install/``: ``PYTHONPATH=. python scripts/label_probe.py``.)
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch.nn.functional import cross_entropy

import etuner_ros.bench.runner as runner
from etuner_ros.bench.config import TEST_SEEDS, BenchConfig, default_config
from etuner_ros.bench.streams import LabelledStream
from etuner_ros.bench.suite import load_stream, prepare_start
from etuner_ros.core.adabn import adapt_bn_front
from etuner_ros.core.checkpoint import load_checkpoint
from etuner_ros.core.model import ModelBundle, embed, head, preprocess
from etuner_ros.core.policies import Decision, Observation
from etuner_ros.core.policies.base import bn_shift
from etuner_ros.core.policies.etuner import ETunerPolicy

ROOT = Path(__file__).resolve().parents[1]


def load(seed: int) -> tuple[BenchConfig, LabelledStream, ModelBundle]:
    cfg = default_config(seed)
    stream = load_stream("synthetic", cfg)
    start = load_checkpoint(Path(prepare_start("synthetic", cfg, ROOT / "data", False)),
                            expected_arch=cfg.arch)
    return cfg, stream, start


def header(seed: int, scen: np.ndarray, extra: str = "") -> str:
    names = list(dict.fromkeys(scen.tolist()))
    cols = " ".join(f"{'s' + str(k):>5s}" for k in range(len(names)))
    return (f"seed {seed}{extra}; " + ", ".join(f"s{k} {s}" for k, s in enumerate(names)) +
            f"\n{'':20s} {'avg':>5s} | {cols}")


def row(label: str, correct: np.ndarray, scen: np.ndarray, tail: str = "") -> str:
    per = [correct[scen == s].mean() * 100 for s in dict.fromkeys(scen.tolist())]
    return f"{label:20s} {correct.mean() * 100:5.1f} | " + " ".join(f"{v:5.1f}" for v in per) + tail


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


# ------------------------------------------------------------------ heads: label-only learners

@dataclass
class Features:
    """Per frame: true class, penultimate embedding and the starting model's logits over the
    stream's classes (-1e9 for the classes it lacks); ``w``/``b``: its head over the stream's
    classes (zero weights and the mean bias for those it lacks: where a refit head starts)."""

    y: np.ndarray
    emb: np.ndarray
    logits: np.ndarray
    w: np.ndarray
    b: np.ndarray


def features(start: ModelBundle, x: torch.Tensor, y: np.ndarray, scen: np.ndarray,
             names: list[str], cfg: BenchConfig, adabn: bool) -> Features:
    @torch.no_grad()
    def emb(bundle: ModelBundle, idx: np.ndarray) -> np.ndarray:
        bundle.model.eval()
        return torch.cat([embed(bundle.model, bundle.arch, x[idx[j:j + 256]])
                          for j in range(0, len(idx), 256)]).numpy()

    e, nw = emb(start, np.arange(len(x))), cfg.tuner.adabn_frames
    for s in dict.fromkeys(scen.tolist()) if adabn else ():
        idx = np.where(scen == s)[0]
        bundle = start.clone()
        adapt_bn_front(bundle, x[idx[:nw]], cfg.tuner.adabn_momentum, cfg.tuner.adabn_depth)
        e[idx[nw:]] = emb(bundle, idx[nw:])
    lin, rows = head(start.model, start.arch), [names.index(c) for c in start.class_names]
    w = np.zeros((len(names), e.shape[1]), np.float32)
    b = np.full(len(names), float(lin.bias.detach().mean()), np.float32)
    w[rows], b[rows] = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    logits = np.full((len(e), len(names)), -1e9, np.float32)
    logits[:, rows] = (e @ w.T + b)[:, rows]
    return Features(y, e, logits, w, b)


class Learner:
    """``none``: the model's answer. ``learn`` gets the indices of every frame labelled so far
    whenever new ones have arrived; subclasses use them."""

    def __init__(self, f: Features) -> None:
        self.f, self.y, self.logits = f, f.y, f.logits
        self.unit = f.emb / np.linalg.norm(f.emb, axis=1, keepdims=True)

    def learn(self, labelled: np.ndarray) -> None:
        pass

    def predict(self, i: int) -> int:
        return int(self.logits[i].argmax())


class KNN(Learner):
    def __init__(self, f: Features, tau: float) -> None:
        super().__init__(f)
        self.tau, self.mem = tau, np.zeros(0, int)

    def learn(self, labelled: np.ndarray) -> None:
        self.mem = labelled

    def predict(self, i: int) -> int:
        sims = self.unit[self.mem] @ self.unit[i]
        if len(sims) and sims.max() > self.tau:
            return int(self.y[self.mem[sims.argmax()]])
        return super().predict(i)


def adam(params: list[torch.Tensor], steps: int, lr: float,
         loss: Callable[[], torch.Tensor]) -> None:
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss().backward()
        opt.step()


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


class Prototypes(Learner):
    """Softmax of ``temp`` x cosine similarity to the class means of the newest ``window``
    labels, mixed ``mix`` : 1 - ``mix`` with the model's softmax."""

    def __init__(self, f: Features, window: int = 40, temp: float = 10.0,
                 mix: float = 0.5) -> None:
        super().__init__(f)
        self.window, self.temp, self.mix = window, temp, mix
        self.protos: np.ndarray | None = None
        self.have = np.zeros(len(f.b), bool)

    def learn(self, labelled: np.ndarray) -> None:
        recent = labelled[-self.window:]
        self.have = np.bincount(self.y[recent], minlength=len(self.f.b)) > 0
        self.protos = np.zeros((len(self.f.b), self.unit.shape[1]))
        np.add.at(self.protos, self.y[recent], self.unit[recent])
        self.protos[self.have] /= np.linalg.norm(self.protos[self.have], axis=1, keepdims=True)

    def predict(self, i: int) -> int:
        if self.protos is None:
            return super().predict(i)
        s = np.full(len(self.have), -1e9)
        s[self.have] = self.protos[self.have] @ self.unit[i] * self.temp
        return int((softmax(self.logits[i]) * (1 - self.mix) + softmax(s) * self.mix).argmax())


class LogisticHead(Learner):
    """The last Linear refit with Adam on every label so far at each delivery, warm-started
    from the previous fit, weights L2-anchored (``lam``) to the start."""

    def __init__(self, f: Features, steps: int = 60, lam: float = 1e-3,
                 lr: float = 3e-3) -> None:
        super().__init__(f)
        self.steps, self.lam, self.lr = steps, lam, lr
        self.w0 = torch.from_numpy(f.w)
        self.w, self.b = self.w0.clone(), torch.from_numpy(f.b).clone()

    def learn(self, labelled: np.ndarray) -> None:
        x, y = torch.from_numpy(self.f.emb[labelled]), torch.from_numpy(self.y[labelled])
        w, b = self.w.clone().requires_grad_(), self.b.clone().requires_grad_()
        adam([w, b], self.steps, self.lr,
             lambda: cross_entropy(x @ w.T + b, y) + self.lam * ((w - self.w0) ** 2).sum())
        self.w, self.b = w.detach(), b.detach()
        self.logits = (torch.from_numpy(self.f.emb) @ self.w.T + self.b).numpy()


class BiasOnly(Learner):
    """Only the head's bias, refit from the start's at each delivery on the newest ``last``
    labels, L2-anchored (``lam``) to the start's."""

    def __init__(self, f: Features, last: int = 10, lam: float = 0.1,
                 steps: int = 50, lr: float = 0.1) -> None:
        super().__init__(f)
        self.last, self.lam, self.steps, self.lr = last, lam, steps, lr
        self.w, self.b0 = torch.from_numpy(f.w), torch.from_numpy(f.b)

    def learn(self, labelled: np.ndarray) -> None:
        m = labelled[-self.last:]
        z, y = torch.from_numpy(self.f.emb[m]) @ self.w.T, torch.from_numpy(self.y[m])
        b = self.b0.clone().requires_grad_()
        adam([b], self.steps, self.lr,
             lambda: cross_entropy(z + b, y) + self.lam * ((b - self.b0) ** 2).sum())
        self.logits = (torch.from_numpy(self.f.emb) @ self.w.T + b.detach()).numpy()


#: Rows of ``heads``. Prototypes, head and bias-only settings: the best of a few tried on seed
#: 100 (window 20-100, temp 10-20, mix 0.5-0.7; steps 30-60, L2 1e-4-1e-2, lr 3e-3-1e-2;
#: last 10-40 labels, L2 0.01-0.1).
LEARNERS: dict[str, Callable[[Features], Learner]] = {
    "none": Learner,
    **{f"knn tau {t:.2f}": (lambda f, t=t: KNN(f, t)) for t in (0.8, 0.9, 0.95)},
    "prototypes": Prototypes,
    "logistic head": LogisticHead,
    "bias-only": BiasOnly,
}


def caregiver_loop(learner: Learner, frames: list, names: list[str], cfg: BenchConfig,
                   delay: float) -> np.ndarray:
    """The benchmark's caregiver on ``learner``'s answers: frame i is shown at ``i / fps`` s,
    labels leave in a batch every ``label_period_s`` and are usable ``delay`` s later.
    Returns which frames were classified correctly."""
    caregiver = runner.caregiver_for(cfg)
    correct = np.zeros(len(frames), bool)
    labelled: list[int] = []
    pending: list[int] = []
    in_flight: list[tuple[float, list[int]]] = []
    next_batch = cfg.label_period_s
    for i, f in enumerate(frames):
        if i / cfg.fps >= next_batch:
            in_flight.append((next_batch + delay, pending))
            pending, next_batch = [], next_batch + cfg.label_period_s
        arrived = []
        while in_flight and in_flight[0][0] <= i / cfg.fps:
            arrived += in_flight.pop(0)[1]
        if arrived:
            labelled += arrived
            learner.learn(np.array(labelled))
        pred = names[learner.predict(i)]
        correct[i] = pred == f.label
        if caregiver.feedback(f.label, pred, key=f.index) is not None:
            pending.append(i)
    return correct


def heads(seed: int, delay: float) -> None:
    cfg, stream, start = load(seed)
    frames, names = list(stream.frames), list(stream.class_names)
    scen = np.array([f.scenario for f in frames])
    y = np.array([names.index(f.label) for f in frames])
    x = preprocess([f.image for f in frames], start.input_size)
    print(header(seed, scen, f", labels usable {delay:g} s after each batch"))
    for feats in ("start", "adabn"):
        f = features(start, x, y, scen, names, cfg, adabn=feats == "adabn")
        for label, make in LEARNERS.items():
            correct = caregiver_loop(make(f), frames, names, cfg, delay)
            print(row(f"{feats} {label}", correct, scen), flush=True)


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


def ceiling(seed: int, core: int, epochs: int, lr: float) -> None:
    from etuner_ros.bench.hindsight import caregiver_labels
    from etuner_ros.bench.suite import start_data
    from etuner_ros.core.trainer import class_balanced_sample, train_round

    cfg, stream, start = load(seed)
    frames, names = list(stream.frames), list(stream.class_names)
    scen = np.array([f.scenario for f in frames])
    x = preprocess([f.image for f in frames], start.input_size)
    y = torch.tensor([names.index(f.label) for f in frames])
    labelled = np.array(caregiver_labels(stream, start, cfg))
    data = start_data("synthetic", stream, cfg)
    pick = np.random.default_rng(seed).choice(len(data), min(core, len(data)), replace=False)
    cx = preprocess([data[i].image for i in pick], start.input_size)
    cy = torch.tensor([names.index(data[i].label) for i in pick])
    base = start.clone()
    base.ensure_classes(names)
    tc = cfg.tuner
    batch = round(cfg.label_period_s * cfg.fps)  # labels leave in batches: one batch of delay

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
    print(f"{'scenario':22s} {'labels':>6s} {'in it':>5s} | {'start':>5s} {'adabn':>5s} "
          f"{'tuned':>5s} {'t+ada':>5s} {'round':>5s}")
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
        rows.append(r)
        print(f"{s:22s} {len(have):6d} {int((have >= ids[0]).sum()):5d} | "
              + " ".join(f"{v:5.1f}" for v in r), flush=True)
    m = np.mean(rows, axis=0)
    print(f"{'mean':22s} {'':6s} {'':5s} | " + " ".join(f"{v:5.1f}" for v in m))


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
    a = p.parse_args()
    if a.seed in TEST_SEEDS:
        p.error(f"seed {a.seed} is a test seed {TEST_SEEDS}: probes run on DEV seeds only, so "
                "no constant is fitted to the numbers that are reported")
    torch.set_num_threads(1)
    if a.what == "timing":
        timing(a.seed, [float(v) for v in a.offsets.split(",")], a.epochs)
    elif a.what == "heads":
        heads(a.seed, a.delay)
    else:
        ceiling(a.seed, a.core, a.ceiling_epochs, a.lr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
