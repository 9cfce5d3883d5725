from etuner_ros.core.text import printable


def test_newline_cannot_forge_a_log_line():
    out = printable("cup\n[INFO] [tuner]: swapped in v99")
    assert "\n" not in out and "\\n" in out


def test_long_text_is_cut():
    out = printable("x" * 10_000, limit=40)
    assert len(out) == 40 and out.endswith("...")


def test_plain_text_unchanged():
    assert printable("heart_pills") == "heart_pills"
