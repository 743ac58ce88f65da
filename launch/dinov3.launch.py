"""Start the DINOv3 node on a camera topic.

    ros2 launch dinov3_ros dinov3.launch.py image_topic:=/camera/color/image_raw

Every model setting lives in config/params.yaml (pass your own with
params_file:=...); the launch file only wires topics, namespace and sim time, so
defaults exist in one place.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description() -> LaunchDescription:
    default_params = Path(get_package_share_directory("dinov3_ros")) / "config" / "params.yaml"
    args = [
        DeclareLaunchArgument("image_topic", default_value="/image_raw", description="sensor_msgs/Image input"),
        DeclareLaunchArgument("namespace", default_value="dinov3", description="namespace of all outputs"),
        DeclareLaunchArgument("params_file", default_value=str(default_params), description="node parameters"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (rosbag replay)"),
    ]
    node = Node(
        package="dinov3_ros",
        executable="dinov3_node",
        name="dinov3_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            LaunchConfiguration("params_file"),
            # A launch argument is a string; the parameter must be a bool.
            {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)},
        ],
        remappings=[("image", LaunchConfiguration("image_topic"))],
        output="screen",
        emulate_tty=True,
    )
    return LaunchDescription([*args, node])
