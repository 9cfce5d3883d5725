"""bringup: start the etuner_ros nodes in one process from the same YAML as the launch file.

``ros2 launch etuner_ros etuner.launch.py`` is the robot's way; this entry point starts the same
nodes, with the same names, parameters file, namespace and image-topic remap, on one
multi-threaded executor. It needs no ``launch`` package (not installable from PyPI), so it is what
the demo and the integration tests run here, and it works on a robot too
(``ros2 run etuner_ros bringup --sim``).
"""

from __future__ import annotations

import argparse
import atexit
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import rclpy
import yaml
from rclpy.node import Node

from etuner_ros.cli_args import non_negative_float
from etuner_ros.nodes.sim_camera_node import WORLDS
from etuner_ros.ros.executor import QueueAwareExecutor
from etuner_ros.ros.params import ParameterError
from etuner_ros.ros.run import spin_until_shutdown, use_default_transport_profile


def default_config() -> Path:
    """The installed config/etuner.yaml (share/etuner_ros), else the source tree's."""
    try:
        from ament_index_python.packages import get_package_share_directory

        path = Path(get_package_share_directory("etuner_ros")) / "config" / "etuner.yaml"
        if path.exists():
            return path
    except (ImportError, LookupError, ValueError):
        pass
    return Path(__file__).resolve().parents[1] / "config" / "etuner.yaml"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=None,
                   help="parameters YAML (default: the installed config/etuner.yaml)")
    p.add_argument("--params-file", type=Path, action="append", default=[],
                   help="extra parameters YAML applied after --config (repeatable)")
    p.add_argument("--namespace", default="", help="namespace of every node")
    p.add_argument("--image-topic", default="image", help="camera topic (remaps 'image')")
    p.add_argument("--sim", action=argparse.BooleanOptionalAction, default=False,
                   help="also start sim_camera and sim_caregiver")
    p.add_argument("--world", choices=WORLDS, default="objects",
                   help="with --sim: objects (one object per frame) or rooms (several; "
                        "sim_detector plays the upstream detector and perception recognises "
                        "each of its boxes: region_source topic)")
    p.add_argument("--regions-topic", default="",
                   help="an upstream detector's boxes: perception recognises each "
                        "(region_source topic; remaps 'regions')")
    p.add_argument("--region-message", default="",
                   help="type on --regions-topic: etuner_ros, vision_msgs or yolo_msgs")
    p.add_argument("--policy", default="", help="override the tuner's policy")
    p.add_argument("--checkpoint", default="", help="override perception's checkpoint")
    p.add_argument("--data-dir", default="", help="override data_dir of every node")
    p.add_argument("--duration", type=non_negative_float, default=0.0,
                   help="stop after this many seconds (0: run until Ctrl-C)")
    return p


def ros_args(opts: argparse.Namespace) -> list[str]:
    """The rcl arguments equivalent to the launch file's parameters and remappings."""
    args = ["--ros-args", "--params-file", str(opts.config or default_config())]
    for extra in opts.params_file:
        args += ["--params-file", str(extra)]
    if opts.image_topic != "image":
        args += ["-r", f"image:={opts.image_topic}"]
    if opts.regions_topic:  # perception reads, sim_detector writes 'regions'
        args += ["-r", f"perception:regions:={opts.regions_topic}",
                 "-r", f"sim_detector:regions:={opts.regions_topic}"]
    overrides = {"perception": {"checkpoint": opts.checkpoint,
                                "region_source": "topic" if opts.regions_topic else "",
                                "region_message": opts.region_message},
                 "tuner": {"policy": opts.policy},
                 "**": {"data_dir": opts.data_dir}}
    for node, params in world_overrides(opts.world).items():
        overrides.setdefault(node, {}).update(params)
    return args + override_args(overrides)


def world_overrides(world: str) -> dict[str, dict[str, object]]:
    """Parameters the simulated ``world`` needs beyond the config file: in rooms, sim_camera
    renders rooms and perception recognises each box sim_detector publishes on ``regions``."""
    if world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {world!r}")
    if world == "objects":
        return {}
    return {"sim_camera": {"world": world}, "perception": {"region_source": "topic"}}


