"""The demo on a ROS 2 machine: `ros2 launch posemoe_ros demo.launch.py [rviz:=true] [record:=true]`.

The lift node with its real parameter file (and lift.launch.py's node-parameter arguments: weights,
device, backend, lookahead, ...), and the scenario player (a virtual camera watching
procedurally animated people, with detector noise and the true 3D joints on skeletons_3d_truth).
Everything stops when the player has played `duration` seconds. `record:=true` records every topic
with `ros2 bag record -s mcap`. The measured summary (MPJPE, latency, drops) and the pictures come
from `posemoe-demo` (docs/demo.md), which runs the same nodes without a ROS install.
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, ExecuteProcess, OpaqueFunction, RegisterEventHandler
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from posemoe_ros.ros.launch_args import NODE_PARAMETER_ARGUMENTS, lift_node


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("posemoe_ros"))
    arg = LaunchConfiguration
    args = [
        DeclareLaunchArgument("config", default_value=str(share / "config" / "lift.yaml"),
                              description="Parameter file for the lift node"),
        DeclareLaunchArgument("duration", default_value="20.0", description="Seconds of scenario to play"),
        DeclareLaunchArgument("num_people", default_value="3",
                              description="People in the scene (walker, waver, late, then extras)"),
        DeclareLaunchArgument("seed", default_value="0", description="Seed of the motions and detector noise"),
        DeclareLaunchArgument("rate", default_value="30.0", description="Virtual camera frame rate, Hz"),
        DeclareLaunchArgument("rviz", default_value="false", description="Open RViz with the skeleton displays"),
        DeclareLaunchArgument("record", default_value="false", description="Record every topic to an MCAP bag"),
        DeclareLaunchArgument("bag", default_value="posemoe_demo_bag", description="Folder of the recorded bag"),
    ]
    args += [DeclareLaunchArgument(name, default_value=default, description=description)
             for name, (_, default, description) in NODE_PARAMETER_ARGUMENTS.items()]
    # the same node as lift.launch.py (config check, typed overrides); the player publishes reliably,
    # and reliable inputs lose nothing to QoS
    lift = OpaqueFunction(function=lift_node, kwargs={"parameters": {"input_reliability": "reliable"}})
    player = Node(
        package="posemoe_ros",
        executable="scenario_player",
        name="scenario_player",
        output="screen",
        emulate_tty=True,
        parameters=[{
            "duration": ParameterValue(arg("duration"), value_type=float),
            "num_people": ParameterValue(arg("num_people"), value_type=int),
            "seed": ParameterValue(arg("seed"), value_type=int),
            "rate": ParameterValue(arg("rate"), value_type=float),
            # start once the lift node (still loading its model) listens, besides the bag recorder
            "wait_for_subscribers": ParameterValue(
                PythonExpression(["2 if '", arg("record"), "'.lower() == 'true' else 1"]), value_type=int),
        }],
    )
    record = ExecuteProcess(
        cmd=["ros2", "bag", "record", "-s", "mcap", "-o", arg("bag"), "/keypoints_2d", "/camera_info",
             "/skeletons_3d", "/skeletons_3d_truth", "/skeleton_markers", "/tf", "/diagnostics"],
        output="screen",
        condition=IfCondition(arg("record")),
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="posemoe_rviz",
        arguments=["-d", str(share / "config" / "posemoe.rviz")],
        condition=IfCondition(arg("rviz")),
    )
    end = RegisterEventHandler(OnProcessExit(
        target_action=player, on_exit=[EmitEvent(event=Shutdown(reason="the scenario has been played"))]))
    # rviz first: if rviz2 is missing, launch fails before it starts nodes it cannot stop
    return LaunchDescription(args + [rviz, lift, player, record, end])
