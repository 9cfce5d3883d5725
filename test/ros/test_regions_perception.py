"""Issue 8 over real DDS: perception recognises each box an upstream detector publishes for a
frame (``region_source: topic``), in one batched forward pass, and counts every box or frame it
could not use (bringup subprocess, loopback DDS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import Header
from test_faults_perception import perception_status, start, stop, values

from etuner_ros.core.checkpoint import load_checkpoint
from etuner_ros.core.regions import Box, classify_regions
from etuner_ros.msg import Detection, DetectionArray, LabelCorrection
from etuner_ros.ros.image import rgb_to_image
from etuner_ros.ros.qos import corrections_qos, reliable_qos

from harness import Bringup, wait_for

W, H = 96, 64
BOXES = [Box(2, 3, 30, 20), Box(40, 10, 24, 40), Box(70, 30, 26, 34)]


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    # label_memory_max_age_s: the recall test is about recall; on a loaded machine the default
    # (5 s of ROS time) could pass between a correction and the frame that recalls it.
    sut, probe, ctx = start(tmp_path_factory.mktemp("regions"), "regions",
                            overlay="    region_source: topic\n    region_timeout_s: 1.0\n"
                                    "    max_regions: 8\n    region_wait_mb: 1.0\n"
                                    "    label_memory_max_age_s: 120.0\n")
    ctx["boxes"] = probe.publisher(DetectionArray, "regions", reliable_qos(50))
    try:
        yield ctx
    finally:
        stop(sut, probe)


def boxes_msg(stamp: Time, boxes: list[tuple[int, int, int, int]]) -> DetectionArray:
    """What an upstream detector publishes: its class, confidence and id per box."""
    return DetectionArray(header=Header(stamp=stamp, frame_id="cam"), detections=[
        Detection(class_name="bottle", score=0.5 + 0.1 * i, upstream_id=f"trk{i}",
                  bbox=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h))
        for i, (x, y, w, h) in enumerate(boxes)])


def frame(ctx, seed: int) -> tuple[Time, np.ndarray]:
    ctx["sec"] += 1
    return Time(sec=ctx["sec"]), np.random.default_rng(seed).integers(0, 255, (H, W, 3),
                                                                       np.uint8)


def answer(ctx, stamp: Time) -> DetectionArray:
    return wait_for(lambda: [d for d in ctx["dets"] if d.header.stamp == stamp], 30,
                    f"detections for stamp {stamp.sec}")[0]


def publish_frame(ctx, stamp: Time, rgb: np.ndarray) -> None:
    wait_for(lambda: ctx["img"].get_subscription_count() >= 1, 30, "perception subscribed")
    ctx["img"].publish(rgb_to_image(rgb, Header(stamp=stamp, frame_id="cam")))


def publish_boxes(ctx, stamp: Time, boxes) -> None:
    wait_for(lambda: ctx["boxes"].get_subscription_count() >= 1, 30, "perception on regions")
    ctx["boxes"].publish(boxes_msg(stamp, boxes))


@pytest.mark.parametrize("boxes_first", [False, True])
def test_n_boxes_give_n_detections_with_the_frame_header_in_one_forward(system, boxes_first):
    before = values(perception_status(system))
    stamp, rgb = frame(system, 7)
    if boxes_first:
        publish_boxes(system, stamp, BOXES)
        publish_frame(system, stamp, rgb)
    else:
        publish_frame(system, stamp, rgb)
        publish_boxes(system, stamp, BOXES)
    out = answer(system, stamp)
    assert out.header.stamp == stamp and out.header.frame_id == "cam"
    assert [(d.bbox.x_offset, d.bbox.y_offset, d.bbox.width, d.bbox.height)
            for d in out.detections] == [tuple(b) for b in BOXES]
    assert [d.upstream_id for d in out.detections] == ["trk0", "trk1", "trk2"]
    assert [d.upstream_class for d in out.detections] == ["bottle"] * 3
    assert [round(d.upstream_score, 3) for d in out.detections] == [0.5, 0.6, 0.7]
    # Each region is recognised on its crop, as core/regions.py cuts it (the collector and the
    # tuner use the same cut): same classes as the serving model gives the crops here.
    bundle = load_checkpoint(Path(system["info"][-1].checkpoint_path))
    ids, _ = classify_regions(bundle, rgb, BOXES)
    assert [d.class_id for d in out.detections] == ids.tolist()
    assert {d.model_version for d in out.detections} == {out.model_version}
    after = wait_for(lambda: (v := values(perception_status(system)))
                     and int(v["regions"]) >= int(before["regions"]) + 3 and v, 30,
                     "regions counted")
    assert int(after["forward_passes"]) - int(before["forward_passes"]) == 1
    assert int(after["regions"]) - int(before["regions"]) == 3


def test_a_frame_with_no_boxes_is_answered_with_no_detections(system):
    stamp, rgb = frame(system, 8)
    publish_frame(system, stamp, rgb)
    publish_boxes(system, stamp, [])
    assert answer(system, stamp).detections == []


def test_bad_boxes_and_unpaired_halves_are_counted_not_silent(system):
    before = values(perception_status(system))
    stamp, rgb = frame(system, 9)
    publish_frame(system, stamp, rgb)
    publish_boxes(system, stamp, [(10, 10, 20, 20), (0, 0, 0, 10), (500, 500, 10, 10)])
    out = answer(system, stamp)
    assert [(d.bbox.x_offset, d.bbox.width) for d in out.detections] == [(10, 20)]
    lonely_frame, rgb2 = frame(system, 10)
    publish_frame(system, lonely_frame, rgb2)          # no boxes ever come for it
    lonely_boxes, _ = frame(system, 11)
    publish_boxes(system, lonely_boxes, BOXES)         # no frame ever comes for these

    def counted():
        v = values(perception_status(system))
        d = {k: int(v[k]) - int(before[k]) for k in
             ("bad_regions", "pairing_frames_timed_out", "pairing_regions_timed_out")}
        return d if d["pairing_frames_timed_out"] >= 1 and d["pairing_regions_timed_out"] >= 1 \
            else None

    d = wait_for(counted, 30, "unpaired frame and boxes counted")
    assert d == {"bad_regions": 2, "pairing_frames_timed_out": 1,
                 "pairing_regions_timed_out": 1}
    assert not [a for a in system["dets"] if a.header.stamp in (lonely_frame, lonely_boxes)]
    system["sut"].check()


def test_a_correction_sticks_to_the_region_it_names_in_the_next_frames(system):
    """The label memory: corrections of two regions of a published frame (one by index, one by
    box) answer those regions' near-identical views in a later frame, marked ``recalled``;
    the other region is the model's; corrections naming nothing perception published are
    counted by reason."""
    fix = system.setdefault("corr", system["probe"].publisher(LabelCorrection, "corrections",
                                                              corrections_qos()))
    before = values(perception_status(system))
    stamp, rgb = frame(system, 12)
    publish_frame(system, stamp, rgb)
    publish_boxes(system, stamp, BOXES)
    first = answer(system, stamp)
    names = load_checkpoint(Path(system["info"][-1].checkpoint_path)).class_names
    other = [next(n for n in names if n != d.class_name) for d in first.detections]
    wait_for(lambda: fix.get_subscription_count() >= 2, 30, "perception and collector on "
             "corrections")
    lost, _ = frame(system, 13)  # never published
    b2 = BOXES[2]
    for c in (LabelCorrection(header=first.header, true_class=other[1], detection_index=1),
              LabelCorrection(header=first.header, true_class=other[2], has_box=True,
                              box=RegionOfInterest(x_offset=b2.x + 1, y_offset=b2.y,
                                                   width=b2.w, height=b2.h)),
              LabelCorrection(header=Header(stamp=lost), true_class=other[0]),
              LabelCorrection(header=first.header, true_class=other[0], detection_index=7)):
        fix.publish(c)

    def counted():
        v = values(perception_status(system))
        d = {k: int(v.get(k, 0)) - int(before.get(k, 0)) for k in
             ("memory.added", "memory.rejected.no_frame", "memory.rejected.no_region")}
        return d if sum(d.values()) >= 4 else None

    assert wait_for(counted, 30, "corrections counted") == {
        "memory.added": 2, "memory.rejected.no_frame": 1, "memory.rejected.no_region": 1}
    later, _ = frame(system, 14)
    publish_frame(system, later, rgb)  # the robot still looks at the same scene
    publish_boxes(system, later, BOXES)
    again = answer(system, later)
    assert [d.recalled for d in again.detections] == [False, True, True]
    assert [d.class_name for d in again.detections][1:] == other[1:]
    assert again.detections[0].class_name == first.detections[0].class_name
    for d in again.detections[1:]:
        assert d.class_id == names.index(d.class_name) and 0.95 <= d.score <= 1.0001
    system["sut"].check()


def test_frames_waiting_for_boxes_are_bounded_in_bytes_and_counted(system):
    """region_wait_mb 1.0: two 640x480 frames (0.88 MiB each) without boxes cannot both wait;
    the older goes at once, counted as pairing_frames_over_bytes; its boxes, late, find no
    frame and time out (counted); the newer frame times out (counted). Nothing is answered."""
    before = values(perception_status(system))
    (old, _), (new, _) = frame(system, 15), frame(system, 16)
    big = np.random.default_rng(15).integers(0, 255, (480, 640, 3), np.uint8)
    publish_frame(system, old, big)
    publish_frame(system, new, big)

    def counted(ready=lambda d: d["pairing_frames_timed_out"] and d["pairing_regions_timed_out"]):
        v = values(perception_status(system))
        d = {k: int(v[k]) - int(before[k]) for k in
             ("pairing_frames_over_bytes", "pairing_frames_timed_out",
              "pairing_regions_timed_out", "pairing_frames_pushed_out")}
        return d if ready(d) else None

    wait_for(lambda: counted(lambda d: d["pairing_frames_over_bytes"]), 30, "the older frame out")
    publish_boxes(system, old, BOXES)  # only now: earlier, they could beat its frame and pair

    assert wait_for(counted, 30, "both frames and the boxes counted") == {
        "pairing_frames_over_bytes": 1, "pairing_frames_timed_out": 1,
        "pairing_regions_timed_out": 1, "pairing_frames_pushed_out": 0}
    assert float(values(perception_status(system))["pairing_frames_waiting_mb"]) == 0.0
    assert not [a for a in system["dets"] if a.header.stamp in (old, new)]
    system["sut"].check()


def test_the_built_in_proposer_finds_regions_and_each_is_recognised(tmp_path_factory):
    """Issue 8, criterion 2: region_source detector loads a proposer checkpoint the project
    made (a short run of sim.train_proposer) and recognises each box it proposes, in one
    batched forward; a broken proposer file fails perception's configure with the reason (the
    process lives on, perception unconfigured)."""
    import torch

    from etuner_ros.core.proposer import save_proposer
    from etuner_ros.sim.train_proposer import train_detector

    d = tmp_path_factory.mktemp("proposer")
    torch.set_num_threads(1)
    ckpt = save_proposer(d / "proposer.pt", train_detector(seed=0, steps=40, input_size=128),
                         {"score_thresh": 0.2})
    sut, probe, ctx = start(d, "proposer", overlay="    region_source: detector\n"
                            f"    proposer_checkpoint: '{ckpt}'\n    max_regions: 5\n")
    try:
        from etuner_ros.sim.rooms import RoomWorld

        frame = RoomWorld(0).frame("day_kitchen", 0, split="val")
        before = values(perception_status(ctx))
        stamp = Time(sec=777)
        wait_for(lambda: ctx["img"].get_subscription_count() >= 1, 30, "perception subscribed")
        ctx["img"].publish(rgb_to_image(frame.image, Header(stamp=stamp, frame_id="cam")))
        out = answer(ctx, stamp)
        assert 1 <= len(out.detections) <= 5
        h, w = frame.image.shape[:2]
        for k, det in enumerate(out.detections):
            b = det.bbox
            assert b.width > 0 and b.height > 0
            assert b.x_offset + b.width <= w and b.y_offset + b.height <= h
            assert det.upstream_id == f"p{k}" and det.upstream_class == ""
        after = wait_for(lambda: (v := values(perception_status(ctx)))
                         and int(v["forward_passes"]) > int(before["forward_passes"]) and v,
                         30, "the frame counted")
        assert int(after["forward_passes"]) - int(before["forward_passes"]) == 1
        assert int(after["proposals"]) - int(before["proposals"]) == len(out.detections)
        assert int(after["regions"]) - int(before["regions"]) == len(out.detections)
    finally:
        stop(sut, probe)
    (d / "broken.pt").write_bytes(b"not a checkpoint")
    bad = Bringup(d / "bad.log", "--params-file", str(_overlay(d, "broken.pt")),
                  "--checkpoint", str(d / "base.pt"), "--namespace", "badprop")
    try:
        wait_for(lambda: "configure failed, staying unconfigured" in bad.log(), 60,
                 "perception refusing the broken proposer")
        assert bad.alive(), bad.log()
        assert "broken.pt" in bad.log() and "proposer" in bad.log().lower()
    finally:
        bad.stop()


def _overlay(d, proposer: str):
    p = d / "bad_overlay.yaml"
    p.write_text(f"/**:\n  ros__parameters:\n    data_dir: '{d}'\n"
                 "/**/tuner:\n  ros__parameters:\n    policy: none\n"
                 "/**/perception:\n  ros__parameters:\n    region_source: detector\n"
                 f"    proposer_checkpoint: '{d / proposer}'\n")
    return p
