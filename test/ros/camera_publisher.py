"""A camera in a process of its own (as a robot's driver is): publishes frames of one size and
encoding with the sensor-data QoS, best effort, at a fixed rate.

    python camera_publisher.py WIDTH HEIGHT ENCODING COUNT RATE_HZ FIRST_STAMP_SEC [TOPIC [WxH]]

With WxH, every other frame has that size instead (one publisher, one numbering).

The pixels are a fixed pattern seeded by the size, so an rgb8 and a bgr8 run show perception the
same picture. Prints ``sent N`` and exits.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import rclpy
from sensor_msgs.msg import Image

from etuner_ros.ros.qos import image_qos


def main() -> int:
    width, height, encoding, count, rate, first = sys.argv[1:7]
    topic = sys.argv[7] if len(sys.argv) > 7 else "image"
    w, h, n, first_sec = int(width), int(height), int(count), int(first)
    sizes = [(w, h)]
    if len(sys.argv) > 8:
        sizes.append(tuple(int(v) for v in sys.argv[8].split("x")))
    frames = []
    for fw, fh in sizes:
        rgb = np.random.default_rng(fw * fh).integers(0, 255, (fh, fw, 3), dtype=np.uint8)
        pixels = rgb if encoding == "rgb8" else np.ascontiguousarray(rgb[:, :, ::-1])
        frames.append((fw, fh, pixels.tobytes()))
    rclpy.init()
    node = rclpy.create_node("test_camera")
    pub = node.create_publisher(Image, topic, image_qos("best_effort", 2))
    deadline = time.monotonic() + 60
    while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let the match settle on both sides
    for i in range(n):
        fw, fh, data = frames[i % len(frames)]
        msg = Image(height=fh, width=fw, encoding=encoding, step=fw * 3, data=data)
        msg.header.stamp.sec, msg.header.frame_id = first_sec + i, "test_cam"
        pub.publish(msg)
        time.sleep(1.0 / float(rate))
    time.sleep(0.5)
    print(f"sent {n}", flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
