"""The benchmark's outputs: a console table, results.json and a PNG plot (matplotlib Agg)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def table(results: dict) -> str:
    """Fixed-width table, one row per policy, ratios against immediate."""
    pol, rat = results["policies"], results.get("ratios", {})
    head = (f"{'policy':10s} {'rounds':>6s} {'merged':>6s} {'tune s':>8s} {'energy J':>9s} "
            f"{'GFLOP':>8s} {'acc %':>6s} | {'time x':>6s} {'energy x':>8s} {'acc pts':>7s}")
    lines = [head, "-" * len(head)]
    for name, p in pol.items():
        r = rat.get(name, {})

        def fmt(v, spec):
            return format(v, spec) if v is not None else "-"

        lines.append(
            f"{name:10s} {p['rounds']:6d} {p['merged']:6d} {p['tune_seconds']:8.1f} "
            f"{p['energy_joules']:9.1f} {p['train_flops'] / 1e9:8.1f} "
            f"{100 * p['avg_accuracy']:6.2f} | {fmt(r.get('time_x'), '6.3f')} "
            f"{fmt(r.get('energy_x'), '8.3f')} {fmt(r.get('accuracy_pts'), '+7.2f')}")
    return "\n".join(lines)


def write_json(results: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, default=_jsonable))
    tmp.replace(path)
    return path


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def plot(results: dict, correct: dict[str, np.ndarray], scenarios: list[str],
         out_dir: Path, window: int = 40) -> Path:
    """Top: moving-average accuracy over the stream per policy, rounds as ticks, scenario
    boundaries as dashed lines. Bottom: tuning time and energy per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pol = results["policies"]
    fig = plt.figure(figsize=(12, 8))
    ax = fig.add_subplot(2, 1, 1)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, c) in enumerate(correct.items()):
        col = colours[k % len(colours)]
        w = max(1, min(window, len(c)))
        ma = np.convolve(c.astype(float), np.ones(w) / w, mode="valid")
        ax.plot(np.arange(len(ma)) + w - 1, 100 * ma, color=col, lw=1.3,
                label=f"{name} ({100 * pol[name]['avg_accuracy']:.1f}%)")
        ends = [r["frame"] for r in pol[name]["round_log"]]
        ax.plot(ends, np.full(len(ends), 101 + 2.2 * k), "|", color=col, ms=6)
    for b in _boundaries(scenarios):
        ax.axvline(b, color="grey", ls="--", lw=0.7)
    ax.set_xlabel("frame")
    ax.set_ylabel(f"accuracy % (moving avg, {window} frames)")
    ax.set_title(f"{results['stream']['name']}: accuracy of the deployed model "
                 "(ticks: rounds started)")
    ax.legend(fontsize=8, loc="lower left", ncol=3)
    names = list(pol)
    for j, (key, label) in enumerate((("tune_seconds", "tuning time (s)"),
                                      ("energy_joules", "energy (J)"))):
        bx = fig.add_subplot(2, 2, 3 + j)
        vals = [pol[n][key] for n in names]
        bx.bar(names, vals, color=[colours[i % len(colours)] for i in range(len(names))])
        bx.set_title(label)
        bx.tick_params(axis="x", rotation=30, labelsize=8)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "benchmark.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _boundaries(scenarios: list[str]) -> list[int]:
    return [i for i in range(1, len(scenarios)) if scenarios[i] != scenarios[i - 1]]
