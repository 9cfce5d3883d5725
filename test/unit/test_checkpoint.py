"""Checkpoints: round trip, atomic save, and every refusal case of load_checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from etuner_ros.core import checkpoint as ckpt
from etuner_ros.core.checkpoint import (
    CheckpointError,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)
from etuner_ros.core.model import ModelBundle, build_model, head

torch.set_num_threads(1)
ARCH = "mobilenet_v3_small"


@pytest.fixture()
def bundle() -> ModelBundle:
    torch.manual_seed(0)
    return ModelBundle(build_model(ARCH, 3), ARCH, ["cup", "mug", "plate"], 7, 32)


def _tensors_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_path_convention(tmp_path: Path) -> None:
    assert checkpoint_path(tmp_path, ARCH, 12) == tmp_path / "mobilenet_v3_small_v0012.pt"


def test_round_trip(tmp_path: Path, bundle: ModelBundle) -> None:
    path = save_checkpoint(checkpoint_path(tmp_path / "models", ARCH, 7), bundle,
                           extra={"trained_on": 42, "policy": "etuner"})
    assert path.is_file()
    loaded = load_checkpoint(path, expected_arch=ARCH, expected_classes_prefix=["cup", "mug"])
    assert (loaded.arch, loaded.class_names, loaded.version, loaded.input_size) == \
        (ARCH, ["cup", "mug", "plate"], 7, 32)
    assert _tensors_equal(loaded.model, bundle.model)
    assert not loaded.model.training
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "etuner_ros/1" and raw["extra"] == {"trained_on": 42,
                                                                 "policy": "etuner"}
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temp files left"


def test_failed_save_keeps_old_file(tmp_path: Path, bundle: ModelBundle,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint(tmp_path / "m.pt", bundle)
    old_bytes = path.read_bytes()

    def broken_save(obj: object, f) -> None:  # writes half a file, then dies
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", broken_save)
    bundle.version = 8
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, bundle)
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["m.pt"]
    monkeypatch.undo()
    assert load_checkpoint(path).version == 7


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(tmp_path: Path, bundle: ModelBundle) -> None:
    path = save_checkpoint(tmp_path / "m.pt", bundle)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_garbage_bytes(tmp_path: Path) -> None:
    path = tmp_path / "g.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize("payload", [[1, 2, 3], {"format": "other/9"}, {"arch": ARCH}])
def test_not_our_format(tmp_path: Path, payload: object) -> None:
    path = tmp_path / "x.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(path)


def test_pickled_object_refused(tmp_path: Path, bundle: ModelBundle) -> None:
    path = tmp_path / "pickle.pt"
    torch.save({"format": "etuner_ros/1", "model": bundle.model}, path)  # arbitrary code path
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


def test_nan_weights(tmp_path: Path, bundle: ModelBundle) -> None:
    with torch.no_grad():
        head(bundle.model, ARCH).weight[0, 0] = float("nan")
    path = save_checkpoint(tmp_path / "nan.pt", bundle)
    with pytest.raises(CheckpointError, match="non-finite"):
        load_checkpoint(path)


def test_inf_in_buffer(tmp_path: Path, bundle: ModelBundle) -> None:
    bundle.model.features[0][1].running_var[0] = float("inf")
    with pytest.raises(CheckpointError, match="non-finite"):
        load_checkpoint(save_checkpoint(tmp_path / "inf.pt", bundle))


def test_wrong_arch(tmp_path: Path, bundle: ModelBundle) -> None:
    path = save_checkpoint(tmp_path / "m.pt", bundle)
    with pytest.raises(CheckpointError, match="resnet18"):
        load_checkpoint(path, expected_arch="resnet18")


def test_label_map_vs_head(tmp_path: Path, bundle: ModelBundle) -> None:
    path = save_checkpoint(tmp_path / "m.pt", bundle)
    data = torch.load(path, weights_only=True)
    data["class_names"] = ["cup", "mug"]
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="2 classes but the head has 3"):
        load_checkpoint(path)


def test_reordered_label_map(tmp_path: Path, bundle: ModelBundle) -> None:
    path = save_checkpoint(tmp_path / "m.pt", bundle)
    with pytest.raises(CheckpointError, match="reordered"):
        load_checkpoint(path, expected_classes_prefix=["mug", "cup"])
    with pytest.raises(CheckpointError, match="reordered"):
        load_checkpoint(path, expected_classes_prefix=["cup", "mug", "plate", "fork"])


def test_state_dict_keys_mismatch(tmp_path: Path, bundle: ModelBundle) -> None:
    path = save_checkpoint(tmp_path / "m.pt", bundle)
    data = torch.load(path, weights_only=True)
    data["state_dict"].pop("features.0.0.weight")
    data["state_dict"]["bogus.weight"] = torch.zeros(1)
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="keys do not match"):
        load_checkpoint(path)


def test_resnet_weights_under_mobilenet_tag(tmp_path: Path, bundle: ModelBundle) -> None:
    path = save_checkpoint(tmp_path / "m.pt", bundle)
    data = torch.load(path, weights_only=True)
    data["arch"] = "efficientnet_b0"
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="efficientnet_b0"):
        load_checkpoint(path)
