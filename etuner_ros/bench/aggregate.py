"""Per-seed results of one stream -> means, spreads, references and ratios for results.json."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Per-seed numbers whose mean over seeds is the policy's reported value.
MEAN_FIELDS = ("tune_seconds", "cpu_seconds", "device_seconds", "energy_joules", "rounds",
               "rounds_accepted", "avg_accuracy", "train_flops", "deferred", "merged",
               "overhead_seconds", "wall_seconds", "memory_recalls",
               "home_answered", "home_vetoes")


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _sd(values: Sequence[float]) -> float:
    """Sample standard deviation (0 for one seed)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _per_scenario(entries: Sequence[dict]) -> dict[str, float]:
    names = list(dict.fromkeys(k for e in entries for k in e["accuracy_per_scenario"]))
    return {s: float(np.mean([e["accuracy_per_scenario"][s] for e in entries
                              if s in e["accuracy_per_scenario"]])) for s in names}


def gap_closed(policy: float, none: float, hindsight: float) -> float | None:
    """(policy - none) / (hindsight - none); None when the reference is no better than none."""
    span = hindsight - none
    return (policy - none) / span if span > 1e-9 else None


def recurring_accuracy(entry: dict, recurring: dict[str, str]) -> float | None:
    """Mean accuracy over the scenarios that recur (``{recurrence: first occurrence}``)."""
    vals = [entry["accuracy_per_scenario"][s] for s in recurring
            if s in entry["accuracy_per_scenario"]]
    return float(np.mean(vals)) if vals else None


def aggregate(per_seed: dict[int, dict[str, dict]], reference: dict[int, dict],
              recurring: dict[str, str]) -> dict:
    """``per_seed[seed][policy]`` summaries and ``reference[seed]`` hindsight summaries ->
    {"policies", "ratios", "reference"}: means over seeds, ``avg_accuracy_sd``,
    ``gap_closed``, ``recurring_vs_start`` (points against the starting model, ``none``),
    and the per-seed entries under ``per_seed``."""
    seeds = sorted(per_seed)
    names = list(dict.fromkeys(p for s in seeds for p in per_seed[s]))
    ref = None
    if reference:
        rs = [reference[s] for s in seeds if s in reference]
        ref = {"avg_accuracy": _mean([r["avg_accuracy"] for r in rs]),
               "avg_accuracy_sd": _sd([r["avg_accuracy"] for r in rs]),
               "accuracy_unseen": _mean([r.get("accuracy_unseen") for r in rs]),
               "accuracy_unseen_runs": _mean([r.get("accuracy_unseen_runs") for r in rs]),
               "n_labels": _mean([r["n_labels"] for r in rs]),
               "accuracy_per_scenario": _per_scenario(rs),
               "per_seed": {str(s): reference[s] for s in seeds if s in reference}}
    policies: dict[str, dict] = {}
    for name in names:
        entries = [per_seed[s][name] for s in seeds if name in per_seed[s]]
        p: dict = {k: _mean([e.get(k) for e in entries]) for k in MEAN_FIELDS}
        p["avg_accuracy_sd"] = _sd([e["avg_accuracy"] for e in entries])
        p["energy_source"] = entries[0]["energy_source"]
        p["accuracy_per_scenario"] = _per_scenario(entries)
        p["policy_params"] = entries[0].get("policy_params", {})
        p["seeds"] = [s for s in seeds if name in per_seed[s]]
        p["per_seed"] = {str(s): per_seed[s][name] for s in seeds if name in per_seed[s]}
        policies[name] = p
    none = policies.get("none")
    for p in policies.values():
        p["gap_closed"] = (gap_closed(p["avg_accuracy"], none["avg_accuracy"],
                                      ref["avg_accuracy"]) if none and ref else None)
        rec = recurring_accuracy(p, recurring)
        base = recurring_accuracy(none, recurring) if none else None
        p["recurring_accuracy"] = rec
        p["recurring_vs_start"] = (100.0 * (rec - base)
                                   if rec is not None and base is not None else None)
    return {"policies": policies, "ratios": ratios(policies),
            "reference": {"hindsight": ref} if ref else {}, "recurring_scenarios": recurring}


def ratios(policies: dict) -> dict:
    """Each policy's time, CPU, energy, FLOPs and stream-clock time / immediate's; accuracy -
    immediate's in points (all from means over seeds)."""
    base = policies.get("immediate")
    if base is None:
        return {}

    def x(p: dict, key: str) -> float | None:
        return p[key] / base[key] if base.get(key) else None

    return {name: {"time_x": x(p, "tune_seconds"), "cpu_x": x(p, "cpu_seconds"),
                   "energy_x": x(p, "energy_joules"), "flops_x": x(p, "train_flops"),
                   "device_x": x(p, "device_seconds"),
                   "accuracy_pts": 100.0 * (p["avg_accuracy"] - base["avg_accuracy"])}
            for name, p in policies.items()}
