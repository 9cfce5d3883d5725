"""Thin ROS 2 helpers shared by the nodes (QoS, image conversion, parameters, diagnostics)."""
