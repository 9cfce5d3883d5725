"""Camera frames and caregivers' corrections from a ROS 2 bag, read without ROS (``rosbags``).

A robot records its camera and the caregivers' corrections with
``ros2 bag record -o home_day1 /camera/color/image_raw /corrections``; the replay node
(``nodes/bag_player_node.py``) plays such a bag through the real nodes, and the benchmark
(``bench --bag``) runs the tuning policies over its frames. Both read it through this module, so
neither needs a ROS install to read a bag (sqlite3 or mcap storage) and both pick topics and
decode images by the same rules:

- The camera topic is the one named, else the bag's only ``sensor_msgs/msg/Image`` or
  ``sensor_msgs/msg/CompressedImage`` topic (several: the caller must name one).
- Corrections are ``etuner_ros/msg/LabelCorrection`` messages (the topic named, else the only
  one; none is fine). A correction names its frame by ``header.stamp``, exactly as on the live
  topics; when one frame is corrected twice the later correction in the bag wins.
- Messages are decoded with the bag's own message definitions when it carries them (rosbag2
  records them), else with ROS 2 Jazzy's and this package's ``msg/*.msg`` (registered with
  rosbags' ``get_types_from_msg``).

``python -m etuner_ros.core.bag info BAG`` summarises a bag; ``export BAG DIR`` writes its frames
as ``DIR/<part>/<class or "unlabelled">/<stamp>.png`` for labelling by hand and for
``bench --stream DIR``. That command line is ``core/bag_cli.py`` and writing bags (tests) is
``core/bag_write.py``; ``bag.main`` and ``bag.write_bag`` still work (see ``__getattr__``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CORRECTION = "etuner_ros/msg/LabelCorrection"
IMAGE_TYPES = (IMAGE, COMPRESSED)
_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


class BagError(ValueError):
    """A bag that cannot be played or benchmarked as asked (the message says why)."""


# ---------------------------------------------------------------------------------------------
# Types


def msg_dirs() -> list[Path]:
    """Where this package's ``.msg`` files are: installed share dirs, then the source tree."""
    dirs = [Path(p) / "share" / "etuner_ros" / "msg"
            for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    dirs.append(Path(__file__).resolve().parents[2] / "msg")
    return [d for d in dirs if (d / "LabelCorrection.msg").is_file()]


@lru_cache(maxsize=1)
def typestore() -> Typestore:
    """ROS 2 Jazzy's message types plus this package's own (from its ``msg/*.msg``)."""
    store = get_typestore(Stores.ROS2_JAZZY)
    dirs = msg_dirs()
    if dirs:
        types: dict = {}
        for f in sorted(dirs[0].glob("*.msg")):
            types.update(get_types_from_msg(f.read_text(), f"etuner_ros/msg/{f.stem}"))
        store.register(types)
    return store


# ---------------------------------------------------------------------------------------------
# What a bag holds


@dataclass(frozen=True)
class BagImage:
    """One camera frame as recorded: raw pixels (``encoding``) or compressed bytes."""

    height: int
    width: int
    encoding: str  # sensor_msgs/Image encoding; for a CompressedImage its ``format``
    step: int
    is_bigendian: int
    data: bytes
    compressed: bool = False

    def rgb(self) -> np.ndarray:
        """RGB uint8 (H, W, 3); BagError for an encoding this package does not read."""
        if self.compressed:
            bgr = cv2.imdecode(np.frombuffer(self.data, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise BagError(f"compressed image ({self.encoding!r}) could not be decoded")
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        enc = self.encoding.lower()
        ch = _CHANNELS.get(enc)
        if ch is None:
            raise BagError(f"unsupported image encoding {self.encoding!r}; supported: "
                           f"{', '.join(_CHANNELS)}")
        h, w, step = self.height, self.width, self.step
        if h <= 0 or w <= 0 or step < w * ch or len(self.data) != step * h:
            raise BagError(f"inconsistent image {w}x{h} {enc} step {step}, "
                           f"{len(self.data)} bytes")
        arr = np.frombuffer(self.data, np.uint8).reshape(h, step)[:, : w * ch].reshape(h, w, ch)
        if enc == "mono8":
            return np.ascontiguousarray(np.repeat(arr, 3, axis=2))
        if enc in ("bgr8", "bgra8"):
            arr = arr[:, :, 2::-1]
        return np.ascontiguousarray(arr[:, :, :3])


@dataclass(frozen=True)
class BagCorrection:
    """A caregiver's LabelCorrection (the frame it labels is the record's ``stamp_ns``)."""

    true_class: str
    source: str = ""
    confirms: bool = False
    box: tuple[int, int, int, int] | None = None  # x, y, width, height when has_box
    detection_index: int = -1  # the region it names (LabelCorrection.msg); -1: none


@dataclass(frozen=True)
class BagRecord:
    """One message of interest, in recorded order; exactly one of image / correction is set."""

    topic: str
    time_ns: int  # when the recorder received it: the bag's clock
    stamp_ns: int  # header.stamp
    frame_id: str
    image: BagImage | None = None
    correction: BagCorrection | None = None


@dataclass
class BagInfo:
    """What a bag holds and which of its topics are played."""

    path: str
    storage: str
    start_ns: int
    end_ns: int
    topics: dict[str, tuple[str, int]]  # topic -> (message type, count)
    camera_topic: str
    corrections_topic: str  # "" when the bag has none
    frames: int = 0
    corrections: int = 0
    ignored_topics: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    def lines(self) -> list[str]:
        """Human-readable summary (the benchmark prints it for a bag it cannot score)."""
        rate = self.frames / self.duration_s if self.duration_s > 0 else 0.0
        out = [f"bag {self.path} ({self.storage}): {self.duration_s:.1f} s",
               f"  camera      {self.camera_topic}: {self.frames} frames ({rate:.2f} fps)",
               f"  corrections {self.corrections_topic or '-'}: {self.corrections}"]
        out += [f"  ignored     {t} ({self.topics[t][0]}, {self.topics[t][1]})"
                for t in self.ignored_topics]
        return out


def _stamp(header: object) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _pick(topics: dict[str, tuple[str, int]], wanted: str, types: tuple[str, ...],
          what: str, option: str, required: bool) -> str:
    found = [t for t, (ty, _) in topics.items() if ty in types]
    if wanted:
        if wanted not in topics:
            raise BagError(f"the bag has no topic {wanted!r}; its topics: {sorted(topics)}")
        if topics[wanted][0] not in types:
            raise BagError(f"topic {wanted!r} holds {topics[wanted][0]}, not {' or '.join(types)}")
        return wanted
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise BagError(f"the bag has several {what} topics {sorted(found)}; name one ({option})")
    if required:
        raise BagError(f"the bag has no {what} topic ({' or '.join(types)}); its topics: "
                       f"{ {t: ty for t, (ty, _) in topics.items()} }")
    return ""


class BagSource:
    """An open bag: ``info`` says what it holds, ``records()`` yields frames and corrections.

    Use as a context manager; ``records()`` can be called again for another pass (loop).
    """

    def __init__(self, path: str | Path, camera_topic: str = "",
                 corrections_topic: str = "") -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"no such bag: {self.path}")
        try:
            self._reader = AnyReader([self.path], default_typestore=typestore())
            self._reader.open()
        except BagError:
            raise
        except Exception as exc:  # rosbags raises several types for unreadable bags
            raise BagError(f"cannot read bag {self.path}: {type(exc).__name__}: {exc}") from None
        self._add_missing_types()
        self.bad_messages = 0
        self.last_bad = ""
        topics: dict[str, tuple[str, int]] = {}
        for c in self._reader.connections:
            ty, n = topics.get(c.topic, (c.msgtype, 0))
            topics[c.topic] = (ty, n + c.msgcount)
        try:
            camera = _pick(topics, camera_topic, IMAGE_TYPES, "camera image", "camera_topic",
                           required=True)
            corr = _pick(topics, corrections_topic, (CORRECTION,), "LabelCorrection",
                         "corrections_topic", required=False)
        except BagError:
            self.close()
            raise
        self.info = BagInfo(
            path=str(self.path), storage=_storage_of(self.path),
            start_ns=int(self._reader.start_time),
            # rosbags' end_time is one past the last message
            end_ns=max(int(self._reader.start_time), int(self._reader.end_time) - 1),
            topics=topics, camera_topic=camera,
            corrections_topic=corr, frames=topics[camera][1],
            corrections=topics[corr][1] if corr else 0,
            ignored_topics=sorted(t for t in topics if t not in (camera, corr)))

    def _add_missing_types(self) -> None:
        """A bag with definitions for some types only: fill the rest from the default store."""
        have = self._reader.typestore.fielddefs
        need = {c.msgtype for c in self._reader.connections} - set(have)
        default = typestore().fielddefs
        extra = {k: v for k, v in default.items() if k not in have}
        if need and extra:
            self._reader.typestore.register(extra)

    def records(self) -> Iterator[BagRecord]:
        """Frames and corrections in recorded order (by the recorder's receive time); messages
        that cannot be deserialised are skipped and counted in ``bad_messages``."""
        wanted = [c for c in self._reader.connections
                  if c.topic in (self.info.camera_topic, self.info.corrections_topic)]
        for conn, t_ns, raw in self._reader.messages(connections=wanted):
            try:
                msg = self._reader.deserialize(raw, conn.msgtype)
                header = msg.header
                base = dict(topic=conn.topic, time_ns=int(t_ns), stamp_ns=_stamp(header),
                            frame_id=str(header.frame_id))
            except Exception as exc:  # one corrupt message must not end the bag: count it
                self.bad_messages += 1
                self.last_bad = f"{conn.topic} at {t_ns}: {type(exc).__name__}: {exc}"[:300]
                continue
            if conn.msgtype == IMAGE:
                yield BagRecord(**base, image=BagImage(
                    int(msg.height), int(msg.width), str(msg.encoding), int(msg.step),
                    int(msg.is_bigendian), bytes(memoryview(msg.data))))
            elif conn.msgtype == COMPRESSED:
                yield BagRecord(**base, image=BagImage(
                    0, 0, str(msg.format), 0, 0, bytes(memoryview(msg.data)), compressed=True))
            else:
                box = msg.box
                yield BagRecord(**base, correction=BagCorrection(
                    str(msg.true_class), str(msg.source), bool(msg.confirms),
                    (int(box.x_offset), int(box.y_offset), int(box.width), int(box.height))
                    if msg.has_box else None,
                    # bags recorded before LabelCorrection had the field: the whole frame
                    int(getattr(msg, "detection_index", -1))))

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> BagSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _storage_of(path: Path) -> str:
    files = [path] if path.is_file() else list(path.iterdir())
    return "mcap" if any(f.suffix == ".mcap" for f in files) else "sqlite3"


# ---------------------------------------------------------------------------------------------
# Frames with the labels the bag gives them (benchmark, export)


@dataclass(frozen=True)
class LabelledFrame:
    time_ns: int
    stamp_ns: int
    image: np.ndarray  # RGB uint8
    label: str | None  # the bag's correction for this frame (latest wins), None if none


def labelled_frames(src: BagSource, image_size: tuple[int, int] | None = None,
                    keep_unlabelled: bool = True) -> tuple[list[LabelledFrame], dict]:
    """Every frame with its label (corrections paired by header stamp; the later wins), plus
    counts: ``frames``, ``labelled``, ``unpaired_corrections`` (no frame of that stamp),
    ``region_corrections`` (corrections that name one region of a frame, by box or
    ``detection_index``: they label an object, not the frame, so they are counted and left
    out), ``undecodable`` (frames whose encoding cannot be read; skipped), ``bad_messages``
    (messages that could not be deserialised; skipped)."""
    labels: dict[int, str] = {}
    frames: list[tuple[int, int, np.ndarray]] = []
    stats = {"frames": 0, "undecodable": 0, "region_corrections": 0}
    for rec in src.records():
        if rec.correction is not None:
            if rec.correction.box is not None or rec.correction.detection_index >= 0:
                stats["region_corrections"] += 1
            else:
                labels[rec.stamp_ns] = rec.correction.true_class
            continue
        stats["frames"] += 1
        try:
            rgb = rec.image.rgb()
        except BagError:
            stats["undecodable"] += 1
            continue
        if image_size is not None and (rgb.shape[1], rgb.shape[0]) != tuple(image_size):
            rgb = cv2.resize(rgb, tuple(image_size), interpolation=cv2.INTER_AREA)
        frames.append((rec.time_ns, rec.stamp_ns, rgb))
    stamps = {s for _, s, _ in frames}
    out = [LabelledFrame(t, s, img, labels.get(s)) for t, s, img in frames
           if keep_unlabelled or s in labels]
    stats["labelled"] = sum(1 for _, s, _ in frames if s in labels)
    stats["unpaired_corrections"] = sum(1 for s in labels if s not in stamps)
    stats["bad_messages"] = src.bad_messages
    return out, stats


def split_parts(n: int, parts: int) -> list[int]:
    """Part index (0-based) of each of ``n`` frames cut into ``parts`` equal runs in order."""
    parts = max(1, min(parts, n))
    return [i * parts // n for i in range(n)]


def export(src: BagSource, out: Path, parts: int = 1) -> int:
    """Write frames as ``out/part<k>/<label or unlabelled>/<stamp_ns>.png``; returns frames."""
    frames, _ = labelled_frames(src)
    for f, k in zip(frames, split_parts(len(frames), parts), strict=True):
        d = Path(out) / f"part{k + 1}" / _safe(f.label or "unlabelled")
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{f.stamp_ns}.png"), cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR))
    return len(frames)


def _safe(name: str) -> str:
    """A class name as a folder name (no separators, no dot-dot)."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_ " else "_" for ch in name).strip()
    return cleaned[:80] or "_"


# ---------------------------------------------------------------------------------------------
# Names that live in the modules built on this one, still importable from here


_MOVED = {"main": "etuner_ros.core.bag_cli", "write_bag": "etuner_ros.core.bag_write"}


def __getattr__(name: str) -> object:
    """``bag.main`` and ``bag.write_bag`` (PEP 562): imported on first use, because
    ``bag_cli`` and ``bag_write`` import this module and an eager import here would be a cycle
    whenever one of them is imported first."""
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    from etuner_ros.core.bag_cli import main

    raise SystemExit(main())
