"""Perception's recent views: what a caregiver's correction of a recent frame names, as view keys.

Why: perception answers from the label memory (``core/label_memory.py``), so it must turn a
correction (a stamp, and a detection index or box, ``msg/LabelCorrection.msg``) into the view
key of the region it names. It keeps, for the newest ``capacity`` stamps it published, its own
DetectionArray (boxes and answers) and each region's key, and resolves the region with the
collector's rule (``core/region_choice.py``), so both nodes agree on which region a correction
names. Pure: no ROS.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from etuner_ros.core.region_choice import (
    PublishedFrame,
    RawBox,
    Rejected,
    choose_region,
)

NO_FRAME = "no_frame"  # the stamp is not (or no longer) among the recent views
WHOLE_FRAME = "whole_frame"  # the rule fell back to the whole frame, which has no key here


@dataclass(frozen=True)
class _Views:
    published: PublishedFrame
    keys: np.ndarray  # [regions, D], in the published order
    width: int
    height: int


class RecentViews:
    """The newest ``capacity`` published frames' regions and keys, by stamp (ns)."""

    def __init__(self, capacity: int = 256, min_iou: float = 0.5) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity, self.min_iou = capacity, min_iou
        self._by_stamp: OrderedDict[int, _Views] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_stamp)

    def add(self, stamp_ns: int, published: PublishedFrame, keys: np.ndarray, width: int,
            height: int) -> None:
        """Remember one published frame (a stamp published twice keeps the newest)."""
        if len(keys) != len(published.detections):
            raise ValueError(f"{len(keys)} keys for {len(published.detections)} detections")
        self._by_stamp.pop(stamp_ns, None)
        self._by_stamp[stamp_ns] = _Views(published, np.asarray(keys, np.float32), width,
                                          height)
        while len(self._by_stamp) > self.capacity:
            self._by_stamp.popitem(last=False)

    def key_for(self, stamp_ns: int, detection_index: int, box: RawBox | None
                ) -> np.ndarray | Rejected:
        """The key of the region a correction names, or why there is none (``reason`` is a
        counter name: ``no_frame``, ``whole_frame``, or the rule's ``no_region`` / ``bad_box``)."""
        v = self._by_stamp.get(stamp_ns)
        if v is None:
            return Rejected(NO_FRAME, f"stamp {stamp_ns} is not among the {len(self)} newest "
                                      "frames perception published")
        region = choose_region(detection_index, box, v.published, v.width, v.height,
                               self.min_iou)
        if isinstance(region, Rejected):
            return region
        if region is None or region.index < 0:  # cannot happen with detections published
            return Rejected(WHOLE_FRAME, "no published region to remember")
        return v.keys[region.index]
