"""label_collector_node: turn caregivers' corrections into stored, labelled samples.

A correction names a frame by its stamp and a region of it (a detection index, a box, or
neither: see ``msg/LabelCorrection.msg`` and ``core/region_choice.py``). The node keeps recent
frames (bounded by count and by bytes, ``frame_cache_size`` / ``frame_cache_mb``) and the
detections published for them, pairs each correction with the frame of the same stamp and the
region it names, and hands frame and region to a writer thread that cuts the region's crop
(``core.regions.crop`` with ``crop_context``, as perception cuts it) and commits batches to the
SQLite store (one transaction, one fsync per batch; see ``core/store.py`` for the new-class and
last-correction-wins-per-region rules, ``core/class_names.py`` for the class-name rule).

Every correction ends in exactly one counter on ``/diagnostics`` (``ros/correction_ledger.py``):
``stored`` or ``held`` (committed), ``rejected.<reason>`` (invalid name, unpairable, no such
region, policy, store error; logged with the name escaped) or ``dropped`` (the bounded write
queue was full; logged).
Nothing is lost silently: the subscription is reliable KEEP_ALL, the callback only validates and
enqueues, so DDS never overwrites an unread correction; publishers must be reliable (see
``msg/LabelCorrection.msg``). A correction that arrives before its frame waits
(``core/pairing.py``) up to ``pairing_timeout_s`` of ROS time (node clock, so ``use_sim_time``
and bag replay work), and one that names a region as long for the frame's detections. Every
``unlabelled_every_n``-th frame feeds the store's bounded reservoir of unlabelled images with
what perception classified in it (``ros/unlabelled_feed.py``). ``pairing_timeout_s``,
``unlabelled_every_n`` and ``no_frame_warn_s`` may be changed at run time (``ros2 param set``);
every other parameter is read-only.
"""

from __future__ import annotations

import threading
from pathlib import Path

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from sensor_msgs.msg import Image

from etuner_ros.core.batch_writer import BatchWriter
from etuner_ros.core.class_names import (
    ClassPolicy,
    InvalidClassName,
    model_class,
    normalise_class,
    parse_class_list,
)
from etuner_ros.core.frame_cache import FrameCache
from etuner_ros.core.pairing import PendingCorrections
from etuner_ros.core.region_choice import (
    BAD_BOX,
    PublishedFrame,
    Region,
    Rejected,
    box_problem,
    choose_region,
    names_region,
)
from etuner_ros.core.regions import CROP_CONTEXT, crop
from etuner_ros.core.silence import Silence
from etuner_ros.core.store import Correction, SampleStore
from etuner_ros.core.text import printable
from etuner_ros.msg import DetectionArray, LabelCorrection, ModelInfo
from etuner_ros.ros.correction_ledger import CorrectionLedger
from etuner_ros.ros.diagnostics import Diagnostics
from etuner_ros.ros.guard import CallbackGuard
from etuner_ros.ros.image import ImageConversionError, image_to_rgb
from etuner_ros.ros.params import ParameterError, declare, warn_undeclared
from etuner_ros.ros.qos import (
    RELIABILITY_CHOICES,
    corrections_qos,
    image_qos,
    latched_qos,
    reliable_qos,
)
from etuner_ros.ros.region_msgs import correction_box, published_frame
from etuner_ros.ros.run import run_node
from etuner_ros.ros.stamps import stamp_ns
from etuner_ros.ros.unlabelled_feed import UnlabelledFeed

PREDICTION_WAIT_S = 0.5  # how long a whole-frame correction waits for its frame's detections
WRITE_BATCH = 256  # corrections per committed transaction at most
MAX_SOURCE_CHARS = 128  # a correction's `source` is cut to this before it is stored