def override_args(overrides: dict[str, dict[str, object]]) -> list[str]:
    """``--params-file`` of a temporary YAML holding per-node overrides (empty values skipped).

    A plain ``-p name:=value`` lands in the ``/**`` section, which a node-specific section of
    the config file outranks; a later parameters file with node-specific keys wins instead.
    """
    doc = {f"/**/{node}" if node != "**" else "/**":
           {"ros__parameters": {k: v for k, v in params.items() if v not in ("", None)}}
           for node, params in overrides.items()}
    doc = {k: v for k, v in doc.items() if v["ros__parameters"]}
    if not doc:
        return []
    fd, path = tempfile.mkstemp(prefix="etuner_overrides_", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f)
    atexit.register(lambda: Path(path).unlink(missing_ok=True))
    return ["--params-file", path]


def make_nodes(sim: bool, namespace: str = "", world: str = "objects") -> list[Node]:
    """Create the nodes (perception first: the tuner starts from its model_info; the camera
    last: its first frames find the others subscribed). ``world`` "rooms" adds sim_detector to
    the sim nodes; its parameters come from ``world_overrides``."""
    from etuner_ros.nodes.label_collector_node import LabelCollectorNode
    from etuner_ros.nodes.perception_node import PerceptionNode
    from etuner_ros.nodes.tuner_node import TunerNode

    factories: list[Callable[..., Node]] = [PerceptionNode, LabelCollectorNode, TunerNode]
    if sim:
        from etuner_ros.nodes.sim_camera_node import SimCameraNode
        from etuner_ros.nodes.sim_caregiver_node import SimCaregiverNode

        factories.append(SimCaregiverNode)
        if world == "rooms":
            from etuner_ros.nodes.sim_detector_node import SimDetectorNode

            factories.append(SimDetectorNode)
        factories.append(SimCameraNode)
    nodes: list[Node] = []
    try:
        for factory in factories:
            nodes.append(factory(namespace=namespace))
    except BaseException:  # a bad parameter or Ctrl-C half-way: no node is left behind
        for n in nodes:
            n.destroy_node()
        raise
    return nodes


def run(nodes: list[Node], duration: float = 0.0, threads: int = 4) -> int:
    """Spin ``nodes`` on one multi-threaded executor until Ctrl-C or ``duration`` seconds.

    An exception escaping a callback is logged and the executor spins on (``ros/run.py`` says
    why): one node's failure never ends the others. Returns the exit code. The executor is
    :class:`QueueAwareExecutor` (rclpy's MultiThreadedExecutor busy-loops while a callback waits
    for a free worker: ``ros/executor.py``)."""
    executor: QueueAwareExecutor | None = None
    try:
        executor = QueueAwareExecutor(num_threads=threads)
        for n in nodes:
            executor.add_node(n)
        stop = threading.Event()
        if duration > 0:
            def _end() -> None:
                stop.set()
                executor.shutdown()

            timer = threading.Timer(duration, _end)
            timer.daemon = True
            timer.start()
        return spin_until_shutdown(executor, "bringup", stop)
    except KeyboardInterrupt:  # Ctrl-C before spinning began: a clean stop
        return 0
    finally:
        if executor is not None:
            executor.shutdown()
        for n in nodes:
            n.destroy_node()


def main(argv: list[str] | None = None) -> int:
    opts, rest = parser().parse_known_args(argv)
    if rest and rest[0] != "--ros-args":
        parser().error(f"unrecognised arguments: {' '.join(rest)}")
    if opts.world != "objects" and not opts.sim:
        parser().error(f"--world {opts.world} simulates the camera: it needs --sim")
    # Before rclpy.init: Fast DDS reads its XML profile when the first participant is made.
    profile = use_default_transport_profile()
    # argv[0] is the program name for rcl, as in sys.argv; extra --ros-args go last to win.
    rclpy.init(args=["bringup", *ros_args(opts), *rest])
    log = rclpy.logging.get_logger("bringup")
    try:
        nodes = make_nodes(opts.sim, opts.namespace, opts.world)
    except ParameterError as exc:
        log.fatal(str(exc))
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:  # Ctrl-C while the nodes were still starting: a clean stop
        log.info("interrupted while starting")
        rclpy.try_shutdown()
        return 0
    # torch's thread count is per process: in one process the last node's torch_threads wins
    # (the launch file's separate processes keep perception's and the tuner's apart).
    import torch

    log.info(f"started {', '.join(n.get_fully_qualified_name() for n in nodes)}"
             f" (torch threads in this process: {torch.get_num_threads()})"
             f" (Fast DDS profile: {profile or 'built-in defaults'})")
    try:
        return run(nodes, opts.duration)
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
