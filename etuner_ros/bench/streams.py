"""Labelled frame streams the benchmark replays: the synthetic world, rooms with several objects
seen through a simulated detector (one item per detected object), or a folder of images.

A folder stream lets the same benchmark run on real recordings laid out as
``ROOT/<scenario>/<class>/<image>``: scenarios play in name order, and frames are shuffled
(seeded) within each scenario so a segment is not sorted by class; optionally each image stays
in view for a run of frames, as with a robot's camera.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from etuner_ros.core.class_names import model_class
from etuner_ros.sim.world import RUN_FRAMES, WORLD_VERSION, Frame, SyntheticWorld

# Extensions cv2.imread decodes (the set OpenCV documents); anything else is not an image.
IMAGE_EXTENSIONS = frozenset({
    ".bmp", ".dib", ".jpeg", ".jpg", ".jpe", ".jp2", ".png", ".webp", ".avif", ".pbm", ".pgm",
    ".ppm", ".pxm", ".pnm", ".pfm", ".sr", ".ras", ".tiff", ".tif", ".exr", ".hdr", ".pic"})
DEFAULT_FRAMES_PER_SCENARIO = 200
FOLDER_MAX_SIDE = 320  # px: a folder image's longer side in memory (folder_stream says why)
ROOMS_FRAMES_PER_SCENARIO = 120  # 15 s at 8 fps; about 2.5 regions a frame (ROOMS_OBJECTS)
ROOMS_OBJECTS = (1, 4)           # objects in view: always at least, at most


@dataclass
class LabelledStream:
    """Frames in playing order plus what the benchmark needs to score and report them."""

    name: str
    frames: Sequence[Frame] | Iterable[Frame]  # a list, or re-iterable (rendered on demand)
    class_names: list[str]  # every class, first scenario's first
    scenarios: list[str]  # in playing order
    description: dict = field(default_factory=dict)

    def __iter__(self) -> Iterator[Frame]:
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)  # type: ignore[arg-type]


class _Rendered:
    """Re-iterable view of a world's stream: renders again on each pass instead of holding
    hundreds of MB of frames (rendering is ~1 ms/frame)."""

    def __init__(self, make: Callable[[], Iterator[Frame]], n: int) -> None:
        self._make, self._n = make, n

    def __iter__(self) -> Iterator[Frame]:
        return self._make()

    def __len__(self) -> int:
        return self._n


def synthetic_stream(seed: int = 0, frames_per_scenario: int = DEFAULT_FRAMES_PER_SCENARIO,
                     image_size: tuple[int, int] = (128, 96),
                     run_frames: tuple[int, int] = RUN_FRAMES) -> LabelledStream:
    """The default synthetic schedule (see ``etuner_ros.sim.world.default_scenarios``); each
    object stays in view for ``run_frames`` frames ((1, 1): i.i.d. frames)."""
    if frames_per_scenario < 1:
        raise ValueError(f"frames_per_scenario must be >= 1, got {frames_per_scenario}")
    world = SyntheticWorld(seed, image_size, run_frames=run_frames)
    n = frames_per_scenario * len(world.scenarios)
    return LabelledStream(
        name=f"synthetic_s{seed}",
        frames=_Rendered(lambda: world.stream(frames_per_scenario), n),
        class_names=world.all_class_names(),
        scenarios=[s.name for s in world.scenarios],
        description={"source": "synthetic", "seed": seed, "world_version": WORLD_VERSION,
                     "image_size": list(world.image_size),
                     "frames_per_scenario": frames_per_scenario,
                     "run_frames": list(world.run_frames),
                     "scenario_settings": [asdict(s) for s in world.scenarios],
                     "recurring": recurring_scenarios(world.scenarios)})


def recurring_scenarios(scenarios: Sequence) -> dict[str, str]:
    """``{later scenario: earlier one}`` for scenario dataclasses whose settings (all but the
    name) repeat an earlier scenario's: where forgetting shows."""
    out: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for sc in scenarios:
        key = tuple(v for k, v in asdict(sc).items() if k != "name")
        if key in seen:
            out[sc.name] = seen[key]
        else:
            seen[key] = sc.name
    return out


