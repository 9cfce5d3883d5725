"""The three nodes end to end over real DDS: perception, label collector and tuner in a ``bringup``
subprocess, driven by a probe node in the test process."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image
from std_srvs.srv import SetBool, Trigger

from etuner_ros.core.checkpoint import save_checkpoint
from etuner_ros.core.model import ModelBundle, build_model
from etuner_ros.core.store import SampleStore
from etuner_ros.msg import DetectionArray, LabelCorrection, ModelInfo, TunerStatus
from etuner_ros.ros.image import rgb_to_image
from etuner_ros.ros.qos import image_qos, latched_qos, reliable_qos
from etuner_ros.srv import SwapWeights

from harness import Bringup, Probe, wait_for

CLASSES = ["cup", "book", "bottle"]
COLOURS = {"cup": (220, 40, 40), "book": (40, 200, 40), "bottle": (40, 40, 220),
           "walker": (230, 230, 30)}
ARCH = "mobilenet_v3_small"


def frame(label: str, rng: np.random.Generator) -> np.ndarray:
    img = np.clip(rng.normal(0, 12, (48, 64, 3)) + COLOURS[label], 0, 255)
    return img.astype(np.uint8)


def make_checkpoint(path: Path, version: int, classes: list[str] = CLASSES) -> Path:
    torch.manual_seed(version)
    bundle = ModelBundle(model=build_model(ARCH, len(classes)), arch=ARCH,
                         class_names=list(classes), version=version, input_size=32)
    return save_checkpoint(path, bundle)


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    d = tmp_path_factory.mktemp("pipeline")
    ckpt = make_checkpoint(d / "base.pt", 1)
    overlay = d / "overlay.yaml"
    overlay.write_text(
        "/**:\n  ros__parameters:\n"
        f"    data_dir: '{d}'\n"
        # etuner, the policy the benchmark measures; its own triggers are set out of reach so
        # the tests decide when a round runs (~/force_tune), and the round is etuner's.
        "/**/tuner:\n  ros__parameters:\n    policy: etuner\n    poll_period_s: 0.2\n"
        "    lazytune.min_labels: 100000\n    lazytune.batch_labels: 100000\n"
        "    lazytune.max_labels: 100000\n    lazytune.max_wait_s: 86400.0\n"
        "    etuner.adapt_shift: 100.0\n"
        # The base model is random: validate nothing, so every candidate is swapped in.
        "    holdout_fraction: 0.0\n"
        "/**/label_collector:\n  ros__parameters:\n    unlabelled_every_n: 2\n"
        # Reliable image delivery: the tests count frames, so a best-effort drop under CPU
        # load (correct behaviour for a camera) would read as a lost detection.
        "    image_reliability: reliable\n    image_queue_depth: 50\n"
        "/**/perception:\n  ros__parameters:\n    image_reliability: reliable\n"
        "    image_queue_depth: 50\n")
    sut = Bringup(d / "bringup.log", "--params-file", str(overlay), "--checkpoint", str(ckpt),
                  "--namespace", "robot")
    probe = Probe(namespace="robot")
    ctx = {"dir": d, "sut": sut, "probe": probe, "rng": np.random.default_rng(0), "stamp": 0,
           "dets": probe.collect(DetectionArray, "detections", reliable_qos(100)),
           "annotated": probe.collect(Image, "detections/image", reliable_qos(10)),
           "info": probe.collect(ModelInfo, "model_info", latched_qos()),
           "status": probe.collect(TunerStatus, "tuner/status", reliable_qos()),
           "diag": probe.collect(DiagnosticArray, "/diagnostics", reliable_qos(50)),
           "img_pub": probe.publisher(Image, "image", image_qos("reliable", 50)),
           "cor_pub": probe.publisher(LabelCorrection, "corrections", reliable_qos(100))}
    try:
        wait_for(lambda: sut.check() or ctx["info"], 60, "perception's model_info")
        wait_for(lambda: ctx["status"] and ctx["status"][-1].state == "idle", 60,
                 "tuner idle after model_info")
        yield ctx
    finally:
        probe.close()
        code = sut.stop()
        print(sut.log()[-4000:])
        assert code == 0, f"bringup exited with {code}"


def publish(ctx, label: str, correct: str | None = None, subscribers: int = 3) -> Time:
    """Publish one frame (and optionally a correction for it) once perception, the collector
    and the tuner's change detector (``subscribers``) listen; return its stamp."""
    ctx["stamp"] += 1
    stamp = Time(sec=1000 + ctx["stamp"], nanosec=123)
    img = rgb_to_image(frame(label, ctx["rng"]), _header(stamp))
    wait_for(lambda: ctx["img_pub"].get_subscription_count() >= subscribers, 30,
             "image subscribers")
    ctx["img_pub"].publish(img)
    time.sleep(0.03)  # camera-like pacing; bursts overflow a best-effort subscriber's queue
    if correct is not None:
        ctx["cor_pub"].publish(LabelCorrection(header=_header(stamp), true_class=correct,
                                               source="test", confirms=False))
    return stamp


