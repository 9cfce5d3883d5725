"""Train (or reuse) the robot's starting model on the synthetic world's first scenario.

``world="objects"`` (default): whole frames of one object each. ``world="rooms"``: crops of the
objects in rooms with several at once (``sim/room_crops.py``), cut around jittered boxes as
perception cuts a detector's boxes: the starting model of region recognition.

The benchmark and the demo both start from the same model, so it is trained once per
(architecture, seed, input size, world version, training budget) and cached in
``data_dir/models/``; a later call returns the cached file when it still loads and its key matches.
Run it as ``python -m etuner_ros.sim.pretrain``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from etuner_ros.cli_args import non_negative_int, positive_int
from etuner_ros.core.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_extra,
    save_checkpoint,
)
from etuner_ros.core.home_recall import HomeSignature
from etuner_ros.core.model import ModelBundle, build_model, preprocess
from etuner_ros.core.numerics import numerics_tag
from etuner_ros.sim.room_crops import crop_dataset
from etuner_ros.sim.rooms import ROOMS_VERSION, RoomWorld
from etuner_ros.sim.world import WORLD_VERSION, Frame, SyntheticWorld

DEFAULT_ARCH = "mobilenet_v3_small"
DEFAULT_FRAMES = 1200  # ~90% on the first scenario for mobilenet_v3_small at 64 px
DEFAULT_EPOCHS = 8
DEFAULT_INPUT_SIZE = 64
VAL_FRAMES = 200  # at most; a quarter of the training frames for tiny runs (tests)
BATCH = 32
LR = 2e-3
RECIPE = 3  # bump when the training recipe changes: part of the cache key (3: one thread)


WORLDS: tuple[str, ...] = ("objects", "rooms")


def base_checkpoint_path(data_dir: Path, arch: str = DEFAULT_ARCH, seed: int = 0,
                         input_size: int = DEFAULT_INPUT_SIZE, world: str = "objects") -> Path:
    """Where ``pretrain`` caches the starting model."""
    tag = "" if world == "objects" else f"_{world}"
    return Path(data_dir) / "models" / f"base{tag}_{arch}_s{seed}_i{input_size}.pt"


def train_base_model(frames: Sequence[Frame], class_names: Sequence[str],
                     arch: str = DEFAULT_ARCH, seed: int = 0, epochs: int = DEFAULT_EPOCHS,
                     input_size: int = DEFAULT_INPUT_SIZE, progress: bool = True,
                     val_frames: Sequence[Frame] | None = None) -> tuple[ModelBundle, dict]:
    """Plain supervised training (Adam, cross-entropy) from random init; returns the bundle
    (version 1, eval mode) and metrics. Also used for a folder stream's first scenario."""
    names = list(class_names)
    unknown = sorted({f.label for f in frames} - set(names))
    if not frames or unknown:
        raise ValueError(f"need labelled frames whose labels are in class_names; "
                         f"{len(frames)} frames, unknown labels {unknown}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    x = preprocess([f.image for f in frames], input_size)
    y = torch.tensor([names.index(f.label) for f in frames])
    # One thread: float sums in one order, so the model is a pure function of the cache key
    # whichever process trains it first (the demo on all cores, the benchmark on one). With
    # two threads the same seed gave weights up to 6.5 apart and the rooms table moved.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = _fit(x, y, names, arch, seed, epochs, progress)
    finally:
        torch.set_num_threads(threads)
    bundle = ModelBundle(model, arch, names, version=1, input_size=input_size)
    metrics = {"train_acc": accuracy(bundle, frames),
               # perception's home recall (core/home_recall.py) knows the home from this
               "home_signature": HomeSignature.from_images([f.image for f in frames]).to_dict()}
    if val_frames:
        metrics["val_acc"] = accuracy(bundle, val_frames)
    return bundle, metrics


def _fit(x: torch.Tensor, y: torch.Tensor, names: list[str], arch: str, seed: int,
         epochs: int, progress: bool) -> nn.Module:
    """The training loop of :func:`train_base_model` (seeded; the caller's RNG untouched)."""
    with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's RNG
        torch.manual_seed(seed)
        model = build_model(arch, len(names))
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        steps = epochs * -(-len(x) // BATCH)
        # Cosine decay: the last epochs settle instead of ending on a noisy high-LR step.
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        # A progress bar on a terminal; in a log (CI, the demo's output) one line per epoch.
        tty = progress and sys.stderr.isatty()
        bar = tqdm(total=steps, desc=f"pretrain {arch}", unit="step", disable=not tty,
                   leave=False)
        model.train()
        for epoch in range(epochs):
            perm = torch.randperm(len(x))
            for i in range(0, len(x), BATCH):
                idx = perm[i:i + BATCH]
                if len(idx) < 2:  # BatchNorm cannot train on a single sample
                    continue
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
            if progress and not tty:
                print(f"[pretrain] epoch {epoch + 1}/{epochs}: last loss {loss.item():.3f}",
                      flush=True)
        bar.close()
        recalibrate_batchnorm(model, x)  # train-mode dropout draws random numbers too
    return model


def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch: int = 128) -> None:
    """Recompute BatchNorm running statistics exactly over ``x``, then switch to eval mode.

    torchvision's MobileNetV3 uses BN momentum 0.01, so after a few hundred steps its running
    statistics are still far from the data and eval-mode accuracy lags train mode badly.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over every batch below
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            model(x[i:i + batch])
    for m, momentum in zip(bns, saved, strict=True):
        m.momentum = momentum
    model.eval()


def accuracy(bundle: ModelBundle, frames: Sequence[Frame]) -> float:
    """Fraction of frames whose predicted class name equals the label (unknown labels count
    as wrong)."""
    if not frames:
        return float("nan")
    hits = 0
    for i in range(0, len(frames), 256):
        chunk = frames[i:i + 256]
        ids, _ = bundle.predict([f.image for f in chunk])
        hits += sum(bundle.class_names[k] == f.label for k, f in zip(ids, chunk, strict=True))
    return hits / len(frames)


def cached_model(path: Path, key: dict, arch: str, train: Callable[[], tuple[ModelBundle, dict]],
                 progress: bool = True, force: bool = False) -> Path:
    """``path`` if it holds a loadable model saved with this cache ``key``; else call
    ``train()`` (returns the bundle and metrics), save its model with the key, return ``path``.
    The key is extended by the CPU kernels this process trains with (``core/numerics.py``):
    AVX2 and AVX-512 kernels train different models from one seed, so a model cached by an
    unpinned process is not the benchmark's."""
    say = print if progress else (lambda *_a, **_k: None)
    key = {**key, "numerics": numerics_tag()}
    if path.exists() and not force:
        try:
            load_checkpoint(path, expected_arch=arch)
            if read_extra(path).get("cache_key") == key:
                say(f"[pretrain] using cached model {path}", flush=True)
                return path
            say(f"[pretrain] cached {path} was made with other settings; retraining", flush=True)
        except (CheckpointError, OSError, RuntimeError) as exc:
            say(f"[pretrain] cached {path} unusable ({exc}); retraining", flush=True)
    t0 = time.monotonic()
    bundle, metrics = train()
    extra = {"cache_key": key, "seconds": time.monotonic() - t0, **metrics}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, bundle, extra=extra)
    say(f"[pretrain] saved {path} in {extra['seconds']:.1f} s", flush=True)
    return path


