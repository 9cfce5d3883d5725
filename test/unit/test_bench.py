"""--quick benchmark end to end (synthetic and folder streams), and its reproducibility."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from etuner_ros.bench.__main__ import main
from etuner_ros.bench.aggregate import aggregate, gap_closed
from etuner_ros.bench.clock import DEVICE_FLOPS_PER_S, ROUND_FIXED_S, round_seconds
from etuner_ros.bench.config import quick_config
from etuner_ros.bench.runner import _ticks, run_policy
from etuner_ros.bench.suite import load_stream, prepare_start
from etuner_ros.core.checkpoint import load_checkpoint
from etuner_ros.core.numerics import numerics_tag
from etuner_ros.core.policies import POLICY_NAMES


def check_results(out):
    res = json.loads((out / "results.json").read_text())
    assert set(res["policies"]) == set(POLICY_NAMES)
    for name, p in res["policies"].items():
        for key in ("tune_seconds", "energy_joules", "energy_source", "rounds", "avg_accuracy",
                    "accuracy_per_scenario", "train_flops", "deferred", "merged",
                    "avg_accuracy_sd", "cpu_seconds", "device_seconds", "gap_closed",
                    "per_seed", "recurring_vs_start"):
            assert key in p, (name, key)
        assert 0.0 <= p["avg_accuracy"] <= 1.0
        assert p["tune_seconds"] >= 0 and p["energy_joules"] >= 0 and p["cpu_seconds"] >= 0
        assert set(p["per_seed"]) == {str(s) for s in res["seeds"]}
        mean = np.mean([e["avg_accuracy"] for e in p["per_seed"].values()])
        assert p["avg_accuracy"] == pytest.approx(mean)
    ref = res["reference"]["hindsight"]
    assert 0.0 <= ref["avg_accuracy"] <= 1.0 and ref["n_labels"] > 0
    for key in ("time_x", "cpu_x", "energy_x", "flops_x", "accuracy_pts"):
        assert key in res["ratios"]["etuner"], key
    assert res["policies"]["none"]["rounds"] == 0
    assert res["policies"]["immediate"]["rounds"] >= 1
    assert res["ratios"]["immediate"]["time_x"] == pytest.approx(1.0)
    assert res["ratios"]["immediate"]["accuracy_pts"] == 0.0
    assert res["stream"]["frames"] > 0
    assert res["numerics"] == numerics_tag()  # the CPU kernels behind the numbers
    png = (out / "benchmark.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    return res


def test_quick_synthetic(tmp_path):
    out = tmp_path / "out"
    assert main(["--quick", "--quiet", "--stream", "synthetic", "--seed", "0", "--seed", "1",
                 "--jobs", "2", "--out", str(out), "--data-dir", str(tmp_path / "cache")]) == 0
    res = check_results(out)
    assert res["seeds"] == [0, 1]
    assert len(res["stream"]["scenarios"]) >= 2
    assert res["recurring_scenarios"] == {"day_kitchen_again": "day_kitchen"}


def test_quick_folder_stream(tmp_path):
    root = tmp_path / "home"
    rng = np.random.default_rng(0)
    for s, shift in (("a_day", 0), ("b_night", -90)):
        # Class folders spelled as people name them: scored as the model spells them.
        for c, colour in (("Cup", (200, 40, 40)), ("Book Shelf", (40, 40, 200))):
            d = root / s / c
            d.mkdir(parents=True)
            for i in range(8):
                img = np.clip(rng.normal(120, 10, (40, 48, 3)) + shift, 0, 255).astype(np.uint8)
                cv2.circle(img, (24, 20), 10 + i % 4, tuple(int(v + shift) for v in colour), -1)
                cv2.imwrite(str(d / f"{i}.png"), img)
    out = tmp_path / "out"
    assert main(["--quick", "--quiet", "--stream", str(root), "--seed", "0", "--jobs", "1",
                 "--out", str(out), "--data-dir", str(tmp_path / "cache")]) == 0
    res = check_results(out)
    assert res["stream"]["scenarios"] == ["a_day", "b_night"]
    assert res["stream"]["class_names"] == ["book_shelf", "cup"]
    assert res["policies"]["none"]["accuracy_per_scenario"]["a_day"] > 0.5  # was 0.0


def _noise_folder(root, n: int):
    """ROOT/{a,b}/{cup,book}/ with ``n`` noise images each."""
    rng = np.random.default_rng(0)
    for s in ("a", "b"):
        for c in ("cup", "book"):
            (root / s / c).mkdir(parents=True)
            for i in range(n):
                cv2.imwrite(str(root / s / c / f"{i}.png"),
                            rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    return root


def test_folder_stream_errors_and_strays_on_the_command_line(tmp_path, capsys):
    """A folder with no image ends the run with one clear line and exit code 2, before any
    model trains; strays in a usable folder are reported on stderr and in results.json."""
    assert main(["--quick", "--quiet", "--stream", str(tmp_path / "nowhere"), "--seed", "0",
                 "--out", str(tmp_path / "out"), "--data-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: stream root is not a directory") and "Traceback" not in err
    root = _noise_folder(tmp_path / "home", 4)
    (root / "a" / "cup" / "Thumbs.db").write_bytes(b"junk")
    out = tmp_path / "out"
    assert main(["--quick", "--quiet", "--stream", str(root), "--seed", "0", "--jobs", "1",
                 "--policies", "none", "--no-hindsight", "--out", str(out),
                 "--data-dir", str(tmp_path / "cache")]) == 0
    assert "skipped 1 entries (1 not an image file" in capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    assert res["stream"]["description"]["skipped"]["count"] == 1


def test_same_seed_same_accuracy(tmp_path):
    """The stream clock charges counted work, not wall time: two runs of one seed agree
    frame by frame and round by round, whatever else the machine is doing."""
    cfg = quick_config(5)
    stream = load_stream("synthetic", cfg)
    path = prepare_start("synthetic", cfg, tmp_path, progress=False)
    start = load_checkpoint(path)
    for name in ("periodic", "etuner"):
        a, b = (run_policy(name, stream, start, cfg) for _ in range(2))
        assert a.rounds, name
        assert np.array_equal(a.correct, b.correct), name
        assert [r["end"] for r in a.rounds] == [r["end"] for r in b.rounds], name
        # each round says which evidence its gate used (labels:N, information:N, ...)
        assert [r["gate"] for r in a.rounds] == [r["gate"] for r in b.rounds], name
        assert all(r["gate"] for r in a.rounds), name
        assert a.device_seconds == b.device_seconds and a.train_flops == b.train_flops


def test_home_recall_is_every_policys_and_off_for_the_ablation(tmp_path):
    """The starting model answers frames of its own scene (the first and the recurring one) for
    every policy given the home's frames; ``home.enabled`` False (``--no-home-recall``) never."""
    from dataclasses import replace

    from etuner_ros.bench.suite import start_data

    cfg = quick_config(5)
    cfg.frames_per_scenario = 24
    stream = load_stream("synthetic", cfg)
    start = load_checkpoint(prepare_start("synthetic", cfg, tmp_path, progress=False))
    home = start_data("synthetic", stream, cfg)
    runs = {name: run_policy(name, stream, start, cfg, home_frames=home)
            for name in ("adabn", "etuner")}
    homes = sum(f.scenario in ("day_kitchen", "day_kitchen_again") for f in stream.frames)
    for name, run in runs.items():
        assert 0 < run.home_answered <= homes + cfg.home.window, name
    assert runs["adabn"].home_vetoes == 0  # label-free: no veto
    cfg.home = replace(cfg.home, enabled=False)
    assert run_policy("adabn", stream, start, cfg, home_frames=home).home_answered == 0


