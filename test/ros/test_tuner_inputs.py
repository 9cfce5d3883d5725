"""The tuner node's inputs: camera frames reach the engine as perception cut them (the crops of
the boxes in ``detections`` of the same stamp), whole when perception recognised the whole frame
or said nothing about it; a frame whose boxes are late waits one tick for them."""

from __future__ import annotations

import numpy as np
import pytest
import rclpy
import torch
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import Header

from etuner_ros.core.model import ModelBundle, build_model
from etuner_ros.core.store import SampleStore
from etuner_ros.core.tuner import ContinualTuner, TunerConfig
from etuner_ros.msg import Detection, DetectionArray
from etuner_ros.ros.guard import CallbackGuard
from etuner_ros.ros.image import rgb_to_image
from etuner_ros.ros.tuner_inputs import TunerInputs

W, H = 128, 96
BOX = (40, 30, 32, 24)  # the bright object; everything else is dark


@pytest.fixture
def inputs(tmp_path):
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("tuner_inputs_test", context=ctx)
    torch.manual_seed(0)
    engine = ContinualTuner(ModelBundle(build_model("mobilenet_v3_small", 2),
                                        "mobilenet_v3_small", ["a", "b"], 1, 32),
                            "adabn", TunerConfig())
    store = SampleStore(tmp_path / "samples.db")
    yield TunerInputs(store, 0, 0, 16, CallbackGuard(node), node.get_logger()), engine
    store.close()
    node.destroy_node()
    rclpy.shutdown(context=ctx)


def _frame() -> np.ndarray:
    rgb = np.full((H, W, 3), 10, np.uint8)
    x, y, w, h = BOX
    rgb[y:y + h, x:x + w] = 240
    return rgb


def _header(t: int) -> Header:
    h = Header(frame_id="camera")
    h.stamp.sec = t
    return h


def _detections(t: int, boxes: list[tuple[int, int, int, int]]) -> DetectionArray:
    return DetectionArray(header=_header(t), detections=[
        Detection(class_name="a", bbox=RegionOfInterest(x_offset=x, y_offset=y, width=w,
                                                        height=h)) for x, y, w, h in boxes])


def _fed(engine: ContinualTuner, before: int) -> list[float]:
    """Mean pixel value of each frame the engine got since it held ``before``."""
    pool = list(engine.frames._camera)[before:]
    return [float(f.mean()) for _, f in pool]


def test_frames_reach_the_engine_as_perception_cut_them(inputs):
    inp, engine = inputs
    image = _frame()
    # frame mode: one whole-frame box -> the whole (mostly dark) frame
    inp.add_frame(rgb_to_image(image, _header(1)))
    inp.add_detections(_detections(1, [(0, 0, W, H)]))
    inp.feed(engine, 1.0)
    whole = _fed(engine, 0)
    assert len(whole) == 1
    # region mode: two boxes -> two crops of the bright object
    inp.add_frame(rgb_to_image(image, _header(2)))
    inp.add_detections(_detections(2, [BOX, BOX]))
    inp.feed(engine, 2.0)
    crops = _fed(engine, 1)
    assert len(crops) == 2 and min(crops) > whole[0] + 0.5
    # boxes late: the frame waits one tick, then is cut
    inp.add_frame(rgb_to_image(image, _header(3)))
    inp.feed(engine, 3.0)
    assert engine.frames.n_camera == 3
    inp.add_detections(_detections(3, [BOX]))
    inp.feed(engine, 4.0)
    assert engine.frames.n_camera == 4 and _fed(engine, 3)[0] > whole[0] + 0.5
    # boxes never come: after one tick the frame goes in whole
    inp.add_frame(rgb_to_image(image, _header(5)))
    inp.feed(engine, 5.0)
    assert engine.frames.n_camera == 4
    inp.feed(engine, 6.0)
    assert engine.frames.n_camera == 5 and _fed(engine, 4)[0] == pytest.approx(whole[0])
    # perception found nothing in a frame: nothing of it to adapt to
    inp.add_frame(rgb_to_image(image, _header(7)))
    inp.add_detections(_detections(7, []))
    inp.feed(engine, 7.0)
    inp.feed(engine, 8.0)
    assert engine.frames.n_camera == 5
