"""Corrections that name a region of a frame, over real DDS with the real label collector.

The collector's own executable runs in a subprocess; the test's probe publishes a frame and the
DetectionArray perception would publish for it (three regions), then corrections by detection
index, by box and by neither. The store must hold each named region's crop (cut as perception
cuts it, ``core.regions.crop``) with its label, box and the prediction made for that region;
every unusable correction is rejected and counted by reason on ``/diagnostics``.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from collector_burst import System, stamps_from
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import Header

from etuner_ros.core.regions import CROP_CONTEXT, Box, crop
from etuner_ros.core.store import SampleStore
from etuner_ros.msg import Detection, DetectionArray, LabelCorrection
from etuner_ros.ros.image import rgb_to_image

from harness import wait_for

KEY = 1_000_000_000
W, H = 160, 120
# (class predicted by perception, box): the three regions perception published for a frame
REGIONS = [("cup", Box(10, 10, 40, 30)), ("book", Box(60, 20, 30, 60)),
           ("bottle", Box(100, 70, 50, 40))]


def _key(t: Time) -> int:
    return t.sec * KEY + t.nanosec


def _roi(x: int, y: int, w: int, h: int) -> RegionOfInterest:
    return RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h)


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    s = System(tmp_path_factory.mktemp("collector_regions"), alone=True, namespace="regions")
    try:
        s.wait_ready()
        wait_for(lambda: s.det_pub.get_subscription_count() >= 1, 60, "detections subscriber")
        yield s
    finally:
        code = s.close()
        print(s.sut.log()[-3000:])
        assert code == 0, f"label_collector exited with {code}"


def _counts(s: System) -> Counter[str]:
    return Counter({k: int(v) for k, v in s.values().items()
                    if not k.startswith("_") and v.lstrip("-").isdigit()})


def _settle(s: System, before: Counter[str], n: int) -> Counter[str]:
    """Wait until ``n`` more corrections are accounted for; return the counter deltas."""
    wait_for(lambda: s.sut.check() or s.settled(before["received"] + n), 60,
             f"{n} corrections accounted for")
    now = _counts(s)
    return Counter({k: now[k] - before[k] for k in now})


def _frame(s: System, t: Time) -> np.ndarray:
    """Publish a random frame with stamp ``t``; return its pixels once the collector has it."""
    rgb = s.rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    before = s.count("frames")
    s.img_pub.publish(rgb_to_image(rgb, Header(stamp=t, frame_id="cam")))
    wait_for(lambda: s.sut.check() or s.count("frames") > before, 30, "the frame")
    return rgb


def _detections(s: System, t: Time, regions=REGIONS) -> None:
    s.det_pub.publish(DetectionArray(header=Header(stamp=t, frame_id="cam"), model_version=1,
                                     detections=[Detection(class_name=c, score=0.8,
                                                           bbox=_roi(*b), model_version=1)
                                                 for c, b in regions]))


def _correction(t: Time, label: str, index: int = -1, box=None) -> LabelCorrection:
    msg = LabelCorrection(header=Header(stamp=t, frame_id="cam"), true_class=label,
                          detection_index=index, source="regions")
    if box is not None:
        msg.has_box, msg.box = True, _roi(*box)
    return msg


def _rows(s: System, t: Time) -> dict[tuple, object]:
    with SampleStore(s.dir / "samples.db") as st:
        return {r.box: r for r in st.labelled_since(0) if r.stamp_ns == _key(t)}


def _send(s: System, msgs: list[LabelCorrection]) -> Counter[str]:
    before = _counts(s)
    for m in msgs:
        s.cor_pub.publish(m)
    return _settle(s, before, len(msgs))


def test_regions_named_by_index_and_box_store_their_crops_and_bad_ones_are_counted(system):
    [t] = stamps_from(10_000, 1)
    rgb = _frame(system, t)
    _detections(system, t)
    # by index, before anything else: it waits for the detections if they are not there yet
    d = _send(system, [_correction(t, "book", index=0)])
    assert d["stored"] == 1, d
    d = _send(system, [
        _correction(t, "cup", box=(96, 66, 56, 46)),   # a few pixels off region 2: IoU ~0.78
        _correction(t, "cup", index=5),                # out of range
        _correction(t, "cup", box=(0, 90, 12, 12)),    # overlaps nothing published
        _correction(t, "cup"),                         # whole frame of a 3-region frame
        _correction(t, "cup", box=(10, 10, 0, 30)),    # zero size
        _correction(t, "cup", box=(500, 400, 20, 20)),  # outside the frame
    ])
    assert d["received"] == 6 and d["stored"] == 1 and d["rejected"] == 5, d
    assert d["rejected.no_region"] == 3 and d["rejected.bad_box"] == 2, d
    rows = _rows(system, t)
    assert set(rows) == {tuple(REGIONS[0][1]), tuple(REGIONS[2][1])}  # both regions kept
    for box, label, index, predicted in [(REGIONS[0][1], "book", 0, "cup"),
                                         (REGIONS[2][1], "cup", 2, "bottle")]:
        r = rows[tuple(box)]
        assert (r.label, r.detection_index, r.predicted, r.model_version) == (
            label, index, predicted, 1)
        want = crop(rgb, box, CROP_CONTEXT)
        assert r.image.shape == want.shape and r.image.shape[:2] != (H, W)
        np.testing.assert_array_equal(r.image, want)
    log = system.sut.log()
    assert "3 regions were published" in log and "detection_index 5" in log

    # the same region again: supersedes it; the other region stays
    d = _send(system, [_correction(t, "bottle", box=(11, 9, 40, 31))])
    assert d["stored"] == 1 and d["superseded"] == 1, d
    rows = _rows(system, t)
    assert {b: r.label for b, r in rows.items()} == {tuple(REGIONS[0][1]): "bottle",
                                                     tuple(REGIONS[2][1]): "cup"}


def test_correction_naming_a_region_waits_for_late_detections_or_is_counted(system):
    t, never = stamps_from(20_000, 2)
    rgb = _frame(system, t)
    _frame(system, never)
    before = _counts(system)
    system.cor_pub.publish(_correction(t, "book", index=1))
    system.cor_pub.publish(_correction(never, "book", index=1))
    wait_for(lambda: system.count("received") >= before["received"] + 2, 30, "2 received")
    time.sleep(1.0)  # longer than a whole-frame correction waits for its prediction
    assert system.count("stored") == before["stored"]  # both wait for their detections
    _detections(system, t)
    d = _settle(system, before, 2)
    assert d["stored"] == 1 and d["rejected.no_detections"] == 1, d
    [r] = _rows(system, t).values()
    assert (r.label, r.detection_index, r.predicted) == ("book", 1, "book")
    np.testing.assert_array_equal(r.image, crop(rgb, REGIONS[1][1], CROP_CONTEXT))


def test_whole_frame_correction_with_one_region_or_none(system):
    one, whole, none = stamps_from(30_000, 3)
    rgb_one, rgb_whole, rgb_none = (_frame(system, t) for t in (one, whole, none))
    _detections(system, whole, [("cup", Box(0, 0, W, H))])      # region_source "frame"
    _detections(system, one, REGIONS[1:2])                      # a detector's single box
    d = _send(system, [_correction(one, "cup", index=0)])  # both arrays are in (in order)
    assert d["stored"] == 1
    d = _send(system, [_correction(whole, "bottle"), _correction(none, "bottle")])
    assert d["stored"] == 2, d
    [r] = _rows(system, whole).values()
    assert (r.box, r.detection_index, r.predicted) == ((0, 0, W, H), 0, "cup")
    np.testing.assert_array_equal(r.image, rgb_whole)
    [r] = _rows(system, none).values()  # no detections ever: the whole frame, no prediction
    assert (r.box, r.detection_index, r.predicted) == ((0, 0, W, H), None, None)
    np.testing.assert_array_equal(r.image, rgb_none)
    d = _send(system, [_correction(one, "bottle")])  # the frame's only region: that crop
    assert d["stored"] == 1 and d["superseded"] == 1, d
    [r] = _rows(system, one).values()
    assert (r.label, r.box, r.detection_index) == ("bottle", tuple(REGIONS[1][1]), 0)
    np.testing.assert_array_equal(r.image, crop(rgb_one, REGIONS[1][1], CROP_CONTEXT))


def test_unlabelled_reservoir_keeps_the_crops_perception_classified(system):
    """Every unlabelled_every_n-th frame waits for its detections and is kept as perception
    classified it: one crop per published box (whether the detections come after the frame or
    before it), nothing for an empty detection array, and a frame whose detections never come
    is counted, not kept whole."""

    def set_every_n(n: int) -> None:
        req = SetParameters.Request(
            parameters=[Parameter("unlabelled_every_n", value=n).to_parameter_msg()])
        assert system.probe.call(SetParameters, "label_collector/set_parameters",
                                 req).results[0].successful

    def kept(t: Time) -> list[np.ndarray]:
        with SampleStore(system.dir / "samples.db") as st:
            return [r.image for r in st.unlabelled_since(0) if r.stamp_ns == _key(t)]

    a, b, empty, *never = stamps_from(40_000, 12)
    set_every_n(1)
    try:
        before = system.count("unlabelled_kept")
        rgb_a = _frame(system, a)
        _detections(system, a)  # after its frame
        _detections(system, b)  # before its frame
        time.sleep(0.5)
        rgb_b = _frame(system, b)
        _detections(system, empty, regions=[])
        time.sleep(0.5)
        _frame(system, empty)
        wait_for(lambda: system.count("unlabelled_kept") >= before + 6, 30, "six crops kept")
        for t, rgb in ((a, rgb_a), (b, rgb_b)):
            got = sorted(kept(t), key=lambda im: im.shape)
            want = sorted((crop(rgb, box, CROP_CONTEXT) for _, box in REGIONS),
                          key=lambda im: im.shape)
            assert len(got) == 3
            for g, w in zip(got, want, strict=True):
                np.testing.assert_array_equal(g, w)
        assert kept(empty) == []
        missing = system.count("unlabelled_no_detections")
        for t in never:  # no detections ever: the oldest waiting frame is let go and counted
            _frame(system, t)
        wait_for(lambda: system.count("unlabelled_no_detections") > missing, 30,
                 "a frame without detections counted")
        assert system.count("unlabelled_kept") == before + 6
    finally:
        set_every_n(0)
