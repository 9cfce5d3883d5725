"""Bursts of corrections through the real label collector over real DDS.

Used by ``test_faults_collector.py`` and runnable on its own to measure the rate the collector
stores at (the system under test is the installed ``bringup``: perception, collector, tuner)::

    . scripts/env.sh && python test/ros/collector_burst.py --n 1000 --n 5000 --json burst.json

It prints one row per burst (corrections sent, stored, held, rejected, dropped, seconds to
publish, seconds until the last one was committed, corrections/s) and writes them as JSON.
``--alone`` runs the collector's own executable instead, with the probe publishing the
detections perception would, to measure the collector without perception and tuner sharing
the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header

from etuner_ros.core.checkpoint import save_checkpoint
from etuner_ros.core.class_names import ClassPolicy
from etuner_ros.core.model import ModelBundle, build_model
from etuner_ros.core.store import Correction, SampleStore
from etuner_ros.msg import Detection, DetectionArray, LabelCorrection, ModelInfo
from etuner_ros.ros.image import rgb_to_image
from etuner_ros.ros.qos import corrections_qos, image_qos, latched_qos, reliable_qos

from harness import REPO, Bringup, Probe, wait_for

CLASSES = ["cup", "book", "bottle"]
DIAG_NAME = "label_collector: samples"


def make_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    bundle = ModelBundle(model=build_model("mobilenet_v3_small", len(CLASSES)),
                         arch="mobilenet_v3_small", class_names=list(CLASSES), version=1,
                         input_size=32)
    return save_checkpoint(path, bundle)


def write_overlay(d: Path, collector: str = "", extra: str = "") -> Path:
    """Parameters for a burst: reliable, deep image queue and a cache for thousands of frames."""
    path = d / "overlay.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n"
        f"    data_dir: '{d}'\n"
        "/**/tuner:\n  ros__parameters:\n    policy: none\n"
        "/**/label_collector:\n  ros__parameters:\n"
        "    image_reliability: reliable\n    image_queue_depth: 1000\n"
        "    frame_cache_size: 20000\n    unlabelled_every_n: 0\n" + collector + extra)
    return path


class CollectorProcess(Bringup):
    """The installed ``label_collector_node`` executable alone, with Bringup's interface."""

    def __init__(self, log_path: Path, *args: str) -> None:
        import shutil
        import subprocess

        exe = shutil.which("label_collector_node") or str(
            REPO / "install" / "etuner_ros" / "lib" / "etuner_ros" / "label_collector_node")
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen([sys.executable, exe, *args], stdout=self._log,
                                     stderr=subprocess.STDOUT, env=os.environ.copy(),
                                     cwd=str(log_path.parent), start_new_session=True)


class System:
    """bringup on ``d`` plus a probe that publishes frames and corrections and reads
    /diagnostics."""

    def __init__(self, d: Path, log_name: str = "bringup.log", collector: str = "",
                 extra: str = "", namespace: str = "burst", alone: bool = False) -> None:
        self.dir = d
        self.fqn = f"/{namespace}/label_collector"  # tells its /diagnostics from others'
        ckpt = d / "base.pt"
        if not ckpt.exists():
            make_checkpoint(ckpt)
        self.alone = alone
        if alone:  # no perception: its classes are the allowed ones
            collector += f"    allowed_classes: '{','.join(CLASSES)}'\n"
        overlay = write_overlay(d, collector, extra)
        if alone:
            self.sut: Bringup = CollectorProcess(
                d / log_name, "--ros-args", "--params-file", str(overlay), "-r",
                f"__ns:=/{namespace}")
        else:
            self.sut = Bringup(d / log_name, "--params-file", str(overlay), "--checkpoint",
                               str(ckpt), "--namespace", namespace)
        self.probe = Probe(name=f"burst_probe_{os.getpid()}", namespace=namespace)
        self.diag = self.probe.collect(DiagnosticArray, "/diagnostics", reliable_qos(100))
        self.info = self.probe.collect(ModelInfo, "model_info", latched_qos())
        self.img_pub = self.probe.publisher(Image, "image", image_qos("reliable", 1000))
        self.cor_pub = self.probe.publisher(LabelCorrection, "corrections", corrections_qos())
        self.det_pub = self.probe.publisher(DetectionArray, "detections", reliable_qos(1000))
        self.rng = np.random.default_rng(0)

    def wait_ready(self, timeout: float = 120) -> None:
        if not self.alone:
            wait_for(lambda: self.sut.check() or self.info, timeout, "perception's model_info")
        wait_for(lambda: self.sut.check() or self.values(), timeout,
                 "label_collector on /diagnostics")
        wait_for(lambda: self.img_pub.get_subscription_count() >= (1 if self.alone else 3)
                 and self.cor_pub.get_subscription_count() >= 1, timeout, "subscribers")

    def close(self) -> int:
        self.probe.close()
        return self.sut.stop()

    def values(self) -> dict[str, str]:
        """The collector's latest /diagnostics values (empty before the first)."""
        for arr in reversed(list(self.diag)):
            for st in arr.status:
                if st.name == DIAG_NAME and st.hardware_id == self.fqn:
                    return {kv.key: kv.value for kv in st.values} | {
                        "_level": str(st.level[0] if isinstance(st.level, bytes)
                                      else st.level), "_message": st.message}
        return {}

    def count(self, key: str) -> int:
        return int(self.values().get(key, 0))

    def publish_frames(self, stamps: list[Time], chunk: int = 200) -> None:
        """Publish one small frame per stamp, in chunks the collector confirms receiving."""
        header = Header(frame_id="burst_cam")
        img = rgb_to_image(self.rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), header)
        whole = RegionOfInterest(width=32, height=24)  # perception's box in whole-frame mode
        start = self.count("frames")
        for i in range(0, len(stamps), chunk):
            for s in stamps[i:i + chunk]:
                img.header.stamp = s
                self.img_pub.publish(img)
                if self.alone:  # what perception would answer
                    self.det_pub.publish(DetectionArray(
                        header=Header(stamp=s, frame_id="burst_cam"), model_version=1,
                        detections=[Detection(class_id=0, class_name=CLASSES[0], score=0.9,
                                              model_version=1, bbox=whole)]))
            want = start + min(i + chunk, len(stamps))
            wait_for(lambda w=want: self.sut.check() or self.count("frames") >= w, 60,
                     f"collector received {want - start} frames")

    def correction(self, stamp: Time, label: str, source: str = "burst") -> LabelCorrection:
        return LabelCorrection(header=Header(stamp=stamp, frame_id="burst_cam"),
                               true_class=label, source=source)

    def accounted(self) -> int:
        v = self.values()
        return sum(int(v.get(k, 0)) for k in ("stored", "held", "rejected", "dropped"))

    def settled(self, received: int) -> bool:
        v = self.values()
        return (int(v.get("received", 0)) >= received and self.accounted() >= received
                and v.get("waiting") == "0" and v.get("write_queue") == "0")


