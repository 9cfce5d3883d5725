"""A cache of recent items bounded by count *and* bytes, oldest evicted first.

Counting frames is not enough on a robot: 300 frames of 320x240 are 69 MB, 300 of 4000x3000
are 10.8 GB. The label collector keeps the frames it may pair corrections with here; an item
larger than the whole byte budget is refused (the caller counts it), never cached.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class FrameCache(Generic[V]):
    """Thread-safe map key -> (value, size in bytes), at most ``max_items`` and ``max_bytes``."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        if max_items < 1 or max_bytes < 1:
            raise ValueError(f"bounds must be >= 1, got {max_items} items, {max_bytes} bytes")
        self.max_items, self.max_bytes = int(max_items), int(max_bytes)
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, key: Hashable, value: V, nbytes: int) -> bool:
        """Insert (or replace) ``key``; False when ``nbytes`` alone exceeds ``max_bytes``."""
        if nbytes > self.max_bytes:
            return False
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, int(nbytes))
            self._bytes += int(nbytes)
            while len(self._items) > self.max_items or self._bytes > self.max_bytes:
                _, (_, size) = self._items.popitem(last=False)
                self._bytes -= size
        return True

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            hit = self._items.get(key)
        return None if hit is None else hit[0]

    def oldest_key(self) -> Hashable | None:
        with self._lock:
            return next(iter(self._items), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes
