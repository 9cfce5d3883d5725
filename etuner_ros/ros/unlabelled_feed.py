"""The label collector's unlabelled reservoir, fed with what perception classified.

Every ``every_n``-th camera frame waits for the detections perception published for its stamp;
then the images perception classified in it (``core.regions.served_views``: each detection's
crop, the whole frame in whole-frame mode) are offered to the store's bounded reservoir, for
semi-supervised tuning. Why wait: with an upstream detector or the proposer the model sees
crops, and pseudo-labels on whole room frames would teach it images it never classifies (the
benchmark's region streams feed crops too). A frame whose detections have not come when
``WAITING`` newer ones wait is counted as ``unlabelled_no_detections`` (is perception
running?); an empty detection array gives no image. Images are written on their own thread,
``PENDING`` frames at most (they are optional: a refused one is ``unlabelled_skipped``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rclpy.impl.rcutils_logger import RcutilsLogger
from sensor_msgs.msg import Image

from etuner_ros.core.batch_writer import BatchWriter
from etuner_ros.core.region_choice import PublishedFrame
from etuner_ros.core.regions import served_views
from etuner_ros.core.store import SampleStore
from etuner_ros.core.text import printable
from etuner_ros.ros.correction_ledger import CorrectionLedger
from etuner_ros.ros.image import ImageConversionError, image_to_rgb

PENDING = 4  # frames waiting for the writer at most
WAITING = 8  # frames waiting for their detections at most


class UnlabelledFeed:
    """See the module docstring. Call :meth:`frame` and :meth:`detections` from one thread."""

    def __init__(self, store: SampleStore, ledger: CorrectionLedger, logger: RcutilsLogger,
                 crop_context: float, on_error: Callable[[BaseException], None]) -> None:
        self.store, self.ledger, self._log = store, ledger, logger
        self.crop_context = float(crop_context)
        self._seen = 0
        self._waiting: dict[int, Image] = {}  # stamp -> frame, oldest first
        self._writer: BatchWriter[tuple] = BatchWriter(
            self._write, PENDING, 2**62, batch_max=PENDING, on_error=on_error,
            name="collector_unlabelled")

    def frame(self, key: int, msg: Image, every_n: int,
              published: PublishedFrame | None) -> None:
        """A cached camera frame; ``published``: its detections, if already here."""
        self._seen += 1
        if every_n <= 0 or self._seen % every_n:
            return
        self._waiting[key] = msg
        if len(self._waiting) > WAITING:
            self._waiting.pop(next(iter(self._waiting)))
            self.ledger.count("unlabelled_no_detections")
        if published is not None:
            self.detections(key, published)

    def detections(self, key: int, published: PublishedFrame) -> None:
        """Perception's detections for ``key``: a frame waiting for them goes to the writer."""
        frame = self._waiting.pop(key, None)
        if frame is not None and not self._writer.offer(
                (frame, key, [d.box for d in published.detections])):
            self.ledger.count("unlabelled_skipped")

    def _write(self, batch: list[tuple[Image, int, Sequence]]) -> None:
        for frame, key, boxes in batch:
            try:
                for view in served_views(image_to_rgb(frame), boxes, self.crop_context):
                    if self.store.add_unlabelled(view, key) is not None:
                        self.ledger.count("unlabelled_kept")
            except (ImageConversionError, ValueError) as exc:
                self.ledger.count("unlabelled_bad_image")
                self._log.warn(f"unlabelled frame not kept: {printable(exc, 160)}",
                               throttle_duration_sec=5.0)

    def close(self) -> None:
        """Write what is queued (frames still waiting for detections are let go)."""
        self._writer.close()
