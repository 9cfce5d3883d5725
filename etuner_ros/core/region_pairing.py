"""Frames and an upstream detector's boxes for them, paired by stamp (exact time sync).

A detector publishes its boxes for a frame after it has seen the frame, so over DDS the boxes
usually come second, but nothing guarantees the order. Whichever half arrives first waits here,
bounded in count, in time and (frames hold full images) in the bytes of the waiting frames, for
the other half with the same stamp. The time bound is applied on every arrival, not only when
the caller's timer calls :meth:`StampPairer.expire`, so a busy stream never holds a frame longer
than the timeout. Nothing leaves silently: each half that times out, is pushed out by a bound,
or is a duplicate is counted, so the node can put every frame and every box message in one
counter on ``/diagnostics``.
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
    frames_over_bytes: int = 0   # out (oldest first) to keep waiting frames under the byte bound
    frames_flushed: int = 0      # still waiting when the owner stopped pairing (drain)
    regions_flushed: int = 0
    duplicates: int = 0          # a second frame or box message for a stamp already waiting

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Waiting(Generic[F]):
    item: F
    since_ns: int
    nbytes: int = 0  # a frame's size; box messages are small and not counted


@dataclass
class StampPairer(Generic[F, R]):
    """Thread-safe; ``capacity`` halves of each kind wait at most ``timeout_ns`` of the caller's
    clock (ROS time in the node, so bag replay and sim time work), and the waiting frames hold
    at most ``max_frame_bytes`` together (None: no byte bound)."""

    capacity: int
    timeout_ns: int
    max_frame_bytes: int | None = None
    counts: PairCounts = field(default_factory=PairCounts)

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.timeout_ns <= 0:
            raise ValueError("StampPairer: capacity >= 1 and timeout > 0 required")
        if self.max_frame_bytes is not None and self.max_frame_bytes < 1:
            raise ValueError("StampPairer: max_frame_bytes >= 1 (or None) required")
        self._frames: OrderedDict[Hashable, _Waiting[F]] = OrderedDict()
        self._regions: OrderedDict[Hashable, _Waiting[R]] = OrderedDict()
        self._frame_bytes = 0
        self._lock = threading.Lock()

    def add_frame(self, key: Hashable, frame: F, now_ns: int, nbytes: int = 0
                  ) -> tuple[F, R] | None:
        """The pair if this frame's boxes already waited, else None (the frame waits, unless
        ``nbytes`` alone is over the byte bound: then it is counted and dropped)."""
        with self._lock:
            self._expire_oldest(now_ns)
            hit = self._regions.pop(key, None)
            if hit is not None:
                return frame, hit.item
            if self.max_frame_bytes is not None and nbytes > self.max_frame_bytes:
                self.counts.frames_over_bytes += 1
                return None
            self._park(self._frames, key, _Waiting(frame, int(now_ns), int(nbytes)),
                       "frames_pushed_out")
            while self.max_frame_bytes is not None and self._frame_bytes > self.max_frame_bytes:
                self._frame_bytes -= self._frames.popitem(last=False)[1].nbytes
                self.counts.frames_over_bytes += 1
            return None

    def add_regions(self, key: Hashable, regions: R, now_ns: int) -> tuple[F, R] | None:
        """The pair if this stamp's frame already waited, else None (the boxes wait)."""
        with self._lock:
            self._expire_oldest(now_ns)
            hit = self._frames.pop(key, None)
            if hit is not None:
                self._frame_bytes -= hit.nbytes
                return hit.item, regions
            self._park(self._regions, key, _Waiting(regions, int(now_ns)), "regions_pushed_out")
            return None

    def expire(self, now_ns: int) -> tuple[int, int]:
        """Drop halves that waited ``timeout_ns`` or more; returns (frames, box messages)."""
        with self._lock:
            nf = self._expire(self._frames, now_ns)
            nr = self._expire(self._regions, now_ns)
            self.counts.frames_timed_out += nf
            self.counts.regions_timed_out += nr
            return nf, nr

    def drain(self) -> tuple[int, int]:
        """Drop and count everything waiting (the owner stops: nothing may stay held);
        returns (frames, box messages)."""
        with self._lock:
            nf, nr = len(self._frames), len(self._regions)
            self._frames.clear()
            self._regions.clear()
            self._frame_bytes = 0
            self.counts.frames_flushed += nf
            self.counts.regions_flushed += nr
            return nf, nr

    def waiting(self) -> tuple[int, int]:
        with self._lock:
            return len(self._frames), len(self._regions)

    def waiting_frame_bytes(self) -> int:
        with self._lock:
            return self._frame_bytes

    def _park(self, queue: OrderedDict, key: Hashable, waiting: _Waiting, full: str) -> None:
        if key in queue:  # the newer one replaces it: a republished frame or box message
            self.counts.duplicates += 1
            self._frame_bytes -= queue.pop(key).nbytes
        queue[key] = waiting
        self._frame_bytes += waiting.nbytes
        while len(queue) > self.capacity:
            self._frame_bytes -= queue.popitem(last=False)[1].nbytes
            setattr(self.counts, full, getattr(self.counts, full) + 1)

    def _expire_oldest(self, now_ns: int) -> None:
        """On an arrival: drop the timed-out halves from the front (arrival order; a clock
        that jumped back can leave some behind for the next :meth:`expire`)."""
        for queue, name in ((self._frames, "frames_timed_out"),
                            (self._regions, "regions_timed_out")):
            while queue and now_ns - next(iter(queue.values())).since_ns >= self.timeout_ns:
                self._frame_bytes -= queue.popitem(last=False)[1].nbytes
                setattr(self.counts, name, getattr(self.counts, name) + 1)

    def _expire(self, queue: OrderedDict, now_ns: int) -> int:
        old = [k for k, w in queue.items() if now_ns - w.since_ns >= self.timeout_ns]
        for k in old:
            self._frame_bytes -= queue.pop(k).nbytes
        return len(old)
