"""The ``hindsight`` reference: what the caregiver's labels are worth when used offline.

A model is trained from scratch, with the starting model's recipe, on the starting data plus
every label the caregiver gave in the stream, then scored on every frame. The labels are those
the caregiver gives while the starting model serves (the ``none`` run): it looks at the same
frames for every policy (chosen by seed and frame, never by prediction), corrects every wrong
answer and confirms a share of right ones, so this is the label set of a stream whose model is
never improved, the largest any policy is offered. ``gap_closed`` of a policy is
``(policy - none) / (hindsight - none)``. Also reported: the accuracy on frames the reference
never trained on (``accuracy_unseen``), the measure of whether the stream is learnable the way
a home is (a model trained on a few labels generalises to other views of the same objects), and
on runs (one object in view) none of whose frames was labelled (``accuracy_unseen_runs``):
generalisation to views the labels never showed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from etuner_ros.bench.config import BenchConfig
from etuner_ros.bench.runner import caregiver_for
from etuner_ros.bench.streams import LabelledStream
from etuner_ros.core.model import ModelBundle
from etuner_ros.sim.pretrain import train_base_model
from etuner_ros.sim.world import Frame


def caregiver_labels(stream: LabelledStream, start: ModelBundle, cfg: BenchConfig) -> list[int]:
    """Indices (into ``stream.frames``) of the frames the caregiver labels while ``start``
    serves every frame."""
    caregiver = caregiver_for(cfg)
    frames = list(stream.frames)
    out: list[int] = []
    for i0 in range(0, len(frames), 256):
        chunk = frames[i0:i0 + 256]
        ids, _ = start.predict([f.image for f in chunk])
        for k, (f, pid) in enumerate(zip(chunk, ids, strict=True)):
            if caregiver.feedback(f.label, start.class_names[int(pid)], key=f.index):
                out.append(i0 + k)
    return out


def scores(bundle: ModelBundle, frames: Sequence[Frame]) -> np.ndarray:
    """Per frame: does ``bundle`` predict its label."""
    hits = np.zeros(len(frames), dtype=bool)
    for i0 in range(0, len(frames), 256):
        chunk = frames[i0:i0 + 256]
        ids, _ = bundle.predict([f.image for f in chunk])
        hits[i0:i0 + len(chunk)] = [bundle.class_names[int(k)] == f.label
                                    for k, f in zip(ids, chunk, strict=True)]
    return hits


def _run_ids(frames: Sequence[Frame]) -> np.ndarray:
    """Run number of each frame: a run is a stretch of one label in one scenario (one object
    in view); frames of a run are near-copies of each other."""
    ids = np.zeros(len(frames), dtype=int)
    for i in range(1, len(frames)):
        same = (frames[i].label, frames[i].scenario) == (frames[i - 1].label,
                                                         frames[i - 1].scenario)
        ids[i] = ids[i - 1] + (not same)
    return ids


def hindsight(stream: LabelledStream, start: ModelBundle, start_data: Sequence[Frame],
              cfg: BenchConfig, progress: bool = False) -> tuple[dict, np.ndarray]:
    """Train the reference and score it; returns its summary and per-frame correctness."""
    frames = list(stream.frames)
    labelled = caregiver_labels(stream, start, cfg)
    train = list(start_data) + [frames[i] for i in labelled]
    bundle, _ = train_base_model(train, stream.class_names, cfg.arch, cfg.seed,
                                 cfg.pretrain_epochs, cfg.input_size, progress=progress)
    correct = scores(bundle, frames)
    unseen = np.ones(len(frames), dtype=bool)
    unseen[labelled] = False
    run = _run_ids(frames)
    unseen_runs = ~np.isin(run, run[labelled])
    scen = np.array([f.scenario for f in frames])
    per = {s: float(correct[scen == s].mean()) for s in dict.fromkeys(scen.tolist())}
    return {"avg_accuracy": float(correct.mean()),
            "accuracy_unseen": float(correct[unseen].mean()) if unseen.any() else None,
            "accuracy_unseen_runs": (float(correct[unseen_runs].mean())
                                     if unseen_runs.any() else None),
            "frames_unseen_runs": int(unseen_runs.sum()),
            "accuracy_per_scenario": per, "n_labels": len(labelled),
            "n_start_frames": len(start_data), "epochs": cfg.pretrain_epochs}, correct
