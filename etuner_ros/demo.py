"""demo: the real nodes on the simulated camera and caregiver, with progress and a summary.

Trains (or reuses) the starting model on the first scenario, starts perception, label collector,
tuner, sim_camera and sim_caregiver in this process over real DDS (as ``bringup --sim`` does),
prints progress while the scenario stream plays, and ends with a summary: frames, corrections
stored and rejected, rounds, swaps with versions, the label memory's and home recall's counts,
and the accuracy of perception's answers (the deployed model, the starting model where home
recall answered, and the label memory where it recalled a label) per scenario segment
(measured by the simulated caregiver against the ground truth). The summary is also written as
JSON.

``--world rooms``: rooms with several objects at once. The starting model is the one trained on
object crops from rooms (``pretrain(..., world="rooms")``), sim_detector plays the upstream
detector and perception recognises each of its boxes (``region_source: topic``); the caregiver
scores and labels each region (``sim/scoring.py``), so the summary reports per-object accuracy
per scenario, with the regions scored, false boxes, missed objects and corrections by region.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import rclpy

from etuner_ros.bringup import (
    WORLDS,
    default_config,
    make_nodes,
    override_args,
    run,
    world_overrides,
)
from etuner_ros.cli_args import non_negative_int, positive_float, positive_int


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=Path("data"),
                   help="cache of the starting model and the runs' stores (default ./data)")
    p.add_argument("--policy", default="etuner", help="tuner policy")
    p.add_argument("--config", type=Path, default=None, help="parameters YAML")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--world", choices=WORLDS, default="objects",
                   help="objects: one object per frame; rooms: several, with the simulated "
                        "detector, scored per object")
    p.add_argument("--frames-per-scenario", type=positive_int, default=200,
                   help="camera frames per scenario (8 fps; 200: 25 s, as the benchmark)")
    p.add_argument("--timeout", type=positive_float, default=900.0,
                   help="give up after this many s")
    p.add_argument("--summary", type=Path, default=None,
                   help="where to write the JSON summary (default <run dir>/summary.json)")
    return p


def main(argv: list[str] | None = None) -> int:
    opts = parser().parse_args(argv)
    from etuner_ros.sim.pretrain import pretrain

    data_dir = opts.data_dir.expanduser().resolve()
    print(f"[demo] starting model (cached in {data_dir / 'models'})", flush=True)
    ckpt = pretrain(data_dir, seed=opts.seed, world=opts.world)
    run_dir = data_dir / "runs" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"[demo] run directory {run_dir}", flush=True)

    # The simulated camera runs at 8 fps: feed the change detector every frame, and play 25 s
    # per scenario by default (as the benchmark does) so it has time to fill its reference
    # window; the functional test plays a short stream.
    overrides = {"perception": {"checkpoint": str(ckpt)},
                 "tuner": {"policy": opts.policy, "drift_every_n": 1},
                 "sim_camera": {"seed": opts.seed, "frames_per_scenario": opts.frames_per_scenario},
                 "sim_caregiver": {"seed": opts.seed},
                 "sim_detector": {"seed": opts.seed},
                 "**": {"data_dir": str(run_dir)}}
    for node, params in world_overrides(opts.world).items():
        overrides.setdefault(node, {}).update(params)
    rclpy.init(args=["demo", "--ros-args", "--params-file",
                     str(opts.config or default_config()), *override_args(overrides)])
    nodes = make_nodes(sim=True, world=opts.world)
    by_name = {n.get_name(): n for n in nodes}
    spinner = threading.Thread(target=run, args=(nodes,), daemon=True)
    spinner.start()
    try:
        summary = watch(by_name, opts.timeout)
    finally:
        rclpy.try_shutdown()
        spinner.join(timeout=10)
    summary.update(policy=opts.policy, world=opts.world, run_dir=str(run_dir),
                   starting_checkpoint=str(ckpt))
    out = opts.summary or run_dir / "summary.json"
    out.write_text(json.dumps(summary, indent=2))
    print_summary(summary)
    print(f"[demo] summary written to {out}", flush=True)
    ok = summary["frames_processed"] > 0 and summary["corrections_stored"] > 0
    return 0 if ok else 1


def watch(nodes: dict, timeout: float) -> dict:
    """Print progress until the camera's stream ends (plus a short drain), then summarise."""
    perception, collector, tuner = nodes["perception"], nodes["label_collector"], nodes["tuner"]
    camera, caregiver = nodes["sim_camera"], nodes["sim_caregiver"]
    t0 = time.monotonic()
    swaps: list[dict] = []
    version = perception.version
    last_print = 0.0
    finished_at = None
    while time.monotonic() - t0 < timeout:
        time.sleep(0.2)
        now = time.monotonic() - t0
        if perception.version != version:
            swaps.append({"from": version, "to": perception.version,
                          "at_frame": perception.frames, "t_s": round(now, 1)})
            print(f"[demo] swap v{version} -> v{perception.version} at frame "
                  f"{perception.frames} ({now:.0f} s)", flush=True)
            version = perception.version
        if now - last_print >= 5.0:
            last_print = now
            acc = caregiver.accuracy_summary()
            acc = acc.get("regions", acc)  # rooms: per object
            seg = acc["segments"][-1] if acc["segments"] else None
            st = tuner.status_dict()
            print(f"[demo] {now:5.0f} s | frames {perception.frames:4d} | stored "
                  f"{collector.stored:3d} (rejected {collector.rejected}) | rounds "
                  f"{tuner.rounds_done} | v{perception.version} | "
                  + (f"{seg[0]} acc {seg[2]:.2f} | " if seg else "")
                  + f"change {st.get('change_score', 0.0):.2f} | "
                  + f"tuner {st['state']}: {st['reason']}", flush=True)
        if finished_at is None and getattr(camera, "finished", False):
            finished_at = now
            print(f"[demo] camera stream finished at {now:.0f} s; draining", flush=True)
        if finished_at is not None and now - finished_at > 3.0 and not tuner.busy:
            break
    else:
        print(f"[demo] timeout after {timeout:.0f} s", file=sys.stderr, flush=True)
    acc = caregiver.accuracy_summary()
    st = tuner.status_dict()
    return {
        "duration_s": round(time.monotonic() - t0, 1),
        "frames_processed": perception.frames,
        "corrections_stored": collector.stored,
        "corrections_rejected": collector.rejected,
        "unlabelled_kept": collector.unlabelled_kept,
        "rounds": tuner.rounds_done,
        "rounds_deferred": st.get("rounds_deferred", 0),
        "rounds_merged": st.get("rounds_merged", 0),
        "frozen_groups": list(st.get("frozen_groups", [])),
        "changes_detected": st.get("changes_detected", 0),
        "max_change_score": round(float(st.get("max_change_score", 0.0)), 3),
        "swaps": swaps,
        "label_memory": {"added": perception.memory.counts["added"],
                         "recalled": perception.memory.counts["recalled"],
                         "enabled": perception.memory.enabled},
        "home_recall": _home_counts(perception.home),
        "final_version": perception.version,
        "accuracy": acc,
        "tuner_state": st["state"],
        "tuner_last_reason": st["reason"],
        **_rooms_counts(nodes),
    }


