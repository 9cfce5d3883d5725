#!/usr/bin/env python3
"""What labels and BatchNorm statistics can do for one scene, outside the stream.

Two measurements on the synthetic world, starting model of ``--seed`` (a DEV seed: this is
where constants are chosen), every number printed is accuracy in %:

``bn``: for each scenario, AdaBN on the scene's first 48 frames (``new48``: 6 s, a few objects)
or on 48 frames spread over its first 160 (``spread``), re-estimating the BatchNorm statistics
of the first k layer groups only (k = 0: none, ... all), scored on the scene's last 100 frames.
Chose ``TunerConfig.adabn_depth``.

``train``: one round by hand. A scene's first 100 frames give ~25 % labelled frames (4-6
objects); train on them plus 40 labels of the first scene (replay), with or without AdaBN on
the scene first; score on the scene's last 100 frames (``test``) and on the first scene's
(``day``: forgetting). Shows that labels help when a round sees several objects of a scene.

    . scripts/env.sh && python scripts/scene_probe.py bn --seed 100
    . scripts/env.sh && python scripts/scene_probe.py train --seed 100 --scene 1 --epochs 3 10
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from probe_common import load, start_probe

from etuner_ros.core.adabn import adapt_bn_front
from etuner_ros.core.model import layer_groups, preprocess
from etuner_ros.core.trainer import TrainConfig, accuracy, train_round


def xy(frames, idx, names, size) -> tuple[torch.Tensor, torch.Tensor]:
    keep = [int(i) for i in idx if frames[i].label in names]
    x = preprocess([frames[i].image for i in keep], size)
    return x, torch.tensor([names.index(frames[i].label) for i in keep], dtype=torch.long)


def bn_table(seed: int) -> None:
    _, stream, start = load(seed)
    frames, names = stream.frames, list(start.class_names)
    scen = np.array([f.scenario for f in frames])
    n = len(layer_groups(start.model, start.arch))
    print(f"seed {seed}; columns: BN statistics of the first k groups re-estimated, k = 0..{n}")
    for s in dict.fromkeys(scen.tolist()):
        idx = np.where(scen == s)[0]
        xt, yt = xy(frames, idx[100:], names, start.input_size)
        cells = []
        for sel in (idx[:48], idx[:160:3][:48]):
            xw = preprocess([frames[i].image for i in sel], start.input_size)
            for k in range(n + 1):
                b = start.clone()
                if k:
                    adapt_bn_front(b, xw, 1.0, k if k < n else 0)
                cells.append(accuracy(b.model, xt, yt) * 100)
        print(f"{s:22s} new48 " + " ".join(f"{v:5.1f}" for v in cells[:n + 1]) +
              " | spread " + " ".join(f"{v:5.1f}" for v in cells[n + 1:]))


def train_table(seed: int, scene: int, epochs: list[int], depth: int) -> None:
    _, stream, start = load(seed)
    frames, names = stream.frames, list(stream.class_names)
    scen = np.array([f.scenario for f in frames])
    order = list(dict.fromkeys(scen.tolist()))
    rng = np.random.default_rng(0)
    s0, s = np.where(scen == order[0])[0], np.where(scen == order[scene])[0]
    old = rng.choice(s0, 40, replace=False)
    new = s[:100][rng.random(100) < 0.25]
    xr, yr = xy(frames, old, names, start.input_size)
    xn, yn = xy(frames, new, names, start.input_size)
    xt, yt = xy(frames, s[100:], names, start.input_size)
    x0, y0 = xy(frames, s0[100:], names, start.input_size)
    xbn = preprocess([frames[i].image for i in s[:100:2]], start.input_size)
    print(f"seed {seed}, scene {order[scene]}: {len(new)} labels of classes "
          f"{sorted({names[i] for i in yn.tolist()})} + 40 replayed")

    def score(b) -> str:
        test, day = accuracy(b.model, xt, yt) * 100, accuracy(b.model, x0, y0) * 100
        return f"test {test:5.1f}  day {day:5.1f}"

    print(f"starting model            {score(start)}")
    for ep in epochs:
        for bn in (False, True):
            cand = start.clone()
            if bn:
                adapt_bn_front(cand, xbn, 1.0, depth)
                print(f"AdaBN only (depth {depth})     {score(cand)}")
            out = train_round(start, names, torch.cat([xn, xr]), torch.cat([yn, yr]),
                              torch.ones(len(yn) + len(yr)), xt[:0], yt[:0], 0,
                              TrainConfig(seed=seed, epochs=ep), candidate=cand)
            print(f"{'AdaBN + ' if bn else ''}train {ep:2d} epochs{'' if bn else '       '}"
                  f"    {score(out.candidate)}  (ran {out.epochs_run}, loss {out.final_loss:.2f})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("bn", "train"))
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--scene", type=int, default=1, help="train: scenario index (1 = dim kitchen)")
    p.add_argument("--epochs", type=int, nargs="+", default=[3, 10])
    p.add_argument("--depth", type=int, default=0, help="train: AdaBN depth (0: every layer)")
    a = p.parse_args()
    start_probe(p, a.seed)
    if a.what == "bn":
        bn_table(a.seed)
    else:
        train_table(a.seed, a.scene, a.epochs, a.depth)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
