"""Every (stream, seed, policy) job of a benchmark run, on a pool of worker processes.

The stream clock is deterministic (``bench/clock.py``), so jobs no longer have to run one at a
time to be fair: each runs in its own process with one torch thread, ``jobs`` at once, and gives
the same numbers as a run alone. The main process prepares each (stream, seed) first: renders
nothing but trains (or finds cached) the starting model, so workers only load it. A worker
rebuilds a stream from its name and seed (cached per process), plays one policy or trains the
``hindsight`` reference, and sends back its summary and per-frame correctness.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from etuner_ros.bench import streams
from etuner_ros.bench.config import BenchConfig, run_frames
from etuner_ros.core.checkpoint import load_checkpoint
from etuner_ros.core.model import ModelBundle
from etuner_ros.sim.world import Frame

HINDSIGHT = "hindsight"
# Rough relative cost, to start the longest jobs first (better packing on few workers).
def registry_streams() -> dict:
    """Streams built from images shipped inside an installed package: name -> module with
    ``VERSION``, ``stream(seed, frames_per_scenario, fps, run_seconds)`` and
    ``start_data(seed, n)``."""
    from etuner_ros.bench import digits

    return {digits.NAME: digits}


_COST = {"immediate": 10, "immediate_adabn": 10, "simfreeze": 8, HINDSIGHT: 7, "periodic": 3,
         "lazytune": 3, "etuner": 3, "adabn": 1, "adabn_memory": 1, "none": 0}


ROOMS = "rooms"  # rooms with several objects through the simulated detector: one item a region
BAG_PREFIX = "bag:"  # a stream name "bag:PATH" is a robot's recording (``--bag PATH``)


@dataclass(frozen=True)
class Job:
    stream: str          # "synthetic", "rooms", a registry stream name, or a folder path
    seed: int
    policy: str          # a policy name, or HINDSIGHT
    cfg: BenchConfig
    start_path: str      # the starting model's checkpoint


def _start_key(stream: str, cfg: BenchConfig, recipe: int) -> dict:
    """``recipe``: ``sim.pretrain.RECIPE``, the training recipe these models share."""
    return {"stream": stream, "seed": cfg.seed, "arch": cfg.arch, "input_size": cfg.input_size,
            "epochs": cfg.pretrain_epochs, "recipe": recipe}


def is_folder(name: str) -> bool:
    """A stream name that names a folder ``ROOT/<scenario>/<class>/<image>``."""
    return name not in ("synthetic", ROOMS) and not name.startswith(BAG_PREFIX) and \
        name not in registry_streams()


def load_stream(name: str, cfg: BenchConfig) -> streams.LabelledStream:
    """The stream called ``name`` on ``cfg.seed``, frames held in memory."""
    if name == "synthetic":
        s = streams.synthetic_stream(cfg.seed, cfg.frames_per_scenario,
                                     run_frames=run_frames(cfg))
    elif name == ROOMS:
        s = streams.rooms_stream(cfg.seed, cfg.frames_per_scenario)
    elif name.startswith(BAG_PREFIX):
        s = streams.bag_stream(Path(name[len(BAG_PREFIX):]), cfg.bag_camera_topic,
                               parts=cfg.bag_parts)
    elif name in registry_streams():
        s = registry_streams()[name].stream(cfg.seed, cfg.frames_per_scenario, cfg.fps,
                                            cfg.run_seconds)
    else:
        s = streams.folder_stream(Path(name), seed=cfg.seed,
                                  run_frames=run_frames(cfg) if cfg.run_seconds else None,
                                  max_images=cfg.folder_max_images)
    s.frames = list(s.frames)
    return s


def start_data(name: str, stream: streams.LabelledStream, cfg: BenchConfig) -> list[Frame]:
    """The frames the starting model is trained on."""
    if name == "synthetic":
        from etuner_ros.sim.world import SyntheticWorld

        world = SyntheticWorld(cfg.seed)
        return world.frames(world.scenarios[0].name, cfg.pretrain_frames, split="train")
    if name == ROOMS:
        from etuner_ros.sim.room_crops import crop_dataset
        from etuner_ros.sim.rooms import RoomWorld

        rooms = RoomWorld(cfg.seed)
        return crop_dataset(rooms, rooms.scenarios[0].name, cfg.pretrain_frames)
    if name in registry_streams():
        return registry_streams()[name].start_data(cfg.seed, cfg.pretrain_frames)
    return streams.first_scenario_frames(stream)


def prepare_start(name: str, cfg: BenchConfig, data_dir: Path, progress: bool) -> Path:
    """Checkpoint of the starting model for (stream, seed): trained once, cached by key."""
    from etuner_ros.sim.pretrain import RECIPE, cached_model, pretrain, train_base_model

    if name in ("synthetic", ROOMS):
        return pretrain(data_dir, cfg.arch, cfg.seed, frames=cfg.pretrain_frames,
                        epochs=cfg.pretrain_epochs, input_size=cfg.input_size,
                        progress=progress, world="objects" if name == "synthetic" else "rooms")
    registry = registry_streams()
    source = Path(name.removeprefix(BAG_PREFIX)).resolve()  # a folder or a bag
    tag = name if name in registry else "folder_" + source.name
    path = Path(data_dir) / "models" / f"start_{tag}_{cfg.arch}_s{cfg.seed}_i{cfg.input_size}.pt"
    key = _start_key(str(source) if tag.startswith("folder_") else name, cfg, RECIPE)
    if name in registry:
        key["frames"] = cfg.pretrain_frames
        key["version"] = registry[name].VERSION
    force = tag.startswith("folder_")  # a folder's files may change under the same name

    def train() -> tuple[ModelBundle, dict]:
        stream = load_stream(name, cfg)
        data = start_data(name, stream, cfg)
        names = [c for c in stream.class_names if c in {f.label for f in data}]
        return train_base_model(data, names, cfg.arch, cfg.seed, cfg.pretrain_epochs,
                                cfg.input_size, progress=progress)

    return cached_model(path, key, cfg.arch, train, progress, force=force)


def _prepare_one(args: tuple[str, BenchConfig, Path, bool]) -> str:
    torch.set_num_threads(args[1].torch_threads)
    return str(prepare_start(*args))


def prepare_starts(specs: Sequence[tuple[str, BenchConfig]], data_dir: Path, workers: int,
                   progress: bool) -> list[str]:
    """``prepare_start`` for every (stream, config), ``workers`` at once (cached ones are
    only loaded)."""
    args = [(name, cfg, Path(data_dir), progress and workers <= 1) for name, cfg in specs]
    if workers <= 1 or len(args) <= 1:
        return [_prepare_one(a) for a in args]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(args)), mp_context=ctx) as pool:
        return list(pool.map(_prepare_one, args))


_STREAMS: dict[tuple[str, int, int], streams.LabelledStream] = {}


def run_job(job: Job) -> dict:
    """One job (in a worker): {"job", "summary", "correct", "scenarios", "seconds"}."""
    from etuner_ros.bench.hindsight import hindsight
    from etuner_ros.bench.runner import run_policy, summarise

    t0, c0 = time.perf_counter(), time.process_time()
    torch.set_num_threads(job.cfg.torch_threads)
    key = (job.stream, job.seed, job.cfg.frames_per_scenario)
    if key not in _STREAMS:
        _STREAMS.clear()  # one stream at a time per worker: frames are tens of MB
        _STREAMS[key] = load_stream(job.stream, job.cfg)
    stream = _STREAMS[key]
    start = load_checkpoint(Path(job.start_path), expected_arch=job.cfg.arch)
    if job.policy == HINDSIGHT:
        summary, correct = hindsight(stream, start, start_data(job.stream, stream, job.cfg),
                                     job.cfg)
    else:
        run = run_policy(job.policy, stream, start, job.cfg,
                         home_frames=start_data(job.stream, stream, job.cfg))
        summary, correct = summarise(run, stream, job.cfg), run.correct
    return {"job": job, "summary": summary, "correct": correct,
            "scenarios": [f.scenario for f in stream.frames],
            "stream": {"name": stream.name, "description": stream.description,
                       "frames": len(stream.frames), "scenarios": list(stream.scenarios),
                       "class_names": list(stream.class_names), "fps": job.cfg.fps,
                       "seconds": len(stream.frames) / job.cfg.fps},
            "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}


def run_jobs(jobs: Sequence[Job], workers: int,
             on_done: Callable[[dict, int, int], None] | None = None) -> list[dict]:
    """Run every job (longest first) on ``workers`` processes (inline when 1); results come
    back in ``jobs`` order whatever order they finish in."""
    order = sorted(range(len(jobs)), key=lambda i: -_COST.get(jobs[i].policy, 5))
    out: list[dict | None] = [None] * len(jobs)
    if workers <= 1:
        for k, i in enumerate(order):
            out[i] = run_job(jobs[i])
            if on_done:
                on_done(out[i], k + 1, len(jobs))
        return out  # type: ignore[return-value]
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(run_job, jobs[i]): i for i in order}
        for k, fut in enumerate(as_completed(futures)):
            i = futures[fut]
            out[i] = fut.result()
            if on_done:
                on_done(out[i], k + 1, len(jobs))
    return out  # type: ignore[return-value]


def mean_correct(results: Sequence[dict]) -> np.ndarray:
    """Per-frame accuracy averaged over seeds (for the plot); streams of one length only."""
    arrs = [r["correct"].astype(float) for r in results]
    n = min(len(a) for a in arrs)
    return np.mean([a[:n] for a in arrs], axis=0)
