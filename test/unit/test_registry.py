"""Model registry: unique versions across runs, atomic pointer, retention, start-up choice, and a
writer killed with SIGKILL at random points never leaves a partial checkpoint that could serve."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from etuner_ros.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from etuner_ros.core.model import ModelBundle, build_model
from etuner_ros.core.registry import (
    MAX_VERSION,
    ModelRegistry,
    RegistryError,
    load_start_model,
)

ARCH = "mobilenet_v3_small"


def bundle(version: int, classes=("a", "b")) -> ModelBundle:
    torch.manual_seed(version)
    return ModelBundle(build_model(ARCH, len(classes)), ARCH, list(classes), version, 32)


@pytest.fixture
def base(tmp_path) -> Path:
    return save_checkpoint(tmp_path / "base.pt", bundle(1))


def test_versions_are_unique_across_restarts_and_after_retention(tmp_path, base):
    reg = ModelRegistry(tmp_path / "models", keep_last=2)
    seen = []
    for _ in range(4):
        b = bundle(reg.next_version(floor=1))
        path = reg.save(b)
        reg.activate(b.version, path, base=(1, str(base)))
        reg.prune()
        seen.append(b.version)
    assert seen == [2, 3, 4, 5]
    assert sorted(reg.versions()) == [4, 5]  # keep_last=2; base lives outside models/
    again = ModelRegistry(tmp_path / "models", keep_last=2)  # a restart
    assert again.next_version(floor=1) == 6
    # even with every file gone, the pointer remembers the versions already used
    for p in again.versions().values():
        p.unlink()
    assert ModelRegistry(tmp_path / "models").next_version() == 6


def test_a_file_name_is_never_written_twice(tmp_path):
    reg = ModelRegistry(tmp_path)
    reg.save(bundle(7))
    with pytest.raises(RegistryError, match="never rewritten"):
        reg.save(bundle(7))


def test_version_space_ends_at_int32_max(tmp_path):
    reg = ModelRegistry(tmp_path)
    reg.save(bundle(MAX_VERSION))
    with pytest.raises(RegistryError, match="exhausted"):
        reg.next_version()
    with pytest.raises(RegistryError):
        reg.save(bundle(MAX_VERSION + 1))


def test_retention_keeps_last_n_base_and_active(tmp_path):
    reg = ModelRegistry(tmp_path, keep_last=2)
    paths = {v: reg.save(bundle(v)) for v in range(1, 8)}
    reg.activate(3, paths[3], base=(1, str(paths[1])))
    assert sorted(reg.prune()) == [2, 4, 5]
    assert sorted(reg.versions()) == [1, 3, 6, 7]


def test_stray_tmp_files_are_removed_when_the_registry_opens(tmp_path):
    (tmp_path / ".mobilenet_v3_small_v0009.pt.abc.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / ".active.json.x.tmp").write_text("{")
    reg = ModelRegistry(tmp_path)
    assert len(reg.removed_tmp) == 2 and not list(tmp_path.glob("*.tmp"))


def test_rollback_target_is_previous_kept_or_the_one_asked(tmp_path, base):
    reg = ModelRegistry(tmp_path, keep_last=5)
    paths = {v: reg.save(bundle(v)) for v in (2, 3, 5)}
    reg.activate(5, paths[5], base=(1, str(base)))
    assert reg.rollback_target(0, 5) == (3, paths[3])
    assert reg.rollback_target(0, 2)[0] == 1  # the base is kept too
    assert reg.rollback_target(2, 5) == (2, paths[2])
    with pytest.raises(RegistryError, match="not kept"):
        reg.rollback_target(4, 5)
    with pytest.raises(RegistryError, match="no kept version below"):
        reg.rollback_target(0, 1)


def test_start_model_pointer_wins_when_valid_else_base_with_warning(tmp_path, base):
    reg = ModelRegistry(tmp_path / "models")
    warnings: list[str] = []
    b, path = load_start_model(reg.dir, str(base), ARCH, warnings.append)
    assert (b.version, path, warnings) == (1, str(base), [])
    p = reg.save(bundle(4))
    reg.activate(4, p, base=(1, str(base)))
    b, path = load_start_model(reg.dir, str(base), ARCH, warnings.append)
    assert b.version == 4 and Path(path) == p.resolve() and not warnings
    # the pointed file changed on disk (torn, replaced): the hash refuses it, the base serves
    p.write_bytes(p.read_bytes()[:1000])
    b, path = load_start_model(reg.dir, str(base), ARCH, warnings.append)
    assert b.version == 1 and path == str(base)
    assert "not usable" in warnings[-1]
    # a damaged pointer: the base serves, with a warning
    for bad in ("{not json", '{"version": 3, "base": {}}', "[]", '{"base": 1}'):
        reg.pointer_path.write_text(bad)
        b, _ = load_start_model(reg.dir, str(base), ARCH, warnings.append)
        assert b.version == 1 and "damaged" in warnings[-1]
        with pytest.raises(ValueError):
            reg.read_pointer()


def test_tuner_state_round_trips_and_survives_damage(tmp_path):
    reg = ModelRegistry(tmp_path)
    assert reg.read_tuner_state() == {"trained_through": 0, "unlabelled_through": 0,
                                      "store_id": None}
    reg.write_tuner_state(41, 7)
    assert ModelRegistry(tmp_path).read_tuner_state() == {"trained_through": 41,
                                                          "unlabelled_through": 7,
                                                          "store_id": None}
    reg.write_tuner_state(42, 8, store_id=99)
    assert reg.read_tuner_state() == {"trained_through": 42, "unlabelled_through": 8,
                                      "store_id": 99}
    (tmp_path / "tuner_state.json").write_text("[1, 2")
    assert reg.read_tuner_state()["trained_through"] == 0


_WRITER = textwrap.dedent("""
    import sys, torch
    from etuner_ros.core.model import ModelBundle, build_model
    from etuner_ros.core.registry import ModelRegistry
    reg = ModelRegistry(sys.argv[1], keep_last=3)
    base = sys.argv[2]
    torch.manual_seed(0)
    b = ModelBundle(build_model("mobilenet_v3_small", 2), "mobilenet_v3_small", ["a", "b"], 0, 32)
    print("ready", flush=True)
    while True:
        b.version = reg.next_version(floor=1)
        path = reg.save(b)
        reg.activate(b.version, path, base=(1, base))
        reg.prune()
