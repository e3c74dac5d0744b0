"""Retry policy: exponential backoff with full jitter, capped (pure; randomness injected).

Full jitter (``delay = U(0, min(cap, base x 2^(n-1)))``) spreads the retries of many jobs
that failed together, so a platform coming back is not hit by all of them at once.
Clara retried three times at a constant ``jobRetryDelay`` and then deleted the images
(reference §2.5, §6.5); here the last failure dead-letters the job and keeps every file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how far apart a job is tried.

    ``max_attempts`` counts attempts per round: the first round starts when the group
    closes, each ``jobs retry`` of a dead-lettered job starts another round.
    """

    max_attempts: int = 5
    initial_s: float = 1.0
    max_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts is {self.max_attempts}; it must be at least 1")
        if self.initial_s <= 0 or self.max_s < self.initial_s:
            raise ValueError(
                f"backoff {self.initial_s}..{self.max_s} s is invalid; need 0 < initial_s <= max_s"
            )

    def will_retry(self, attempts_in_round: int) -> bool:
        """Whether another attempt follows after ``attempts_in_round`` failed ones."""
        return attempts_in_round < self.max_attempts

    def ceiling_s(self, failures: int) -> float:
        """Upper bound of the delay after the ``failures``-th failed attempt (1-based)."""
        exponent = max(0, failures - 1)
        # 2**exponent overflows float for absurd attempt counts; the cap is reached long before.
        if exponent >= 64:
            return self.max_s
        return float(min(self.max_s, self.initial_s * 2**exponent))

    def delay_s(
        self, failures: int, rand: Callable[[], float], *, at_least_s: float = 0.0
    ) -> float:
        """Delay before the next attempt: full jitter over :meth:`ceiling_s`.

        ``rand`` returns a float in ``[0, 1)`` (``random.random`` in production).
        ``at_least_s`` is a floor the platform asked for (``Retry-After``); it is itself
        capped at ``max_s`` so a hostile header cannot park a job for a day.
        """
        jittered = rand() * self.ceiling_s(failures)
        return max(jittered, min(max(0.0, at_least_s), self.max_s))
