"""ROS tools around the node: the demo runner, posemoe-lift and its MCAP bags, the scenario player."""
