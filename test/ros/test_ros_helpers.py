"""The thin ROS helpers: image conversion, QoS by name, described and validated parameters."""

from __future__ import annotations

import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from etuner_ros.ros.image import ImageConversionError, image_to_rgb, rgb_to_image
from etuner_ros.ros.params import ParameterError, declare
from etuner_ros.ros.qos import image_qos, latched_qos, reliable_qos


def _msg(arr: np.ndarray, encoding: str, step_pad: int = 0) -> Image:
    h, w = arr.shape[:2]
    ch = 1 if arr.ndim == 2 else arr.shape[2]
    rows = arr.reshape(h, w * ch)
    if step_pad:
        rows = np.hstack([rows, np.zeros((h, step_pad), np.uint8)])
    return Image(height=h, width=w, encoding=encoding, step=w * ch + step_pad,
                 data=rows.tobytes())


def test_rgb_round_trip_keeps_pixels_and_header():
    rgb = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    header = Header(frame_id="cam")
    header.stamp.sec = 42
    msg = rgb_to_image(rgb, header)
    assert msg.header.frame_id == "cam" and msg.header.stamp.sec == 42
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


def test_bgr_bgra_mono_and_row_padding_convert_to_rgb():
    rgb = np.random.default_rng(1).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_rgb(_msg(rgb[:, :, ::-1].copy(), "bgr8")), rgb)
    bgra = np.dstack([rgb[:, :, ::-1], np.full((4, 6), 9, np.uint8)])
    np.testing.assert_array_equal(image_to_rgb(_msg(bgra, "bgra8", step_pad=8)), rgb)
    mono = rgb[:, :, 0].copy()
    out = image_to_rgb(_msg(mono, "mono8"))
    assert out.shape == (4, 6, 3) and (out[:, :, 2] == mono).all()


@pytest.mark.parametrize("mutate, match", [
    (lambda m: setattr(m, "encoding", "16UC1"), "unsupported encoding"),
    (lambda m: setattr(m, "data", m.data[:-1]), "expected step"),
    (lambda m: setattr(m, "step", 3), "step"),
    (lambda m: setattr(m, "height", 0), "empty"),
])
def test_bad_images_raise_clear_errors(mutate, match):
    msg = _msg(np.zeros((4, 6, 3), np.uint8), "rgb8")
    mutate(msg)
    with pytest.raises(ImageConversionError, match=match):
        image_to_rgb(msg)


def test_qos_profiles_by_name():
    assert image_qos().reliability == ReliabilityPolicy.BEST_EFFORT
    assert image_qos("reliable", 3).reliability == ReliabilityPolicy.RELIABLE
    assert image_qos("reliable", 3).depth == 3
    assert reliable_qos().reliability == ReliabilityPolicy.RELIABLE
    assert latched_qos().durability == DurabilityPolicy.TRANSIENT_LOCAL
    with pytest.raises(ValueError, match="best_effort"):
        image_qos("2")
    with pytest.raises(ValueError, match="depth"):
        image_qos("reliable", 0)


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


def test_declare_describes_and_validates(context):
    node = rclpy.create_node("params_test", context=context,
                             parameter_overrides=[Parameter("fps", value=30.0)])
    try:
        assert declare(node, "fps", 10.0, "frames per second", minimum=0.1, maximum=60.0) == 30.0
        mode = declare(node, "mode", "a", "the mode", choices=("a", "b"))
        assert mode == "a"
        desc = node.describe_parameter("fps")
        assert desc.description == "frames per second"
        assert desc.floating_point_range[0].to_value == 60.0
        # run-time changes are checked too
        assert not node.set_parameters([Parameter("fps", value=100.0)])[0].successful
        assert not node.set_parameters([Parameter("mode", value="c")])[0].successful
        assert node.set_parameters([Parameter("mode", value="b")])[0].successful
    finally:
        node.destroy_node()


def test_run_time_sets_reach_on_set_or_are_refused_when_read_only(context):
    node = rclpy.create_node("params_live", context=context)
    seen: list[float] = []
    try:
        assert declare(node, "rate", 2.0, "a rate", minimum=0.0, maximum=10.0,
                       on_set=seen.append) == 2.0
        declare(node, "size", 1, "a size", read_only=True)
        assert seen == []  # the declarations themselves are not changes
        assert node.set_parameters([Parameter("rate", value=3.0)])[0].successful
        assert not node.set_parameters([Parameter("rate", value=30.0)])[0].successful
        result = node.set_parameters([Parameter("size", value=2)])[0]
        assert not result.successful and "read-only" in result.reason
        assert seen == [3.0] and node.get_parameter("size").value == 1
        with pytest.raises(ValueError, match="read-only"):
            declare(node, "both", 1, "both", read_only=True, on_set=seen.append)
    finally:
        node.destroy_node()


def test_declare_refuses_bad_start_values(context):
    node = rclpy.create_node("params_bad", context=context,
                             parameter_overrides=[Parameter("policy", value="sometimes"),
                                                  Parameter("fps", value=-1.0)])
    try:
        with pytest.raises(ParameterError, match="policy='sometimes' is not one of"):
            declare(node, "policy", "none", "tuning policy", choices=("none", "immediate"))
        with pytest.raises(ParameterError, match="'fps'"):
            declare(node, "fps", 10.0, "frames per second", minimum=0.1)
    finally:
        node.destroy_node()


def test_declare_refuses_wrong_types(context):
    node = rclpy.create_node("params_type", context=context,
                             parameter_overrides=[Parameter("fps", value="fast")])
    try:
        with pytest.raises(ParameterError, match="'fps'"):
            declare(node, "fps", 10.0, "frames per second")
    finally:
        node.destroy_node()


def test_ctrl_c_while_a_node_is_still_starting_is_a_clean_exit(tmp_path):
    """run_node: Ctrl-C inside the node's constructor (a slow model load, say) exits 0 with one
    log line, not a KeyboardInterrupt traceback."""
    import signal
    import subprocess
    import sys
    import threading

    from harness import wait_for

    code = ("import time\n"
            "from etuner_ros.ros.run import run_node\n"
            "def slow():\n"
            "    print('building', flush=True)\n"
            "    time.sleep(60)\n"
            "raise SystemExit(run_node(slow, 'slow_start'))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    try:
        wait_for(lambda: "building" in "".join(lines), 30.0, "the node to start building")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0, "".join(lines)
    finally:
        proc.kill()
    out = "".join(lines)
    assert "Traceback" not in out and "interrupted while starting" in out, out
