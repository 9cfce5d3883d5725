"""PendingCorrections: bounded, arrival order kept, a stamp's later correction waits behind."""

from __future__ import annotations

from etuner_ros.core.pairing import PendingCorrections


def test_capacity_bounds_the_queue():
    p: PendingCorrections[str] = PendingCorrections(capacity=2)
    assert p.add(0, 1, "a") and p.add(0, 2, "b")
    assert not p.add(0, 3, "c") and len(p) == 2


def test_same_stamp_stays_in_order_and_expiry_frees_the_stamp():
    p: PendingCorrections[str] = PendingCorrections(capacity=10)
    p.add(0, 7, "first")
    assert p.behind(7) and not p.behind(8)
    p.add(5, 7, "second")
    paired: list[tuple[str, int]] = []
    expired: list[str] = []

    def pair(msg: str, waited: int) -> bool:
        paired.append((msg, waited))
        return msg == "second"  # the later one could pair, but must not overtake

    p.retry(10, 100, pair, expired.append)
    assert paired == [("first", 10)] and expired == [] and len(p) == 2
    p.retry(100, 100, pair, expired.append)  # "first" times out, then "second" may pair
    assert expired == ["first"] and paired[-1] == ("second", 95)
    assert len(p) == 0 and not p.behind(7)


def test_drain_empties_and_forgets_stamps():
    p: PendingCorrections[str] = PendingCorrections(capacity=10)
    p.add(0, 1, "a")
    p.add(1, 1, "b")
    assert p.drain() == ["a", "b"] and len(p) == 0 and not p.behind(1)
