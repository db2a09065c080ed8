"""The package as a ROS user's tools see it: package.xml, the ament index and the install tree."""
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from catkin_pkg.package import parse_package

from conftest import REPO

# Every rosdep key package.xml may name, each looked up in ros/rosdistro (rosdep/base.yaml,
# rosdep/python.yaml; master of 2026-08-22, 8468e88): `rosdep install` fails on the first that is
# not there. Not keys (checked there too): python3-safetensors, python3-onnx(-pip),
# python3-mcap(-pip), python3-mcap-ros2-support-pip.
VERIFIED_ROSDEP_KEYS = {
    "python3-numpy", "python3-scipy", "python3-opencv", "python3-yaml", "python3-tqdm", "python3-matplotlib",
    "python3-pytorch-pip",  # pip: torch, torchvision
    "python3-onnxruntime-pip",  # pip: onnxruntime
    "mcap-ros2-support",  # pip: mcap-ros2-support, which pulls mcap
    "python3-pytest", "python3-catkin-pkg", "python3-pil",
}
# ROS packages package.xml names, each a released package of Kilted (kilted/distribution.yaml).
VERIFIED_ROS_PACKAGES = {
    "ament_cmake", "ament_cmake_python", "ament_cmake_pytest", "ament_index_python", "rosidl_default_generators",
    "rosidl_default_runtime", "builtin_interfaces", "std_msgs", "geometry_msgs", "sensor_msgs", "visualization_msgs",
    "diagnostic_msgs", "lifecycle_msgs", "rcl_interfaces", "rosgraph_msgs", "tf2_msgs", "rclpy", "tf2_ros_py",
    "message_filters", "cv_bridge", "launch", "launch_ros", "rviz2",
}
# Optional ROS packages built from source, never released (yolo_ros's interfaces for input_type yolo):
# declared only under a condition (POSEMOE_ROS_YOLO=1), so rosdep does not ask for them by default.
OPTIONAL_FROM_SOURCE = {"yolo_msgs"}
# The rosdep key of each third-party module the code imports; None: no key exists, so the README's
# pip line installs it (PIP_ONLY names the pip package).
PYTHON_ROSDEP_KEYS = {
    "numpy": "python3-numpy", "scipy": "python3-scipy", "cv2": "python3-opencv",
    "yaml": "python3-yaml", "tqdm": "python3-tqdm", "matplotlib": "python3-matplotlib",
    "torch": "python3-pytorch-pip", "onnxruntime": "python3-onnxruntime-pip",
    "mcap": "mcap-ros2-support", "mcap_ros2": "mcap-ros2-support",
    "safetensors": None,
}
PIP_ONLY = {"safetensors": "safetensors", "onnx": "onnx"}  # onnx: torch.onnx.export imports it
# ROS packages imported under another name than the package's.
ROS_IMPORT_TO_PACKAGE = {"tf2_ros": "tf2_ros_py"}


def _declared(package) -> set[str]:
    return {d.name for d in package.build_depends + package.exec_depends + package.buildtool_depends
            + package.build_export_depends + package.test_depends}


def _imported_top_level_modules(paths):
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_package_xml_is_format_3_and_names_every_imported_dependency():
    package = parse_package(str(REPO / "package.xml"))
    package.validate()
    assert package.package_format == 3
    assert package.name == "posemoe_ros"
    assert any(e.tagname == "build_type" and e.content == "ament_cmake" for e in package.exports)
    declared = _declared(package)

    sources = list((REPO / "posemoe_ros").rglob("*.py")) + list((REPO / "launch").glob("*.py"))
    sources += [p for p in (REPO / "scripts").iterdir() if p.is_file() and p.read_text().startswith("#!/usr/bin/env python")]
    imported = _imported_top_level_modules(sources) - set(sys.stdlib_module_names) - {"posemoe_ros"}
    assert {"rclpy", "torch", "numpy"} <= imported  # the scan really sees the code

    missing = []
    for module in sorted(imported):
        if module in PYTHON_ROSDEP_KEYS:
            key = PYTHON_ROSDEP_KEYS[module]
        elif module in ROS_IMPORT_TO_PACKAGE:
            key = ROS_IMPORT_TO_PACKAGE[module]
        elif module in VERIFIED_ROS_PACKAGES:  # a ROS package imported under its own name
            key = module
        elif module in OPTIONAL_FROM_SOURCE:
            continue
        else:
            raise AssertionError(f"import '{module}' has no known rosdep key: add it to package.xml and this map")
        if key is None:
            assert module in PIP_ONLY, f"'{module}' has no rosdep key: name it in PIP_ONLY and the README"
        elif key not in declared:
            missing.append(f"{module} -> {key}")
    assert not missing, f"package.xml lacks: {missing}"


