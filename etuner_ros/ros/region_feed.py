"""Where perception's regions come from: its parameters, the boxes' subscription, the pairing
with frames by stamp, and the counters of every box or frame that did not make it.

Kept out of ``perception_node`` so the node stays lifecycle, inference and swap; this is the
part a robot integrator configures (``region_source``, ``region_message``, ...).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node

from etuner_ros.core.checkpoint import CheckpointError
from etuner_ros.core.region_pairing import StampPairer
from etuner_ros.core.regions import CROP_CONTEXT, Box, whole_frame
from etuner_ros.ros.params import declare
from etuner_ros.ros.qos import reliable_qos
from etuner_ros.ros.region_input import MESSAGE_TYPES, Region, message_class, read_regions
from etuner_ros.ros.stamps import stamp_ns

REGION_SOURCES: tuple[str, ...] = ("frame", "topic", "detector")


class RegionFeed:
    """Declares the region parameters on ``node``; see the module docstring."""

    def __init__(self, node: Node, image_depth: int, wrap: Callable) -> None:
        """``wrap``: the node's callback guard, for the expiry timer."""
        self.node = node
        self.source = declare(
            node, "region_source", "frame", "what is recognised in a frame: 'frame' (the whole "
            "frame, one detection), 'topic' (each box an upstream detector publishes on "
            "'regions' for the frame's stamp) or 'detector' (each box of the built-in "
            "class-agnostic proposer, proposer_checkpoint)", choices=REGION_SOURCES,
            read_only=True)
        self.proposer_path = str(declare(
            node, "proposer_checkpoint", "", "region_source detector: the proposer's weights "
            "(made by `python -m etuner_ros.sim.train_proposer`, or torchvision's COCO SSDlite "
            "saved with core.proposer.save_proposer)", read_only=True))
        self.proposer_threshold = float(declare(
            node, "proposer_score_threshold", -1.0, "region_source detector: least score of a "
            "proposal (negative: the checkpoint's own)", minimum=-1.0, maximum=1.0,
            read_only=True))
        self.message = declare(
            node, "region_message", "etuner_ros", "message type on 'regions': etuner_ros "
            "(DetectionArray), vision_msgs (Detection2DArray) or yolo_msgs (yolo_ros)",
            choices=MESSAGE_TYPES, read_only=True)
        timeout = declare(
            node, "region_timeout_s", 1.0, "a frame waits this long (ROS time) for its boxes, "
            "and boxes for their frame; then both are counted as unpaired", minimum=0.01,
            maximum=60.0, read_only=True)
        wait_mb = declare(
            node, "region_wait_mb", 64.0, "region_source topic: MiB of camera frames that may "
            "wait for their boxes together; beyond it the oldest is dropped and counted "
            "(pairing_frames_over_bytes)", minimum=1.0, maximum=4096.0, read_only=True)
        self.max_regions = int(declare(
            node, "max_regions", 16, "regions recognised per frame at most (beyond it the "
            "upstream's least confident boxes are counted, not recognised)", minimum=1,
            maximum=256, read_only=True))
        self.crop_context = float(declare(
            node, "crop_context", CROP_CONTEXT, "share of a box's size added around it when "
            "cropping; must equal the label collector's", minimum=0.0, maximum=1.0,
            read_only=True))
        self.pairer: StampPairer = StampPairer(max(2, int(image_depth)) * 8,
                                               int(float(timeout) * 1e9),
                                               int(float(wait_mb) * 2**20))
        self._lock = threading.Lock()
        self.bad = self.over_limit = 0
        self.proposals = 0
        self._sub = None
        self.proposer = None
        self._expiry = None
        if self.from_topic:  # arrivals expire what waits; this covers a stream that stopped
            self._expiry = node.create_timer(min(max(float(timeout) / 2, 0.05), 1.0),
                                             wrap(self.expire, "region_expiry"))

    @property
    def from_topic(self) -> bool:
        return self.source == "topic"

    def load(self) -> None:
        """Check what activation will need, so configure fails and not activate: source
        ``topic``, the message package (``CheckpointError`` naming it when missing); source
        ``detector``, the proposer (``CheckpointError`` with the file and the problem)."""
        if self.from_topic:
            try:
                message_class(self.message)
            except ImportError as exc:
                raise CheckpointError(str(exc)) from exc
        if self.source != "detector" or self.proposer is not None:
            return
        from etuner_ros.core.proposer import load_proposer

        if not self.proposer_path:
            raise CheckpointError("region_source detector needs proposer_checkpoint")
        options = {"max_proposals": self.max_regions}
        if self.proposer_threshold >= 0:
            options["score_thresh"] = self.proposer_threshold
        self.proposer = load_proposer(Path(self.proposer_path).expanduser(), **options)

    def subscribe(self, callback: Callable, group: CallbackGroup) -> None:
        """Subscribe ``regions`` (source ``topic`` only); reliable, like detector outputs."""
        if self.from_topic and self._sub is None:
            self._sub = self.node.create_subscription(
                message_class(self.message), "regions", callback, reliable_qos(50),
                callback_group=group)

    def unsubscribe(self) -> None:
        if self._sub is not None:
            self.node.destroy_subscription(self._sub)
            self._sub = None

    def release(self) -> None:
        """Cleanup: the proposer's weights and the frames waiting for boxes (counted) go;
        the next configure loads the proposer again."""
        self.proposer = None
        self.pairer.drain()

    def stop(self) -> None:
        """Shutdown: :meth:`release`, and the expiry timer goes too."""
        self.unsubscribe()
        self.release()
        if self._expiry is not None:
            self.node.destroy_timer(self._expiry)
            self._expiry = None

    def frame(self, header, rgb: np.ndarray, now_ns: int) -> tuple | None:
        """A frame arrived: ``(header, rgb, regions)`` to recognise now, or None (it waits)."""
        if self.source == "detector" and self.proposer is not None:
            props = self.proposer.propose(rgb)
            with self._lock:
                self.proposals += len(props)
            return header, rgb, [Region(Box(p.x, p.y, p.w, p.h), "", f"p{k}", float(p.score))
                                 for k, p in enumerate(props)]
        if not self.from_topic:
            return header, rgb, [Region(whole_frame(rgb))]
        pair = self.pairer.add_frame(stamp_ns(header.stamp), (header, rgb), now_ns, rgb.nbytes)
        return None if pair is None else self._regions(pair)

    def boxes(self, msg, now_ns: int) -> tuple | None:
        """Boxes arrived: ``(header, rgb, regions)`` when their frame waited, else None."""
        pair = self.pairer.add_regions(stamp_ns(msg.header.stamp), msg, now_ns)
        return None if pair is None else self._regions(pair)

    def expire(self) -> None:
        """Count and drop what waited ``region_timeout_s`` of the node's clock."""
        self.pairer.expire(self.node.get_clock().now().nanoseconds)

    def _regions(self, pair: tuple) -> tuple:
        (header, rgb), msg = pair
        batch = read_regions(msg, self.message, rgb.shape[1], rgb.shape[0], self.max_regions)
        if batch.bad or batch.over_limit:
            with self._lock:
                self.bad += batch.bad
                self.over_limit += batch.over_limit
            self.node.get_logger().warn(
                f"boxes for stamp {stamp_ns(header.stamp)}: {batch.bad} empty or outside the "
                f"{rgb.shape[1]}x{rgb.shape[0]} frame, {batch.over_limit} beyond max_regions "
                f"{self.max_regions}: not recognised (counted)", throttle_duration_sec=5.0)
        return header, rgb, batch.regions

    def values(self) -> dict:
        """For ``/diagnostics``: every box message or frame that found no partner, by why."""
        with self._lock:
            out = {"region_source": self.source, "bad_regions": self.bad,
                   "regions_over_limit": self.over_limit, "proposals": self.proposals}
        waiting_frames, waiting_boxes = self.pairer.waiting()
        out.update({f"pairing_{k}": v for k, v in self.pairer.counts.as_dict().items()})
        out.update({"pairing_frames_waiting": waiting_frames,
                    "pairing_boxes_waiting": waiting_boxes,
                    "pairing_frames_waiting_mb": self.pairer.waiting_frame_bytes() / 2**20})
        return out