def _entry(acc: float, recur: float, cpu: float) -> dict:
    keys = ("tune_seconds", "device_seconds", "energy_joules", "rounds", "rounds_accepted",
            "train_flops", "deferred", "merged", "overhead_seconds", "wall_seconds")
    return {**dict.fromkeys(keys, cpu), "cpu_seconds": cpu, "avg_accuracy": acc,
            "energy_source": "cpu-time-model",
            "accuracy_per_scenario": {"a": acc, "a_again": recur}}


def test_aggregate_means_spread_gap_closed_and_recurring():
    per_seed = {0: {"none": _entry(0.4, 0.9, 0.0), "immediate": _entry(0.5, 0.8, 10.0),
                    "etuner": _entry(0.6, 0.9, 2.0)},
                1: {"none": _entry(0.6, 0.9, 0.0), "immediate": _entry(0.7, 0.8, 30.0),
                    "etuner": _entry(0.8, 0.88, 4.0)}}
    ref = {0: {"avg_accuracy": 0.9, "accuracy_unseen": 0.8, "n_labels": 10,
               "accuracy_per_scenario": {"a": 0.9}},
           1: {"avg_accuracy": 0.9, "accuracy_unseen": 0.8, "n_labels": 12,
               "accuracy_per_scenario": {"a": 0.9}}}
    res = aggregate(per_seed, ref, {"a_again": "a"})
    et = res["policies"]["etuner"]
    assert et["avg_accuracy"] == pytest.approx(0.7)
    assert et["avg_accuracy_sd"] == pytest.approx(np.std([0.6, 0.8], ddof=1))
    assert et["gap_closed"] == pytest.approx((0.7 - 0.5) / (0.9 - 0.5))
    assert et["recurring_vs_start"] == pytest.approx(-1.0)
    assert res["policies"]["immediate"]["recurring_vs_start"] == pytest.approx(-10.0)
    assert set(et["per_seed"]) == {"0", "1"}
    r = res["ratios"]["etuner"]
    assert r["cpu_x"] == pytest.approx(3.0 / 20.0)
    assert r["accuracy_pts"] == pytest.approx(10.0)
    assert res["reference"]["hindsight"]["n_labels"] == pytest.approx(11)
    assert gap_closed(0.5, 0.5, 0.5) is None


