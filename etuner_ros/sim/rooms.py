"""Room frames with several household objects at once: ground-truth boxes, ids and visibility.

A robot that recognises each object in view needs a world that shows many: this one draws rooms
with 0-N objects (clutter, objects covering each other, objects coming and going) on top of
world.py's drawing, room textures, lighting and camera model, so an object looks the same as in
the single-object world and the scenarios shift the same way (light, room, noise, new classes).

The camera looks at one room per scenario and sways slowly over its texture; background clutter
and the objects sit in room coordinates, so they move with the room. Each object also drifts a
little on its own (position, turn, size: a smooth function of its age, because people nudge
things). Each has a depth: far ones are smaller, higher in the picture and drawn first, so
nearer ones cover them.

Who is in view: ``objects[1]`` slots; a slot holds one object after another, each for a dwell
of ``dwell_s`` seconds at ``fps``; the first ``objects[0]`` slots are refilled at once, the
others stay empty for a gap of ``gap_s`` seconds. Each slot has its own seeded schedule and each
object its own seeded look and drift, so frame i of a scenario is a pure function of (seed,
split, scenario position, i): it needs the slots' schedules up to i (cheap integers, cached),
never the frames before. Sensor noise and light flicker are fresh in every frame. Splits other
than "stream" (e.g. "train", "val") draw an independent scene per frame, the way a dataset is
collected.

The truth (``RoomFrame.objects``) lists objects with at least ``min_visible`` of their
silhouette visible (not covered, inside the image), with the box of their visible pixels; the
rest are in ``RoomFrame.hidden``, ids kept. An id stays with one object while it is in view.
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

import cv2
import numpy as np

from etuner_ros.sim.shapes import CLASS_PALETTES
from etuner_ros.sim.world import (
    _UPRIGHT,
    Scenario,
    SyntheticWorld,
    _camera,
    _draw_object,
    _flicker,
    _jitter,
    _light,
    _occlude,
    _View,
)

# bump when room rendering, scheduling or defaults change (with world.WORLD_VERSION, a crop-
# pretrained model's cache key)
ROOMS_VERSION = 1
FPS = 8.0  # the sim camera's frame rate: dwell and gap times are in seconds at this rate
OBJECTS = (1, 6)  # objects in view (the first number always, the second at most)
DWELL_S = (2.0, 8.0)  # seconds an object stays in view
GAP_S = (0.5, 5.0)  # seconds an optional slot stays empty
OBJECT_SIZE = (0.22, 0.45)  # long side as a share of the image height, far .. near
MIN_VISIBLE = 0.3  # less visible than this: hidden, not in the truth
MAX_SLOTS = 10  # object ids are pos * 1e6 + slot * 1e5 + serial
_HAND = (224, 172, 140)


@dataclass(frozen=True)
class RoomObject:
    """One object's ground truth in one frame."""

    object_id: int  # stable while the object stays in view; unique within a stream
    label: str
    box: tuple[int, int, int, int]  # x, y, w, h of its visible pixels; (0, 0, 0, 0): none
    visible: float  # visible share of its silhouette (covered or outside the image: not)


@dataclass(frozen=True, eq=False)
class RoomFrame:
    """One camera frame with its truth; ``index`` counts frames across the whole stream."""

    index: int
    image: np.ndarray  # RGB uint8, H x W x 3
    scenario: str
    objects: tuple[RoomObject, ...]  # at least min_visible visible; far to near
    hidden: tuple[RoomObject, ...] = ()  # in view but mostly covered or outside the image


@dataclass(frozen=True, eq=False)
class _Thing:
    """One physical object: look, place at birth (room coordinates) and drift."""

    object_id: int
    label: str
    birth: int
    z: float  # depth: 0 far, 1 near
    view: _View  # pose at birth; centre in room-texture pixels
    drift: np.ndarray  # 3 x 4: amplitude, angular frequency, phase of (x, y, angle, log size)

    def view_at(self, t: int, ox: int, oy: int) -> _View:
        amp, omega, phase = self.drift
        d = amp * (np.sin(omega * (t - self.birth) + phase) - np.sin(phase))
        limit = np.deg2rad(_UPRIGHT.get(self.label, 60 if self.label != "keys" else 180))
        v = self.view
        return replace(v, centre=v.centre + d[:2] - (ox, oy),
                       angle=float(np.clip(v.angle + d[2], -limit, limit)),
                       size=float(v.size * np.exp(d[3])))


@dataclass(frozen=True, eq=False)
class _Camera:
    """Where the camera looks (room-texture row, col), how it sways, the scenario's light."""

    base: np.ndarray
    sway: np.ndarray  # 3 x 2: amplitude, angular frequency, phase of (row, col)
    limit: np.ndarray  # largest (row, col) inside the texture
    light: np.ndarray

    def window(self, t: int) -> tuple[int, int]:
        amp, omega, phase = self.sway
        r, c = np.clip(np.rint(self.base + amp * np.sin(omega * t + phase)), 0, self.limit)
        return int(r), int(c)