def pretrain(data_dir: Path, arch: str = DEFAULT_ARCH, seed: int = 0,
             frames: int = DEFAULT_FRAMES, epochs: int = DEFAULT_EPOCHS,
             input_size: int = DEFAULT_INPUT_SIZE, progress: bool = True,
             force: bool = False, world: str = "objects") -> Path:
    """Path of the starting model (version 1) trained on the first scenario of
    ``SyntheticWorld(seed)`` (``world`` "objects") or of ``RoomWorld(seed)``'s crops ("rooms");
    reuses the cached file unless ``force`` or its cache key differs."""
    if world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {world!r}")
    path = base_checkpoint_path(data_dir, arch, seed, input_size, world)
    key = {"arch": arch, "seed": int(seed), "input_size": int(input_size),
           "world_version": WORLD_VERSION, "frames": int(frames), "epochs": int(epochs),
           "recipe": RECIPE}
    if world == "rooms":
        key["rooms_version"] = ROOMS_VERSION

    def samples(w: SyntheticWorld | RoomWorld, scenario: str, n: int, split: str) -> list:
        if isinstance(w, RoomWorld):
            return crop_dataset(w, scenario, n, split=split)
        return w.frames(scenario, n, split=split)

    def train() -> tuple[ModelBundle, dict]:
        w = SyntheticWorld(seed) if world == "objects" else RoomWorld(seed)
        first = w.scenarios[0]
        names = w.class_names_seen_in(first)
        if progress:
            what = "frames" if world == "objects" else "object crops from rooms"
            print(f"[pretrain] rendering {frames} {what} of scenario {first.name!r} "
                  f"({len(names)} classes), training {arch} at {input_size}px for {epochs} "
                  "epochs", flush=True)
        data = samples(w, first.name, frames, "train")
        val = samples(w, first.name, min(VAL_FRAMES, max(8, frames // 4)), "val")
        bundle, metrics = train_base_model(data, names, arch, seed, epochs, input_size,
                                           progress, val_frames=val)
        return bundle, {"scenario": first.name, **metrics}

    return cached_model(path, key, arch, train, progress, force)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=Path("data"),
                   help="the model goes to DATA_DIR/models/ (default ./data)")
    p.add_argument("--arch", default=DEFAULT_ARCH)
    p.add_argument("--seed", type=non_negative_int, default=0, help="world and training seed")
    p.add_argument("--frames", type=positive_int, default=DEFAULT_FRAMES)
    p.add_argument("--epochs", type=positive_int, default=DEFAULT_EPOCHS)
    p.add_argument("--input-size", type=positive_int, default=DEFAULT_INPUT_SIZE)
    p.add_argument("--world", choices=WORLDS, default="objects",
                   help="objects: whole one-object frames; rooms: object crops from rooms")
    p.add_argument("--force", action="store_true", help="retrain even if a cached model fits")
    opts = p.parse_args(argv)
    try:
        path = pretrain(opts.data_dir, opts.arch, opts.seed, opts.frames, opts.epochs,
                        opts.input_size, progress=True, force=opts.force, world=opts.world)
    except (ValueError, OSError, CheckpointError) as exc:
        print(f"[pretrain] error: {exc}", file=sys.stderr)
        return 1
    extra = read_extra(path)
    print(f"[pretrain] {path}: train accuracy {extra.get('train_acc', np.nan):.3f}, "
          f"val accuracy {extra.get('val_acc', np.nan):.3f} on {extra.get('scenario')!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