def stamps_from(first_sec: int, n: int) -> list[Time]:
    return [Time(sec=first_sec + i, nanosec=7) for i in range(n)]


def burst(sys_: System, stamps: list[Time], label: str = "cup") -> dict[str, Any]:
    """Send one correction per stamp as fast as possible; time until all are committed."""
    store = SampleStore(sys_.dir / "samples.db")
    keys = ("received", "held", "rejected", "dropped")
    base = {k: sys_.count(k) for k in keys}
    base_received, base_labelled = base["received"], store.count_labelled()
    msgs = [sys_.correction(s, label) for s in stamps]
    t0 = time.monotonic()
    for m in msgs:
        sys_.cor_pub.publish(m)
    t_pub = time.monotonic() - t0
    n, last, t_done = len(stamps), base_labelled, None
    deadline = t0 + 120 + n / 10
    while time.monotonic() < deadline:  # the commit times, read from the store itself
        c = store.count_labelled()
        if c != last:
            last, t_done = c, time.monotonic() - t0
        if c - base_labelled >= n or sys_.settled(base_received + n):
            break
        sys_.sut.check()
        time.sleep(0.01)
    wait_for(lambda: sys_.settled(base_received + n), 30, "every correction accounted for")
    v = sys_.values()
    store.close()
    stored = last - base_labelled
    delta = {k: int(v[k]) - base[k] for k in keys}
    return {"sent": n, "stored": stored, **delta, "publish_s": round(t_pub, 3),
            "commit_s": round(t_done or 0.0, 3),
            "stored_per_s": round(stored / t_done, 1) if t_done else 0.0}


def store_rate(seconds: float = 3.0) -> list[dict[str, Any]]:
    """SampleStore.add_corrections alone (no ROS): corrections/s by batch size."""
    rows = []
    img = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    policy = ClassPolicy.build(CLASSES, 3)
    with (tempfile.TemporaryDirectory(prefix="etuner_store_rate_") as tmp,
          SampleStore(Path(tmp) / "s.db") as st):
        for k, batch in enumerate((1, 16, 256)):
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                st.add_corrections([Correction(img, "cup", (k * 10**7 + n + i) * 10**9)
                                    for i in range(batch)], policy)
                n += batch
            rows.append({"batch": batch,
                         "stored_per_s": round(n / (time.perf_counter() - t0), 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, action="append", help="burst sizes (default 1000, 5000)")
    p.add_argument("--json", type=Path, default=None, help="write the rows here")
    p.add_argument("--store-only", action="store_true",
                   help="measure SampleStore.add_corrections alone (no ROS) by batch size")
    p.add_argument("--alone", action="store_true",
                   help="the collector's executable alone instead of bringup")
    p.add_argument("--dir", type=Path, default=None,
                   help="data directory to use and keep (default: a temporary one)")
    opts = p.parse_args(argv)
    if opts.store_only:
        rows = store_rate()
        print(f"{'batch':>6} {'stored/s':>9}")
        for r in rows:
            print(f"{r['batch']:6d} {r['stored_per_s']:9.1f}")
        if opts.json:
            opts.json.write_text(json.dumps(rows, indent=1))
        return 0
    sizes = opts.n or [1000, 5000]
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rows = []
    with tempfile.TemporaryDirectory(prefix="etuner_burst_") as tmp:
        d = opts.dir or Path(tmp)
        d.mkdir(parents=True, exist_ok=True)
        s = System(d, alone=opts.alone)
        try:
            s.wait_ready()
            first = 10_000
            for n in sizes:
                stamps = stamps_from(first, n)
                first += n
                s.publish_frames(stamps)
                rows.append(burst(s, stamps))
        finally:
            code = s.close()
    print(f"{'sent':>6} {'stored':>6} {'held':>5} {'rej':>5} {'drop':>5} {'pub s':>6} "
          f"{'commit s':>8} {'stored/s':>8}")
    for r in rows:
        print(f"{r['sent']:6d} {r['stored']:6d} {r['held']:5d} {r['rejected']:5d} "
              f"{r['dropped']:5d} {r['publish_s']:6.2f} {r['commit_s']:8.2f} "
              f"{r['stored_per_s']:8.1f}")
    if opts.json:
        opts.json.write_text(json.dumps(rows, indent=1))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
