"""The benchmark's outputs: a console table, results.json and a PNG plot (matplotlib Agg)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _fmt(v, spec: str) -> str:
    return format(v, spec) if v is not None else "-"


def _pct(v: float | None) -> float | None:
    return None if v is None else 100 * v


def table(results: dict) -> str:
    """Fixed-width table, one row per policy (means over seeds, accuracy +- sd), then the
    hindsight reference; ratios against immediate."""
    pol, rat = results["policies"], results.get("ratios", {})
    head = (f"{'policy':15s} {'rounds':>6s} {'clock s':>8s} {'wall s':>7s} {'CPU s':>7s} "
            f"{'energy J':>8s} {'GFLOP':>7s} {'acc % +- sd':>13s} {'gap':>5s} {'recur':>6s} | "
            f"{'time x':>6s} {'CPU x':>6s} {'GFLOP x':>7s} {'acc pts':>7s}")
    lines = [head, "-" * len(head)]
    for name, p in pol.items():
        r = rat.get(name, {})
        acc = f"{100 * p['avg_accuracy']:6.2f} +-{100 * p['avg_accuracy_sd']:4.1f}"
        lines.append(
            f"{name:15s} {p['rounds']:6.1f} {p['device_seconds']:8.1f} "
            f"{p['tune_seconds']:7.1f} {p['cpu_seconds']:7.1f} {p['energy_joules']:8.0f} "
            f"{p['train_flops'] / 1e9:7.1f} {acc:>13s} {_fmt(p.get('gap_closed'), '5.2f')} "
            f"{_fmt(p.get('recurring_vs_start'), '+6.1f')} | {_fmt(r.get('time_x'), '6.3f')} "
            f"{_fmt(r.get('cpu_x'), '6.3f')} {_fmt(r.get('flops_x'), '7.3f')} "
            f"{_fmt(r.get('accuracy_pts'), '+7.2f')}")
    ref = results.get("reference", {}).get("hindsight")
    if ref:
        lines.append("-" * len(head))
        lines.append(f"{'hindsight':15s} trained offline on the starting data + "
                     f"{ref['n_labels']:.0f} caregiver labels: "
                     f"{100 * ref['avg_accuracy']:.2f} +-{100 * ref['avg_accuracy_sd']:.1f} % "
                     f"on every frame, {100 * (ref['accuracy_unseen'] or 0):.2f} % on frames "
                     f"it never trained on, {_fmt(_pct(ref.get('accuracy_unseen_runs')), '.2f')}"
                     " % on runs with no label")
    lines.append("clock s: stream-clock charge (counted FLOPs at the device speed, "
                 "deterministic); wall/CPU s: measured here; gap: (acc - none) / (hindsight - "
                 "none); recur: points vs the starting model on recurring scenarios")
    return "\n".join(lines)


def scenario_table(results: dict) -> str:
    """Accuracy % per scenario (columns, playing order) for every policy (rows), means over the
    seeds; for the rooms stream this is per-object accuracy per scenario."""
    scen = list(results["stream"]["scenarios"])
    widths = [max(6, len(s)) for s in scen]
    head = f"{'policy':15s} " + " ".join(f"{s:>{w}s}" for s, w in zip(scen, widths, strict=True))
    lines = [head, "-" * len(head)]
    for name, p in results["policies"].items():
        per = p.get("accuracy_per_scenario", {})
        lines.append(f"{name:15s} " + " ".join(
            f"{_fmt(_pct(per.get(s)), f'{w}.1f')}" for s, w in zip(scen, widths, strict=True)))
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
        first = next(iter(pol[name]["per_seed"].values()))  # ticks: the first seed's rounds
        ends = [r["frame"] for r in first["round_log"]]
        ax.plot(ends, np.full(len(ends), 101 + 2.2 * k), "|", color=col, ms=6)
    for b in _boundaries(scenarios):
        ax.axvline(b, color="grey", ls="--", lw=0.7)
    ax.set_xlabel("frame")
    ax.set_ylabel(f"accuracy % (moving avg, {window} frames)")
    ax.set_title(f"{results['stream']['name']}: accuracy of the deployed model, mean over "
                 f"seeds {results['stream'].get('seeds')} (ticks: first seed's rounds)")
    ax.legend(fontsize=8, loc="lower left", ncol=3)
    names = list(pol)
    for j, (key, label) in enumerate((("cpu_seconds", "tuning CPU time (s, measured)"),
                                      ("train_flops", "tuning work (FLOPs, counted)"))):
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
