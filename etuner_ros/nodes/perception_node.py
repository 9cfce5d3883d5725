"""perception_node: classify camera frames and hot-swap weights without stopping.

Subscribes ``image``; publishes ``detections`` (header = the source image's header),
``detections/image`` (annotated, for RViz) and ``model_info`` (latched). ``~/swap_weights`` loads
and checks a checkpoint on the service's own callback group, then replaces the serving model with
one reference assignment between two frames: inference never waits for a load, and a checkpoint
that fails any check leaves the old model serving.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path

import cv2
import numpy as np
import torch
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import Image, RegionOfInterest

from etuner_ros.core.checkpoint import CheckpointError, load_checkpoint
from etuner_ros.core.model import SUPPORTED_ARCHS, ModelBundle
from etuner_ros.core.registry import load_start_model
from etuner_ros.msg import Detection, DetectionArray, ModelInfo
from etuner_ros.ros.diagnostics import OK, WARN, Diagnostics
from etuner_ros.ros.image import ImageConversionError, image_to_rgb, rgb_to_image
from etuner_ros.ros.params import ParameterError, declare
from etuner_ros.ros.qos import RELIABILITY_CHOICES, image_qos, latched_qos, reliable_qos
from etuner_ros.ros.run import run_node
from etuner_ros.srv import SwapWeights


class PerceptionNode(LifecycleNode):
    """Serves one classifier; see the module docstring for the contract."""

    def __init__(self, **kwargs) -> None:
        super().__init__("perception", **kwargs)
        self.arch = declare(self, "architecture", "mobilenet_v3_small",
                            "torchvision classifier architecture of the served model",
                            choices=SUPPORTED_ARCHS, read_only=True)
        ckpt = declare(self, "checkpoint", "", "path of the starting checkpoint (required)",
                       read_only=True)
        self._models_dir = Path(declare(
            self, "data_dir", "~/.local/share/etuner_ros", "the tuner's models/active.json "
            "here names the model to start from (else 'checkpoint')",
            read_only=True)).expanduser() / "models"
        reliability = declare(self, "image_reliability", "best_effort",
                              "QoS reliability of the image subscription",
                              choices=RELIABILITY_CHOICES, read_only=True)
        depth = declare(self, "image_queue_depth", 2,
                        "image subscription queue depth; small keeps latency low", minimum=1,
                        maximum=100, read_only=True)
        self.annotate = declare(self, "publish_annotated", True,
                                "publish detections/image with the prediction drawn on it")
        threads = declare(self, "torch_threads", 1, "CPU threads torch may use for inference",
                          minimum=1, maximum=64, read_only=True)
        torch.set_num_threads(int(threads))

        self.autostart = declare(self, "autostart", True,
                                 "configure and activate at start-up (false: wait for a "
                                 "lifecycle manager)", read_only=True)
        if not ckpt:
            raise ParameterError(
                "perception: parameter 'checkpoint' is empty; give the starting model, e.g. one "
                "made by `python -m etuner_ros.sim.pretrain`")
        self._ckpt = str(Path(ckpt).expanduser())
        self._qos = image_qos(reliability, int(depth))
        self._bundle: ModelBundle | None = None
        self._bundle_path = ""
        self._swap_lock = threading.Lock()  # one swap at a time; inference never takes it
        self._stats_lock = threading.Lock()
        self.frames = 0
        self.bad_frames = 0
        self.swaps_ok = 0
        self.swaps_failed = 0
        self.last_error = ""
        self._latency = deque(maxlen=50)
        self._stamps = deque(maxlen=50)
        self._sub = None
        self._srv = None
        Diagnostics(self, "inference", self._diagnose)
        if self.autostart:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise ParameterError(f"perception: cannot configure: {self.last_error}")
            self.trigger_activate()

    # --- lifecycle -----------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the starting model and create the outputs and the swap service."""
        try:  # the last model the tuner made active wins over the base, if it validates
            bundle, path = load_start_model(self._models_dir, self._ckpt, self.arch,
                                            self.get_logger().warn)
        except CheckpointError as exc:
            self.last_error = str(exc)
            self.get_logger().error(f"cannot load checkpoint: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._bundle, self._bundle_path = bundle, path
        self.det_pub = self.create_lifecycle_publisher(DetectionArray, "detections",
                                                       reliable_qos())
        self.ann_pub = self.create_lifecycle_publisher(Image, "detections/image",
                                                       reliable_qos(2))
        self.info_pub = self.create_lifecycle_publisher(ModelInfo, "model_info", latched_qos())
        self._srv = self.create_service(SwapWeights, "~/swap_weights", self._on_swap,
                                        callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(
            f"configured: {self.arch} v{bundle.version} ({len(bundle.class_names)} classes) "
            f"from {path}")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start serving: subscribe to the camera and announce the model."""
        ret = super().on_activate(state)
        self._sub = self.create_subscription(Image, "image", self._on_image, self._qos,
                                             callback_group=MutuallyExclusiveCallbackGroup())
        self._publish_info()
        self.get_logger().info(f"active: serving v{self.version}")
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop inference; the model stays loaded for a quick re-activation."""
        if self._sub is not None:
            self.destroy_subscription(self._sub)
            self._sub = None
        self.get_logger().info("inactive: not subscribed to images")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the model and the outputs."""
        for pub in (self.det_pub, self.ann_pub, self.info_pub):
            self.destroy_lifecycle_publisher(pub)
        if self._srv is not None:
            self.destroy_service(self._srv)
            self._srv = None
        self._bundle = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._sub is not None:
            self.destroy_subscription(self._sub)
            self._sub = None
        return TransitionCallbackReturn.SUCCESS

    @property
    def version(self) -> int:
        return self._bundle.version if self._bundle is not None else 0

    # --- inference -----------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        t0 = time.perf_counter()
        try:
            rgb = image_to_rgb(msg)
        except ImageConversionError as exc:
            with self._stats_lock:
                self.bad_frames += 1
                self.last_error = str(exc)
            self.get_logger().warn(f"dropping frame: {exc}", throttle_duration_sec=5.0)
            return
        bundle = self._bundle  # one read: a swap during this frame affects the next one
        if bundle is None:
            return
        ids, scores = bundle.predict([rgb])
        cid, score = int(ids[0]), float(scores[0])
        name = bundle.class_names[cid]
        out = DetectionArray(header=msg.header, model_version=bundle.version)
        out.detections = [Detection(
            class_id=cid, class_name=name, score=score, model_version=bundle.version,
            bbox=RegionOfInterest(x_offset=0, y_offset=0, width=rgb.shape[1],
                                  height=rgb.shape[0]))]
        self.det_pub.publish(out)
        if self.annotate:
            self.ann_pub.publish(rgb_to_image(_annotate(rgb, name, score, bundle.version),
                                              msg.header))
        with self._stats_lock:
            self.frames += 1
            self._latency.append(time.perf_counter() - t0)
            self._stamps.append(time.monotonic())

    # --- hot swap ------------------------------------------------------------------------
    def _on_swap(self, req: SwapWeights.Request, res: SwapWeights.Response
                 ) -> SwapWeights.Response:
        with self._swap_lock:
            current = self._bundle
            if current is None:
                res.success, res.active_version = False, 0
                res.message = "swap refused: perception is not configured"
                return res
            path = Path(req.checkpoint_path).expanduser()
            try:
                new = load_checkpoint(path, expected_arch=self.arch,
                                      expected_classes_prefix=current.class_names)
            except CheckpointError as exc:
                self.swaps_failed += 1
                res.success, res.active_version = False, current.version
                res.message = f"swap refused, still serving v{current.version}: {exc}"
                self.get_logger().error(res.message)
                return res
            if req.version:
                new.version = int(req.version)
            new.model.eval()
            self._bundle = new  # the swap: the next frame uses the new model
            self._bundle_path = str(path)
            self.swaps_ok += 1
        self._publish_info()
        res.success, res.active_version = True, new.version
        res.message = (f"swapped v{current.version} -> v{new.version} "
                       f"({len(new.class_names)} classes)")
        self.get_logger().info(res.message)
        return res

    def _publish_info(self) -> None:
        b = self._bundle
        info = ModelInfo(version=b.version, architecture=b.arch, input_size=b.input_size,
                         class_names=list(b.class_names), checkpoint_path=self._bundle_path)
        info.header.stamp = self.get_clock().now().to_msg()
        self.info_pub.publish(info)

    def _diagnose(self) -> tuple[bytes, str, dict]:
        with self._stats_lock:
            lat = float(np.mean(self._latency)) if self._latency else float("nan")
            span = self._stamps[-1] - self._stamps[0] if len(self._stamps) > 1 else 0.0
            fps = (len(self._stamps) - 1) / span if span > 0 else 0.0
            values = {"model_version": self.version, "frames": self.frames,
                      "bad_frames": self.bad_frames, "fps": fps, "latency_ms": lat * 1e3,
                      "swaps_ok": self.swaps_ok, "swaps_failed": self.swaps_failed,
                      "last_error": self.last_error}
        if self._bundle is None:
            return WARN, f"not configured {self.last_error}".strip(), values
        if self._sub is None:
            return WARN, f"inactive (model v{self.version} loaded)", values
        if self.frames == 0:
            return WARN, "no frames received yet", values
        if self.bad_frames and self.last_error:
            return WARN, f"some frames dropped: {self.last_error}", values
        return (OK if self.swaps_failed == 0 else WARN), f"serving v{self.version}", values


def _annotate(rgb: np.ndarray, name: str, score: float, version: int) -> np.ndarray:
    """Draw the label on a copy; the caption scales with the frame so small images stay legible."""
    img = rgb.copy()
    h, w = img.shape[:2]
    scale = max(0.3, w / 400.0)
    cv2.rectangle(img, (0, 0), (w - 1, h - 1), (0, 255, 0), max(1, w // 160))
    text = f"{name} {score:.2f} v{version}"
    cv2.rectangle(img, (0, 0), (w - 1, int(18 * scale) + 4), (0, 0, 0), -1)
    cv2.putText(img, text, (2, int(16 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.5,
                (255, 255, 255), 1, cv2.LINE_AA)
    return img


def main(args: list[str] | None = None) -> int:
    """Run the node alone; two executor threads so a swap loads while frames are served."""
    return run_node(PerceptionNode, "perception", args, threads=2)
