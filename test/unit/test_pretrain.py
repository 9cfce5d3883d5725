"""Starting-model pretraining: a tiny run into tmp_path, the cache, the CLI."""

from __future__ import annotations

import pytest
import torch

from etuner_ros.core.checkpoint import load_checkpoint
from etuner_ros.core.numerics import numerics_tag
from etuner_ros.sim import pretrain as pt
from etuner_ros.sim.world import BASE_CLASSES, SyntheticWorld

TINY = {"frames": 16, "epochs": 1, "input_size": 32, "progress": False}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    return data_dir, pt.pretrain(data_dir, seed=3, **TINY)


def test_pretrain_writes_version_1_of_the_first_scenario_classes(trained):
    data_dir, path = trained
    assert path == data_dir / "models" / "base_mobilenet_v3_small_s3_i32.pt"
    bundle = load_checkpoint(path, expected_arch="mobilenet_v3_small")
    assert bundle.version == 1 and bundle.input_size == 32
    assert bundle.class_names == list(BASE_CLASSES)
    assert not bundle.model.training
    extra = pt.read_extra(path)
    assert extra["cache_key"]["seed"] == 3 and extra["cache_key"]["world_version"] >= 1
    # the kernels that trained it: an AVX-512 process trains another model from one seed
    assert extra["cache_key"]["numerics"] == numerics_tag()
    assert 0.0 <= extra["train_acc"] <= 1.0 and 0.0 <= extra["val_acc"] <= 1.0


def test_second_call_hits_the_cache(trained, monkeypatch):
    data_dir, path = trained
    mtime = path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although the cache fits")

    monkeypatch.setattr(pt, "train_base_model", no_training)
    assert pt.pretrain(data_dir, seed=3, **TINY) == path
    assert path.stat().st_mtime_ns == mtime


def test_other_settings_corrupt_file_or_force_retrain(tmp_path):
    path = pt.pretrain(tmp_path, seed=0, **TINY)
    before = pt.read_extra(path)["cache_key"]
    assert pt.pretrain(tmp_path, seed=0, **{**TINY, "frames": 12}) == path
    assert pt.read_extra(path)["cache_key"]["frames"] == 12 != before["frames"]
    path.write_bytes(b"not a checkpoint")
    assert pt.pretrain(tmp_path, seed=0, **{**TINY, "frames": 12}) == path
    load_checkpoint(path)
    mtime = path.stat().st_mtime_ns
    pt.pretrain(tmp_path, seed=0, force=True, **{**TINY, "frames": 12})
    assert path.stat().st_mtime_ns != mtime


def test_training_is_seeded_and_leaves_the_global_rng_alone():
    world = SyntheticWorld(0)
    frames = world.frames("day_kitchen", 12, split="train")
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a, _ = pt.train_base_model(frames, BASE_CLASSES, seed=1, epochs=1, input_size=32,
                               progress=False)
    assert torch.equal(torch.rand(1), expected)
    b, _ = pt.train_base_model(frames, BASE_CLASSES, seed=1, epochs=1, input_size=32,
                               progress=False)
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values(),
                           strict=True):
        assert torch.equal(va, vb), k


def test_training_runs_on_one_thread_whatever_the_caller_uses(monkeypatch):
    """The starting model is cached by its key, and whichever process trains it first (the demo
    on every core, the benchmark on one) must make the same weights: with two threads the same
    seed gave weights up to 6.5 apart. Training runs on one thread; the caller's count is
    restored."""
    seen: list[int] = []
    fit = pt._fit

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return fit(*args, **kwargs)

    monkeypatch.setattr(pt, "_fit", spy)
    frames = SyntheticWorld(0).frames("day_kitchen", 8, split="train")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        pt.train_base_model(frames, BASE_CLASSES, seed=1, epochs=1, input_size=32,
                            progress=False)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_train_base_model_rejects_bad_input():
    frames = SyntheticWorld(0).frames("day_kitchen", 4)
    with pytest.raises(ValueError, match="unknown labels"):
        pt.train_base_model(frames, ["cup"], progress=False)
    with pytest.raises(ValueError, match="epochs"):
        pt.train_base_model(frames, BASE_CLASSES, epochs=0, progress=False)


def test_cli(trained, capsys):
    data_dir, _ = trained
    rc = pt.main(["--data-dir", str(data_dir), "--seed", "3", "--frames", "16", "--epochs", "1",
                  "--input-size", "32"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "cached" in out and "val accuracy" in out
