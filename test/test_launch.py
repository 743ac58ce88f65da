"""launch/dinov3.launch.py declares the documented arguments; config/dinov3.rviz shows the node's overlays.

The launch file is checked as source everywhere (no ROS needed) and, where `launch` and
`launch_ros` are importable, by building its LaunchDescription.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from dinov3_ros.parameters import PARAMS_BY_NAME

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "dinov3.launch.py"
RVIZ_FILE = ROOT / "config" / "dinov3.rviz"

# Argument -> default; None where the default is computed (the installed params.yaml).
ARGUMENTS = {
    "image_topic": "/camera/image_raw",
    "compressed": "",
    "params_file": None,
    "namespace": "dinov3",
    "device": "",
    "heads": "",
    "image_reliability": "",
    "use_sim_time": "false",
    "rviz": "false",
}
OVERLAY_TOPICS = {
    "/dinov3/overlay",
    "/dinov3/detection/overlay",
    "/dinov3/segmentation/overlay",
    "/dinov3/depth/overlay",
}


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == name
    ]


def _first_string_args(calls: list[ast.Call]) -> list[str]:
    return [call.args[0].value for call in calls if call.args and isinstance(call.args[0], ast.Constant)]


@pytest.fixture(scope="module")
def launch_tree() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text(), str(LAUNCH_FILE))


def test_launch_file_declares_each_argument_once_with_its_default(launch_tree):
    declared = _calls(launch_tree, "DeclareLaunchArgument")
    names = _first_string_args(declared)
    assert sorted(names) == sorted(ARGUMENTS)
    for call in declared:
        name = call.args[0].value
        default = next(kw.value for kw in call.keywords if kw.arg == "default_value")
        if ARGUMENTS[name] is not None:
            assert isinstance(default, ast.Constant) and default.value == ARGUMENTS[name], name
        description = next((kw.value for kw in call.keywords if kw.arg == "description"), None)
        assert isinstance(description, ast.Constant) and description.value, f"{name} has no description"


def test_launch_file_uses_only_declared_arguments_and_never_evaluates_them(launch_tree):
    used = set(_first_string_args(_calls(launch_tree, "LaunchConfiguration")))
    assert used == set(ARGUMENTS), "every argument is used, and only declared ones are"
    for forbidden in ("eval", "exec", "PythonExpression", "literal_eval"):
        assert not _calls(launch_tree, forbidden), forbidden


def _node_overrides(tree: ast.Module) -> dict[str, str]:
    """Node parameter -> the Python type its launch override is given, read from `_start_node`'s source.

    Covers `optional = {"param": (LaunchConfiguration("param"), type), ...}`, `overrides["param"] = ...`
    and the `use_sim_time` entry of `overrides = {...}`.
    """
    (func,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_start_node"]
    found: dict[str, str] = {}
    for node in ast.walk(func):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(value, ast.Tuple):  # the optional table
                    config, value_type = value.elts
                    assert config.args[0].value == key.value, f"{key.value} reads another launch argument"
                    found[key.value] = value_type.id
                elif isinstance(value, ast.Call) and value.func.id == "ParameterValue":
                    found[key.value] = next(kw.value.id for kw in value.keywords if kw.arg == "value_type")
        elif (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store) and node.value.id == "overrides"
              and isinstance(node.slice, ast.Constant)):  # overrides["heads"] = [...]; overrides[name] is the table
            found[node.slice.value] = "list"
    return found


def test_launch_overrides_are_node_parameters_of_the_right_type(launch_tree):
    """Without `launch` installed: what the launch file passes to the node must be what the node declares."""
    overrides = _node_overrides(launch_tree)
    assert set(overrides) == {"device", "image_reliability", "compressed", "heads", "use_sim_time"}
    for name, value_type in overrides.items():
        if name == "use_sim_time":  # declared by rclpy itself, a bool
            assert value_type == "bool"
            continue
        assert name in PARAMS_BY_NAME, f"the launch file sets {name}, which the node does not declare"
        assert value_type == type(PARAMS_BY_NAME[name].default).__name__, name
        assert name in ARGUMENTS, f"{name} is set from a launch argument of the same name"


def test_launch_descriptions_quote_the_node_defaults_and_choices(launch_tree):
    descriptions = {
        call.args[0].value: "".join(
            part.value for kw in call.keywords if kw.arg == "description"
            for part in ast.walk(kw.value) if isinstance(part, ast.Constant) and isinstance(part.value, str))
        for call in _calls(launch_tree, "DeclareLaunchArgument")
    }
    for name in ("device", "image_reliability"):
        default = PARAMS_BY_NAME[name].default
        assert f"as params_file says ({default})" in descriptions[name], name
    for choice in PARAMS_BY_NAME["image_reliability"].choices:
        assert choice in descriptions["image_reliability"], choice


def _parse_heads():
    """The launch file's own `_parse_heads`, compiled alone: it must not need ROS."""
    tree = ast.parse(LAUNCH_FILE.read_text())
    (func,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_parse_heads"]
    namespace: dict = {}
    exec(compile(ast.Module(body=[func], type_ignores=[]), str(LAUNCH_FILE), "exec"), namespace)
    return namespace["_parse_heads"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("   ", []),
        ("detection", ["detection"]),
        ("detection,depth", ["detection", "depth"]),
        (" detection , segmentation,depth ", ["detection", "segmentation", "depth"]),
    ],
)
def test_heads_argument_is_a_comma_separated_list(text, expected):
    assert _parse_heads()(text) == expected


