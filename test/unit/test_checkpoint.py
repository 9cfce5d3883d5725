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


def _rewrite(path: Path, **changes: object) -> Path:
    data = torch.load(path, weights_only=True)
    data.update(changes)
    torch.save(data, path)
    return path


@pytest.mark.parametrize("input_size", [100000, 1025, 15, 0, -3, True, 224.0, "224"])
def test_input_size_outside_the_documented_range(tmp_path: Path, bundle: ModelBundle,
                                                 input_size: object) -> None:
    path = _rewrite(save_checkpoint(tmp_path / "m.pt", bundle), input_size=input_size)
    with pytest.raises(CheckpointError, match=r"input_size .* outside 16\.\.1024 pixels"):
        load_checkpoint(path)


@pytest.mark.parametrize("input_size", [ckpt.MIN_INPUT_SIZE, ckpt.MAX_INPUT_SIZE])
def test_input_size_limits_are_inclusive(tmp_path: Path, bundle: ModelBundle,
                                         input_size: int) -> None:
    bundle.input_size = input_size
    assert load_checkpoint(save_checkpoint(tmp_path / "m.pt", bundle)).input_size == input_size


@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "mobilenet_v3_large", "resnet18",
                                  "efficientnet_b0"])
def test_smallest_input_size_runs_on_every_architecture(arch: str) -> None:
    """MIN_INPUT_SIZE is not arbitrary: every supported model still runs a frame at it."""
    import numpy as np

    b = ModelBundle(build_model(arch, 2), arch, ["a", "b"], 1, ckpt.MIN_INPUT_SIZE)
    b.model.eval()
    ids, _ = b.predict([np.zeros((48, 64, 3), np.uint8)])
    assert ids.shape == (1,)


def test_too_many_classes(tmp_path: Path, bundle: ModelBundle,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint(tmp_path / "m.pt", bundle)
    monkeypatch.setattr(ckpt, "MAX_CLASSES", 2)
    with pytest.raises(CheckpointError, match="3 classes, more than the limit 2"):
        load_checkpoint(path)


@pytest.mark.parametrize("name", ["x" * 257, "cup\nforged", "tab\there"])
def test_class_name_too_long_or_unprintable(tmp_path: Path, bundle: ModelBundle,
                                            name: str) -> None:
    path = _rewrite(save_checkpoint(tmp_path / "m.pt", bundle),
                    class_names=["cup", "mug", name])
    with pytest.raises(CheckpointError, match="not printable") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


@pytest.mark.parametrize("version", [-1, 2**31, 4294967295, True, "7"])
def test_version_outside_int32(tmp_path: Path, bundle: ModelBundle, version: object) -> None:
    path = _rewrite(save_checkpoint(tmp_path / "m.pt", bundle), version=version)
    with pytest.raises(CheckpointError, match="version"):
        load_checkpoint(path)


def test_file_size_limit(tmp_path: Path, bundle: ModelBundle) -> None:
    path = save_checkpoint(tmp_path / "m.pt", bundle)
    with pytest.raises(CheckpointError, match="more than the limit"):
        load_checkpoint(path, max_bytes=1024)
    assert load_checkpoint(path, max_bytes=path.stat().st_size).version == 7


def test_tensor_shape_that_does_not_fit_the_architecture(tmp_path: Path,
                                                         bundle: ModelBundle) -> None:
    path = save_checkpoint(tmp_path / "m.pt", bundle)
    data = torch.load(path, weights_only=True)
    data["state_dict"]["features.0.0.weight"] = torch.zeros(16, 3, 5, 5)
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=r"shape of features\.0\.0\.weight"):
        load_checkpoint(path)


def test_head_wider_than_its_input(tmp_path: Path, bundle: ModelBundle) -> None:
    """A head with the right row count but a wrong input width is refused by shape."""
    path = save_checkpoint(tmp_path / "m.pt", bundle)
    data = torch.load(path, weights_only=True)
    data["state_dict"]["classifier.3.weight"] = torch.zeros(3, 4096)
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=r"shape of classifier\.3\.weight"):
        load_checkpoint(path)


def test_wrong_dtype(tmp_path: Path, bundle: ModelBundle) -> None:
    path = save_checkpoint(tmp_path / "m.pt", bundle)
    data = torch.load(path, weights_only=True)
    data["state_dict"]["classifier.3.bias"] = data["state_dict"]["classifier.3.bias"].double()
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="dtype"):
        load_checkpoint(path)


def test_class_names_come_back_spelled_as_corrections_spell_them(tmp_path: Path,
                                                                bundle: ModelBundle) -> None:
    """A model's "Cell phone" is the "cell_phone" caregivers correct to (it used to be a new
    class beside the model's own); a name with no canonical spelling is kept as it is; two names
    that become one are refused."""
    path = save_checkpoint(tmp_path / "m.pt", bundle)
    data = torch.load(path, weights_only=True)
    data["class_names"] = ["Cup", " Cell  phone ", "a/b"]
    torch.save(data, path)
    assert load_checkpoint(path).class_names == ["cup", "cell_phone", "a/b"]
    data["class_names"] = ["Cup", "cup", "plate"]
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="duplicates once spelled"):
        load_checkpoint(path)
