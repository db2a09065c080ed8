"""ROS-free install of the core (model, data, training) for training machines: `pip install .`.

ROS users build with colcon, which follows package.xml (ament_cmake) and CMakeLists.txt; both
paths read the package metadata from setup.cfg.
"""
from setuptools import setup

setup(
    install_requires=[
        "torch", "numpy", "scipy", "safetensors", "opencv-python-headless", "pyyaml", "tqdm",
        "matplotlib", "onnxruntime", "mcap", "mcap-ros2-support",
    ],
    # The tools CMakeLists.txt installs to bin, as entry points (pip writes them for the installing
    # interpreter); posemoe-lift reads and writes MCAP only where the ROS 2 message packages are
    # importable, keypoint files (.json, .npz) lift without them.
    entry_points={"console_scripts": [
        "posemoe-train = posemoe_ros.training.train:main",
        "posemoe-eval = posemoe_ros.training.evaluate:main",
        "posemoe-lift = posemoe_ros.ros.tools.lift_cli:main",
    ]},
)
