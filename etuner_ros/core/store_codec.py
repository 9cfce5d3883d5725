"""What the sample store holds, one sample at a time: the records (Sample, Correction, Outcome),
the checks a sample passes before it is written, and its image and row encodings.

Kept apart from ``core/store.py`` (the SQLite store: transactions, the correction rules, the
reservoir) and ``core/store_schema.py`` (the file format): this module changes when a sample gains
a field or a check, and knows nothing of connections or tables beyond the column order a row is
read in (:data:`LABELLED_COLUMNS`, :data:`UNLABELLED_COLUMNS`). Images are PNG (lossless,
compact).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from etuner_ros.core.store_schema import REGION_COLUMNS, SAMPLE_COLUMNS

# The columns a row is selected in for :func:`sample_from_row`: labelled and held rows, and
# unlabelled rows padded to the same shape (no label, prediction, source or region).
LABELLED_COLUMNS = f"{SAMPLE_COLUMNS}, {', '.join(REGION_COLUMNS)}"
UNLABELLED_COLUMNS = ("id, image, NULL, stamp_ns, NULL, NULL, 0, '', scenario, "
                      "NULL, NULL, NULL, NULL, NULL")


@dataclass
class Sample:
    """One stored frame; unlabelled frames have ``label=None``."""

    id: int
    image: np.ndarray
    label: str | None
    stamp_ns: int
    predicted: str | None = None
    model_version: int | None = None
    confirms: bool = False
    source: str = ""
    scenario: str = ""
    box: tuple[int, int, int, int] | None = None  # region shown (x, y, w, h); None: whole frame
    detection_index: int | None = None  # its index in the DetectionArray; None: none published


@dataclass
class Correction:
    """A caregiver's label paired with its frame, ready for :meth:`SampleStore.add_corrections`;
    ``label`` must already be normalised (``core.class_names.normalise_class``). ``image`` is
    the region's crop and ``box`` the region in the frame (x, y, w, h; it and the stamp name
    the region a later correction supersedes); ``detection_index`` is informational."""

    image: np.ndarray
    label: str
    stamp_ns: int
    predicted: str | None = None
    model_version: int | None = None
    confirms: bool = False
    source: str = ""
    scenario: str = ""
    box: tuple[int, int, int, int] | None = None
    detection_index: int | None = None


@dataclass
class Outcome:
    """What became of one correction: ``state`` is ``stored`` (a training sample, id in
    ``labelled``), ``held`` (id in ``held``, waiting for its class) or ``rejected`` (``reason``).
    ``superseded``: older samples of the same region (stamp and box) it replaced;
    ``promoted``: ids in ``labelled`` of held samples released because this correction made
    their class real."""

    state: str
    id: int | None = None
    reason: str = ""
    superseded: int = 0
    promoted: list[int] = field(default_factory=list)


def check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"image must be a uint8 numpy array, got {getattr(image, 'dtype', image)}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must be RGB HxWx3, got shape {image.shape}")


def encode_image(image: np.ndarray) -> bytes:
    check_image(image)
    bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def decode_image(blob: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(blob, dtype=np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_stamp(stamp_ns: int) -> int:
    if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)) or stamp_ns < 0:
        raise ValueError(f"stamp_ns must be a non-negative int, got {stamp_ns!r}")
    return int(stamp_ns)


def check_region(box: object, index: object) -> tuple[int, int, int, int] | None:
    """``box`` as four ints (x, y >= 0; w, h >= 1) or None; ValueError otherwise."""
    if index is not None and (isinstance(index, bool) or not isinstance(index, (int, np.integer))
                              or index < 0):
        raise ValueError(f"detection_index must be a non-negative int or None, got {index!r}")
    if box is None:
        return None
    vals = tuple(box)  # type: ignore[call-overload]
    if (len(vals) != 4 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                              for v in vals)
            or min(vals[:2]) < 0 or min(vals[2:]) < 1):
        raise ValueError(f"box must be (x, y, w, h) ints, x, y >= 0, w, h >= 1, got {box!r}")
    return tuple(int(v) for v in vals)  # type: ignore[return-value]


def sample_from_row(r: tuple) -> Sample:
    """A row selected as :data:`LABELLED_COLUMNS` or :data:`UNLABELLED_COLUMNS` as a Sample."""
    box = None if r[9] is None else (int(r[9]), int(r[10]), int(r[11]), int(r[12]))
    return Sample(int(r[0]), decode_image(r[1]), r[2], int(r[3]), r[4],
                  None if r[5] is None else int(r[5]), bool(r[6]), r[7], r[8], box,
                  None if r[13] is None else int(r[13]))
