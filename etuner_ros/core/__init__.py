"""The learning core: no rclpy import anywhere below this package."""
