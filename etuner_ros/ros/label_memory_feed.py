"""Perception's label memory: its parameters, the ``corrections`` subscription, and the answer
for each region (``core/label_memory.py``: a caregiver's label sticks to the view it named).

Kept out of ``perception_node`` (as ``ros/region_feed.py`` is): the node asks :meth:`answer`
for a frame's regions and reports :meth:`values` on ``/diagnostics``. A correction reaches
perception on the same topic the collector reads; the region it names is resolved with the
collector's rule against what perception itself published for that stamp
(``core/recent_views.py``). Every correction ends in one counter: ``memory.added`` or
``memory.rejected.<reason>`` (logged, throttled). Runs on perception's frame callback group,
so frames and corrections never race.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node

from etuner_ros.core.class_names import InvalidClassName, normalise_class
from etuner_ros.core.label_memory import CAPACITY, MAX_AGE_S, THRESHOLD, LabelMemory, MemoryConfig
from etuner_ros.core.recent_views import RecentViews
from etuner_ros.core.region_choice import Published, PublishedFrame, Rejected, box_problem
from etuner_ros.msg import LabelCorrection
from etuner_ros.ros.params import declare
from etuner_ros.ros.qos import corrections_qos
from etuner_ros.ros.region_msgs import correction_box
from etuner_ros.ros.stamps import stamp_ns


class MemoryFeed:
    """Declares the memory parameters on ``node``; see the module docstring."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.enabled = bool(declare(
            node, "label_memory", True, "answer a region with a caregiver's label when its "
            "view is near-identical to a labelled one (core/label_memory.py); false: the "
            "model alone", read_only=True))
        threshold = declare(
            node, "label_memory_threshold", THRESHOLD, "least cosine between two views' keys "
            "(8x8 grey thumbnails) for a remembered label to answer", minimum=0.5,
            maximum=1.0, read_only=True)
        capacity = declare(node, "label_memory_capacity", CAPACITY,
                           "labelled views remembered at most (oldest out)", minimum=1,
                           maximum=100000, read_only=True)
        max_age = declare(node, "label_memory_max_age_s", MAX_AGE_S,
                          "forget a labelled view after this many seconds of ROS time (0: "
                          "only when capacity is reached)", minimum=0.0, maximum=1e6,
                          read_only=True)
        min_iou = declare(node, "region_min_iou", 0.5, "a correction's box names the "
                          "published region it overlaps best with at least this IoU "
                          "(= label_collector's)", minimum=0.05, maximum=1.0, read_only=True)
        self.memory = LabelMemory(MemoryConfig(float(threshold), capacity=int(capacity),
                                               max_age_s=float(max_age)))
        self.views = RecentViews(min_iou=float(min_iou))
        self.counts: Counter[str] = Counter()
        self._sub = None

    def subscribe(self, wrap: Callable, group: CallbackGroup) -> None:
        if self.enabled and self._sub is None:
            self._sub = self.node.create_subscription(
                LabelCorrection, "corrections", wrap(self._on_correction, "corrections"),
                corrections_qos(), callback_group=group)

    def unsubscribe(self) -> None:
        if self._sub is not None:
            self.node.destroy_subscription(self._sub)
            self._sub = None

    def _now_s(self) -> float:
        return self.node.get_clock().now().nanoseconds / 1e9

    def answer(self, stamp: int, crops: Sequence[np.ndarray], boxes: Sequence[tuple],
               names: list[str], scores: list[float], known: Sequence[str], width: int,
               height: int) -> list[bool]:
        """Replace ``names``/``scores`` in place where the memory recalls a label (the score
        becomes the views' cosine); returns which regions were recalled. Remembers the
        frame's regions as published, so a later correction can name them."""
        if not self.enabled:
            return [False] * len(crops)
        keys = self.memory.keys(crops)
        recalled = [False] * len(crops)
        for i, m in enumerate(self.memory.match(keys, known, self._now_s())):
            if m is not None:
                names[i], scores[i], recalled[i] = m[0], m[1], True
        self.counts["recalled"] += sum(recalled)
        published = PublishedFrame(tuple(
            Published(tuple(b), n, s, r)
            for b, n, s, r in zip(boxes, names, scores, recalled, strict=True)))
        self.views.add(stamp, published, keys, width, height)
        return recalled

    def _on_correction(self, msg: LabelCorrection) -> None:
        self.counts["received"] += 1
        try:
            label = normalise_class(msg.true_class)
        except InvalidClassName as exc:
            return self._reject(exc.reason, str(exc))
        box = correction_box(msg)
        problem = box_problem(msg.detection_index, box)
        if problem:
            return self._reject("bad_box", problem)
        key = self.views.key_for(stamp_ns(msg.header.stamp), msg.detection_index, box)
        if isinstance(key, Rejected):
            return self._reject(key.reason, key.detail)
        self.memory.add(key[None, :], [label], self._now_s())
        self.counts["added"] += 1

    def _reject(self, reason: str, detail: str) -> None:
        self.counts[f"rejected.{reason}"] += 1
        self.node.get_logger().warn(f"label memory: correction not remembered "
                                    f"({reason}): {detail}", throttle_duration_sec=5.0)

    def values(self) -> dict:
        """Counters for ``/diagnostics`` (``memory.*``)."""
        out = {f"memory.{k}": v for k, v in sorted(self.counts.items())}
        out["memory.entries"] = len(self.memory)
        out["memory.enabled"] = self.enabled
        return out
