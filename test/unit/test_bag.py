"""Reading bags without ROS: topic choice, image decoding, corrections paired by stamp, export."""

from __future__ import annotations

import numpy as np
import pytest

from etuner_ros.core import bag
from etuner_ros.sim.world import SyntheticWorld

T0 = 1_700_000_000 * 10**9  # the bag's clock (recorder's receive time)
PERIOD = 125_000_000  # 8 fps


def world_frames(n: int, size=(64, 48)):
    """(time_ns, stamp_ns, rgb) of n synthetic frames and their true labels."""
    frames = list(SyntheticWorld(0, image_size=size).stream(max(1, n // 7 + 1)))[:n]
    # header stamps lag the receive time by 3 ms, as a camera driver's do
    items = [(T0 + i * PERIOD, T0 + i * PERIOD - 3_000_000, f.image) for i, f in enumerate(frames)]
    return items, [f.label for f in frames]


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
@pytest.mark.parametrize("compressed", [False, True])
def test_frames_and_corrections_round_trip(tmp_path, storage, compressed):
    items, labels = world_frames(12)
    corr = [(t + 50_000_000, s, labels[i], i % 2 == 0)
            for i, (t, s, _) in enumerate(items) if i % 3 == 0]
    path = bag.write_bag(tmp_path / "b", items, corr, storage=storage, compressed=compressed)
    with bag.BagSource(path) as src:
        info = src.info
        assert info.storage == storage
        assert (info.camera_topic, info.corrections_topic) == ("/camera/color/image_raw",
                                                               "/corrections")
        assert (info.frames, info.corrections) == (12, 4)
        recs = list(src.records())
        assert [r.time_ns for r in recs] == sorted(r.time_ns for r in recs)
        images = [r for r in recs if r.image is not None]
        assert [r.stamp_ns for r in images] == [s for _, s, _ in items]
        for r, (_, _, rgb) in zip(images, items, strict=True):
            np.testing.assert_array_equal(r.image.rgb(), rgb)  # PNG is lossless
            assert r.frame_id == "camera_optical_frame"
        got = [(r.stamp_ns, r.correction.true_class, r.correction.confirms)
               for r in recs if r.correction is not None]
        assert got == [(s, c, k) for _, s, c, k in corr]
        frames, stats = bag.labelled_frames(src)
    assert stats == {"frames": 12, "undecodable": 0, "labelled": 4, "unpaired_corrections": 0,
                     "bad_messages": 0, "region_corrections": 0}
    assert [f.label for f in frames] == [labels[i] if i % 3 == 0 else None for i in range(12)]


def test_bag_definitions_suffice_without_package_msgs(tmp_path, monkeypatch):
    """A robot's bag carries its message definitions: no msg/*.msg needed to read it."""
    items, _ = world_frames(3)
    path = bag.write_bag(tmp_path / "b", items, [(items[0][0] + 1, items[0][1], "cup", False)])
    bag.typestore.cache_clear()
    monkeypatch.setattr(bag, "msg_dirs", lambda: [])
    try:
        assert bag.CORRECTION not in bag.typestore().fielddefs
        with bag.BagSource(path) as src:
            recs = list(src.records())
        assert recs[1].correction.true_class == "cup"
    finally:
        bag.typestore.cache_clear()


def test_corrupt_message_is_skipped_and_counted(tmp_path):
    from rosbags.rosbag2 import Writer

    items, _ = world_frames(3)
    store = bag.typestore()
    with Writer(tmp_path / "b", version=9) as w:
        conn = w.add_connection("/cam", bag.IMAGE, typestore=store)
        for i, (t, s, rgb) in enumerate(items):
            msg = store.types[bag.IMAGE](
                header=store.types["std_msgs/msg/Header"](
                    stamp=store.types["builtin_interfaces/msg/Time"](sec=s // 10**9,
                                                                      nanosec=s % 10**9),
                    frame_id="f"),
                height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", is_bigendian=0,
                step=rgb.shape[1] * 3, data=rgb.reshape(-1))
            data = bytes(store.serialize_cdr(msg, bag.IMAGE))
            w.write(conn, t, data[:9] if i == 1 else data)  # frame 1 cut short
    with bag.BagSource(tmp_path / "b") as src:
        stamps = [r.stamp_ns for r in src.records()]
        assert stamps == [items[0][1], items[2][1]]
        assert src.bad_messages == 1 and src.last_bad.startswith("/cam at ")


def test_topic_choice(tmp_path):
    items, _ = world_frames(2)
    a = bag.write_bag(tmp_path / "a", items, camera_topic="/front/image")
    with pytest.raises(bag.BagError, match="no topic '/nope'"):
        bag.BagSource(a, camera_topic="/nope")
    with bag.BagSource(a) as src:
        assert src.info.camera_topic == "/front/image" and src.info.corrections_topic == ""
    empty = bag.write_bag(tmp_path / "c", [], [(1, 1, "cup", False)])
    with pytest.raises(bag.BagError, match="no camera image topic"):
        bag.BagSource(empty)
    with pytest.raises(bag.BagError, match="holds etuner_ros/msg/LabelCorrection"):
        bag.BagSource(empty, camera_topic="/corrections")
    with pytest.raises(bag.BagError, match="no such bag"):
        bag.BagSource(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "metadata.yaml").write_text("not: a bag\n")
    with pytest.raises(bag.BagError, match="cannot read bag"):
        bag.BagSource(tmp_path / "junk")


def test_encodings():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    bgr = rgb[:, :, ::-1].tobytes()
    padded = np.zeros((2, 12), np.uint8)
    padded[:, :9] = rgb.reshape(2, 9)
    for img in (bag.BagImage(2, 3, "rgb8", 9, 0, rgb.tobytes()),
                bag.BagImage(2, 3, "bgr8", 9, 0, bgr),
                bag.BagImage(2, 3, "rgb8", 12, 0, padded.tobytes())):
        np.testing.assert_array_equal(img.rgb(), rgb)
    mono = bag.BagImage(1, 2, "mono8", 2, 0, bytes([7, 9])).rgb()
    assert mono.shape == (1, 2, 3) and mono[0, 1].tolist() == [9, 9, 9]
    with pytest.raises(bag.BagError, match="unsupported image encoding '16UC1'"):
        bag.BagImage(2, 3, "16UC1", 6, 0, bytes(12)).rgb()
    with pytest.raises(bag.BagError, match="inconsistent"):
        bag.BagImage(2, 3, "rgb8", 9, 0, bytes(5)).rgb()
    with pytest.raises(bag.BagError, match="could not be decoded"):
        bag.BagImage(0, 0, "jpeg", 0, 0, b"not a jpeg", compressed=True).rgb()


def test_region_corrections_are_not_frame_labels(tmp_path):
    """A correction naming one box labels an object, not the frame: counted, left out."""
    items, _ = world_frames(3)
    s0, s2 = items[0][1], items[2][1]
    corr = [(items[0][0] + 1, s0, "cup", False),
            (items[0][0] + 2, s0, "book", False, (1, 2, 10, 12), 0),   # a region by box + index
            (items[2][0] + 1, s2, "phone", False, None, 1)]             # a region by index
    path = bag.write_bag(tmp_path / "b", items, corr)
    with bag.BagSource(path) as src:
        frames, stats = bag.labelled_frames(src, keep_unlabelled=False)
    assert [(f.stamp_ns, f.label) for f in frames] == [(s0, "cup")]
    assert stats["region_corrections"] == 2 and stats["labelled"] == 1


def test_later_correction_wins_and_export(tmp_path):
    items, _ = world_frames(4)
    s1 = items[1][1]
    corr = [(items[1][0] + 1, s1, "cup", False), (items[3][0] + 1, s1, "book", False),
            (items[3][0] + 2, 42, "ghost", False)]
    path = bag.write_bag(tmp_path / "b", items, corr)
    with bag.BagSource(path) as src:
        frames, stats = bag.labelled_frames(src, keep_unlabelled=False)
        assert [f.label for f in frames] == ["book"] and stats["unpaired_corrections"] == 1
        assert bag.export(src, tmp_path / "out", parts=2) == 4
    pngs = sorted(p.relative_to(tmp_path / "out").as_posix()
                  for p in (tmp_path / "out").rglob("*.png"))
    assert pngs == [f"part1/book/{s1}.png", f"part1/unlabelled/{items[0][1]}.png",
                    f"part2/unlabelled/{items[2][1]}.png", f"part2/unlabelled/{items[3][1]}.png"]
    assert bag.split_parts(5, 2) == [0, 0, 0, 1, 1]


def test_cli(tmp_path, capsys):
    items, _ = world_frames(3)
    path = bag.write_bag(tmp_path / "b", items)
    assert bag.main(["info", str(path)]) == 0
    assert "3 frames" in capsys.readouterr().out
    assert bag.main(["info", str(tmp_path / "nope")]) == 2
    assert "no such bag" in capsys.readouterr().err


def test_benchmark_on_a_labelled_bag(tmp_path):
    """``bench --bag``: the bag's corrected frames are the stream, its corrections the truth."""
    import json

    from etuner_ros.bench.__main__ import main as bench

    items, labels = world_frames(56)
    corr = [(t + 1, s, labels[i], False) for i, (t, s, _) in enumerate(items) if i % 4]
    path = bag.write_bag(tmp_path / "day", items, corr)
    out = tmp_path / "out"
    assert bench(["--quick", "--quiet", "--bag", str(path), "--bag-parts", "3", "--out",
                  str(out), "--data-dir", str(tmp_path / "cache")]) == 0
    res = json.loads((out / "results.json").read_text())
    desc = res["stream"]["description"]
    assert desc["source"] == "bag" and desc["labelled"] == 42
    assert desc["unlabelled_left_out"] == 14 and desc["frames_in_bag"] == 56
    assert res["stream"]["frames"] == 42
    assert res["stream"]["scenarios"] == ["part1", "part2", "part3"]
    span_s = (items[-1][0] + 1 - items[0][0]) / 1e9
    assert res["stream"]["seconds"] == pytest.approx(span_s)  # the recording's own pace
    assert set(res["policies"]) >= {"none", "immediate", "etuner"}
    for p in res["policies"].values():
        assert 0.0 <= p["avg_accuracy"] <= 1.0


def test_benchmark_refuses_a_bag_without_labels(tmp_path, capsys):
    from etuner_ros.bench.__main__ import main as bench

    items, _ = world_frames(8)
    path = bag.write_bag(tmp_path / "day", items)
    assert bench(["--quick", "--quiet", "--bag", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "cannot score accuracy on this bag: it has no LabelCorrection topic" in err
    assert "8 frames" in err and "etuner_ros.core.bag export" in err
    assert not (tmp_path / "o" / "results.json").exists()
    # --frames-per-scenario cannot cut a recording: said, not silently ignored
    assert bench(["--quick", "--quiet", "--bag", str(path), "--frames-per-scenario", "5",
                  "--out", str(tmp_path / "o")]) == 2
    assert "--frames-per-scenario does not cut a bag" in capsys.readouterr().err


def test_region_of_a_correction_round_trips_and_old_bags_name_none(tmp_path):
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    items, _ = world_frames(2)
    s = items[0][1]
    path = bag.write_bag(tmp_path / "b", items, [(items[0][0] + 1, s, "cup", False),
                                                 (items[0][0] + 2, s, "book", False,
                                                  (4, 5, 20, 10)),
                                                 (items[0][0] + 3, s, "mug", True, None, 2)])
    with bag.BagSource(path) as src:
        got = [r.correction for r in src.records() if r.correction is not None]
    assert [(c.true_class, c.box, c.detection_index) for c in got] == [
        ("cup", None, -1), ("book", (4, 5, 20, 10), -1), ("mug", None, 2)]
    # A bag recorded before LabelCorrection had detection_index carries its own definition.
    text = "\n".join(line for line in (bag.msg_dirs()[0] / "LabelCorrection.msg").read_text()
                     .splitlines() if not line.startswith("int32 detection_index"))
    old = get_typestore(Stores.ROS2_JAZZY)
    old.register(get_types_from_msg(text, bag.CORRECTION))
    T = old.types
    assert "detection_index" not in [f[0] for f in old.fielddefs[bag.CORRECTION][1]]
    msg = T[bag.CORRECTION](
        header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
                                        frame_id="f"), true_class="cup", has_box=True,
        box=T["sensor_msgs/msg/RegionOfInterest"](x_offset=1, y_offset=2, height=3, width=4,
                                                  do_rectify=False), source="", confirms=False)
    with Writer(tmp_path / "old", version=9) as w:
        cam = w.add_connection("/cam", bag.IMAGE, typestore=old)
        conn = w.add_connection("/corrections", bag.CORRECTION, typestore=old)
        img = items[0][2]
        w.write(cam, 1, bytes(old.serialize_cdr(T[bag.IMAGE](
            header=msg.header, height=img.shape[0], width=img.shape[1], encoding="rgb8",
            is_bigendian=0, step=img.shape[1] * 3, data=img.reshape(-1)), bag.IMAGE)))
        w.write(conn, 2, bytes(old.serialize_cdr(msg, bag.CORRECTION)))
    with bag.BagSource(tmp_path / "old") as src:
        [c] = [r.correction for r in src.records() if r.correction is not None]
    assert (c.true_class, c.box, c.detection_index) == ("cup", (1, 2, 4, 3), -1)
