#!/usr/bin/env python3
"""Does the validation gate pick the rounds that help? One policy's run, every round audited.

Evidence for an open issue: every candidate passes ``core/gate.py`` before it serves. This
plays one DEV seed (test seeds are refused) through the benchmark's ``run_policy`` and keeps,
for every round, the candidate and the model it would have replaced. Afterwards both are scored
on the stream's next ``--horizon`` seconds after the round's end (the frames the candidate
would serve first; the model alone, without the label memory) and the table prints, per round,
its kind (a training round or a BN-only round), the gate's verdict and evidence (``labels:N``:
held-out labels; ``information:N``: the label-free score on N frames) and that difference in
points. A gate that knows something accepts rounds with a positive difference and rejects the
others; the summary compares the mean difference of accepted and rejected rounds of each kind.

    . scripts/env.sh && python scripts/gate_probe.py --seed 100 --policy etuner
    . scripts/env.sh && python scripts/gate_probe.py --seed 101 --policy immediate_adabn

``--stream sklearn-digits`` audits the real-image stream too: diagnosis only, as the README
keeps it, since nothing is tuned on a reporting stream.
"""

from __future__ import annotations

import argparse
from unittest import mock

import numpy as np
from probe_common import load, start_probe

import etuner_ros.bench.runner as runner
from etuner_ros.core.model import ModelBundle
from etuner_ros.core.policies import POLICY_NAMES
from etuner_ros.core.tuner import ContinualTuner


def audit(seed: int, stream_name: str, policy: str, horizon: float) -> None:
    cfg, stream, start = load(seed, stream_name)
    kept: list[tuple[ModelBundle, ModelBundle]] = []  # (serving, candidate) per round
    real = ContinualTuner.run_round

    def keeping(self: ContinualTuner, now: float, *args, **kwargs):
        serving = self.deployed.clone()
        result = real(self, now, *args, **kwargs)
        kept.append((serving, result.candidate.clone()))
        return result

    # run_policy has no hook into its rounds: during this one call each round leaves copies of
    # both models behind (mock restores the method on exit); the run itself is unchanged.
    with mock.patch.object(ContinualTuner, "run_round", keeping):
        run = runner.run_policy(policy, stream, start, cfg)
    frames = stream.frames
    t = np.array([int(getattr(f, "frame_index", i)) for i, f in enumerate(frames)]) / cfg.fps

    def accuracy(bundle: ModelBundle, idx: np.ndarray) -> float:
        ids, _ = bundle.predict([frames[i].image for i in idx])
        return float(np.mean([bundle.class_names[k] == frames[i].label
                              for k, i in zip(ids, idx, strict=True)]))

    print(f"seed {seed}, {stream_name}, {policy}: {run.correct.mean() * 100:.2f} % over the "
          f"stream; per round, the candidate against the model it would replace on the next "
          f"{horizon:g} s")
    deltas: dict[str, list[float]] = {}
    for (serving, cand), r in zip(kept, run.rounds, strict=True):
        idx = np.nonzero((t >= r["end"]) & (t < r["end"] + horizon))[0]
        if not len(idx):
            continue
        d = 100 * (accuracy(cand, idx) - accuracy(serving, idx))
        kind = "bn-only" if r["bn_only"] else "training"
        verdict = "accepted" if r["accepted"] else "rejected"
        deltas.setdefault(f"{kind} {verdict}", []).append(d)
        scene = frames[int(idx[0])].scenario
        print(f"  t={r['t']:6.1f} {scene[:20]:20s} {kind:8s} {verdict} gate "
              f"{r['val']:.2f} vs {r['base_val']:.2f} ({r['gate']:15s}) next {horizon:g} s: "
              f"{d:+6.1f}")
    print("summary (points on the next frames, candidate minus the model it would replace):")
    for key in sorted(deltas):
        v = np.array(deltas[key])
        print(f"  {key:18s} {len(v):3d} rounds: mean {v.mean():+6.2f}, better {(v > 0).sum():3d},"
              f" worse {(v < 0).sum():3d}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=100, help="a DEV seed (test seeds are refused)")
    p.add_argument("--stream", default="synthetic", choices=("synthetic", "sklearn-digits"))
    p.add_argument("--policy", default="etuner", choices=POLICY_NAMES)
    p.add_argument("--horizon", type=float, default=10.0,
                   help="seconds of stream after each round's end to score both models on")
    a = p.parse_args()
    start_probe(p, a.seed)
    audit(a.seed, a.stream, a.policy, a.horizon)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
