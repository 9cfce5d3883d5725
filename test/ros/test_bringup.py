"""bringup's arguments become the same parameters and remaps the launch file gives the nodes."""

from __future__ import annotations

import pytest
import rclpy
import yaml

from etuner_ros.bringup import default_config, override_args, parser, ros_args
from etuner_ros.ros.params import ParameterError


def test_overrides_go_to_node_specific_sections_and_skip_empty_values():
    args = override_args({"perception": {"checkpoint": "/m.pt"}, "tuner": {"policy": ""},
                          "**": {"data_dir": "/d"}})
    assert args[0] == "--params-file"
    with open(args[1]) as f:
        doc = yaml.safe_load(f)
    assert doc == {"/**/perception": {"ros__parameters": {"checkpoint": "/m.pt"}},
                   "/**": {"ros__parameters": {"data_dir": "/d"}}}
    assert override_args({"tuner": {"policy": ""}}) == []


def test_ros_args_remap_the_image_topic_and_use_the_installed_config():
    opts = parser().parse_args(["--image-topic", "/camera/color/image_raw", "--policy", "etuner"])
    args = ros_args(opts)
    assert args[:3] == ["--ros-args", "--params-file", str(default_config())]
    assert default_config().exists()
    assert "image:=/camera/color/image_raw" in args


def test_config_file_values_reach_the_nodes_and_overrides_win(tmp_path):
    ctx = rclpy.Context()
    opts = parser().parse_args(["--policy", "lazytune", "--data-dir", str(tmp_path)])
    rclpy.init(context=ctx, args=["bringup", *ros_args(opts)])
    try:
        from etuner_ros.nodes.tuner_node import TunerNode

        node = TunerNode(context=ctx, namespace="ns")
        try:
            assert node.get_parameter("policy").value == "lazytune"
            assert node.get_parameter("data_dir").value == str(tmp_path)
            assert node.get_parameter("poll_period_s").value == 1.0  # from config/etuner.yaml
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_missing_checkpoint_is_a_clear_error_not_a_crash(tmp_path):
    ctx = rclpy.Context()
    opts = parser().parse_args(["--data-dir", str(tmp_path)])
    rclpy.init(context=ctx, args=["bringup", *ros_args(opts)])
    try:
        from etuner_ros.nodes.perception_node import PerceptionNode

        try:
            PerceptionNode(context=ctx)
        except ParameterError as exc:
            assert "checkpoint" in str(exc)
        else:
            raise AssertionError("an empty checkpoint must be refused")
    finally:
        rclpy.shutdown(context=ctx)


def _override_doc(args: list[str]) -> dict:
    files = [args[i + 1] for i, a in enumerate(args) if a == "--params-file"]
    with open(files[-1]) as f:
        return yaml.safe_load(f)


def test_world_rooms_sets_the_camera_world_and_perception_region_source():
    args = ros_args(parser().parse_args(["--sim", "--world", "rooms"]))
    doc = _override_doc(args)
    assert doc["/**/sim_camera"]["ros__parameters"] == {"world": "rooms"}
    assert doc["/**/perception"]["ros__parameters"] == {"region_source": "topic"}
    assert not any(a.startswith("perception:regions") for a in args)  # sim_detector's topic
    plain = ros_args(parser().parse_args(["--sim", "--data-dir", "/d"]))
    assert "/**/sim_camera" not in _override_doc(plain)  # objects: the config file's world
    remapped = ros_args(parser().parse_args(["--sim", "--world", "rooms",
                                             "--regions-topic", "/det/boxes"]))
    assert {"perception:regions:=/det/boxes", "sim_detector:regions:=/det/boxes"} <= set(
        remapped)


def test_world_rooms_needs_sim(capsys):
    from etuner_ros.bringup import main

    with pytest.raises(SystemExit) as exc:
        main(["--world", "rooms"])
    assert exc.value.code == 2 and "--sim" in capsys.readouterr().err


@pytest.mark.parametrize("args, why", [(["--duration", "-1"], "--duration: must be at least 0"),
                                       (["--duration", "x"], "--duration: not a number")])
def test_bringup_refuses_a_bad_duration(capsys, args, why):
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(args)
    assert exc.value.code == 2 and why in capsys.readouterr().err


@pytest.mark.parametrize("args, why", [
    (["--timeout", "0"], "--timeout: must be above 0"),
    (["--frames-per-scenario", "0"], "--frames-per-scenario: must be at least 1")])
def test_demo_refuses_bad_numbers(capsys, args, why):
    from etuner_ros.demo import parser as demo_parser

    with pytest.raises(SystemExit) as exc:
        demo_parser().parse_args(args)
    assert exc.value.code == 2 and why in capsys.readouterr().err
