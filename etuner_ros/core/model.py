"""Classifier building, head growth, layer groups and inference for the continual tuner.

Everything here is plain torch/torchvision (no rclpy) so the tuner, the benchmark and the nodes
share one definition of "the model" and of the layer groups SimFreeze freezes.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torchvision.models as tvm
from torch import nn

SUPPORTED_ARCHS: tuple[str, ...] = (
    "mobilenet_v3_small", "mobilenet_v3_large", "resnet18", "efficientnet_b0")

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _check_arch(arch: str) -> None:
    if arch not in SUPPORTED_ARCHS:
        raise ValueError(
            f"unsupported architecture {arch!r}; supported: {', '.join(SUPPORTED_ARCHS)}")


def build_model(arch: str, num_classes: int) -> nn.Module:
    """A randomly initialised torchvision classifier (weights come from our own checkpoints)."""
    _check_arch(arch)
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return getattr(tvm, arch)(weights=None, num_classes=int(num_classes))


def _head_parent(model: nn.Module, arch: str) -> tuple[nn.Module, str]:
    _check_arch(arch)
    if arch == "resnet18":
        return model, "fc"
    return model.classifier, str(len(model.classifier) - 1)


def head(model: nn.Module, arch: str) -> nn.Linear:
    """The final Linear layer (one row per class)."""
    parent, name = _head_parent(model, arch)
    layer = getattr(parent, name)
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"{arch} head is {type(layer).__name__}, expected Linear")
    return layer


def grow_head(model: nn.Module, arch: str, num_classes: int) -> None:
    """Extend the head to ``num_classes`` rows, keeping the trained rows of known classes.

    The Linear is modified in place (same module object, new Parameters) so layer groups and
    split_forward halves built earlier keep pointing at the live head; optimizers must be rebuilt.
    New rows get N(0, 0.01) weights (torchvision's own init) and the mean old bias, so a new class
    neither dominates nor is silenced before it has been trained.
    """
    layer = head(model, arch)
    old = layer.out_features
    if num_classes < old:
        raise ValueError(f"cannot shrink head from {old} to {num_classes} classes")
    if num_classes == old:
        return
    w, b = layer.weight.data, layer.bias.data
    new_w = torch.empty(num_classes, layer.in_features, dtype=w.dtype, device=w.device)
    nn.init.normal_(new_w, 0.0, 0.01)
    new_w[:old] = w
    new_b = torch.full((num_classes,), float(b.mean()) if old else 0.0,
                       dtype=b.dtype, device=b.device)
    new_b[:old] = b
    layer.weight = nn.Parameter(new_w, requires_grad=layer.weight.requires_grad)
    layer.bias = nn.Parameter(new_b, requires_grad=layer.bias.requires_grad)
    layer.out_features = num_classes


def _stages_by_channels(blocks: Sequence[nn.Module]) -> list[list[nn.Module]]:
    """Group consecutive MobileNetV3 inverted-residual blocks with the same output width."""
    stages: list[list[nn.Module]] = []
    last = None
    for block in blocks:
        width = block.out_channels
        if width != last:
            stages.append([])
            last = width
        stages[-1].append(block)
    return stages


def layer_groups(model: nn.Module, arch: str) -> list[tuple[str, nn.Module]]:
    """Ordered front-to-back groups: the unit SimFreeze freezes and split_forward cuts at.

    Grouping rule (one group per network *stage*, i.e. per change of resolution/width):
    - mobilenet_v3_*: ``stem`` (features[0]); ``stage1..N`` = runs of consecutive inverted-residual
      blocks with the same output channels (small: 5 stages, large: 6); ``final_conv`` (last
      1x1 conv); ``classifier`` (avgpool + flatten + the classifier MLP incl. the head).
    - efficientnet_b0: ``stem``; ``stage1..7`` (torchvision's features[1..7], one per MBConv stage);
      ``final_conv``; ``classifier`` (avgpool + flatten + dropout + head).
    - resnet18: ``stem`` (conv1, bn1, relu, maxpool); ``layer1..4``; ``classifier`` (avgpool +
      flatten + fc).
    Applying the groups in order is exactly ``model.forward``; every parameter is in exactly one
    group; the last group holds the head. Groups share modules (not copies) with ``model``.
    """
    _check_arch(arch)
    flatten = nn.Flatten(1)
    if arch == "resnet18":
        m = model
        return [
            ("stem", nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool)),
            ("layer1", m.layer1), ("layer2", m.layer2),
            ("layer3", m.layer3), ("layer4", m.layer4),
            ("classifier", nn.Sequential(m.avgpool, flatten, m.fc)),
        ]
    feats = list(model.features)
    groups: list[tuple[str, nn.Module]] = [("stem", feats[0])]
    if arch == "efficientnet_b0":
        groups += [(f"stage{i}", stage) for i, stage in enumerate(feats[1:-1], start=1)]
    else:
        groups += [(f"stage{i}", nn.Sequential(*blocks))
                   for i, blocks in enumerate(_stages_by_channels(feats[1:-1]), start=1)]
    groups.append(("final_conv", feats[-1]))
    groups.append(("classifier", nn.Sequential(model.avgpool, flatten, model.classifier)))
    return groups


def split_forward(model: nn.Module, arch: str, k: int) -> tuple[nn.Module, nn.Module]:
    """Cut after the first ``k`` layer groups: ``back(front(x)) == model(x)``.

    Lets SimFreeze compute (and cache) the frozen front's output once and train only ``back``.
    ``k`` may be 0 (front is the identity) up to len(groups) (back is the identity).
    """
    groups = layer_groups(model, arch)
    if not 0 <= k <= len(groups):
        raise ValueError(f"k must be in [0, {len(groups)}] for {arch}, got {k}")
    front = nn.Sequential(*(g for _, g in groups[:k]))
    back = nn.Sequential(*(g for _, g in groups[k:]))
    return front, back


def embed(model: nn.Module, arch: str, x: torch.Tensor) -> torch.Tensor:
    """Penultimate features ``[N, D]`` (the head's input), for drift detection.

    Runs in the model's current mode; callers wanting stable features use eval mode.
    """
    groups = layer_groups(model, arch)
    for _, g in groups[:-1]:
        x = g(x)
    x = torch.flatten(model.avgpool(x), 1)
    if arch != "resnet18":
        for layer in list(model.classifier)[:-1]:
            x = layer(x)
    return x


def preprocess(images: list[np.ndarray] | np.ndarray, input_size: int) -> torch.Tensor:
    """RGB uint8 HxWx3 (one array, a list, or stacked NxHxWx3) -> normalised float [N,3,S,S].

    INTER_AREA because camera frames are mostly downscaled, where it avoids aliasing.
    """
    if isinstance(images, np.ndarray):
        images = [images] if images.ndim == 3 else list(images)
    out = np.empty((len(images), input_size, input_size, 3), dtype=np.float32)
    for i, img in enumerate(images):
        img = np.asarray(img)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected RGB uint8 HxWx3 image, got {img.dtype} {img.shape}")
        if img.shape[:2] != (input_size, input_size):
            img = cv2.resize(img, (input_size, input_size), interpolation=cv2.INTER_AREA)
        out[i] = img
    out = (out / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2)))


@dataclass
class ModelBundle:
    """A model plus what is needed to serve it: label map, version and input size."""

    model: nn.Module
    arch: str
    class_names: list[str] = field(default_factory=list)
    version: int = 0
    input_size: int = 224

    def __post_init__(self) -> None:
        _check_arch(self.arch)
        self.class_names = list(self.class_names)
        n_out = head(self.model, self.arch).out_features
        if len(self.class_names) != n_out:
            raise ValueError(f"{len(self.class_names)} class names for a head with {n_out} outputs")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def predict(self, images: list[np.ndarray] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class ids (int64) and softmax confidences (float32); the model's mode is restored."""
        batch = preprocess(images, self.input_size)
        if batch.shape[0] == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        param = next(self.model.parameters())
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                probs = torch.softmax(self.model(batch.to(param.device, param.dtype)).float(), 1)
                scores, ids = probs.max(dim=1)
        finally:
            self.model.train(was_training)
        return ids.cpu().numpy().astype(np.int64), scores.cpu().numpy().astype(np.float32)

    def clone(self) -> ModelBundle:
        """Deep copy (model included) so a candidate can be trained off the serving copy."""
        return ModelBundle(copy.deepcopy(self.model), self.arch, list(self.class_names),
                           self.version, self.input_size)

    def ensure_classes(self, names: Sequence[str]) -> list[str]:
        """Append unknown class names (in order of first appearance) and grow the head."""
        added: list[str] = []
        for name in names:
            if name not in self.class_names and name not in added:
                if not isinstance(name, str) or not name:
                    raise ValueError(f"class name must be a non-empty string, got {name!r}")
                added.append(name)
        if added:
            grow_head(self.model, self.arch, len(self.class_names) + len(added))
            self.class_names.extend(added)
        return added
