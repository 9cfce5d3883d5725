"""The synthetic world: determinism, the schedule the benchmark relies on, runs, frame format."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from etuner_ros.sim.world import (
    BASE_CLASSES,
    NEW_CLASSES,
    Frame,
    Scenario,
    SyntheticWorld,
    default_scenarios,
)


def _frames(seed: int, n: int = 2) -> list[Frame]:
    return list(SyntheticWorld(seed).stream(n))


def test_same_seed_gives_byte_identical_frames():
    a, b = _frames(7), _frames(7)
    assert [(f.index, f.label, f.scenario) for f in a] == [(f.index, f.label, f.scenario)
                                                           for f in b]
    assert all(x.image.tobytes() == y.image.tobytes() for x, y in zip(a, b, strict=True))


def test_other_seed_gives_other_frames():
    a, b = _frames(1), _frames(2)
    assert any(x.image.tobytes() != y.image.tobytes() for x, y in zip(a, b, strict=True))


def test_a_frame_does_not_depend_on_what_was_rendered_before():
    world = SyntheticWorld(3)
    streamed = [f for f in world.stream(3) if f.scenario == world.scenarios[2].name]
    direct = SyntheticWorld(3).frames(world.scenarios[2].name, 3, start_index=6)
    assert [f.index for f in streamed] == [6, 7, 8] == [f.index for f in direct]
    assert all(x.image.tobytes() == y.image.tobytes() for x, y in zip(streamed, direct,
                                                                     strict=True))


def test_frame_format_and_order():
    world = SyntheticWorld(0, image_size=(128, 96))
    frames = list(world.stream(3))
    assert len(frames) == 3 * len(world.scenarios)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert [f.scenario for f in frames[::3]] == [s.name for s in world.scenarios]
    for f in frames:
        assert f.image.shape == (96, 128, 3) and f.image.dtype == np.uint8
        assert f.label in world.scenario(f.scenario).classes
    assert SyntheticWorld(0, image_size=(64, 48)).frames("day_kitchen", 1)[0].image.shape == (
        48, 64, 3)


def test_training_split_is_iid_and_balanced():
    frames = SyntheticWorld(0).frames("day_kitchen", 4 * len(BASE_CLASSES), split="train")
    assert Counter(f.label for f in frames) == dict.fromkeys(BASE_CLASSES, 4)
    labels = [f.label for f in frames]
    assert labels != sorted(labels)  # shuffled, not class-sorted


def _runs(frames: list[Frame]) -> list[list[Frame]]:
    out: list[list[Frame]] = []
    for f in frames:
        if out and out[-1][-1].label == f.label:
            out[-1].append(f)
        else:
            out.append([f])
    return out


def test_the_stream_shows_each_object_for_a_run_of_similar_frames():
    """A robot's camera: 8-32 frames of one object (1-4 s at 8 fps), consecutive frames of a
    run far more alike than frames of different runs; classes balanced over runs."""
    world = SyntheticWorld(0)
    frames = world.frames("day_kitchen", 400)
    runs = _runs(frames)
    # (two runs of one class can meet at a shuffled round's border: allow a double length)
    assert all(8 <= len(r) <= 64 for r in runs[:-1])
    assert 400 / 32 <= len(runs) <= 400 / 8
    counts = Counter(r[0].label for r in runs)
    assert set(counts) == set(BASE_CLASSES) and max(counts.values()) - min(counts.values()) <= 3

    def diff(a: Frame, b: Frame) -> float:
        return float(np.abs(a.image.astype(int) - b.image.astype(int)).mean())

    within = np.mean([diff(r[i], r[i + 1]) for r in runs for i in range(len(r) - 1)])
    across = np.mean([diff(a[-1], b[0]) for a, b in itertools.pairwise(runs)])
    assert within < 0.4 * across, (within, across)
    # the pose does drift: a run's last frame is not its first
    assert all(diff(r[0], r[-1]) > diff(r[0], r[1]) * 0.5 for r in runs if len(r) > 4)


def test_run_length_option():
    world = SyntheticWorld(0, run_frames=(1, 1))
    frames = world.frames("day_kitchen", 4 * len(BASE_CLASSES))
    assert Counter(f.label for f in frames) == dict.fromkeys(BASE_CLASSES, 4)
    with pytest.raises(ValueError, match="run_frames"):
        SyntheticWorld(0, run_frames=(4, 2))


def test_train_split_is_independent_of_the_stream():
    world = SyntheticWorld(0)
    a = world.frames("day_kitchen", 4)
    b = world.frames("day_kitchen", 4, split="train")
    assert all(x.image.tobytes() != y.image.tobytes() for x, y in zip(a, b, strict=True))


def test_default_schedule_covers_the_shifts_the_benchmark_needs():
    sc = default_scenarios()
    first = sc[0]
    assert 6 <= len(sc) <= 8
    assert (first.name, first.room, first.lighting) == ("day_kitchen", "kitchen", "day")
    later = sc[1:]
    assert {"dim", "night_grey"} <= {s.lighting for s in later}
    assert any(s.room != first.room for s in later)
    assert any(s.noise_sigma >= 4 * first.noise_sigma and s.blur_sigma > 0 for s in later)
    assert any(set(s.classes) - set(first.classes) for s in later)
    settings = [(s.room, s.lighting, s.noise_sigma, s.blur_sigma, s.classes) for s in sc]
    assert any(settings[i] in settings[:i] for i in range(2, len(sc)))  # an earlier one returns


def test_class_names():
    world = SyntheticWorld(0)
    assert world.class_names_seen_in("day_kitchen") == list(BASE_CLASSES)
    assert world.all_class_names() == list(BASE_CLASSES + NEW_CLASSES)
    assert world.class_names_seen_in(world.scenarios[4])[-2:] == list(NEW_CLASSES)
    with pytest.raises(KeyError, match="nowhere"):
        world.class_names_seen_in("nowhere")


def test_night_grey_is_greyscale_and_dim_is_darker():
    world = SyntheticWorld(0)
    night = world.frames("night_living_room", 3)
    assert all((f.image[..., 0] == f.image[..., 1]).all() and
               (f.image[..., 1] == f.image[..., 2]).all() for f in night)
    day = np.mean([f.image.mean() for f in world.frames("day_kitchen", 5)])
    dim = np.mean([f.image.mean() for f in world.frames("dim_kitchen", 5)])
    assert dim < 0.6 * day


def test_the_object_is_visible():
    """Same pose seed, two classes: the frames must differ well beyond noise."""
    world = SyntheticWorld(0)
    sc = Scenario("t", noise_sigma=0.0, occlusion=0.0)
    a = world.render(sc, "cup", np.random.default_rng(5)).astype(int)
    b = world.render(sc, "remote", np.random.default_rng(5)).astype(int)
    assert (np.abs(a - b).sum(axis=2) > 60).mean() > 0.03


def test_scenario_and_world_validation():
    with pytest.raises(ValueError, match="room"):
        Scenario("x", room="garage")
    with pytest.raises(ValueError, match="lighting"):
        Scenario("x", lighting="disco")
    with pytest.raises(ValueError, match="unknown"):
        Scenario("x", classes=("cup", "dragon"))
    with pytest.raises(ValueError, match="negative"):
        Scenario("x", noise_sigma=-1)
    with pytest.raises(ValueError, match="unique"):
        SyntheticWorld(0, scenarios=[Scenario("a"), Scenario("a")])
    with pytest.raises(ValueError, match="at least one"):
        SyntheticWorld(0, scenarios=[])
