"""Atomic, validated model checkpoints.

A robot swaps weights while it runs, so a checkpoint on disk is either the old complete file or
the new complete file (never half-written), and a bad file is refused with one clear line instead
of being loaded into the perception path.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from etuner_ros.core.class_names import model_class
from etuner_ros.core.model import SUPPORTED_ARCHS, ModelBundle, build_model
from etuner_ros.core.text import printable

FORMAT = "etuner_ros/1"

# Sanity limits a checkpoint must meet before it may serve. A checkpoint comes from a file any
# caller of ~/swap_weights can name, so every size that drives an allocation is bounded *before*
# anything is built: an input_size of 100000 would make every frame a 120 GB tensor.
#: Square input side in pixels. 16 is the smallest every supported architecture still reduces to
#: a 1x1 feature map without error; 1024 is 4.6x the usual 224 and already ~20x its compute.
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 16, 1024
#: Classes of the head (ImageNet has 1000; a home robot needs far fewer).
MAX_CLASSES = 1000
#: Longest class name, in characters (printable, no control characters).
MAX_CLASS_NAME_CHARS = 256
#: Largest checkpoint file accepted; the biggest supported model (resnet18, 1000 classes) is
#: ~45 MB, so 256 MiB leaves room for ``extra`` and still refuses a file meant to exhaust memory.
MAX_FILE_BYTES = 256 * 1024 * 1024
#: Model versions are positive and fit a signed 32-bit integer (SwapWeights.srv, file names).
MAX_VERSION = 2**31 - 1

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
    return atomic_save(path, payload)


def state_problem(state: dict, expected: dict, arch: str) -> str | None:
    """Why ``state`` cannot load into a model whose ``state_dict()`` is ``expected`` (keys,
    shapes, dtypes, finite values), or None: checked before ``load_state_dict`` so a bad file
    gets one clear sentence, not torch's page of mismatches."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        return (f"state_dict keys do not match {arch}: {len(missing)} missing "
                f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            return (f"shape of {key} is {tuple(tensor.shape)}, {arch} needs "
                    f"{tuple(expected[key].shape)}")
        if tensor.dtype != expected[key].dtype:
            return f"dtype of {key} is {tensor.dtype}, {arch} needs {expected[key].dtype}"
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return f"non-finite values (NaN/Inf) in {key}"
    return None


