"""``python -m etuner_ros.bench``: one labelled stream through every tuning policy.

Examples::

    python -m etuner_ros.bench                          # default synthetic stream, all policies
    python -m etuner_ros.bench --stream path/to/folder  # a folder-of-images stream
    python -m etuner_ros.bench --bag path/to/home_day1  # a robot's recording (ROS 2 bag)
    python -m etuner_ros.bench --quick --out /tmp/b     # tiny configuration (tests)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from etuner_ros.bench.report import plot, table, write_json
from etuner_ros.bench.runner import BenchConfig, config_dict, ratios, run_policy, summarise
from etuner_ros.core.bag import BagError
from etuner_ros.core.checkpoint import load_checkpoint
from etuner_ros.core.policies import POLICY_NAMES
from etuner_ros.core.trainer import TrainConfig
from etuner_ros.core.tuner import TunerConfig


def quick_config(seed: int) -> BenchConfig:
    """Tiny everything (32 px, 8 frames per scenario, 1 epoch): a smoke run for tests."""
    train = TrainConfig(epochs=1, replay_size=8, max_pseudo=4, val_size=16, seed=seed)
    return BenchConfig(seed=seed, frames_per_scenario=8, fps=4.0, label_fraction=0.5,
                       input_size=32, pretrain_frames=48, pretrain_epochs=1,
                       tuner=TunerConfig(train=train),
                       policy_params={"periodic": {"period_s": 6.0},
                                      "lazytune": {"batch_labels": 6, "max_wait_s": 6.0},
                                      "etuner": {"batch_labels": 6, "max_wait_s": 6.0}})


def build(args: argparse.Namespace, cfg: BenchConfig):
    """The stream and its starting model (trained on the stream's first scenario)."""
    from etuner_ros.bench import streams

    if args.stream == "synthetic" and not args.bag:
        from etuner_ros.sim.pretrain import pretrain

        stream = streams.synthetic_stream(cfg.seed, cfg.frames_per_scenario)
        path = pretrain(Path(args.data_dir), cfg.arch, cfg.seed, frames=cfg.pretrain_frames,
                        epochs=cfg.pretrain_epochs, input_size=cfg.input_size,
                        progress=not args.quiet)
        start = load_checkpoint(path, expected_arch=cfg.arch)
    else:
        from etuner_ros.sim.pretrain import train_base_model

        stream = (streams.bag_stream(Path(args.bag), args.bag_camera_topic,
                                     parts=args.bag_parts) if args.bag
                  else streams.folder_stream(Path(args.stream)))
        cfg.fps = stream.description.get("fps", cfg.fps)  # a bag keeps its recorded pace
        first = streams.first_scenario_frames(stream)
        names = sorted({f.label for f in first}, key=stream.class_names.index)
        start, _ = train_base_model(first, names, cfg.arch, cfg.seed, cfg.pretrain_epochs,
                                    cfg.input_size, progress=not args.quiet)
    return stream, start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m etuner_ros.bench", description=__doc__.split(
        "\n")[0])
    p.add_argument("--stream", default="synthetic", help="'synthetic' or a folder stream path")
    p.add_argument("--bag", default="", help="a ROS 2 bag: its frames labelled by its "
                   "LabelCorrections (see bench/streams.py bag_stream)")
    p.add_argument("--bag-camera-topic", default="", help="the bag's camera topic")
    p.add_argument("--bag-parts", type=int, default=4, help="scenarios cut from the bag")
    p.add_argument("--policies", nargs="+", default=list(POLICY_NAMES), choices=POLICY_NAMES)
    p.add_argument("--out", default="bench", help="output folder (results.json, PNG)")
    p.add_argument("--data-dir", default="bench/cache", help="cache of starting models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames-per-scenario", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="tiny configuration for tests")
    p.add_argument("--verbose", action="store_true", help="one line per round")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    args = p.parse_args(argv)

    cfg = quick_config(args.seed) if args.quick else BenchConfig(seed=args.seed)
    if not args.quick:
        cfg.tuner.train.seed = args.seed
    if args.frames_per_scenario:
        cfg.frames_per_scenario = args.frames_per_scenario
    if args.threads:
        cfg.torch_threads = args.threads
    cfg.policies = tuple(args.policies)
    torch.set_num_threads(cfg.torch_threads)
    say = (lambda *_a, **_k: None) if args.quiet else print
    t0 = time.perf_counter()
    try:
        stream, start = build(args, cfg)
    except BagError as exc:  # e.g. a bag without labels: say why and what it holds
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stream.frames = list(stream.frames)  # rendered once, replayed by every policy
    say(f"stream {stream.name}: {len(stream.frames)} frames, {len(stream.scenarios)} "
        f"scenarios, {cfg.fps:g} fps clock; start model v{start.version} "
        f"({start.num_classes} classes)", flush=True)
    runs, summaries = {}, {}
    bar = tqdm(cfg.policies, desc="policies", unit="policy", disable=args.quiet)
    for name in bar:
        bar.set_postfix(policy=name)
        log = (lambda s: tqdm.write(s)) if args.verbose else None
        run = run_policy(name, stream, start, cfg, log=log)
        runs[name], summaries[name] = run, summarise(run, stream, cfg)
        s = summaries[name]
        tqdm.write(f"{name:10s} acc {100 * s['avg_accuracy']:.2f}%  tune {s['tune_seconds']:.1f} s"
                   f"  energy {s['energy_joules']:.0f} J  rounds {s['rounds']} "
                   f"(wall {run.wall_seconds:.0f} s)") if not args.quiet else None
    results = {
        "stream": {"name": stream.name, "description": getattr(stream, "description", ""),
                   "frames": len(stream.frames), "scenarios": list(stream.scenarios),
                   "class_names": list(stream.class_names), "fps": cfg.fps,
                   "seconds": len(stream.frames) / cfg.fps},
        "config": config_dict(cfg),
        "policies": summaries,
        "ratios": ratios(summaries),
        "bench_wall_seconds": time.perf_counter() - t0,
    }
    out = Path(args.out)
    path = write_json(results, out)
    png = plot(results, {n: r.correct for n, r in runs.items()},
               [f.scenario for f in stream.frames], out)
    print(table(results))
    print(f"wrote {path} and {png} in {results['bench_wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
