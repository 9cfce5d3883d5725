"""A bounded queue drained by one thread that hands items to a writer in batches.

Why: a subscription callback that writes to SQLite itself (encode, insert, fsync) handles a few
dozen corrections a second; a burst overflows DDS's queue and the rest is lost without a trace.
The callback instead only *offers* items here (bounded by count and by bytes, so a backlog
cannot pin unbounded memory); a refused offer is the caller's to count and log. The thread
commits many items per transaction, so one fsync covers a batch.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BatchWriter(Generic[T]):
    """``write(batch)`` runs on this object's thread with up to ``batch_max`` items.

    ``on_error(exc)`` is told about an exception from ``write`` (the thread goes on);
    ``idle()`` runs between batches and at least every 0.1 s.
    """

    def __init__(self, write: Callable[[list[T]], None], max_items: int, max_bytes: int,
                 *, batch_max: int = 256, on_error: Callable[[BaseException], None],
                 idle: Callable[[], None] | None = None, name: str = "batch_writer") -> None:
        if max_items < 1 or max_bytes < 0 or batch_max < 1:
            raise ValueError("max_items and batch_max must be >= 1, max_bytes >= 0")
        self._write, self._on_error, self._idle = write, on_error, idle
        self.max_items, self.max_bytes, self.batch_max = max_items, max_bytes, batch_max
        self._queue: queue.Queue[tuple[T, int]] = queue.Queue()
        self._lock = threading.Lock()
        self._items = self._bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def offer(self, item: T, nbytes: int = 0) -> bool:
        """Queue ``item`` unless the queue is full (by count or bytes) or closed."""
        with self._lock:
            if (self._stop.is_set() or self._items >= self.max_items
                    or self._bytes + nbytes > self.max_bytes):
                return False
            self._items += 1
            self._bytes += nbytes
        self._queue.put((item, nbytes))
        return True

    def pending(self) -> int:
        """Items offered and not yet written."""
        with self._lock:
            return self._items

    def close(self, timeout: float = 30.0) -> bool:
        """Refuse new items, write what is queued, stop; False if it did not finish in time."""
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            try:
                batch = [self._queue.get(timeout=0.1)]
            except queue.Empty:
                if self._stop.is_set():
                    return
                self._guarded(self._idle)
                continue
            while len(batch) < self.batch_max:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._guarded(self._idle)
            self._guarded(lambda b=batch: self._write([item for item, _ in b]))
            with self._lock:
                self._items -= len(batch)
                self._bytes -= sum(n for _, n in batch)

    def _guarded(self, fn: Callable[[], None] | None) -> None:
        if fn is None:
            return
        try:
            fn()
        except Exception as exc:  # a writer thread that dies would lose everything after it
            with contextlib.suppress(Exception):  # nothing left to report to
                self._on_error(exc)
