"""A simulated generic object detector over the room world's truth, as a YOLO-like one behaves.

The robot's recogniser runs on an upstream detector's boxes, and that detector knows generic
(COCO) classes, not the household's: it says "bottle" for the water bottle and the medicine
bottle alike and has no word for glasses or keys. Its boxes are a few per cent off, it misses
some objects (more often small or half-covered ones) and fires on background now and then. This
module turns a ``RoomFrame``'s truth into such detections, and says for each which truth object
it came from (None for a false box), so the benchmark and the simulated caregiver can score and
label per object. Every decision is a pure function of (seed, frame index).

``GENERIC_NAMES`` (the household class -> the COCO name a detector would give):

    cup -> cup                 bottle -> bottle          medicine_bottle -> bottle
    book -> book               phone -> cell phone       remote -> remote
    pill_box -> remote         (COCO has no box: a long flat thing with coloured buttons)
    glasses -> scissors        (no eyewear class: two joined loops)
    keys -> scissors           (no keys class: small metal loops and blades)
    walker -> chair            (a metal frame on four legs)

False boxes take a name from ``FALSE_NAMES``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from etuner_ros.core.regions import iou
from etuner_ros.sim.rooms import RoomFrame, RoomObject

GENERIC_NAMES: dict[str, str] = {
    "cup": "cup", "bottle": "bottle", "medicine_bottle": "bottle", "book": "book",
    "phone": "cell phone", "remote": "remote", "pill_box": "remote", "glasses": "scissors",
    "keys": "scissors", "walker": "chair",
}
FALSE_NAMES = ("cup", "bottle", "book", "bowl", "vase", "chair", "remote", "cell phone")
JITTER = 0.05  # each box edge moves by up to this share of the box's width or height
_KEY = 0x5D37EC7  # the detector's RNG stream, apart from the world's


@dataclass(frozen=True)
class Detection:
    """One box as an upstream detector publishes it, plus the truth behind it (sim only)."""

    box: tuple[int, int, int, int]  # x, y, w, h in pixels, inside the image
    name: str  # generic (COCO) class name
    score: float  # confidence in (0, 1)
    upstream_id: str  # the detector's id for this box: "<frame index>-<rank>"
    truth_id: int | None  # RoomObject.object_id it came from; None: a false box
    truth_label: str | None  # that object's household class; None: a false box


def jitter_box(box: Sequence[int], fraction: float, rng: np.random.Generator,
               image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Move each edge of ``box`` (x, y, w, h) by up to ``fraction`` of the box's width (left,
    right) or height (top, bottom), uniformly, then round and clip to the image; at least one
    pixel wide and high."""
    x, y, w, h = (float(v) for v in box)
    iw, ih = image_size
    dl, dr = rng.uniform(-fraction, fraction, 2) * w
    dt, db = rng.uniform(-fraction, fraction, 2) * h
    x0 = int(np.clip(round(x + dl), 0, iw - 1))
    y0 = int(np.clip(round(y + dt), 0, ih - 1))
    x1 = int(np.clip(round(x + w + dr), x0 + 1, iw))
    y1 = int(np.clip(round(y + h + db), y0 + 1, ih))
    return x0, y0, x1 - x0, y1 - y0


class SimDetector:
    """Detections for a ``RoomFrame``: jittered boxes, misses, false boxes, generic names.

    A truth object is missed with probability ``miss_rate + occluded_miss * (1 - visible) +
    small_miss * max(0, 1 - side / small_side)`` (clipped to [0, 1]), ``side`` being the square
    root of its box area over the image height. A frame gets Poisson(``false_rate``) false boxes
    on background (IoU < 0.2 with every object in view). A detected object is given another
    generic name with probability ``confusion``. Scores: about 0.55 + 0.4 * visible for true
    boxes, 0.25-0.6 for false ones. Output is sorted by score, as detectors publish.
    """

    def __init__(self, seed: int = 0, *, miss_rate: float = 0.05, occluded_miss: float = 0.3,
                 small_miss: float = 0.3, small_side: float = 0.12, false_rate: float = 0.2,
                 jitter: float = JITTER, confusion: float = 0.03,
                 names: Mapping[str, str] | None = None) -> None:
        rates = {"miss_rate": miss_rate, "occluded_miss": occluded_miss,
                 "small_miss": small_miss, "confusion": confusion}
        bad = {k: v for k, v in rates.items() if not 0.0 <= v <= 1.0}
        if bad or false_rate < 0 or not 0 <= jitter < 0.5 or small_side <= 0:
            raise ValueError(f"need rates in [0, 1] (bad: {bad}), false_rate >= 0, "
                             f"0 <= jitter < 0.5, small_side > 0; got false_rate={false_rate}, "
                             f"jitter={jitter}, small_side={small_side}")
        self.seed = int(seed)
        self.miss_rate, self.occluded_miss = float(miss_rate), float(occluded_miss)
        self.small_miss, self.small_side = float(small_miss), float(small_side)
        self.false_rate, self.jitter, self.confusion = float(false_rate), float(jitter), \
            float(confusion)
        self.names = dict(GENERIC_NAMES if names is None else names)

    def generic_name(self, label: str) -> str:
        """The detector's name for a household class (unmapped classes keep their own)."""
        return self.names.get(label, label)

    def miss_probability(self, obj: RoomObject, image_height: int) -> float:
        side = np.sqrt(obj.box[2] * obj.box[3]) / image_height
        p = self.miss_rate + self.occluded_miss * (1.0 - obj.visible) + \
            self.small_miss * max(0.0, 1.0 - side / self.small_side)
        return float(np.clip(p, 0.0, 1.0))

    def detect(self, frame: RoomFrame) -> list[Detection]:
        """This detector's output on ``frame``; the same for the same (seed, frame.index)."""
        rng = np.random.default_rng([self.seed, _KEY, frame.index])
        ih, iw = frame.image.shape[:2]
        vocabulary = sorted(set(self.names.values()))
        found: list[tuple[tuple[int, int, int, int], str, float, int | None, str | None]] = []
        for obj in frame.objects:  # every draw made for every object: decisions independent
            u_miss, u_conf = rng.random(2)
            other = vocabulary[int(rng.integers(len(vocabulary)))]
            box = jitter_box(obj.box, self.jitter, rng, (iw, ih))
            score = float(np.clip(0.55 + 0.4 * obj.visible + rng.normal(0, 0.04), 0.3, 0.99))
            if u_miss < self.miss_probability(obj, ih):
                continue
            name = other if u_conf < self.confusion else self.generic_name(obj.label)
            found.append((box, name, score, obj.object_id, obj.label))
        taken = [o.box for o in frame.objects + frame.hidden]
        for _ in range(int(rng.poisson(self.false_rate))):
            for _try in range(10):  # somewhere on background
                bw = int(ih * rng.uniform(0.08, 0.35) * rng.uniform(0.6, 1.6))
                bh = int(ih * rng.uniform(0.08, 0.35))
                bw, bh = max(2, min(bw, iw)), max(2, min(bh, ih))
                box = (int(rng.integers(0, iw - bw + 1)), int(rng.integers(0, ih - bh + 1)),
                       bw, bh)
                if all(iou(box, t) < 0.2 for t in taken):
                    name = FALSE_NAMES[int(rng.integers(len(FALSE_NAMES)))]
                    found.append((box, name, float(rng.uniform(0.25, 0.6)), None, None))
                    taken.append(box)
                    break
        found.sort(key=lambda d: -d[2])
        return [Detection(box, name, round(score, 4), f"{frame.index}-{k}", tid, label)
                for k, (box, name, score, tid, label) in enumerate(found)]

    __call__ = detect
