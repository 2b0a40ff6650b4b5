"""How often to ask a service about a long job: often at first, rarely in the middle, often again near the end.

With progress (percent done) the next poll lands at ``eta_fraction`` of the estimated remaining time, clamped to
[min, max]; without it the interval grows geometrically to ``fallback_max``. A 1 h job then costs ~20 status
requests and its end is noticed within ``min_seconds``.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PollPolicy:
    """How the interval between status polls is chosen (see the module docstring); all times in seconds.

    :param initial_seconds: the first interval; each next one may grow by ``factor``.
    :param min_seconds: with progress, the shortest interval (how soon the end is noticed).
    :param max_seconds: with progress, the longest interval.
    :param factor: the geometric growth of the interval per poll (it also caps the progress-based interval).
    :param eta_fraction: with progress, the next poll lands at this fraction of the estimated remaining time.
    :param fallback_max_seconds: without progress, the interval grows up to this.
    :param jitter: ± fraction drawn per interval, so triggers started together do not poll in waves (0: none).
    """

    initial_seconds: float = 10.0
    min_seconds: float = 15.0
    max_seconds: float = 300.0
    factor: float = 2.0
    eta_fraction: float = 0.5
    fallback_max_seconds: float = 60.0
    jitter: float = 0.1               # ± fraction, so triggers started together do not poll in waves

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PollState:
    """One job's polling memory between two polls (:meth:`next_interval` updates it).

    :param interval: the last interval chosen, before jitter; None: no poll yet (the next is ``initial_seconds``).
    :param first: (time, percent) of the first progress sample above 0, the start of the rate estimate; None: none.
    """

    interval: float | None = None
    first: tuple[float, float] | None = None      # (time, percent) of the first progress sample > 0

    def next_interval(self, policy: PollPolicy, now: float, percent: float | None) -> float:
        geometric = policy.initial_seconds if self.interval is None else self.interval * policy.factor
        eta = self.eta(now, percent)
        if eta is None:
            interval = min(geometric, policy.fallback_max_seconds)
        else:
            interval = min(policy.max_seconds, max(policy.min_seconds, eta * policy.eta_fraction), geometric)
        self.interval = interval
        if policy.jitter:
            interval *= random.uniform(1.0 - policy.jitter, 1.0 + policy.jitter)
        return interval

    def eta(self, now: float, percent: float | None) -> float | None:
        """Seconds left, from the rate of progress since the first sample; None while it cannot be told."""
        if percent is None or percent <= 0:
            return None
        if self.first is None:
            self.first = (now, percent)
            return None
        t0, p0 = self.first
        if percent <= p0 or now <= t0:
            return None
        rate = (percent - p0) / (now - t0)
        return max(0.0, (100.0 - percent) / rate)
