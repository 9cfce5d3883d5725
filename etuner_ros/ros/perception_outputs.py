"""Perception's lifecycle publishers and the gate that says whether it answers frames.

Kept out of ``perception_node`` so the node stays lifecycle, inference and swap glue. The gate
exists because a frame can reach a callback after deactivate, cleanup or shutdown began (the
executor took it before the subscription went, or inference was running): a disabled lifecycle
publisher would drop its answer without a trace. :meth:`PerceptionOutputs.answer` publishes only
while serving, under the lock that :meth:`serve` takes, and says False otherwise, so the node
counts the frame (``frames_while_inactive``).
"""

from __future__ import annotations

import threading

from rclpy.lifecycle import LifecycleNode
from rclpy.publisher import Publisher
from sensor_msgs.msg import Image

from etuner_ros.core.model import ModelBundle
from etuner_ros.msg import DetectionArray, ModelInfo
from etuner_ros.ros.qos import latched_qos, reliable_qos


class PerceptionOutputs:
    """``detections``, ``detections/image`` and ``model_info`` of one node, and its gate."""

    def __init__(self, node: LifecycleNode) -> None:
        self._node = node
        self._lock = threading.Lock()
        self.serving = False
        self._det: Publisher | None = None
        self._ann: Publisher | None = None
        self._info: Publisher | None = None

    def create(self) -> None:
        """Configure: the publishers (enabled by the node's activation)."""
        n = self._node
        self._det = n.create_lifecycle_publisher(DetectionArray, "detections", reliable_qos())
        self._ann = n.create_lifecycle_publisher(Image, "detections/image", reliable_qos(2))
        self._info = n.create_lifecycle_publisher(ModelInfo, "model_info", latched_qos())

    def serve(self, on: bool) -> None:
        """Open or close the gate; closing waits for an answer being published."""
        with self._lock:
            self.serving = on

    def answer(self, out: DetectionArray) -> bool:
        """Publish one frame's detections; False (nothing sent) when not serving."""
        with self._lock:
            if not self.serving or self._det is None:
                return False
            self._det.publish(out)
            return True

    def annotated(self) -> Publisher | None:
        """``detections/image`` while someone (RViz) subscribes, else None."""
        ann = self._ann
        return ann if ann is not None and ann.get_subscription_count() > 0 else None

    def announce(self, bundle: ModelBundle | None, path: str) -> None:
        """``model_info`` (latched) for the serving model, when there is one."""
        if bundle is None or self._info is None:
            return
        info = ModelInfo(version=bundle.version, architecture=bundle.arch,
                         input_size=bundle.input_size, class_names=list(bundle.class_names),
                         checkpoint_path=path)
        info.header.stamp = self._node.get_clock().now().to_msg()
        self._info.publish(info)

    def release(self) -> None:
        """Cleanup or shutdown: close the gate and destroy the publishers."""
        self.serve(False)
        for pub in (self._det, self._ann, self._info):
            if pub is not None:
                self._node.destroy_lifecycle_publisher(pub)
        self._det = self._ann = self._info = None