def _header(stamp: Time):
    from std_msgs.msg import Header
    return Header(stamp=stamp, frame_id="test_cam")


def dets_for(ctx, stamp: Time) -> list[DetectionArray]:
    return [d for d in ctx["dets"] if d.header.stamp == stamp]


def store(ctx) -> SampleStore:
    return SampleStore(ctx["dir"] / "samples.db")


def test_image_in_gives_detections_with_same_header(system):
    stamp = publish(system, "cup")
    det = wait_for(lambda: dets_for(system, stamp), 20, "detections for the frame")[0]
    assert det.header.frame_id == "test_cam"
    assert det.model_version == 1
    assert det.detections[0].class_name in CLASSES
    assert det.detections[0].bbox.width == 64 and det.detections[0].bbox.height == 48
    wait_for(lambda: any(a.header.stamp == stamp for a in system["annotated"]), 20,
             "annotated image with the same header")


def test_correction_gives_a_stored_sample(system):
    before = store(system).count_labelled()
    stamp = publish(system, "book", correct="book")
    key = stamp.sec * 1_000_000_000 + stamp.nanosec
    wait_for(lambda: store(system).count_labelled() > before, 20, "a stored sample")
    sample = store(system).labelled_since(0)[-1]
    assert sample.label == "book" and sample.stamp_ns == key
    assert sample.image.shape == (48, 64, 3)


def test_unpaired_correction_is_rejected_not_lost(system):
    before = store(system).count_labelled()
    system["cor_pub"].publish(LabelCorrection(header=_header(Time(sec=5, nanosec=0)),
                                              true_class="cup", source="test"))
    time.sleep(3.0)  # longer than pairing_timeout_s
    assert store(system).count_labelled() == before
    log = system["sut"].log()
    assert "rejected correction 'cup'" in log


def test_pause_refuses_force_and_starts_no_round(system):
    probe = system["probe"]
    assert probe.call(SetBool, "tuner/pause", SetBool.Request(data=True)).success
    for i in range(6):
        publish(system, CLASSES[i % 3], correct=CLASSES[i % 3])
    res = probe.call(Trigger, "tuner/force_tune", Trigger.Request())
    assert not res.success and "paused" in res.message
    wait_for(lambda: system["status"][-1].state == "paused", 10, "paused state")
    rounds = system["status"][-1].rounds_done
    time.sleep(1.5)
    assert system["status"][-1].rounds_done == rounds
    assert probe.call(SetBool, "tuner/pause", SetBool.Request(data=False)).success


def test_force_tune_gives_round_checkpoint_swap_and_new_version(system):
    probe = system["probe"]
    for i in range(18):
        publish(system, CLASSES[i % 3], correct=CLASSES[i % 3])
    wait_for(lambda: store(system).count_labelled() >= 18, 30, "18 stored samples")
    version = system["info"][-1].version
    res = probe.call(Trigger, "tuner/force_tune", Trigger.Request())
    assert res.success, res.message
    info = wait_for(lambda: [i for i in system["info"] if i.version > version], 120,
                    "model_info of the swapped model")[-1]
    assert Path(info.checkpoint_path).exists()
    assert Path(info.checkpoint_path).parent == system["dir"] / "models"
    stamp = publish(system, "cup")
    det = wait_for(lambda: dets_for(system, stamp), 20, "detections after the swap")[0]
    assert det.model_version == info.version
    assert wait_for(lambda: system["status"][-1].rounds_done >= 1, 10, "rounds_done >= 1")


def test_a_new_class_grows_the_head_and_the_checkpoint_carries_it(system):
    probe = system["probe"]
    before = store(system).count_labelled()
    for _ in range(8):
        publish(system, "walker", correct="walker")
    wait_for(lambda: store(system).count_labelled() >= before + 8, 30, "8 walker samples")
    version = system["info"][-1].version
    res = probe.call(Trigger, "tuner/force_tune", Trigger.Request())
    assert res.success, res.message
    info = wait_for(lambda: [i for i in system["info"] if i.version > version], 120,
                    "model_info after the round with a new class")[-1]
    assert list(info.class_names) == [*CLASSES, "walker"]
    from etuner_ros.core.checkpoint import load_checkpoint
    assert load_checkpoint(info.checkpoint_path).class_names == [*CLASSES, "walker"]


