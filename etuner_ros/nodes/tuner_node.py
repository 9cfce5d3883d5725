"""tuner_node: decide when to fine-tune, run the round off the executor, hand perception the result.

The learning is all in :class:`etuner_ros.core.tuner.ContinualTuner` (no ROS); this node only
feeds it what the robot sees (new labelled and unlabelled samples from the store, the inference
rate from ``detections``, every ``drift_every_n``-th camera frame for the change detector), asks
the policy each ``poll_period_s``, and runs a round in a worker thread so ``~/force_tune``,
``~/pause`` and ``~/status`` keep answering during it. A candidate is written as a versioned
checkpoint atomically and handed to perception's ``swap_weights`` only if it validated at least
as well as the serving model. The base model is whatever perception announces on ``model_info``
(latched), so both always start from the same weights.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

import torch
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_srvs.srv import SetBool, Trigger

from etuner_ros.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from etuner_ros.core.policies import POLICY_NAMES
from etuner_ros.core.store import SampleStore
from etuner_ros.core.trainer import TrainConfig
from etuner_ros.core.tuner import ContinualTuner, TunerConfig
from etuner_ros.msg import DetectionArray, ModelInfo, TunerStatus
from etuner_ros.ros.diagnostics import ERROR, OK, WARN, Diagnostics
from etuner_ros.ros.image import ImageConversionError, image_to_rgb
from etuner_ros.ros.params import declare
from etuner_ros.ros.qos import RELIABILITY_CHOICES, image_qos, latched_qos, reliable_qos
from etuner_ros.ros.run import run_node
from etuner_ros.srv import SwapWeights


class TunerNode(Node):
    """See the module docstring."""

    #: declared with defaults from the core's TrainConfig, not listed in config/etuner.yaml
    TRAINING_PARAMETERS = ("epochs", "learning_rate", "replay_size", "holdout_fraction")

    def __init__(self, **kwargs) -> None:
        super().__init__("tuner", **kwargs)
        data_dir = Path(declare(self, "data_dir", "~/.local/share/etuner_ros",
                                "directory of the sample store and checkpoints",
                                read_only=True)).expanduser()
        store_file = declare(self, "store_file", "samples.db",
                             "SQLite sample store written by label_collector, relative to "
                             "data_dir", read_only=True)
        self.policy_name = declare(self, "policy", "immediate", "when and how to fine-tune",
                                   choices=POLICY_NAMES, read_only=True)
        period = declare(self, "poll_period_s", 1.0, "how often new samples are read and the "
                         "policy asked", minimum=0.05, maximum=3600.0, read_only=True)
        swap_service = declare(self, "swap_service", "perception/swap_weights",
                               "perception's SwapWeights service (relative names remap)",
                               read_only=True)
        self.swap_timeout = declare(self, "swap_timeout_s", 30.0,
                                    "how long to wait for perception to answer a swap",
                                    minimum=1.0, maximum=600.0)
        threads = declare(self, "torch_threads", 1, "CPU threads torch may use for tuning",
                          minimum=1, maximum=64, read_only=True)
        torch.set_num_threads(int(threads))
        self.config = self._training_config()
        self.drift_every = declare(self, "drift_every_n", 2,
                                   "feed every n-th camera frame to the scenario-change "
                                   "detector (0: off)", minimum=0, maximum=1000)
        reliability = declare(self, "image_reliability", "best_effort",
                              "QoS reliability of the image subscription",
                              choices=RELIABILITY_CHOICES, read_only=True)

        self.models_dir = data_dir / "models"
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.store = SampleStore(data_dir / store_file)
        self.engine: ContinualTuner | None = None
        self.state = TunerStatus.STATE_WAITING
        self.reason = "waiting for perception's model_info"
        self.paused = False
        self.active_version = 0
        self.rounds_done = 0
        self.last_duration = 0.0
        self.last_val = float("nan")
        self.last_error = ""
        self._round: threading.Thread | None = None
        self._round_started = 0.0
        self._last_labelled = 0
        self._last_unlabelled = 0
        self._detections = 0
        self._frames_seen = 0
        self._drift_frames: deque = deque(maxlen=64)  # bounded: a slow tick drops the oldest
        self.changes_detected = 0
        self.max_change_score = 0.0
        self._rate_t0 = time.monotonic()
        self._lock = threading.Lock()

        services = ReentrantCallbackGroup()
        self.status_pub = self.create_publisher(TunerStatus, "~/status", reliable_qos())
        self.create_subscription(ModelInfo, "model_info", self._on_model_info, latched_qos())
        self.create_subscription(DetectionArray, "detections", self._on_detections,
                                 reliable_qos(50))
        self.create_subscription(Image, "image", self._on_image, image_qos(reliability, 2))
        self.swap_client = self.create_client(SwapWeights, swap_service,
                                              callback_group=ReentrantCallbackGroup())
        self.create_service(Trigger, "~/force_tune", self._on_force, callback_group=services)
        self.create_service(SetBool, "~/pause", self._on_pause, callback_group=services)
        self.create_timer(float(period), self._tick,
                          callback_group=MutuallyExclusiveCallbackGroup())
        Diagnostics(self, "tuning", self._diagnose)
        self.get_logger().info(f"policy '{self.policy_name}', store {data_dir / store_file}")

    def _training_config(self) -> TunerConfig:
        """Training knobs a robot integrator may need; defaults come from the core's TrainConfig
        (one source of truth, shared with the benchmark), so config/etuner.yaml omits them."""
        d = TrainConfig()
        train = replace(
            d,
            epochs=declare(self, "epochs", d.epochs, "max passes over a round's data",
                           minimum=1, maximum=1000, read_only=True),
            lr=declare(self, "learning_rate", d.lr, "optimiser learning rate", minimum=1e-8,
                       maximum=1.0, read_only=True),
            replay_size=declare(self, "replay_size", d.replay_size,
                                "earlier samples re-trained each round (against forgetting)",
                                minimum=0, maximum=100000, read_only=True),
            holdout_fraction=declare(self, "holdout_fraction", d.holdout_fraction,
                                     "share of labels kept out to validate candidates; 0 "
                                     "accepts every candidate", minimum=0.0, maximum=0.9,
                                     read_only=True))
        # The node already subsamples the camera (drift_every_n): the engine embeds every frame
        # it is given.
        return TunerConfig(train=train, drift_every=1)

    # --- inputs --------------------------------------------------------------------------
    def _on_model_info(self, info: ModelInfo) -> None:
        if self.engine is not None and info.version == self.active_version:
            return
        try:
            bundle = load_checkpoint(Path(info.checkpoint_path), expected_arch=info.architecture)
        except CheckpointError as exc:
            self._set_error(f"cannot load perception's model v{info.version}: {exc}")
            return
        bundle.version = int(info.version)
        with self._lock:
            if self.engine is None:
                self.engine = ContinualTuner(bundle, self.policy_name, self.config)
                self.state, self.reason = TunerStatus.STATE_IDLE, "ready"
                self.get_logger().info(f"base model v{info.version} ({info.architecture})")
            else:
                self.engine.deploy(bundle)
            self.active_version = int(info.version)

    def _on_detections(self, _msg: DetectionArray) -> None:
        self._detections += 1

    def _on_image(self, msg: Image) -> None:
        """Subsample the camera for the scenario-change detector (a change means tune soon)."""
        self._frames_seen += 1
        if self.drift_every and self._frames_seen % self.drift_every == 0:
            try:
                self._drift_frames.append(image_to_rgb(msg))
            except ImageConversionError as exc:
                self.get_logger().warn(f"frame not used for drift: {exc}",
                                       throttle_duration_sec=10.0)

    # --- the loop ------------------------------------------------------------------------
    def _tick(self) -> None:
        engine = self.engine
        if engine is not None:
            now = time.monotonic()
            self._feed(engine, now)
            if self.paused:
                self.state = TunerStatus.STATE_PAUSED
            elif not self._busy():
                decision = engine.decide(now)
                self.reason = decision.reason
                if decision.tune:
                    self._start_round(decision.reason)
                else:
                    self.state = TunerStatus.STATE_IDLE
        self._publish_status()

    def _feed(self, engine: ContinualTuner, now: float) -> None:
        """Hand the engine what arrived since the last tick."""
        labelled = self.store.labelled_since(self._last_labelled)
        if labelled:
            self._last_labelled = labelled[-1].id
            engine.observe_labels(labelled, now)
        unlabelled = self.store.unlabelled_since(self._last_unlabelled)
        if unlabelled:
            self._last_unlabelled = unlabelled[-1].id
            engine.observe_unlabelled(unlabelled)
        frames = [self._drift_frames.popleft() for _ in range(len(self._drift_frames))]
        if frames:
            was_changed = engine.status().get("change_detected", False)
            score = engine.observe_frames(frames, now)
            self.max_change_score = max(self.max_change_score, float(score))
            if engine.status().get("change_detected", False) and not was_changed:
                self.changes_detected += 1
                self.get_logger().info(f"scenario change detected (score {score:.2f})")
        dt = now - self._rate_t0
        if dt >= 1.0:
            engine.observe_inference_rate(self._detections / dt)
            self._detections, self._rate_t0 = 0, now

    def _busy(self) -> bool:
        return self._round is not None and self._round.is_alive()

    def _start_round(self, why: str) -> None:
        self.state = TunerStatus.STATE_TUNING
        self._round_started = time.monotonic()
        self.get_logger().info(f"round {self.rounds_done + 1} starting: {why}")
        self._round = threading.Thread(target=self._run_round, name="tuning-round", daemon=True)
        self._round.start()

    def _run_round(self) -> None:
        """Worker thread: train, validate, save, swap. Never raises into the executor."""
        engine = self.engine
        assert engine is not None
        try:
            result = engine.run_round(time.monotonic(), progress=self._progress)
            self.rounds_done += 1
            self.last_duration, self.last_val = result.duration_s, result.val_accuracy
            self.state = TunerStatus.STATE_VALIDATING
            if not result.accepted:
                self.reason = (f"candidate v{result.candidate.version} rejected: val "
                               f"{result.val_accuracy:.3f} < {result.baseline_val_accuracy:.3f}")
                self.get_logger().warn(self.reason)
                self.state = TunerStatus.STATE_IDLE
                return
            path = save_checkpoint(
                self.models_dir / f"{result.candidate.arch}_v{result.candidate.version:04d}.pt",
                result.candidate, extra={"policy": self.policy_name,
                                         "val_accuracy": result.val_accuracy})
            self.state = TunerStatus.STATE_SWAPPING
            self._swap(path, result)
        except Exception as exc:  # a failed round must leave the node serving and answering
            self._set_error(f"round failed: {type(exc).__name__}: {exc}")

    def _swap(self, path: Path, result) -> None:
        version = result.candidate.version
        if not self.swap_client.wait_for_service(timeout_sec=self.swap_timeout):
            self._set_error(f"swap service {self.swap_client.srv_name} not available; "
                            f"v{version} kept at {path}")
            return
        req = SwapWeights.Request(checkpoint_path=str(path), version=version)
        future = self.swap_client.call_async(req)
        deadline = time.monotonic() + self.swap_timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        res = future.result() if future.done() else None
        if res is None or not res.success:
            why = res.message if res else f"no answer in {self.swap_timeout:.0f} s"
            self._set_error(f"swap to v{version} failed: {why}")
            return
        with self._lock:
            self.engine.deploy(result.candidate)
            self.active_version = res.active_version
        self.state = TunerStatus.STATE_IDLE
        self.get_logger().info(
            f"round {self.rounds_done} done in {result.duration_s:.1f} s: swapped to "
            f"v{res.active_version} (val {result.val_accuracy:.3f} vs "
            f"{result.baseline_val_accuracy:.3f}, {result.n_labels} labels, "
            f"{result.n_pseudo} pseudo, frozen {list(result.frozen_groups)})")

    def _progress(self, line: str) -> None:
        self.get_logger().info(f"round {self.rounds_done + 1}: {line}",
                               throttle_duration_sec=2.0)

    def _set_error(self, why: str) -> None:
        self.state, self.last_error, self.reason = TunerStatus.STATE_ERROR, why, why
        self.get_logger().error(why)

    # --- services ------------------------------------------------------------------------
    def _on_force(self, _req: Trigger.Request, res: Trigger.Response) -> Trigger.Response:
        engine = self.engine
        if self.paused:
            res.success, res.message = False, "refused: tuning is paused (call ~/pause false)"
        elif engine is None:
            res.success, res.message = False, "refused: no base model yet (no model_info)"
        elif self._busy():
            res.success = False
            res.message = (f"refused: a round is already running "
                           f"({time.monotonic() - self._round_started:.0f} s)")
        else:
            self._feed(engine, time.monotonic())
            decision = engine.decide(time.monotonic(), force=True)
            if not decision.tune:
                res.success, res.message = False, f"refused: {decision.reason}"
            else:
                self.reason = decision.reason
                self._start_round(decision.reason)
                res.success, res.message = True, f"round {self.rounds_done + 1} started"
        self.get_logger().info(f"force_tune: {res.message}")
        return res

    def _on_pause(self, req: SetBool.Request, res: SetBool.Response) -> SetBool.Response:
        self.paused = bool(req.data)
        running = " (the running round finishes)" if self._busy() and self.paused else ""
        res.success = True
        res.message = ("paused: no new round starts" + running) if self.paused else "resumed"
        if not self.paused and self.state == TunerStatus.STATE_PAUSED:
            self.state = TunerStatus.STATE_IDLE
        self.get_logger().info(f"pause: {res.message}")
        return res

    # --- outputs -------------------------------------------------------------------------
    def status_dict(self) -> dict:
        s = self.engine.status() if self.engine is not None else {}
        return {**s, "changes_detected": self.changes_detected,
                "max_change_score": self.max_change_score, "state": self.state,
                "reason": self.reason, "paused": self.paused,
                "active_version": self.active_version, "rounds_done": self.rounds_done,
                "last_round_duration": self.last_duration, "last_val_accuracy": self.last_val,
                "last_error": self.last_error}

    def _publish_status(self) -> None:
        s = self.status_dict()
        msg = TunerStatus(state=self.state, policy=self.policy_name,
                          pending_samples=int(s.get("pending", 0)),
                          rounds_done=self.rounds_done,
                          rounds_deferred=int(s.get("rounds_deferred", 0)),
                          rounds_merged=int(s.get("rounds_merged", 0)),
                          last_round_duration=float(self.last_duration),
                          last_val_accuracy=float(self.last_val),
                          active_version=int(self.active_version),
                          last_decision_reason=self.reason,
                          frozen_groups=[str(g) for g in s.get("frozen_groups", [])],
                          change_score=float(s.get("change_score", 0.0)),
                          change_detected=bool(s.get("change_detected", False)),
                          recent_accuracy=_float(s.get("recent_accuracy")))
        msg.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(msg)

    def _diagnose(self) -> tuple[bytes, str, dict]:
        s = self.status_dict()
        values = {k: v for k, v in s.items() if not isinstance(v, (dict, list))}
        if self.state == TunerStatus.STATE_ERROR:
            return ERROR, self.last_error, values
        if self.engine is None:
            return WARN, self.reason, values
        return OK, f"{self.state}: {self.reason}", values

    def destroy_node(self) -> None:
        self.store.close()
        super().destroy_node()


def _float(v) -> float:
    return float("nan") if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def main(args: list[str] | None = None) -> int:
    """Run the node alone; services answer on other executor threads during a swap wait."""
    return run_node(TunerNode, "tuner", args, threads=3)
