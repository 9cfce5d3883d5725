"""A MultiThreadedExecutor that does not busy-loop on callbacks waiting in its thread pool.

Why (issue 7, measured): rclpy's ``MultiThreadedExecutor`` in Jazzy (rclpy 7.1.x, the wheels
here) hands a ready callback to its thread pool as a ``Task``. Until a worker *starts* that task,
the task is neither executing nor done, and ``_wait_for_ready_callbacks`` yields every such
"in-progress" task again without waiting: the spin thread submits the same task to the pool over
and over (its ``_futures`` list grew to ~1,450 entries within 0.3 s in the latency benchmark) and
spins at full speed holding the GIL. The pool's workers then get the GIL late, which keeps the
task queued longer: under CPU load the loop feeds itself. Every other Python thread of the
process starves meanwhile; the latency benchmark's camera thread stood still for up to 2.2 s and
then published its backlog in a burst that perception's depth-2 best-effort queue could not hold
(``scripts/latency_bench.py`` docstring; README "Perception latency"). Upstream fixed it after
Jazzy's release (ros2/rclpy#1452, PR #1547); the wheels here do not have the fix.

What: a task counts as executing from the moment it is handed to the pool until its worker runs
it, so it is not yielded (nor submitted) again, and the spin thread waits in ``rcl_wait`` like a
single-threaded executor. Only ``_spin_once_impl`` is replaced; it is rclpy 7.1's own loop plus
that marking. A worker clears the mark just before running the task, so a coroutine task that
suspends (awaits a future) is resumed exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable

from rclpy.executors import (
    ConditionReachedException,
    ExternalShutdownException,
    MultiThreadedExecutor,
    ShutdownException,
    TimeoutException,
)
from rclpy.task import Task


def _always() -> bool:
    return True


def _run(task: Task) -> None:
    """Worker side: the task leaves the queue (the instance override goes) and runs."""
    task.__dict__.pop("executing", None)
    task()


class QueueAwareExecutor(MultiThreadedExecutor):
    """``MultiThreadedExecutor`` whose spin thread does not resubmit queued tasks (see module
    docstring). Drop-in: same constructor, same ``spin``/``spin_once``/``shutdown``."""

    def _spin_once_impl(self, timeout_sec: float | None = None,
                        wait_condition: Callable[[], bool] = lambda: False) -> None:
        try:
            handler, _entity, _node = self.wait_for_ready_callbacks(
                timeout_sec, None, wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException,
                ConditionReachedException):
            return
        # Shadow Task.executing() on this instance while it waits in the pool: the executor's
        # generator skips tasks that are executing, so it neither yields nor submits it again.
        handler.executing = _always
        self._executor.submit(_run, handler)
        self._futures.append(handler)
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                future.result()  # raise any exceptions, as rclpy does
