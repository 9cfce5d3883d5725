"""label_collector_node: turn caregivers' corrections into stored, labelled samples.

A correction names a frame by its stamp. The node keeps a bounded cache of recent frames (and of
the detections made on them), pairs each correction with the frame of the same stamp, and writes
the sample to the SQLite store in a committed transaction before counting it. A correction that
arrives before its frame waits up to ``pairing_timeout_s``; one that cannot be paired (frame never
seen or already evicted, empty class name) is rejected with a log line and a counter, never
dropped silently. Every ``unlabelled_every_n``-th frame is offered to the store's bounded
reservoir of unlabelled frames for semi-supervised tuning.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path

from rclpy.node import Node
from sensor_msgs.msg import Image

from etuner_ros.core.store import SampleStore
from etuner_ros.msg import DetectionArray, LabelCorrection
from etuner_ros.ros.diagnostics import OK, WARN, Diagnostics
from etuner_ros.ros.image import ImageConversionError, image_to_rgb
from etuner_ros.ros.params import declare
from etuner_ros.ros.qos import RELIABILITY_CHOICES, image_qos, reliable_qos
from etuner_ros.ros.run import run_node

PREDICTION_WAIT_S = 0.5  # how long a paired correction waits for its frame's detections


def stamp_ns(stamp) -> int:
    """builtin_interfaces/Time -> integer nanoseconds, the pairing key."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class LabelCollectorNode(Node):
    """See the module docstring."""

    def __init__(self, **kwargs) -> None:
        super().__init__("label_collector", **kwargs)
        data_dir = declare(self, "data_dir", "~/.local/share/etuner_ros",
                           "directory of the sample store and checkpoints", read_only=True)
        store_file = declare(self, "store_file", "samples.db",
                             "SQLite file of the sample store, relative to data_dir",
                             read_only=True)
        self.cache_size = declare(self, "frame_cache_size", 300,
                                  "recent frames kept for pairing corrections by stamp",
                                  minimum=1, maximum=100000, read_only=True)
        self.timeout_s = declare(self, "pairing_timeout_s", 2.0,
                                 "how long a correction may wait for its frame to arrive",
                                 minimum=0.0, maximum=600.0)
        self.every_n = declare(self, "unlabelled_every_n", 5,
                               "offer every n-th frame to the unlabelled reservoir (0 = none)",
                               minimum=0, maximum=100000)
        max_unl = declare(self, "max_unlabelled", 2000,
                          "bound of the unlabelled-frame reservoir", minimum=0,
                          maximum=10_000_000, read_only=True)
        reliability = declare(self, "image_reliability", "best_effort",
                              "QoS reliability of the image subscription",
                              choices=RELIABILITY_CHOICES, read_only=True)
        depth = declare(self, "image_queue_depth", 10, "image subscription queue depth",
                        minimum=1, maximum=1000, read_only=True)

        path = Path(data_dir).expanduser() / store_file
        path.parent.mkdir(parents=True, exist_ok=True)
        self.store = SampleStore(path, max_unlabelled=int(max_unl))
        self.store_path = path
        self._lock = threading.Lock()
        self._frames: OrderedDict[int, Image] = OrderedDict()
        self._predictions: OrderedDict[int, tuple[str, int]] = OrderedDict()
        self._waiting: list[tuple[float, LabelCorrection]] = []
        self._seen = 0
        self.stored = 0
        self.unlabelled_kept = 0
        self.rejected = 0
        self.last_rejection = ""

        self.create_subscription(Image, "image", self._on_image, image_qos(reliability, depth))
        self.create_subscription(DetectionArray, "detections", self._on_detections,
                                 reliable_qos(50))
        self.create_subscription(LabelCorrection, "corrections", self._on_correction,
                                 reliable_qos(100))
        self.create_timer(0.2, self._retry_waiting)
        Diagnostics(self, "samples", self._diagnose)
        self.get_logger().info(f"storing labelled samples in {path}")

    # --- inputs --------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        key = stamp_ns(msg.header.stamp)
        with self._lock:
            self._frames[key] = msg
            while len(self._frames) > self.cache_size:
                self._frames.popitem(last=False)
            self._seen += 1
            offer = self.every_n > 0 and self._seen % self.every_n == 0
        if offer:
            try:
                if self.store.add_unlabelled(image_to_rgb(msg), key) is not None:
                    self.unlabelled_kept += 1
            except (ImageConversionError, ValueError) as exc:
                self.get_logger().warn(f"unlabelled frame not kept: {exc}",
                                       throttle_duration_sec=5.0)

    def _on_detections(self, msg: DetectionArray) -> None:
        if not msg.detections:
            return
        best = max(msg.detections, key=lambda d: d.score)
        with self._lock:
            self._predictions[stamp_ns(msg.header.stamp)] = (best.class_name, msg.model_version)
            while len(self._predictions) > self.cache_size:
                self._predictions.popitem(last=False)

    def _on_correction(self, msg: LabelCorrection) -> None:
        if not msg.true_class.strip():
            self._reject(msg, "empty true_class")
            return
        if not self._try_store(msg, waited=0.0):
            with self._lock:
                oldest = next(iter(self._frames)) if self._frames else None
            if oldest is not None and stamp_ns(msg.header.stamp) < oldest:
                self._reject(msg, "frame older than every cached frame (evicted); raise "
                                  "frame_cache_size if caregivers answer this late")
            else:  # its frame may still be on its way
                self._waiting.append((time.monotonic(), msg))

    def _retry_waiting(self) -> None:
        now, still = time.monotonic(), []
        for t, msg in self._waiting:
            if self._try_store(msg, waited=now - t):
                continue
            if now - t >= self.timeout_s:
                self._reject(msg, f"no frame with this stamp within {self.timeout_s:.1f} s "
                                  "(evicted, dropped, or never published)")
            else:
                still.append((t, msg))
        self._waiting = still

    # --- pairing and storage -------------------------------------------------------------
    def _try_store(self, msg: LabelCorrection, waited: float) -> bool:
        """Store if the frame is cached. A correction that overtook the frame's detections
        waits briefly for them, so the sample records the prediction it corrected."""
        key = stamp_ns(msg.header.stamp)
        with self._lock:
            frame = self._frames.get(key)
            predicted, version = self._predictions.get(key, (None, None))
        if frame is None:
            return False
        if predicted is None and waited < min(PREDICTION_WAIT_S, self.timeout_s):
            return False
        try:
            image = image_to_rgb(frame)
            row = self.store.add_labelled(
                image, msg.true_class.strip(), key, predicted=predicted,
                model_version=version, confirms=bool(msg.confirms), source=msg.source)
        except (ImageConversionError, ValueError) as exc:
            self._reject(msg, f"cannot store: {exc}")
            return True  # handled: rejected with a reason, must not be retried
        self.stored += 1  # counted only after the commit above
        kind = "confirmation" if msg.confirms else "correction"
        self.get_logger().info(
            f"stored {kind} #{row}: '{msg.true_class}' (predicted '{predicted}', "
            f"v{version}) stamp {key}")
        return True

    def _reject(self, msg: LabelCorrection, why: str) -> None:
        self.rejected += 1
        self.last_rejection = why
        self.get_logger().warn(
            f"rejected correction '{msg.true_class}' for stamp {stamp_ns(msg.header.stamp)} "
            f"from '{msg.source}': {why} (rejected so far: {self.rejected})")

    def _diagnose(self) -> tuple[bytes, str, dict]:
        values = {"stored": self.stored, "rejected": self.rejected,
                  "waiting": len(self._waiting), "unlabelled_kept": self.unlabelled_kept,
                  "frames_cached": len(self._frames), "store": str(self.store_path),
                  "last_rejection": self.last_rejection}
        if self.rejected:
            return WARN, f"{self.rejected} correction(s) rejected: {self.last_rejection}", values
        return OK, f"{self.stored} samples stored", values

    def destroy_node(self) -> None:
        self.store.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the node alone."""
    return run_node(LabelCollectorNode, "label_collector", args, threads=1)
