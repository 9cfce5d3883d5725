"""Home recall: the starting model answers while the camera is back in its own scene, and the
caregiver's labels can veto it."""

from __future__ import annotations

import numpy as np
import pytest

from etuner_ros.core.home_recall import HomeConfig, HomeRecall, HomeSignature, scene_features


def room(rng: np.random.Generator, light: float, noise: float = 3.0) -> np.ndarray:
    """A frame of a room under ``light``: a grey wall, an object in the middle, sensor noise."""
    img = np.full((96, 128, 3), 120.0 * light)
    img[24:72, 40:88] = rng.uniform(0, 255, 3)  # the object: any colour
    img += rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def home() -> HomeSignature:
    rng = np.random.default_rng(0)
    return HomeSignature.from_images([room(rng, 1.0) for _ in range(64)])


def test_features_read_the_border_and_the_grain_not_the_object():
    rng = np.random.default_rng(1)
    a, b = room(rng, 1.0), room(rng, 1.0)
    fa, fb = scene_features(a), scene_features(b)
    assert fa.shape == (9,)
    assert np.allclose(fa[:6], fb[:6], atol=2.0)  # another object, same room: same border
    dim = scene_features(room(rng, 0.4))
    assert np.all(dim[:3] < fa[:3] - 30)          # the light shows in the border's mean
    noisy = scene_features(room(rng, 1.0, noise=20.0))
    assert np.all(noisy[6:] > fa[6:] * 2)          # noise shows in the gradient
    grey = scene_features(a[..., 0])               # one channel: repeated, still nine numbers
    assert grey.shape == (9,)


def test_the_home_answers_at_home_and_not_elsewhere(home):
    rng = np.random.default_rng(2)
    recall = HomeRecall(home, HomeConfig(window=4))
    assert not recall.observe([room(rng, 1.0) for _ in range(3)], 0.0)  # window not full
    assert recall.observe([room(rng, 1.0)], 0.5)
    assert not recall.observe([room(rng, 0.4) for _ in range(4)], 1.0)  # dim: another scene
    assert recall.observe([room(rng, 1.0) for _ in range(4)], 2.0)      # back home
    assert recall.answered == 5


def test_labels_that_show_the_home_model_wrong_veto_it_until_the_camera_left(home):
    rng = np.random.default_rng(3)
    cfg = HomeConfig(window=4, veto_window=4, veto_min=3, veto_accuracy=0.5, veto_hold_s=5.0)
    recall = HomeRecall(home, cfg)
    assert recall.observe([room(rng, 1.0) for _ in range(4)], 0.0)
    turn = recall.episode
    recall.label(True, turn)
    recall.label(False, turn)
    assert recall.observe([room(rng, 1.0)], 1.0)   # 1 of 2 right: too few labels to judge
    recall.label(False, turn)                      # 1 of 3 right: vetoed
    assert recall.vetoes == 1
    assert not recall.observe([room(rng, 1.0)], 2.0)
    assert not recall.observe([room(rng, 1.0) for _ in range(4)], 30.0)  # never left: held
    assert not recall.observe([room(rng, 0.4) for _ in range(4)], 31.0)  # left: lapsed
    assert recall.observe([room(rng, 1.0) for _ in range(4)], 32.0)
    assert recall.episode == turn + 1
    recall.label(False, turn)                      # a late label of the old turn: stale
    recall.label(False, turn)
    recall.label(False, turn)
    assert recall.vetoes == 1


def test_a_label_free_policy_is_never_vetoed(home):
    rng = np.random.default_rng(4)
    recall = HomeRecall(home, HomeConfig(window=2, veto_min=0))
    assert recall.observe([room(rng, 1.0) for _ in range(2)], 0.0)
    for _ in range(10):
        recall.label(False, recall.episode)
    assert recall.observe([room(rng, 1.0)], 1.0) and recall.vetoes == 0


def test_disabled_and_bad_settings():
    rng = np.random.default_rng(5)
    sig = HomeSignature.from_images([room(rng, 1.0) for _ in range(4)])
    assert not HomeRecall(sig, HomeConfig(enabled=False, window=1)).observe([room(rng, 1.0)], 0)
    with pytest.raises(ValueError):
        HomeSignature.from_images([room(rng, 1.0)])
    for bad in ({"window": 0}, {"threshold": 0.0}, {"veto_min": 9}, {"veto_accuracy": 1.5},
                {"veto_hold_s": -1.0}):
        with pytest.raises(ValueError):
            HomeConfig(**bad)


def test_a_signature_survives_a_checkpoint_and_junk_is_refused(home):
    back = HomeSignature.from_dict(home.to_dict())
    assert np.allclose(back.mean, home.mean) and np.allclose(back.spread, home.spread)
    good = home.to_dict()
    for bad in (None, [], {**good, "features": "other"}, {**good, "mean": [1.0] * 8},
                {**good, "spread": [0.0] * 9}, {**good, "mean": ["x"] * 9},
                {**good, "mean": [float("nan")] * 9}):
        with pytest.raises(ValueError):
            HomeSignature.from_dict(bad)


def test_a_veto_lapses_when_the_camera_moves_on_to_another_home_like_scene():
    """The vetoed scene and the next one both look like home; the veto belongs to the first."""
    rng = np.random.default_rng(6)
    sig = HomeSignature.from_images([room(rng, light) for light in np.linspace(0.8, 1.2, 64)])
    recall = HomeRecall(sig, HomeConfig(window=2, veto_window=4, veto_min=2, veto_hold_s=60.0))
    bright = [room(rng, 1.25) for _ in range(2)]
    assert recall.observe(bright, 0.0)            # home-like: the starting model answers
    recall.label(False, recall.episode)
    recall.label(False, recall.episode)
    assert recall.vetoes == 1 and not recall.observe([room(rng, 1.25)], 1.0)
    assert recall.observe([room(rng, 0.75) for _ in range(2)], 2.0)  # another scene: lapsed
