"""QoS profiles, chosen by name so nobody has to remember rmw's integer enums.

Camera images use the sensor-data profile (best effort, shallow queue): a late frame is worth
less than the next one, and a best-effort subscriber also matches a reliable camera driver.
Labels, detections and status use reliable delivery because losing one is a real loss.
ModelInfo is latched (transient local) so a late joiner learns the serving model at once.

Large frames and best effort: with Fast DDS's built-in settings a 640x480 rgb8 frame (900 KB)
does not fit the *sending* process's 512 KiB shared-memory segment, and best effort has no
repair, so most such frames never arrived (measured 3/12 at 5 Hz; reliable delivery hides it by
retransmitting, at a latency cost). The fix is the transport, not this QoS: config/fastdds.xml
(16 MiB segment), which scripts/env.sh, ``bringup``, every node's ``main`` and the launch file
select unless the user chose a profile. A camera driver started elsewhere needs the same
FASTRTPS_DEFAULT_PROFILES_FILE in its environment.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

RELIABILITY_CHOICES = ("best_effort", "reliable")


def image_qos(reliability: str = "best_effort", depth: int = 5) -> QoSProfile:
    """Profile for camera image topics; ``reliability`` is ``best_effort`` or ``reliable``."""
    if reliability not in RELIABILITY_CHOICES:
        raise ValueError(
            f"image reliability must be one of {RELIABILITY_CHOICES}, got {reliability!r}")
    if depth < 1:
        raise ValueError(f"image queue depth must be >= 1, got {depth}")
    profile = QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=(ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort"
                     else ReliabilityPolicy.RELIABLE),
        durability=qos_profile_sensor_data.durability,
    )
    return profile


def reliable_qos(depth: int = 10) -> QoSProfile:
    """Profile for detections, corrections and status: nothing dropped while readers keep up."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def latched_qos() -> QoSProfile:
    """Profile for ModelInfo: the last message is kept for subscribers that join later."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def corrections_qos() -> QoSProfile:
    """Caregivers' corrections: reliable KEEP_ALL on both ends. DDS keeps every unread
    correction (flow control instead of overwriting); the collector's callback drains it at once
    into its bounded write queue. Every publisher of ``corrections`` (a caregiver UI, the
    simulated caregiver, the bag player) uses it, so a burst is never overwritten in a
    publisher's history either."""
    return QoSProfile(history=HistoryPolicy.KEEP_ALL, depth=1,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def service_qos(depth: int) -> QoSProfile:
    """Request queue of a service that must answer every call. The default keeps 10: of 20 calls
    arriving at once, 9 were dropped inside DDS before any callback saw them (measured)."""
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE)
