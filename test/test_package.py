"""The package as a ROS user's tools see it: package.xml, the ament index and the install tree."""
import ast
import os
import sys
from pathlib import Path

from catkin_pkg.package import parse_package

from conftest import REPO

# rosdep keys of the third-party Python modules the code imports.
PYTHON_ROSDEP_KEYS = {
    "numpy": "python3-numpy", "scipy": "python3-scipy", "cv2": "python3-opencv",
    "yaml": "python3-yaml", "tqdm": "python3-tqdm", "matplotlib": "python3-matplotlib",
    "safetensors": "python3-safetensors", "torch": "python3-pytorch-pip",
    "onnx": "python3-onnx-pip", "onnxruntime": "python3-onnxruntime-pip",
    "mcap": "python3-mcap-pip", "mcap_ros2": "python3-mcap-ros2-support-pip",
}
# ROS packages are imported under their own name; these are imported by other names.
ROS_IMPORT_TO_PACKAGE = {"launch_ros": "launch_ros", "launch": "launch", "ament_index_python": "ament_index_python"}


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
    declared = {d.name for d in package.build_depends + package.exec_depends + package.buildtool_depends
                + package.build_export_depends}

    sources = list((REPO / "posemoe_ros").rglob("*.py")) + list((REPO / "launch").glob("*.py"))
    sources += [p for p in (REPO / "scripts").iterdir() if p.is_file() and p.read_text().startswith("#!/usr/bin/env python")]
    imported = _imported_top_level_modules(sources) - set(sys.stdlib_module_names) - {"posemoe_ros"}
    assert {"rclpy", "torch", "numpy"} <= imported  # the scan really sees the code

    missing = []
    for module in sorted(imported):
        if module in PYTHON_ROSDEP_KEYS:
            key = PYTHON_ROSDEP_KEYS[module]
        elif module.endswith(("_msgs", "_interfaces")) or module in ("rclpy", "tf2_ros", "message_filters", "cv_bridge"):
            key = module
        elif module in ROS_IMPORT_TO_PACKAGE:
            key = ROS_IMPORT_TO_PACKAGE[module]
        else:
            raise AssertionError(f"import '{module}' has no known rosdep key: add it to package.xml and this map")
        if key not in declared:
            missing.append(f"{module} -> {key}")
    assert not missing, f"package.xml lacks: {missing}"


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