@pytest.mark.parametrize("text", ["detection,", ",depth", "detection,,depth"])
def test_heads_argument_with_an_empty_name_is_an_error(text):
    with pytest.raises(ValueError, match="heads: expected comma-separated head names"):
        _parse_heads()(text)


def _load_launch_module():
    # launch.actions, not launch: the repository's own launch/ folder imports as a namespace package.
    for module_name in ("launch.actions", "launch_ros.actions", "ament_index_python.packages"):
        pytest.importorskip(module_name, reason=f"ROS 2 {module_name} is not importable (source a Humble/Jazzy setup)")
    spec = importlib.util.spec_from_file_location("dinov3_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Resolve the package's share folder to the source tree, built with colcon or not.
    module.get_package_share_directory = lambda package: str(ROOT)
    return module


def test_generate_launch_description_declares_every_argument():
    module = _load_launch_module()
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument
    from launch.utilities import perform_substitutions

    description = module.generate_launch_description()
    declared = {e.name: e for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert sorted(declared) == sorted(ARGUMENTS)
    context = LaunchContext()
    defaults = {name: perform_substitutions(context, arg.default_value) for name, arg in declared.items()}
    assert defaults == {**ARGUMENTS, "params_file": str(ROOT / "config" / "params.yaml")}
    assert Path(defaults["params_file"]).is_file()


@pytest.mark.parametrize(("heads", "error"), [("", None), ("detection,depth", None), ("detection,,depth", ValueError)])
def test_node_action_is_one_lifecycle_node(heads, error):
    module = _load_launch_module()
    from launch import LaunchContext
    from launch_ros.actions import LifecycleNode

    context = LaunchContext()
    context.launch_configurations.update({**ARGUMENTS, "params_file": str(ROOT / "config" / "params.yaml")})
    context.launch_configurations["heads"] = heads
    if error:
        with pytest.raises(error):
            module._start_node(context)
        return
    (node,) = module._start_node(context)
    assert isinstance(node, LifecycleNode)


@pytest.fixture(scope="module")
def rviz_displays() -> list[dict]:
    config = yaml.safe_load(RVIZ_FILE.read_text())
    return config["Visualization Manager"]["Displays"]


def test_rviz_config_shows_every_overlay_as_an_image(rviz_displays):
    images = [d for d in rviz_displays if d["Class"] == "rviz_default_plugins/Image"]
    assert {d["Topic"]["Value"] for d in images} == OVERLAY_TOPICS
    assert len(images) == len(OVERLAY_TOPICS)
    assert len({d["Name"] for d in rviz_displays}) == len(rviz_displays), "display names must be unique"


def test_rviz_config_receives_from_any_publisher(rviz_displays):
    # A Reliable subscriber gets nothing from a Best Effort publisher: the "No Image" complaint.
    for display in rviz_displays:
        assert display["Topic"]["Reliability Policy"] == "Best Effort", display["Name"]
        assert display["Topic"]["Durability Policy"] == "Volatile", display["Name"]


def test_rviz_topics_live_in_the_launch_default_namespace(rviz_displays):
    namespace = ARGUMENTS["namespace"]
    assert all(d["Topic"]["Value"].startswith(f"/{namespace}/") for d in rviz_displays)
