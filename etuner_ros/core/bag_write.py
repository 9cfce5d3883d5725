"""Writing ROS 2 bags of camera frames and corrections without ROS (``rosbags``).

Apart from ``core/bag.py`` because nothing on the robot writes bags (``ros2 bag record`` does):
this is for tests, which make the bags the reader, the replay node and the benchmark are checked
on, and for turning frames recorded some other way into a bag. It writes with the same
typestore and message types the reader reads with, so what it writes is what a recorder of
this package's topics would have written.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer

from etuner_ros.core.bag import COMPRESSED, CORRECTION, IMAGE, BagError, typestore


def write_bag(path: str | Path, images: Iterable[tuple[int, int, np.ndarray]],
              corrections: Iterable[tuple] = (), *,
              camera_topic: str = "/camera/color/image_raw",
              corrections_topic: str = "/corrections", frame_id: str = "camera_optical_frame",
              storage: str = "sqlite3", compressed: bool = False) -> Path:
    """Write a bag of rgb8 ``(time_ns, stamp_ns, rgb)`` frames (PNG-compressed with
    ``compressed``) and ``(time_ns, stamp_ns, true_class, confirms)`` corrections, optionally
    followed by the region they name: ``box`` ((x, y, w, h) or None), ``detection_index``."""
    store = typestore()
    if CORRECTION not in store.fielddefs:
        raise BagError("etuner_ros message definitions (msg/*.msg) not found")
    T = store.types
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]

    def header(stamp_ns: int) -> object:
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
            sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000), frame_id=frame_id)

    entries: list[tuple[int, int, object, str]] = []  # time, order, message, type
    for t, s, rgb in images:
        if compressed:
            ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            assert ok
            msg = T[COMPRESSED](header=header(s), format="png", data=buf.reshape(-1))
            entries.append((t, len(entries), msg, COMPRESSED))
        else:
            h, w = rgb.shape[:2]
            msg = T[IMAGE](header=header(s), height=h, width=w, encoding="rgb8", is_bigendian=0,
                           step=w * 3, data=np.ascontiguousarray(rgb, np.uint8).reshape(-1))
            entries.append((t, len(entries), msg, IMAGE))
    for t, s, cls, confirms, *region in corrections:
        box = region[0] if region else None
        index = int(region[1]) if len(region) > 1 else -1
        x, y, w, h = box or (0, 0, 0, 0)
        roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=x, y_offset=y, height=h, width=w,
                                                     do_rectify=False)
        msg = T[CORRECTION](header=header(s), true_class=cls, detection_index=index,
                            has_box=box is not None, box=roi, source="bag", confirms=confirms)
        entries.append((t, len(entries), msg, CORRECTION))
    entries.sort(key=lambda e: (e[0], e[1]))
    with Writer(Path(path), version=9, storage_plugin=plugin) as writer:
        conns = {}
        for _, _, _, ty in entries:
            if ty not in conns:
                topic = corrections_topic if ty == CORRECTION else camera_topic
                conns[ty] = writer.add_connection(topic, ty, typestore=store)
        for t, _, msg, ty in entries:
            writer.write(conns[ty], t, bytes(store.serialize_cdr(msg, ty)))
    return Path(path)
