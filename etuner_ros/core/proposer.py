"""Class-agnostic region proposer: a small torchvision detector that says *where* objects are.

Perception recognises each region of interest in a frame; when no upstream detector publishes
boxes, this module finds the regions. It only answers "there is an object here": the recogniser
(core/model.py) says what it is, so the detector needs two classes (background, object).

Why SSDlite (``ssdlite320_mobilenet_v3_large``) and not ``fasterrcnn_mobilenet_v3_large_320_fpn``:
measured on this project's CPU (1 thread, batch of 8, random init), one SSDlite training step
takes 0.34 s at 160 px against 8.3 s for the Faster R-CNN (whose box head alone is a 12.8 M
parameter MLP over 512 sampled regions per image), and inference 25 ms against 106 ms. SSDlite
is 2.2 M parameters, trains to propose something within a minute, and its anchors work at any
square input size, so a robot can trade resolution for speed (``input_size``, kept in the
checkpoint).

Frames are resized to the square input with OpenCV's INTER_AREA before the model sees them (as
core/model.py does for the recogniser): a 1280x720 frame never becomes a large float tensor, and
frames of different sizes batch together. Boxes are scaled back to each frame's own pixels.

Checkpoints follow core/checkpoint.py: atomic save, ``torch.load(weights_only=True)``, format,
architecture, size, key, shape, dtype and finiteness checks before anything serves, and one
exception type (ProposerCheckpointError, a CheckpointError) whose message names the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
from torch import nn
from torchvision.models.detection import ssdlite320_mobilenet_v3_large
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import nms

from etuner_ros.core.checkpoint import (
    MAX_FILE_BYTES,
    CheckpointError,
    atomic_save,
    read_payload,
    state_problem,
)

FORMAT = "etuner_ros/proposer/1"
ARCH = "ssdlite320_mobilenet_v3_large"
#: Default square input side: 160 px trains ~4x faster than torchvision's 320 on a CPU.
DEFAULT_INPUT_SIZE = 160
#: Input side limits: 32 px is the smallest where every SSDlite feature map still exists; 640 is
#: 4x the compute of the pretrained 320 and more than a home robot's proposer needs.
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 32, 640
#: Classes including background: 2 (background + object) for our checkpoints, 91 for COCO's.
MAX_CLASSES = 91
#: torchvision's SSDlite normalisation (maps [0, 1] to [-1, 1]); the pretrained weights expect it.
_MEAN, _STD = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]


class ProposerCheckpointError(CheckpointError):
    """A proposer checkpoint that must not be loaded; the message names the file and why."""


class Proposal(NamedTuple):
    """One region in the frame's own pixels: top-left corner, width, height, detector score."""

    x: int
    y: int
    w: int
    h: int
    score: float

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.w, self.h


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    return value


def _set_input_size(model: SSD, input_size: int) -> None:
    """SSDlite's builder fixes 320x320; the anchors adapt to any feature map, so only the
    transform's fixed size changes."""
    model.transform = GeneralizedRCNNTransform(input_size, input_size, _MEAN, _STD,
                                               size_divisible=1,
                                               fixed_size=(input_size, input_size))


def build_detector(num_classes: int = 2, input_size: int = DEFAULT_INPUT_SIZE) -> SSD:
    """A randomly initialised SSDlite (no download: ``weights=None, weights_backbone=None``)."""
    _check_int("num_classes", num_classes, 2, MAX_CLASSES)
    _check_int("input_size", input_size, MIN_INPUT_SIZE, MAX_INPUT_SIZE)
    model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                          num_classes=num_classes)
    _set_input_size(model, input_size)
    return model


def detector_input_size(model: SSD) -> int:
    """The square side the detector runs at (its transform's fixed size)."""
    fixed = getattr(model.transform, "fixed_size", None)
    if not fixed or fixed[0] != fixed[1]:
        raise ValueError(f"detector transform has no square fixed size ({fixed!r})")
    return int(fixed[0])


def detector_num_classes(model: SSD) -> int:
    """Classes including background, read from the classification head."""
    return int(model.head.classification_head.num_columns)


