"""Issue 8, end to end over real DDS: corrections that name one region of frames with three teach
the model that object. perception (``region_source: topic``), label collector and tuner
(``policy: etuner``, rounds only when forced) in a bringup subprocess; this test plays the
camera, the upstream detector and the caregiver."""

from __future__ import annotations

import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from test_pipeline import CLASSES, make_checkpoint

from etuner_ros.core.store import SampleStore
from etuner_ros.msg import Detection, DetectionArray, LabelCorrection, ModelInfo
from etuner_ros.ros.image import rgb_to_image
from etuner_ros.ros.qos import corrections_qos, image_qos, latched_qos, reliable_qos

from harness import Bringup, Probe, wait_for

W, H = 96, 64
BOXES = [(4, 8, 24, 24), (36, 20, 24, 24), (68, 8, 24, 24)]  # region 1 holds "the object"
# Three looks: the object a caregiver names (a white cross on red) and two others.
LOOKS = {0: ((40, 160, 40), None), 1: ((200, 30, 30), (255, 255, 255)), 2: ((40, 40, 200), None)}


def scene(rng: np.random.Generator) -> np.ndarray:
    """A grey room with three objects at BOXES, each a few pixels off its usual place."""
    img = np.clip(rng.normal(110, 15, (H, W, 3)), 0, 255).astype(np.uint8)
    for i, (x, y, w, h) in enumerate(BOXES):
        colour, cross = LOOKS[i]
        dx, dy = rng.integers(-2, 3, 2)
        x0, y0 = x + 3 + dx, y + 3 + dy
        img[y0:y0 + h - 6, x0:x0 + w - 6] = np.clip(
            rng.normal(0, 10, (h - 6, w - 6, 3)) + colour, 0, 255)
        if cross is not None:
            img[y0 + h // 2 - 5:y0 + h // 2 - 1, x0 + 2:x0 + w - 8] = cross
            img[y0 + 2:y0 + h - 8, x0 + w // 2 - 5:x0 + w // 2 - 1] = cross
    return img


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    d = tmp_path_factory.mktemp("regions_learning")
    ckpt = make_checkpoint(d / "base.pt", 1)
    overlay = d / "overlay.yaml"
    overlay.write_text(
        f"/**:\n  ros__parameters:\n    data_dir: '{d}'\n"
        "/**/tuner:\n  ros__parameters:\n    policy: etuner\n    poll_period_s: 0.2\n"
        "    lazytune.min_labels: 100000\n    lazytune.batch_labels: 100000\n"
        "    lazytune.max_labels: 100000\n    lazytune.max_wait_s: 86400.0\n"
        "    etuner.adapt_shift: 100.0\n    holdout_fraction: 0.0\n"
        # A random starting model and a few dozen crops: a larger step than on a robot, so
        # one forced round shows the plumbing learns (the benchmark measures learning).
        "    learning_rate: 0.002\n    epochs: 8\n"
        "/**/label_collector:\n  ros__parameters:\n    image_reliability: reliable\n"
        "    image_queue_depth: 50\n"
        "/**/perception:\n  ros__parameters:\n    image_reliability: reliable\n"
        "    image_queue_depth: 50\n    region_source: topic\n")
    sut = Bringup(d / "bringup.log", "--params-file", str(overlay), "--checkpoint", str(ckpt),
                  "--namespace", "rl")
    probe = Probe("rl_probe", namespace="rl")
    ctx = {"dir": d, "sut": sut, "probe": probe, "sec": 2000,
           "dets": probe.collect(DetectionArray, "detections", reliable_qos(200)),
           "info": probe.collect(ModelInfo, "model_info", latched_qos()),
           "img": probe.publisher(Image, "image", image_qos("reliable", 50)),
           "boxes": probe.publisher(DetectionArray, "regions", reliable_qos(50)),
           "cor": probe.publisher(LabelCorrection, "corrections", corrections_qos())}
    try:
        wait_for(lambda: sut.check() or ctx["info"], 90, "perception's model_info")
        yield ctx
    finally:
        probe.close()
        code = sut.stop()
        print(sut.log()[-4000:])
        assert code == 0, f"bringup exited with {code}"


def show(ctx, rng: np.random.Generator) -> tuple[Time, DetectionArray]:
    """One frame and the detector's three boxes for it; perception's answer."""
    ctx["sec"] += 1
    stamp = Time(sec=ctx["sec"])
    header = Header(stamp=stamp, frame_id="cam")
    wait_for(lambda: ctx["img"].get_subscription_count() >= 3 and
             ctx["boxes"].get_subscription_count() >= 1, 30, "subscribers")
    ctx["img"].publish(rgb_to_image(scene(rng), header))
    ctx["boxes"].publish(DetectionArray(header=header, detections=[
        Detection(class_name="object", score=0.9, upstream_id=str(i),
                  bbox=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h))
        for i, (x, y, w, h) in enumerate(BOXES)]))
    time.sleep(0.03)
    return stamp, wait_for(lambda: [d for d in ctx["dets"] if d.header.stamp == stamp], 30,
                           f"detections for {stamp.sec}")[0]


def test_corrections_of_one_region_teach_the_model_that_object(system):
    rng = np.random.default_rng(0)
    _, before = show(system, rng)
    assert len(before.detections) == 3
    was = before.detections[1].class_name
    target = next(c for c in CLASSES if c != was)        # what the caregiver says it is
    others = [c for c in CLASSES if c != target]
    n = 16
    for _ in range(n):  # the caregiver names region 1 by index, the others by box
        stamp, _ = show(system, rng)
        header = Header(stamp=stamp, frame_id="cam")
        system["cor"].publish(LabelCorrection(header=header, true_class=target,
                                              detection_index=1, source="test"))
        for i in (0, 2):
            x, y, w, h = BOXES[i]
            system["cor"].publish(LabelCorrection(
                header=header, true_class=others[i // 2], has_box=True, source="test",
                box=RegionOfInterest(x_offset=x + 1, y_offset=y, width=w, height=h - 1)))
    db = SampleStore(system["dir"] / "samples.db")
    wait_for(lambda: db.count_labelled() >= 3 * n, 60, f"{3 * n} stored crops")
    crops = db.labelled_since(0)
    assert {s.image.shape[:2] for s in crops} == {(28, 28)}  # the 24 px boxes + 10 % context
    assert sum(s.label == target and s.detection_index == 1 for s in crops) == n
    version = system["info"][-1].version
    res = system["probe"].call(Trigger, "tuner/force_tune", Trigger.Request(), timeout=60)
    assert res.success, res.message
    wait_for(lambda: [i for i in system["info"] if i.version > version], 180,
             "the round's model swapped in")
    after = [show(system, rng)[1] for _ in range(5)]
    assert {a.model_version for a in after} == {system["info"][-1].version}
    named = [a.detections[1].class_name for a in after]
    assert named.count(target) >= 4, f"region 1 was {was!r}, taught {target!r}, now {named}"
