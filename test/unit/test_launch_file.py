"""Static checks of launch/etuner.launch.py and config/etuner.rviz.

``launch``/``launch_ros``/RViz are not installable here, so the launch file cannot run; these
checks catch what breaks it on a robot: syntax, an executable CMake does not install, a node name
without a parameters section (its YAML would be silently ignored), an undocumented argument.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch" / "etuner.launch.py"
PACKAGE = "etuner_ros"


def _tree() -> ast.Module:
    return ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))


def _const_kwargs(call: ast.Call) -> dict[str, str]:
    return {k.arg: k.value.value for k in call.keywords
            if k.arg and isinstance(k.value, ast.Constant) and isinstance(k.value.value, str)}


def _calls(name: str) -> list[ast.Call]:
    return [n for n in ast.walk(_tree()) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def _our_nodes() -> list[dict[str, str]]:
    """Constant keywords of every launch_ros Node(...) of this package (package may be **common)."""
    nodes = []
    for call in _calls("Node"):
        kw = _const_kwargs(call)
        if kw.get("package", PACKAGE) == PACKAGE:
            nodes.append(kw)
    return nodes


def _launch_arguments() -> list[str]:
    return [c.args[0].value for c in _calls("DeclareLaunchArgument")
            if c.args and isinstance(c.args[0], ast.Constant)]


def _installed_programs() -> set[str]:
    cmake = (REPO / "CMakeLists.txt").read_text()
    blocks = re.findall(r"install\s*\(\s*PROGRAMS(.*?)DESTINATION", cmake, flags=re.S)
    return {Path(p).name for b in blocks for p in b.split() if p.startswith("bin/")}


def test_launch_file_compiles() -> None:
    compile(LAUNCH.read_text(), str(LAUNCH), "exec")
    names = {n.name for n in _tree().body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in names


def test_executables_are_installed() -> None:
    nodes = _our_nodes()
    executables = {n["executable"] for n in nodes}
    assert executables == {"perception_node", "label_collector_node", "tuner_node",
                           "sim_camera", "sim_caregiver", "sim_detector"}
    missing = executables - _installed_programs()
    assert not missing, f"not in CMakeLists.txt install(PROGRAMS bin/...): {sorted(missing)}"
    for exe in executables:
        assert (REPO / "bin" / exe).exists(), f"bin/{exe} missing"


def test_node_names_have_config_sections() -> None:
    config = yaml.safe_load((REPO / "config" / "etuner.yaml").read_text())
    sections = {key.rsplit("/", 1)[-1] for key in config}
    names = {n["name"] for n in _our_nodes()}
    assert names == {"perception", "label_collector", "tuner", "sim_camera", "sim_caregiver",
                     "sim_detector"}
    missing = names - sections
    assert not missing, f"no section in config/etuner.yaml for node(s) {sorted(missing)}"
    for name in names:
        key = f"/**/{name}"
        assert "ros__parameters" in config[key], f"{key} has no ros__parameters"


def test_launch_arguments() -> None:
    args = _launch_arguments()
    assert set(args) == {"namespace", "image_topic", "config", "sim", "world", "policy",
                         "checkpoint", "regions_topic", "region_message", "use_sim_time", "rviz"}
    readme = REPO / "README.md"
    if not readme.exists():
        pytest.skip("README.md missing: launch-argument documentation not checked")
    text = readme.read_text()
    undocumented = [a for a in args if f"`{a}`" not in text]
    assert not undocumented, f"launch arguments not documented in README.md: {undocumented}"


def test_rviz_config() -> None:
    """The RViz file the launch file names is installed (config/) and shows the detections."""
    assert "etuner.rviz" in LAUNCH.read_text()
    rviz = yaml.safe_load((REPO / "config" / "etuner.rviz").read_text())
    assert {"Panels", "Visualization Manager", "Window Geometry"} <= set(rviz)
    manager = rviz["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "camera_optical_frame"
    topics = {d["Topic"]["Value"]: d for d in manager["Displays"]
              if d["Class"] == "rviz_default_plugins/Image"}
    assert topics["/detections/image"]["Topic"]["Reliability Policy"] == "Reliable"
    assert topics["/detections/image"]["Enabled"] is True


# --- camera remapping: every node that uses the camera topic gets the `image` remap ----------

NODES_DIR = REPO / "etuner_ros" / "nodes"


def _camera_users() -> dict[str, set[str]]:
    """Node name -> {"subscribes", "publishes"} for the relative topic ``image``, read from each
    node's source (AST), so a new camera subscriber cannot be forgotten in the launch file."""
    users: dict[str, set[str]] = {}
    for path in NODES_DIR.glob("*_node.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        name = None
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            func = getattr(call.func, "attr", None)
            if func == "__init__" and call.args and isinstance(call.args[0], ast.Constant):
                name = call.args[0].value
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            func = getattr(call.func, "attr", None)
            kind = {"create_subscription": "subscribes", "create_publisher": "publishes",
                    "create_lifecycle_publisher": "publishes"}.get(func)
            if kind and len(call.args) >= 2 and isinstance(call.args[1], ast.Constant) \
                    and call.args[1].value == "image":
                users.setdefault(name, set()).add(kind)
    return users


def _node_calls() -> dict[str, ast.Call]:
    out = {}
    for call in _calls("Node"):
        kw = _const_kwargs(call)
        if kw.get("package", PACKAGE) == PACKAGE and "name" in kw:
            out[kw["name"]] = call
    return out


def _assignments() -> dict[str, ast.expr]:
    return {t.id: n.value for n in ast.walk(_tree()) if isinstance(n, ast.Assign)
            for t in n.targets if isinstance(t, ast.Name)}


def _remaps(call: ast.Call) -> list[tuple[str, str]]:
    """The Node's remappings as (from, to) where ``to`` is a constant or the name of the
    variable/launch configuration it comes from."""
    kw = {k.arg: k.value for k in call.keywords if k.arg}
    value = kw.get("remappings")
    if value is None:
        return []
    if isinstance(value, ast.Name):
        value = _assignments()[value.id]
    if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "list" \
            and len(value.args) == 1 and isinstance(value.args[0], ast.Name):
        value = _assignments()[value.args[0].id]  # list(image_remap): a copy, appended to later
    assert isinstance(value, ast.List), ast.dump(value)
    pairs = []
    for elt in value.elts:
        assert isinstance(elt, ast.Tuple) and len(elt.elts) == 2
        src, dst = elt.elts
        pairs.append((src.value, dst.value if isinstance(dst, ast.Constant) else dst.id))
    return pairs


def test_camera_users_are_known():
    """The AST scan sees the camera users (guards the test below against a silent no-op)."""
    users = _camera_users()
    assert {"perception", "label_collector", "tuner"} <= {
        n for n, kinds in users.items() if "subscribes" in kinds}, users
    assert "publishes" in users.get("sim_camera", set()), users


def test_every_camera_user_gets_the_image_remap():
    """Static (launch/launch_ros are not installable here): each Node that subscribes to or
    publishes `image` remaps it to the `image_topic` launch argument; the others do not."""
    nodes = _node_calls()
    users = _camera_users()
    topic_var = _assignments()["image_topic"]
    assert isinstance(topic_var, ast.Call)  # LaunchConfiguration("image_topic").perform(...)
    assert ast.unparse(topic_var).startswith("LaunchConfiguration('image_topic')")
    for name, call in nodes.items():
        remaps = dict(_remaps(call))
        if name in users:
            assert remaps.get("image") == "image_topic", f"{name} lacks image:=image_topic"
        else:
            assert "image" not in remaps, f"{name} does not use the camera but remaps it"


def test_nodes_respawn_and_fastdds_profile_is_shipped():
    text = LAUNCH.read_text()
    assert '"respawn": True' in text
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" in text and "fastdds.xml" in text
    assert (REPO / "config" / "fastdds.xml").exists()
