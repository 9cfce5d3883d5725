"""argparse types for the package's command lines: a bad number is a usage error.

Why: ``type=int`` takes 0 and -5, which then surface later as a silent default, a traceback
from a worker process or a run of nonsense ("-1 workers"). These refuse them at parse time,
with the option's name, exit code 2, before anything trains or starts.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _at_least(kind: type, low: float, *, strict: bool = False) -> Callable[[str], float]:
    """An argparse type: ``kind`` (int or float) of ``text``, finite, at least ``low`` (above
    it with ``strict``)."""
    what = "an integer" if kind is int else "a number"
    bound = f"above {low:g}" if strict else f"at least {low:g}"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text}")
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value:g}")
        return value

    return parse


positive_int = _at_least(int, 1)
positive_int.__doc__ = "An integer of at least 1."
non_negative_int = _at_least(int, 0)
non_negative_int.__doc__ = "An integer of at least 0 (a seed: numpy takes no negative one)."
positive_float = _at_least(float, 0, strict=True)
positive_float.__doc__ = "A finite number above 0."
non_negative_float = _at_least(float, 0)
non_negative_float.__doc__ = "A finite number of at least 0."
