"""One ``main()`` for every node run on its own (``ros2 run etuner_ros <node>``), and the spin
loop that ``bringup`` shares with it.

Robustness choice: an exception that escapes ``executor.spin()`` (a callback that is not wrapped
by :class:`~etuner_ros.ros.guard.CallbackGuard`, or a failure inside rclpy's own machinery) is
logged with its cause and traceback, counted, and the *same* executor spins again. The nodes keep
their state (the served model, the collector's frame cache, the tuner's progress), and in
``bringup`` one node's bug does not end the other nodes. Restarting the process instead would
lose that state and is what a supervisor does for what cannot be caught in Python (a segfault,
the OOM killer): the launch file sets ``respawn`` for that. Only Ctrl-C, an external shutdown or
the caller's ``stop`` event ends the loop; a flood of escapes (``max_escapes`` within
``window_s``) ends it too, with exit code 1, because then something is wrong for good and a
respawn is the better remedy.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from etuner_ros.core.text import printable
from etuner_ros.ros.executor import QueueAwareExecutor
from etuner_ros.ros.params import ParameterError

PROFILE_ENV = "FASTRTPS_DEFAULT_PROFILES_FILE"


def fastdds_profile() -> Path:
    """The package's Fast DDS profile (config/fastdds.xml): installed share dir, else source."""
    try:
        from ament_index_python.packages import get_package_share_directory

        path = Path(get_package_share_directory("etuner_ros")) / "config" / "fastdds.xml"
        if path.exists():
            return path
    except (ImportError, LookupError, ValueError):
        pass
    return Path(__file__).resolve().parents[2] / "config" / "fastdds.xml"


def use_default_transport_profile() -> str:
    """Point Fast DDS at config/fastdds.xml unless the user chose a profile; call before
    ``rclpy.init``. Returns the profile in effect (empty if none). Why the profile: 640x480 and
    larger camera frames do not fit Fast DDS's default shared-memory segment (see the XML)."""
    for var in (PROFILE_ENV, "FASTDDS_DEFAULT_PROFILES_FILE"):
        if os.environ.get(var):
            return os.environ[var]
    path = fastdds_profile()
    if path.exists():
        os.environ[PROFILE_ENV] = str(path)
        return str(path)
    return ""


def spin_until_shutdown(executor: Executor, name: str, stop: threading.Event | None = None,
                        max_escapes: int = 100, window_s: float = 10.0) -> int:
    """Spin ``executor`` until Ctrl-C, shutdown or ``stop``; survive escaped exceptions.

    Returns 0 on a normal end, 1 when more than ``max_escapes`` exceptions escaped within
    ``window_s`` seconds (see the module docstring for why it keeps spinning otherwise).
    """
    log = rclpy.logging.get_logger(name)
    recent: deque[float] = deque()
    seen: set[tuple[str, str]] = set()
    escapes = 0
    while stop is None or not stop.is_set():
        try:
            executor.spin()
            return 0  # spin() returns when the executor or its context shut down
        except (KeyboardInterrupt, ExternalShutdownException):
            return 0
        except Exception as exc:  # the point: nothing ends the process
            if stop is not None and stop.is_set():
                return 0
            escapes += 1
            now = time.monotonic()  # pacing of our own restarts, not stream time
            recent.append(now)
            while recent and now - recent[0] > window_s:
                recent.popleft()
            why = printable(f"{type(exc).__name__}: {exc}", 300)
            where = traceback.extract_tb(exc.__traceback__)
            site = f"{Path(where[-1].filename).name}:{where[-1].lineno}" if where else "?"
            key = (type(exc).__name__, site)
            if key not in seen:
                seen.add(key)
                log.error(f"an exception escaped a callback ({why} at {site}); the nodes keep "
                          f"running [{escapes} so far]\n"
                          + "".join(traceback.format_exception(exc)).rstrip())
            else:
                log.error(f"an exception escaped a callback again ({why} at {site}) "
                          f"[{escapes} so far]", throttle_duration_sec=5.0)
            if len(recent) > max_escapes:
                log.fatal(f"{len(recent)} exceptions escaped within {window_s:.0f} s: giving up "
                          "so that a supervisor (launch respawn) can restart the process")
                return 1
    return 0


def run_node(factory: Callable[[], Node], name: str, args: list[str] | None = None,
             threads: int = 1) -> int:
    """Init rclpy, build the node and spin it until Ctrl-C; a bad parameter is one fatal log
    line and exit code 2, not a traceback, and Ctrl-C before the node is built exits 0. (A
    perception checkpoint that fails to load is not a bad parameter: the node stays alive and
    unconfigured, so it can be configured again once the file is fixed.)
    ``threads`` > 1 lets services answer while another callback (an inference, a swap wait)
    is running; it uses :class:`QueueAwareExecutor`, not rclpy's MultiThreadedExecutor, whose
    spin thread busy-loops while a callback waits for a free worker (``ros/executor.py``).
    One thread needs no pool: a single-threaded executor."""
    use_default_transport_profile()
    rclpy.init(args=args)
    node: Node | None = None
    executor: Executor | None = None
    try:
        # The executor first: a node logs while it starts, and a Ctrl-C that follows must not
        # land in rclpy's Executor constructor (a half-made one fails in __del__, printed).
        executor = (QueueAwareExecutor(num_threads=threads) if threads > 1
                    else SingleThreadedExecutor())
        try:
            node = factory()
        except ParameterError as exc:
            rclpy.logging.get_logger(name).fatal(str(exc))
            return 2
        executor.add_node(node)
        return spin_until_shutdown(executor, name)
    except KeyboardInterrupt:  # Ctrl-C before spinning (the node still starting): clean stop
        rclpy.logging.get_logger(name).info("interrupted while starting")
        return 0
    finally:
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
