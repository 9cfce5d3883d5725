"""Home recall over real DDS: perception answers with the base checkpoint's model while the
camera's scene matches the one it was trained on, with the served model elsewhere, and the
caregiver's corrections veto it (bringup subprocess, loopback DDS)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from builtin_interfaces.msg import Time
from std_msgs.msg import Header
from test_faults_perception import perception_status, start, stop, swap, values
from test_pipeline import CLASSES, make_checkpoint

from etuner_ros.core.home_recall import HomeSignature
from etuner_ros.msg import DetectionArray, LabelCorrection
from etuner_ros.ros.image import rgb_to_image
from etuner_ros.ros.qos import corrections_qos

from harness import wait_for

W, H = 64, 48


def room(rng: np.random.Generator, light: float) -> np.ndarray:
    """A frame of a room: a wall lit by ``light``, an object of any colour in the middle."""
    img = np.full((H, W, 3), 120.0 * light)
    img[12:36, 20:44] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 3.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    d = tmp_path_factory.mktemp("home")
    base = make_checkpoint(d / "base.pt", 1)
    data = torch.load(base, weights_only=True)  # as sim/pretrain saves it: the training frames'
    rng = np.random.default_rng(0)
    data["extra"] = {"home_signature": HomeSignature.from_images(
        [room(rng, 1.0) for _ in range(64)]).to_dict()}
    torch.save(data, base)
    sut, probe, ctx = start(d, "home", overlay="    home_window: 2\n", base=base)
    ctx["fix"] = probe.publisher(LabelCorrection, "corrections", corrections_qos())
    ctx["rng"] = np.random.default_rng(1)
    res = swap(ctx, make_checkpoint(d / "v7.pt", 7), 7)  # a tuned model serves
    assert res.success, res.message
    try:
        yield ctx
    finally:
        stop(sut, probe)


def show(ctx, light: float) -> DetectionArray:
    """One frame of the room under ``light``; perception's answer to it."""
    ctx["sec"] += 1
    stamp = Time(sec=ctx["sec"])
    wait_for(lambda: ctx["img"].get_subscription_count() >= 1, 30, "perception subscribed")
    ctx["img"].publish(rgb_to_image(room(ctx["rng"], light), Header(stamp=stamp,
                                                                     frame_id="cam")))
    return wait_for(lambda: [d for d in ctx["dets"] if d.header.stamp == stamp], 30,
                    f"an answer to frame {stamp.sec}")[0]


def test_the_base_model_answers_at_home_and_the_served_one_elsewhere(system):
    assert [show(system, 0.3).model_version for _ in range(3)] == [7, 7, 7]
    show(system, 1.0)  # the window of two still holds a dark frame
    home = [show(system, 1.0) for _ in range(3)]
    assert [a.model_version for a in home] == [1, 1, 1]
    assert {d.model_version for a in home for d in a.detections} == {1}
    show(system, 0.3)
    assert show(system, 0.3).model_version == 7
    v = values(perception_status(system))
    assert v["home.enabled"] == "True" and int(v["home.answered"]) >= 3, v


def test_corrections_veto_the_base_model_until_the_camera_left(system):
    show(system, 1.0)
    answers = [show(system, 1.0) for _ in range(4)]
    assert {a.model_version for a in answers} == {1}
    wait_for(lambda: system["fix"].get_subscription_count() >= 1, 30, "corrections matched")
    for a in answers:  # the caregiver: every one of them wrong
        wrong = a.detections[0].class_name
        system["fix"].publish(LabelCorrection(
            header=a.header, true_class=next(c for c in CLASSES if c != wrong)))
    wait_for(lambda: int(values(perception_status(system)).get("home.vetoes", 0)) == 1, 30,
             "the veto")
    assert show(system, 1.0).model_version == 7  # still here, but vetoed
    show(system, 0.3)                             # the camera leaves the vetoed scene
    assert show(system, 0.3).model_version == 7
    show(system, 1.0)
    assert show(system, 1.0).model_version == 1  # back home: the base answers again
    v = values(perception_status(system))
    assert int(v["home.labels"]) == 4 and v.get("home.labels_ignored", "0") == "0", v


def test_a_checkpoint_without_a_signature_turns_it_off_and_says_so(tmp_path):
    sut, probe, ctx = start(tmp_path, "home_off")
    try:
        v = wait_for(lambda: (x := values(perception_status(ctx))) and "home.off" in x and x,
                     30, "home.off on /diagnostics")
        assert v["home.enabled"] == "False" and "home signature" in v["home.off"], v
    finally:
        stop(sut, probe)
    assert "home recall off" in sut.log()
