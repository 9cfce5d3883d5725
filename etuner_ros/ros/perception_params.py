"""The perception node's own parameters as declared, described, validated ROS parameters.

Its own module, as ``ros/tuner_params.py`` is the tuner's, so the node file holds the lifecycle,
inference and swap, and a reader finds every setting with its description in one place. The
region parameters are declared by ``ros/region_feed.py``, which uses them. Two parameters follow
a run-time ``ros2 param set`` (``publish_annotated``, ``no_frames_warn_s``: each is read where it
is used, so the node's attribute is updated); every other is read once at start-up and declared
``read_only``, so a set is refused with a reason instead of answered with success and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rclpy.node import Node

from etuner_ros.core.model import SUPPORTED_ARCHS
from etuner_ros.ros.params import ParameterError, declare
from etuner_ros.ros.qos import RELIABILITY_CHOICES


@dataclass(frozen=True)
class PerceptionSettings:
    """The perception node's parameters read at start-up, as :func:`declare_settings` read
    them (the two run-time ones are the node's ``annotate`` and ``no_frames_warn_s``)."""

    arch: str
    checkpoint: str        # expanded
    models_dir: Path       # data_dir/models, expanded
    image_reliability: str
    image_queue_depth: int
    torch_threads: int
    autostart: bool


def declare_settings(node: Node) -> PerceptionSettings:
    """Declare the node's own parameters on ``node``; sets ``node.annotate`` and
    ``node.no_frames_warn_s`` now and on every accepted run-time set."""
    arch = declare(node, "architecture", "mobilenet_v3_small",
                   "torchvision classifier architecture of the served model",
                   choices=SUPPORTED_ARCHS, read_only=True)
    ckpt = declare(node, "checkpoint", "", "path of the starting checkpoint (required)",
                   read_only=True)
    data_dir = declare(node, "data_dir", "~/.local/share/etuner_ros",
                       "the tuner's models/active.json here names the model to start from "
                       "(else 'checkpoint')", read_only=True)
    reliability = declare(node, "image_reliability", "best_effort",
                          "QoS reliability of the image subscription",
                          choices=RELIABILITY_CHOICES, read_only=True)
    depth = declare(node, "image_queue_depth", 2,
                    "image subscription queue depth; small keeps latency low", minimum=1,
                    maximum=100, read_only=True)
    node.annotate = declare(node, "publish_annotated", True,
                            "publish detections/image with the prediction drawn on it (only "
                            "while it has subscribers)",
                            on_set=lambda v: setattr(node, "annotate", v))
    threads = declare(node, "torch_threads", 1,
                      "CPU threads torch may use for inference (with the tuner's "
                      "torch_threads, at most the CPU cores, so a round cannot starve it)",
                      minimum=1, maximum=64, read_only=True)
    node.no_frames_warn_s = declare(node, "no_frames_warn_s", 5.0,
                                    "while active, warn (log and /diagnostics) when no frame "
                                    "arrived for this many seconds of ROS time",
                                    minimum=0.5, maximum=3600.0,
                                    on_set=lambda v: setattr(node, "no_frames_warn_s", v))
    autostart = declare(node, "autostart", True,
                        "configure and activate at start-up (false: wait for a lifecycle "
                        "manager)", read_only=True)
    if not ckpt:
        raise ParameterError(
            "perception: parameter 'checkpoint' is empty; give the starting model, e.g. one "
            "made by `python -m etuner_ros.sim.pretrain`")
    return PerceptionSettings(arch, str(Path(ckpt).expanduser()),
                              Path(data_dir).expanduser() / "models", reliability, int(depth),
                              int(threads), bool(autostart))
