"""The simulated truth as ``SimGroundTruth`` carries it, both ways.

sim_camera turns a rendered frame (one-object ``world.Frame`` or ``rooms.RoomFrame``) into the
message; sim_detector turns the message back into what ``SimDetector.detect`` reads, and
sim_caregiver into the truth objects it scores regions against. Only this module knows the
field names, so the three nodes stay thin and agree on them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import Header

from etuner_ros.core.regions import Box
from etuner_ros.msg import SimGroundTruth, SimObject
from etuner_ros.sim.rooms import RoomFrame, RoomObject
from etuner_ros.sim.scoring import TruthObject


def roi(box: tuple[int, int, int, int]) -> RegionOfInterest:
    """An ``(x, y, w, h)`` pixel box as a ``RegionOfInterest``."""
    x, y, w, h = (int(v) for v in box)
    return RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h)


def box_of(r: RegionOfInterest) -> Box:
    """A ``RegionOfInterest`` as an ``(x, y, w, h)`` box."""
    return Box(int(r.x_offset), int(r.y_offset), int(r.width), int(r.height))


def _sim_object(o: RoomObject) -> SimObject:
    return SimObject(object_id=int(o.object_id), class_name=str(o.label), box=roi(o.box),
                     visible=float(o.visible))


def _room_object(o: SimObject) -> RoomObject:
    return RoomObject(int(o.object_id), str(o.class_name), tuple(box_of(o.box)),
                      float(o.visible))


def truth_message(frame: Any, header: Header, scenario: str) -> SimGroundTruth:
    """The truth of one rendered frame. A room frame carries every object (far to near, so the
    nearest last) and, as ``class_name``, the nearest object's class ("" when none is in view);
    a one-object frame its object's class and no objects."""
    msg = SimGroundTruth(header=header, scenario=scenario, frame_index=int(frame.index),
                         width=int(frame.image.shape[1]), height=int(frame.image.shape[0]))
    if isinstance(frame, RoomFrame):
        msg.objects = [_sim_object(o) for o in frame.objects]
        msg.hidden = [_sim_object(o) for o in frame.hidden]
        msg.class_name = str(frame.objects[-1].label) if frame.objects else ""
    else:
        msg.class_name = str(frame.label)
    return msg


def has_regions(msg: SimGroundTruth) -> bool:
    """Whether this truth is scored per region: it lists objects (rooms world), or names no
    class at all (a room with nothing visible in it: every region there is a false box). A
    one-object frame always names its class and lists no objects."""
    return bool(msg.objects) or not msg.class_name


def room_frame(msg: SimGroundTruth) -> RoomFrame:
    """What ``SimDetector.detect`` reads from a frame: index, objects, hidden objects and the
    image's size. The image is a zero-copy stand-in of the right shape (the detector never looks
    at pixels, only at the truth, as a simulated detector should)."""
    shape = (max(1, int(msg.height)), max(1, int(msg.width)), 3)
    image = np.broadcast_to(np.zeros((), np.uint8), shape)
    return RoomFrame(int(msg.frame_index), image, str(msg.scenario),
                     tuple(_room_object(o) for o in msg.objects),
                     tuple(_room_object(o) for o in msg.hidden))


def truth_objects(msg: SimGroundTruth) -> list[TruthObject]:
    """The truth objects a region can cover (hidden ones are not: nothing to recognise)."""
    return [TruthObject(int(o.object_id), str(o.class_name), box_of(o.box)) for o in msg.objects]
