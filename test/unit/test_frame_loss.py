"""Lost-frame counting from publication sequence numbers (no ROS needed: MessageInfo is a dict)."""

from __future__ import annotations

from etuner_ros.ros.frame_loss import FrameLoss


def info(seq: int | None) -> dict:
    return {"publication_sequence_number": seq, "reception_sequence_number": None}


def test_gaps_are_lost_frames_only_with_one_publisher():
    f = FrameLoss()
    assert f.observe(info(1)) == 0 and f.lost == 0  # not counting yet: publishers unknown
    f.set_single_publisher(True)
    assert [f.observe(info(s)) for s in (5, 6, 9, 10, 14)] == [0, 0, 2, 0, 3]
    assert f.lost == 5


def test_restarted_publisher_and_missing_numbers_do_not_count():
    f = FrameLoss()
    f.set_single_publisher(True)
    f.observe(info(100))
    assert f.observe(info(1)) == 0  # camera restarted: numbering starts again
    assert f.observe(info(3)) == 1
    assert f.observe(info(None)) == 0 and f.observe(None) == 0
    f.set_single_publisher(False)  # a second camera: gaps mean nothing
    assert f.observe(info(50)) == 0 and f.lost == 1
