"""The collector's unlabelled reservoir (``ros/unlabelled_feed.py``) with a real store: a frame
whose image cannot be converted is counted as ``unlabelled_bad_image``, not only logged (a
camera with an unsupported encoding used to show nothing on /diagnostics). Message objects
only: no node, no DDS."""

from __future__ import annotations

import numpy as np
from rclpy.logging import get_logger
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from etuner_ros.core.region_choice import Published, PublishedFrame
from etuner_ros.core.store import SampleStore
from etuner_ros.ros.correction_ledger import REPORTED, CorrectionLedger
from etuner_ros.ros.image import rgb_to_image
from etuner_ros.ros.unlabelled_feed import UnlabelledFeed


def test_a_frame_that_cannot_be_converted_is_counted_not_only_logged(tmp_path):
    store = SampleStore(tmp_path / "s.db")
    ledger = CorrectionLedger(get_logger("test_unlabelled_feed"))
    errors: list[BaseException] = []
    feed = UnlabelledFeed(store, ledger, get_logger("test_unlabelled_feed"), 0.1, errors.append)
    whole = PublishedFrame((Published((0, 0, 32, 24), "cup"),), 1)
    good = rgb_to_image(np.full((24, 32, 3), 90, np.uint8), Header(frame_id="cam"))
    bad = Image(height=24, width=32, encoding="yuv422_yuy2", step=64, data=bytes(24 * 64))
    feed.frame(1, good, 1, whole)
    feed.frame(2, bad, 1, whole)
    feed.close()
    assert not errors
    assert ledger.counts["unlabelled_kept"] == 1 and ledger.counts["unlabelled_bad_image"] == 1
    assert "unlabelled_bad_image" in REPORTED
