"""Silence on a clock that starts late (sim time reads 0 until /clock) or goes back (a bag
replayed again)."""

from etuner_ros.core.silence import Silence


def test_silence_counts_from_the_clock_start_and_restarts_when_it_goes_back():
    s = Silence()
    assert s.seconds(0.0) == 0.0  # the clock does not run yet: nothing to say
    s.seen(0.0)                   # an event at time 0 is not a time
    assert s.seconds(1000.0) == 0.0  # /clock starts at 1000 s: the watch starts, no 1000 s gap
    assert s.seconds(1004.5) == 4.5
    s.seen(1005.0)
    assert s.seconds(1006.0) == 1.0
    assert s.seconds(10.0) == 0.0  # the clock went back: watch again from there
    assert s.seconds(12.0) == 2.0