class RoomWorld:
    """Seeded rooms with several objects: ``stream()`` for the benchmark, ``frames()`` with a
    split for training sets. Scenarios, classes and validation are ``SyntheticWorld``'s."""

    def __init__(self, seed: int, image_size: tuple[int, int] | int = (128, 96),
                 scenarios: list[Scenario] | None = None, *,
                 objects: tuple[int, int] = OBJECTS, dwell_s: tuple[float, float] = DWELL_S,
                 gap_s: tuple[float, float] = GAP_S, fps: float = FPS,
                 object_size: tuple[float, float] = OBJECT_SIZE,
                 min_visible: float = MIN_VISIBLE) -> None:
        self.world = SyntheticWorld(seed, image_size, scenarios)
        self.seed = self.world.seed
        self.image_size = self.world.image_size
        self.scenarios = self.world.scenarios
        lo, hi = (int(v) for v in objects)
        if not (0 <= lo <= hi <= MAX_SLOTS and hi >= 1):
            raise ValueError(f"objects {objects}: need 0 <= fewest <= most <= {MAX_SLOTS}, "
                             "most >= 1")
        if fps <= 0 or not 0 < dwell_s[0] <= dwell_s[1] or not 0 <= gap_s[0] <= gap_s[1]:
            raise ValueError(f"need fps > 0, 0 < dwell_s[0] <= dwell_s[1], 0 <= gap_s[0] <= "
                             f"gap_s[1]; got fps={fps}, dwell_s={dwell_s}, gap_s={gap_s}")
        if not 0 < object_size[0] <= object_size[1] <= 1 or not 0 <= min_visible <= 1:
            raise ValueError(f"need 0 < object_size[0] <= object_size[1] <= 1 and min_visible "
                             f"in [0, 1]; got {object_size}, {min_visible}")
        self.objects = (lo, hi)
        self.fps = float(fps)
        self.dwell = tuple(max(1, round(s * fps)) for s in dwell_s)  # frames
        self.gap = tuple(round(s * fps) for s in gap_s)
        self.object_size = (float(object_size[0]), float(object_size[1]))
        self.min_visible = float(min_visible)
        self._furnished: dict[int, np.ndarray] = {}
        self._cameras: dict[tuple[str, int], _Camera] = {}
        self._slots: dict[tuple[str, int], list[list[tuple[int, int]]]] = {}
        self._slot_rngs: dict[tuple[str, int], list[np.random.Generator]] = {}
        self._things: dict[tuple, _Thing] = {}

    # ----- what the world contains (the single-object world's scenarios) -----
    def scenario(self, name: str) -> Scenario:
        return self.world.scenario(name)

    def class_names_seen_in(self, scenario: str | Scenario) -> list[str]:
        return self.world.class_names_seen_in(scenario)

    def all_class_names(self) -> list[str]:
        return self.world.all_class_names()

    # ----- frames -----
    def stream(self, frames_per_scenario: int) -> Iterator[RoomFrame]:
        """The whole schedule, scenario after scenario, rendered lazily."""
        index = 0
        for sc in self.scenarios:
            for i in range(frames_per_scenario):
                yield self.frame(sc.name, i, index=index)
                index += 1

    def frames(self, scenario: str, n: int, *, split: str = "stream",
               start_index: int = 0) -> list[RoomFrame]:
        """Frames 0..n-1 of one scenario (indices from ``start_index``)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return [self.frame(scenario, i, split=split, index=start_index + i) for i in range(n)]

    def frame(self, scenario: str, i: int, *, split: str = "stream",
              index: int | None = None) -> RoomFrame:
        """Frame ``i`` of a scenario: the same bytes whatever was rendered before. ``index``
        (default ``i``) only labels it."""
        if i < 0:
            raise ValueError(f"frame number must be >= 0, got {i}")
        sc = self.scenario(scenario)
        pos = self.scenarios.index(sc)
        key = zlib.crc32(split.encode())
        if split == "stream":
            cam = self._camera(split, pos)
            things = [self._thing(sc, split, pos, s, serial, start, cam)
                      for s, serial, start in self._in_view(split, pos, i)]
        else:  # an independent scene per frame
            rng = np.random.default_rng([self.seed, key, pos, 5, i])
            cam = self._new_camera(sc, rng, still=True)
            n = int(rng.integers(max(1, self.objects[0]), self.objects[1] + 1))
            things = [self._new_thing(sc, rng, pos * 1_000_000 + k * 100_000 + i % 100_000,
                                      i, cam) for k in range(n)]
        things.sort(key=lambda th: (th.z, th.object_id))
        image, truth = self._render(sc, pos, cam, things, i,
                                    np.random.default_rng([self.seed, key, pos, 6, i]))
        shown = tuple(o for o in truth if o.visible >= self.min_visible)
        hidden = tuple(o for o in truth if o.visible < self.min_visible)
        return RoomFrame(i if index is None else int(index), image, sc.name, shown, hidden)

    # ----- the scene -----
    def _in_view(self, split: str, pos: int, t: int) -> list[tuple[int, int, int]]:
        """(slot, serial, birth) of each object in view at frame ``t``."""
        if (split, pos) not in self._slots:
            n = self.objects[1]
            self._slots[split, pos] = [[] for _ in range(n)]
            key = zlib.crc32(split.encode())
            self._slot_rngs[split, pos] = [np.random.default_rng([self.seed, key, pos, 1, s])
                                           for s in range(n)]
        out = []
        for s, (ivs, rng) in enumerate(zip(self._slots[split, pos],
                                           self._slot_rngs[split, pos], strict=True)):
            always = s < self.objects[0]
            while not ivs or ivs[-1][1] <= t:  # extend this slot's (start, end) schedule
                dwell = int(rng.integers(self.dwell[0], self.dwell[1] + 1))
                if ivs:
                    start = ivs[-1][1] + (0 if always else
                                          int(rng.integers(self.gap[0], self.gap[1] + 1)))
                elif always or rng.random() < 0.5:  # in view since before frame 0
                    start = -int(rng.integers(0, dwell))
                else:
                    start = int(rng.integers(0, self.gap[1] + 1))
                ivs.append((start, start + dwell))
            k = bisect.bisect_right(ivs, t, key=lambda iv: iv[0]) - 1  # last to start <= t
            if k >= 0 and t < ivs[k][1]:
                out.append((s, k, ivs[k][0]))
        return out

    def _thing(self, sc: Scenario, split: str, pos: int, slot: int, serial: int, birth: int,
               cam: _Camera) -> _Thing:
        k = (split, pos, slot, serial)
        if k not in self._things:
            if len(self._things) > 4096:  # a long stream: old objects are gone for good
                self._things.clear()
            rng = np.random.default_rng([self.seed, zlib.crc32(split.encode()), pos, 2, slot,
                                         serial])
            self._things[k] = self._new_thing(sc, rng, pos * 1_000_000 + slot * 100_000
                                              + serial, birth, cam)
        return self._things[k]

    def _new_thing(self, sc: Scenario, rng: np.random.Generator, object_id: int, birth: int,
                   cam: _Camera) -> _Thing:
        """A fresh object: class, look, depth, a place in the camera's view at birth, drift."""
        w, h = self.image_size
        label = str(sc.classes[int(rng.integers(len(sc.classes)))])
        z = float(rng.random())
        lo, hi = self.object_size
        size = h * (lo + (hi - lo) * z) * rng.uniform(0.9, 1.1) * (1.5 if label == "walker"
                                                                   else 1.0)
        size = min(size, 0.95 * h)
        limit = _UPRIGHT.get(label, 60 if label != "keys" else 180)
        row, col = cam.window(birth)
        centre = np.array([col + w * rng.uniform(0.06, 0.94),
                           row + h * (0.3 + 0.5 * z + rng.normal(0, 0.04))])
        roles = {role: _jitter(opts[int(rng.integers(len(opts)))], rng, 18)
                 for role, opts in CLASS_PALETTES[label].items()}
        occluder = None
        if rng.random() < sc.occlusion:  # a hand or a towel covers part of it
            colour = _jitter(_HAND, rng, 20) if rng.random() < 0.5 else \
                tuple(int(c) for c in rng.integers(40, 240, 3))
            occluder = (colour, rng.uniform(0.15, 0.35), rng.uniform(0.15, 0.35),
                        int(rng.integers(4)))
        view = _View(np.zeros(2), [], size, float(np.deg2rad(rng.uniform(-limit, limit))),
                     -1.0 if rng.random() < 0.5 else 1.0, rng.uniform(0.9, 1.1), centre, roles,
                     occluder, np.ones(3))
        period = rng.uniform(4.0, 16.0, 4) * self.fps  # frames
        amp = np.array([0.03 * w, 0.02 * h, 0.0, 0.03]) * rng.uniform(0.2, 1.0, 4)
        amp[2] = np.deg2rad(rng.uniform(1.0, 6.0))
        drift = np.stack([amp, 2 * np.pi / period, rng.uniform(0, 2 * np.pi, 4)])
        return _Thing(object_id, label, birth, z, view, drift)

    def _camera(self, split: str, pos: int) -> _Camera:
        if (split, pos) not in self._cameras:
            rng = np.random.default_rng([self.seed, zlib.crc32(split.encode()), pos, 4])
            self._cameras[split, pos] = self._new_camera(self.scenarios[pos], rng, still=False)
        return self._cameras[split, pos]

    def _new_camera(self, sc: Scenario, rng: np.random.Generator, still: bool) -> _Camera:
        """A resting view of the room with room to sway, sway (none if ``still``), light."""
        w, h = self.image_size
        th, tw = self.world._room(sc.room)[0].shape[:2]
        limit = np.array([th - h, tw - w], float)
        amp = np.zeros(2) if still else limit * 0.25 * rng.uniform(0.3, 1.0, 2)
        base = amp + rng.random(2) * (limit - 2 * amp)
        period = rng.uniform(10.0, 30.0, 2) * self.fps
        sway = np.stack([amp, 2 * np.pi / period, rng.uniform(0, 2 * np.pi, 2)])
        return _Camera(base, sway, limit, _light(sc.lighting, rng))

    def _room(self, pos: int) -> np.ndarray:
        """The scenario's room texture with its background clutter (not a class) drawn in."""
        if pos not in self._furnished:
            sc = self.scenarios[pos]
            texture, palette = self.world._room(sc.room)
            img = texture.copy()
            th, tw = img.shape[:2]
            w, h = self.image_size
            rng = np.random.default_rng([self.seed, zlib.crc32(sc.room.encode()), pos, 3])
            for _ in range(int(rng.integers(2, 7))):
                colour = palette[int(rng.integers(len(palette)))]
                c = (int(rng.integers(0, tw)), int(rng.integers(th // 2, th)))
                axes = (int(rng.integers(3, max(4, w // 10))), int(rng.integers(2, max(3,
                                                                                     h // 12))))
                cv2.ellipse(img, c, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1,
                            cv2.LINE_AA)
            self._furnished[pos] = img
        return self._furnished[pos]

    # ----- drawing -----
    def _render(self, sc: Scenario, pos: int, cam: _Camera, things: list[_Thing], t: int,
                rng: np.random.Generator) -> tuple[np.ndarray, list[RoomObject]]:
        """Draw far to near, keeping which object owns each pixel; then the camera model."""
        w, h = self.image_size
        oy, ox = cam.window(t)
        img = self._room(pos)[oy:oy + h, ox:ox + w].copy()
        owner = np.full((h, w), -1, np.int16)  # -1 background, -2 an object's occluder
        regions, areas = [], []
        for j, th in enumerate(things):
            v = th.view_at(t, ox, oy)
            bbox = _draw_object(img, th.label, v)
            area, region = _paint_owner(owner, th.label, v, j)
            areas.append(area)
            regions.append(region)
            if v.occluder is not None:
                cover = np.zeros((h, w), np.uint8)
                _occlude(cover, bbox, (255, *v.occluder[1:]))
                _occlude(img, bbox, v.occluder)
                owner[cover > 127] = -2
        truth = []
        for j, th in enumerate(things):
            y0, y1, x0, x1 = regions[j]
            ys, xs = np.nonzero(owner[y0:y1, x0:x1] == j)
            box = (0, 0, 0, 0) if not len(xs) else (
                int(xs.min() + x0), int(ys.min() + y0), int(xs.max() - xs.min() + 1),
                int(ys.max() - ys.min() + 1))
            truth.append(RoomObject(th.object_id, th.label, box,
                                    round(len(xs) / max(areas[j], 1), 4)))
        return _camera(img, sc, _flicker(cam.light, rng), rng), truth


def _paint_owner(owner: np.ndarray, label: str, v: _View,
                 j: int) -> tuple[int, tuple[int, int, int, int]]:
    """Mark object ``j``'s silhouette in ``owner``; returns its full area in pixels (inside
    the image or not) and the image region (y0, y1, x0, x1) it may cover."""
    r = int(np.ceil(v.size * 0.8)) + 2
    cx, cy = v.centre
    ix, iy = int(np.floor(cx)), int(np.floor(cy))
    canvas = np.zeros((2 * r + 1, 2 * r + 1, 3), np.uint8)  # same sub-pixel phase as the image
    white = {role: (255, 255, 255) for role in v.roles}
    _draw_object(canvas, label, replace(v, centre=np.array([cx - ix + r, cy - iy + r]),
                                        roles=white))
    mask = canvas[..., 0] > 127
    h, w = owner.shape
    x0, y0 = ix - r, iy - r
    ax0, ay0 = max(0, x0), max(0, y0)
    ax1, ay1 = min(w, x0 + 2 * r + 1), min(h, y0 + 2 * r + 1)
    if ax1 > ax0 and ay1 > ay0:
        sub = mask[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
        owner[ay0:ay1, ax0:ax1][sub] = j
    return int(mask.sum()), (ay0, max(ay0, ay1), ax0, max(ax0, ax1))
