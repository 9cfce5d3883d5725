"""Perception's home recall: its parameters, the starting model, and the caregiver's veto
(``core/home_recall.py``: the starting model answers again while the camera is back in the scene
it was trained on).

Kept out of ``perception_node`` (as ``ros/label_memory_feed.py`` is): at configure the node calls
:meth:`load` with the *base* checkpoint (parameter ``checkpoint``, not the tuner's latest), for
every frame :meth:`choose` says whether that model answers, and :meth:`answered` remembers what
it said. The home's scene signature comes from the checkpoint's ``extra`` (``sim/pretrain.py``
saves it from the training frames); a checkpoint without one turns home recall off, said once
in the log and on ``/diagnostics`` (``home.off``). Corrections of frames the starting model
answered are its veto evidence: each ends in one counter (``home.labels`` or
``home.labels_ignored``). Runs on perception's frame callback group, so frames and corrections
never race.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node

from etuner_ros.core.checkpoint import CheckpointError, load_checkpoint, read_extra
from etuner_ros.core.class_names import InvalidClassName, normalise_class
from etuner_ros.core.home_recall import THRESHOLD, WINDOW, HomeConfig, HomeRecall, HomeSignature
from etuner_ros.core.model import ModelBundle
from etuner_ros.msg import LabelCorrection
from etuner_ros.ros.params import declare
from etuner_ros.ros.qos import corrections_qos
from etuner_ros.ros.stamps import stamp_ns

ANSWERS_KEPT = 256  # frames the starting model answered, kept for the corrections that follow


class HomeFeed:
    """Declares the home-recall parameters on ``node``; see the module docstring."""

    def __init__(self, node: Node) -> None:
        self.node = node
        enabled = bool(declare(
            node, "home_recall", True, "answer with the starting model (the base 'checkpoint') "
            "while the camera's scene matches the one it was trained on "
            "(core/home_recall.py); false: the served model always", read_only=True))
        threshold = declare(node, "home_threshold", THRESHOLD, "a window of frames is at home "
                            "below this distance from the home's scene signature (in per-frame "
                            "spreads)", minimum=0.1, maximum=100.0, read_only=True)
        window = declare(node, "home_window", WINDOW, "frames (regions) whose mean signature "
                         "is compared with the home's", minimum=1, maximum=1000, read_only=True)
        self.config = HomeConfig(enabled, window=int(window), threshold=float(threshold))
        self.model: ModelBundle | None = None
        self.recall: HomeRecall | None = None
        self.off = "" if enabled else "parameter home_recall is false"
        self.counts: Counter[str] = Counter()
        self._answers: OrderedDict[int, tuple[int, tuple[str, ...], tuple[bool, ...]]] = \
            OrderedDict()
        self._sub = None

    def load(self, checkpoint: str, arch: str) -> None:
        """At configure: the base checkpoint's model and the home's signature, or off (logged
        with the reason). Never raises for a missing signature: perception serves without."""
        self.release()
        if not self.config.enabled:
            return
        try:
            signature = HomeSignature.from_dict(read_extra(checkpoint).get("home_signature"))
            self.model = load_checkpoint(checkpoint, expected_arch=arch)
        except (CheckpointError, ValueError, OSError) as exc:
            self.off = f"{checkpoint}: {exc}"
            self.node.get_logger().warn(
                f"home recall off: {self.off} (a checkpoint made by `python -m "
                "etuner_ros.sim.pretrain` carries the home's signature)")
            return
        self.recall = HomeRecall(signature, self.config)
        self.off = ""

    def release(self) -> None:
        self.model, self.recall = None, None
        self._answers.clear()

    def subscribe(self, wrap: Callable, group: CallbackGroup) -> None:
        if self.recall is not None and self._sub is None:
            self._sub = self.node.create_subscription(
                LabelCorrection, "corrections", wrap(self._on_correction, "home_corrections"),
                corrections_qos(), callback_group=group)

    def unsubscribe(self) -> None:
        if self._sub is not None:
            self.node.destroy_subscription(self._sub)
            self._sub = None

    def choose(self, crops: Sequence[np.ndarray]) -> ModelBundle | None:
        """The starting model when it answers these regions of one frame, else None."""
        if self.recall is None or self.model is None:
            return None
        now = self.node.get_clock().now().nanoseconds / 1e9
        return self.model if self.recall.observe(crops, now) else None

    def answered(self, stamp: int, names: Sequence[str], recalled: Sequence[bool]) -> None:
        """What the starting model said for the frame ``stamp`` (for the veto)."""
        if self.recall is None:
            return
        self._answers[stamp] = (self.recall.episode, tuple(names), tuple(recalled))
        while len(self._answers) > ANSWERS_KEPT:
            self._answers.popitem(last=False)

    def _on_correction(self, msg: LabelCorrection) -> None:
        entry = self._answers.get(stamp_ns(msg.header.stamp))
        if entry is None or self.recall is None:
            return  # a frame the served model answered: not the starting model's evidence
        episode, names, recalled = entry
        i = msg.detection_index if msg.detection_index >= 0 else (0 if len(names) == 1 else -1)
        if not 0 <= i < len(names) or recalled[i]:
            self.counts["labels_ignored"] += 1  # region not resolved here, or memory's answer
            return
        try:
            right = bool(msg.confirms) or normalise_class(msg.true_class) == names[i]
        except InvalidClassName:
            self.counts["labels_ignored"] += 1
            return
        before = self.recall.vetoes
        self.recall.label(right, episode)
        self.counts["labels"] += 1
        if self.recall.vetoes > before:
            self.node.get_logger().info(
                "home recall: the caregiver's labels show the starting model wrong here; the "
                f"served model answers until the camera has left this scene for "
                f"{self.config.veto_hold_s:g} s")

    def values(self) -> dict:
        """Counters for ``/diagnostics`` (``home.*``)."""
        out = {f"home.{k}": v for k, v in sorted(self.counts.items())}
        out["home.enabled"] = self.recall is not None
        if self.off:
            out["home.off"] = self.off
        if self.recall is not None:
            out["home.answered"] = self.recall.answered
            out["home.vetoes"] = self.recall.vetoes
            out["home.distance"] = round(self.recall.distance, 3)
        return out
