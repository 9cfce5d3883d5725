"""The swap service's contract checks (``ros/weight_swap.py``) without ROS: malformed paths are
refused with a reason, never an exception (a NUL byte used to surface as "internal error
ValueError")."""

from __future__ import annotations

from pathlib import Path

import pytest

from etuner_ros.core.model import ModelBundle, build_model
from etuner_ros.ros.weight_swap import checked_swap, same_file

ARCH = "mobilenet_v3_small"


@pytest.mark.parametrize("raw", ["", "bad\x00name.pt"])
def test_an_empty_or_nul_path_is_refused_with_a_reason(raw):
    current = ModelBundle(build_model(ARCH, 2), ARCH, ["a", "b"], 3, 32)
    for version in (0, 4, 3):
        new, why = checked_swap(version, Path(raw), current, "/models/v3.pt", ARCH)
        assert new is None and why is not None and "empty or has a NUL byte" in why


def test_same_file_is_false_not_an_exception_for_a_nul_byte(tmp_path):
    f = tmp_path / "v3.pt"
    f.write_bytes(b"x")
    assert same_file(f, str(f))
    assert not same_file(Path("a\x00b"), str(f)) and not same_file(f, "")
