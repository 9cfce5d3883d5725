"""One ``main()`` for every node run on its own (``ros2 run etuner_ros <node>``)."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from etuner_ros.ros.params import ParameterError


def run_node(factory: Callable[[], Node], name: str, args: list[str] | None = None,
             threads: int = 1) -> int:
    """Init rclpy, build the node and spin it until Ctrl-C; a bad parameter is one fatal log
    line and exit code 2, not a traceback. ``threads`` > 1 lets services answer while another
    callback (an inference, a swap wait) is running."""
    rclpy.init(args=args)
    try:
        node = factory()
    except ParameterError as exc:
        rclpy.logging.get_logger(name).fatal(str(exc))
        rclpy.try_shutdown()
        return 2
    executor = MultiThreadedExecutor(num_threads=threads)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