def test_round_seconds_is_work_at_the_device_speed():
    assert round_seconds(0.0) == ROUND_FIXED_S
    assert round_seconds(2 * DEVICE_FLOPS_PER_S) == pytest.approx(2.0 + ROUND_FIXED_S)
    with pytest.raises(ValueError):
        round_seconds(-1.0)


def test_quick_rooms_scores_regions(tmp_path):
    """``--stream rooms``: every item is a detected object's crop, scored per region; items
    of one room frame share its time on the stream clock."""
    out = tmp_path / "out"
    assert main(["--quick", "--quiet", "--stream", "rooms", "--seed", "0", "--jobs", "2",
                 "--out", str(out), "--data-dir", str(tmp_path / "cache")]) == 0
    res = check_results(out)
    d = res["stream"]["description"]
    assert d["source"] == "rooms" and d["regions"] == res["stream"]["frames"]
    assert res["stream"]["frames"] > d["room_frames"]  # several objects a frame
    stream = load_stream("rooms", quick_config(0))
    pos = [f.frame_index for f in stream.frames]
    assert pos == sorted(pos) and len(set(pos)) < len(pos)
    assert all(f.label in stream.class_names for f in stream.frames)


def test_ticks_group_items_by_the_frames_of_one_poll():
    assert list(_ticks(list(range(10)), 4)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert list(_ticks([0, 0, 1, 3, 4, 4, 9], 4)) == [[0, 1, 2, 3], [4, 5], [6]]


@pytest.mark.parametrize("args, why", [
    (["--frames-per-scenario", "0"], "--frames-per-scenario: must be at least 1, got 0"),
    (["--frames-per-scenario", "-5"], "--frames-per-scenario: must be at least 1, got -5"),
    (["--jobs", "0"], "--jobs: must be at least 1, got 0"),
    (["--seed", "-1"], "--seed: must be at least 0, got -1"),
    (["--bag-parts", "x"], "--bag-parts: not an integer: 'x'"),
    (["--run-seconds", "3", "1"], "--run-seconds: need SHORTEST <= LONGEST, got 3 1"),
    (["--run-seconds", "-1", "2"], "--run-seconds: must be at least 0, got -1"),
    (["--run-seconds", "1", "inf"], "--run-seconds: must be finite, got inf"),
])
def test_bad_options_end_with_a_usage_error(tmp_path, capsys, args, why):
    """A bad number is exit code 2 and one line before anything runs: not a worker's
    traceback, not a silent default, not "-1 workers"."""
    with pytest.raises(SystemExit) as exc:
        main(["--quick", "--quiet", "--seed", "0", "--out", str(tmp_path / "out"),
              "--data-dir", str(tmp_path / "cache"), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert why in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_an_output_folder_that_cannot_be_made_is_refused_before_the_run(tmp_path, capsys):
    """Found at the start, not after twenty minutes of work when results.json is written."""
    (tmp_path / "results").write_text("a file, not a folder")
    for option in ("--out", "--data-dir"):
        where = str(tmp_path / "results" / "sub")
        with pytest.raises(SystemExit) as exc:
            main(["--quick", "--quiet", "--seed", "0", "--out", str(tmp_path / "o"),
                  "--data-dir", str(tmp_path / "c"), option, where])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert f"{option} {where}: {tmp_path / 'results'} is not a directory" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists()


def test_frames_per_scenario_samples_a_folder(tmp_path, capsys):
    """--frames-per-scenario caps each scenario of a folder (it used to be ignored there),
    says so, and keeps in results.json how many images each scenario had."""
    root = _noise_folder(tmp_path / "home", 6)
    out = tmp_path / "out"
    assert main(["--quick", "--stream", str(root), "--seed", "0", "--jobs", "1",
                 "--policies", "none", "--no-hindsight", "--frames-per-scenario", "5",
                 "--out", str(out), "--data-dir", str(tmp_path / "cache")]) == 0
    assert "(at most 5 images of each scenario: 10 of 24)" in capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    d = res["stream"]["description"]
    assert res["stream"]["frames"] == 10
    assert d["frames_per_scenario"] == {"a": 5, "b": 5}
    assert d["images_per_scenario"] == {"a": 12, "b": 12}
    assert res["config"]["folder_max_images"] == 5
