"""Frames and an upstream detector's boxes for them, paired by stamp (exact time sync).

A detector publishes its boxes for a frame after it has seen the frame, so over DDS the boxes
usually come second, but nothing guarantees the order. Whichever half arrives first waits here,
bounded in count and in time, for the other half with the same stamp. Nothing leaves silently:
each half that times out, is pushed out by the bound, or is a duplicate is counted, so the node
can put every frame and every box message in one counter on ``/diagnostics``.
(``message_filters``' TimeSynchronizer pairs the same way but drops an unpaired half without a
count the node could report.)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

F = TypeVar("F")
R = TypeVar("R")


@dataclass
class PairCounts:
    """Halves that found no partner, by why."""

    frames_timed_out: int = 0    # no boxes for the frame within the timeout
    regions_timed_out: int = 0   # no frame for the boxes within the timeout
    frames_pushed_out: int = 0   # more frames waiting than the bound
    regions_pushed_out: int = 0
    duplicates: int = 0          # a second frame or box message for a stamp already waiting

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Waiting(Generic[F]):
    item: F
    since_ns: int


@dataclass
class StampPairer(Generic[F, R]):
    """Thread-safe; ``capacity`` halves of each kind wait at most ``timeout_ns`` of the caller's
    clock (ROS time in the node, so bag replay and sim time work)."""

    capacity: int
    timeout_ns: int
    counts: PairCounts = field(default_factory=PairCounts)

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.timeout_ns <= 0:
            raise ValueError("StampPairer: capacity >= 1 and timeout > 0 required")
        self._frames: OrderedDict[Hashable, _Waiting[F]] = OrderedDict()
        self._regions: OrderedDict[Hashable, _Waiting[R]] = OrderedDict()
        self._lock = threading.Lock()

    def add_frame(self, key: Hashable, frame: F, now_ns: int) -> tuple[F, R] | None:
        """The pair if this frame's boxes already waited, else None (the frame waits)."""
        with self._lock:
            hit = self._regions.pop(key, None)
            if hit is not None:
                return frame, hit.item
            self._park(self._frames, key, frame, now_ns, "frames_pushed_out")
            return None

    def add_regions(self, key: Hashable, regions: R, now_ns: int) -> tuple[F, R] | None:
        """The pair if this stamp's frame already waited, else None (the boxes wait)."""
        with self._lock:
            hit = self._frames.pop(key, None)
            if hit is not None:
                return hit.item, regions
            self._park(self._regions, key, regions, now_ns, "regions_pushed_out")
            return None

    def expire(self, now_ns: int) -> tuple[int, int]:
        """Drop halves that waited ``timeout_ns`` or more; returns (frames, box messages)."""
        with self._lock:
            nf = self._expire(self._frames, now_ns)
            nr = self._expire(self._regions, now_ns)
            self.counts.frames_timed_out += nf
            self.counts.regions_timed_out += nr
            return nf, nr

    def waiting(self) -> tuple[int, int]:
        with self._lock:
            return len(self._frames), len(self._regions)

    def _park(self, queue: OrderedDict, key: Hashable, item, now_ns: int, full: str) -> None:
        if key in queue:  # the newer one replaces it: a republished frame or box message
            self.counts.duplicates += 1
            del queue[key]
        queue[key] = _Waiting(item, int(now_ns))
        while len(queue) > self.capacity:
            queue.popitem(last=False)
            setattr(self.counts, full, getattr(self.counts, full) + 1)

    def _expire(self, queue: OrderedDict, now_ns: int) -> int:
        old = [k for k, w in queue.items() if now_ns - w.since_ns >= self.timeout_ns]
        for k in old:
            del queue[k]
        return len(old)
