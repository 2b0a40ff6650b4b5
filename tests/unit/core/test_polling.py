import pytest

from gemini_tuning.core.polling import PollPolicy, PollState

pytestmark = pytest.mark.fast


def test_without_progress_backs_off_geometrically_to_fallback_cap():
    p, s = PollPolicy(initial_seconds=10, factor=2, fallback_max_seconds=60, jitter=0), PollState()
    assert [s.next_interval(p, t, None) for t in range(5)] == [10, 20, 40, 60, 60]


def test_with_progress_polls_rarely_midway_and_often_near_the_end():
    p, s = PollPolicy(initial_seconds=10, min_seconds=15, max_seconds=300, jitter=0), PollState()
    # a 3600 s job progressing linearly
    t, intervals = 0.0, []
    while t < 3600:
        iv = s.next_interval(p, t, 100.0 * t / 3600 if t else None)
        intervals.append(iv)
        t += iv
    assert len(intervals) <= 30, intervals                 # ≤ 60 status requests per job-hour
    assert max(intervals) == 300                           # rare in the middle
    assert intervals[-1] <= 30                             # the end is noticed within 30 s
    assert t - 3600 <= 30


def test_eta_unknown_until_two_samples():
    s = PollState()
    assert s.eta(0, 10.0) is None
    assert s.eta(100, 20.0) == 800.0


def test_jitter_spreads_intervals_within_bounds():
    p = PollPolicy(initial_seconds=10, jitter=0.1)
    values = {round(PollState().next_interval(p, 0, None), 6) for _ in range(50)}
    assert len(values) > 10 and all(9.0 <= v <= 11.0 for v in values)
