"""The README's node table and config/etuner.yaml say what the nodes really do (and which
parameters follow a run-time set).

Documentation that drifts from the code (topic names, parameters) is a known fault of ROS
packages; these tests build every node and compare its real topics, services and declared
parameters with the README and the shipped YAML.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import rclpy
import torch
import yaml
from rclpy.parameter import Parameter

from etuner_ros.bringup import default_config, parser, ros_args
from etuner_ros.core.checkpoint import save_checkpoint
from etuner_ros.core.model import ModelBundle, build_model

REPO = Path(__file__).resolve().parents[2]
IGNORED = {"/rosout", "/parameter_events", "/diagnostics"}


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    d = tmp_path_factory.mktemp("docs")
    torch.manual_seed(0)
    ckpt = save_checkpoint(d / "m.pt", ModelBundle(build_model("mobilenet_v3_small", 2),
                                                    "mobilenet_v3_small", ["a", "b"], 1, 32))
    ctx = rclpy.Context()
    opts = parser().parse_args(["--checkpoint", str(ckpt), "--data-dir", str(d)])
    rclpy.init(context=ctx, args=["test", *ros_args(opts)])
    from etuner_ros.nodes.label_collector_node import LabelCollectorNode
    from etuner_ros.nodes.perception_node import PerceptionNode
    from etuner_ros.nodes.sim_camera_node import SimCameraNode
    from etuner_ros.nodes.sim_caregiver_node import SimCaregiverNode
    from etuner_ros.nodes.sim_detector_node import SimDetectorNode
    from etuner_ros.nodes.tuner_node import TunerNode

    built = [cls(context=ctx) for cls in (PerceptionNode, LabelCollectorNode, TunerNode,
                                          SimCameraNode, SimCaregiverNode, SimDetectorNode)]
    from etuner_ros.core.bag import write_bag
    from etuner_ros.nodes.bag_player_node import BagPlayerNode

    bag = write_bag(d / "bag", [(1, 1, np.zeros((4, 4, 3), np.uint8))])
    built.append(BagPlayerNode(context=ctx, parameter_overrides=[  # waits: plays nothing
        Parameter("bag", value=str(bag)), Parameter("wait_for_subscribers", value=100)]))
    yield {n.get_name(): n for n in built}
    for n in built:
        n.destroy_node()
    rclpy.shutdown(context=ctx)


def _relative(name: str, node) -> str:
    """/perception/swap_weights -> ~/swap_weights; /detections -> detections."""
    private = f"/{node.get_name()}/"
    if name.startswith(private):
        return "~/" + name[len(private):]
    return name.lstrip("/")


def _readme_rows() -> dict[str, str]:
    rows = {}
    for line in (REPO / "README.md").read_text().splitlines():
        m = re.match(r"\|\s*`([a-z_]+)`\s*\|", line)
        if m:
            rows[m.group(1)] = line
    return rows


def test_readme_lists_every_topic_and_service_of_every_node(nodes):
    rows = _readme_rows()
    for name, node in nodes.items():
        assert name in rows, f"README's node table has no row for {name}"
        names = ({p.topic_name for p in node.publishers}
                 | {s.topic_name for s in node.subscriptions}
                 | {s.srv_name for s in node.services})
        for full in sorted(names - IGNORED):
            last = full.split("/")[-1]
            if "parameter" in last or last == "get_type_description":
                continue  # rclpy's own services on every node
            rel = _relative(full, node)
            assert f"`{rel}`" in rows[name], f"README row of {name} lacks `{rel}` ({full})"


def test_config_yaml_sections_match_declared_parameters(nodes):
    doc = yaml.safe_load(default_config().read_text())
    shared = set(doc.get("/**", {}).get("ros__parameters", {}))
    for name, node in nodes.items():
        section = doc.get(f"/**/{name}")
        assert section, f"config/etuner.yaml has no /**/{name} section"
        in_yaml = set(section["ros__parameters"]) | (shared & set(node._parameters))
        declared = set(node._parameters) - {"use_sim_time", "start_type_description_service"}
        declared -= set(getattr(node, "TRAINING_PARAMETERS", ()))  # defaults from the core
        assert in_yaml == declared, (f"{name}: only in YAML {sorted(in_yaml - declared)}, "
                                     f"only declared {sorted(declared - in_yaml)}")
        for p in declared:
            assert node.describe_parameter(p).description, f"{name}.{p} has no description"


# Every parameter of these nodes that a run-time `ros2 param set` may change, the value a test
# sets and where the node reads it; all others must be read-only, so such a set is refused
# instead of being accepted and ignored.
RUN_TIME = {
    ("perception", "publish_annotated"): (False, lambda n: n.annotate),
    ("perception", "no_frames_warn_s"): (7.5, lambda n: n.no_frames_warn_s),
    ("label_collector", "pairing_timeout_s"): (7.5, lambda n: n.timeout_s),
    ("label_collector", "unlabelled_every_n"): (7, lambda n: n.every_n),
    ("label_collector", "no_frame_warn_s"): (7.5, lambda n: n.no_frame_warn_s),
    ("sim_camera", "loop"): (True, lambda n: n.get_parameter("loop").value),  # read per pass
    ("sim_caregiver", "source"): ("caregiver_ui", lambda n: n.source),
}


def test_run_time_parameters_take_effect_and_the_rest_are_read_only(nodes):
    text = (REPO / "README.md").read_text()
    start = text.index("Every parameter is declared")
    paragraph = text[start:text.index("\n\n", start)]
    writable = {(name, p) for name, node in nodes.items()
                for p in set(node._parameters) - {"use_sim_time", "start_type_description_service"}
                if not node.describe_parameter(p).read_only}
    assert writable == set(RUN_TIME), (f"writable but read once (make them read_only): "
                                       f"{sorted(writable - set(RUN_TIME))}")
    for (name, p), (value, read) in RUN_TIME.items():
        assert f"`{p}`" in paragraph, f"README's parameter paragraph does not name `{p}`"
        node = nodes[name]
        old = node.get_parameter(p).value
        assert node.set_parameters([Parameter(p, value=value)])[0].successful
        try:
            assert read(node) == value, f"{name}.{p}: set {value!r}, the node uses {read(node)!r}"
        finally:
            node.set_parameters([Parameter(p, value=old)])
