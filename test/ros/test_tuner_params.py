"""The tuner node's parameters over real rclpy: every one is read at start-up only, so a run-time
``set`` (what ``ros2 param set`` sends) is refused and the value stays, instead of answering
success and changing nothing."""

from __future__ import annotations

import pytest
import rclpy
from rclpy.parameter import Parameter

from etuner_ros.bringup import parser, ros_args

#: in range, so only read_only can refuse them (the two that were once writable first)
RUN_TIME_VALUES = {"swap_timeout_s": 5.0, "no_frames_warn_s": 2.0, "poll_period_s": 0.5,
                   "epochs": 2, "lazytune.max_wait_s": 10.0}


@pytest.fixture
def tuner(tmp_path):
    ctx = rclpy.Context()
    opts = parser().parse_args(["--data-dir", str(tmp_path)])
    rclpy.init(context=ctx, args=["test", *ros_args(opts)])
    from etuner_ros.nodes.tuner_node import TunerNode

    node = TunerNode(context=ctx)
    yield node
    node.destroy_node()
    rclpy.shutdown(context=ctx)


@pytest.mark.parametrize("name", sorted(RUN_TIME_VALUES))
def test_a_run_time_set_is_refused_and_the_value_stays(tuner, name):
    before = tuner.get_parameter(name).value
    assert before != RUN_TIME_VALUES[name]
    result = tuner.set_parameters([Parameter(name, value=RUN_TIME_VALUES[name])])[0]
    assert not result.successful and "read-only" in result.reason
    assert tuner.get_parameter(name).value == before


def test_every_tuner_parameter_is_read_only(tuner):
    """None is honoured at run time (all are read in __init__), so all must say so."""
    own = set(tuner._parameters) - {"use_sim_time", "start_type_description_service"}
    writable = sorted(p for p in own if not tuner.describe_parameter(p).read_only)
    assert not writable, f"writable but only read at start-up: {writable}"
