"""What the tuner node hands its engine on every tick, gathered between ticks.

The engine is fed the way the benchmark (``bench/runner.py``) feeds it: new labelled samples
from the store (with the prediction they correct), newly kept unlabelled frames, every camera
frame, and the inference rate from ``detections``. A camera frame is handed over as what
perception recognised in it: the crops of the boxes in ``detections`` of the same stamp, cut as
perception cuts them (``crop_context``), so BatchNorm adaptation and the change detector see
the images the served model classifies (region streams in the benchmark feed crops too); with
one whole-frame box, or no ``detections`` for the frame, that is the whole frame. Once a
detection with a box smaller than its frame has been seen, a frame whose detections are not
there yet waits one tick for them (perception answers in tens of milliseconds; a tick is
``poll_period_s``) before it goes in whole. Camera messages arrive on the executor at
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

from etuner_ros.core.regions import CROP_CONTEXT, Box, served_views, whole_frame
from etuner_ros.core.silence import Silence
from etuner_ros.core.store import SampleStore
from etuner_ros.core.tuner import ContinualTuner
from etuner_ros.msg import DetectionArray
from etuner_ros.ros.guard import CallbackGuard
from etuner_ros.ros.image import image_to_rgb
from etuner_ros.ros.stamps import stamp_ns

FRAME_BUFFER_FRAMES = 64  # camera frames held between ticks at most
FRAME_BUFFER_BYTES = 32 << 20  # camera frames held between ticks (1280x720 rgb8: 11 frames)
REGION_STAMPS = 256  # frames whose detections' boxes are remembered until their frame is fed


class TunerInputs:
    """Frames, detections and store watermarks between ticks; :meth:`feed` hands them over."""

    def __init__(self, store: SampleStore, labelled_through: int, unlabelled_through: int,
                 unlabelled_capacity: int, guard: CallbackGuard, logger: RcutilsLogger,
                 crop_context: float = CROP_CONTEXT) -> None:
        self.store = store
        self.crop_context = float(crop_context)
        self._boxes: dict[int, list[Box]] = {}  # stamp -> detections' boxes (insertion order)
        self._regions_seen = False  # a box smaller than its frame arrived: frames wait for boxes
        self._waiting: list[Image] = []  # frames of the last tick whose boxes had not arrived
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
        self._silence = Silence()
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
        self._silence.seen(now)

    def seconds_since_frame(self, now: float) -> float:
        """Silence of the camera in ROS time, 0 until the clock runs (``core/silence.py``)."""
        return self._silence.seconds(now)

    def add_detections(self, msg: DetectionArray | None = None) -> None:
        """One ``detections`` message: one inference of the serving model, and the boxes it
        recognised in the frame of its stamp."""
        self._detections += 1
        if msg is None:
            return
        boxes = [Box(int(d.bbox.x_offset), int(d.bbox.y_offset), int(d.bbox.width),
                     int(d.bbox.height)) for d in msg.detections]
        with self._frames_lock:
            self._boxes[stamp_ns(msg.header.stamp)] = boxes
            while len(self._boxes) > REGION_STAMPS:
                self._boxes.pop(next(iter(self._boxes)))

    def _take_frames(self) -> list[tuple[Image, list[Box] | None]]:
        """The frames to hand over now with their boxes (None: no detections for them); frames
        that wait a tick for their boxes stay behind (see the module docstring)."""
        with self._frames_lock:
            waited, self._waiting = self._waiting, []
            msgs, self._frames, self._frame_bytes = list(self._frames), deque(), 0
            out = []
            for m, may_wait in [(m, False) for m in waited] + [(m, True) for m in msgs]:
                boxes = self._boxes.pop(stamp_ns(m.header.stamp), None)
                if boxes is None and may_wait and self._regions_seen:
                    self._waiting.append(m)
                else:
                    out.append((m, boxes))
        return out

    def _as_served(self, rgb, boxes: list[Box] | None) -> list:
        """What perception classified in ``rgb``: the crops of ``boxes``, or the whole frame."""
        if boxes is None:
            return [rgb]
        whole = whole_frame(rgb)
        if any(b != whole for b in boxes):
            self._regions_seen = True
        return served_views(rgb, boxes, self.crop_context)

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
        frames = []
        for m, boxes in self._take_frames():
            try:
                frames += self._as_served(image_to_rgb(m), boxes)
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