class LabelCollectorNode(Node):
    """See the module docstring."""

    def __init__(self, **kwargs) -> None:
        super().__init__("label_collector", **kwargs)
        data_dir = declare(self, "data_dir", "~/.local/share/etuner_ros",
                           "directory of the sample store and checkpoints", read_only=True)
        store_file = declare(self, "store_file", "samples.db",
                             "SQLite file of the sample store, relative to data_dir",
                             read_only=True)
        cache_size = declare(self, "frame_cache_size", 300,
                             "recent frames kept for pairing corrections by stamp",
                             minimum=1, maximum=100000, read_only=True)
        cache_mb = declare(self, "frame_cache_mb", 256.0,
                           "bytes of recent frames kept for pairing, in MiB; a frame larger "
                           "than this is not cached (counted as oversize_frames)",
                           minimum=1.0, maximum=65536.0, read_only=True)
        self.timeout_s = declare(self, "pairing_timeout_s", 2.0,
                                 "how long (ROS time) a correction may wait for its frame",
                                 minimum=0.0, maximum=600.0,
                                 on_set=lambda v: setattr(self, "timeout_s", v))
        self.every_n = declare(self, "unlabelled_every_n", 5,
                               "offer every n-th frame to the unlabelled reservoir (0 = none)",
                               minimum=0, maximum=100000,
                               on_set=lambda v: setattr(self, "every_n", v))
        max_unl = declare(self, "max_unlabelled", 2000,
                          "bound of the unlabelled-frame reservoir", minimum=0,
                          maximum=10_000_000, read_only=True)
        reliability = declare(self, "image_reliability", "best_effort",
                              "QoS reliability of the image subscription",
                              choices=RELIABILITY_CHOICES, read_only=True)
        depth = declare(self, "image_queue_depth", 10, "image subscription queue depth",
                        minimum=1, maximum=1000, read_only=True)
        allowed = declare(self, "allowed_classes", "",
                          "comma-separated class names corrections may use besides the "
                          "model's; empty: new classes by new_class_min_votes", read_only=True)
        min_votes = declare(self, "new_class_min_votes", 3,
                            "corrections of distinct frames that make a new class real (its "
                            "samples are held until then; 0 = never, 1 = at once)",
                            minimum=0, maximum=1000, read_only=True)
        self.max_held = declare(self, "max_held", 1000,
                                "held samples (classes not accepted yet) kept at most",
                                minimum=0, maximum=1_000_000, read_only=True)
        queue_size = declare(self, "correction_queue_size", 5000,
                             "corrections waiting for their frame or for the writer at most; "
                             "beyond it they are dropped (counted, logged)",
                             minimum=1, maximum=1_000_000, read_only=True)
        self.no_frame_warn_s = declare(self, "no_frame_warn_s", 10.0,
                                       "WARN on /diagnostics after this long (ROS time) "
                                       "without a frame (0 = never)", minimum=0.0,
                                       maximum=86400.0,
                                       on_set=lambda v: setattr(self, "no_frame_warn_s", v))
        self.min_iou = declare(self, "region_min_iou", 0.5,
                               "a correction's box names the published detection it overlaps "
                               "best if that IoU is at least this", minimum=0.01, maximum=1.0,
                               read_only=True)
        self.crop_context = declare(self, "crop_context", CROP_CONTEXT,
                                    "share of a region's width and height added on each side of "
                                    "the stored crop; must equal perception's crop_context, so "
                                    "the tuner trains on the crops perception classifies",
                                    minimum=0.0, maximum=1.0, read_only=True)
        try:
            self.policy = ClassPolicy.build(parse_class_list(allowed), min_votes)
        except InvalidClassName as exc:
            raise ParameterError(f"label_collector: allowed_classes: {exc}") from None

        path = Path(data_dir).expanduser() / store_file
        path.parent.mkdir(parents=True, exist_ok=True)
        self.store = SampleStore(path, max_unlabelled=int(max_unl))
        self.store_path = path
        if self.policy.allowed:
            self.store.accept_classes(set(self.policy.allowed), "allowed_classes")
        self.guard = CallbackGuard(self)
        self.ledger = CorrectionLedger(self.get_logger())
        self._frames: FrameCache[Image] = FrameCache(cache_size, int(cache_mb * 2**20))
        # What perception published per stamp, bounded in count like the frames (size 1 each).
        self._detections: FrameCache[PublishedFrame] = FrameCache(cache_size, cache_size)
        self._model_classes: frozenset[str] = frozenset()
        self._new_model_classes: set[str] = set()
        self._queue_size = int(queue_size)
        self._waiting: PendingCorrections[LabelCorrection] = PendingCorrections(self._queue_size)
        self._classes_lock = threading.Lock()
        self._silence = Silence()  # no-frames warning on ROS time (core/silence.py)

        g = self.guard.wrap
        self.create_subscription(Image, "image", g(self._on_image, "image"),
                                 image_qos(reliability, depth))
        self.create_subscription(DetectionArray, "detections",
                                 g(self._on_detections, "detections"), reliable_qos(50))
        self.create_subscription(ModelInfo, "model_info", g(self._on_model_info, "model_info"),
                                 latched_qos())
        events = SubscriptionEventCallbacks(
            incompatible_qos=g(self._on_incompatible, "corrections.incompatible_qos"),
            message_lost=g(self._on_lost, "corrections.message_lost"))
        self.create_subscription(LabelCorrection, "corrections",
                                 g(self._on_correction, "corrections"), corrections_qos(),
                                 event_callbacks=events)
        self.create_timer(0.1, g(self._retry_waiting, "pairing_timer"))
        Diagnostics(self, "samples", self._diagnose)
        # Pending writes may pin at most another frame_cache_mb of frames.
        self._writer: BatchWriter[tuple] = BatchWriter(
            self._write, self._queue_size, self._frames.max_bytes, batch_max=WRITE_BATCH,
            on_error=lambda exc: self.guard.record("writer", exc),
            idle=self._accept_model_classes, name="collector_writer")
        self._unlabelled = UnlabelledFeed(
            self.store, self.ledger, self.get_logger(), self.crop_context,
            on_error=lambda exc: self.guard.record("unlabelled_writer", exc))
        self.get_logger().info(
            f"storing labelled samples in {path}; new classes: "
            + (f"only {sorted(self.policy.allowed)}" if self.policy.allowed
               else f"after {min_votes} vote(s)" if min_votes else "none"))
        warn_undeclared(self)

    # --- counters the demo prints --------------------------------------------------------
    @property
    def stored(self) -> int:
        """Corrections committed as training samples (held ones released later included)."""
        return self.ledger.stored

    @property
    def rejected(self) -> int:
        return self.ledger.rejected

    @property
    def unlabelled_kept(self) -> int:
        return self.ledger.unlabelled_kept

    # --- helpers -------------------------------------------------------------------------
    def _now(self) -> int:
        return self.get_clock().now().nanoseconds

    # --- inputs --------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        key = stamp_ns(msg.header.stamp)
        size = len(msg.data)
        self.ledger.count("frames")
        self._silence.seen(self._now() / 1e9)
        if not self._frames.put(key, msg, size):
            self.ledger.count("oversize_frames")
            self.get_logger().warn(
                f"frame {msg.width}x{msg.height} {printable(msg.encoding, 20)} of {size} bytes "
                f"exceeds frame_cache_mb; not cached, corrections for it will be rejected",
                throttle_duration_sec=5.0)
            return
        self._unlabelled.frame(key, msg, self.every_n, self._detections.get(key))

    def _on_detections(self, msg: DetectionArray) -> None:
        """Keep every region published for the stamp (an empty array too: it says "none")."""
        key, published = stamp_ns(msg.header.stamp), published_frame(msg)
        self._detections.put(key, published, 1)
        self._unlabelled.detections(key, published)

    def _on_model_info(self, msg: ModelInfo) -> None:
        """The serving model's classes are known: corrections naming them are stored, and
        held samples of them are released (by the writer). Spelled as corrections are: a
        perception of another make may announce "Cup" for what caregivers call "cup"."""
        names = {model_class(str(n)) for n in msg.class_names}
        self._model_classes = frozenset(names)
        with self._classes_lock:
            self._new_model_classes |= names

    def _on_incompatible(self, info) -> None:
        self.ledger.count("incompatible_publishers")
        self.get_logger().error(
            "a publisher on 'corrections' has an incompatible QoS (policy id "
            f"{info.last_policy_kind}); caregiver UIs must publish RELIABLE (KEEP_ALL or a deep "
            "KEEP_LAST), or their corrections never arrive")

    def _on_lost(self, info) -> None:
        """DDS reports corrections it lost on the way (rare with reliable QoS)."""
        self.ledger.count("lost_in_transport", int(info.total_count_change))
        self.get_logger().error(
            f"DDS lost {info.total_count_change} correction(s) before they reached this node "
            f"({info.total_count} in all); is the publisher reliable with a deep queue?")

    def _on_correction(self, msg: LabelCorrection) -> None:
        self.ledger.count("received")
        try:
            msg.true_class = normalise_class(msg.true_class)
        except InvalidClassName as exc:
            self.ledger.reject(msg, exc.reason, str(exc))
            return
        if msg.header.stamp.sec < 0:
            self.ledger.reject(msg, "bad_stamp", "negative stamp")
            return
        problem = box_problem(msg.detection_index, correction_box(msg))
        if problem:  # malformed whatever the frame: rejected before it waits for one
            self.ledger.reject(msg, BAD_BOX, problem)
            return
        key = stamp_ns(msg.header.stamp)
        behind = self._waiting.behind(key)  # an earlier one of this stamp waits
        if not behind and self._pair(msg, waited_ns=0):
            return
        oldest = self._frames.oldest_key()
        if not behind and oldest is not None and key < oldest:
            self.ledger.reject(msg, "evicted", "frame older than every cached frame; raise "
                                               "frame_cache_size / frame_cache_mb if caregivers "
                                               "answer this late")
            return
        if not self._waiting.add(self._now(), key, msg):  # its frame may still be on its way
            self.ledger.drop(msg, "too many corrections waiting for their frames")

    def _retry_waiting(self) -> None:
        self._waiting.retry(self._now(), self.timeout_s * 1e9, self._pair, self._expire)

    def _expire(self, msg: LabelCorrection) -> None:
        if self._frames.get(stamp_ns(msg.header.stamp)) is not None:  # it names a region
            self.ledger.reject(msg, "no_detections", f"it names a region, but no detections "
                                                     f"for its frame within {self.timeout_s:.1f} "
                                                     "s (is perception running?)")
            return
        self.ledger.reject(msg, "no_frame", f"no frame with this stamp within "
                                            f"{self.timeout_s:.1f} s (evicted, dropped, or "
                                            "never published)")

    def _pair(self, msg: LabelCorrection, waited_ns: int) -> bool:
        """Resolve the region the correction names and hand frame and region to the writer
        (True: handled, rejections included). It waits while the frame is not cached, while
        a named region's detections have not arrived, and briefly for a whole-frame
        correction's, so the sample records the prediction it corrected."""
        key = stamp_ns(msg.header.stamp)
        frame = self._frames.get(key)
        if frame is None:
            return False
        published = self._detections.get(key)
        if published is None and (names_region(msg.detection_index, msg.has_box) or waited_ns
                                  < min(PREDICTION_WAIT_S, self.timeout_s) * 1e9):
            return False
        region = choose_region(msg.detection_index, correction_box(msg), published,
                               frame.width, frame.height, self.min_iou)
        if region is None:
            return False
        if isinstance(region, Rejected):
            self.ledger.reject(msg, region.reason, region.detail)
            return True
        if not self._writer.offer((msg, frame, region), len(frame.data)):
            self.ledger.drop(msg, f"write queue full (correction_queue_size "
                                  f"{self._queue_size}, or frame_cache_mb of frames pending)")
        return True

    # --- the writer thread ---------------------------------------------------------------
    def _accept_model_classes(self) -> None:
        with self._classes_lock:
            names, self._new_model_classes = self._new_model_classes, set()
        if names:
            self.ledger.released(self.store.accept_classes(names, "model"))

    def _write(self, batch: list[tuple]) -> None:
        """Runs on the writer thread: one transaction for the batch, then the counters."""
        msgs: list[LabelCorrection] = []
        items: list[Correction] = []
        region: Region
        for msg, frame, region in batch:
            try:
                image = crop(image_to_rgb(frame), region.box, self.crop_context)
            except ImageConversionError as exc:
                self.ledger.reject(msg, "bad_image", str(exc))
                continue
            msgs.append(msg)
            items.append(Correction(
                image, msg.true_class, stamp_ns(msg.header.stamp), predicted=region.predicted,
                model_version=region.model_version, confirms=bool(msg.confirms),
                source=msg.source[:MAX_SOURCE_CHARS], box=tuple(region.box),
                detection_index=region.index if region.index >= 0 else None))
        if not items:
            return
        try:
            outcomes = self.store.add_corrections(items, self.policy, self._model_classes,
                                                  self.max_held)
        except Exception as exc:  # the batch was rolled back: nothing of it is stored
            self.guard.record("store", exc)
            for msg in msgs:
                self.ledger.reject(msg, "store_error", f"{type(exc).__name__}: {exc}")
            return
        stored, held, superseded, promoted = [], [], 0, []
        for msg, out in zip(msgs, outcomes, strict=True):
            if out.state == "rejected":
                self.ledger.reject(msg, out.reason.split(":")[0], out.reason)
                continue
            (stored if out.state == "stored" else held).append(out.id)
            superseded += out.superseded
            promoted += out.promoted
        # Counted only now: everything above is committed (synchronous=FULL).
        self.ledger.committed(stored, held, superseded, promoted)

    # --- diagnostics and shutdown --------------------------------------------------------
    def _diagnose(self) -> tuple[bytes, str, dict]:
        since_frame = self._silence.seconds(self._now() / 1e9)
        return self.ledger.diagnosis(since_frame, self.no_frame_warn_s, {
            "waiting": len(self._waiting), "write_queue": self._writer.pending(),
            "frames_cached": len(self._frames), "frame_cache_bytes": self._frames.nbytes,
            "seconds_since_frame": round(since_frame, 1),
            "model_classes": len(self._model_classes),
            "store_labelled": self.store.count_labelled(),
            "store_held": self.store.count_held(), "store": str(self.store_path)},
            self.guard.values())

    def destroy_node(self) -> None:
        """Write what is already paired, count what still waits for a frame, close."""
        self._unlabelled.close()
        if not self._writer.close():
            self.get_logger().error("writer did not finish within 30 s; corrections still "
                                    f"queued: {self._writer.pending()}")
        for msg in self._waiting.drain():
            self.ledger.reject(msg, "shutdown", "node stopped before its frame arrived")
        self.store.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the node alone."""
    return run_node(LabelCollectorNode, "label_collector", args, threads=1)