def _home_counts(home) -> dict:
    """What home recall did (``ros/home_feed.py``): frames the starting model answered."""
    out = {"enabled": home.recall is not None, "labels": home.counts["labels"]}
    if home.recall is not None:
        out.update(answered=home.recall.answered, vetoes=home.recall.vetoes)
    else:
        out["off"] = home.off
    return out


def _rooms_counts(nodes: dict) -> dict:
    """What the simulated detector did and perception recognised (rooms world only)."""
    det = nodes.get("sim_detector")
    if det is None:
        return {}
    return {"detector": {"frames": det.frames, "boxes": det.boxes,
                         "false_boxes": det.false_boxes, "objects": det.objects,
                         "misses": det.misses},
            "regions_recognised": nodes["perception"].regions,
            "caregiver": {"corrections": nodes["sim_caregiver"].corrections,
                          "confirmations": nodes["sim_caregiver"].confirmations}}


def print_summary(s: dict) -> None:
    print("\n[demo] ===== summary =====")
    print(f"frames processed     {s['frames_processed']}")
    print(f"corrections stored   {s['corrections_stored']} (rejected {s['corrections_rejected']})")
    print(f"rounds               {s['rounds']} (deferred {s['rounds_deferred']}, "
          f"merged {s['rounds_merged']})")
    print(f"scenario changes     {s['changes_detected']} detected (max score "
          f"{s['max_change_score']:.2f})")
    print(f"frozen layer groups  {', '.join(s['frozen_groups']) or 'none'}")
    print("swaps                " + (", ".join(f"v{w['from']}->v{w['to']}" for w in s["swaps"])
                                      or "none"))
    m = s["label_memory"]
    print(f"label memory         {m['added']} labelled views, {m['recalled']} answers recalled"
          if m["enabled"] else "label memory         off")
    h = s["home_recall"]
    print(f"home recall          {h['answered']} answers by the starting model back in its "
          f"scene, {h['vetoes']} vetoes" if h["enabled"] else
          f"home recall          off ({h['off']})")
    if "regions" in s["accuracy"]:
        print_regions(s)
        return
    print("accuracy of perception's answers (model + label memory) per scenario segment:")
    for name, frames, acc in s["accuracy"]["segments"]:
        print(f"  {name:28s} {frames:5d} frames  {acc:6.1%}")
    print(f"overall              {s['accuracy']['overall']:.1%}", flush=True)


def print_regions(s: dict) -> None:
    """The rooms world's part: per-object accuracy, and what could not be scored."""
    r, d = s["accuracy"]["regions"], s.get("detector", {})
    if d:
        print(f"detector             {d['boxes']} boxes on {d['frames']} frames: "
              f"{d['false_boxes']} false, {d['misses']} of {d['objects']} objects missed")
    print(f"regions recognised   {s.get('regions_recognised', '?')}")
    print(f"regions scored       {r['regions']} (covering an object); false boxes "
          f"{r['false_boxes']} (never labelled); missed objects {r['missed_objects']} "
          "(not scorable)")
    c = s.get("caregiver", {})
    print(f"corrections by region {r['region_corrections']} (naming detection_index: "
          f"{c.get('corrections', '?')} corrections, {c.get('confirmations', '?')} "
          "confirmations)")
    print("per-object accuracy of perception's answers (model + label memory) per segment:")
    for name, n, acc in r["segments"]:
        print(f"  {name:28s} {n:5d} regions {acc:6.1%}")
    if len(r["per_scenario"]) < len(r["segments"]):  # a scenario came back: sum its segments
        print("per-object accuracy per scenario:")
        for name, t in r["per_scenario"].items():
            print(f"  {name:28s} {t['regions']:5d} regions {t['accuracy']:6.1%}")
    print(f"overall per object   {r['overall']:.1%}")
    print(f"frames with every detected object right  {s['accuracy']['overall']:.1%} "
          f"({s['accuracy']['frames']} frames)", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
