"""Forward FLOPs of a model's parts, counted once per architecture, input size and class count.

Every cost the engine reports and the benchmark's stream clock charges is counted work, not
measured time (``bench/clock.py``), so these counts decide when a round's model serves. They are
measured with torch's ``FlopCounterMode`` on one zero image (the count of a forward does not
depend on the weights or the input values) and cached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from etuner_ros.core.model import ModelBundle, embed, layer_groups

_FLOPS_CACHE: dict[tuple, Any] = {}


def _measured_once(bundle: ModelBundle, what: str,
                   count: Callable[[nn.Module, torch.Tensor], Any]) -> Any:
    """``count(model, x)`` on one zero image in eval mode without gradients, once per
    ``what`` and (arch, input size, classes): the FLOPs of a forward do not depend on weights."""
    key = (what, bundle.arch, bundle.input_size, bundle.num_classes)
    if key not in _FLOPS_CACHE:
        model = bundle.model
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                _FLOPS_CACHE[key] = count(
                    model, torch.zeros(1, 3, bundle.input_size, bundle.input_size))
        finally:
            model.train(was)
    return _FLOPS_CACHE[key]


def group_flops(bundle: ModelBundle) -> list[float]:
    """Forward FLOPs per image of each layer group."""
    def count(model: nn.Module, x: torch.Tensor) -> list[float]:
        out: list[float] = []
        for _, g in layer_groups(model, bundle.arch):
            with FlopCounterMode(display=False) as fc:
                x = g(x)
            out.append(float(fc.get_total_flops()))
        return out

    return _measured_once(bundle, "groups", count)


def embed_flops(bundle: ModelBundle) -> float:
    """Forward FLOPs per image of :func:`~etuner_ros.core.model.embed` (the drift detector's
    features): every group but the head, *plus* the classifier layers before the head's last
    linear (MobileNetV3's 576->1024 linear, which ``sum(group_flops[:-1])`` left out)."""
    def count(model: nn.Module, x: torch.Tensor) -> float:
        with FlopCounterMode(display=False) as fc:
            embed(model, bundle.arch, x)
        return float(fc.get_total_flops())

    return _measured_once(bundle, "embed", count)
