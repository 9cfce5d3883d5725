"""Callbacks that never take their node down: catch, log once per cause, count, go on.

An exception that escapes a subscription, timer or service callback ends ``executor.spin()`` and
with it every node of the process (bringup runs perception, collector and tuner together). Every
callback a node registers goes through :meth:`CallbackGuard.wrap`; the counts are reported on
``/diagnostics`` (``values()``), and a service callback still returns its response object, so
the caller gets an answer instead of a timeout.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

from rclpy.node import Node

from etuner_ros.core.text import printable


class CallbackGuard:
    """Per-node fault counters and the wrapper that feeds them."""

    #: distinct (callback, type, message) causes remembered for "log once"; past it, a new cause
    #: is logged at most once per ``RELOG_S`` per callback, so varying messages cannot flood.
    MAX_CAUSES = 1000
    RELOG_S = 10.0

    def __init__(self, node: Node) -> None:
        self._log = node.get_logger()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._seen: set[tuple[str, str, str]] = set()
        self._last_logged: dict[str, float] = {}
        self._last = ""

    def wrap(self, callback: Callable[..., Any], name: str,
             on_error: Callable[..., Any] | None = None) -> Callable[..., Any]:
        """``callback`` with every ``Exception`` caught, logged and counted under ``name``.

        ``on_error(*args, exc)`` builds the return value after a failure (for a service: fill
        the response with ``success=False`` and the reason and return it); without it the
        wrapper returns the last positional argument (rclpy's response object) for services, or
        None.
        """

        @functools.wraps(callback)
        def guarded(*args: Any) -> Any:
            try:
                return callback(*args)
            except Exception as exc:  # the point of this class: nothing escapes to the executor
                self.record(name, exc)
                if on_error is not None:
                    try:
                        return on_error(*args, exc)
                    except Exception as exc2:
                        self.record(f"{name}.on_error", exc2)
                return args[-1] if len(args) >= 2 else None

        return guarded

    def record(self, name: str, exc: BaseException) -> None:
        """Count a failure; log it at ERROR the first time this (callback, type, message) is
        seen, at DEBUG after that (a bad camera must not flood the log at 30 Hz)."""
        why = printable(f"{type(exc).__name__}: {exc}{_where(exc)}", 260)
        key = (name, type(exc).__name__, str(exc)[:200])
        now = time.monotonic()  # log throttling only: wall-clock pacing of our own output
        with self._lock:
            self._counts[name] += 1
            first = key not in self._seen
            if first:
                if len(self._seen) < self.MAX_CAUSES:
                    self._seen.add(key)
                else:
                    first = now - self._last_logged.get(name, -1e9) >= self.RELOG_S
            if first:
                self._last_logged[name] = now
            self._last = f"{name}: {why}"
            count = self._counts[name]
        if first:
            self._log.error(f"callback {name} failed ({why}); the node goes on "
                            f"[{count} failure(s) of {name} so far]")
        else:
            self._log.debug(f"callback {name} failed again ({why}) [{count}]")

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def count(self, name: str) -> int:
        """Failures of the callback registered as ``name`` so far."""
        with self._lock:
            return self._counts[name]

    def values(self) -> dict[str, Any]:
        """Counters for ``/diagnostics``: ``callback_failures`` and one entry per callback."""
        with self._lock:
            out: dict[str, Any] = {"callback_failures": sum(self._counts.values())}
            out.update({f"failures.{k}": v for k, v in sorted(self._counts.items())})
            if self._last:
                out["last_failure"] = self._last
            return out


def _where(exc: BaseException) -> str:
    """' at file.py:123 in fn' of the innermost frame: the cause, in one log line."""
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return ""
    f = tb[-1]
    return f" at {os.path.basename(f.filename)}:{f.lineno} in {f.name}"
