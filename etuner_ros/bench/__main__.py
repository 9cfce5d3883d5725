"""``python -m etuner_ros.bench``: labelled streams through every tuning policy, over seeds.

Examples::

    python -m etuner_ros.bench                          # test seeds, default streams
    python -m etuner_ros.bench --seed 0                 # that seed alone
    python -m etuner_ros.bench --dev                    # the dev seeds (tune constants here)
    python -m etuner_ros.bench --stream path/to/folder  # a folder-of-images stream
    python -m etuner_ros.bench --bag path/to/home_day1  # a robot's recording (ROS 2 bag)
    python -m etuner_ros.bench --quick --out /tmp/b     # tiny configuration (tests)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from etuner_ros.bench import streams
from etuner_ros.bench.aggregate import aggregate
from etuner_ros.bench.config import DEV_SEEDS, TEST_SEEDS, config_dict, default_config, quick_config
from etuner_ros.bench.report import plot, scenario_table, table, write_json
from etuner_ros.bench.suite import (
    BAG_PREFIX,
    HINDSIGHT,
    ROOMS,
    Job,
    is_folder,
    load_stream,
    mean_correct,
    prepare_starts,
    registry_streams,
    run_jobs,
)
from etuner_ros.cli_args import non_negative_float, non_negative_int, positive_int
from etuner_ros.core.bag import BagError
from etuner_ros.core.numerics import numerics_tag
from etuner_ros.core.policies import POLICY_NAMES


def default_streams() -> list[str]:
    """What a plain run reports: the synthetic home, then every registry (real-image) stream."""
    return ["synthetic", *registry_streams()]


def bag_fps(name: str, cfg) -> float:
    """The recorded pace of a bag's labelled frames (raises BagError for a bag without
    labels, before any model is trained)."""
    stream = streams.bag_stream(Path(name[len(BAG_PREFIX):]), cfg.bag_camera_topic,
                                parts=cfg.bag_parts)
    return float(stream.description.get("fps", cfg.fps))


def check_folder(name: str, cfg, say: Callable[..., None]) -> bool:
    """Read a folder stream once before any model trains: a clear error instead of a worker's
    traceback, and the files it leaves out (``streams.Skipped``) reported, never dropped
    silently. Errors print even with ``--quiet``."""
    try:
        s = load_stream(name, cfg)
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return False
    skipped = s.description["skipped"]
    cap = s.description["max_images_per_scenario"]
    found = sum(s.description["images_per_scenario"].values())
    sample = f" (at most {cap} images of each scenario: {len(s.frames)} of {found})" \
        if cap and found > len(s.frames) else ""
    say(f"[bench] folder {name}: {len(s.frames)} frames, {len(s.scenarios)} scenarios, "
        f"{len(s.class_names)} classes{sample}", flush=True)
    if skipped["count"]:
        reasons = ", ".join(f"{n} {why}" for why, n in skipped["by_reason"].items())
        print(f"[bench] folder {name}: skipped {skipped['count']} entries ({reasons}); first: "
              + "; ".join(skipped["examples"][:3]), file=sys.stderr, flush=True)
    return True


def unwritable(path: Path) -> str | None:
    """Why a directory could not be made or written at ``path`` (None: it can), checked
    before a run of many minutes instead of at its end, without creating anything."""
    probe = path.expanduser().absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m etuner_ros.bench",
                                description=__doc__.split("\n")[0])
    p.add_argument("--stream", action="append", default=None,
                   help="'synthetic', 'rooms' (several objects a frame through a simulated "
                   "detector: region accuracy), a registry stream "
                   f"({', '.join(registry_streams()) or 'none installed'}) or a folder "
                   "ROOT/<scenario>/<class>/<image>; repeat for several (default: synthetic "
                   "and every registry stream)")
    p.add_argument("--bag", default="", help="a ROS 2 bag (sqlite3 or mcap) of the robot's "
                   "camera with its LabelCorrections: its corrected frames are the stream (the "
                   "only stream unless --stream is given too)")
    p.add_argument("--bag-camera-topic", default="",
                   help="the bag's camera topic (default: its only image topic)")
    p.add_argument("--bag-parts", type=positive_int, default=4,
                   help="cut the bag's labelled frames into this many scenarios (the first "
                   "trains the starting model)")
    p.add_argument("--policies", nargs="+", default=list(POLICY_NAMES), choices=POLICY_NAMES)
    p.add_argument("--out", default="bench", help="output folder (results.json, PNG)")
    p.add_argument("--data-dir", default="bench/cache", help="cache of starting models")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=non_negative_int, action="append", default=None,
                       help=f"run this seed alone (repeatable); default: the test seeds "
                       f"{TEST_SEEDS}")
    seeds.add_argument("--dev", action="store_true",
                       help=f"run the dev seeds {DEV_SEEDS} (tune constants on these only)")
    p.add_argument("--frames-per-scenario", type=positive_int, default=None,
                   help="frames of each scenario of the synthetic, rooms and registry streams "
                   "(default 200; rooms 120); a folder: at most this many images of each "
                   "scenario, a seeded sample (default: every image); not for --bag")
    p.add_argument("--run-seconds", type=non_negative_float, nargs=2,
                   metavar=("SHORTEST", "LONGEST"),
                   default=None, help="each object/image stays in view this long (a robot's "
                   "camera); default 1 4 for synthetic and registry streams, off for folders; "
                   "0 0: every frame a new view")
    p.add_argument("--jobs", type=positive_int, default=None,
                   help="worker processes, one torch thread each (default: the CPU cores this "
                   "process may use, at most 8)")
    p.add_argument("--no-hindsight", action="store_true", help="skip the hindsight reference")
    p.add_argument("--no-home-recall", action="store_true",
                   help="no policy gets home recall (core/home_recall.py): the ablation")
    p.add_argument("--quick", action="store_true", help="tiny configuration for tests")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    args = p.parse_args(argv)
    if args.run_seconds is not None and args.run_seconds[0] > args.run_seconds[1]:
        p.error(f"--run-seconds: need SHORTEST <= LONGEST, got "
                f"{args.run_seconds[0]:g} {args.run_seconds[1]:g}")
    for option, where in (("--out", args.out), ("--data-dir", args.data_dir)):
        if why := unwritable(Path(where)):
            p.error(f"{option} {where}: {why}")
    if args.frames_per_scenario and args.bag:
        print("bench: --frames-per-scenario does not cut a bag: its corrected frames are its "
              "stream, in --bag-parts scenarios", file=sys.stderr, flush=True)

    seed_list = tuple(args.seed) if args.seed else DEV_SEEDS if args.dev else TEST_SEEDS
    bag = [BAG_PREFIX + str(Path(args.bag))] if args.bag else []
    stream_names = [*(args.stream or ([] if bag else default_streams())), *bag]
    jobs_n = args.jobs if args.jobs else min(len(os.sched_getaffinity(0)), 8)
    say = (lambda *_a, **_k: None) if args.quiet else print
    t0, c0 = time.perf_counter(), time.process_time()

    def cfg_for(seed: int, stream: str):
        cfg = quick_config(seed) if args.quick else default_config(seed)
        if args.frames_per_scenario:
            cfg.frames_per_scenario = args.frames_per_scenario
            cfg.folder_max_images = args.frames_per_scenario
        elif stream == ROOMS and not args.quick:
            cfg.frames_per_scenario = streams.ROOMS_FRAMES_PER_SCENARIO
        if args.run_seconds is not None:
            cfg.run_seconds = tuple(args.run_seconds) if max(args.run_seconds) > 0 else None
        elif is_folder(stream) or stream.startswith(BAG_PREFIX):  # frames as they are
            cfg.run_seconds = None
        size = getattr(registry_streams().get(stream), "INPUT_SIZE", None)
        if size and not args.quick:  # a registry stream may ask for its own model input side
            cfg.input_size = size
        cfg.policies = tuple(args.policies)
        if args.no_home_recall:
            cfg.home = replace(cfg.home, enabled=False)
        if stream.startswith(BAG_PREFIX):
            cfg.bag_camera_topic, cfg.bag_parts = args.bag_camera_topic, args.bag_parts
            cfg.fps = bag_fps(stream, cfg)  # a bag keeps its recorded pace
        return cfg

    try:
        specs = [(name, cfg_for(seed, name)) for name in stream_names for seed in seed_list]
    except BagError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    for name, cfg in specs:
        if is_folder(name) and cfg.seed == seed_list[0] and not check_folder(name, cfg, say):
            return 2
    say(f"[bench] starting models for {len(specs)} (stream, seed) pairs (trained once, then "
        f"cached in {args.data_dir}/models)", flush=True)
    starts = prepare_starts(specs, Path(args.data_dir), jobs_n, progress=not args.quiet)
    say(f"[bench] starting models ready after {time.perf_counter() - t0:.0f} s", flush=True)
    jobs: list[Job] = []
    for (name, cfg), start in zip(specs, starts, strict=True):
        extra = [] if args.no_hindsight else [HINDSIGHT]
        jobs += [Job(name, cfg.seed, pol, cfg, start) for pol in [*cfg.policies, *extra]]
    say(f"[bench] {len(jobs)} jobs: streams {stream_names}, seeds {list(seed_list)}, "
        f"policies {list(args.policies)}{'' if args.no_hindsight else ' + hindsight'}; "
        f"{jobs_n} worker processes", flush=True)

    def progress(r: dict, k: int, n: int) -> None:
        j, s = r["job"], r["summary"]
        extra = (f"rounds {s['rounds']:3d} clock {s['device_seconds']:6.1f} s"
                 if "rounds" in s else f"unseen {100 * (s['accuracy_unseen'] or 0):5.1f}%")
        say(f"[bench {k:3d}/{n}] {time.perf_counter() - t0:6.0f} s  {j.stream[-24:]:>14s} "
            f"seed {j.seed:3d} {j.policy:15s} acc {100 * s['avg_accuracy']:6.2f}%  {extra}  "
            f"(job {r['seconds']:.0f} s wall, {r['cpu_seconds']:.0f} s CPU)", flush=True)

    done = run_jobs(jobs, jobs_n, progress)
    sections = []
    for name in stream_names:
        mine = [r for r in done if r["job"].stream == name]
        per_seed: dict[int, dict] = {}
        ref: dict[int, dict] = {}
        for r in mine:
            if r["job"].policy == HINDSIGHT:
                ref[r["job"].seed] = r["summary"]
            else:
                per_seed.setdefault(r["job"].seed, {})[r["job"].policy] = r["summary"]
        first = mine[0]["stream"]
        section = {"stream": {**first, "name": name if name in default_streams()
                              else first["name"], "seeds": list(seed_list),
                              "input_size": cfg_for(seed_list[0], name).input_size},
                   **aggregate(per_seed, ref, first["description"].get("recurring", {}))}
        # reorder policies as asked
        section["policies"] = {k: section["policies"][k] for k in args.policies}
        sections.append((name, section, mine))
    _, main_section, mine0 = sections[0]
    results = {**main_section, "seeds": list(seed_list), "config": config_dict(cfg_for(
        seed_list[0], stream_names[0])), "streams": {n: s for n, s, _ in sections[1:]}}
    results["bench_wall_seconds"] = time.perf_counter() - t0
    results["bench_cpu_seconds"] = (time.process_time() - c0 + sum(r["cpu_seconds"]
                                                                  for r in done))
    results["workers"] = jobs_n
    results["numerics"] = numerics_tag()  # the CPU kernels behind these numbers
    out = Path(args.out)
    path = write_json(results, out)
    pol_runs = [r for r in mine0 if r["job"].policy != HINDSIGHT]
    correct = {pol: mean_correct([r for r in pol_runs if r["job"].policy == pol])
               for pol in args.policies}
    png = plot(main_section, correct, pol_runs[0]["scenarios"], out)
    for n, s, _ in sections:
        print(f"\n== {n} ({s['stream']['frames']} frames, seeds {list(seed_list)}) ==")
        print(table(s))
        what = "per object (region)" if n == ROOMS else "per frame"
        print(f"\naccuracy % {what} per scenario, mean over seeds:")
        print(scenario_table(s))
    print(f"wrote {path} and {png} in {results['bench_wall_seconds']:.0f} s "
          f"({results['bench_cpu_seconds']:.0f} s CPU, {jobs_n} workers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
