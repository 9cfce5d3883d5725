"""Where every correction the label collector received ended, counted and logged.

Every correction ends in exactly one counter: ``stored`` or ``held`` (committed), ``rejected.
<reason>`` or ``dropped``; ``/diagnostics`` reports them all, so nothing is lost silently. The
counters are shared by the executor's callbacks and the writer thread, hence one lock. Log lines
carry caller-supplied names escaped (``printable``) and are rate-limited per reason (the first
10, then every 100th), so a flood of bad corrections cannot flood the log. The per-batch INFO
line ``committed N sample(s) [ids ...]`` is written only after the batch is committed: a reader
of the log may take every id in it as durable.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from rclpy.impl.rcutils_logger import RcutilsLogger

from etuner_ros.core.text import printable
from etuner_ros.msg import LabelCorrection
from etuner_ros.ros.diagnostics import OK, WARN
from etuner_ros.ros.stamps import stamp_ns

#: counters reported on /diagnostics, in this order, 0 until first counted
REPORTED = ("received", "stored", "held", "promoted", "superseded", "dropped", "frames",
            "oversize_frames", "unlabelled_kept", "unlabelled_skipped", "unlabelled_no_detections",
            "unlabelled_bad_image", "incompatible_publishers", "lost_in_transport")


def id_ranges(ids: list[int]) -> str:
    """[3, 4, 5, 9] -> '3-5,9' (acknowledged ids in one log line)."""
    out: list[str] = []
    for i in sorted(ids):
        if out and int(out[-1].split("-")[-1]) == i - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{i}"
        else:
            out.append(str(i))
    return ",".join(out)


class CorrectionLedger:
    """Thread-safe counters of the collector, with the log line of each outcome."""

    def __init__(self, logger: RcutilsLogger) -> None:
        self._log = logger
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        self.last_rejection = ""

    @property
    def stored(self) -> int:
        """Corrections committed as training samples (held ones released later included)."""
        with self._lock:
            return self.counts["stored"] + self.counts["promoted"]

    @property
    def rejected(self) -> int:
        with self._lock:
            return sum(self.rejections.values())

    @property
    def unlabelled_kept(self) -> int:
        with self._lock:
            return self.counts["unlabelled_kept"]

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def reject(self, msg: LabelCorrection, reason: str, detail: str = "") -> None:
        """Count under ``reason``; log the first 10 of each reason, then every 100th."""
        with self._lock:
            self.rejections[reason] += 1
            n = self.rejections[reason]
            total = sum(self.rejections.values())
            self.last_rejection = f"{reason}: {printable(msg.true_class, 40)}"
        if n <= 10 or n % 100 == 0:
            self._log.warn(
                f"rejected correction '{printable(msg.true_class, 70)}' for stamp "
                f"{stamp_ns(msg.header.stamp)} from '{printable(msg.source, 40)}': {reason}"
                f"{': ' + printable(detail, 160) if detail else ''} "
                f"[{n} {reason}, {total} rejected so far]")

    def drop(self, msg: LabelCorrection, why: str) -> None:
        """Count a correction the bounded queues had no room for; logged like a rejection."""
        with self._lock:
            self.counts["dropped"] += 1
            n = self.counts["dropped"]
        if n <= 10 or n % 100 == 0:
            self._log.warn(
                f"dropped correction '{printable(msg.true_class, 70)}' for stamp "
                f"{stamp_ns(msg.header.stamp)}: {why} [{n} dropped so far]")

    def released(self, promoted: list[int]) -> None:
        """Held samples released because the model now has their class (committed)."""
        if promoted:
            self.count("promoted", len(promoted))
            self._log.info(f"released {len(promoted)} held sample(s) whose class "
                           f"the model now has [ids {id_ranges(promoted)}]")

    def committed(self, stored: list[int], held: list[int], superseded: int,
                  promoted: list[int]) -> None:
        """Count one committed batch (call only after the commit) and log its ids."""
        with self._lock:
            self.counts["stored"] += len(stored)
            self.counts["held"] += len(held)
            self.counts["superseded"] += superseded
            self.counts["promoted"] += len(promoted)
        if stored or held:
            self._log.info(
                f"committed {len(stored)} sample(s) [ids {id_ranges(stored) or '-'}], held "
                f"{len(held)} [held ids {id_ranges(held) or '-'}], superseded {superseded}, "
                f"released {len(promoted)} held [ids {id_ranges(promoted) or '-'}]")

    def diagnosis(self, since_frame_s: float, no_frame_warn_s: float, extra: dict[str, Any],
                  failures: dict[str, Any]) -> tuple[bytes, str, dict[str, Any]]:
        """Level, message and values for ``/diagnostics``: the counters, ``extra`` (the node's
        queues, cache and store), the last rejection, ``failures`` (``CallbackGuard.values()``);
        WARN naming every problem, else OK with the number stored."""
        with self._lock:
            counts, rejections = dict(self.counts), dict(self.rejections)
            last = self.last_rejection
        rejected = sum(rejections.values())
        values: dict[str, Any] = {k: counts.get(k, 0) for k in REPORTED}
        values["rejected"] = rejected
        values.update({f"rejected.{k}": v for k, v in sorted(rejections.items())})
        values.update(extra)
        values["last_rejection"] = last
        values.update(failures)
        problems = []
        if no_frame_warn_s > 0 and since_frame_s > no_frame_warn_s:
            problems.append(f"no frames for {since_frame_s:.0f} s")
        if counts.get("dropped"):
            problems.append(f"{counts['dropped']} correction(s) dropped")
        if rejected:
            problems.append(f"{rejected} correction(s) rejected, last {last}")
        if values["callback_failures"]:
            problems.append(f"{values['callback_failures']} callback failure(s)")
        if counts.get("lost_in_transport"):
            problems.append(f"DDS lost {counts['lost_in_transport']} correction(s)")
        if counts.get("incompatible_publishers"):
            problems.append("a corrections publisher has an incompatible QoS")
        if problems:
            return WARN, "; ".join(problems), values
        return OK, f"{counts.get('stored', 0)} samples stored", values
