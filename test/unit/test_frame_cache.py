"""FrameCache: bounded by count and by bytes; oversize items refused."""

from __future__ import annotations

import pytest

from etuner_ros.core.frame_cache import FrameCache


def test_bytes_bound_evicts_oldest_first():
    c: FrameCache[str] = FrameCache(max_items=100, max_bytes=1000)
    for k in range(10):
        assert c.put(k, f"f{k}", 300)
    assert len(c) == 3 and c.nbytes == 900 and c.oldest_key() == 7
    assert c.get(6) is None and c.get(9) == "f9"


def test_count_bound_and_replacement():
    c: FrameCache[int] = FrameCache(max_items=2, max_bytes=10**9)
    c.put("a", 1, 10)
    c.put("b", 2, 10)
    c.put("a", 3, 50)  # replaced, now newest
    assert c.nbytes == 60 and c.oldest_key() == "b"
    c.put("c", 4, 10)
    assert c.get("b") is None and c.get("a") == 3 and len(c) == 2 and c.nbytes == 60


def test_oversize_item_refused_and_cache_unchanged():
    c: FrameCache[str] = FrameCache(max_items=20, max_bytes=36_000_000 * 5)
    for k in range(20):  # 20 frames of 4000x3000 rgb8: only 5 fit in 180 MB
        c.put(k, "big", 36_000_000)
    assert len(c) == 5 and c.nbytes == 180_000_000
    assert not c.put(99, "huge", 180_000_001) and c.get(99) is None and len(c) == 5
    with pytest.raises(ValueError):
        FrameCache(0, 1)
