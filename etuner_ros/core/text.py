"""Make untrusted text safe to log: a caller's string must never forge or flood a log line."""

from __future__ import annotations


def printable(value: object, limit: int = 80) -> str:
    """``repr``-style escape of control characters (newlines included), cut to ``limit`` chars.

    Log lines carry names that came from the network (class names, file paths, caller ids);
    escaping keeps one message on one line and the cut keeps a 10,000-character name from
    flooding the log.
    """
    text = str(value)
    out = text.encode("unicode_escape", "backslashreplace").decode("ascii", "replace")
    if len(out) > limit:
        out = out[: max(0, limit - 3)] + "..."
    return out
