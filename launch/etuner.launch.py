"""Start etuner_ros on a robot: perception, label collector and tuner (+ simulation, + RViz).

    ros2 launch etuner_ros etuner.launch.py image_topic:=/camera/color/image_raw \
        checkpoint:=/path/to/model.pt [namespace:=robot1] [sim:=true] [policy:=lazytune] [rviz:=true]
    # simulated rooms with several objects, sim_detector playing the upstream detector
    ros2 launch etuner_ros etuner.launch.py sim:=true world:=rooms checkpoint:=/path/to/model.pt
    # on top of yolo_ros: recognise each of its boxes (perception's region_source: topic)
    ros2 launch etuner_ros etuner.launch.py image_topic:=/camera/color/image_raw \
        regions_topic:=/yolo/detections region_message:=yolo_msgs

Every node reads the same parameters file (``config``); ``policy`` and ``checkpoint`` override the
file only when given, so an empty argument never wipes a configured value. ``bringup`` (no launch
package needed) starts the same nodes with the same names, YAML, namespace and remapping.

Every node that subscribes to the camera (perception, label_collector, tuner) gets the
``image`` remap, and sim_camera publishes on it. Fast DDS reads ``config/fastdds.xml`` (large
camera frames through best effort) unless the user set a profile. The nodes respawn after a
crash that Python cannot catch (segfault, OOM kill); exceptions in callbacks never end them. A
perception checkpoint that fails to load does not end perception either: it stays unconfigured,
ERROR on /diagnostics naming the file, until the file is fixed and it is configured again
(``ros2 lifecycle set``). An invalid parameter ends a node with exit code 2 and the reason;
respawn then retries every 2 s, logging the reason, until the parameter is fixed.
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.launch_context import LaunchContext
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "etuner_ros"


def _absolute(topic: str, namespace: str) -> str:
    """Fully qualified name of a relative topic in ``namespace`` (RViz configs use absolute names)."""
    if topic.startswith("/"):
        return topic
    ns = namespace.strip("/")
    return f"/{ns}/{topic}" if ns else f"/{topic}"


def _nodes(context: LaunchContext) -> list[Node]:
    """Build the nodes once the arguments are known (the overrides depend on their values)."""
    namespace = LaunchConfiguration("namespace").perform(context)
    image_topic = LaunchConfiguration("image_topic").perform(context)
    config = LaunchConfiguration("config").perform(context)
    policy = LaunchConfiguration("policy").perform(context)
    checkpoint = LaunchConfiguration("checkpoint").perform(context)
    regions_topic = LaunchConfiguration("regions_topic").perform(context)
    region_message = LaunchConfiguration("region_message").perform(context)
    image_remap = [("image", image_topic)]
    sim_time = LaunchConfiguration("use_sim_time").perform(context).lower() in ("true", "1")
    sim = IfCondition(LaunchConfiguration("sim"))
    sim_on = LaunchConfiguration("sim").perform(context).lower() in ("true", "1")
    world = LaunchConfiguration("world").perform(context)
    if world not in ("objects", "rooms"):
        raise ValueError(f"world:={world}: one of objects, rooms")
    if world == "rooms" and not sim_on:
        raise ValueError("world:=rooms simulates the camera: it needs sim:=true")
    rooms = world == "rooms"  # sim_detector plays the upstream detector of the sim camera

    clock = [{"use_sim_time": True}] if sim_time else []
    perception_params: list = [config, *clock]
    if checkpoint:
        perception_params.append({"checkpoint": checkpoint})
    perception_remap = list(image_remap)
    if regions_topic or rooms:  # an upstream detector's boxes: recognise each of them
        perception_params.append({"region_source": "topic"})
    if regions_topic:
        perception_remap.append(("regions", regions_topic))
    if region_message:
        perception_params.append({"region_message": region_message})
    detector_remap = []
    if regions_topic:  # sim_detector publishes where perception reads
        detector_remap.append(("regions", regions_topic))
    camera_params: list = [config, *clock]
    if rooms:  # objects (the default) keeps the config file's world
        camera_params.append({"world": "rooms"})
    tuner_params: list = [config, *clock]
    if policy:
        tuner_params.append({"policy": policy})

    common = {"package": PACKAGE, "namespace": namespace, "output": "screen", "emulate_tty": True,
              "respawn": True, "respawn_delay": 2.0}
    nodes = [
        Node(executable="perception_node", name="perception", parameters=perception_params,
             remappings=perception_remap, **common),
        Node(executable="label_collector_node", name="label_collector",
             parameters=[config, *clock],
             remappings=image_remap, **common),
        # The tuner calls perception/swap_weights relative to its namespace: same namespace.
        # It watches the camera too (change detection, BatchNorm adaptation): same remap.
        Node(executable="tuner_node", name="tuner", parameters=tuner_params,
             remappings=image_remap, **common),
        Node(executable="sim_camera", name="sim_camera", parameters=camera_params,
             remappings=image_remap, condition=sim, **common),
        Node(executable="sim_caregiver", name="sim_caregiver", parameters=[config, *clock],
             condition=sim, **common),
    ]
    if rooms:  # plays the upstream detector: publishes where perception reads boxes
        nodes.append(Node(executable="sim_detector", name="sim_detector",
                          parameters=[config, *clock], remappings=detector_remap, **common))
    # RViz's config names absolute topics; remap them into this namespace and camera topic.
    rviz_config = os.path.join(get_package_share_directory(PACKAGE), "config", "etuner.rviz")
    nodes.append(Node(
        package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", rviz_config],
        remappings=[("/image", _absolute(image_topic, namespace)),
                    ("/detections/image", _absolute("detections/image", namespace))],
        output="screen", condition=IfCondition(LaunchConfiguration("rviz"))))
    return nodes


def generate_launch_description() -> LaunchDescription:
    default_config = os.path.join(get_package_share_directory(PACKAGE), "config", "etuner.yaml")
    args = [
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of every node"),
        DeclareLaunchArgument("image_topic", default_value="image",
                              description="camera image topic (remaps 'image')"),
        DeclareLaunchArgument("config", default_value=default_config,
                              description="parameters YAML of every node"),
        DeclareLaunchArgument("sim", default_value="false",
                              description="also start sim_camera and sim_caregiver"),
        DeclareLaunchArgument("world", default_value="objects",
                              description="with sim: objects (one object per frame) or rooms "
                                          "(several; sim_detector plays the upstream detector, "
                                          "perception recognises each box)"),
        DeclareLaunchArgument("policy", default_value="",
                              description="tuner policy; empty keeps the one in config"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="perception's starting weights; empty keeps config's"),
        DeclareLaunchArgument("regions_topic", default_value="",
                              description="an upstream detector's boxes: perception recognises "
                                          "each (region_source topic; remaps 'regions')"),
        DeclareLaunchArgument("region_message", default_value="",
                              description="type on regions_topic: etuner_ros, vision_msgs or "
                                          "yolo_msgs; empty keeps config's"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="every node follows /clock (bag replay, simulation)"),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="start RViz with config/etuner.rviz"),
    ]
    actions: list = list(args)
    if not (os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE")
            or os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE")):
        profile = os.path.join(get_package_share_directory(PACKAGE), "config", "fastdds.xml")
        actions.append(SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", profile))
    return LaunchDescription([*actions, OpaqueFunction(function=_nodes)])
