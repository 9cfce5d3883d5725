"""ROS 2 nodes, one per file."""
