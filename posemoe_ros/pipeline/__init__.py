"""The per-frame path without ROS: detector layouts -> tracks and their windows -> Lifter."""
