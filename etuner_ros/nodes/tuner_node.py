"""tuner_node: decide when to fine-tune, run one round at a time off the executor, hand perception
the result, and remember across restarts what was learned.

The learning is all in :class:`etuner_ros.core.tuner.ContinualTuner` (no ROS); this node feeds it
the way the benchmark (``bench/runner.py``) does (gathered by ``ros/tuner_inputs.py``): new
labelled samples from the store (with the prediction they correct), newly kept unlabelled
frames, every camera frame (the engine embeds every ``drift_every_n``-th for the change detector
and keeps the newest for BatchNorm adaptation), the inference rate from ``detections``, and
``deploy`` once per model version that starts serving. Time is the node's ROS clock
(``use_sim_time`` and bag replay work).

One operation at a time (``ros/tuner_ops.py``): a round or a rollback starts only under the
operations' lock after checking that none runs, so any number of concurrent ``~/force_tune``
calls start at most one round, and every call is answered (busy: ``success=false`` with the
reason). A round runs in a worker thread; an accepted candidate gets the next version of the
:class:`ModelRegistry` (unique across runs), is written atomically, swapped into perception via
``swap_weights`` and recorded as the active pointer, which perception starts from after a
restart (``ros/tuner_serving.py``: also what a refused candidate and a swap with no answer
become). The watermark (highest labelled id a finished round trained on) is persisted with the
sample store's identity, so a restart trains only on newer labels of the same store and
rebuilds replay and validation data from a bounded sample of it (``core/resume.py``).
Parameters: ``ros/tuner_params.py``.
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_srvs.srv import SetBool, Trigger

from etuner_ros.core.checkpoint import CheckpointError, load_checkpoint
from etuner_ros.core.registry import ModelRegistry, RegistryError
from etuner_ros.core.resume import checked_watermark, resume_samples
from etuner_ros.core.store import SampleStore
from etuner_ros.core.text import printable
from etuner_ros.core.tuner import ContinualTuner, TunerConfig
from etuner_ros.msg import DetectionArray, ModelInfo, TunerStatus
from etuner_ros.ros.diagnostics import Diagnostics
from etuner_ros.ros.guard import CallbackGuard
from etuner_ros.ros.params import warn_undeclared
from etuner_ros.ros.qos import image_qos, latched_qos, reliable_qos, service_qos
from etuner_ros.ros.run import run_node
from etuner_ros.ros.tuner_inputs import TunerInputs
from etuner_ros.ros.tuner_ops import TunerOps, answer_failure
from etuner_ros.ros.tuner_params import (
    TRAINING_PARAMETERS,
    declare_policy,
    declare_settings,
    declare_training,
    policy_parameter_names,
)
from etuner_ros.ros.tuner_serving import Announced, Serving, load_announced
from etuner_ros.ros.tuner_status import diagnosis, status_message
from etuner_ros.srv import Rollback, SwapWeights

SERVICE_QUEUE = 1000  # requests a service queues before DDS drops the oldest


class TunerNode(Node):
    """See the module docstring."""

    #: declared with the core's defaults; config/etuner.yaml names them in a comment only
    TRAINING_PARAMETERS = TRAINING_PARAMETERS + policy_parameter_names()

    def __init__(self, **kwargs) -> None:
        super().__init__("tuner", **kwargs)
        self.settings = p = declare_settings(self)
        torch.set_num_threads(p.torch_threads)
        self.policy_name = p.policy
        self.policy = declare_policy(self, self.policy_name)
        self.config = TunerConfig(train=declare_training(self), drift_every=p.drift_every_n)

        self.registry = ModelRegistry(p.data_dir / "models", keep_last=p.keep_checkpoints)
        for name in self.registry.removed_tmp:
            self.get_logger().warn(f"removed {printable(name)} left by an interrupted write")
        self.store = SampleStore(p.data_dir / p.store_file)
        self._watermark, why = checked_watermark(self.registry.read_tuner_state(),
                                                 self.store.store_id,
                                                 self.store.max_labelled_id())
        if why:
            self.get_logger().warn(why)
        self.guard = CallbackGuard(self)
        self.engine: ContinualTuner | None = None
        self.ops = TunerOps(self.get_logger())  # state, reason, the operation running
        self.paused = False
        self.rounds_done = 0
        self.last_duration = 0.0
        self.last_val = float("nan")
        self.counts = {"frames": 0, "frames_dropped": 0}
        self.inputs = TunerInputs(self.store, self._watermark["trained_through"],
                                  self._watermark["unlabelled_through"],
                                  self.config.unlabelled_capacity, self.guard, self.get_logger(),
                                  self.settings.crop_context)

        g = self.guard.wrap
        services = ReentrantCallbackGroup()
        self.status_pub = self.create_publisher(TunerStatus, "~/status", reliable_qos())
        self.create_subscription(ModelInfo, "model_info", g(self._on_model_info, "model_info"),
                                 latched_qos())
        self.create_subscription(DetectionArray, "detections",
                                 g(self._on_detections, "detections"), reliable_qos(50))
        self.create_subscription(Image, "image", g(self._on_image, "image"),
                                 image_qos(p.image_reliability, 2))
        self.serving = Serving(self.registry, self.ops,
                               self.create_client(SwapWeights, p.swap_service,
                                                  callback_group=ReentrantCallbackGroup()),
                               p.swap_timeout_s, self.get_logger())
        q = service_qos(SERVICE_QUEUE)  # keep every request (see service_qos)
        for srv, name, callback in ((Trigger, "force_tune", self._on_force),
                                    (SetBool, "pause", self._on_pause),
                                    (Rollback, "rollback", self._on_rollback)):
            self.create_service(srv, f"~/{name}", g(callback, name, answer_failure),
                                qos_profile=q, callback_group=services)
        self.create_timer(p.poll_period_s, g(self._tick, "tick"),
                          callback_group=MutuallyExclusiveCallbackGroup())
        Diagnostics(self, "tuning", self._diagnose)
        self.get_logger().info(
            f"policy '{self.policy_name}' {self.policy.describe()}, store "
            f"{p.data_dir / p.store_file}, resuming after labelled id "
            f"{self._watermark['trained_through']}")
        warn_undeclared(self)

    def _now(self) -> float:
        """Seconds on the node's clock (simulated time under use_sim_time)."""
        return self.get_clock().now().nanoseconds * 1e-9

    # --- inputs --------------------------------------------------------------------------
    @property
    def active_version(self) -> int:
        """The version perception serves, as far as the tuner knows."""
        return self.serving.active_version

    def _on_model_info(self, info: ModelInfo) -> None:
        self._hear(Announced(int(info.version), str(info.checkpoint_path),
                             str(info.architecture)))

    def _settle(self) -> None:
        """After an operation: a ``model_info`` it heard (and left to it) but did not deploy,
        e.g. one that came between a swap's timeout and the operation's end, is perception's
        truth, and latched: it will not come again."""
        if self.serving.heard is not None and self.engine is not None:
            self._hear(self.serving.heard)

    def _hear(self, heard: Announced) -> None:
        with self.ops.lock:
            self.serving.heard = heard  # kept even while a swap of it runs (tuner_serving.py)
            if self.engine is not None and heard.version in (self.active_version,
                                                             self.ops.swapping):
                return  # ours (the swap answer deploys it) or already deployed
        try:
            bundle = load_announced(heard)
        except (CheckpointError, OSError) as exc:  # latched: it will not come again by itself
            with self.ops.lock:
                self.ops.set_error(f"cannot load v{heard.version} that perception announced "
                                   f"({printable(heard.path, 120)}): {printable(exc, 200)}")
            return
        with self.ops.lock:
            if self.engine is None:
                self.engine = ContinualTuner(bundle, self.policy, self.config)
                self.serving.starting(heard)
                self._resume()
                self.ops.state, self.ops.reason = TunerStatus.STATE_IDLE, "ready"
                self.get_logger().info(f"starting from v{heard.version} ({heard.architecture})")
            elif heard.version != self.ops.swapping:
                self.serving.adopt(self.engine, bundle, heard.version, heard.path)

    def _resume(self) -> None:
        """Rebuild replay and validation from the store below the persisted watermark (bounded
        samples), so the first round after a restart trains only on newer labels."""
        w = self._watermark["trained_through"]
        if w <= 0 or self.engine is None:
            return
        recent, replay, seen = resume_samples(self.store, w, self.config.train,
                                              np.random.default_rng())
        self.engine.restore(recent + replay, seen)
        self.get_logger().info(f"resumed: {len(replay)} replay + {len(recent)} validation "
                               f"samples from the store, training after id {w}")

    def _on_detections(self, msg: DetectionArray) -> None:
        self.inputs.add_detections(msg)

    def _on_image(self, msg: Image) -> None:
        """Buffered for the tick; a slow tick or a large camera drops the oldest, counted."""
        self.counts["frames"] += 1
        self.counts["frames_dropped"] += self.inputs.add_frame(msg)
        self.inputs.frame_seen(self._now())

    # --- the loop ------------------------------------------------------------------------
    def _tick(self) -> None:
        ops = self.ops
        with ops.lock:
            if self.engine is not None:
                now = self._now()
                self.inputs.feed(self.engine, now)
                if ops.name is not None:
                    pass  # the running operation sets the state (pausing lets it finish)
                elif self.paused:
                    ops.rest(TunerStatus.STATE_PAUSED)
                else:
                    decision = self.engine.decide(now)
                    if decision.tune:
                        ops.reason = decision.reason
                        self._start_round(decision)
                    else:
                        ops.rest(TunerStatus.STATE_IDLE, decision.reason)
        self._publish_status()

    def _start_round(self, decision) -> None:
        """Caller holds the operations' lock and checked that none runs."""
        self.ops.start(f"round {self.rounds_done + 1}")
        self.ops.state = TunerStatus.STATE_TUNING
        self.get_logger().info(f"round {self.rounds_done + 1} starting: {decision.reason}")
        fed = None if decision.bn_only else self.inputs.watermark()
        threading.Thread(target=self._run_round, args=(fed,), name="tuning-round",
                         daemon=True).start()

    def _run_round(self, fed: tuple[int, int] | None) -> None:
        """Worker thread: train, validate, save, swap. Never raises."""
        engine, ops = self.engine, self.ops
        assert engine is not None
        try:
            # the version is fixed before the round: the engine keys its bookkeeping by it
            version = self.registry.next_version(floor=self.active_version)
            result = engine.run_round(self._now(), progress=self._progress, version=version)
            self.rounds_done += 1
            self.last_duration, self.last_val = result.duration_s, result.val_accuracy
            if fed is not None:  # its labels are in the engine's replay now: never again new
                self.registry.write_tuner_state(*fed, self.store.store_id)
                self._watermark["trained_through"] = fed[0]
            ops.state = TunerStatus.STATE_VALIDATING
            if not result.accepted:
                ops.reason = (f"candidate rejected: val {result.val_accuracy:.3f} < "
                              f"{result.baseline_val_accuracy:.3f}")
                self.get_logger().warn(ops.reason)
                ops.state = TunerStatus.STATE_IDLE
                return
            cand = result.candidate
            path = self.registry.save(cand, extra={"policy": self.policy_name,
                                                   "val_accuracy": result.val_accuracy})
            ops.state = TunerStatus.STATE_SWAPPING
            ok, why, _ = self.serving.serve(engine, cand, path, "swap answer", candidate=True)
            if not ok:
                ops.set_error(f"swap to v{cand.version} failed: {why}", cand.version)
                return
            ops.state = TunerStatus.STATE_IDLE
            self.get_logger().info(
                f"round {self.rounds_done} done in {result.duration_s:.1f} s: swapped to "
                f"v{cand.version} (val {result.val_accuracy:.3f} vs "
                f"{result.baseline_val_accuracy:.3f}, {result.n_labels} labels, "
                f"{result.n_pseudo} pseudo, frozen {list(result.frozen_groups)})")
        except Exception as exc:  # a failed round must leave the node serving and answering
            self.guard.record("round", exc)
            ops.set_error(f"round failed: {type(exc).__name__}: {printable(exc, 200)}")
        finally:
            ops.finish()
            self._settle()

    def _progress(self, line: str) -> None:
        self.get_logger().info(f"round {self.rounds_done + 1}: {line}",
                               throttle_duration_sec=2.0)

    # --- services ------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A round or a rollback is running (one at a time)."""
        return self.ops.busy

    def _on_force(self, _req: Trigger.Request, res: Trigger.Response) -> Trigger.Response:
        ops = self.ops
        with ops.lock:
            ops.counts["force_calls"] += 1
            engine = self.engine
            res.success = False
            busy = ops.busy_message()
            if self.paused:
                res.message = "refused: tuning is paused (call ~/pause false)"
            elif engine is None:
                res.message = "refused: no base model yet (no model_info)"
            elif busy is not None:
                res.message = busy
            else:
                now = self._now()
                self.inputs.feed(engine, now)
                decision = engine.decide(now, force=True)
                if not decision.tune:
                    res.message = f"refused: {decision.reason}"
                else:
                    ops.reason = decision.reason
                    self._start_round(decision)
                    res.success, res.message = True, f"{ops.name} started"
            if not res.success:
                ops.counts["force_refused"] += 1
        self.get_logger().info(f"force_tune: {res.message}")
        return res

    def _on_pause(self, req: SetBool.Request, res: SetBool.Response) -> SetBool.Response:
        with self.ops.lock:
            self.paused = bool(req.data)
            running = " (the running round finishes)" if self.ops.name and self.paused else ""
            res.success = True
            res.message = ("paused: no new round starts" + running) if self.paused \
                else "resumed"
            if not self.paused and self.ops.state == TunerStatus.STATE_PAUSED:
                self.ops.rest(TunerStatus.STATE_IDLE)
        self.get_logger().info(f"pause: {res.message}")
        return res

    def _on_rollback(self, req: Rollback.Request, res: Rollback.Response
                     ) -> Rollback.Response:
        """Serve an earlier kept version again, through perception's validated swap."""
        ops = self.ops
        with ops.lock:
            res.success, res.active_version = False, self.active_version
            busy, started = ops.busy_message(), False
            if self.engine is None:
                res.message = "refused: no model serving yet (no model_info)"
            elif busy is not None:
                res.message = busy
            else:
                try:
                    version, path = self.registry.rollback_target(int(req.version),
                                                                  self.active_version)
                except RegistryError as exc:
                    res.message = f"refused: {exc}"
                else:
                    ops.start(f"rollback to v{version}")
                    started = True
            if not started:  # refused (busy: another round or rollback runs; leave it alone)
                ops.counts["rollbacks_refused"] += 1
                self.get_logger().warn(f"rollback: {res.message}")
                return res
        try:
            bundle = load_checkpoint(path)
            bundle.version = version
            ok, why, active = self.serving.serve(self.engine, bundle, path, "rollback")
            if ok:
                ops.counts["rollbacks"] += 1
                res.success, res.active_version = True, version
                res.message = f"rolled back to v{version}: {why}"
            else:
                ops.counts["rollbacks_refused"] += 1
                res.active_version = active or self.active_version
                res.message = f"rollback to v{version} refused by perception: {why}"
        except (CheckpointError, OSError) as exc:
            ops.counts["rollbacks_refused"] += 1
            res.message = f"rollback to v{version} refused: {printable(exc, 300)}"
        finally:
            ops.finish()
            self._settle()
        self.get_logger().info(f"rollback: {res.message}")
        return res

    # --- outputs -------------------------------------------------------------------------
    def status_dict(self) -> dict:
        s, ops = (self.engine.status() if self.engine is not None else {}), self.ops
        return {**s, "changes_detected": self.inputs.changes_detected,
                "max_change_score": self.inputs.max_change_score, "state": ops.state,
                "reason": ops.reason, "paused": self.paused, "operation": ops.name or "",
                "active_version": self.active_version, "rounds_done": self.rounds_done,
                "trained_through": self._watermark["trained_through"],
                "last_round_duration": self.last_duration, "last_val_accuracy": self.last_val,
                "last_error": ops.last_error, **ops.counts, **self.counts,
                **self.serving.counts,
                **self.guard.values()}

    def _publish_status(self) -> None:
        msg = status_message(self.status_dict(), self.policy_name, self.registry.kept())
        msg.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(msg)

    def _diagnose(self) -> tuple[bytes, str, dict]:
        s = self.status_dict()
        return diagnosis(s, self.inputs.seconds_since_frame(self._now()),
                         ready=self.engine is not None,
                         no_frames_warn_s=self.settings.no_frames_warn_s,
                         failures=self.guard.total())

    def destroy_node(self) -> None:
        self.store.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the node alone; services answer on other executor threads during a swap wait."""
    return run_node(TunerNode, "tuner", args, threads=3)
