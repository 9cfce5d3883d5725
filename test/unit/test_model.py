"""Model building, head growth, layer groups, split forward, preprocessing and ModelBundle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from etuner_ros.core.model import (
    SUPPORTED_ARCHS,
    ModelBundle,
    build_model,
    embed,
    grow_head,
    head,
    layer_groups,
    preprocess,
    split_forward,
)

torch.set_num_threads(1)
SIZE = 32


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {arch: build_model(arch, 3).eval() for arch in SUPPORTED_ARCHS}


def test_unknown_arch_lists_supported() -> None:
    with pytest.raises(ValueError, match=r"mobilenet_v3_small.*resnet18"):
        build_model("vgg16", 3)


@pytest.mark.parametrize("arch", SUPPORTED_ARCHS)
def test_groups_cover_every_parameter_exactly_once(arch: str, models: dict) -> None:
    model = models[arch]
    groups = layer_groups(model, arch)
    seen: dict[int, str] = {}
    for name, group in groups:
        for p in group.parameters():
            assert id(p) not in seen, f"parameter in both {seen[id(p)]} and {name}"
            seen[id(p)] = name
    all_params = {id(p) for p in model.parameters()}
    assert set(seen) == all_params
    assert len(groups) >= 5
    last_params = {id(p) for p in groups[-1][1].parameters()}
    assert id(head(model, arch).weight) in last_params
    assert len({name for name, _ in groups}) == len(groups)


def test_mobilenet_small_grouping(models: dict) -> None:
    names = [n for n, _ in layer_groups(models["mobilenet_v3_small"], "mobilenet_v3_small")]
    assert names[0] == "stem" and names[-2:] == ["final_conv", "classifier"]
    assert 5 <= len([n for n in names if n.startswith("stage")]) <= 6


@pytest.mark.parametrize("arch", SUPPORTED_ARCHS)
def test_split_forward_equals_model(arch: str, models: dict) -> None:
    model = models[arch]
    x = torch.randn(2, 3, SIZE, SIZE)
    n = len(layer_groups(model, arch))
    with torch.no_grad():
        ref = model(x)
        for k in (0, 1, n // 2, n - 1, n):
            front, back = split_forward(model, arch, k)
            cached = front(x)
            torch.testing.assert_close(back(cached), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        split_forward(model, arch, n + 1)


def test_split_shares_parameters(models: dict) -> None:
    model = models["mobilenet_v3_small"]
    front, back = split_forward(model, "mobilenet_v3_small", 3)
    model_ids = {id(p) for p in model.parameters()}
    assert {id(p) for p in front.parameters()} <= model_ids
    assert {id(p) for p in back.parameters()} | {id(p) for p in front.parameters()} == model_ids


@pytest.mark.parametrize("arch", SUPPORTED_ARCHS)
def test_grow_head_keeps_old_logits(arch: str) -> None:
    torch.manual_seed(1)
    model = build_model(arch, 3).eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        before = model(x)
        layer = head(model, arch)
        grow_head(model, arch, 5)
        after = model(x)
    assert head(model, arch) is layer and layer.out_features == 5
    assert after.shape == (2, 5)
    torch.testing.assert_close(after[:, :3], before)
    assert layer.weight[3:].abs().max() < 0.1
    with pytest.raises(ValueError, match="shrink"):
        grow_head(model, arch, 4)


def test_grow_head_updates_existing_split(models: dict) -> None:
    model = build_model("resnet18", 2).eval()
    _, back = split_forward(model, "resnet18", 5)
    grow_head(model, "resnet18", 4)
    with torch.no_grad():
        assert back(torch.randn(1, 512, 1, 1)).shape == (1, 4)


@pytest.mark.parametrize("arch", SUPPORTED_ARCHS)
def test_embed_is_head_input(arch: str, models: dict) -> None:
    model = models[arch]
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        feats = embed(model, arch, x)
        lin = head(model, arch)
        assert feats.shape == (2, lin.in_features)
        torch.testing.assert_close(lin(feats), model(x), rtol=1e-5, atol=1e-5)


def test_preprocess_shapes_and_normalisation() -> None:
    img = np.full((40, 60, 3), 255, dtype=np.uint8)
    img[..., 1] = 0
    one = preprocess(img, 16)
    assert one.shape == (1, 3, 16, 16) and one.dtype == torch.float32
    np.testing.assert_allclose(one[0, 0].numpy(), (1 - 0.485) / 0.229, rtol=1e-5)
    np.testing.assert_allclose(one[0, 1].numpy(), (0 - 0.456) / 0.224, rtol=1e-5)
    assert preprocess([img, img], 16).shape == (2, 3, 16, 16)
    assert preprocess(np.stack([img] * 3), 16).shape == (3, 3, 16, 16)
    with pytest.raises(ValueError):
        preprocess(img.astype(np.float32), 16)
    with pytest.raises(ValueError):
        preprocess(np.zeros((8, 8), dtype=np.uint8), 16)


def test_bundle_predict_clone_and_ensure_classes() -> None:
    torch.manual_seed(2)
    bundle = ModelBundle(build_model("mobilenet_v3_small", 2), "mobilenet_v3_small",
                         ["cup", "mug"], version=3, input_size=SIZE)
    bundle.model.train()
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(3)]
    ids, scores = bundle.predict(imgs)
    assert bundle.model.training, "predict must restore the caller's mode"
    assert ids.shape == (3,) and ids.dtype == np.int64 and set(ids) <= {0, 1}
    assert scores.dtype == np.float32 and np.all((scores >= 0.5) & (scores <= 1.0))
    assert bundle.predict([])[0].shape == (0,)

    twin = bundle.clone()
    assert twin.model is not bundle.model and twin.class_names == bundle.class_names
    with torch.no_grad():
        head(twin.model, twin.arch).weight.add_(1.0)
    assert not torch.equal(head(twin.model, twin.arch).weight,
                           head(bundle.model, bundle.arch).weight)

    bundle.model.eval()
    x = preprocess(imgs, SIZE)
    with torch.no_grad():
        before = bundle.model(x)
    assert bundle.ensure_classes(["mug", "plate", "plate", "fork"]) == ["plate", "fork"]
    assert bundle.class_names == ["cup", "mug", "plate", "fork"] and bundle.num_classes == 4
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(x)[:, :2], before)
    assert bundle.ensure_classes(["cup"]) == []
    with pytest.raises(ValueError):
        ModelBundle(build_model("resnet18", 2), "resnet18", ["a"], 0, SIZE)