def atomic_save(path: Path, payload: dict) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, rename over ``path``,
    fsync the folder: a reader (perception swapping weights, a restart) sees the old file or
    the whole new one, never half of it, even after a power cut."""
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


def read_payload(path: Path, max_bytes: int, fmt: str,
                 fail: Callable[[Path, str], CheckpointError]) -> dict:
    """The opening every checkpoint loader shares: ``path`` is a file of at most ``max_bytes``,
    ``torch.load(weights_only=True)`` reads it (no pickled code runs), and it is a dict tagged
    ``format: fmt``. Anything else raises ``fail(path, why)``, the caller's own
    CheckpointError (its message names the file and the reason, on one line)."""
    if not path.is_file():
        raise fail(path, "file not found")
    size = path.stat().st_size
    if size > max_bytes:
        raise fail(path, f"file is {size / 2**20:.1f} MiB, more than the limit "
                         f"{max_bytes / 2**20:.0f} MiB")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, random bytes, disallowed pickle: all "corrupt"
        raise fail(path, f"unreadable or corrupt ({_one_line(exc)})") from exc
    if not isinstance(data, dict) or data.get("format") != fmt:
        tag = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise fail(path, f"not an {fmt} checkpoint (format={tag!r})")
    return data


def _check_sizes(path: Path, names: object, version: object, input_size: object) -> None:
    """The limits above, with the offending value and the allowed range in the message."""
    if not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)):
        raise _fail(path, "class_names must be a non-empty list of non-empty strings")
    if len(names) > MAX_CLASSES:
        raise _fail(path, f"{len(names)} classes, more than the limit {MAX_CLASSES}")
    for n in names:
        if len(n) > MAX_CLASS_NAME_CHARS or not n.isprintable():
            raise _fail(path, f"class name {printable(n, 40)} is longer than "
                              f"{MAX_CLASS_NAME_CHARS} characters or not printable")
    if len(set(names)) != len(names):
        raise _fail(path, "class_names contains duplicates")
    if isinstance(version, bool) or not isinstance(version, int) \
            or not 0 <= version <= MAX_VERSION:
        raise _fail(path, f"version {printable(version, 40)} is not an integer in "
                          f"0..{MAX_VERSION}")
    if isinstance(input_size, bool) or not isinstance(input_size, int) \
            or not MIN_INPUT_SIZE <= input_size <= MAX_INPUT_SIZE:
        raise _fail(path, f"input_size {printable(input_size, 40)} is outside "
                          f"{MIN_INPUT_SIZE}..{MAX_INPUT_SIZE} pixels")


def read_extra(path: str | os.PathLike[str], max_bytes: int = MAX_FILE_BYTES) -> dict[str, Any]:
    """The ``extra`` dict a checkpoint was saved with (cache key, accuracies, the home's scene
    signature); {} if none. Raises CheckpointError as :func:`load_checkpoint` does for a file
    that is no checkpoint."""
    extra = read_payload(Path(path), max_bytes, FORMAT, _fail).get("extra")
    return dict(extra) if isinstance(extra, dict) else {}


def load_checkpoint(path: str | os.PathLike[str], expected_arch: str | None = None,
                    expected_classes_prefix: Sequence[str] | None = None,
                    max_bytes: int = MAX_FILE_BYTES) -> ModelBundle:
    """Load and validate a checkpoint written by save_checkpoint; raise CheckpointError if bad.

    Checks, in order, before anything large is allocated: file size <= ``max_bytes``, format,
    architecture, label map (1..MAX_CLASSES printable unique names, returned in the spelling
    corrections use: ``core/class_names.model_class``), version (0..2**31-1),
    input_size (MIN_INPUT_SIZE..MAX_INPUT_SIZE), the head's shape against the label map; then
    finite weights and every tensor's shape and dtype against the architecture.
    ``expected_classes_prefix`` is the label map currently served: a swap may add classes at the
    end but never drop or reorder them (class ids published downstream would change meaning).
    """
    path = Path(path)
    data = read_payload(path, max_bytes, FORMAT, _fail)
    arch = data.get("arch")
    names = data.get("class_names")
    version = data.get("version")
    input_size = data.get("input_size")
    state = data.get("state_dict")
    if arch not in SUPPORTED_ARCHS:
        raise _fail(path, f"unsupported architecture {arch!r}")
    if expected_arch is not None and arch != expected_arch:
        raise _fail(path, f"architecture {arch!r} does not match expected {expected_arch!r}")
    _check_sizes(path, names, version, input_size)
    names = [model_class(n) for n in names]  # the spelling corrections use (core/class_names)
    if len(set(names)) != len(names):
        raise _fail(path, "class_names has duplicates once spelled as corrections spell them "
                          "(lower case, spaces as '_')")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _fail(path, "state_dict missing or not a dict of tensors")
    head_w = state.get(_HEAD_KEY[arch])
    if not isinstance(head_w, torch.Tensor) or head_w.ndim != 2:
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
    why = state_problem(state, model.state_dict(), arch)
    if why:
        raise _fail(path, why)
    model.load_state_dict(state, strict=True)
    model.eval()
    return ModelBundle(model, arch, list(names), version, input_size)


__all__ = ["FORMAT", "MAX_CLASSES", "MAX_CLASS_NAME_CHARS", "MAX_FILE_BYTES", "MAX_INPUT_SIZE",
           "MAX_VERSION", "MIN_INPUT_SIZE", "CheckpointError", "checkpoint_path",
           "load_checkpoint", "read_extra", "read_payload", "save_checkpoint"]
