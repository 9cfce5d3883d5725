"""sensor_msgs/Image <-> numpy without cv_bridge.

cv_bridge is not available from PyPI, and the nodes only need a handful of 8-bit encodings, so a
small, strict converter is less to install than cv_bridge and fails with a clear message on
anything it does not understand instead of guessing.
"""

from __future__ import annotations

import cv2
import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
SUPPORTED_ENCODINGS = tuple(_CHANNELS)
#: Largest frame converted, in pixels (8192x4096, above any 4K or 12 MP camera): a frame whose
#: header claims more is refused before anything is allocated for it.
MAX_PIXELS = 8192 * 4096


class ImageConversionError(ValueError):
    """An Image message that cannot be turned into an RGB array."""


def image_to_rgb(msg: Image) -> np.ndarray:
    """Return the image as a contiguous RGB uint8 array of shape (height, width, 3)."""
    enc = msg.encoding.lower()
    if enc not in _CHANNELS:
        raise ImageConversionError(
            f"unsupported encoding {msg.encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    ch = _CHANNELS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageConversionError(f"empty image {w}x{h}")
    if h * w > MAX_PIXELS:
        raise ImageConversionError(f"image {w}x{h} has more than {MAX_PIXELS} pixels")
    if step < w * ch:
        raise ImageConversionError(f"step {step} < width*channels {w * ch} for {enc}")
    # rclpy holds uint8[] as array.array: read it in place (a 1280x720 frame is 2.7 MB).
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != step * h:
        raise ImageConversionError(
            f"data has {data.size} bytes, expected step*height = {step * h}")
    arr = data.reshape(h, step)[:, : w * ch].reshape(h, w, ch)
    if enc == "mono8":
        return np.ascontiguousarray(np.repeat(arr, 3, axis=2))
    if enc in ("bgr8", "bgra8"):
        arr = arr[:, :, 2::-1]
    return np.ascontiguousarray(arr[:, :, :3])


def rgb_to_image(rgb: np.ndarray, header: Header) -> Image:
    """Wrap an RGB uint8 (H, W, 3) array in an ``rgb8`` Image with the given header."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageConversionError(f"expected uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = int(rgb.shape[1] * 3)
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg


def annotate(rgb: np.ndarray, text: str) -> np.ndarray:
    """A copy with a frame and ``text`` drawn on it; the caption scales with the frame so small
    images stay legible (for RViz's view of the detections)."""
    img = rgb.copy()
    h, w = img.shape[:2]
    scale = max(0.3, w / 400.0)
    cv2.rectangle(img, (0, 0), (w - 1, h - 1), (0, 255, 0), max(1, w // 160))
    cv2.rectangle(img, (0, 0), (w - 1, int(18 * scale) + 4), (0, 0, 0), -1)
    cv2.putText(img, text, (2, int(16 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.5,
                (255, 255, 255), 1, cv2.LINE_AA)
    return img


def annotate_regions(rgb: np.ndarray, labels: list[tuple[tuple[int, int, int, int], str]],
                     caption: str = "") -> np.ndarray:
    """A copy with every region's box and label drawn, and an optional caption on top (for
    RViz's view of per-region detections)."""
    img = rgb.copy()
    h, w = img.shape[:2]
    scale = max(0.3, w / 400.0)
    thick = max(1, w // 320)
    for (x, y, bw, bh), text in labels:
        cv2.rectangle(img, (x, y), (x + bw - 1, y + bh - 1), (0, 255, 0), thick)
        ty = y + int(14 * scale) if y < int(16 * scale) else y - 2
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale * 0.45, 1)
        cv2.rectangle(img, (x, ty - th - 2), (x + tw + 2, ty + 2), (0, 0, 0), -1)
        cv2.putText(img, text, (x + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.45,
                    (255, 255, 255), 1, cv2.LINE_AA)
    if caption:
        cv2.putText(img, caption, (2, h - 4), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.4,
                    (255, 255, 0), 1, cv2.LINE_AA)
    return img
