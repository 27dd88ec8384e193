"""Per-key request rate limit: a fixed one-minute window per key.

With Redis (JANUS_RATE_LIMIT_REDIS_URL, or the broker when it is Redis) every API process and
machine counts in the same Redis key, so the limit holds however many processes serve. One Lua
script adds to the counter and sets the expiry on a window's first request, atomically; the
window starts at a key's first request, so API machines' clocks do not matter.

A process takes a key's budget from Redis in leases of 1% of the limit (at least one request):
it adds the lease to the shared counter once and spends it locally, so a busy key costs a Redis
round trip per lease, not per request. The limit is never exceeded (a lease is granted only from
what is left of the window's budget); a key may be refused slightly early, by at most the leases
other processes hold unspent (1% of the limit per process). Limits under 200 a minute lease one
request at a time: exact, as without leases.

Without Redis (the embedded `make run` mode, SQLite and kombu's SQLAlchemy transport) each API
process counts on its own, so the effective limit is the setting times JANUS_API_WORKERS. That
mode serves loopback only. If Redis stops answering, counting falls back to the process, with a
warning, rather than refusing every request or dropping the limit altogether.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)
WINDOW_SECONDS = 60
REDIS_PREFIX = "janusq:ratelimit:"

# Each process leases this fraction of a key's limit from Redis at a time (see the docstring).
LEASE_FRACTION = 0.01

# KEYS[1]: the counter; ARGV[1]: the window in ms; ARGV[2]: the lease.
# Returns {count after adding the lease, ms left in the window}.
_LEASE_SCRIPT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if count == tonumber(ARGV[2]) or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int  # whole seconds until the window resets (at least 1)


def _decide(count: int, limit: int, ms_left: float) -> Decision:
    return Decision(count <= limit, limit, max(0, limit - count), max(1, math.ceil(ms_left / 1000)))


class LocalRateLimiter:
    """Counts in this process only (see the module's docstring)."""

    def __init__(self, limit: int, window_seconds: int = WINDOW_SECONDS):
        self.limit = limit
        self.window = window_seconds
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}  # identity -> (window end, count)

    def hit(self, identity: str) -> Decision:
        now = time.monotonic()
        with self._lock:
            end, count = self._windows.get(identity, (0.0, 0))
            if now >= end:
                end, count = now + self.window, 0
                if len(self._windows) > 10_000:  # forget finished windows now and then
                    self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
            count += 1
            self._windows[identity] = (end, count)
        return _decide(count, self.limit, (end - now) * 1000)


def lease_size(limit: int) -> int:
    return max(1, int(limit * LEASE_FRACTION))


@dataclass
class _Lease:
    tokens: int  # requests this process may still allow in the window
    count: int  # the shared counter when the lease was taken, for `remaining`
    ends: float  # monotonic time the window ends
    refused: bool = False  # the window's budget is spent: refuse until it ends


class RedisRateLimiter:
    """Counts in Redis, shared by every API process, in leases (see the module's docstring)."""

    MAX_LEASES = 10_000

    def __init__(self, url: str, limit: int, window_seconds: int = WINDOW_SECONDS):
        self.limit = limit
        self.window = window_seconds
        self.lease = lease_size(limit)
        self.client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self._script = self.client.register_script(_LEASE_SCRIPT)
        self._fallback = LocalRateLimiter(limit, window_seconds)
        self._lock = threading.Lock()
        self._leases: dict[str, _Lease] = {}

    def hit(self, identity: str) -> Decision:
        decision = self._spend_lease(identity)
        if decision is not None:
            return decision
        try:
            count, ms_left = self._script(keys=[REDIS_PREFIX + identity], args=[self.window * 1000, self.lease])
        except redis.RedisError as exc:
            log.warning("rate limit: Redis unavailable (%s); counting in this process", exc)
            return self._fallback.hit(identity)
        return self._take_lease(identity, int(count), float(ms_left))

    def _spend_lease(self, identity: str) -> Decision | None:
        with self._lock:
            lease = self._leases.get(identity)
            now = time.monotonic()
            if lease is None or now >= lease.ends:
                return None
            if lease.tokens <= 0:
                # The counter only grows within a window: once it is past the limit, every
                # request is refused until the window ends, without asking Redis again.
                return _decide(lease.count, self.limit, (lease.ends - now) * 1000) if lease.refused else None
            lease.tokens -= 1
            lease.count += 1
            return _decide(lease.count, self.limit, (lease.ends - now) * 1000)

    def _take_lease(self, identity: str, count: int, ms_left: float) -> Decision:
        """The counter now includes this lease; what of it fits under the limit is ours."""
        granted = max(0, min(self.lease, self.limit - (count - self.lease)))
        used = count - self.lease + 1 if granted else count  # with this request
        with self._lock:
            if len(self._leases) >= self.MAX_LEASES:  # many keys at once: forget them all, start again
                self._leases = {}
            self._leases[identity] = _Lease(max(0, granted - 1), used, time.monotonic() + ms_left / 1000,
                                            refused=not granted)
        return _decide(used, self.limit, ms_left)


def open_rate_limiter(redis_url: str | None, limit: int):
    if redis_url:
        return RedisRateLimiter(redis_url, limit)
    return LocalRateLimiter(limit)
