"""Class names from caregivers: one spelling rule, and a policy for admitting new classes.

A class name reaches the model head for good (the label map only grows), so a name from the
network is checked before it is stored:

**Name rule.** The raw text must be at most ``MAX_RAW_CHARS`` characters and contain no control
character (newline, tab, escape, ...; Unicode category C*), so it can neither flood nor forge a
log line. It is then normalised: surrounding whitespace stripped, lower-cased, each run of
spaces turned into one ``_`` ("Pill Box" -> "pill_box"). The result must match ``NAME_RULE``:
ASCII lower-case letters, digits, ``_`` and ``-``, starting with a letter or digit, 1 to 63
characters. So ``../../etc/passwd``, a 10,000-character string and ``cup\\nINFO ...`` are
refused, each with a reason code that the collector counts.

**New-class policy.** A class is *known* when the serving model already has it, when it is in
the ``allowed`` list, or when it was accepted earlier (the store remembers accepted classes).
A correction naming a known class is stored for training. Otherwise:

- ``allowed`` non-empty: the list is closed; other names are rejected (``not_allowed``).
- ``min_votes == 0``: no new class is ever admitted by votes (``new_classes_off``).
- else the correction is *held* (stored, never trained on, never growing the head) until
  ``min_votes`` corrections for distinct frames name the same class; then the class is accepted
  and every held sample of it becomes a training sample. ``min_votes == 1`` admits a new class
  at its first correction.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

MAX_RAW_CHARS = 256
MAX_NAME_CHARS = 63
NAME_RULE = re.compile(r"[a-z0-9][a-z0-9_\-]{0,62}")

ACCEPT, HOLD, REJECT = "accept", "hold", "reject"


class InvalidClassName(ValueError):
    """A class name that breaks the rule; ``reason`` is a short code for counters."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def normalise_class(raw: object) -> str:
    """The canonical spelling of ``raw``, or :class:`InvalidClassName` saying why not."""
    if not isinstance(raw, str):
        raise InvalidClassName("not_text", f"class name must be text, got {type(raw).__name__}")
    if len(raw) > MAX_RAW_CHARS:
        raise InvalidClassName("too_long", f"class name has {len(raw)} characters "
                                           f"(at most {MAX_RAW_CHARS} before normalising)")
    if any(unicodedata.category(ch).startswith("C") for ch in raw):
        raise InvalidClassName("control_char", "class name contains a control character")
    name = re.sub(r" +", "_", raw.strip().lower())
    if not name:
        raise InvalidClassName("empty", "class name is empty")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidClassName("too_long", f"class name has {len(name)} characters "
                                           f"(at most {MAX_NAME_CHARS})")
    if not NAME_RULE.fullmatch(name):
        raise InvalidClassName("bad_chars", "class name may hold only a-z, 0-9, '_' and '-', "
                                            "and must start with a letter or digit")
    return name


def model_class(name: str) -> str:
    """A model's class name as corrections spell it: its canonical spelling when it has one
    ("Cell phone" -> "cell_phone"), else unchanged (such a class serves, but no correction can
    name it). Without this a correction naming a model's own "Cup" was a new class "cup"."""
    try:
        return normalise_class(name)
    except InvalidClassName:
        return name


def parse_class_list(text: str) -> list[str]:
    """``"cup, Pill Box,walker"`` -> ``["cup", "pill_box", "walker"]`` (the parameter format);
    an invalid entry raises :class:`InvalidClassName` so a bad configuration fails at start."""
    out: list[str] = []
    for part in text.split(","):
        if part.strip():
            name = normalise_class(part)
            if name not in out:
                out.append(name)
    return out


@dataclass(frozen=True)
class Verdict:
    """What to do with one correction's class: ``action`` is accept, hold or reject."""

    action: str
    reason: str


@dataclass(frozen=True)
class ClassPolicy:
    """The new-class policy of the module docstring (``allowed`` holds normalised names)."""

    allowed: frozenset[str] = frozenset()
    min_votes: int = 3

    def __post_init__(self) -> None:
        if self.min_votes < 0:
            raise ValueError(f"min_votes must be >= 0, got {self.min_votes}")

    @classmethod
    def build(cls, allowed: Iterable[str], min_votes: int) -> ClassPolicy:
        return cls(frozenset(normalise_class(a) for a in allowed), int(min_votes))

    def decide(self, name: str, known: set[str] | frozenset[str], votes: int) -> Verdict:
        """``votes``: corrections for distinct frames naming ``name``, this one included."""
        if name in known:
            return Verdict(ACCEPT, "known")
        if name in self.allowed:
            return Verdict(ACCEPT, "allowed_classes")
        if self.allowed:
            return Verdict(REJECT, "not_allowed")
        if self.min_votes == 0:
            return Verdict(REJECT, "new_classes_off")
        if votes >= self.min_votes:
            return Verdict(ACCEPT, f"{votes} votes")
        return Verdict(HOLD, f"{votes}/{self.min_votes} votes")
