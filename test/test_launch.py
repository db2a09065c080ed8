"""lift.launch.py's and demo.launch.py's arguments: the checks they run (posemoe_ros/ros/launch_args.py)
directly, the files' declarations statically, and, where the real launch packages are importable, the
lift launch file itself."""
import ast
import importlib.util

import pytest

from conftest import REPO
from posemoe_ros.ros.launch_args import (NODE_PARAMETER_ARGUMENTS, LaunchArgumentError, check_config_file,
                                         parameter_overrides)
from posemoe_ros.ros.lift_node import PARAMETERS

LAUNCH_FILE = REPO / "launch" / "lift.launch.py"
DEMO_LAUNCH_FILE = REPO / "launch" / "demo.launch.py"
# What a ROS user passes (README.md's list); node parameters among them override the config file.
EXPECTED_ARGUMENTS = {"config", "namespace", "keypoints_topic", "camera_info_topic", "image_topic", "depth_topic",
                      "log_level", "rviz", "input_type", "detections_topic", "use_sim_time", "tf_prefix", "weights", "device", "backend", "lookahead",
                      "body_height"}


def test_a_config_file_that_is_not_there_or_not_parameters_fails_with_one_line(tmp_path):
    assert check_config_file(str(REPO / "config" / "lift.yaml")) == REPO / "config" / "lift.yaml"
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("/**:\n  ros__parameters:\n    lookahead: [1,\n")
    not_parameters = tmp_path / "list.yaml"
    not_parameters.write_text("- lookahead: 2\n")
    cases = {str(tmp_path / "nowhere.yaml"): "does not exist", str(tmp_path): "is not a file",
             str(bad_yaml): "cannot be read as YAML", str(not_parameters): "is not a ROS 2 parameter file"}
    for path, why in cases.items():
        with pytest.raises(LaunchArgumentError) as error:
            check_config_file(path)
        assert why in str(error.value) and path in str(error.value)
        assert "\n" not in str(error.value)


def test_node_parameter_arguments_are_typed_as_the_node_declares_them_and_empty_keeps_the_config():
    # every such argument is a node parameter (use_sim_time: rclpy's own), of the node's type
    for name, (kind, default, _) in NODE_PARAMETER_ARGUMENTS.items():
        node_type = bool if name == "use_sim_time" else type(PARAMETERS[name].default)
        assert kind is node_type, name
    assert parameter_overrides({name: default for name, (_, default, _) in NODE_PARAMETER_ARGUMENTS.items()}) \
        == {"use_sim_time": False}  # the defaults leave the config file's values alone
    overrides = parameter_overrides({"use_sim_time": "True", "tf_prefix": "cam1_", "lookahead": "4",
                                     "body_height": "2", "backend": "torch", "device": " "})
    assert overrides == {"use_sim_time": True, "tf_prefix": "cam1_", "lookahead": 4, "body_height": 2.0,
                         "backend": "torch"}
    assert type(overrides["body_height"]) is float  # rclpy refuses an integer for a double parameter
    for bad in ({"lookahead": "1.5"}, {"body_height": "tall"}, {"use_sim_time": "maybe"}):
        with pytest.raises(LaunchArgumentError, match=next(iter(bad))):
            parameter_overrides(bad)


def _declared_in_launch_file(path=LAUNCH_FILE) -> set[str]:
    """DeclareLaunchArgument("name", ...) calls in the file, plus those it makes from
    NODE_PARAMETER_ARGUMENTS (read without importing launch)."""
    tree = ast.parse(path.read_text())
    names = {call.args[0].value for call in ast.walk(tree) if isinstance(call, ast.Call)
             and getattr(call.func, "id", None) == "DeclareLaunchArgument" and call.args
             and isinstance(call.args[0], ast.Constant)}
    loops_over_table = any(isinstance(node, ast.comprehension) and "NODE_PARAMETER_ARGUMENTS" in ast.unparse(node.iter)
                           for node in ast.walk(tree))
    return names | (set(NODE_PARAMETER_ARGUMENTS) if loops_over_table else set())


def test_the_launch_file_declares_every_argument_and_checks_the_config_file():
    assert _declared_in_launch_file() == EXPECTED_ARGUMENTS
    # both launch files start the node through launch_args.lift_node, which checks the config file
    # and types the overrides (tested above and, with the real launch, below)
    for path in (LAUNCH_FILE, DEMO_LAUNCH_FILE):
        assert "lift_node" in {a.name for node in ast.walk(ast.parse(path.read_text()))
                               if isinstance(node, ast.ImportFrom) and node.module == "posemoe_ros.ros.launch_args"
                               for a in node.names}, path.name
        assert 'executable="lift_node"' not in path.read_text(), f"{path.name} builds its own lift node"
    assert set(NODE_PARAMETER_ARGUMENTS) <= _declared_in_launch_file(DEMO_LAUNCH_FILE)
    readme = (REPO / "README.md").read_text()
    for name in EXPECTED_ARGUMENTS:
        assert f"`{name}`" in readme, f"README.md does not list the launch argument {name}"


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None,
                    reason="launch/launch_ros are not on the package index; the tests above cover the checks")
def test_the_real_launch_file_declares_every_argument_and_refuses_a_missing_config(tmp_path):
    from launch import LaunchContext, LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    spec = importlib.util.spec_from_file_location("lift_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description: LaunchDescription = module.generate_launch_description()
    declared = {e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert declared == EXPECTED_ARGUMENTS
    context = LaunchContext()
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            context.launch_configurations[entity.name] = entity.default_value[0].perform(context) \
                if entity.default_value else ""
    context.launch_configurations["config"] = str(tmp_path / "nowhere.yaml")
    (launch_node,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    with pytest.raises(LaunchArgumentError, match="does not exist"):
        launch_node.execute(context)
