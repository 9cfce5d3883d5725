"""Benchmark streams: the synthetic one and folder trees (layout, order, colour, errors)."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from etuner_ros.bench.streams import first_scenario_frames, folder_stream, synthetic_stream

# RGB colour per class; written as BGR so the test sees whether the reader converts back.
COLOURS = {"cup": (255, 0, 0), "keys": (0, 255, 0), "walker": (0, 0, 255)}


def _tree(root: Path, layout: dict[str, dict[str, int]], ext: str = ".png") -> Path:
    for scenario, classes in layout.items():
        for cls, n in classes.items():
            d = root / scenario / cls
            d.mkdir(parents=True)
            for i in range(n):
                rgb = np.full((12, 16, 3), COLOURS[cls], np.uint8)
                assert cv2.imwrite(str(d / f"img{i:02d}{ext}"), rgb[:, :, ::-1].copy())
    return root


@pytest.fixture
def tree(tmp_path):
    return _tree(tmp_path / "rec", {"b_night": {"cup": 2, "walker": 3},
                                    "a_day": {"keys": 6, "cup": 6}})


def test_synthetic_stream_is_reiterable_and_described():
    s = synthetic_stream(seed=1, frames_per_scenario=2, image_size=(64, 48))
    first, second = list(s.frames), list(s.frames)
    assert len(s) == len(first) == 2 * len(s.scenarios)
    assert all(a.image.tobytes() == b.image.tobytes() for a, b in zip(first, second,
                                                                     strict=True))
    assert first[0].image.shape == (48, 64, 3)
    assert s.scenarios[0] == "day_kitchen" and "walker" in s.class_names
    assert s.description["source"] == "synthetic" and s.description["seed"] == 1
    assert [f.scenario for f in first_scenario_frames(s)] == ["day_kitchen"] * 2


def test_folder_stream_order_labels_and_colour(tree):
    s = folder_stream(tree)
    assert s.scenarios == ["a_day", "b_night"]
    assert s.class_names == ["cup", "keys", "walker"]
    assert [f.scenario for f in s.frames] == ["a_day"] * 12 + ["b_night"] * 5
    assert [f.index for f in s.frames] == list(range(17))
    for f in s.frames:
        assert f.image.dtype == np.uint8 and f.image.shape == (12, 16, 3)
        assert tuple(f.image[0, 0]) == COLOURS[f.label]  # BGR on disk -> RGB in memory
    day = [f.label for f in first_scenario_frames(s)]
    assert len(day) == 12 and day != sorted(day)  # shuffled within the scenario
    assert s.description["frames_per_scenario"] == {"a_day": 12, "b_night": 5}


def test_folder_stream_shuffle_is_seeded(tree):
    labels = lambda seed: [f.label for f in folder_stream(tree, seed=seed).frames]  # noqa: E731
    assert labels(0) == labels(0)
    assert labels(0) != labels(1)


def test_folder_stream_resize_jpeg_and_hidden_files(tmp_path):
    root = _tree(tmp_path / "r", {"s": {"cup": 2}}, ext=".jpg")
    (root / ".DS_Store").write_bytes(b"junk")
    (root / "s" / "cup" / ".hidden.txt").write_text("x")
    s = folder_stream(root, image_size=(32, 24))
    assert len(s) == 2 and s.frames[0].image.shape == (24, 32, 3)


@pytest.mark.parametrize("case", ["missing", "empty", "only_strays"])
def test_folder_stream_without_an_image_is_an_error_naming_the_path(tmp_path, case):
    root = tmp_path / "root"
    if case != "missing":
        root.mkdir()
    if case == "only_strays":
        (root / "s" / "cup").mkdir(parents=True)
        (root / "s" / "cup" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"not a directory|no readable image") as err:
        folder_stream(root)
    assert str(root) in str(err.value)


def test_folder_stream_skips_strays_and_reports_each(tmp_path):
    """A photo folder's strays (Thumbs.db, a labels.csv, a truncated JPEG, an empty class)
    are left out, counted by reason and named, and the readable images still play."""
    root = _tree(tmp_path / "root", {"s": {"cup": 2}, "t": {"keys": 1}})
    strays = {
        root / "readme.md": "file at the scenario level",
        root / "s" / "labels.csv": "file at the class level",
        root / "s" / "cup" / "more": "directory at the image level",
        root / "s" / "cup" / "Thumbs.db": "not an image file",
        root / "s" / "cup" / "broken.png": "unreadable image",
        root / "s" / "keys": "class directory has no readable image",
        root / "u": "scenario directory has no readable image",
    }
    for path in strays:
        if path.suffix or path.name == "Thumbs.db":
            path.write_bytes(b"this is not an image")
        else:
            path.mkdir()
    s = folder_stream(root)
    assert [f.label for f in s.frames].count("cup") == 2 and len(s) == 3
    assert s.scenarios == ["s", "t"] and s.class_names == ["cup", "keys"]
    skipped = s.description["skipped"]
    assert skipped["count"] == len(strays) == sum(skipped["by_reason"].values())
    for path, why in strays.items():
        assert any(e.startswith(f"{path}: {why}") for e in skipped["examples"]), path


def test_folder_stream_shrinks_large_photographs_only(tmp_path):
    """Every worker holds every frame: a photograph's longer side is kept to max_side (aspect
    kept), a small image is left as it is."""
    d = tmp_path / "root" / "s" / "cup"
    d.mkdir(parents=True)
    assert cv2.imwrite(str(d / "big.jpg"), np.full((1500, 2000, 3), 128, np.uint8))
    assert cv2.imwrite(str(d / "small.png"), np.full((48, 64, 3), 128, np.uint8))
    shapes = sorted(f.image.shape for f in folder_stream(tmp_path / "root", max_side=320).frames)
    assert shapes == [(48, 64, 3), (240, 320, 3)]
    kept = sorted(f.image.shape for f in folder_stream(tmp_path / "root", max_side=None).frames)
    assert kept == [(48, 64, 3), (1500, 2000, 3)]


def test_folder_stream_spells_classes_as_models_do(tmp_path):
    """A checkpoint's label map is spelled by core/class_names.model_class: a folder's "Coffee
    Mug" must be the model's "coffee_mug", or no prediction could ever be scored right."""
    root = tmp_path / "root"
    for scenario, cls in (("a", "Coffee Mug"), ("a", "cup"), ("b", "Cup"), ("b", "TV  remote")):
        d = root / scenario / cls
        d.mkdir(parents=True)
        assert cv2.imwrite(str(d / "0.png"), np.zeros((8, 8, 3), np.uint8))
    s = folder_stream(root)
    assert s.class_names == ["coffee_mug", "cup", "tv_remote"]
    assert sorted(f.label for f in s.frames) == ["coffee_mug", "cup", "cup", "tv_remote"]