def test_bad_swaps_fail_cleanly_and_old_version_keeps_serving(system):
    probe = system["probe"]
    active = system["info"][-1].version
    missing = probe.call(SwapWeights, "perception/swap_weights",
                         SwapWeights.Request(checkpoint_path="/nonexistent/x.pt", version=99))
    assert not missing.success and missing.active_version == active
    corrupt = system["dir"] / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02not a checkpoint" * 10)
    bad = probe.call(SwapWeights, "perception/swap_weights",
                     SwapWeights.Request(checkpoint_path=str(corrupt), version=99))
    assert not bad.success and bad.active_version == active
    stamp = publish(system, "bottle")
    det = wait_for(lambda: dets_for(system, stamp), 20, "detections after failed swaps")[0]
    assert det.model_version == active


def test_perception_keeps_publishing_through_a_swap(system):
    probe = system["probe"]
    target = system["info"][-1].version + 10
    ckpt = make_checkpoint(system["dir"] / "manual.pt", target,
                           classes=list(system["info"][-1].class_names))
    stamps: list[Time] = []
    stop = threading.Event()

    def stream():
        while not stop.is_set():
            stamps.append(publish(system, "cup"))
            time.sleep(0.05)

    t = threading.Thread(target=stream)
    t.start()
    try:
        time.sleep(1.0)
        t_call = time.monotonic()
        res = probe.call(SwapWeights, "perception/swap_weights",
                         SwapWeights.Request(checkpoint_path=str(ckpt), version=target))
        swap_s = time.monotonic() - t_call
        assert res.success and res.active_version == target, res.message
        time.sleep(1.0)
    finally:
        stop.set()
        t.join()

    def answers() -> dict[tuple[int, int], int]:
        return {(d.header.stamp.sec, d.header.stamp.nanosec): d.model_version
                for d in list(system["dets"])}

    # Late is not lost: on a loaded machine answers can trail the stream by seconds (reliable
    # delivery repairs, a busy executor). Wait until every frame is answered or answers stop
    # coming (none new for 3 s), instead of a fixed second.
    keys = {(x.sec, x.nanosec) for x in stamps}
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() - quiet_since < 3.0:
        n = len(keys & answers().keys())
        if n == len(keys):
            break
        if n != seen:
            seen, quiet_since = n, time.monotonic()
        time.sleep(0.1)
    got = answers()
    versions = [got.get((s.sec, s.nanosec)) for s in stamps]
    answered = [v for v in versions if v is not None]
    # What perception said meanwhile: if this fails on a loaded machine, the message tells a
    # slow swap call from frames lost in transport (counted) or in perception.
    context = f"swap call {swap_s:.1f} s; perception: {_perception_diagnostics(system)}"
    assert len(answered) >= 0.8 * len(stamps), \
        f"{len(answered)}/{len(stamps)} frames answered; {context}"
    gap = longest = 0
    for v in versions:  # no stall: never more than 5 frames (0.25 s) in a row unanswered
        gap = gap + 1 if v is None else 0
        longest = max(longest, gap)
    assert longest <= 5, f"{longest} consecutive frames unanswered around the swap; {context}"
    assert target in answered and answered[-1] == target
    first_new = answered.index(target)
    assert all(v == target for v in answered[first_new:]), "versions must not flip back"


def _perception_diagnostics(system, last: int = 4) -> str:
    """Perception's latest /diagnostics lines with their counters, for failure messages."""
    lines = [f"{st.message} {dict((kv.key, kv.value) for kv in st.values)}"
             for a in list(system["diag"]) for st in a.status if st.name.startswith("perception")]
    return " | ".join(lines[-last:]) or "no /diagnostics from perception"


def test_every_node_reports_on_diagnostics(system):
    def names():
        return {st.name.split(":")[0] for a in system["diag"] for st in a.status}

    wait_for(lambda: {"perception", "label_collector", "tuner"} <= names(), 10,
             "/diagnostics from perception, label_collector and tuner")
    perception = [st for a in system["diag"] for st in a.status
                  if st.name.startswith("perception")][-1]
    values = {kv.key: kv.value for kv in perception.values}
    assert int(values["frames"]) > 0 and "model_version" in values


def test_lifecycle_deactivate_stops_inference_and_activate_resumes_it(system):
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    probe = system["probe"]
    state = probe.call(GetState, "perception/get_state", GetState.Request())
    assert state.current_state.label == "active"
    off = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE))
    assert probe.call(ChangeState, "perception/change_state", off).success
    # inactive perception drops its camera subscription; collector and tuner still listen
    wait_for(lambda: system["img_pub"].get_subscription_count() == 2, 10, "unsubscribe")
    stamp = publish(system, "cup", subscribers=2)
    time.sleep(1.5)
    assert not dets_for(system, stamp), "an inactive perception node must not publish"
    on = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVATE))
    assert probe.call(ChangeState, "perception/change_state", on).success
    stamp = publish(system, "cup")
    wait_for(lambda: dets_for(system, stamp), 20, "detections after re-activation")
