"""How a model version comes to serve, as the tuner node sees it: perception's validated swap,
then the engine, the persisted pointer and retention, and what to believe when the swap's answer
never came.

Kept apart from ``tuner_node`` because these steps must agree with each other whichever way a
version starts serving (a round's candidate, a rollback, perception's own ``model_info``):

* the engine hears of each version once (:meth:`Serving.deploy`): the swap answer and
  ``model_info`` both announce it, and a second deploy would reset its bookkeeping;
* the pointer perception starts from after a restart is written only for a file of the registry
  that perception serves (after its swap answer, or its ``model_info`` for a registry file);
* a candidate that perception **refused** (it answered ``success=false``) is moved to
  ``models/failed/`` (:meth:`ModelRegistry.set_aside`): kept for inspection, never a rollback
  target, its version never reused;
* a swap with **no answer** in ``swap_timeout_s`` leaves it unknown whether perception serves the
  candidate (it may still be loading it). Perception's latest ``model_info`` (latched) is the
  truth: :attr:`Serving.heard` keeps it even while the swap runs (when the node otherwise leaves
  that version to the swap answer), and after the timeout a ``model_info`` naming the candidate
  makes it serve as if the answer had come (counted as ``swaps_answered_late``). One that
  arrives later still is adopted the same way by the node's ``model_info`` callback, and it
  ends the ERROR the failed swap left (``TunerOps.served_late``), counted the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rclpy.client import Client
from rclpy.impl.rcutils_logger import RcutilsLogger

from etuner_ros.core.checkpoint import CheckpointError, load_checkpoint
from etuner_ros.core.model import ModelBundle
from etuner_ros.core.registry import ModelRegistry
from etuner_ros.core.text import printable
from etuner_ros.core.tuner import ContinualTuner
from etuner_ros.ros.tuner_ops import TunerOps


@dataclass(frozen=True)
class Announced:
    """Perception's latest ``model_info``: the version it serves and the file it loaded."""

    version: int
    path: str
    architecture: str


class Serving:
    """See the module docstring. ``counts`` go to ``~/status`` and ``/diagnostics``."""

    def __init__(self, registry: ModelRegistry, ops: TunerOps, client: Client, timeout_s: float,
                 logger: RcutilsLogger) -> None:
        self.registry, self.ops, self.client = registry, ops, client
        self.timeout_s = float(timeout_s)
        self._log = logger
        self.active_version = 0
        self.base: tuple[int, str] | None = None  # (version, path) of the first model ever
        self.heard: Announced | None = None
        self.counts = {"models_pruned": 0, "candidates_set_aside": 0, "swaps_answered_late": 0}

    def starting(self, heard: Announced) -> None:
        """The first ``model_info``: the version serving now; on the first run ever (no pointer
        yet) it is the base model the pointer will name."""
        self.active_version = heard.version
        try:
            ptr = self.registry.read_pointer()
        except ValueError:
            ptr = None
        if ptr is None:
            self.base = (heard.version, heard.path)

    def deploy(self, engine: ContinualTuner | None, bundle: ModelBundle, version: int,
               source: str) -> None:
        """Tell the engine a model serves, once per version whichever message says it first.
        Caller holds the operations' lock."""
        if engine is None or version == self.active_version:
            return  # the same version again: deploying twice would reset the engine's evidence
        engine.deploy(bundle)
        self.active_version = version
        self._log.info(f"serving v{version} (from {source})")

    def serve(self, engine: ContinualTuner | None, bundle: ModelBundle, path: Path, source: str,
              candidate: bool = False) -> tuple[bool, str, int]:
        """Perception serves ``path`` as ``bundle.version`` (its validated swap), then the engine
        and the pointer say so; (success, message, perception's active version). ``candidate``:
        a new round's model, set aside when perception refuses it."""
        version = bundle.version
        ok, why, active, answered = self.ops.swap(self.client, path, version, self.timeout_s)
        if not answered and self._announced(version, path):
            ok, why, active = True, f"{why}, but its model_info says it serves v{version}", version
            self.counts["swaps_answered_late"] += 1
            self._log.warn(f"swap to v{version}: {why}")
        if ok:
            with self.ops.lock:
                self.deploy(engine, bundle, version, source)
                self.ops.swapping = 0
            self.activated(version, path)
        elif candidate:  # refused: not a version to go back to; no answer: it may serve yet
            moved = self.set_aside(version) if answered else None
            why = f"{why}; {'moved to' if moved else 'kept at'} {moved or path}"
        return ok, why, active

    def adopt(self, engine: ContinualTuner | None, bundle: ModelBundle, version: int,
              path: str) -> None:
        """Perception announced ``version`` on its own (a late swap, a restart, another tool):
        deploy it, and point at it when it is a file of the registry; a version whose swap
        failed ends that error. Caller holds the lock."""
        self.deploy(engine, bundle, version, "model_info")
        if self.ops.served_late(version):
            self.counts["swaps_answered_late"] += 1
        if Path(path).resolve().parent == self.registry.dir.resolve():
            self.activated(version, Path(path))

    def activated(self, version: int, path: Path) -> None:
        """Persist the pointer perception starts from, then apply retention."""
        self.registry.activate(version, path, base=self.base)
        pruned = self.registry.prune()
        self.counts["models_pruned"] += len(pruned)
        if pruned:
            self._log.info(f"retention: removed versions {pruned}")

    def set_aside(self, version: int) -> Path | None:
        """Move a refused candidate out of the kept versions; where it went (None: not)."""
        try:
            moved = self.registry.set_aside(version)
        except OSError as exc:
            self._log.error(f"could not set v{version} aside: {printable(exc, 200)}")
            return None
        if moved is not None:
            self.counts["candidates_set_aside"] += 1
        return moved

    def _announced(self, version: int, path: Path) -> bool:
        """Perception's latest ``model_info`` names ``version`` at ``path``."""
        h = self.heard
        return h is not None and h.version == version and \
            Path(h.path).resolve() == Path(path).resolve()


def load_announced(info: Announced) -> ModelBundle:
    """The model a ``model_info`` announces, with its version (raises CheckpointError,
    OSError)."""
    bundle = load_checkpoint(Path(info.path), expected_arch=info.architecture)
    bundle.version = info.version
    return bundle


__all__ = ["Announced", "CheckpointError", "Serving", "load_announced"]
