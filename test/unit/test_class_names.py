"""Class-name rule and new-class policy (core/class_names.py), without ROS."""

from __future__ import annotations

import pytest

from etuner_ros.core.class_names import (
    ACCEPT,
    HOLD,
    REJECT,
    ClassPolicy,
    InvalidClassName,
    normalise_class,
    parse_class_list,
)


@pytest.mark.parametrize("raw, name", [
    ("cup", "cup"), ("  Cup ", "cup"), ("Pill Box", "pill_box"), ("pill   box", "pill_box"),
    ("medicine-bottle", "medicine-bottle"), ("a", "a"), ("9volt", "9volt"), ("x" * 63, "x" * 63),
])
def test_valid_names_are_normalised(raw, name):
    assert normalise_class(raw) == name


@pytest.mark.parametrize("raw, reason", [
    ("", "empty"), ("   ", "empty"),
    ("x" * 64, "too_long"), ("x" * 10_000, "too_long"),
    ("../../etc/passwd", "bad_chars"), ("cup\n[INFO] [tuner]: swapped in v99", "control_char"),
    ("cup\tmug", "control_char"), ("cup\x1b[31m", "control_char"), ("cup\u200b", "control_char"),
    ("_cup", "bad_chars"), ("-cup", "bad_chars"), ("tasse_à_café", "bad_chars"),
    ("cup;drop table", "bad_chars"), ("cup.png", "bad_chars"), ("cup/../x", "bad_chars"),
    (None, "not_text"), (42, "not_text"),
])
def test_invalid_names_are_refused_with_a_reason(raw, reason):
    with pytest.raises(InvalidClassName) as err:
        normalise_class(raw)
    assert err.value.reason == reason


def test_class_list_parameter_format():
    assert parse_class_list("") == []
    assert parse_class_list("cup, Pill Box,cup,, walker ") == ["cup", "pill_box", "walker"]
    with pytest.raises(InvalidClassName):
        parse_class_list("cup, ../x")


def test_votes_policy_holds_until_min_votes():
    p = ClassPolicy.build([], 3)
    assert p.decide("cup", {"cup"}, 1).action == ACCEPT
    assert p.decide("walker", {"cup"}, 1).action == HOLD
    assert p.decide("walker", {"cup"}, 2).action == HOLD
    assert p.decide("walker", {"cup"}, 3).action == ACCEPT
    assert ClassPolicy.build([], 1).decide("walker", set(), 1).action == ACCEPT


def test_allowed_list_is_closed_and_zero_votes_admits_nothing_new():
    p = ClassPolicy.build(["Walker"], 3)
    assert p.decide("walker", set(), 1).action == ACCEPT
    assert p.decide("cup", {"cup"}, 1).action == ACCEPT  # the model has it already
    v = p.decide("wlaker", set(), 99)
    assert (v.action, v.reason) == (REJECT, "not_allowed")
    v = ClassPolicy.build([], 0).decide("walker", set(), 99)
    assert (v.action, v.reason) == (REJECT, "new_classes_off")
    with pytest.raises(ValueError):
        ClassPolicy.build([], -1)
