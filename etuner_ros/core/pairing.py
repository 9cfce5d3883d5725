"""Corrections that arrived before their frame, waiting (bounded) to be paired with it.

A caregiver's correction names a frame by its stamp, and over DDS it can overtake the frame it
labels. The label collector parks such a correction here and retries it on a timer until its
frame is cached or ``pairing_timeout_s`` of ROS time has passed. Corrections of one stamp stay in
arrival order: while an earlier one waits, a later one of the same stamp waits behind it, and a
retry pass skips a stamp whose earlier correction could not be paired yet, so "last correction
wins" in the store means the last one the caregiver sent.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable
from typing import Generic, TypeVar

M = TypeVar("M")


class PendingCorrections(Generic[M]):
    """Thread-safe queue of ``(arrival time, stamp key, message)``, at most ``capacity``."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._waiting: deque[tuple[int, int, M]] = deque()
        self._stamps: Counter[int] = Counter()  # keeps same-stamp corrections in order
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)

    def behind(self, key: int) -> bool:
        """An earlier correction of this stamp waits: this one must queue behind it."""
        with self._lock:
            return self._stamps[key] > 0

    def add(self, now: int, key: int, msg: M) -> bool:
        """Park ``msg`` (arrived at ``now``); False when ``capacity`` corrections wait."""
        with self._lock:
            if len(self._waiting) < self.capacity:
                self._waiting.append((now, key, msg))
                self._stamps[key] += 1
                return True
        return False

    def retry(self, now: int, timeout_ns: float, pair: Callable[[M, int], bool],
              expire: Callable[[M], None]) -> None:
        """One pass in arrival order: ``pair(msg, waited_ns)`` True takes it out; one that
        waited ``timeout_ns`` or longer goes to ``expire``; the rest wait on, in order."""
        with self._lock:
            waiting, self._waiting = self._waiting, deque()
        still: deque[tuple[int, int, M]] = deque()
        blocked: set[int] = set()  # a stamp whose earlier correction still waits
        for t, key, msg in waiting:
            waited = now - t
            if key not in blocked and pair(msg, waited):
                self._unwait(key)
                continue
            if waited >= timeout_ns:
                self._unwait(key)
                expire(msg)
            else:
                blocked.add(key)
                still.append((t, key, msg))
        with self._lock:
            self._waiting.extendleft(reversed(still))

    def drain(self) -> list[M]:
        """Take every waiting correction out (shutdown), oldest first."""
        with self._lock:
            left, self._waiting = list(self._waiting), deque()
            self._stamps.clear()
        return [msg for _, _, msg in left]

    def _unwait(self, key: int) -> None:
        with self._lock:
            self._stamps[key] -= 1
            if self._stamps[key] <= 0:
                del self._stamps[key]