def to_input(images: Sequence[np.ndarray], input_size: int) -> torch.Tensor:
    """RGB uint8 HxWx3 frames -> float [N, 3, S, S] in [0, 1] (the model normalises itself)."""
    out = np.empty((len(images), input_size, input_size, 3), np.uint8)
    for i, img in enumerate(images):
        img = np.asarray(img)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 1:
            raise ValueError(f"expected an RGB uint8 HxWx3 image, got {img.dtype} {img.shape}")
        out[i] = cv2.resize(img, (input_size, input_size), interpolation=cv2.INTER_AREA) \
            if img.shape[:2] != (input_size, input_size) else img
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)


class RegionProposer:
    """Wraps an SSDlite detector; ``propose`` turns its detections into class-agnostic boxes.

    Any non-background class counts as "an object" (so COCO weights work unchanged), boxes of
    different classes are suppressed against each other (one region, one proposal), clipped to
    the frame, and dropped when narrower or lower than ``min_size`` frame pixels.
    """

    def __init__(self, model: SSD, *, score_thresh: float = 0.3, max_proposals: int = 20,
                 nms_iou: float = 0.5, min_size: int = 4,
                 meta: dict[str, Any] | None = None) -> None:
        if not 0.0 <= score_thresh <= 1.0 or not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"score_thresh must be in [0, 1] and nms_iou in (0, 1], got "
                             f"{score_thresh}, {nms_iou}")
        self.max_proposals = _check_int("max_proposals", max_proposals, 1, 1000)
        self.min_size = _check_int("min_size", min_size, 0, 100000)
        self.model = model.eval()
        self.input_size = detector_input_size(model)
        self.num_classes = detector_num_classes(model)
        self.score_thresh, self.nms_iou = float(score_thresh), float(nms_iou)
        self.meta = dict(meta or {})
        # The model's own per-class filtering runs first: same threshold, enough candidates left
        # for the class-agnostic NMS below to choose from.
        model.score_thresh = self.score_thresh
        model.nms_thresh = self.nms_iou
        model.detections_per_img = max(100, 4 * self.max_proposals)

    @torch.inference_mode()
    def propose_batch(self, images: Sequence[np.ndarray]) -> list[list[Proposal]]:
        """Proposals for each RGB uint8 HxWx3 frame (frames may differ in size), best first."""
        if not images:
            return []
        x = to_input(images, self.input_size)
        outputs = self.model(list(x))
        return [self._to_proposals(out, np.asarray(img).shape[:2])
                for out, img in zip(outputs, images, strict=True)]

    def propose(self, image: np.ndarray) -> list[Proposal]:
        """Proposals for one RGB uint8 HxWx3 frame, best first."""
        return self.propose_batch([image])[0]

    def _to_proposals(self, out: dict[str, torch.Tensor], hw: tuple[int, int]) -> list[Proposal]:
        boxes, scores = out["boxes"].float(), out["scores"].float()
        keep = (out["labels"] > 0) & (scores >= self.score_thresh) & torch.isfinite(scores)
        boxes, scores = boxes[keep], scores[keep]
        keep = nms(boxes, scores, self.nms_iou)  # class-agnostic; sorted by score
        boxes, scores = boxes[keep].numpy(), scores[keep].numpy()
        h, w = hw
        scale = np.array([w, h, w, h], np.float64) / self.input_size
        result: list[Proposal] = []
        for box, score in zip(boxes.astype(np.float64) * scale, scores, strict=True):
            x0, y0 = (int(np.clip(np.floor(v), 0, lim)) for v, lim in zip(box[:2], (w, h),
                                                                          strict=True))
            x1, y1 = (int(np.clip(np.ceil(v), 0, lim)) for v, lim in zip(box[2:], (w, h),
                                                                         strict=True))
            if x1 - x0 < max(1, self.min_size) or y1 - y0 < max(1, self.min_size):
                continue
            result.append(Proposal(x0, y0, x1 - x0, y1 - y0, float(score)))
            if len(result) >= self.max_proposals:
                break
        return result


