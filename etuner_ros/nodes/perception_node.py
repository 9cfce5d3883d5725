"""perception_node: recognise each region of camera frames and hot-swap weights without stopping.

Subscribes ``image`` and, with ``region_source`` ``topic``, an upstream detector's boxes on
``regions`` (``region_message``: this package's DetectionArray, vision_msgs' Detection2DArray or
yolo_ros' DetectionArray), paired with the frames by stamp (``core/region_pairing.py``). Every
region of a frame (with ``frame``, the default: the whole frame) is cropped and classified in
one batched forward pass; publishes ``detections``, one Detection per region (header = the
source image's header), ``detections/image`` (annotated, for RViz; drawn only while someone
subscribes) and ``model_info`` (latched). With ``label_memory`` (default) it also reads
``corrections``, and a region whose view is near-identical to one a caregiver labelled is
answered with that label, marked ``recalled`` (``ros/label_memory_feed.py``). With
``home_recall`` (default) the base checkpoint's model answers while the camera is back in the
scene it was trained on (``ros/home_feed.py``; its detections carry its version). ``~/swap_weights``
loads and checks a checkpoint on the service's own callback group, warms the new model up on one
frame, then replaces the serving model with one reference assignment between two frames:
inference never waits for a load, and a checkpoint that fails any check (``core/checkpoint.py``:
sizes, shapes, finite weights) leaves the old model serving. Every callback (image, swap,
lifecycle transitions, the watchdog timer) runs under a :class:`CallbackGuard`: a failure is
logged once with its cause, counted on ``/diagnostics`` and the node goes on. Times of the
stream (frame receipt, silence, rate) use the node's clock, so ``use_sim_time`` and bag replay
work; inference latency is CPU work measured with a monotonic counter.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import torch
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import Image

from etuner_ros.core.checkpoint import MAX_VERSION, CheckpointError
from etuner_ros.core.model import ModelBundle
from etuner_ros.core.regions import crop
from etuner_ros.core.registry import load_start_model
from etuner_ros.core.text import printable
from etuner_ros.ros.diagnostics import Diagnostics
from etuner_ros.ros.guard import CallbackGuard
from etuner_ros.ros.home_feed import HomeFeed
from etuner_ros.ros.image import (
    ImageConversionError,
    annotate_regions,
    image_to_rgb,
    rgb_to_image,
)
from etuner_ros.ros.label_memory_feed import MemoryFeed
from etuner_ros.ros.params import warn_undeclared
from etuner_ros.ros.perception_outputs import PerceptionOutputs
from etuner_ros.ros.perception_params import declare_settings
from etuner_ros.ros.perception_status import PerceptionStats, verdict
from etuner_ros.ros.qos import image_qos
from etuner_ros.ros.region_feed import RegionFeed
from etuner_ros.ros.region_input import Region
from etuner_ros.ros.region_msgs import detection_array
from etuner_ros.ros.run import run_node
from etuner_ros.ros.stamps import stamp_ns
from etuner_ros.ros.weight_swap import checked_swap
from etuner_ros.srv import SwapWeights


class PerceptionNode(LifecycleNode):
    """Serves one classifier; see the module docstring for the contract."""

    def __init__(self, **kwargs) -> None:
        super().__init__("perception", **kwargs)
        cfg = declare_settings(self)  # also self.annotate and self.no_frames_warn_s
        self.arch, self._ckpt, self._models_dir = cfg.arch, cfg.checkpoint, cfg.models_dir
        self.autostart = cfg.autostart
        self._guard = CallbackGuard(self)
        self.feed = RegionFeed(self, cfg.image_queue_depth, self._guard.wrap)
        self.memory = MemoryFeed(self)
        self.home = HomeFeed(self)
        self._group = MutuallyExclusiveCallbackGroup()  # frames and boxes: one at a time
        torch.set_num_threads(cfg.torch_threads)
        cores = os.cpu_count() or 1
        if cfg.torch_threads >= cores:
            self.get_logger().warn(
                f"torch_threads {cfg.torch_threads} uses all {cores} CPU cores: a tuning "
                "round will compete with inference (keep perception's + the tuner's "
                "torch_threads <= cores)")
        self._qos = image_qos(cfg.image_reliability, cfg.image_queue_depth)
        self._bundle: ModelBundle | None = None
        self._bundle_path = ""
        self._swap_lock = threading.Lock()  # one swap at a time; inference never takes it
        self._shut_down = False
        self.stats = PerceptionStats()  # counters and stream times, for /diagnostics
        self._publishers_checked = -1e9  # perf_counter of the last count_publishers
        self._sub = None
        self._srv = None
        self.out = PerceptionOutputs(self)  # publishers, and whether frames are answered
        Diagnostics(self, "inference", self._diagnose)
        self._watchdog = self.create_timer(1.0, self._guard.wrap(self._check_silence,
                                                                 "watchdog"))
        warn_undeclared(self)
        # A checkpoint that fails to load is not a reason to end the process (a respawn would
        # fail the same way every 2 s): the node stays unconfigured, ERROR on /diagnostics,
        # until the file is fixed and a lifecycle manager (or ros2 lifecycle set) configures it.
        if self.autostart and self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    # --- lifecycle: each transition guarded; a failure is FAILURE (back to the last state) --
    def _transition(self, body, name: str, state: LifecycleState) -> TransitionCallbackReturn:
        def failed(_state: LifecycleState, exc: BaseException) -> TransitionCallbackReturn:
            self.stats.last_error = printable(f"{name}: {type(exc).__name__}: {exc}", 200)
            return TransitionCallbackReturn.FAILURE

        return self._guard.wrap(body, name, failed)(state)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        ret = self._transition(self._configure, "on_configure", state)
        with self.stats.lock:
            self.stats.configure_error = (
                "" if ret == TransitionCallbackReturn.SUCCESS else self.stats.last_error)
        if ret != TransitionCallbackReturn.SUCCESS:
            self.get_logger().error(
                f"configure failed, staying unconfigured: {self.stats.configure_error}; fix it, "
                f"then `ros2 lifecycle set {self.get_fully_qualified_name()} configure`")
        return ret

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition(self._activate, "on_activate", state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition(self._deactivate, "on_deactivate", state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition(self._cleanup, "on_cleanup", state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition(self._shutdown, "on_shutdown", state)

    def _configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the starting model and create the outputs and the swap service."""
        try:  # the last model the tuner made active wins over the base, if it validates
            bundle, path = load_start_model(self._models_dir, self._ckpt, self.arch,
                                            self.get_logger().warn)
            self.feed.load()
        except CheckpointError as exc:
            self.stats.last_error = printable(exc, 300)
            return TransitionCallbackReturn.FAILURE
        if not 0 < bundle.version <= MAX_VERSION:
            self.stats.last_error = (f"checkpoint {path}: version {bundle.version}; a served "
                                     f"model needs 1..{MAX_VERSION}")
            return TransitionCallbackReturn.FAILURE
        self._bundle, self._bundle_path = bundle, path
        self.home.load(self._ckpt, self.arch)  # the base, whatever the tuner made active
        self.out.create()
        self._srv = self.create_service(
            SwapWeights, "~/swap_weights",
            self._guard.wrap(self._on_swap, "swap_weights", self._swap_crashed),
            callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(
            f"configured: {self.arch} v{bundle.version} ({len(bundle.class_names)} classes, "
            f"{bundle.input_size} px) from {path}")
        return super().on_configure(state)

    def _activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start serving: subscribe to the camera and announce the model."""
        ret = super().on_activate(state)
        self.out.serve(True)
        try:  # all or nothing: a failed activation leaves no subscription taking frames
            if self._sub is None:
                self._sub = self.create_subscription(
                    Image, "image", self._guard.wrap(self._on_image, "image"), self._qos,
                    callback_group=self._group)
            self.feed.subscribe(self._guard.wrap(self._on_regions, "regions"), self._group)
            self.memory.subscribe(self._guard.wrap, self._group)
            self.home.subscribe(self._guard.wrap, self._group)
        except Exception:
            self._drop_subscription()
            super().on_deactivate(state)
            raise
        self.stats.restart(self.get_clock().now())
        self.out.announce(self._bundle, self._bundle_path)
        self.get_logger().info(f"active: serving v{self.version}")
        return ret

    def _deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop inference; the model stays loaded for a quick re-activation."""
        self._drop_subscription()
        self.get_logger().info("inactive: not subscribed to images")
        return super().on_deactivate(state)

    def _cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the model, the proposer, waiting frames and the outputs. Under the swap
        lock: a swap running on its own thread finishes first, and none can install a model
        after the release."""
        with self._swap_lock:
            if self._srv is not None:
                self.destroy_service(self._srv)
                self._srv = None
            self.out.release()
            self._bundle = None
            self.home.release()
            self.feed.release()
        return TransitionCallbackReturn.SUCCESS

    def _shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Finalized, from any state: hold nothing (what cleanup releases, the subscriptions
        and the timers); /diagnostics stays, to say so."""
        self._drop_subscription()
        self._cleanup(state)
        self.feed.stop()
        if self._watchdog is not None:
            self.destroy_timer(self._watchdog)
            self._watchdog = None
        self._shut_down = True
        self.get_logger().info("shut down: model, outputs and subscriptions released")
        return TransitionCallbackReturn.SUCCESS

    def _drop_subscription(self) -> None:
        self.out.serve(False)
        self.feed.unsubscribe()
        self.memory.unsubscribe()
        self.home.unsubscribe()
        if self._sub is not None:
            self.destroy_subscription(self._sub)
            self._sub = None

    @property
    def version(self) -> int:
        return self._bundle.version if self._bundle is not None else 0

    @property
    def last_error(self) -> str:
        return self.stats.last_error

    @property
    def frames(self) -> int:
        """Frames answered so far (the demo's progress reads it)."""
        return self.stats.frames

    # --- inference -----------------------------------------------------------------------
    def _on_image(self, msg: Image, info: dict) -> None:
        t0 = time.perf_counter()  # CPU latency of our own work, not stream time
        if not self.out.serving:  # taken before deactivate, cleanup or shutdown removed us
            self._not_serving()
            return
        now = self.get_clock().now()
        sub, one = self._sub, None
        if sub is not None and t0 - self._publishers_checked > 0.5:  # a cheap graph query
            self._publishers_checked = t0
            one = self.count_publishers(sub.topic_name) == 1
        if self.stats.received(now, info, one):
            self.get_logger().info("frames arrive again")
        try:
            rgb = image_to_rgb(msg)
        except ImageConversionError as exc:
            with self.stats.lock:
                self.stats.bad_frames += 1
                self.stats.last_error = printable(exc, 200)
            self.get_logger().warn(f"dropping frame: {printable(exc, 200)}",
                                   throttle_duration_sec=5.0)
            return
        todo = self.feed.frame(msg.header, rgb, now.nanoseconds)
        if todo is not None:
            self._recognise(*todo, t0)

    def _on_regions(self, msg) -> None:
        """An upstream detector's boxes for one frame (``ros/region_feed.py``)."""
        t0 = time.perf_counter()
        todo = self.feed.boxes(msg, self.get_clock().now().nanoseconds)
        if todo is not None:
            self._recognise(*todo, t0)

    def _recognise(self, header, rgb: np.ndarray, regions: list[Region], t0: float) -> None:
        """One batched forward over the frame's regions; one Detection per region."""
        bundle = self._bundle  # one read: a swap during this frame affects the next one
        if bundle is None:
            self._not_serving()
            return
        boxes = [r.box for r in regions]
        crops = [crop(rgb, b, self.feed.crop_context) for b in boxes]
        home = self.home.choose(crops)  # the starting model, back in its own scene
        model = home if home is not None else bundle
        ids, scores = model.predict(crops)
        names, scores = [model.class_names[int(c)] for c in ids], scores.tolist()
        stamp = stamp_ns(header.stamp)
        recalled = self.memory.answer(stamp, crops, boxes, names, scores, model.class_names,
                                      rgb.shape[1], rgb.shape[0])
        if home is not None:
            self.home.answered(stamp, names, recalled)
        out = detection_array(header, model.version, model.class_names, regions, names, scores,
                              recalled)
        if not self.out.answer(out):  # deactivated while we worked
            self._not_serving()
            return
        with self.stats.lock:
            self.stats.frames += 1
            self.stats.forwards += bool(boxes)
            self.stats.regions += len(boxes)
            self.stats.latency.append(time.perf_counter() - t0)
        # Drawing and sending a full-size copy costs as much as inference at 640x480: only
        # while someone (RViz) looks. Not part of the detection latency above.
        ann = self.out.annotated() if self.annotate else None
        if ann is not None:
            labels = [(tuple(r.box), f"{d.class_name} {'=' if d.recalled else ''}{d.score:.2f}")
                      for r, d in zip(regions, out.detections, strict=True)]
            ann.publish(rgb_to_image(
                annotate_regions(rgb, labels, f"{'home ' if home else ''}v{model.version}"),
                header))

    def _not_serving(self) -> None:
        with self.stats.lock:
            self.stats.while_inactive += 1
        self.get_logger().info("a frame arrived while not active: not answered (counted as "
                               "frames_while_inactive)", throttle_duration_sec=10.0)

    def _check_silence(self) -> None:
        """Warn once when an active node has had no frame for ``no_frames_warn_s``; track
        whether lost frames can be counted (one publisher)."""
        sub = self._sub
        if sub is None:
            return
        one = self.count_publishers(sub.topic_name) == 1
        quiet = self.stats.went_silent(self.get_clock().now(), one, self.no_frames_warn_s)
        if quiet is not None:
            self.get_logger().warn(
                f"no frames for {quiet:.1f} s on {sub.topic_name} (is the camera running, "
                "and do its QoS and the transport let its frames through?)")

    # --- hot swap ------------------------------------------------------------------------
    def _on_swap(self, req: SwapWeights.Request, res: SwapWeights.Response
                 ) -> SwapWeights.Response:
        with self._swap_lock:
            current = self._bundle
            if current is None:
                res.success, res.active_version = False, 0
                res.message = "swap refused: perception is not configured"
                return res
            res.active_version = current.version
            path = Path(req.checkpoint_path).expanduser()
            new, why = checked_swap(int(req.version), path, current, self._bundle_path,
                                    self.arch)
            if new is None and why is None:  # a retried call: idempotent
                res.success = True
                res.message = f"already serving v{current.version} from {path}"
                return res
            if why is not None:
                return self._refuse(res, current.version, why)
            new.model.eval()
            # First forward pass of a new model pays one-off allocations; pay them here, on the
            # swap's thread, not on the first camera frame it serves.
            new.predict([np.zeros((new.input_size, new.input_size, 3), np.uint8)])
            self._bundle = new  # the swap: the next frame uses the new model
            self._bundle_path = str(path)
            self.stats.swaps_ok += 1
        self.out.announce(new, str(path))
        res.success, res.active_version = True, new.version
        res.message = (f"swapped v{current.version} -> v{new.version} "
                       f"({len(new.class_names)} classes)")
        self.get_logger().info(res.message)
        return res

    def _refuse(self, res: SwapWeights.Response, active: int, why: str
                ) -> SwapWeights.Response:
        with self.stats.lock:
            self.stats.swaps_failed += 1
            self.stats.last_error = printable(why, 200)
        res.success, res.active_version = False, active
        res.message = f"swap refused, still serving v{active}: {printable(why, 400)}"
        self.get_logger().error(res.message)
        return res

    def _swap_crashed(self, req: SwapWeights.Request, res: SwapWeights.Response,
                      exc: BaseException) -> SwapWeights.Response:
        """A failure no check foresaw (out of memory building the model...): still an answer."""
        return self._refuse(res, self.version, f"internal error {type(exc).__name__}: {exc}")

    def _diagnose(self) -> tuple[bytes, str, dict]:
        state, values = self.stats.report(
            self.get_clock().now(), configured=self._bundle is not None,
            active=self._sub is not None, version=self.version,
            warn_after_s=self.no_frames_warn_s, guard=self._guard,
            extra={**self.feed.values(), **self.memory.values(), **self.home.values()},
            shut_down=self._shut_down)
        level, message = verdict(state)
        if state.lost_now and " lost " in message:
            self.get_logger().warn(
                f"{state.lost_now} of {state.seen_now} camera frames lost before inference in "
                "the last period (best-effort drops: transport settings or a full queue)",
                throttle_duration_sec=10.0)
        return level, message, values


def main(args: list[str] | None = None) -> int:
    """Run the node alone; two executor threads so a swap loads while frames are served."""
    return run_node(PerceptionNode, "perception", args, threads=2)
