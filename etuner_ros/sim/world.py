"""A deterministic synthetic household-object stream (numpy + OpenCV), for tests and the benchmark.

Each frame shows ONE household object drawn procedurally (shape, colour, texture; random pose,
scale, position, mirror, partial occlusion) over a room background, then goes through the scene's
lighting and camera model. The default schedule shifts what a model trained on the first scenario
has seen: dimmer and greyscale (IR) lighting, a new room, a noisy blurry camera, objects the model
never saw, and finally the first scenario again (to expose forgetting). Objects differ mostly by
SHAPE, so a model can learn every scenario; in the first scenario colour is a shortcut too, which
is why the starting model breaks under greyscale light.

Every frame is a pure function of (seed, split, scenario position, frame number): same seed, same
bytes, whatever was rendered before.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

WORLD_VERSION = 2  # bump when rendering changes: it is part of the cached starting model's key
ROOMS = ("kitchen", "living_room", "bedroom", "bathroom")
LIGHTINGS = ("day", "dim", "night_grey")
BASE_CLASSES = ("cup", "bottle", "book", "phone", "glasses", "pill_box", "remote", "keys")
NEW_CLASSES = ("walker", "medicine_bottle")
_SHIFT = 4  # cv2 sub-pixel bits: smooth poses at 128x96
_UPRIGHT = {"cup": 15, "bottle": 15, "medicine_bottle": 15, "walker": 8, "book": 30}


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


class SyntheticWorld:
    """Seeded household world: ``stream()`` for the benchmark, ``frames()`` for training sets."""

    def __init__(self, seed: int, image_size: tuple[int, int] | int = (128, 96),
                 scenarios: list[Scenario] | None = None) -> None:
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        w, h = (int(v) for v in image_size)
        if w < 16 or h < 16:
            raise ValueError(f"image_size {image_size} too small (min 16x16)")
        self.seed = int(seed)
        self.image_size = (w, h)
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
        """``n`` frames of one scenario. Another ``split`` (e.g. "train", "val") draws frames
        independent of the stream's, so a model pretrained on them is not tested on its data."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        pos, sc = self._by_name.get(scenario, (None, None))
        if sc is None:
            raise KeyError(f"no scenario {scenario!r}; have {list(self._by_name)}")
        key = zlib.crc32(split.encode())
        order = np.random.default_rng([self.seed, key, pos, 1 << 20])
        labels = np.resize(np.array(sc.classes), n)  # balanced, then shuffled
        order.shuffle(labels)
        return [Frame(start_index + i, self.render(sc, str(lab),
                                                   np.random.default_rng([self.seed, key, pos, i])),
                      str(lab), sc.name)
                for i, lab in enumerate(labels)]

    def render(self, scenario: Scenario, label: str, rng: np.random.Generator) -> np.ndarray:
        """One RGB uint8 frame of ``label`` in ``scenario``; all randomness comes from ``rng``."""
        w, h = self.image_size
        texture, clutter = self._room(scenario.room)
        th, tw = texture.shape[:2]
        oy, ox = int(rng.integers(0, th - h + 1)), int(rng.integers(0, tw - w + 1))
        img = texture[oy:oy + h, ox:ox + w].copy()  # a random window: the camera moves
        for _ in range(int(rng.integers(0, 3))):  # small background clutter, not an object class
            colour = clutter[int(rng.integers(len(clutter)))]
            c = (int(rng.integers(0, w)), int(rng.integers(h // 2, h)))
            axes = (int(rng.integers(3, w // 10)), int(rng.integers(2, h // 12)))
            cv2.ellipse(img, c, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
        bbox = _draw_object(img, label, rng)
        if rng.random() < scenario.occlusion:
            _occlude(img, bbox, clutter, rng)
        return _camera(img, scenario, rng)

    def _room(self, room: str) -> _Room:
        if room not in self._rooms:
            w, h = self.image_size
            rng = np.random.default_rng([self.seed, zlib.crc32(room.encode())])
            self._rooms[room] = _make_room(room, w + w // 2, h + h // 2, rng)
        return self._rooms[room]


def _draw_object(img: np.ndarray, label: str, rng: np.random.Generator) -> tuple[int, ...]:
    """Draw ``label`` with a random pose; returns its pixel bounding box (x0, y0, x1, y1)."""
    h, w = img.shape[:2]
    big = label == "walker"
    size = h * (rng.uniform(0.78, 0.95) if big else rng.uniform(0.5, 0.75))
    limit = _UPRIGHT.get(label, 60 if label != "keys" else 180)
    angle = np.deg2rad(rng.uniform(-limit, limit))
    mirror = -1.0 if rng.random() < 0.5 else 1.0
    stretch = rng.uniform(0.9, 1.1)
    cos, sin = np.cos(angle) * size, np.sin(angle) * size
    m = np.array([[cos * mirror * stretch, -sin], [sin * mirror * stretch, cos]])
    margin = 0.25 if not big else 0.45
    centre = np.array([w * rng.uniform(margin, 1 - margin), h * rng.uniform(0.35, 0.65)])
    palette = CLASS_PALETTES[label]
    roles = {role: _jitter(opts[int(rng.integers(len(opts)))], rng, 18)
             for role, opts in palette.items()}
    roles["shadow"] = tuple(int(v * 0.55) for v in img[h - 1, w // 2])
    prims: list[Prim] = SHAPES[label]
    xs: list[np.ndarray] = []
    for offset in (np.array([0.04, 0.05]) * size, None):  # drop shadow first, then the object
        for prim in prims:
            if offset is not None and not prim.shadow:
                continue
            pts = prim.points @ m.T + centre + (0 if offset is None else offset)
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


def _occlude(img: np.ndarray, bbox: tuple[int, ...], clutter: list[tuple[int, int, int]],
             rng: np.random.Generator) -> None:
    """Cover up to about a third of the object from one side (a hand, a towel, a chair edge)."""
    x0, y0, x1, y1 = bbox
    colour = (_jitter((224, 172, 140), rng, 20) if rng.random() < 0.5  # a hand
              else clutter[int(rng.integers(len(clutter)))])
    dx, dy = int((x1 - x0) * rng.uniform(0.15, 0.35)), int((y1 - y0) * rng.uniform(0.15, 0.35))
    x0, y0, x1, y1 = [(x0, y0, x0 + dx, y1), (x1 - dx, y0, x1, y1), (x0, y0, x1, y0 + dy),
                      (x0, y1 - dy, x1, y1)][int(rng.integers(4))]
    cv2.rectangle(img, (x0 - 4, y0 - 4), (x1 + 4, y1 + 4), colour, -1, cv2.LINE_AA)


def _camera(img: np.ndarray, sc: Scenario, rng: np.random.Generator) -> np.ndarray:
    """Lighting, then lens blur, then sensor noise, then 8-bit quantisation."""
    f = img.astype(np.float32)
    if sc.lighting == "day":
        f *= (rng.uniform(0.9, 1.1) * rng.uniform(0.95, 1.05, 3)).astype(np.float32)
    elif sc.lighting == "dim":  # a warm bedside lamp in the evening
        tint = np.array([1.0, 0.78, 0.5], np.float32) * rng.uniform(0.3, 0.42)
        f = f * tint + 6.0
    else:  # night_grey: the IR camera, greyscale and low contrast
        g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        g = rng.uniform(80, 105) + rng.uniform(0.5, 0.62) * (g - 128.0)
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


# ----- object shapes: primitives in object units (long side ~1), y down, centred on 0 -----
@dataclass(frozen=True)
class Prim:
    """A filled polygon (width 0) or a polyline of ``width`` object units, in a colour role."""

    points: np.ndarray
    role: str
    width: float = 0.0
    closed: bool = True
    shadow: bool = False  # part of the silhouette that casts the drop shadow


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def _ell(cx: float, cy: float, rx: float, ry: float, n: int = 20) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def _pl(*xy: float) -> np.ndarray:
    return np.array(xy, float).reshape(-1, 2)


def _shapes() -> dict[str, list[Prim]]:
    P = Prim
    key_blade = _pl(0.0, -0.04, 0.42, -0.04, 0.42, 0.0, 0.36, 0.0, 0.33, 0.04, 0.28, 0.0,
                    0.22, 0.05, 0.17, 0.0, 0.0, 0.02)
    rot = np.array([[0.5, -0.87], [0.87, 0.5]])  # second key hangs at 60 degrees
    s: dict[str, list[Prim]] = {
        "cup": [P(_pl(-0.28, -0.35, 0.28, -0.35, 0.22, 0.38, -0.22, 0.38), "body", shadow=True),
                P(_ell(0.34, 0.0, 0.13, 0.17), "body", 0.07),
                P(_ell(0.0, -0.35, 0.28, 0.06), "light"), P(_ell(0.0, -0.34, 0.23, 0.04), "dark"),
                P(_rect(-0.19, -0.28, -0.13, 0.3), "light")],
        "bottle": [P(_pl(-0.16, 0.5, -0.16, -0.14, -0.07, -0.3, -0.07, -0.45, 0.07, -0.45,
                         0.07, -0.3, 0.16, -0.14, 0.16, 0.5), "body", shadow=True),
                   P(_rect(-0.08, -0.53, 0.08, -0.45), "accent"),
                   P(_rect(-0.16, 0.05, 0.16, 0.3), "light"),
                   P(_rect(-0.11, -0.1, -0.07, 0.45), "light")],
        "book": [P(_rect(-0.34, -0.48, 0.34, 0.48), "body", shadow=True),
                 P(_rect(-0.34, -0.48, -0.25, 0.48), "dark"),
                 P(_rect(-0.17, -0.3, 0.26, -0.14), "accent"),
                 P(_rect(-0.25, 0.43, 0.34, 0.48), "light"),
                 P(_pl(-0.14, 0.1, 0.22, 0.1), "accent", 0.025, closed=False)],
        "phone": [P(_rect(-0.24, -0.48, 0.24, 0.48), "body", shadow=True),
                  P(_rect(-0.2, -0.4, 0.2, 0.38), "screen"),
                  P(_ell(0.0, -0.44, 0.025, 0.025, 8), "light"),
                  P(_rect(-0.14, -0.3, 0.14, -0.22), "light")],
        "glasses": [P(_ell(-0.25, 0.0, 0.2, 0.15), "lens"), P(_ell(0.25, 0.0, 0.2, 0.15), "lens"),
                    P(_ell(-0.25, 0.0, 0.2, 0.15), "body", 0.05, shadow=True),
                    P(_ell(0.25, 0.0, 0.2, 0.15), "body", 0.05, shadow=True),
                    P(_pl(-0.06, -0.04, 0.0, -0.08, 0.06, -0.04), "body", 0.045, closed=False),
                    P(_pl(-0.45, -0.04, -0.55, -0.12), "body", 0.04, closed=False),
                    P(_pl(0.45, -0.04, 0.55, -0.12), "body", 0.04, closed=False)],
        "pill_box": [P(_rect(-0.5, -0.15, 0.5, 0.15), "body", shadow=True)]
        + [P(_rect(-0.47 + i * 0.135, -0.12, -0.47 + i * 0.135 + 0.11, 0.12),
             ("accent", "light", "screen")[i % 3]) for i in range(7)],
        "remote": [P(_rect(-0.11, -0.5, 0.11, 0.5), "body", shadow=True),
                   P(_ell(0.0, -0.4, 0.04, 0.04, 10), "accent"),
                   P(_ell(0.0, -0.2, 0.075, 0.075, 14), "light")]
        + [P(_ell(x, y, 0.025, 0.025, 8), "light")
           for x in (-0.06, 0.0, 0.06) for y in (0.0, 0.1, 0.2, 0.3, 0.4)],
        "keys": [P(_ell(-0.32, 0.0, 0.14, 0.14), "metal", 0.035, shadow=True),
                 P(_ell(-0.08, -0.02, 0.09, 0.09), "body", shadow=True),
                 P(key_blade - np.array([0.0, 0.02]), "body", shadow=True),
                 P(_ell(-0.08, -0.02, 0.03, 0.03, 8), "dark"),
                 P(_ell(-0.22, 0.13, 0.08, 0.08), "metal", shadow=True),
                 P(key_blade * 0.9 @ rot.T + (-0.2, 0.16), "metal", shadow=True)],
        "walker": [P(_pl(-0.35, -0.45, 0.35, -0.45), "metal", 0.06, closed=False, shadow=True),
                   P(_pl(-0.35, -0.45, -0.42, 0.45), "metal", 0.05, closed=False, shadow=True),
                   P(_pl(0.35, -0.45, 0.42, 0.45), "metal", 0.05, closed=False, shadow=True),
                   P(_pl(-0.26, -0.36, -0.28, 0.4), "metal", 0.03, closed=False),
                   P(_pl(0.26, -0.36, 0.28, 0.4), "metal", 0.03, closed=False),
                   P(_pl(-0.38, 0.05, 0.38, 0.05), "metal", 0.04, closed=False),
                   P(_rect(-0.42, -0.5, -0.28, -0.4), "dark"),
                   P(_rect(0.28, -0.5, 0.42, -0.4), "dark"),
                   P(_ell(-0.42, 0.45, 0.06, 0.06, 12), "dark"),
                   P(_ell(0.42, 0.45, 0.06, 0.06, 12), "dark")],
        "medicine_bottle": [P(_rect(-0.22, -0.2, 0.22, 0.4), "body", shadow=True),
                            P(_rect(-0.26, -0.42, 0.26, -0.2), "light", shadow=True),
                            P(_rect(-0.22, -0.04, 0.22, 0.26), "light")]
        + [P(_pl(x, -0.4, x, -0.22), "dark", 0.015, closed=False) for x in (-0.15, 0.0, 0.15)]
        + [P(_pl(-0.15, y, 0.15, y), "dark", 0.02, closed=False) for y in (0.05, 0.15)],
    }
    return s


SHAPES = _shapes()
# Colour options per role (RGB); a frame picks one option per role, then jitters it.
_DARK, _LIGHT = [(30, 28, 30)], [(236, 236, 230)]
CLASS_PALETTES: dict[str, dict[str, list[tuple[int, int, int]]]] = {
    "cup": {"body": [(200, 40, 40), (210, 80, 40)], "light": _LIGHT, "dark": [(70, 40, 25)]},
    "bottle": {"body": [(40, 150, 70), (60, 170, 110)], "accent": [(30, 60, 180)],
               "light": _LIGHT},
    "book": {"body": [(40, 70, 170), (30, 100, 150)], "dark": [(20, 30, 80)],
             "accent": [(230, 200, 60)], "light": _LIGHT},
    "phone": {"body": _DARK, "screen": [(60, 170, 220), (80, 120, 230)], "light": [(90, 90, 95)]},
    "glasses": {"body": [(70, 40, 20), (25, 25, 25)], "lens": [(190, 210, 220)]},
    "pill_box": {"body": [(150, 50, 160)], "accent": [(240, 120, 200)], "light": _LIGHT,
                 "screen": [(120, 200, 240)]},
    "remote": {"body": [(75, 75, 80)], "accent": [(220, 30, 30)], "light": [(170, 170, 175)]},
    "keys": {"body": [(215, 180, 60)], "metal": [(180, 180, 185)], "dark": _DARK},
    "walker": {"metal": [(190, 192, 198)], "dark": _DARK},
    "medicine_bottle": {"body": [(200, 110, 20)], "light": _LIGHT, "dark": [(60, 60, 60)]},
}
