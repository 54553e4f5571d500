"""Token buckets in Redis: how often a person, or a channel, may start a run.

A bucket holds up to ``limit`` tokens and refills one every ``per / limit``; each request
takes one. ``10/1m`` therefore allows a burst of ten and then one every six seconds. All
buckets a request needs (the person's and the channel's) are checked and taken in one Lua
script, so a request either takes a token from each or from none, and replicas sharing
Redis share the buckets. Each bucket is a hash (``t`` tokens, ``ts`` last update in ms)
that expires once it would be full again, so idle buckets cost nothing.

Time is an argument (``now`` in seconds); the script never lets a bucket's clock go
backwards, so replicas with slightly different clocks cannot mint tokens.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from redis.asyncio import Redis

from storage.keys import KeyKind, Keys
from storage.redis import redis_errors

__all__ = ["Rate", "RateLimiter"]

_RATE_RE: Final = re.compile(r"\s*(\d+)\s*/\s*(\d*)\s*(s|m|h|d)\s*")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_OFF: Final = frozenset({"off", "0", "none", ""})

# KEYS: the buckets. ARGV[1] = now (ms); then per bucket: capacity, ms per token.
# Returns 0 when a token was taken from every bucket, else the ms until all have one.
_TAKE = """
local now = tonumber(ARGV[1])
local state = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local capacity = tonumber(ARGV[2 * i])
  local interval = tonumber(ARGV[2 * i + 1])
  local stored = redis.call('HMGET', key, 't', 'ts')
  local tokens = tonumber(stored[1]) or capacity
  local ts = tonumber(stored[2]) or now
  if now > ts then
    tokens = math.min(capacity, tokens + (now - ts) / interval)
    ts = now
  end
  state[i] = {tokens, ts, capacity, interval}
  if tokens < 1 then
    wait = math.max(wait, math.ceil((1 - tokens) * interval))
  end
end
if wait > 0 then
  return wait
end
for i, key in ipairs(KEYS) do
  local tokens = state[i][1] - 1
  redis.call('HSET', key, 't', tostring(tokens), 'ts', tostring(state[i][2]))
  local full_in = math.ceil((state[i][3] - tokens) * state[i][4]) + 1000
  redis.call('PEXPIRE', key, full_in)
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` requests per ``per``, as a bucket of ``limit`` tokens."""

    limit: int
    per: timedelta

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """``10/1m``, ``60/1h``, ``5/30s``, ``100/d``; ``off`` (or ``0``) means no limit."""
        if text.strip().lower() in _OFF:
            return None
        match = _RATE_RE.fullmatch(text)
        if match is None or int(match.group(1)) < 1 or match.group(2) == "0":
            raise ValueError(f"expected N/DURATION such as 10/1m, 60/1h or off, got {text!r}")
        count, amount, unit = match.groups()
        return cls(int(count), timedelta(seconds=int(amount or 1) * _UNITS[unit]))

    @property
    def ms_per_token(self) -> float:
        return self.per.total_seconds() * 1000 / self.limit


class RateLimiter:
    """Takes tokens from named buckets (``user:T1:U1``, ``channel:T1:C1``)."""

    def __init__(self, *, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def take(self, buckets: Sequence[tuple[str, Rate]], *, now: float | None = None) -> float:
        """Take one token from every bucket, or from none: 0.0 when taken, else the seconds
        until every bucket has a token again. Raises ``RedisUnavailable``."""
        if not buckets:
            return 0.0
        keys = [self._keys.key(KeyKind.RATE, *name.split(":")) for name, _ in buckets]
        args: list[float | int] = [int((time.time() if now is None else now) * 1000)]
        for _, rate in buckets:
            args.extend([rate.limit, rate.ms_per_token])
        async with redis_errors("rate limit"):
            wait_ms = await self._redis.eval(_TAKE, len(keys), *keys, *args)
        return math.ceil(int(wait_ms)) / 1000