def test_folder_stream_strays_do_not_reshuffle(tmp_path):
    root = _tree(tmp_path / "root", {"a": {"cup": 3, "keys": 3}, "b": {"cup": 3, "keys": 3}})
    before = [f.label for f in folder_stream(root, seed=3).frames]
    (root / "0_notes.txt").write_text("x")  # sorts before the scenarios
    assert [f.label for f in folder_stream(root, seed=3).frames] == before


def _textured_tree(root: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for scenario in ("a", "b"):
        for cls in ("cup", "keys"):
            d = root / scenario / cls
            d.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
                assert cv2.imwrite(str(d / f"{i}.png"), cv2.GaussianBlur(img, (5, 5), 2))
    return root


def test_folder_stream_runs_of_frames(tmp_path):
    """--run-seconds on a folder: each image stays in view for a run of slightly moving
    frames; a scenario keeps as many frames as it has images."""
    root = _textured_tree(tmp_path / "r")
    s = folder_stream(root, seed=0, run_frames=(3, 5))
    assert [f.scenario for f in s.frames] == ["a"] * 12 + ["b"] * 12
    labels = [f.label for f in s.frames[:12]]
    runs = [len(list(g)) for _, g in itertools.groupby(labels)]
    assert len(runs) < 12 and all(r >= 3 for r in runs[:-1])
    a, b = s.frames[0].image.astype(int), s.frames[1].image.astype(int)
    assert 0 < np.abs(a - b).mean() < 40  # the same image, moved a little
    again = folder_stream(root, seed=0, run_frames=(3, 5))
    assert all(x.image.tobytes() == y.image.tobytes() for x, y in zip(s.frames, again.frames,
                                                                     strict=True))
    with pytest.raises(ValueError, match="run_frames"):
        folder_stream(root, run_frames=(5, 3))


def test_folder_stream_max_images_plays_a_seeded_sample_of_each_scenario(tmp_path):
    """--frames-per-scenario on a folder: each scenario plays at most that many of its
    images, the first of the same seeded shuffle an uncapped run plays, and the stream says
    how many it had."""
    root = _textured_tree(tmp_path / "r")  # 12 images in each of "a" and "b"
    full = folder_stream(root, seed=3)
    s = folder_stream(root, seed=3, max_images=5)
    assert [f.scenario for f in s.frames] == ["a"] * 5 + ["b"] * 5
    for scenario in ("a", "b"):
        mine = [f.image.tobytes() for f in s.frames if f.scenario == scenario]
        theirs = [f.image.tobytes() for f in full.frames if f.scenario == scenario]
        assert mine == theirs[:5]
    d = s.description
    assert d["frames_per_scenario"] == {"a": 5, "b": 5}
    assert d["images_per_scenario"] == {"a": 12, "b": 12}
    assert d["max_images_per_scenario"] == 5
    assert full.description["images_per_scenario"] == full.description["frames_per_scenario"]
    assert len(folder_stream(root, seed=3, max_images=50).frames) == 24  # a cap above: all
    runs = folder_stream(root, seed=3, run_frames=(2, 3), max_images=4)
    assert [f.scenario for f in runs.frames] == ["a"] * 4 + ["b"] * 4
    with pytest.raises(ValueError, match="max_images"):
        folder_stream(root, max_images=0)


def test_recurring_scenarios_are_found_by_settings():
    s = synthetic_stream(seed=0, frames_per_scenario=1)
    assert s.description["recurring"] == {"day_kitchen_again": "day_kitchen"}
    assert s.description["run_frames"] == [8, 32]
