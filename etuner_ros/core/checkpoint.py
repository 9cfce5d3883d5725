"""Atomic, validated model checkpoints.

A robot swaps weights while it runs, so a checkpoint on disk is either the old complete file or
the new complete file (never half-written), and a bad file is refused with one clear line instead
of being loaded into the perception path.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from etuner_ros.core.model import SUPPORTED_ARCHS, ModelBundle, build_model

FORMAT = "etuner_ros/1"

# Key of the head weight in each architecture's state_dict: its row count is the class count.
_HEAD_KEY = {
    "mobilenet_v3_small": "classifier.3.weight",
    "mobilenet_v3_large": "classifier.3.weight",
    "efficientnet_b0": "classifier.1.weight",
    "resnet18": "fc.weight",
}


class CheckpointError(Exception):
    """A checkpoint that must not be loaded; the message says which file and why, on one line."""


def checkpoint_path(models_dir: str | os.PathLike[str], arch: str, version: int) -> Path:
    """Naming convention ``<arch>_v<version:04d>.pt`` (sorts by version)."""
    return Path(models_dir) / f"{arch}_v{int(version):04d}.pt"


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; not every platform/filesystem allows opening a dir."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: str | os.PathLike[str], bundle: ModelBundle,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``bundle`` atomically: temp file in the same dir, flush+fsync, os.replace, fsync dir.

    ``extra`` must hold only plain types (str, int, float, bool, None, lists, dicts, tensors) so
    it can be read back with ``weights_only=True``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "arch": bundle.arch,
        "class_names": list(bundle.class_names),
        "version": int(bundle.version),
        "input_size": int(bundle.input_size),
        "state_dict": {k: v.detach().cpu().clone() for k, v in bundle.model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    return path


def _one_line(exc: BaseException, limit: int = 160) -> str:
    """First line of an exception, capped: torch's unpickling errors run to paragraphs."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > limit:
        first = first[:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(exc).__name__}: {first}".rstrip(": ")


def _fail(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path}: {why}")


def load_checkpoint(path: str | os.PathLike[str], expected_arch: str | None = None,
                    expected_classes_prefix: Sequence[str] | None = None) -> ModelBundle:
    """Load and validate a checkpoint written by save_checkpoint; raise CheckpointError if bad.

    ``expected_classes_prefix`` is the label map currently served: a swap may add classes at the
    end but never drop or reorder them (class ids published downstream would change meaning).
    """
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, random bytes, disallowed pickle: all "corrupt"
        raise _fail(path, f"unreadable or corrupt ({_one_line(exc)})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        fmt = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise _fail(path, f"not an {FORMAT} checkpoint (format={fmt!r})")

    arch = data.get("arch")
    names = data.get("class_names")
    version = data.get("version")
    input_size = data.get("input_size")
    state = data.get("state_dict")
    if arch not in SUPPORTED_ARCHS:
        raise _fail(path, f"unsupported architecture {arch!r}")
    if expected_arch is not None and arch != expected_arch:
        raise _fail(path, f"architecture {arch!r} does not match expected {expected_arch!r}")
    if not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)):
        raise _fail(path, "class_names must be a non-empty list of non-empty strings")
    if len(set(names)) != len(names):
        raise _fail(path, "class_names contains duplicates")
    if not isinstance(version, int) or not isinstance(input_size, int) or input_size < 1:
        raise _fail(path, f"bad version/input_size ({version!r}, {input_size!r})")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _fail(path, "state_dict missing or not a dict of tensors")
    head_w = state.get(_HEAD_KEY[arch])
    if head_w is None or head_w.ndim != 2:
        raise _fail(path, f"state_dict has no {_HEAD_KEY[arch]} for {arch}")
    if head_w.shape[0] != len(names):
        raise _fail(path, f"label map has {len(names)} classes but the head has {head_w.shape[0]}")
    if expected_classes_prefix is not None:
        prefix = list(expected_classes_prefix)
        if names[:len(prefix)] != prefix:
            raise _fail(path, f"label map {names} does not extend the current one {prefix} "
                              "(classes may be added, never reordered or dropped)")
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise _fail(path, f"non-finite values (NaN/Inf) in {key}")

    model = build_model(arch, len(names))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise _fail(path, f"state_dict keys do not match {arch}: {len(missing)} missing "
                          f"(e.g. {missing[:2]}), {len(unexpected)} unexpected "
                          f"(e.g. {unexpected[:2]})")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise _fail(path, f"shape of {key} is {tuple(tensor.shape)}, {arch} needs "
                              f"{tuple(expected[key].shape)}")
    model.load_state_dict(state, strict=True)
    model.eval()
    return ModelBundle(model, arch, list(names), version, input_size)


__all__ = ["FORMAT", "CheckpointError", "checkpoint_path", "load_checkpoint", "save_checkpoint"]
