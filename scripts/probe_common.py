"""What the label probes share: the DEV seed's stream and starting model, and their table rows.

Used by ``label_probe.py`` (its ``timing`` and ``ceiling``) and ``probe_heads.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etuner_ros.bench.config import BenchConfig, default_config
from etuner_ros.bench.streams import LabelledStream
from etuner_ros.bench.suite import load_stream, prepare_start
from etuner_ros.core.checkpoint import load_checkpoint
from etuner_ros.core.model import ModelBundle

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
