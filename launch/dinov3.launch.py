"""Start the DINOv3 node on a camera topic, optionally with RViz showing the overlays.

    ros2 launch dinov3_ros dinov3.launch.py image_topic:=/camera/color/image_raw rviz:=true

Model settings live in config/params.yaml (pass your own with params_file:=...). The
arguments `compressed`, `device`, `heads` and `image_reliability` override the file only when
given: left empty they keep its values, so every default lives in one place (params.yaml). The node is a lifecycle node that
activates itself unless its `autostart` parameter is false.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue


def _parse_heads(text: str) -> list[str]:
    """'detection, depth' -> ['detection', 'depth']; '' -> [] (keep params.yaml). Never evaluated."""
    if not text.strip():
        return []
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise ValueError(f"heads: expected comma-separated head names such as 'detection,depth', got {text!r}")
    return names


def _start_node(context) -> list:
    # A launch argument is a string; typed parameters must be converted, or the node rejects them.
    overrides = {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}
    # Only a given value overrides params.yaml, hence resolved here rather than as a substitution.
    optional = {
        "device": (LaunchConfiguration("device"), str),
        "image_reliability": (LaunchConfiguration("image_reliability"), str),
        "compressed": (LaunchConfiguration("compressed"), bool),
    }
    for name, (argument, value_type) in optional.items():
        if argument.perform(context).strip():
            overrides[name] = ParameterValue(argument, value_type=value_type)
    heads = _parse_heads(LaunchConfiguration("heads").perform(context))
    if heads:
        overrides["heads"] = heads
    node = LifecycleNode(
        package="dinov3_ros",
        executable="dinov3_node",
        name="dinov3_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), overrides],
        # The node subscribes to `image`: sensor_msgs/Image, or CompressedImage with compressed:=true.
        remappings=[("image", LaunchConfiguration("image_topic"))],
        output="screen",
        emulate_tty=True,
    )
    return [node]


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("dinov3_ros"))
    args = [
        DeclareLaunchArgument(
            "image_topic",
            default_value="/camera/image_raw",
            description="input topic; with compressed:=true the CompressedImage topic itself, e.g. .../compressed",
        ),
        DeclareLaunchArgument(
            "compressed",
            default_value="",
            description="true: subscribe to sensor_msgs/CompressedImage (jpeg/png); empty: as params_file says",
        ),
        DeclareLaunchArgument(
            "params_file", default_value=str(share / "config" / "params.yaml"), description="node parameters"
        ),
        DeclareLaunchArgument(
            "namespace", default_value="dinov3", description="namespace of all outputs (the RViz config assumes dinov3)"
        ),
        DeclareLaunchArgument(
            "device", default_value="", description="auto, cpu, cuda or cuda:N; empty: as params_file says (auto)"
        ),
        DeclareLaunchArgument(
            "heads", default_value="", description="comma-separated heads to run; empty: as params_file says"
        ),
        DeclareLaunchArgument(
            "image_reliability",
            default_value="",
            description="input QoS reliability: reliable (a reliable camera's frames arrive whole), best_effort "
            "(for a best-effort camera), system_default; empty: as params_file says (reliable)",
        ),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (rosbag replay)"),
        DeclareLaunchArgument("rviz", default_value="false", description="start rviz2 showing the overlays"),
    ]
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", str(share / "config" / "dinov3.rviz")],
        parameters=[{"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}],
        condition=IfCondition(LaunchConfiguration("rviz")),
        output="screen",
    )
    return LaunchDescription([*args, OpaqueFunction(function=_start_node), rviz])