def test_package_xml_names_only_verified_rosdep_keys_and_the_readme_pip_installs_the_rest():
    package = parse_package(str(REPO / "package.xml"))
    unknown = sorted(_declared(package) - VERIFIED_ROSDEP_KEYS - VERIFIED_ROS_PACKAGES - OPTIONAL_FROM_SOURCE)
    optional = [d for d in package.exec_depends if d.name in OPTIONAL_FROM_SOURCE]
    assert all(d.condition for d in optional), "an optional source package must be conditional"
    assert not unknown, (f"package.xml names {unknown}: check each in ros/rosdistro's rosdep/*.yaml (or the "
                         "distribution's packages) and add it to the verified lists, or pip-install it (README)")
    assert "tf2_ros" not in _declared(package)  # the C++ package; `import tf2_ros` needs tf2_ros_py
    readme = (REPO / "README.md").read_text()
    workspace = readme[readme.index("## In a ROS 2 workspace"):]
    workspace = workspace[:workspace.index("\n## ", 1)]
    pip_lines = [line for line in workspace.splitlines() if re.match(r"\s*(python3 -m )?pip install ", line)]
    assert pip_lines, "the README's workspace section has no pip line"
    pip_words = {w for line in pip_lines for w in line.split("#")[0].split()}
    assert set(PIP_ONLY.values()) <= pip_words, pip_lines
    assert "rosdep install --from-paths src --ignore-src" in workspace


def test_install_prefix_has_index_entry_launch_config_and_executable():
    from ament_index_python.packages import get_package_prefix, get_package_share_directory

    prefix = Path(get_package_prefix("posemoe_ros"))
    share = Path(get_package_share_directory("posemoe_ros"))
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "posemoe_ros").is_file()
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "lift.launch.py").is_file()
    assert (share / "config" / "lift.yaml").is_file()
    executable = prefix / "lib" / "posemoe_ros" / "lift_node"
    assert executable.is_file() and os.access(executable, os.X_OK)


def test_generated_messages_and_python_package_share_one_name():
    import posemoe_ros
    import posemoe_ros.msg
    from posemoe_ros import skeleton

    assert posemoe_ros.msg.Skeleton3DArray.__module__.startswith("posemoe_ros.msg")
    assert skeleton.NUM_JOINTS == 17
    # The installed copy carries both halves side by side.
    installed = Path(posemoe_ros.msg.__file__).parents[1]
    assert (installed / "skeleton.py").is_file() and (installed / "msg" / "__init__.py").is_file()


@pytest.mark.parametrize("tool", ["posemoe-lift", "posemoe-eval", "posemoe-train", "posemoe-demo"])
def test_installed_tools_run_from_a_clean_environment(tool):
    """Run as a path, without an activated venv: the shebang must name an interpreter that has
    posemoe_ros (`#!/usr/bin/env python3` took the system Python: ModuleNotFoundError)."""
    from ament_index_python.packages import get_package_prefix

    executable = Path(get_package_prefix("posemoe_ros")) / "bin" / tool
    result = subprocess.run([str(executable), "--help"], env={"PATH": "/usr/bin:/bin"}, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower()


@pytest.mark.parametrize("executable", ["lift_node", "scenario_player"])
def test_ros2_run_executables_start_with_the_build_interpreter(executable):
    """`ros2 run posemoe_ros <executable>` executes lib/posemoe_ros/<executable> directly."""
    from ament_index_python.packages import get_package_prefix

    path = Path(get_package_prefix("posemoe_ros")) / "lib" / "posemoe_ros" / executable
    assert path.is_file() and os.access(path, os.X_OK)
    interpreter = path.read_text().splitlines()[0].removeprefix("#!")
    assert Path(interpreter).is_absolute() and "env" not in Path(interpreter).name
    probe = subprocess.run([interpreter, "-c", "import posemoe_ros.ros.lift_node, posemoe_ros.msg"],
                           env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]


def test_the_core_imports_on_a_machine_without_ros():
    """Everything outside posemoe_ros/ros/ (models, data, training, geometry, the pipeline, the
    tools) imports with ROS blocked, as on a training machine with only `pip install .`."""
    probe = r"""
import importlib, importlib.abc, pkgutil, sys
ROS = ("rclpy", "rosidl", "rcl_interfaces", "posemoe_ros.msg", "posemoe_ros.ros")
class NoRos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith(ROS) or name.split(".")[0].endswith("_msgs"):
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, NoRos())
import posemoe_ros
core = [m.name for m in pkgutil.walk_packages([sys.argv[1]], "posemoe_ros.") if not m.name.startswith(ROS)]
for name in core:
    importlib.import_module(name)
print(len(core))
"""
    run = subprocess.run([sys.executable, "-c", probe, str(REPO / "posemoe_ros")], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(run.stdout.split()[-1]) > 30  # every core module was imported, not an empty walk
