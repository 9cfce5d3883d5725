#!/usr/bin/env python3
"""The latency benchmark's camera: a process of its own, as a robot's camera driver is.

    python latency_camera.py WIDTH HEIGHT FPS LOG

Publishes one rgb8 frame per slot of 1/FPS s (best effort, sensor-data QoS, depth 2) until
SIGINT/SIGTERM and writes one line per published frame to LOG: ``<stamp ns>`` (the header stamp,
system clock). A slot the process reaches more than one period late is skipped, as a sensor's
frame is lost when its driver is late, and logged as ``skip <slots>``: no backlog is published in
a burst (a burst does not exist on a real camera and would overflow perception's depth-2
queue). The benchmark reports skipped slots next to its figures.

Why a process (issue 7): in the benchmark's own process the camera thread shared the GIL with
the receiving executor; rclpy's MultiThreadedExecutor busy-looped (``etuner_ros/ros/executor.py``)
and the thread stood still for up to 2.2 s, then published its backlog in one burst.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    width, height, fps, log = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import Image

    from etuner_ros.ros.qos import image_qos
    from etuner_ros.ros.run import use_default_transport_profile

    use_default_transport_profile()
    stop = [False]

    def _stop(*_args: object) -> None:
        stop[0] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("latency_camera")
    pub = node.create_publisher(Image, "image", image_qos("best_effort", 2))
    clock = node.get_clock()
    rgb = np.random.default_rng(1).integers(0, 255, (height, width, 3), np.uint8)
    frame = Image(height=height, width=width, encoding="rgb8", step=width * 3,
                  data=rgb.tobytes())
    frame.header.frame_id = "latency_cam"
    period = 1.0 / fps
    with Path(log).open("w", buffering=1) as out:
        t_next = time.perf_counter()
        while not stop[0]:
            now = clock.now()
            frame.header.stamp = now.to_msg()
            pub.publish(frame)
            out.write(f"{now.nanoseconds}\n")
            t_next += period
            late = time.perf_counter() - t_next
            if late > period:  # missed whole slots: drop them, keep the 30 fps grid
                slots = int(late // period)
                t_next += slots * period
                out.write(f"skip {slots}\n")
            time.sleep(max(0.0, t_next - time.perf_counter()))
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
