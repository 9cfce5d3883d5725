"""The rooms world over real DDS: sim_camera (world rooms), sim_detector, sim_caregiver per region.

The first tests run the sim nodes in this process on a context of their own (``harness.Nodes``)
and a Probe on another, so every message crosses DDS; the Probe plays perception where the
test must choose which answers are right. The last one starts ``bringup --sim --world rooms``
(the installed entry point) and follows a frame's boxes from sim_detector through perception to
the caregiver's corrections and the collector's store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image
from std_msgs.msg import Bool

from etuner_ros.core.checkpoint import save_checkpoint
from etuner_ros.core.model import ModelBundle, build_model
from etuner_ros.core.regions import iou
from etuner_ros.msg import Detection, DetectionArray, LabelCorrection, SimGroundTruth
from etuner_ros.nodes.sim_camera_node import SimCameraNode
from etuner_ros.nodes.sim_caregiver_node import SimCaregiverNode
from etuner_ros.nodes.sim_detector_node import SimDetectorNode
from etuner_ros.ros.image import image_to_rgb
from etuner_ros.ros.params import ParameterError
from etuner_ros.ros.qos import image_qos, latched_qos, reliable_qos
from etuner_ros.ros.sim_truth import box_of, roi, room_frame
from etuner_ros.sim.caregiver import Caregiver
from etuner_ros.sim.detector import SimDetector
from etuner_ros.sim.rooms import RoomWorld
from etuner_ros.sim.scoring import region_key

from harness import Bringup, Nodes, Probe, _installed, stamp_of, wait_for, wait_until_quiet

FPS, PER_SCENARIO, SCENARIOS = 30.0, 6, 7
ROOMS = {"fps": FPS, "frames_per_scenario": PER_SCENARIO, "seed": 3, "world": "rooms",
         "image_reliability": "reliable"}  # 42 frames, 1.4 s
NS = f"/rooms_test_{os.getpid()}"  # a namespace of our own: other runs' sim nodes stay out


@pytest.fixture
def probe() -> Iterator[Probe]:
    yield (p := Probe("rooms_test_probe", namespace=NS))
    p.close()


@pytest.fixture
def sut() -> Iterator[Nodes]:
    yield (n := Nodes(NS))
    n.close()



def _box(d: Detection) -> tuple[int, int, int, int]:
    return tuple(box_of(d.bbox))


def test_rooms_camera_and_detector_publish_every_object_and_boxes_with_the_image_header(
        probe: Probe, sut: Nodes) -> None:
    images = probe.collect(Image, "image", image_qos("reliable", depth=60))
    truths = probe.collect(SimGroundTruth, "sim/ground_truth", reliable_qos(60))
    regions = probe.collect(DetectionArray, "regions", reliable_qos(60))
    diags = probe.collect(DiagnosticArray, "/diagnostics", 50)
    finished = probe.collect(Bool, f"{NS}/sim_camera/finished", latched_qos())
    det = sut.add(SimDetectorNode, seed=2, false_rate=1.0)
    cam = sut.add(SimCameraNode, **ROOMS)
    wait_for(lambda: finished, 15.0, "the end of the stream")
    total = PER_SCENARIO * SCENARIOS
    # Messages sent before a subscription is matched are lost (volatile QoS): on a busy machine
    # that can be the first half second, 15 frames at 30 fps. Everything after must arrive.
    wait_for(lambda: det.frames >= total - 15 and len(regions) >= det.frames - 15
             and len(images) >= total - 15, 5.0, "the boxes of most frames")

    world = RoomWorld(3, image_size=(128, 96))
    expected = {f.index: f for f in world.stream(PER_SCENARIO)}
    detector = SimDetector(2, false_rate=1.0)
    truth_by_stamp = {stamp_of(t): t for t in truths}
    boxes_by_stamp = {stamp_of(r): r for r in regions}
    seen_objects = false_boxes = 0
    checked = 0
    for img in images:
        if stamp_of(img) not in truth_by_stamp or stamp_of(img) not in boxes_by_stamp:
            continue  # one of the three sent before the probe's subscription matched
        checked += 1
        truth = truth_by_stamp[stamp_of(img)]
        frame = expected[truth.frame_index]
        assert img.header == truth.header
        assert np.array_equal(image_to_rgb(img), frame.image)
        # Every object in view, far to near, with its id, class, visible box and share.
        assert [(o.object_id, o.class_name, tuple(box_of(o.box))) for o in truth.objects] == \
            [(o.object_id, o.label, o.box) for o in frame.objects]
        assert [o.object_id for o in truth.hidden] == [o.object_id for o in frame.hidden]
        assert truth.class_name == (frame.objects[-1].label if frame.objects else "")
        assert (truth.width, truth.height, truth.scenario) == (128, 96, frame.scenario)
        seen_objects += len(frame.objects)

        boxes = boxes_by_stamp[stamp_of(img)]  # sim_detector's answer, same header
        assert boxes.header == img.header
        want = detector.detect(frame)  # over DDS exactly what it gives on the rendered frame
        assert [(_box(d), d.class_name, d.upstream_id) for d in boxes.detections] == \
            [(d.box, d.name, d.upstream_id) for d in want]
        assert [d.score for d in boxes.detections] == pytest.approx([d.score for d in want])
        false_boxes += sum(d.truth_id is None for d in want)
    assert checked >= total - 20 and seen_objects > 2 * checked and false_boxes > 10
    assert cam.frames_sent == total and det.frames >= len(regions)
    assert det.false_boxes >= false_boxes and det.boxes >= seen_objects * 0.6

    status = wait_for(lambda: [s for d in diags for s in d.status
                               if s.hardware_id == f"{NS}/sim_detector"], 3.0, "diagnostics")
    assert {"frames", "boxes", "false_boxes", "misses", "objects"} <= {
        kv.key for kv in status[-1].values}


def test_caregiver_labels_regions_by_index_and_never_a_false_box(probe: Probe,
                                                                   sut: Nodes) -> None:
    """The Probe plays perception on SimDetector's boxes (published in reverse order, so an
    index into its own array is checked): right in even scenarios, wrong in odd ones."""
    order = [s.name for s in RoomWorld(3).scenarios]
    detector = SimDetector(2, false_rate=1.0)
    sent: dict[tuple[int, int], tuple[SimGroundTruth, list, bool]] = {}
    corrections = probe.collect(LabelCorrection, "corrections", reliable_qos(200))
    det_pub = probe.publisher(DetectionArray, "detections", reliable_qos(60))

    def perceive(truth: SimGroundTruth) -> None:
        pos = order.index(truth.scenario)
        right = pos % 2 == 0
        found = list(reversed(detector.detect(room_frame(truth))))
        msg = DetectionArray(header=truth.header, model_version=1 if pos < 3 else 2)
        for d in found:
            name = d.truth_label if right and d.truth_label else f"not_{d.truth_label}"
            msg.detections.append(Detection(class_name=name, score=0.7, bbox=roi(d.box)))
        sent[stamp_of(truth)] = (truth, found, right)
        det_pub.publish(msg)

    probe.node.create_subscription(SimGroundTruth, "sim/ground_truth", perceive,
                                   reliable_qos(60))
    giver = sut.add(SimCaregiverNode, seed=5, fraction=0.5, confirm_fraction=1.0,
                    source="rooms_giver")
    wait_for(lambda: det_pub.get_subscription_count() > 0, 5.0, "caregiver subscription")
    cam = sut.add(SimCameraNode, **ROOMS)
    wait_for(lambda: cam.finished, 15.0, "end of the stream")
    wait_for(lambda: giver.paired >= len(sent) - 10 and len(sent) >= cam.frames_sent - 10,
             5.0, "caregiver pairing most frames")
    wait_for(lambda: len(corrections) >= giver.corrections + giver.confirmations, 3.0,
             "every correction published")

    replay = Caregiver(0.5, 5, 1.0).feedback  # its choice depends on (frame, object) only
    expected = set()
    for stamp, (truth, found, _) in sent.items():
        for i, d in enumerate(found):
            if d.truth_id is not None and replay(d.truth_label, None,
                                                 key=region_key(truth.frame_index, d.truth_id)):
                expected.add((stamp, i))
    got = {(stamp_of(c), c.detection_index) for c in corrections}
    assert got <= expected and len(got) >= len(expected) - 30
    assert 0.3 < len(got) / sum(d.truth_id is not None for _, f, _ in sent.values()
                                for d in f) < 0.7, "fraction 0.5 of objects roughly respected"
    for c in corrections:
        truth, found, right = sent[stamp_of(c)]
        d = found[c.detection_index]
        assert d.truth_id is not None, "a false box was labelled"
        assert c.true_class == d.truth_label and c.header == truth.header
        assert c.has_box and tuple(box_of(c.box)) == d.box
        assert c.confirms is right and c.source == "rooms_giver"

    summary = giver.accuracy_summary()
    regions = summary["regions"]
    per = regions["per_scenario"]
    assert {n: t["accuracy"] for n, t in per.items()} == {n: float(n in order[::2]) for n in per}
    matched = sum(d.truth_id is not None for _, f, _ in sent.values() for d in f)
    assert matched - 60 <= regions["regions"] <= matched  # a few frames may go unpaired
    assert regions["false_boxes"] > 10 and regions["missed_objects"] > 0
    assert regions["region_corrections"] == giver.corrections + giver.confirmations
    assert [s[0] for s in regions["segments"]] == [n for n in order if n in per]
    assert summary["per_version"][1]["frames"] > 0  # frames: every covered object right


def test_sim_detector_refuses_bad_parameters(sut: Nodes) -> None:
    for name, value in [("miss_rate", 1.5), ("false_rate", -1.0), ("jitter", 0.6),
                        ("small_side", 0.0)]:
        with pytest.raises(ParameterError, match=name):
            sut.add(SimDetectorNode, **{name: value})
    with pytest.raises(ParameterError, match="world"):
        sut.add(SimCameraNode, world="garden")


def test_sim_detector_executable_exits_cleanly(tmp_path) -> None:
    """Ctrl-C: exit 0 without a traceback; a bad parameter: exit 2 with the reason."""
    exe = _installed("sim_detector")
    proc = subprocess.Popen([sys.executable, exe], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    wait_for(lambda: "detecting with seed" in "".join(lines), 20.0, "sim_detector to start")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 0 and "Traceback" not in "".join(lines), "".join(lines)
    res = subprocess.run([sys.executable, exe, "--ros-args", "-p", "miss_rate:=2.0"],
                         capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr + res.stdout
    assert "miss_rate" in res.stderr + res.stdout


def test_bringup_world_rooms_end_to_end(tmp_path: Path) -> None:
    """bringup --sim --world rooms: perception recognises each of sim_detector's boxes, the
    caregiver names regions by index, the collector stores them (none rejected)."""
    ns = f"rooms_e2e_{os.getpid()}"
    torch.manual_seed(0)
    names = RoomWorld(3).all_class_names()
    ckpt = save_checkpoint(tmp_path / "base.pt", ModelBundle(
        build_model("mobilenet_v3_small", len(names)), "mobilenet_v3_small", names, 1, 32))
    params = tmp_path / "overlay.yaml"
    params.write_text(
        f"/**:\n  ros__parameters:\n    data_dir: '{tmp_path}'\n"
        "/**/tuner:\n  ros__parameters:\n    policy: none\n"
        "/**/perception:\n  ros__parameters:\n    image_reliability: reliable\n"
        "    image_queue_depth: 20\n    region_timeout_s: 3.0\n"
        "/**/label_collector:\n  ros__parameters:\n    image_reliability: reliable\n"
        "/**/sim_caregiver:\n  ros__parameters:\n    fraction: 0.5\n"
        "/**/sim_detector:\n  ros__parameters:\n    false_rate: 0.5\n"
        "/**/sim_camera:\n  ros__parameters:\n    fps: 8.0\n    frames_per_scenario: 8\n"
        "    image_reliability: reliable\n    seed: 3\n")
    probe = Probe("rooms_e2e_probe", namespace=ns)
    truths = probe.collect(SimGroundTruth, "sim/ground_truth", reliable_qos(100))
    boxes = probe.collect(DetectionArray, "regions", reliable_qos(100))
    dets = probe.collect(DetectionArray, "detections", reliable_qos(100))
    corrections = probe.collect(LabelCorrection, "corrections", reliable_qos(200))
    diags = probe.collect(DiagnosticArray, "/diagnostics", reliable_qos(100))
    finished = probe.collect(Bool, f"/{ns}/sim_camera/finished", latched_qos())
    sut = Bringup(tmp_path / "bringup.log", "--sim", "--world", "rooms", "--params-file",
                  str(params), "--checkpoint", str(ckpt), "--namespace", ns)
    try:
        wait_for(lambda: sut.check() or finished, 120, "the rooms stream to end")
        # Perception answers what reached it: wait until its answers stop coming. How many it
        # answered is checked below (most frames; on a loaded machine a few are lost before
        # inference, which perception counts on /diagnostics).
        wait_until_quiet(lambda: len(dets), 2.0, 30, "perception's answers")
        sut.check()

        def collector() -> dict[str, str]:
            got = [s for d in diags for s in d.status if s.hardware_id == f"/{ns}/label_collector"]
            return {kv.key: kv.value for kv in got[-1].values} if got else {}
        n_corr = len(corrections)
        wait_for(lambda: int(collector().get("stored", 0)) + int(collector().get("held", 0))
                 >= n_corr > 0, 15, "the collector storing the corrections")
        assert int(collector().get("rejected", 0)) == 0, collector()
    finally:
        probe.close()
        code = sut.stop()
    assert code == 0, sut.log()[-3000:]

    # The probe may miss what was sent before its subscriptions matched (under load, the first
    # seconds of the 7 s stream): compare what it got.
    truth_at = {stamp_of(t): t for t in truths}
    boxes_at = {stamp_of(b): b for b in boxes}
    dets_at = {stamp_of(d): d for d in dets}
    both = [dets_at[k] for k in dets_at if k in boxes_at]
    assert len(both) >= len(dets) - 8 and len(dets) >= 20, (len(both), len(dets))
    answered = 0
    for out in both:  # one Detection per sim_detector box, same order, upstream fields kept
        upstream = boxes_at[stamp_of(out)]
        assert [_box(d) for d in out.detections] == [_box(d) for d in upstream.detections]
        assert [d.upstream_class for d in out.detections] == \
            [d.class_name for d in upstream.detections]
        assert [d.upstream_id for d in out.detections] == \
            [d.upstream_id for d in upstream.detections]
        assert all(d.class_name in names for d in out.detections)
        answered += len(out.detections)
    assert answered > len(both)  # several regions per frame
    named = [c for c in corrections if stamp_of(c) in dets_at and stamp_of(c) in truth_at]
    assert len(named) >= len(corrections) - 8 and named
    for c in named:  # the region named covers an object of that class
        region = dets_at[stamp_of(c)].detections[c.detection_index]
        truth = truth_at[stamp_of(c)]
        assert tuple(box_of(c.box)) == _box(region)
        best = max(truth.objects, key=lambda o: iou(_box(region), tuple(box_of(o.box))))
        assert best.class_name == c.true_class
        assert iou(_box(region), tuple(box_of(best.box))) >= 0.5
