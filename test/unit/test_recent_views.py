"""Perception's recent views: a correction names a published region's key by the collector's
rule, or a counted reason."""

from __future__ import annotations

import numpy as np
import pytest

from etuner_ros.core.recent_views import NO_FRAME, RecentViews
from etuner_ros.core.region_choice import NO_REGION, Published, PublishedFrame, Rejected


def published(*boxes) -> PublishedFrame:
    return PublishedFrame(tuple(Published(b, "cup") for b in boxes))


KEYS = np.eye(3, 4, dtype=np.float32)  # one distinct key per region


def test_index_box_and_only_region_name_the_key_of_their_region():
    v = RecentViews()
    v.add(10, published((0, 0, 20, 20), (30, 0, 20, 20), (60, 0, 20, 20)), KEYS, 100, 50)
    v.add(11, published((0, 0, 100, 50)), KEYS[:1], 100, 50)
    np.testing.assert_array_equal(v.key_for(10, 1, None), KEYS[1])
    np.testing.assert_array_equal(v.key_for(10, -1, (61.0, 1.0, 20.0, 20.0)), KEYS[2])
    np.testing.assert_array_equal(v.key_for(11, -1, None), KEYS[0])  # the frame's only one


@pytest.mark.parametrize("stamp, index, box, reason", [
    (99, 0, None, NO_FRAME),                        # never published (or evicted)
    (10, 5, None, NO_REGION),                       # index past the published detections
    (10, -1, (0.0, 40.0, 5.0, 5.0), NO_REGION),     # overlaps no published box
    (10, -1, None, NO_REGION),                      # several regions: which one is ambiguous
])
def test_a_correction_naming_nothing_published_says_why(stamp, index, box, reason):
    v = RecentViews()
    v.add(10, published((0, 0, 20, 20), (30, 0, 20, 20)), KEYS[:2], 100, 50)
    out = v.key_for(stamp, index, box)
    assert isinstance(out, Rejected) and out.reason == reason and out.detail


def test_only_the_newest_stamps_are_kept():
    v = RecentViews(capacity=2)
    for stamp in (1, 2, 3):
        v.add(stamp, published((0, 0, 10, 10)), KEYS[:1], 10, 10)
    assert len(v) == 2
    assert isinstance(v.key_for(1, 0, None), Rejected)
    assert not isinstance(v.key_for(3, 0, None), Rejected)
    with pytest.raises(ValueError, match="2 keys for 1 detections"):
        v.add(4, published((0, 0, 10, 10)), KEYS[:2], 10, 10)
    with pytest.raises(ValueError, match="capacity"):
        RecentViews(capacity=0)
