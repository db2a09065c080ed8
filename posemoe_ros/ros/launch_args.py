"""What launch/lift.launch.py and launch/demo.launch.py do with their arguments, as plain functions
(testable without launch), and the lift node both launch files start (`lift_node`).

Imports neither rclpy nor torch, and launch only inside `lift_node`: the launch process stays light.
"""
from __future__ import annotations

from pathlib import Path

import yaml

# Launch arguments that set a node parameter of the same name: (type as the node declares it,
# default, description). An empty value sets nothing, so the config file's value stays.
NODE_PARAMETER_ARGUMENTS = {
    "use_sim_time": (bool, "false", "Use /clock (e.g. `ros2 bag play --clock`): stamp checks and timers follow it"),
    "tf_prefix": (str, "", "Prefix of every TF frame the node broadcasts (two cameras: cam1_, cam2_); "
                  "empty = the config file's"),
    "weights": (str, "", "PoseMoE safetensors file; empty = the config file's (there: the shipped default)"),
    "device": (str, "", "auto, cpu or cuda; empty = the config file's"),
    "backend": (str, "", "CPU inference engine: onnxruntime or torch; empty = the config file's"),
    "lookahead": (int, "", "Frames of delay traded for accuracy (0 = causal); empty = the config file's"),
    "body_height": (float, "", "Assumed stature in m for the monocular root depth (0 = the model's own size); "
                    "empty = the config file's"),
}


class LaunchArgumentError(ValueError):
    """A launch argument the node could not start with; the message is one line."""


def check_config_file(path: str) -> Path:
    """The parameter file `config:=` names, checked before the node starts: without this, a path
    that does not exist started the node on its built-in defaults."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise LaunchArgumentError(f"config file {path} does not exist" if not file.exists()
                                  else f"config file {path} is not a file")
    try:
        data = yaml.safe_load(file.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LaunchArgumentError(f"config file {path} cannot be read as YAML: {reason}") from None
    if not isinstance(data, dict) or not any(isinstance(v, dict) and "ros__parameters" in v for v in data.values()):
        raise LaunchArgumentError(f"config file {path} is not a ROS 2 parameter file "
                                  "(no '<node name>: ros__parameters:' section)")
    return file


def _parse(name: str, kind: type, text: str):
    if kind is bool:
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise LaunchArgumentError(f"{name}:={text} must be true or false")
    try:
        return kind(text)  # float("2") = 2.0: rclpy would refuse the integer 2 for a double parameter
    except ValueError:
        raise LaunchArgumentError(f"{name}:={text} is not {'an integer' if kind is int else 'a number'}") from None


def parameter_overrides(values: dict[str, str]) -> dict:
    """The node parameters set by launch argument values (strings, as launch holds them), typed as
    the node declares them; empty values are left out."""
    overrides = {}
    for name, (kind, _, _) in NODE_PARAMETER_ARGUMENTS.items():
        text = values.get(name, "").strip()
        if text:
            overrides[name] = _parse(name, kind, text) if kind is not str else text
    return overrides


def lift_node(context, parameters: dict | None = None, **node_options) -> list:
    """The lift node, once the launch arguments are known (for an OpaqueFunction): a config file that
    is not there, or a value of the wrong type, ends the launch with one line instead of a node on
    its defaults. parameters: set after the config file and the typed overrides; node_options: more
    launch_ros Node arguments (namespace, remappings, ...)."""
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue

    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    config = check_config_file(arg("config"))
    overrides = {**parameter_overrides({name: arg(name) for name in NODE_PARAMETER_ARGUMENTS}), **(parameters or {})}
    return [Node(package="posemoe_ros", executable="lift_node", name="posemoe_lift", output="screen",
                 emulate_tty=True,
                 parameters=[str(config), {name: ParameterValue(value, value_type=type(value))
                                           for name, value in overrides.items()}],
                 **node_options)]
