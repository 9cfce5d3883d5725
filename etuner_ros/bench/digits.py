"""``sklearn-digits``: a stream of real handwritten digits on cards in real photographs.

Everything comes from images shipped inside scikit-learn (pinned in requirements.txt), nothing
is downloaded: ``load_digits()`` (1797 real scans of handwritten digits, 8x8, 16 grey levels,
written by 13 people) and ``load_sample_images()`` (two real photographs, used as the room
behind the card). The robot's camera sees a digit written on a paper card held or lying in
front of a scene, one card for a run of frames (1-4 s, small drift of pose, window and light),
under the deployment shifts a home brings: a warm dim lamp (low light, colour cast, more
noise), a blurry noisy camera, no card (ink straight on a busy photo: clutter, low contrast),
new classes (8 and 9) appearing, the first scenario again (forgetting), and smaller, rotated
cards in a greyish light.

Splits: the starting model trains on scans ``[0, PRETRAIN_END)``, the stream shows scans
``[PRETRAIN_END, 1797)``. The data set ships no writer ids; its scans come in form order, so
contiguous blocks are probably (not verifiably) close to writer-disjoint.

A reporting stream: no constant of the tuner, the trainer or this file is tuned on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import cv2
import numpy as np

from etuner_ros.bench.streams import LabelledStream, recurring_scenarios
from etuner_ros.sim.world import Frame

NAME = "sklearn-digits"
VERSION = 1  # bump when rendering changes: part of the cached starting model's key
SIZE = 64  # frames are SIZE x SIZE RGB
PRETRAIN_END = 690  # scans [0, 690) train the starting model; the rest play in the stream
CLASSES = tuple(str(d) for d in range(10))
START_CLASSES = CLASSES[:8]  # 8 and 9 appear later: new objects in the home
RUN_SECONDS = (1.0, 4.0)


@dataclass(frozen=True)
class DigitScenario:
    name: str
    classes: tuple[str, ...] = START_CLASSES
    photo: int = 0            # 0: china.jpg, 1: flower.jpg
    card: bool = True         # ink on a paper card (False: straight on the photo)
    light: float = 1.0        # overall gain
    cast: tuple[float, float, float] = (1.0, 1.0, 1.0)  # RGB colour cast
    noise: float = 3.0        # sensor noise sigma (8-bit levels)
    blur: float = 0.0         # lens blur sigma (pixels)
    scale: tuple[float, float] = (0.62, 0.8)  # card side / frame side
    rotation: float = 12.0    # degrees, +-


def scenarios() -> list[DigitScenario]:
    """The schedule: the starting model knows the first scenario."""
    return [
        DigitScenario("day_desk"),
        DigitScenario("warm_lamp", light=0.4, cast=(1.0, 0.75, 0.45), noise=6.0),
        DigitScenario("blurry_noisy_camera", blur=1.4, noise=14.0),
        DigitScenario("ink_on_clutter", photo=1, card=False, light=0.9),
        DigitScenario("new_digits", classes=CLASSES),
        DigitScenario("day_desk_again"),
        DigitScenario("small_tilted_grey_light", classes=CLASSES, cast=(0.85, 0.9, 1.0),
                      light=0.75, scale=(0.42, 0.55), rotation=35.0, noise=5.0),
    ]


@lru_cache(maxsize=1)
def _data() -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    from sklearn.datasets import load_digits, load_sample_images

    d = load_digits()
    photos = tuple(np.ascontiguousarray(p) for p in load_sample_images().images)  # RGB uint8
    return d.images.astype(np.float32) / 16.0, d.target.astype(int), photos


@dataclass
class _View:
    scan: int
    window: np.ndarray   # (x, y, side) of the photo crop behind the card, photo pixels
    scale: float
    angle: float
    centre: np.ndarray   # card centre in frame pixels
    paper: np.ndarray    # card colour (RGB)
    ink: np.ndarray      # pen colour (RGB)
    light: float


def _new_view(sc: DigitScenario, scan: int, rng: np.random.Generator) -> _View:
    photo = _data()[2][sc.photo]
    h, w = photo.shape[:2]
    side = float(rng.uniform(0.35, 0.6) * h)
    window = np.array([rng.uniform(0, w - side), rng.uniform(0, h - side), side])
    scale = float(rng.uniform(*sc.scale))
    centre = SIZE * (0.5 + rng.uniform(-0.12, 0.12, 2))
    paper = np.array([235, 232, 222], float) + rng.uniform(-15, 15, 3)
    pens = ([(25, 30, 110), (20, 20, 25), (30, 60, 40)] if sc.card  # pen on paper
            else [(245, 245, 235), (250, 230, 120)])  # chalk / paint marker on the scene
    ink = np.array(pens[int(rng.integers(len(pens)))], float)
    return _View(scan, window, scale, float(rng.uniform(-sc.rotation, sc.rotation)), centre,
                 paper, ink, float(rng.uniform(0.9, 1.1)))


def _step(v: _View, sc: DigitScenario, rng: np.random.Generator) -> _View:
    """Next frame of a run: the card turns and slides a little, the robot sways."""
    h, w = _data()[2][sc.photo].shape[:2]
    side = v.window[2]
    window = np.clip(v.window + np.r_[rng.normal(0, 2.0, 2), 0.0], 0,
                     [w - side, h - side, side])
    return _View(v.scan, window, float(np.clip(v.scale * np.exp(rng.normal(0, 0.01)),
                                               0.9 * sc.scale[0], 1.1 * sc.scale[1])),
                 float(np.clip(v.angle + rng.normal(0, 1.5), -sc.rotation - 5, sc.rotation + 5)),
                 np.clip(v.centre + rng.normal(0, 0.5, 2), 0.3 * SIZE, 0.7 * SIZE), v.paper,
                 v.ink, float(v.light * (1 + rng.normal(0, 0.01))))


def _render(sc: DigitScenario, v: _View, rng: np.random.Generator) -> np.ndarray:
    scans, _, photos = _data()
    x, y, side = v.window
    bg = cv2.resize(photos[sc.photo][int(y):int(y + side), int(x):int(x + side)],
                    (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
    card_px = v.scale * SIZE
    # the 8x8 scan, upsampled smoothly to the card: ink coverage in [0, 1]
    ink = cv2.resize(scans[v.scan], (32, 32), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    ink = np.pad(ink, 4)  # a margin of paper around the digit
    m = cv2.getRotationMatrix2D((20.0, 20.0), v.angle, card_px / 40.0)
    m[:, 2] += v.centre - 20.0
    cover = cv2.warpAffine(ink, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR)[..., None]
    img = bg
    if sc.card:
        card = cv2.warpAffine(np.ones((40, 40), np.float32), m, (SIZE, SIZE),
                              flags=cv2.INTER_LINEAR)[..., None]
        img = img * (1 - card) + v.paper.astype(np.float32) * card
    img = img * (1 - cover) + v.ink.astype(np.float32) * cover
    img = img * np.float32(sc.light * v.light) * np.asarray(sc.cast, np.float32)
    if sc.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), sc.blur)
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sc.noise)
    return np.clip(img, 0, 255).astype(np.uint8)


def _pool(classes: tuple[str, ...], lo: int, hi: int) -> dict[str, np.ndarray]:
    target = _data()[1]
    idx = np.arange(lo, hi)
    return {c: idx[target[lo:hi] == int(c)] for c in classes}


def stream(seed: int, frames_per_scenario: int = 200, fps: float = 8.0,
           run_seconds: tuple[float, float] | None = RUN_SECONDS) -> LabelledStream:
    """The stream on ``seed``: which scans, poses and run lengths; ``run_seconds`` None shows
    every frame a new scan (i.i.d.)."""
    lo, hi = ((1, 1) if run_seconds is None else
              (max(1, round(run_seconds[0] * fps)), max(1, round(run_seconds[1] * fps))))
    frames: list[Frame] = []
    scs = scenarios()
    for pos, sc in enumerate(scs):
        rng = np.random.default_rng([seed, 0xD161, pos])
        pool = _pool(sc.classes, PRETRAIN_END, len(_data()[1]))
        n = 0
        while n < frames_per_scenario:
            order = list(sc.classes)
            rng.shuffle(order)
            for label in order:
                if n >= frames_per_scenario:
                    break
                length = min(int(rng.integers(lo, hi + 1)), frames_per_scenario - n)
                view = _new_view(sc, int(rng.choice(pool[label])), rng)
                for k in range(length):
                    if k:
                        view = _step(view, sc, rng)
                    frames.append(Frame(len(frames), _render(sc, view, rng), label, sc.name))
                n += length
    return LabelledStream(
        name=NAME, frames=frames, class_names=list(CLASSES), scenarios=[s.name for s in scs],
        description={"source": "scikit-learn load_digits + load_sample_images", "seed": seed,
                     "version": VERSION, "image_size": [SIZE, SIZE],
                     "frames_per_scenario": frames_per_scenario, "run_frames": [lo, hi],
                     "stream_scans": [PRETRAIN_END, len(_data()[1])],
                     "scenario_settings": [asdict(s) for s in scs],
                     "recurring": recurring_scenarios(scs)})


def start_data(seed: int, n: int) -> list[Frame]:
    """``n`` i.i.d. frames of the first scenario from the pretraining scans, classes balanced:
    what the starting model learns from."""
    sc = scenarios()[0]
    rng = np.random.default_rng([seed, 0x5EED])
    pool = _pool(sc.classes, 0, PRETRAIN_END)
    labels = np.resize(np.array(sc.classes), n)
    rng.shuffle(labels)
    return [Frame(i, _render(sc, _new_view(sc, int(rng.choice(pool[str(lab)])), rng), rng),
                  str(lab), sc.name) for i, lab in enumerate(labels)]