def _visible(path: Path) -> list[Path]:
    """Children in name order, hidden files (.DS_Store, ._x) ignored."""
    return sorted((p for p in path.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)


def _read(path: Path, image_size: tuple[int, int] | None,
          max_side: int | None = None) -> np.ndarray | None:
    """The image as RGB, resized (``folder_stream`` says how); None if cv2 cannot decode it."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        return None
    h, w = bgr.shape[:2]
    if image_size is not None and (w, h) != tuple(image_size):
        bgr = cv2.resize(bgr, tuple(image_size), interpolation=cv2.INTER_AREA)
    elif image_size is None and max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
        bgr = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class Skipped:
    """What a folder stream left out, and why: counted by reason, the first few named.

    Real photo folders carry strays (``Thumbs.db``, a ``labels.csv``, a truncated JPEG, an empty
    class folder); one of them must not end a benchmark run, and none may vanish unreported."""

    EXAMPLES = 10

    def __init__(self) -> None:
        self.by_reason: Counter[str] = Counter()
        self.examples: list[str] = []

    def add(self, reason: str, path: Path) -> None:
        self.by_reason[reason] += 1
        if len(self.examples) < self.EXAMPLES:
            self.examples.append(f"{path}: {reason}")

    @property
    def count(self) -> int:
        return sum(self.by_reason.values())

    def as_dict(self) -> dict:
        return {"count": self.count, "by_reason": dict(self.by_reason),
                "examples": list(self.examples)}


def _class_images(cdir: Path, image_size: tuple[int, int] | None, max_side: int | None,
                  skipped: Skipped) -> list[np.ndarray]:
    """The readable images of one class directory; everything else goes to ``skipped``."""
    images = []
    for f in _visible(cdir):
        if f.is_dir():
            skipped.add("directory at the image level (expected ROOT/<scenario>/<class>/<image>)",
                        f)
        elif f.suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.add("not an image file (unknown extension)", f)
        elif (image := _read(f, image_size, max_side)) is None:
            skipped.add("unreadable image (cv2 could not decode it)", f)
        else:
            images.append(image)
    return images


def folder_stream(root: Path, image_size: tuple[int, int] | None = None,
                  seed: int = 0, run_frames: tuple[int, int] | None = None,
                  max_side: int | None = FOLDER_MAX_SIDE,
                  max_images: int | None = None) -> LabelledStream:
    """Read ``ROOT/<scenario>/<class>/<image>`` into a stream (all frames held in memory).

    ``image_size`` (width, height) resizes every image to a common size; None keeps each
    image's own shape, shrunk (area interpolation) so its longer side is at most ``max_side``:
    every frame is held in memory by every benchmark worker, and a folder of 12-megapixel
    photographs would need 36 MB a frame where the model reads 64x64 (its preprocess shrinks
    with the same interpolation). ``run_frames`` (shortest,
    longest): a robot's camera, each image in view for a run of frames with a slowly drifting
    small shift, turn, zoom and brightness (:func:`view_run`), a scenario as many frames as it
    has images (images in shuffled order, repeated if runs are short); None: each image once.
    ``max_images`` (the benchmark's ``--frames-per-scenario``): a scenario plays at most that
    many of its images, the first of its seeded shuffle (a sample, so a large folder can be
    benchmarked in bounded time); ``description`` keeps how many each scenario had.

    A class is the class directory's name spelled as a model and a correction spell it
    (``core/class_names.model_class``: "Coffee Mug" -> "coffee_mug"); a checkpoint's label map
    is spelled so, and a raw name would never match a prediction. Directories that spell one
    class ("Cup", "cup") are one class.

    Files where a directory belongs (or the reverse), non-image files, unreadable images, and
    class or scenario directories left with no image are skipped and reported in
    ``description["skipped"]`` (:class:`Skipped`). Raises ValueError naming the path for a
    missing root, or one with no readable image anywhere.
    """
    if run_frames is not None and not 1 <= run_frames[0] <= run_frames[1]:
        raise ValueError(f"run_frames {run_frames}: need 1 <= shortest <= longest")
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"stream root is not a directory: {root}")
    skipped = Skipped()
    frames: list[Frame] = []
    class_names: list[str] = []
    per_scenario: dict[str, int] = {}
    found: dict[str, int] = {}
    for sdir in _visible(root):
        if not sdir.is_dir():
            skipped.add("file at the scenario level (expected ROOT/<scenario>/<class>/<image>)",
                        sdir)
            continue
        items: list[tuple[np.ndarray, str]] = []
        for cdir in _visible(sdir):
            if not cdir.is_dir():
                skipped.add("file at the class level (expected ROOT/<scenario>/<class>/<image>)",
                            cdir)
                continue
            images = _class_images(cdir, image_size, max_side, skipped)
            if not images:
                skipped.add("class directory has no readable image", cdir)
                continue
            label = model_class(cdir.name)  # as a model and a correction spell it
            items += [(im, label) for im in images]
            if label not in class_names:
                class_names.append(label)
        if not items:
            skipped.add("scenario directory has no readable image", sdir)
            continue
        # Seeded by the scenario's place among those played: a stray file does not reshuffle.
        rng = np.random.default_rng([seed, len(per_scenario)])
        total = len(items) if max_images is None else min(len(items), max_images)
        order = rng.permutation(len(items))[:total]
        if run_frames is None:
            for k in order:
                image, label = items[k]
                frames.append(Frame(len(frames), image, label, sdir.name))
        else:
            n = 0
            for k in np.resize(order, total):  # runs cover `total` frames
                if n >= total:
                    break
                image, label = items[k]
                length = min(int(rng.integers(run_frames[0], run_frames[1] + 1)), total - n)
                for view in view_run(image, length, rng):
                    frames.append(Frame(len(frames), view, label, sdir.name))
                n += length
        per_scenario[sdir.name] = total
        found[sdir.name] = len(items)
    if not frames:
        raise ValueError(f"no readable image under {root} (expected ROOT/<scenario>/<class>/"
                         f"<image>; skipped {skipped.count}: {'; '.join(skipped.examples)})")
    return LabelledStream(
        name=root.name or str(root), frames=frames, class_names=class_names,
        scenarios=list(per_scenario),
        description={"source": "folder", "root": str(root.resolve()), "seed": seed,
                     "image_size": list(image_size) if image_size else None,
                     "max_side": None if image_size else max_side,
                     "frames_per_scenario": per_scenario, "images_per_scenario": found,
                     "max_images_per_scenario": max_images, "skipped": skipped.as_dict()})


def view_run(image: np.ndarray, length: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``length`` frames of one still image as a robot's camera sees it for a while: a small
    shift, turn and zoom and a brightness that drift a little from frame to frame."""
    h, w = image.shape[:2]
    pose = np.array([rng.uniform(-3, 3), rng.uniform(0.97, 1.05), *rng.uniform(-0.03, 0.03, 2),
                     rng.uniform(0.92, 1.08)])  # degrees, zoom, shift x/y (share), gain
    out = []
    for k in range(length):
        if k:
            pose = pose + rng.normal(0, [0.6, 0.005, 0.004, 0.004, 0.008])
            pose = np.clip(pose, [-8, 0.92, -0.08, -0.08, 0.8], [8, 1.12, 0.08, 0.08, 1.2])
        m = cv2.getRotationMatrix2D((w / 2, h / 2), float(pose[0]), float(pose[1]))
        m[:, 2] += pose[2:4] * (w, h)
        f = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT101).astype(np.float32) * pose[4]
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return out


def first_scenario_frames(stream: LabelledStream) -> list[Frame]:
    """The frames of the stream's first scenario: what a starting model is trained on."""
    if not stream.scenarios:
        raise ValueError(f"stream {stream.name!r} has no scenarios")
    first = stream.scenarios[0]
    out: list[Frame] = []
    for f in stream.frames:
        if f.scenario == first:
            out.append(f)
        elif out:  # scenarios are contiguous: the first one is over
            break
    return out


def bag_stream(path: Path, camera_topic: str = "", corrections_topic: str = "", parts: int = 4,
               image_size: tuple[int, int] | None = None) -> LabelledStream:
    """The labelled frames of a robot's recording (ROS 2 bag, see ``etuner_ros.core.bag``).

    Labels are the bag's own LabelCorrections (``true_class``, corrections and confirmations
    alike), paired with frames by header stamp; frames nobody labelled cannot be scored and
    are left out (counted in ``description``). The labelled frames play in recorded order, cut
    into ``parts`` equal runs that serve as scenarios (the first trains the starting model), and
    the stream clock keeps the recording's pace: ``description["fps"]`` = labelled frames per
    second of the bag. A bag without corrections raises ``BagError`` saying that accuracy
    cannot be scored, with the bag's summary and how to label its frames
    (``python -m etuner_ros.core.bag export``, then ``--stream``).
    """
    from etuner_ros.core.bag import BagError, BagSource, labelled_frames, split_parts

    with BagSource(path, camera_topic, corrections_topic) as src:
        info = src.info
        frames, stats = labelled_frames(src, image_size, keep_unlabelled=False)
    if not frames:
        why = ("it has no LabelCorrection topic" if not info.corrections_topic else
               f"none of its {info.corrections} corrections names a frame of "
               f"{info.camera_topic} by stamp")
        raise BagError("\n".join([
            f"cannot score accuracy on this bag: {why}, so no frame has a true label.",
            *info.lines(),
            "Label its frames: `python -m etuner_ros.core.bag export BAG DIR --parts 4`, move "
            "each DIR/<part>/unlabelled/<image> into DIR/<part>/<class>/, then run the "
            "benchmark with `--stream DIR`; or record the caregivers' /corrections with the "
            "camera (`ros2 bag record -o NAME <camera topic> /corrections`)."]))
    part = split_parts(len(frames), parts)
    first = {f.label for f, k in zip(frames, part, strict=True) if k == 0}
    if len(first) < 2:
        raise BagError(f"the first of {parts} parts of {path} has labels of {len(first)} class "
                       "only: the starting model needs two or more (use fewer parts)")
    out = [Frame(i, f.image, f.label, f"part{k + 1}")
           for i, (f, k) in enumerate(zip(frames, part, strict=True))]
    class_names = list(dict.fromkeys(f.label for f in out))
    seconds = max(info.duration_s, 1e-9)
    return LabelledStream(
        name=Path(path).name, frames=out, class_names=class_names,
        scenarios=list(dict.fromkeys(f.scenario for f in out)),
        description={"source": "bag", "path": str(Path(path).resolve()),
                     "camera_topic": info.camera_topic,
                     "corrections_topic": info.corrections_topic, "duration_s": info.duration_s,
                     "frames_in_bag": stats["frames"], "labelled": stats["labelled"],
                     "unlabelled_left_out": stats["frames"] - stats["labelled"],
                     "undecodable": stats["undecodable"],
                     "unpaired_corrections": stats["unpaired_corrections"],
                     "region_corrections_left_out": stats["region_corrections"], "parts": parts,
                     "fps": len(out) / seconds if info.duration_s > 0 else 1.0})


@dataclass(frozen=True, eq=False)
class RegionFrame(Frame):
    """One detected object of a room frame, as the recogniser sees it: the crop of a detector's
    box, labelled with the class of the truth object under it. ``frame_index`` is the room
    frame's position in the stream (the benchmark's clock); ``index`` counts regions."""

    frame_index: int = 0
    object_id: int = 0


def rooms_stream(seed: int = 0, frames_per_scenario: int = ROOMS_FRAMES_PER_SCENARIO,
                 image_size: tuple[int, int] = (128, 96),
                 objects: tuple[int, int] = ROOMS_OBJECTS) -> LabelledStream:
    """Rooms with several objects (``sim/rooms.py``) seen through the simulated detector
    (``sim/detector.py``): every box the detector finds on a truth object becomes a
    :class:`RegionFrame` (crop cut as perception cuts, ``core.regions.crop``). Region accuracy
    is scored on these: a false box has no true class, and an object the detector missed was
    never shown to the recogniser (both are counted in the description)."""
    from etuner_ros.core.regions import Box, crop
    from etuner_ros.sim.detector import SimDetector
    from etuner_ros.sim.rooms import ROOMS_VERSION, RoomWorld

    if frames_per_scenario < 1:
        raise ValueError(f"frames_per_scenario must be >= 1, got {frames_per_scenario}")
    world = RoomWorld(seed, image_size, objects=objects)
    detector = SimDetector(seed)
    out: list[RegionFrame] = []
    false_boxes = missed = 0
    for frame in world.stream(frames_per_scenario):
        found = set()
        for det in detector.detect(frame):
            if det.truth_label is None:
                false_boxes += 1
                continue
            found.add(det.truth_id)
            out.append(RegionFrame(len(out), crop(frame.image, Box(*det.box)), det.truth_label,
                                   frame.scenario, frame_index=frame.index,
                                   object_id=int(det.truth_id)))
        missed += sum(o.object_id not in found for o in frame.objects)
    n_frames = frames_per_scenario * len(world.scenarios)
    return LabelledStream(
        name=f"rooms_s{seed}", frames=out, class_names=world.all_class_names(),
        scenarios=[s.name for s in world.scenarios],
        description={"source": "rooms", "seed": seed, "world_version": WORLD_VERSION,
                     "rooms_version": ROOMS_VERSION, "image_size": list(world.image_size),
                     "frames_per_scenario": frames_per_scenario, "room_frames": n_frames,
                     "objects_in_view": list(objects), "regions": len(out),
                     "false_boxes_not_scored": false_boxes,
                     "missed_objects_not_scored": missed,
                     "scenario_settings": [asdict(s) for s in world.scenarios],
                     "recurring": recurring_scenarios(world.scenarios)})
