"""The README's main job, end to end on a short stream: ``demo`` trains the starting model,
runs the real nodes on the simulated camera and caregiver over real DDS, prints progress and
writes its summary. (A refactoring of perception once broke the demo's progress line and no
test ran it.)"""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_demo_runs_the_real_nodes_and_writes_a_summary(tmp_path):
    summary = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from etuner_ros.demo import main; "
         "sys.exit(main(sys.argv[1:]))", "--data-dir", str(tmp_path), "--frames-per-scenario",
         "24", "--timeout", "240", "--summary", str(summary)],
        capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "[demo] camera stream finished" in out and "| frames " in out, out[-4000:]
    s = json.loads(summary.read_text())
    assert s["frames_processed"] > 0 and s["corrections_stored"] > 0, s
    assert s["policy"] == "etuner"
