"""Model registry: versioned checkpoints on disk and an atomic pointer to the one that serves.

A robot is rebooted, killed and power-cycled; what it learned must come back, and a half-written
file must never serve. So (all in ``models_dir``, no ROS here):

* checkpoints are ``<arch>_v<version:04d>.pt``, written atomically by
  :func:`~etuner_ros.core.checkpoint.save_checkpoint`; a name is never written twice, and the
  next version is one above every version on disk *and* in the pointer (a restart never reuses
  a number, even after retention deleted the files); versions stop at ``MAX_VERSION``
  (2**31-1, the largest a ROS ``int32``/``uint32`` field and our file names carry safely);
* ``active.json`` says which checkpoint serves (version, file, SHA-256, the base model and the
  versions that were active before). It is written to a temp file, fsynced and renamed over
  the old one, so a reader sees the old pointer or the new one, never a mix. Perception starts
  from it when the file it names passes validation and its hash matches, else from its
  configured base checkpoint (with a warning);
* retention keeps the newest ``keep_last`` versions plus the base and the active one, and stray
  ``*.tmp`` files of a killed write are removed when the registry opens;
* a candidate perception refused is moved to ``failed/`` (:meth:`ModelRegistry.set_aside`):
  never a rollback target, its version never handed out again, the newest ``keep_last`` kept;
* ``tuner_state.json`` (same atomic write) holds the tuner's watermark: the highest labelled
  sample id a finished round has trained on, so a restart trains only on what came after, and
  the identity of the sample store those ids are of (``core/resume.py`` checks it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etuner_ros.core.checkpoint import (
    MAX_VERSION,
    CheckpointError,
    _fsync_dir,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)
from etuner_ros.core.model import ModelBundle

POINTER = "active.json"
TUNER_STATE = "tuner_state.json"
FAILED = "failed"  # candidates perception refused (``ModelRegistry.set_aside``)
_NAME = re.compile(r"^(?P<arch>[A-Za-z0-9_]+)_v(?P<version>\d+)\.pt$")
_HISTORY = 32  # earlier active versions remembered in the pointer (for the record only)


class RegistryError(Exception):
    """The registry cannot do what was asked (version space exhausted, no such version...)."""


@dataclass
class Pointer:
    """The content of ``active.json``."""

    version: int
    path: str
    sha256: str
    base_version: int
    base_path: str
    history: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "path": self.path, "sha256": self.sha256,
                "base": {"version": self.base_version, "path": self.base_path},
                "history": list(self.history)}

    @staticmethod
    def from_json(d: Any) -> Pointer:
        """Parse and type-check; a hand-edited or damaged file raises ValueError."""
        if not isinstance(d, dict) or not isinstance(d.get("base"), dict):
            raise ValueError("not a pointer object")
        try:
            p = Pointer(d["version"], d["path"], d["sha256"], d["base"]["version"],
                        d["base"]["path"], list(d.get("history", [])))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"pointer lacks {exc}") from None
        ints = (p.version, p.base_version, *p.history)
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_VERSION
                   for v in ints):
            raise ValueError(f"bad version in pointer: {ints}")
        if not all(isinstance(s, str) and s for s in (p.path, p.sha256, p.base_path)):
            raise ValueError("pointer path/sha256 must be non-empty strings")
        return p


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """temp file in the same directory, flush + fsync, ``os.replace``, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, None when the file does not exist; ValueError if damaged."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


