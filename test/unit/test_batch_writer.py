"""BatchWriter: bounded by count and bytes, batches, survives a failing write, drains on close."""

from __future__ import annotations

import threading

from etuner_ros.core.batch_writer import BatchWriter


def test_bounds_batches_and_drain_on_close():
    gate = threading.Event()
    batches: list[list[int]] = []

    def write(batch: list[int]) -> None:
        gate.wait(30)
        batches.append(batch)

    w: BatchWriter[int] = BatchWriter(write, max_items=5, max_bytes=100, batch_max=3,
                                      on_error=lambda exc: None)
    assert [w.offer(i, 10) for i in range(6)] == [True] * 5 + [False]  # count bound
    assert w.pending() == 5
    gate.set()
    assert w.close()
    assert [x for b in batches for x in b] == [0, 1, 2, 3, 4] and max(len(b) for b in batches) <= 3
    assert w.pending() == 0 and not w.offer(9)  # closed


def test_bytes_bound():
    gate = threading.Event()
    w: BatchWriter[str] = BatchWriter(lambda b: gate.wait(30), max_items=100, max_bytes=100,
                                      on_error=lambda exc: None)
    assert w.offer("a", 60) and not w.offer("b", 41) and w.offer("c", 40)
    gate.set()
    assert w.close()


def test_failing_write_is_reported_and_the_thread_goes_on():
    errors: list[BaseException] = []
    done: list[int] = []

    def write(batch: list[int]) -> None:
        if 0 in batch:
            raise RuntimeError("disk full")
        done.extend(batch)

    w: BatchWriter[int] = BatchWriter(write, 10, 10, batch_max=1, on_error=errors.append)
    for i in range(3):
        assert w.offer(i)
    assert w.close()
    assert done == [1, 2] and len(errors) == 1 and "disk full" in str(errors[0])
