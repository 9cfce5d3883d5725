"""A deterministic synthetic household-object stream (numpy + OpenCV), for tests and the benchmark.

Each frame shows ONE household object drawn procedurally (shape, colour, texture; pose, scale,
position, mirror, partial occlusion) over a room background, then goes through the scene's
lighting and camera model. The default schedule shifts what a model trained on the first scenario
has seen: dimmer and greyscale (IR) lighting, a new room, a noisy blurry camera, objects the model
never saw, and finally the first scenario again (to expose forgetting). Objects differ mostly by
SHAPE, so a model can learn every scenario; in the first scenario colour is a shortcut too, which
is why the starting model breaks under greyscale light.

A robot's camera looks at one thing for seconds: the stream shows each object for a *run* of
``run_frames`` frames (8-32 by default: 1-4 s at the camera's 8 fps), one object instance with
its colours, clutter and occluder kept, while the pose, the camera's window on the room and the
light drift a little from frame to frame; sensor noise is new in every frame. Training splits
("train", "val") are i.i.d. views instead, the way a dataset is collected.

Every frame is a pure function of (seed, split, scenario position, frame number): same seed, same
bytes, whatever was rendered before.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from etuner_ros.sim.shapes import CLASS_PALETTES, SHAPES, Prim

WORLD_VERSION = 3  # bump when rendering changes: it is part of the cached starting model's key
ROOMS = ("kitchen", "living_room", "bedroom", "bathroom")
LIGHTINGS = ("day", "dim", "night_grey")
BASE_CLASSES = ("cup", "bottle", "book", "phone", "glasses", "pill_box", "remote", "keys")
NEW_CLASSES = ("walker", "medicine_bottle")
_SHIFT = 4  # cv2 sub-pixel bits: smooth poses at 128x96
_UPRIGHT = {"cup": 15, "bottle": 15, "medicine_bottle": 15, "walker": 8, "book": 30}
RUN_FRAMES = (8, 32)  # frames one object stays in view: 1-4 s at the sim camera's 8 fps


@dataclass(frozen=True)
class Scenario:
    """One segment of the stream: where the robot is, how it sees, which objects occur."""

    name: str
    room: str = "kitchen"
    lighting: str = "day"
    noise_sigma: float = 2.0
    blur_sigma: float = 0.0
    classes: tuple[str, ...] = BASE_CLASSES
    occlusion: float = 0.25  # probability that something covers part of the object

    def __post_init__(self) -> None:
        if self.room not in ROOMS:
            raise ValueError(f"scenario {self.name!r}: room {self.room!r} not in {ROOMS}")
        if self.lighting not in LIGHTINGS:
            raise ValueError(f"scenario {self.name!r}: lighting {self.lighting!r} not in "
                             f"{LIGHTINGS}")
        unknown = [c for c in self.classes if c not in SHAPES]
        if unknown or not self.classes:
            raise ValueError(f"scenario {self.name!r}: unknown or no classes {unknown}; "
                             f"known: {sorted(SHAPES)}")
        if self.noise_sigma < 0 or self.blur_sigma < 0 or not 0 <= self.occlusion <= 1:
            raise ValueError(f"scenario {self.name!r}: negative noise/blur or occlusion "
                             "outside [0, 1]")
        object.__setattr__(self, "classes", tuple(self.classes))


def default_scenarios() -> list[Scenario]:
    """The benchmark's schedule: each segment after the first shifts something the model knows."""
    base, every = BASE_CLASSES, BASE_CLASSES + NEW_CLASSES
    return [
        Scenario("day_kitchen", "kitchen", "day", 2.0, 0.0, base),
        Scenario("dim_kitchen", "kitchen", "dim", 3.0, 0.0, base),
        Scenario("night_living_room", "living_room", "night_grey", 3.0, 0.0, base),
        Scenario("noisy_bedroom", "bedroom", "day", 14.0, 1.2, base),
        Scenario("bathroom_new_objects", "bathroom", "day", 3.0, 0.0, every),
        Scenario("day_kitchen_again", "kitchen", "day", 2.0, 0.0, base),
        Scenario("dim_living_room_all", "living_room", "dim", 5.0, 0.6, every),
    ]


