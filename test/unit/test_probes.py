"""The evidence probes under scripts/ refuse the test seeds and any other seed that is not a DEV
seed: constants are fitted on DEV seeds only, so no probe may print numbers of a seed the README
reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from etuner_ros.bench.config import DEV_SEEDS, TEST_SEEDS

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.mark.parametrize("argv", [["gate_probe.py"], ["label_probe.py", "ceiling"],
                                  ["scene_probe.py", "bn"]])
def test_probe_refuses_a_test_seed(argv):
    out = subprocess.run([sys.executable, str(SCRIPTS / argv[0]), *argv[1:], "--seed",
                          str(TEST_SEEDS[0])], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "is a test seed" in out.stderr


def test_probe_refuses_a_seed_that_is_not_a_dev_seed():
    seed = max(DEV_SEEDS) + 1
    assert seed not in TEST_SEEDS
    out = subprocess.run([sys.executable, str(SCRIPTS / "label_probe.py"), "ceiling", "--seed",
                          str(seed)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "is not a DEV seed" in out.stderr
