"""posemoe_ros: lift 2D human keypoints to metric 3D skeletons with PoseMoE, in ROS 2.

The generated message module `posemoe_ros.msg` is installed beside this package by rosidl
(same package name, ament_cmake + ament_cmake_python). `extend_path` merges every
`posemoe_ros` directory on sys.path, so a source checkout on sys.path still finds the
installed `posemoe_ros.msg`.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
