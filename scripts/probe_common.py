"""What the label probes share: the DEV seed's stream and starting model, and their table rows.

Used by ``label_probe.py`` (its ``timing`` and ``ceiling``), ``probe_heads.py`` and
``scene_probe.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from etuner_ros.bench.clock import seed_everything
from etuner_ros.bench.config import DEV_SEEDS, TEST_SEEDS, BenchConfig, default_config
from etuner_ros.bench.streams import LabelledStream
from etuner_ros.bench.suite import load_stream, prepare_start
from etuner_ros.core.checkpoint import load_checkpoint
from etuner_ros.core.model import ModelBundle

ROOT = Path(__file__).resolve().parents[1]


def start_probe(parser: argparse.ArgumentParser, seed: int) -> None:
    """Refuse any seed but the DEV seeds (constants are fitted on those only), then one torch
    thread, seeded RNGs and deterministic kernels as the benchmark has: a seed gives one table."""
    if seed in TEST_SEEDS:
        parser.error(f"seed {seed} is a test seed {TEST_SEEDS}: probes run on DEV seeds only, so "
                     "no constant is fitted to the numbers that are reported")
    if seed not in DEV_SEEDS:
        parser.error(f"seed {seed} is not a DEV seed {DEV_SEEDS}: probes run on those only")
    torch.set_num_threads(1)
    seed_everything(seed)


def load(seed: int, name: str = "synthetic", runs: bool = True
         ) -> tuple[BenchConfig, LabelledStream, ModelBundle]:
    """The benchmark's configuration, stream ``name`` and cached starting model for ``seed``;
    ``runs`` False: every frame a new view (the benchmark's ``--run-seconds 0 0``)."""
    cfg = default_config(seed)
    if not runs:
        cfg.run_seconds = None
    stream = load_stream(name, cfg)
    start = load_checkpoint(Path(prepare_start(name, cfg, ROOT / "data", False)),
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