""")


def test_sigkill_at_random_points_of_a_write_loop_keeps_the_invariant(tmp_path, base):
    """A real process writes checkpoints and moves the pointer in a loop; we SIGKILL it at
    random moments (inside torch.save, fsync, rename, pointer write, retention) and check after
    each kill: the pointer is readable and names a file that loads and matches its hash, every
    final-named checkpoint loads, and a restart removes the temp files and never reuses a
    version."""
    import random

    rng = random.Random(0)
    models = tmp_path / "models"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    used: set[int] = set()
    kills_mid_write = 0
    for _ in range(6):
        before = ModelRegistry(models, clean=False).next_version(floor=1) if models.exists() \
            else 2
        proc = subprocess.Popen([sys.executable, str(script), str(models), str(base)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 1.5))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        kills_mid_write += bool(list(models.glob("*.tmp")))
        reg = ModelRegistry(models, keep_last=3)  # what the restarted tuner does first
        assert not list(models.glob("*.tmp"))
        for v, p in reg.versions().items():
            assert load_checkpoint(p).version == v, f"{p.name} is partial"
        ptr = reg.read_pointer()
        if ptr is not None:
            b, path = load_start_model(models, str(base), ARCH, pytest.fail)
            assert b.version == ptr.version and path == ptr.path
        new = set(reg.versions()) - used
        assert all(v >= before for v in new), "a version number was reused"
        used |= set(reg.versions())
    print(f"{kills_mid_write}/6 kills left a temp file behind")


def test_load_checkpoint_refuses_a_truncated_file(tmp_path):
    p = save_checkpoint(tmp_path / "x.pt", bundle(2))
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(p)


def test_a_refused_candidate_is_set_aside_never_a_target_and_its_version_never_reused(tmp_path):
    """A candidate perception refused moves to ``failed/``: kept for inspection, out of the
    rollback targets (it used to stay one), its number still counted; retention bounds it."""
    reg = ModelRegistry(tmp_path, keep_last=2)
    paths = {v: reg.save(bundle(v)) for v in (1, 2, 3)}
    reg.activate(2, paths[2], base=(1, str(paths[1])))
    moved = reg.set_aside(3)
    assert moved == tmp_path / "failed" / paths[3].name and moved.is_file()
    assert not paths[3].exists() and 3 not in reg.kept()
    with pytest.raises(RegistryError, match="not kept"):
        reg.rollback_target(3, 2)
    assert ModelRegistry(tmp_path, keep_last=2).next_version() == 4  # a restart too
    assert reg.set_aside(3) is None  # already gone: nothing to move
    for v in (4, 5, 6):
        reg.save(bundle(v))
        reg.set_aside(v)
    assert reg.prune() == [3, 4]  # the newest keep_last set aside stay
    assert list(reg.set_aside_versions()) == [5, 6] and list(reg.kept()) == [1, 2]
    assert ModelRegistry(tmp_path).next_version() == 7
