"""Per-key request rate limit: a fixed one-minute window per key.

With Redis (JANUS_RATE_LIMIT_REDIS_URL, or the broker when it is Redis) every API process and
machine counts in the same Redis key, so the limit holds however many processes serve. One Lua
script does INCR and sets the expiry on a window's first request, atomically; the window starts
at a key's first request, so API machines' clocks do not matter.

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

# KEYS[1]: the counter; ARGV[1]: the window in ms. Returns {count, ms left in the window}.
_HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if count == 1 or ttl < 0 then
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


class RedisRateLimiter:
    """Counts in Redis, shared by every API process (see the module's docstring)."""

    def __init__(self, url: str, limit: int, window_seconds: int = WINDOW_SECONDS):
        self.limit = limit
        self.window = window_seconds
        self.client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self._script = self.client.register_script(_HIT_SCRIPT)
        self._fallback = LocalRateLimiter(limit, window_seconds)

    def hit(self, identity: str) -> Decision:
        try:
            count, ms_left = self._script(keys=[REDIS_PREFIX + identity], args=[self.window * 1000])
        except redis.RedisError as exc:
            log.warning("rate limit: Redis unavailable (%s); counting in this process", exc)
            return self._fallback.hit(identity)
        return _decide(int(count), self.limit, float(ms_left))


def open_rate_limiter(redis_url: str | None, limit: int):
    if redis_url:
        return RedisRateLimiter(redis_url, limit)
    return LocalRateLimiter(limit)
