"""Message stamps as integers: the key that pairs a correction with its frame."""

from __future__ import annotations

from typing import Any


def stamp_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds, the pairing key."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
