#!/usr/bin/env python3
"""Perception's latency per frame with 1, 4 and 8 regions (issue 8), through the real node.

    bash scripts/region_latency.sh [--regions 1 4 8] [--frames 60] [--width 640 --height 480]

A perception process (``region_source: topic``, the installed config/etuner.yaml plus a
checkpoint of the project's architecture at 64 px) gets a 640x480 rgb8 frame, then an upstream
detector's DetectionArray with N boxes for its stamp, as a detector downstream of the camera
would send them; one frame at a time, so the numbers are latency, not queueing. Two figures per
N, both on this machine's CPU:

* ``e2e``: from publishing the boxes to receiving the N detections here (DDS both ways, the N
  crops, one batched forward, the answer);
* ``core batched`` / ``core one by one``: the crops and the forward pass alone, in this process
  (``core.regions.classify_regions``), against N separate forwards: what batching saves.

Prints a table and writes JSON (default bench/out/region_latency.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from etuner_ros.ros.run import use_default_transport_profile

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["cup", "bottle", "book", "phone", "glasses", "pill_box", "remote", "keys"]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--regions", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--frames", type=int, default=60, help="measured frames per N")
    p.add_argument("--warmup", type=int, default=10, help="unmeasured frames per N")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "region_latency.json")
    return p.parse_args()


def boxes_for(n: int, width: int, height: int, rng: np.random.Generator) -> list[tuple]:
    """``n`` object-sized boxes (1/8 to 1/3 of the frame's side) at random places."""
    out = []
    for _ in range(n):
        w = int(rng.integers(width // 8, width // 3))
        h = int(rng.integers(height // 8, height // 3))
        out.append((int(rng.integers(0, width - w)), int(rng.integers(0, height - h)), w, h))
    return out


def core_times(bundle, rgb: np.ndarray, boxes: list[tuple], reps: int) -> tuple[float, float]:
    """Median ms of the N crops + one batched forward, and of N separate forwards."""
    from etuner_ros.core.regions import Box, classify_regions

    bs = [Box(*b) for b in boxes]
    batched, single = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        classify_regions(bundle, rgb, bs)
        batched.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for b in bs:
            classify_regions(bundle, rgb, [b])
        single.append(time.perf_counter() - t0)
    return float(np.median(batched) * 1e3), float(np.median(single) * 1e3)


def start_perception(d: Path, opts: argparse.Namespace):
    import torch

    from etuner_ros.bringup import default_config
    from etuner_ros.core.checkpoint import save_checkpoint
    from etuner_ros.core.model import ModelBundle, build_model

    torch.manual_seed(0)
    arch = "mobilenet_v3_small"
    bundle = ModelBundle(build_model(arch, len(CLASSES)), arch, CLASSES, 1, opts.input_size)
    ckpt = save_checkpoint(d / "base.pt", bundle)
    overlay = d / "overlay.yaml"
    overlay.write_text(f"/**:\n  ros__parameters:\n    data_dir: '{d}'\n"
                       f"/**/perception:\n  ros__parameters:\n    checkpoint: '{ckpt}'\n"
                       "    region_source: topic\n    image_reliability: reliable\n"
                       "    image_queue_depth: 5\n    max_regions: 64\n")
    exe = ROOT / "install" / "etuner_ros" / "lib" / "etuner_ros" / "perception_node"
    log = open(d / "perception.log", "w")  # noqa: SIM115 (lives as long as the process)
    proc = subprocess.Popen([sys.executable, str(exe), "--ros-args", "--params-file",
                             str(default_config()), "--params-file", str(overlay)],
                            stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
                            start_new_session=True)
    return proc, bundle


def main() -> int:
    opts = parse()
    use_default_transport_profile()
    import rclpy
    import torch
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image, RegionOfInterest
    from std_msgs.msg import Header

    from etuner_ros.msg import Detection, DetectionArray, ModelInfo
    from etuner_ros.ros.image import rgb_to_image
    from etuner_ros.ros.qos import image_qos, latched_qos, reliable_qos

    torch.set_num_threads(1)  # as perception's torch_threads
    d = Path(tempfile.mkdtemp(prefix="etuner_region_latency_"))
    proc, bundle = start_perception(d, opts)
    rclpy.init()
    node = rclpy.create_node("region_latency_driver")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    threading.Thread(target=ex.spin, daemon=True).start()
    got: dict[int, tuple[float, int]] = {}
    info: list = []
    node.create_subscription(DetectionArray, "detections", lambda m: got.__setitem__(
        m.header.stamp.sec, (time.perf_counter(), len(m.detections))), reliable_qos(50))
    node.create_subscription(ModelInfo, "model_info", info.append, latched_qos())
    img_pub = node.create_publisher(Image, "image", image_qos("reliable", 5))
    box_pub = node.create_publisher(DetectionArray, "regions", reliable_qos(50))
    rows = []
    try:
        deadline = time.monotonic() + 120
        while not (info and box_pub.get_subscription_count() and
                   img_pub.get_subscription_count()):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"perception did not come up; log in {d}")
            time.sleep(0.1)
        rng = np.random.default_rng(0)
        sec = 1000
        for n in opts.regions:
            e2e, lost = [], 0
            for i in range(opts.warmup + opts.frames):
                sec += 1
                rgb = rng.integers(0, 255, (opts.height, opts.width, 3), np.uint8)
                boxes = boxes_for(n, opts.width, opts.height, rng)
                header = Header(frame_id="cam")
                header.stamp.sec = sec
                img_pub.publish(rgb_to_image(rgb, header))
                time.sleep(0.05)  # the frame is there first, as behind a real detector
                msg = DetectionArray(header=header, detections=[Detection(
                    class_name="object", score=0.9, bbox=RegionOfInterest(
                        x_offset=x, y_offset=y, width=w, height=h)) for x, y, w, h in boxes])
                t0 = time.perf_counter()
                box_pub.publish(msg)
                end = time.monotonic() + 5.0
                while sec not in got and time.monotonic() < end:
                    time.sleep(0.0005)
                if i < opts.warmup:
                    continue
                if sec in got and got[sec][1] == n:
                    e2e.append((got[sec][0] - t0) * 1e3)
                else:
                    lost += 1
            rgb = rng.integers(0, 255, (opts.height, opts.width, 3), np.uint8)
            batched, single = core_times(bundle, rgb, boxes_for(n, opts.width, opts.height, rng),
                                         30)
            rows.append({"regions": n, "frames": opts.frames, "unanswered": lost,
                         "e2e_p50_ms": float(np.percentile(e2e, 50)) if e2e else None,
                         "e2e_p95_ms": float(np.percentile(e2e, 95)) if e2e else None,
                         "core_batched_ms": batched, "core_one_by_one_ms": single})
            print(f"[region_latency] {n} regions done", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown()
    print(f"\nperception, {opts.width}x{opts.height} rgb8 frames, model input "
          f"{opts.input_size} px, one frame at a time ({os.cpu_count()} CPUs)")
    print("| regions | e2e p50 ms | e2e p95 ms | core batched ms | core one by one ms | "
          "unanswered |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['regions']} | {r['e2e_p50_ms']:.1f} | {r['e2e_p95_ms']:.1f} | "
              f"{r['core_batched_ms']:.1f} | {r['core_one_by_one_ms']:.1f} | "
              f"{r['unanswered']} of {r['frames']} |")
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps({"rows": rows, "width": opts.width, "height": opts.height,
                                    "input_size": opts.input_size, "cpus": os.cpu_count(),
                                    "command": " ".join(sys.argv)}, indent=2))
    print(f"wrote {opts.out}")
    return 0 if all(r["unanswered"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
