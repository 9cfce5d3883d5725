"""Simulated household world and caregiver, used by the demo, the tests and the benchmark."""
