"""Rate limits on the anonymous (email) path of intake, so an emailed code cannot be guessed.

Each request by email sends a 6-digit code and allows ``Config.code_tries`` guesses; without
limits one client could file requests naming one address as fast as the server answers and
guess thousands of times a second. Three sliding windows of ``Config.limit_window_seconds``
(by the injected clock, so tests and scenarios move time instead of waiting) bound that:

- codes sent per address (``Config.code_requests_per_address``, 5 an hour),
- codes requested per client address (``Config.code_requests_per_client``),
- wrong codes per address, over all its requests (``Config.code_failures_per_address``).

Beyond a limit the answer is ``429 too_many_requests`` with ``Retry-After`` (seconds until
the window has room again). An address that reaches its limit raises one alert per window
for the operator (guard name ``intake.rate_limit``): that is how a campaign of requests
against one person (GDPR Art. 12(5): manifestly excessive) shows up. The windows live in
memory: a restart empties them.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from backend.config import Config
from backend.errors import TooManyRequests

MAX_KEYS = 100_000
"""Most addresses (or clients) a window remembers; the least recently seen go first, so
spraying random addresses cannot grow memory without bound."""


@dataclass
class SlidingWindow:
    """At most ``limit`` events per key within any ``seconds`` long stretch of clock time."""

    limit: int
    seconds: float
    hits: OrderedDict[str, deque[datetime]] = field(default_factory=OrderedDict)

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        times = self.hits.get(key)
        if times is None:
            return deque()
        start = now - timedelta(seconds=self.seconds)
        while times and times[0] <= start:
            times.popleft()
        if not times:
            del self.hits[key]
        return times

    def retry_after(self, key: str, now: datetime) -> int | None:
        """Seconds until ``key`` may act again, or ``None`` if it may now."""
        times = self._recent(key, now)
        if len(times) < self.limit:
            return None
        free_at = times[0] + timedelta(seconds=self.seconds)
        return max(1, math.ceil((free_at - now).total_seconds()))

    def hit(self, key: str, now: datetime) -> None:
        times = self._recent(key, now)
        self.hits[key] = times
        self.hits.move_to_end(key)
        times.append(now)
        while len(self.hits) > MAX_KEYS:
            self.hits.popitem(last=False)


@dataclass
class IntakeLimits:
    """The three windows of the email path and when each address was last alerted about."""

    per_address: SlidingWindow
    per_client: SlidingWindow
    failures: SlidingWindow
    alerted: dict[str, datetime] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config) -> IntakeLimits:
        window = config.limit_window_seconds
        return cls(SlidingWindow(config.code_requests_per_address, window),
                   SlidingWindow(config.code_requests_per_client, window),
                   SlidingWindow(config.code_failures_per_address, window))

    def admit_code_request(self, address: str, client: str, now: datetime) -> None:
        """Count one code request, or raise 429 (the address's limit first: it is the one
        that protects a person)."""
        wait = self.per_address.retry_after(address, now)
        if wait is not None:
            raise _limited("too many codes requested for this address", wait)
        wait = self.per_client.retry_after(client, now)
        if wait is not None:
            raise _limited("too many requests from this client", wait)
        self.per_address.hit(address, now)
        self.per_client.hit(client, now)

    def admit_guess(self, address: str, now: datetime) -> None:
        """429 while the address has had too many wrong codes."""
        wait = self.failures.retry_after(address, now)
        if wait is not None:
            raise _limited("too many wrong codes for this address", wait)

    def wrong_guess(self, address: str, now: datetime) -> None:
        self.failures.hit(address, now)

    def should_alert(self, address: str, now: datetime) -> bool:
        """Whether an address at its limit is news: once per window."""
        last = self.alerted.get(address)
        if last is not None and (now - last).total_seconds() < self.per_address.seconds:
            return False
        self.alerted[address] = now
        if len(self.alerted) > MAX_KEYS:
            self.alerted.pop(next(iter(self.alerted)))
        return True


def _limited(message: str, wait: int) -> TooManyRequests:
    return TooManyRequests(f"{message}; try again in {wait} s", code="too_many_requests",
                           retry_after=wait)
