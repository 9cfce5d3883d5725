"""``label_probe.py heads``: label-only learners on frozen features (see label_probe's
docstring for what it measures and how to run it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from probe_common import header, load, row
from torch.nn.functional import cross_entropy

import etuner_ros.bench.runner as runner
from etuner_ros.bench.config import BenchConfig
from etuner_ros.core.adabn import adapt_bn_front
from etuner_ros.core.model import ModelBundle, embed, head, preprocess

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
