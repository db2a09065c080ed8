"""Start the PoseMoE lifting node: `ros2 launch posemoe_ros lift.launch.py [arg:=value ...]`.

`ros2 launch posemoe_ros lift.launch.py --show-args` lists the arguments. The node-parameter
arguments (use_sim_time, tf_prefix, weights, device, backend, lookahead, body_height) override
the config file where given; their checks, and the node itself, are posemoe_ros/ros/launch_args.py.
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from posemoe_ros.ros.launch_args import NODE_PARAMETER_ARGUMENTS, lift_node


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("posemoe_ros"))
    arg = LaunchConfiguration
    args = [
        DeclareLaunchArgument("config", default_value=str(share / "config" / "lift.yaml"),
                              description="Parameter file for the lift node"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node and its topics"),
        DeclareLaunchArgument("keypoints_topic", default_value="keypoints_2d",
                              description="Input posemoe_ros/Skeleton2DArray topic"),
        DeclareLaunchArgument("input_type", default_value="skeleton2d", choices=["skeleton2d", "yolo"],
                              description="skeleton2d: keypoints_topic; yolo: yolo_ros's yolo_msgs/DetectionArray "
                                          "on detections_topic"),
        DeclareLaunchArgument("detections_topic", default_value="detections",
                              description="Input yolo_msgs/DetectionArray topic (input_type yolo), e.g. "
                                          "/yolo/tracking"),
        DeclareLaunchArgument("camera_info_topic", default_value="camera_info",
                              description="Input sensor_msgs/CameraInfo topic"),
        DeclareLaunchArgument("image_topic", default_value="image",
                              description="Optional input image, for the debug overlay"),
        DeclareLaunchArgument("depth_topic", default_value="depth",
                              description="Optional aligned depth image (16UC1 mm or 32FC1 m)"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
        DeclareLaunchArgument("rviz", default_value="false", description="Open RViz with the skeleton displays"),
    ]
    args += [DeclareLaunchArgument(name, default_value=default, description=description)
             for name, (_, default, description) in NODE_PARAMETER_ARGUMENTS.items()]
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="posemoe_rviz",
        arguments=["-d", str(share / "config" / "posemoe.rviz")],
        condition=IfCondition(arg("rviz")),
    )
    # rviz first: if rviz2 is missing, launch fails before it starts a node it cannot stop
    return LaunchDescription(args + [rviz, OpaqueFunction(function=_lift_node)])


def _lift_node(context):
    arg = LaunchConfiguration
    return lift_node(
        context, {"input_type": arg("input_type").perform(context)},
        namespace=arg("namespace"),
        remappings=[
            ("keypoints_2d", arg("keypoints_topic")),
            ("detections", arg("detections_topic")),
            ("camera_info", arg("camera_info_topic")),
            ("image", arg("image_topic")),
            ("depth", arg("depth_topic")),
        ],
        ros_arguments=["--log-level", arg("log_level")],
    )
