"""No DDS packet leaves loopback: sniff every interface while participants discover and talk.

A raw AF_PACKET socket sees outgoing packets too. The loopback capture is the positive control
(RTPS traffic must be seen there, proving the sniffer works); every other interface must carry
no RTPS packet at all. Needs CAP_NET_RAW (root, as in CI).
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest
from std_msgs.msg import String

from harness import Probe, wait_for

ETH_P_ALL = 0x0003


def rtps_packets(ifname: str, stop: threading.Event, out: list[bytes],
                 errors: dict[str, str]) -> None:
    """Append the UDP payloads starting with the RTPS magic seen on ``ifname`` until stopped;
    a capture that breaks is recorded in ``errors`` so it cannot pass the test by silence."""
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((ifname, 0))
        s.settimeout(0.1)
    except OSError as exc:
        errors[ifname] = f"cannot capture: {exc}"
        return
    try:
        while not stop.is_set():
            try:
                frame = s.recv(65535)
            except TimeoutError:
                continue
            except OSError as exc:
                errors[ifname] = f"capture failed: {exc}"
                return
            payload = _udp_payload(frame)
            if payload is not None and payload[:4] == b"RTPS":
                out.append(payload)
    finally:
        s.close()


def _is_up(ifname: str) -> bool:
    try:
        with open(f"/sys/class/net/{ifname}/operstate") as f:
            return f.read().strip() != "down"
    except OSError:
        return True


def _udp_payload(frame: bytes) -> bytes | None:
    if len(frame) < 14:
        return None
    ethertype = struct.unpack("!H", frame[12:14])[0]
    ip = frame[14:]
    if ethertype == 0x0800 and len(ip) >= 20 and ip[9] == 17:
        ihl = (ip[0] & 0x0F) * 4
        return ip[ihl + 8:]
    if ethertype == 0x86DD and len(ip) >= 48 and ip[6] == 17:
        return ip[48:]
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="raw packet capture needs root (CI runs as root)")
def test_dds_traffic_stays_on_loopback():
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    # An interface that is down carries nothing (and cannot be captured on).
    interfaces = [name for _, name in socket.if_nameindex() if _is_up(name)]
    assert "lo" in interfaces, interfaces
    stop = threading.Event()
    seen: dict[str, list[bytes]] = {name: [] for name in interfaces}
    errors: dict[str, str] = {}
    sniffers = [threading.Thread(target=rtps_packets, args=(n, stop, seen[n], errors),
                                 daemon=True) for n in interfaces]
    for t in sniffers:
        t.start()
    time.sleep(0.3)
    talker, listener = Probe("talker"), Probe("listener")
    try:
        got = listener.collect(String, "chatter")
        pub = talker.publisher(String, "chatter")
        wait_for(lambda: pub.get_subscription_count() > 0, 20, "discovery on loopback")
        for i in range(20):
            pub.publish(String(data=f"hello {i}"))
            time.sleep(0.05)
        wait_for(lambda: len(got) >= 10, 10, "messages over DDS")
    finally:
        talker.close()
        listener.close()
        time.sleep(0.5)
        stop.set()
        for t in sniffers:
            t.join(timeout=2)
    assert not errors, f"packet capture broke: {errors}"
    assert seen["lo"], "the sniffer saw no RTPS on loopback: it is not working"
    leaked = {n: len(p) for n, p in seen.items() if n != "lo" and p}
    assert not leaked, f"RTPS packets left loopback: {leaked}"
