"""ROS-free install of the core (model, data, training) for training machines: `pip install .`.

ROS users build with colcon, which follows package.xml (ament_cmake) and CMakeLists.txt; both
paths read the package metadata and console scripts from setup.cfg.
"""
from setuptools import setup

setup(
    install_requires=[
        "torch", "numpy", "scipy", "safetensors", "opencv-python-headless", "pyyaml", "tqdm",
        "matplotlib", "onnxruntime", "mcap", "mcap-ros2-support",
    ],
    # The files CMakeLists.txt installs to bin; posemoe-lift reads and writes MCAP only where the
    # ROS 2 message packages are importable, keypoint files (.json, .npz) lift without them.
    scripts=["scripts/posemoe-train", "scripts/posemoe-eval", "scripts/posemoe-lift"],
)
