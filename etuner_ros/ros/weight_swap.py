"""The checks a ``~/swap_weights`` request passes before its model may serve (srv/SwapWeights).

Separate from ``perception_node`` because they are the service's contract, not the node's
plumbing: versions 1..2**31-1 (0 in a request: the checkpoint's own), a retried call for what
already serves is answered as done, other weights under a serving version are refused, and the
checkpoint passes ``core/checkpoint.py``'s checks with the serving classes as a prefix of its own.
"""

from __future__ import annotations

from pathlib import Path

from etuner_ros.core.checkpoint import MAX_VERSION, CheckpointError, load_checkpoint
from etuner_ros.core.model import ModelBundle
from etuner_ros.core.text import printable


def version_problem(version: int, current: int, whose: str = "requested") -> str | None:
    """Why ``version`` may not serve, or None. The contract (srv/SwapWeights.srv): 1..2**31-1;
    0 in a request means "the checkpoint's own version"."""
    if whose == "requested" and version == 0:
        return None
    if not 0 < version <= MAX_VERSION:
        return f"{whose} version {version} is outside 1..{MAX_VERSION}"
    return None


def same_file(a: Path, b: str) -> bool:
    try:
        return bool(b) and a.resolve() == Path(b).resolve()
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        return False


def checked_swap(version: int, path: Path, current: ModelBundle, current_path: str,
                 arch: str) -> tuple[ModelBundle | None, str | None]:
    """``(model, None)``: it may serve; ``(None, why)``: refused; ``(None, None)``: a retry of
    the swap that made ``current`` serve (answer success, change nothing)."""
    why = version_problem(version, current.version)
    if why is None and (not str(path) or str(path) == "." or "\x00" in str(path)):
        why = f"checkpoint_path {printable(str(path), 120)!r} is empty or has a NUL byte"
    if why is None and version == current.version:
        if same_file(path, current_path):
            return None, None
        why = (f"version {version} already serves the weights of "
               f"{printable(current_path, 120)}; other weights need another version")
    if why is not None:
        return None, why
    try:
        new = load_checkpoint(path, expected_arch=arch,
                              expected_classes_prefix=current.class_names)
    except CheckpointError as exc:
        return None, str(exc)
    if version == 0:
        why = version_problem(new.version, current.version, "checkpoint's")
        if why is None and new.version == current.version:
            why = f"checkpoint's version {new.version} is already serving"
        return (None, why) if why is not None else (new, None)
    new.version = int(version)
    return new, None
