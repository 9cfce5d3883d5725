"""Test-wide guards: DDS stays on loopback, each run gets its own domain, and skips fail in CI.

The environment is set at import time, before any test imports rclpy, so every participant this
test run creates (in-process or in subprocesses that inherit the environment) uses it.
"""

from __future__ import annotations

import os

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
if "ROS_DOMAIN_ID" not in os.environ or os.environ.get("ETUNER_TEST_DOMAIN") != "keep":
    # 1..100 by pid: runs side by side on one machine do not see each other's nodes.
    os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
os.environ.setdefault("PYTHONUNBUFFERED", "1")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With ETUNER_FAIL_ON_SKIP=1 (CI), a skipped test fails the run: ROS is always there."""
    if os.environ.get("ETUNER_FAIL_ON_SKIP") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(
            f"ETUNER_FAIL_ON_SKIP: {len(skipped)} test(s) skipped; failing the run", red=True)
        for rep in skipped:
            reporter.write_line(f"  skipped: {rep.nodeid}: {rep.longrepr}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