def pretrained_proposer(weights: str | None = "DEFAULT", **options: Any) -> RegionProposer:
    """A robot's hook: torchvision's COCO-trained SSDlite (91 classes, 320 px) as a proposer.

    Every COCO detection counts as a proposal (``RegionProposer`` is class-agnostic), so a robot
    gets useful boxes without training. ``weights`` is a torchvision weights name ("DEFAULT",
    "COCO_V1"); torchvision downloads the file into ``$TORCH_HOME`` on first use, or finds it
    there. UNTESTED HERE: this project's build and test machines have no internet, so only the
    ``weights=None`` path (same architecture, random weights) runs in the tests. To serve it on a
    machine without network, run this once where there is one and ``save_proposer`` the model:
    ``load_proposer`` then reads it like any project checkpoint.
    """
    model = ssdlite320_mobilenet_v3_large(weights=weights, weights_backbone=None)
    _set_input_size(model, 320)
    return RegionProposer(model, meta={"source": f"torchvision {ARCH} weights={weights}"},
                          **options)


def save_proposer(path: str | os.PathLike[str], model: SSD,
                  meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` atomically (temp file, fsync, rename) as a proposer checkpoint.

    ``meta`` must hold only plain types (str, int, float, bool, None, lists, dicts) so it reads
    back with ``weights_only=True``; it records how the checkpoint was made.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "arch": ARCH,
        "num_classes": detector_num_classes(model),
        "input_size": detector_input_size(model),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    return atomic_save(path, payload)


def _fail(path: Path, why: str) -> ProposerCheckpointError:
    return ProposerCheckpointError(f"proposer checkpoint {path}: {why}")


def _check_state(path: Path, state: object, model: nn.Module) -> dict[str, torch.Tensor]:
    """Keys, shapes, dtypes and finiteness against the freshly built architecture."""
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise _fail(path, "state_dict missing or not a dict of named tensors")
    why = state_problem(state, model.state_dict(), ARCH)
    if why:
        raise _fail(path, why)
    return state


def load_proposer(path: str | os.PathLike[str], *, max_bytes: int = MAX_FILE_BYTES,
                  **options: Any) -> RegionProposer:
    """Load and validate a checkpoint written by ``save_proposer``; raise
    ProposerCheckpointError if it is missing, too big, corrupt, not a proposer, of another
    architecture, out of limits, or has mismatched or non-finite weights. ``options`` go to
    ``RegionProposer`` (score_thresh, max_proposals, nms_iou, min_size); without a
    ``score_thresh`` the checkpoint's ``meta["score_thresh"]`` applies when it has one (scores
    are only comparable within one training recipe, so the checkpoint's maker knows best)."""
    path = Path(path)
    data = read_payload(path, max_bytes, FORMAT, _fail)
    if data.get("arch") != ARCH:
        raise _fail(path, f"unsupported architecture {data.get('arch')!r} (supported: {ARCH})")
    meta = data.get("meta", {})
    if not isinstance(meta, dict):
        raise _fail(path, f"meta is a {type(meta).__name__}, not a dict")
    if "score_thresh" in meta:  # the maker's calibrated threshold, unless the caller overrides
        thresh = meta["score_thresh"]
        if isinstance(thresh, bool) or not isinstance(thresh, int | float) \
                or not 0.0 <= thresh <= 1.0:
            raise _fail(path, f"meta score_thresh {thresh!r} is not a number in [0, 1]")
        options.setdefault("score_thresh", float(thresh))
    try:
        model = build_detector(data.get("num_classes"), data.get("input_size"))
    except ValueError as exc:  # num_classes or input_size missing or out of limits
        raise _fail(path, str(exc)) from exc
    model.load_state_dict(_check_state(path, data.get("state_dict"), model), strict=True)
    return RegionProposer(model, meta=meta, **options)


__all__ = ["ARCH", "DEFAULT_INPUT_SIZE", "FORMAT", "MAX_CLASSES", "MAX_INPUT_SIZE",
           "MIN_INPUT_SIZE", "Proposal", "ProposerCheckpointError", "RegionProposer",
           "build_detector", "detector_input_size", "detector_num_classes", "load_proposer",
           "pretrained_proposer", "save_proposer", "to_input"]
