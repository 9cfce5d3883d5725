"""One operation at a time in the tuner node: the round or rollback running, the swap it waits
on, the state ``~/status`` shows and the last error.

Kept apart from ``tuner_node`` so the rule lives in one place. An operation starts only under
:attr:`TunerOps.lock` after :meth:`TunerOps.busy_message` said none runs, so any number of
concurrent ``~/force_tune`` or ``~/rollback`` calls start at most one, and every other call is
answered (``success=false`` with the reason). While perception is asked to swap
(:meth:`TunerOps.swap`), :attr:`TunerOps.swapping` names the version: its ``model_info`` is left
to the operation, which deploys it from the swap answer.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import NamedTuple

from rclpy.client import Client
from rclpy.impl.rcutils_logger import RcutilsLogger

from etuner_ros.core.text import printable
from etuner_ros.msg import TunerStatus
from etuner_ros.srv import SwapWeights


class SwapOutcome(NamedTuple):
    """Perception's answer to a swap; ``answered`` is False when none came (service absent or
    no answer in time), and then ``active`` (perception's active version) is unknown: 0."""

    ok: bool
    message: str
    active: int
    answered: bool


class TunerOps:
    """See the module docstring. ``counts``: calls answered and swaps failed, for ``~/status``
    and ``/diagnostics``."""

    def __init__(self, logger: RcutilsLogger) -> None:
        self.lock = threading.Lock()  # feed + decide + start of an operation are one step
        self.name: str | None = None  # the round or rollback running, None when idle
        self._started = 0.0
        self.swapping = 0             # version whose swap is in flight (its model_info waits)
        self.state = TunerStatus.STATE_WAITING
        self.reason = "waiting for perception's model_info"
        self.last_error = ""
        self._failed_swap = 0         # version whose failed swap is the standing error
        self.counts = {"force_calls": 0, "force_refused": 0, "rollbacks": 0,
                       "rollbacks_refused": 0, "swaps_failed": 0}
        self._log = logger

    @property
    def busy(self) -> bool:
        """A round or a rollback is running (takes the lock: not for a caller holding it)."""
        with self.lock:
            return self.name is not None

    def busy_message(self) -> str | None:
        """Why no operation may start now (one runs), or None. Caller holds :attr:`lock`."""
        if self.name is None:
            return None
        return (f"refused: {self.name} is running "
                f"({time.monotonic() - self._started:.0f} s); one at a time")

    def start(self, name: str) -> None:
        """Caller holds :attr:`lock` and checked that none runs. Clears a standing error."""
        self.name, self._started = name, time.monotonic()
        if self.state == TunerStatus.STATE_ERROR:
            self.state, self._failed_swap = TunerStatus.STATE_IDLE, 0

    def rest(self, state: int, reason: str | None = None) -> None:
        """The state between operations (idle, paused). An operation's error stands until the
        next operation starts, so ``~/status`` and ``/diagnostics`` show it and its cause
        instead of the next poll's idle. Caller holds :attr:`lock`."""
        if self.state == TunerStatus.STATE_ERROR:
            return
        self.state = state
        if reason is not None:
            self.reason = reason

    def finish(self) -> None:
        """The operation ended, however it ended."""
        with self.lock:
            self.name, self.swapping = None, 0

    def set_error(self, why: str, swap_version: int = 0) -> None:
        """The operation failed; ``swap_version``: the version whose swap failed (perception
        may still announce it, see :meth:`served_late`)."""
        self.state, self.last_error, self.reason = TunerStatus.STATE_ERROR, why, why
        self._failed_swap = swap_version
        self._log.error(why)

    def served_late(self, version: int) -> bool:
        """Perception announced ``version`` after its failed swap had set the standing error:
        the error is answered (``last_error`` keeps it for the record), and the tuner is idle
        again instead of showing ERROR until the next operation. Caller holds :attr:`lock`."""
        if self.state != TunerStatus.STATE_ERROR or not version or version != self._failed_swap:
            return False
        self.state, self._failed_swap = TunerStatus.STATE_IDLE, 0
        self.reason = f"v{version} serves: perception announced it after its swap failed"
        self._log.info(self.reason)
        return True

    def swap(self, client: Client, path: Path, version: int, timeout: float) -> SwapOutcome:
        """Ask perception to serve ``path`` as ``version``. Until the caller deploys and clears
        :attr:`swapping`, model_info of this version is left to it."""
        if not client.wait_for_service(timeout_sec=timeout):
            return SwapOutcome(False, f"swap service {client.srv_name} not available", 0, False)
        with self.lock:
            self.swapping = version
        req = SwapWeights.Request(checkpoint_path=str(path), version=version)
        future = client.call_async(req)
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        res = future.result() if future.done() else None
        if not future.done():  # a late answer must not land on a future nobody reads
            client.remove_pending_request(future)
            future.cancel()
        if res is None:
            self.counts["swaps_failed"] += 1
            return SwapOutcome(False, f"no answer in {timeout:.0f} s", 0, False)
        active = int(res.active_version)
        if not res.success or active != version:
            self.counts["swaps_failed"] += 1
            return SwapOutcome(False, printable(res.message, 300), active, True)
        return SwapOutcome(True, printable(res.message, 300), active, True)


def answer_failure(*args) -> object:
    """``CallbackGuard.wrap``'s ``on_error`` for the tuner's services: a callback that raised
    still answers, success false with the cause."""
    res, exc = args[-2], args[-1]
    res.success = False
    res.message = f"failed: {type(exc).__name__}: {printable(exc, 200)}"
    return res
