"""Benchmark: one labelled stream through every tuning policy."""
