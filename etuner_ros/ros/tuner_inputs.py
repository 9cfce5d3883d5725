"""What the tuner node hands its engine on every tick, gathered between ticks.

The engine is fed the way the benchmark (``bench/runner.py``) feeds it: new labelled samples
from the store (with the prediction they correct), newly kept unlabelled frames, every camera
frame, and the inference rate from ``detections``. Camera messages arrive on the executor at
camera rate; converting them there would block the image callback, so they wait here as
messages (the newest at most ``FRAME_BUFFER_FRAMES`` and ``FRAME_BUFFER_BYTES``, oldest dropped,
counted by the caller) and the tick converts them. The store is read past two watermarks (the
highest labelled and unlabelled ids handed over) so every row reaches the engine once; the
labelled one is what a finished round persists.
"""

from __future__ import annotations

import threading
from collections import deque

from rclpy.impl.rcutils_logger import RcutilsLogger
from sensor_msgs.msg import Image

from etuner_ros.core.store import SampleStore
from etuner_ros.core.tuner import ContinualTuner
from etuner_ros.ros.guard import CallbackGuard
from etuner_ros.ros.image import image_to_rgb

FRAME_BUFFER_FRAMES = 64  # camera frames held between ticks at most
FRAME_BUFFER_BYTES = 32 << 20  # camera frames held between ticks (1280x720 rgb8: 11 frames)


class TunerInputs:
    """Frames, detections and store watermarks between ticks; :meth:`feed` hands them over."""

    def __init__(self, store: SampleStore, labelled_through: int, unlabelled_through: int,
                 unlabelled_capacity: int, guard: CallbackGuard, logger: RcutilsLogger) -> None:
        self.store = store
        self.last_labelled = labelled_through
        self.last_unlabelled = unlabelled_through
        self._unlabelled_capacity = unlabelled_capacity
        self._guard = guard
        self._log = logger
        self._frames_lock = threading.Lock()  # the camera buffer (image callback vs tick)
        self._frames: deque[Image] = deque()  # bounded in count and bytes: oldest dropped
        self._frame_bytes = 0
        self._detections = 0
        # None until the clock runs (under use_sim_time it reads 0 until /clock arrives, then
        # jumps): silence and rates are measured from the first time seen on a running clock.
        self._last_frame: float | None = None
        self._rate_t0: float | None = None
        self.changes_detected = 0
        self.max_change_score = 0.0

    def watermark(self) -> tuple[int, int]:
        """(labelled, unlabelled) ids handed to the engine so far."""
        return self.last_labelled, self.last_unlabelled

    def add_frame(self, msg: Image) -> int:
        """Keep the newest frames (at most ``FRAME_BUFFER_FRAMES`` and ``FRAME_BUFFER_BYTES``);
        the tick converts them. Returns how many of the oldest this one pushed out."""
        dropped = 0
        with self._frames_lock:
            self._frames.append(msg)
            self._frame_bytes += len(msg.data)
            while len(self._frames) > 1 and (len(self._frames) > FRAME_BUFFER_FRAMES or
                                             self._frame_bytes > FRAME_BUFFER_BYTES):
                self._frame_bytes -= len(self._frames.popleft().data)
                dropped += 1
        return dropped

    def frame_seen(self, now: float) -> None:
        """A frame arrived at ``now`` (ROS time; ignored while the clock does not run)."""
        if now > 0:
            self._last_frame = now

    def seconds_since_frame(self, now: float) -> float:
        """Silence of the camera in ROS time, 0 until the clock runs."""
        if now > 0 and (self._last_frame is None or now < self._last_frame):
            self._last_frame = now  # start watching (or the clock went back)
        return 0.0 if self._last_frame is None else now - self._last_frame

    def add_detections(self) -> None:
        """One ``detections`` message: one inference of the serving model."""
        self._detections += 1

    def feed(self, engine: ContinualTuner, now: float) -> None:
        """Hand the engine what arrived since the last call (the caller serialises calls)."""
        labelled = self.store.labelled_since(self.last_labelled)
        if labelled:
            self.last_labelled = labelled[-1].id
            engine.observe_labels(labelled, now)
        unlabelled = self.store.unlabelled_since(self.last_unlabelled)
        if unlabelled:
            self.last_unlabelled = unlabelled[-1].id
            engine.observe_unlabelled(unlabelled[-self._unlabelled_capacity:])
        with self._frames_lock:
            msgs, self._frames, self._frame_bytes = list(self._frames), deque(), 0
        frames = []
        for m in msgs:
            try:
                frames.append(image_to_rgb(m))
            except Exception as exc:  # a bad frame is counted, never fatal
                self._guard.record("image_convert", exc)
        if frames:
            was_changed = engine.status().get("change_detected", False)
            score = engine.observe_frames(frames, now)
            self.max_change_score = max(self.max_change_score, float(score))
            if engine.status().get("change_detected", False) and not was_changed:
                self.changes_detected += 1
                self._log.info(f"scenario change detected (score {score:.2f})")
        if now <= 0:
            return  # the clock is not running yet (use_sim_time before the first /clock)
        dt = now - self._rate_t0 if self._rate_t0 is not None else -1.0
        if dt >= 1.0:
            engine.observe_inference_rate(self._detections / dt)
            self._detections, self._rate_t0 = 0, now
        elif dt < 0:  # first tick, or the clock jumped back (bag replay restarted)
            self._detections, self._rate_t0 = 0, now
