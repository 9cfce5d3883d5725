"""Pinned CPU kernels (core/numerics.py): the benchmark's float code paths are the same on
every x86-64 machine, and a starting model records which kernels trained it."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from etuner_ros.core.numerics import PINNED, numerics_tag, pin_cpu_numerics

X86 = platform.machine().lower() in ("x86_64", "amd64")
ROOT = Path(__file__).resolve().parents[2]


def _fresh_python(code: str) -> dict:
    """Run ``code`` in a new interpreter without any pin in its environment; it prints JSON."""
    env = {k: v for k, v in os.environ.items() if k not in PINNED}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_benchmark_pins_the_kernels_before_torch_loads():
    got = _fresh_python(
        "import json, os\n"
        "import etuner_ros.bench\n"
        "import torch\n"
        "from etuner_ros.core.numerics import PINNED, numerics_tag\n"
        "print(json.dumps({'env': {k: os.environ.get(k) for k in PINNED},\n"
        "                  'aten': torch.backends.cpu.get_cpu_capability(),\n"
        "                  'tag': numerics_tag()}))\n")
    if X86:
        assert got["env"] == PINNED
        assert got["aten"] == "AVX2"  # every x86 machine this project runs on has AVX2
        assert got["tag"].endswith("aten=AVX2 onednn=AVX2 mkl=AVX2"), got["tag"]
    else:  # other CPUs keep their own kernels and say so
        assert got["env"] == dict.fromkeys(PINNED)
        assert "onednn=native mkl=native" in got["tag"]


def test_a_caller_value_wins_and_a_late_pin_changes_nothing():
    got = _fresh_python(
        "import json, os\n"
        "os.environ['MKL_CBWR'] = 'COMPATIBLE'\n"
        "from etuner_ros.core.numerics import pin_cpu_numerics\n"
        "first = pin_cpu_numerics()\n"
        "import torch\n"
        "os.environ.pop('ONEDNN_MAX_CPU_ISA', None)\n"
        "late = pin_cpu_numerics()\n"
        "print(json.dumps({'first': first, 'late': late,\n"
        "                  'mkl': os.environ.get('MKL_CBWR'),\n"
        "                  'onednn': os.environ.get('ONEDNN_MAX_CPU_ISA')}))\n")
    assert got["first"] is X86 and got["late"] is False
    assert got["mkl"] == "COMPATIBLE"  # the caller's choice
    assert got["onednn"] is None  # torch was loaded: setting it now would be a lie
    import torch  # noqa: F401  (loaded here, whichever tests ran before this one)

    assert pin_cpu_numerics() is False  # torch is loaded in this process: too late to pin


def test_env_sh_exports_the_same_pins():
    text = (ROOT / "scripts" / "env.sh").read_text()
    exported = dict(re.findall(r"export (\w+)=\$\{\1:-([^}]+)\}", text))
    assert {k: exported.get(k) for k in PINNED} == PINNED


def test_tag_names_this_process_kernels():
    import torch

    tag = numerics_tag()
    assert tag.startswith(platform.machine().lower() + " ")
    assert f"aten={torch.backends.cpu.get_cpu_capability()}" in tag