class ModelRegistry:
    """Versioned checkpoints in ``models_dir``; see the module docstring."""

    def __init__(self, models_dir: str | os.PathLike[str], keep_last: int = 5,
                 clean: bool = True) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.dir = Path(models_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep_last = int(keep_last)
        self._reserved = 0  # highest version handed out by next_version() in this process
        self.removed_tmp = self.clean_tmp() if clean else []

    # --- files ---------------------------------------------------------------------------
    def clean_tmp(self) -> list[str]:
        """Delete ``*.tmp`` left by a write that was killed (they are never read)."""
        gone = []
        for p in self.dir.glob("*.tmp"):
            with contextlib.suppress(OSError):
                p.unlink()
                gone.append(p.name)
        return gone

    def versions(self) -> dict[int, Path]:
        """Checkpoints on disk, by version (one version space for every architecture), not
        counting those set aside."""
        return _versions_in(self.dir)

    def path_of(self, arch: str, version: int) -> Path:
        return checkpoint_path(self.dir, arch, version)

    @property
    def failed_dir(self) -> Path:
        return self.dir / FAILED

    def set_aside(self, version: int) -> Path | None:
        """Move ``version``'s checkpoint to ``failed/`` (perception refused it): out of
        :meth:`kept`, so never a rollback target; still counted by :meth:`next_version`.
        Returns where it went, None when it is not on disk."""
        src = self.versions().get(int(version))
        if src is None:
            return None
        self.failed_dir.mkdir(exist_ok=True)
        dst = self.failed_dir / src.name
        os.replace(src, dst)
        _fsync_dir(self.dir)
        return dst

    def set_aside_versions(self) -> dict[int, Path]:
        """Checkpoints in ``failed/``, by version."""
        return _versions_in(self.failed_dir)

    # --- versions ------------------------------------------------------------------------
    def next_version(self, floor: int = 0) -> int:
        """One above every version on disk, in the pointer, handed out before, and ``floor``
        (the version perception serves); raises RegistryError past ``MAX_VERSION``."""
        seen = [floor, self._reserved, *self.versions(), *self.set_aside_versions()]
        with contextlib.suppress(ValueError):
            ptr = self.read_pointer()
            if ptr is not None:
                seen += [ptr.version, ptr.base_version, *ptr.history]
        nxt = max(seen) + 1
        if nxt > MAX_VERSION:
            raise RegistryError(f"version space exhausted: next would be {nxt} > {MAX_VERSION}")
        self._reserved = nxt
        return nxt

    def save(self, bundle: ModelBundle, extra: dict[str, Any] | None = None) -> Path:
        """Write ``bundle`` under its own version's name; never overwrite an existing file."""
        if not 1 <= int(bundle.version) <= MAX_VERSION:
            raise RegistryError(f"version {bundle.version} outside 1..{MAX_VERSION}")
        path = self.path_of(bundle.arch, bundle.version)
        if path.exists():
            raise RegistryError(f"{path.name} exists; a version's file is never rewritten")
        return save_checkpoint(path, bundle, extra)

    # --- the pointer ---------------------------------------------------------------------
    @property
    def pointer_path(self) -> Path:
        return self.dir / POINTER

    def read_pointer(self) -> Pointer | None:
        """The pointer, None when there is none; ValueError when it is damaged."""
        data = read_json(self.pointer_path)
        return None if data is None else Pointer.from_json(data)

    def activate(self, version: int, path: str | os.PathLike[str],
                 base: tuple[int, str] | None = None) -> Pointer:
        """Point at ``path`` (already serving, version ``version``); ``base`` is (version, path)
        of the starting model, needed only for the first pointer ever written."""
        try:
            old = self.read_pointer()
        except ValueError:
            old = None
        if old is None and base is None:
            raise RegistryError("the first pointer needs the base model")
        bv, bp = base if old is None else (old.base_version, old.base_path)
        history = [] if old is None else [*old.history, old.version][-_HISTORY:]
        ptr = Pointer(int(version), str(Path(path).resolve()), sha256_file(path), int(bv),
                      str(Path(bp).resolve()), history)
        write_json_atomic(self.pointer_path, ptr.to_json())
        return ptr

    # --- retention -----------------------------------------------------------------------
    def prune(self) -> list[int]:
        """Delete versions beyond the newest ``keep_last``, never the base or the active one."""
        try:
            ptr = self.read_pointer()
        except ValueError:
            return []  # a damaged pointer: keep everything until a good one is written
        protect = set()
        if ptr is not None:
            protect = {ptr.version, ptr.base_version}
            protect |= {v for v, p in self.versions().items()
                        if str(p.resolve()) in (ptr.path, ptr.base_path)}
        have = self.versions()
        keep = set(list(have)[-self.keep_last:]) | protect
        gone = []
        for v, p in have.items():
            if v not in keep:
                with contextlib.suppress(OSError):
                    p.unlink()
                    gone.append(v)
        aside = self.set_aside_versions()  # the same bound for those perception refused
        for v in list(aside)[:-self.keep_last]:
            with contextlib.suppress(OSError):
                aside[v].unlink()
                gone.append(v)
        return gone

    def kept(self) -> dict[int, Path]:
        """Versions one can go back to: every checkpoint on disk plus the base."""
        out = self.versions()
        with contextlib.suppress(ValueError):
            ptr = self.read_pointer()
            if ptr is not None and Path(ptr.base_path).is_file():
                out.setdefault(ptr.base_version, Path(ptr.base_path))
        return dict(sorted(out.items()))

    def rollback_target(self, requested: int, active: int) -> tuple[int, Path]:
        """``requested`` if kept, or for 0 the newest kept version below ``active``."""
        kept = self.kept()
        if requested:
            if requested not in kept:
                raise RegistryError(f"v{requested} is not kept (kept: {list(kept)})")
            return requested, kept[requested]
        older = [v for v in kept if v < active]
        if not older:
            raise RegistryError(f"no kept version below the active v{active} "
                                f"(kept: {list(kept)})")
        return older[-1], kept[older[-1]]

    # --- the tuner's watermark -----------------------------------------------------------
    def read_tuner_state(self) -> dict[str, Any]:
        """``{"trained_through": id, "unlabelled_through": id, "store_id": id | None}``; zeros
        (and None) when absent or damaged. ``store_id`` names the sample store the ids are of
        (None in files written before it was recorded)."""
        try:
            data = read_json(self.dir / TUNER_STATE) or {}
        except ValueError:
            data = {}
        out: dict[str, Any] = {}
        for key in ("trained_through", "unlabelled_through"):
            v = data.get(key, 0)
            out[key] = v if _is_count(v) else 0
        sid = data.get("store_id")
        out["store_id"] = sid if _is_count(sid) and sid > 0 else None
        return out

    def write_tuner_state(self, trained_through: int, unlabelled_through: int,
                          store_id: int | None = None) -> None:
        data: dict[str, Any] = {"trained_through": int(trained_through),
                                "unlabelled_through": int(unlabelled_through)}
        if store_id is not None:
            data["store_id"] = int(store_id)
        write_json_atomic(self.dir / TUNER_STATE, data)


def _versions_in(folder: Path) -> dict[int, Path]:
    out = {}
    if folder.is_dir():
        for p in folder.iterdir():
            m = _NAME.match(p.name)
            if m and p.is_file():
                out[int(m["version"])] = p
    return dict(sorted(out.items()))


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def load_start_model(models_dir: str | os.PathLike[str], base_checkpoint: str, arch: str,
                     warn: Callable[[str], None]) -> tuple[ModelBundle, str]:
    """The model perception starts from and its path: the pointer's when it names a file
    that validates and matches its hash, else ``base_checkpoint`` (``warn`` says why).
    Raises CheckpointError when the base is bad too."""
    reg_dir = Path(models_dir)
    try:
        data = read_json(reg_dir / POINTER)
        ptr = None if data is None else Pointer.from_json(data)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        warn(f"ignoring damaged {reg_dir / POINTER} ({type(exc).__name__}: {exc}); "
             f"starting from the base {base_checkpoint}")
        ptr = None
    if ptr is not None:
        try:
            if sha256_file(ptr.path) != ptr.sha256:
                raise CheckpointError(f"checkpoint {ptr.path}: content differs from the "
                                      "hash recorded in the pointer")
            bundle = load_checkpoint(ptr.path, expected_arch=arch)
            bundle.version = ptr.version
            return bundle, ptr.path
        except (CheckpointError, OSError) as exc:
            warn(f"active model v{ptr.version} not usable ({exc}); starting from the base "
                 f"{base_checkpoint}")
    return load_checkpoint(base_checkpoint, expected_arch=arch), base_checkpoint


__all__ = ["MAX_VERSION", "ModelRegistry", "Pointer", "RegistryError", "load_start_model",
           "sha256_file", "write_json_atomic"]
