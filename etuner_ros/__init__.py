"""Redundancy-aware continual fine-tuning for ROS 2 perception (ETuner)."""