@dataclass(frozen=True, eq=False)
class Frame:
    """One labelled camera frame; ``index`` counts frames across the whole stream."""

    index: int
    image: np.ndarray  # RGB uint8, H x W x 3
    label: str
    scenario: str


_Room = tuple[np.ndarray, list[tuple[int, int, int]]]  # texture larger than a frame, clutter


@dataclass(frozen=True, eq=False)
class _View:
    """One frame's scene parameters; a run keeps clutter, colours and occluder."""

    window: np.ndarray  # (row, col) of the camera's window on the room texture
    clutter: list  # (colour, centre, axes, angle) ellipses
    size: float  # object size in pixels
    angle: float  # radians
    mirror: float
    stretch: float
    centre: np.ndarray  # (x, y) pixels
    roles: dict  # colour per palette role
    occluder: tuple | None  # (colour, width share, height share, side)
    light: np.ndarray  # day: RGB gains; dim: (intensity, ., .); night: (offset, contrast, 0)


class SyntheticWorld:
    """Seeded household world: ``stream()`` for the benchmark, ``frames()`` for training sets."""

    def __init__(self, seed: int, image_size: tuple[int, int] | int = (128, 96),
                 scenarios: list[Scenario] | None = None,
                 run_frames: tuple[int, int] = RUN_FRAMES) -> None:
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        w, h = (int(v) for v in image_size)
        if w < 16 or h < 16:
            raise ValueError(f"image_size {image_size} too small (min 16x16)")
        lo, hi = (int(v) for v in run_frames)
        if not 1 <= lo <= hi:
            raise ValueError(f"run_frames {run_frames}: need 1 <= shortest <= longest")
        self.seed = int(seed)
        self.image_size = (w, h)
        self.run_frames = (lo, hi)
        self.scenarios = list(scenarios) if scenarios is not None else default_scenarios()
        if not self.scenarios:
            raise ValueError("a world needs at least one scenario")
        names = [s.name for s in self.scenarios]
        if len(set(names)) != len(names):
            raise ValueError(f"scenario names must be unique: {names}")
        self._by_name = {s.name: (i, s) for i, s in enumerate(self.scenarios)}
        self._rooms: dict[str, _Room] = {}

    # ----- what the world contains -----
    def scenario(self, name: str) -> Scenario:
        if name not in self._by_name:
            raise KeyError(f"no scenario {name!r}; have {list(self._by_name)}")
        return self._by_name[name][1]

    def class_names_seen_in(self, scenario: str | Scenario) -> list[str]:
        """Classes that occur in one scenario, in ``all_class_names()`` order."""
        sc = scenario if isinstance(scenario, Scenario) else self.scenario(scenario)
        return [c for c in self.all_class_names() if c in sc.classes]

    def all_class_names(self) -> list[str]:
        """Every class in order of first appearance: the first scenario's classes come first."""
        out: list[str] = []
        for sc in self.scenarios:
            out += [c for c in sc.classes if c not in out]
        return out

    # ----- frames -----
    def stream(self, frames_per_scenario: int) -> Iterator[Frame]:
        """The whole schedule, segment after segment; labels balanced within a segment."""
        index = 0
        for sc in self.scenarios:
            yield from self.frames(sc.name, frames_per_scenario, start_index=index)
            index += frames_per_scenario

    def frames(self, scenario: str, n: int, *, split: str = "stream",
               start_index: int = 0) -> list[Frame]:
        """``n`` frames of one scenario. The "stream" split shows objects in runs (see the
        module docstring), classes balanced over runs; another ``split`` (e.g. "train", "val")
        draws i.i.d. views independent of the stream's, so a model pretrained on them is not
        tested on its data."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        pos, sc = self._by_name.get(scenario, (None, None))
        if sc is None:
            raise KeyError(f"no scenario {scenario!r}; have {list(self._by_name)}")
        key = zlib.crc32(split.encode())
        order = np.random.default_rng([self.seed, key, pos, 1 << 20])
        lo, hi = self.run_frames if split == "stream" else (1, 1)
        runs: list[tuple[str, int]] = []  # (label, length): classes cycle in shuffled rounds
        total = 0
        while total < n:
            labels = list(sc.classes)
            order.shuffle(labels)
            for lab in labels:
                if total >= n:
                    break
                length = min(int(order.integers(lo, hi + 1)), n - total)
                runs.append((str(lab), length))
                total += length
        out: list[Frame] = []
        for r, (lab, length) in enumerate(runs):
            rng = np.random.default_rng([self.seed, key, pos, r])
            view = self._view(sc, lab, rng)
            for k in range(length):
                if k:
                    view = self._step(view, lab, rng)
                out.append(Frame(start_index + len(out), self._draw(sc, lab, view, rng), lab,
                                 sc.name))
        return out

    def render(self, scenario: Scenario, label: str, rng: np.random.Generator) -> np.ndarray:
        """One RGB uint8 frame of ``label`` in ``scenario`` (a fresh view); all randomness
        comes from ``rng``."""
        return self._draw(scenario, label, self._view(scenario, label, rng), rng)

    def _view(self, sc: Scenario, label: str, rng: np.random.Generator) -> _View:
        """Everything a run keeps (object instance, clutter, occluder) and where its drifting
        parts (camera window, pose, light) start."""
        w, h = self.image_size
        texture, clutter = self._room(sc.room)
        th, tw = texture.shape[:2]
        window = np.array([rng.integers(0, th - h + 1), rng.integers(0, tw - w + 1)], float)
        things = []
        for _ in range(int(rng.integers(0, 3))):  # small background clutter, not a class
            colour = clutter[int(rng.integers(len(clutter)))]
            c = (int(rng.integers(0, w)), int(rng.integers(h // 2, h)))
            axes = (int(rng.integers(3, w // 10)), int(rng.integers(2, h // 12)))
            things.append((colour, c, axes, float(rng.uniform(0, 180))))
        big = label == "walker"
        size = h * (rng.uniform(0.78, 0.95) if big else rng.uniform(0.5, 0.75))
        limit = _UPRIGHT.get(label, 60 if label != "keys" else 180)
        angle = np.deg2rad(rng.uniform(-limit, limit))
        mirror = -1.0 if rng.random() < 0.5 else 1.0
        stretch = rng.uniform(0.9, 1.1)
        margin = 0.25 if not big else 0.45
        centre = np.array([w * rng.uniform(margin, 1 - margin), h * rng.uniform(0.35, 0.65)])
        palette = CLASS_PALETTES[label]
        roles = {role: _jitter(opts[int(rng.integers(len(opts)))], rng, 18)
                 for role, opts in palette.items()}
        occluder = None
        if rng.random() < sc.occlusion:
            colour = (_jitter((224, 172, 140), rng, 20) if rng.random() < 0.5  # a hand
                      else clutter[int(rng.integers(len(clutter)))])
            occluder = (colour, rng.uniform(0.15, 0.35), rng.uniform(0.15, 0.35),
                        int(rng.integers(4)))
        light = _light(sc.lighting, rng)
        return _View(window, things, size, angle, mirror, stretch, centre, roles, occluder,
                     light)

    def _step(self, v: _View, label: str, rng: np.random.Generator) -> _View:
        """The next frame of a run: the robot sways, the object turns a little, light flickers."""
        w, h = self.image_size
        th, tw = self._room("kitchen")[0].shape[:2]  # every room texture has one size
        window = np.clip(v.window + rng.normal(0, 1.0, 2), 0, [th - h, tw - w])
        limit = np.deg2rad(_UPRIGHT.get(label, 60 if label != "keys" else 180))
        angle = float(np.clip(v.angle + np.deg2rad(rng.normal(0, 2.0)), -limit, limit))
        lo, hi = (0.74, 0.97) if label == "walker" else (0.48, 0.77)
        size = float(np.clip(v.size * np.exp(rng.normal(0, 0.015)), lo * h, hi * h))
        margin = 0.25 if label != "walker" else 0.45
        centre = np.clip(v.centre + rng.normal(0, 0.8, 2), [w * margin, h * 0.35],
                         [w * (1 - margin), h * 0.65])
        light = _flicker(v.light, rng)
        return _View(window, v.clutter, size, angle, v.mirror, v.stretch, centre, v.roles,
                     v.occluder, light)

    def _draw(self, sc: Scenario, label: str, v: _View, rng: np.random.Generator) -> np.ndarray:
        """Render a view: room window, clutter, object, occluder, then the camera (whose sensor
        noise comes from ``rng``)."""
        w, h = self.image_size
        texture, _ = self._room(sc.room)
        oy, ox = (int(np.rint(c)) for c in v.window)
        img = texture[oy:oy + h, ox:ox + w].copy()  # the camera's window on the room
        for colour, c, axes, ang in v.clutter:
            cv2.ellipse(img, c, axes, ang, 0, 360, colour, -1, cv2.LINE_AA)
        bbox = _draw_object(img, label, v)
        if v.occluder is not None:
            _occlude(img, bbox, v.occluder)
        return _camera(img, sc, v.light, rng)

    def _room(self, room: str) -> _Room:
        if room not in self._rooms:
            w, h = self.image_size
            rng = np.random.default_rng([self.seed, zlib.crc32(room.encode())])
            self._rooms[room] = _make_room(room, w + w // 2, h + h // 2, rng)
        return self._rooms[room]


def _draw_object(img: np.ndarray, label: str, v: _View) -> tuple[int, ...]:
    """Draw ``label`` in the view's pose; returns its pixel bounding box (x0, y0, x1, y1)."""
    h, w = img.shape[:2]
    size = v.size
    cos, sin = np.cos(v.angle) * size, np.sin(v.angle) * size
    m = np.array([[cos * v.mirror * v.stretch, -sin], [sin * v.mirror * v.stretch, cos]])
    roles = dict(v.roles)
    roles["shadow"] = tuple(int(c * 0.55) for c in img[h - 1, w // 2])
    prims: list[Prim] = SHAPES[label]
    xs: list[np.ndarray] = []
    for offset in (np.array([0.04, 0.05]) * size, None):  # drop shadow first, then the object
        for prim in prims:
            if offset is not None and not prim.shadow:
                continue
            pts = prim.points @ m.T + v.centre + (0 if offset is None else offset)
            ipts = np.round(pts * (1 << _SHIFT)).astype(np.int32)
            colour = roles["shadow"] if offset is not None else roles[prim.role]
            if prim.width <= 0:
                cv2.fillPoly(img, [ipts], colour, cv2.LINE_AA, _SHIFT)
            else:
                thick = max(1, round(prim.width * size))
                cv2.polylines(img, [ipts], prim.closed, colour, thick, cv2.LINE_AA, _SHIFT)
            if offset is None:
                xs.append(pts)
    allp = np.concatenate(xs)
    x0, y0 = np.clip(allp.min(0), 0, [w - 1, h - 1]).astype(int)
    x1, y1 = np.clip(allp.max(0), 0, [w - 1, h - 1]).astype(int)
    return int(x0), int(y0), int(x1), int(y1)


def _occlude(img: np.ndarray, bbox: tuple[int, ...], occluder: tuple) -> None:
    """Cover up to about a third of the object from one side (a hand, a towel, a chair edge)."""
    colour, fx, fy, side = occluder
    x0, y0, x1, y1 = bbox
    dx, dy = int((x1 - x0) * fx), int((y1 - y0) * fy)
    x0, y0, x1, y1 = [(x0, y0, x0 + dx, y1), (x1 - dx, y0, x1, y1), (x0, y0, x1, y0 + dy),
                      (x0, y1 - dy, x1, y1)][side]
    cv2.rectangle(img, (x0 - 4, y0 - 4), (x1 + 4, y1 + 4), colour, -1, cv2.LINE_AA)


def _light(lighting: str, rng: np.random.Generator) -> np.ndarray:
    """A view's light: day: RGB gains; dim: (intensity, ., .); night: (offset, contrast, 0)."""
    if lighting == "day":
        return rng.uniform(0.9, 1.1) * rng.uniform(0.95, 1.05, 3)
    if lighting == "dim":
        return np.full(3, rng.uniform(0.3, 0.42))
    return np.array([rng.uniform(80, 105), rng.uniform(0.5, 0.62), 0.0])


def _flicker(light: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The light one frame later: about 1 % flicker (night's third entry stays 0)."""
    if light[2]:
        return light * (1 + rng.normal(0, 0.01, 3))
    return light * np.array([1 + rng.normal(0, 0.01), 1 + rng.normal(0, 0.01), 0.0])


def _camera(img: np.ndarray, sc: Scenario, light: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    """Lighting, then lens blur, then sensor noise, then 8-bit quantisation."""
    f = img.astype(np.float32)
    if sc.lighting == "day":
        f *= light.astype(np.float32)
    elif sc.lighting == "dim":  # a warm bedside lamp in the evening
        f = f * (np.array([1.0, 0.78, 0.5], np.float32) * np.float32(light[0])) + 6.0
    else:  # night_grey: the IR camera, greyscale and low contrast
        g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        g = np.float32(light[0]) + np.float32(light[1]) * (g - 128.0)
        f = np.repeat(g[:, :, None], 3, axis=2)
    if sc.blur_sigma > 0:
        f = cv2.GaussianBlur(f, (0, 0), sc.blur_sigma)
    if sc.noise_sigma > 0:
        grey = sc.lighting == "night_grey"
        shape = f.shape[:2] + ((1,) if grey else (3,))
        f += rng.standard_normal(shape, dtype=np.float32) * np.float32(sc.noise_sigma)
    return np.clip(f, 0, 255).astype(np.uint8)


def _jitter(colour: tuple[int, int, int], rng: np.random.Generator,
            amount: int) -> tuple[int, int, int]:
    c = np.clip(np.asarray(colour) + rng.integers(-amount, amount + 1, 3), 0, 255)
    return int(c[0]), int(c[1]), int(c[2])


def _make_room(room: str, w: int, h: int, rng: np.random.Generator) -> _Room:
    """A textured room wall and floor, larger than a frame; four rooms, four distinct looks."""
    img = np.zeros((h, w, 3), np.uint8)
    floor_y = int(h * rng.uniform(0.62, 0.72))
    yy, xx = np.mgrid[0:h, 0:w]
    if room == "kitchen":  # cream square tiles over a wooden counter
        img[:] = (232, 222, 196)
        img[(yy % 12 == 0) | (xx % 12 == 0)] = (190, 184, 168)
        img[floor_y:] = (150, 104, 68)
        grain = (np.sin(xx[floor_y:] * 0.9 + rng.uniform(0, 6)) * 12).astype(np.int16)
        img[floor_y:] = np.clip(img[floor_y:].astype(np.int16) + grain[..., None], 0, 255)
        clutter = [(200, 60, 40), (90, 150, 70), (240, 240, 235), (120, 80, 50)]
    elif room == "living_room":  # striped sage wallpaper, wooden floorboards
        img[:] = (160, 182, 150)
        img[(xx // 6) % 3 == 0] = (176, 196, 166)
        img[floor_y:] = (112, 76, 48)
        img[floor_y:][(xx[floor_y:] % 22) < 1] = (80, 52, 30)
        clutter = [(140, 40, 50), (70, 90, 60), (200, 180, 140), (60, 60, 80)]
    elif room == "bedroom":  # lavender dotted wall, beige carpet
        img[:] = (172, 170, 212)
        for y in range(4, floor_y, 10):
            for x in range(4 + (y // 10 % 2) * 5, w, 10):
                cv2.circle(img, (x, y), 1, (200, 196, 232), -1)
        img[floor_y:] = (200, 188, 168)
        carpet = rng.integers(-14, 15, (h - floor_y, w, 1))
        img[floor_y:] = np.clip(img[floor_y:].astype(np.int16) + carpet, 0, 255)
        clutter = [(90, 110, 170), (230, 230, 240), (150, 120, 160), (110, 90, 70)]
    else:  # bathroom: small white-turquoise tiles, dark tiled floor
        img[:] = (206, 232, 230)
        img[(yy % 7 == 0) | (xx % 7 == 0)] = (150, 170, 172)
        img[floor_y:] = (70, 82, 90)
        img[floor_y:][((yy[floor_y:] // 9 + xx[floor_y:] // 9) % 2) == 0] = (98, 110, 118)
        clutter = [(240, 240, 240), (60, 170, 190), (220, 200, 90), (150, 150, 160)]
    img[floor_y - 1:floor_y + 1] = (60, 50, 40)  # skirting line
    return cv2.GaussianBlur(img, (3, 3), 0.6), clutter
