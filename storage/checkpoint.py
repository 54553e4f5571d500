"""Conversation memory: a LangGraph checkpoint saver over core Redis commands.

Only strings, hashes, sets, sorted sets and Lua are used (no RedisJSON or RediSearch), so
this runs on Redis 7, Valkey and GCP Memorystore. It passes all eight capabilities of
``langgraph-checkpoint-conformance``.

Layout, for thread ``T`` and checkpoint namespace ``N`` (both percent-encoded, so a
Slack thread id such as ``T1:C2:1700000000.000100`` cannot break the ``:`` structure)::

    {prefix}:cp:t=T:ns            hash   namespace field "n=N" -> TTL in ms used for it
    {prefix}:cp:t=T:n=N:idx       zset   checkpoint ids, all score 0, so lexicographic
                                         order is uuid6 order and "latest" is the last one
    {prefix}:cp:t=T:n=N:data      hash   checkpoint id -> record (checkpoint, metadata, parent)
    {prefix}:cp:t=T:n=N:writes    hash   "id\\0task\\0idx" -> pending write
    {prefix}:cp:t=T:n=N:widx      zset   the same write fields, score 0, so one id's writes
                                         are a ZRANGEBYLEX range
    {prefix}:cp:t=T:n=N:runs      hash   checkpoint id -> run index key
    {prefix}:cp:run:R             set    "{namespace key base}\\0{checkpoint id}" per
                                         checkpoint created by run R

Every read and write of one checkpoint is a single Lua script (one round trip, whatever
the thread length); deletes, copies and prunes walk these indexes and never use KEYS or
SCAN. Checkpoints are stored whole (channel values inline) rather than as per-version
channel blobs: each record stands alone, so pruning and deleting need no reference
counting, at the price of re-storing unchanged channels in every checkpoint.

Retention: every key has a TTL (default 7 days) that each write to the namespace
refreshes. A skill's ``memory.ttl`` applies per thread: put ``memory_ttl_seconds`` into the
run's ``configurable`` and ``aput``/``aput_writes`` use it instead of the default; writes
without it reuse the TTL last stored for that namespace. Each namespace keeps at most
``max_checkpoints`` checkpoints; older ones are pruned as new ones arrive. That bound is
not safe for graphs using LangGraph's (beta) ``DeltaChannel``, which rebuilds state from
ancestor checkpoints: give those graphs a bound above their ``snapshot_frequency``.

The saver targets standalone Redis; namespace-wide scripts build key names from a
prefix, which Redis Cluster does not allow across slots.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import struct
from collections.abc import AsyncIterator, Iterator, Sequence
from contextvars import ContextVar
from datetime import timedelta
from typing import Any, NamedTuple, NoReturn
from urllib.parse import quote, unquote

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    copy_checkpoint,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from storage.keys import KeyKind, Keys, ttl_ms
from storage.redis import TRANSIENT_ERRORS, redis_errors

__all__ = ["MEMORY_TTL_KEY", "RedisCheckpointSaver"]

#: ``configurable`` key that overrides the saver's TTL for one thread (seconds).
MEMORY_TTL_KEY = "memory_ttl_seconds"

_LIST_PAGE = 100
#: Key names cached per (thread, namespace); the cache is simply emptied when full.
_KEY_CACHE_SIZE = 4096

# -- Lua ------------------------------------------------------------------------------------
# Shared helpers, prepended to the scripts that use them. ``base`` is a namespace key base
# ending in ':' (``{prefix}:cp:t=T:n=N:``).
_LUA_HELPERS = r"""
local SUFFIXES = {'idx', 'data', 'writes', 'widx', 'runs'}

-- Extend a shared key's TTL, never shorten it (another thread may need it longer).
local function extend(key, ttl)
  if redis.call('PTTL', key) < tonumber(ttl) then redis.call('PEXPIRE', key, ttl) end
end

-- Refresh every key of a namespace, so they all expire together.
local function touch(ns_hash, base, ttl)
  redis.call('PEXPIRE', ns_hash, ttl)
  for i = 1, #SUFFIXES do redis.call('PEXPIRE', base .. SUFFIXES[i], ttl) end
end

-- Append one checkpoint's pending writes to ``out``.
local function load_writes(base, id, out)
  local fields = redis.call('ZRANGEBYLEX', base .. 'widx', '[' .. id .. '\0', '(' .. id .. '\1')
  for i = 1, #fields, 500 do
    local chunk = {unpack(fields, i, math.min(i + 499, #fields))}
    local values = redis.call('HMGET', base .. 'writes', unpack(chunk))
    for j = 1, #values do
      if values[j] then out[#out + 1] = values[j] end
    end
  end
  return out
end

-- Remove a checkpoint already taken out of the idx zset: its record, its pending writes
-- and its run-index entry.
local function drop_unindexed(base, id)
  redis.call('HDEL', base .. 'data', id)
  local run_key = redis.call('HGET', base .. 'runs', id)
  if run_key then
    redis.call('SREM', run_key, base .. '\0' .. id)
    redis.call('HDEL', base .. 'runs', id)
  end
  local lo, hi = '[' .. id .. '\0', '(' .. id .. '\1'
  local fields = redis.call('ZRANGEBYLEX', base .. 'widx', lo, hi)
  if #fields > 0 then
    for i = 1, #fields, 500 do
      redis.call('HDEL', base .. 'writes', unpack(fields, i, math.min(i + 499, #fields)))
    end
    redis.call('ZREMRANGEBYLEX', base .. 'widx', lo, hi)
  end
end

local function drop_checkpoint(base, id)
  redis.call('ZREM', base .. 'idx', id)
  drop_unindexed(base, id)
end
"""

# KEYS: idx | ARGV: base, checkpoint id ('' = latest) -> false, or one string framing
# id, record, write... as netstrings ("<length>:<bytes>"), which the client splits far
# faster than redis-py parses a multi-bulk reply.
_GET = (
    _LUA_HELPERS
    + r"""
local base, id = ARGV[1], ARGV[2]
if id == '' then
  local top = redis.call('ZRANGE', KEYS[1], -1, -1)
  if #top == 0 then return false end
  id = top[1]
end
local record = redis.call('HGET', base .. 'data', id)
if not record then return false end
local parts = load_writes(base, id, {id, record})
local out = {}
for i = 1, #parts do
  out[#out + 1] = #parts[i] .. ':'
  out[#out + 1] = parts[i]
end
return table.concat(out)
"""
)

# KEYS: idx | ARGV: base, exclusive upper id ('' = none), count
# -> {{id, record, {write, ...}}, ...} newest first
_LIST = (
    _LUA_HELPERS
    + r"""
local hi = '+'
if ARGV[2] ~= '' then hi = '(' .. ARGV[2] end
local ids = redis.call('ZREVRANGEBYLEX', KEYS[1], hi, '-', 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for i = 1, #ids do
  local record = redis.call('HGET', ARGV[1] .. 'data', ids[i])
  if record then out[#out + 1] = {ids[i], record, load_writes(ARGV[1], ids[i], {})} end
end
return out
"""
)

# KEYS: ns-hash [run-key] | ARGV: base, ns field, id, record, ttl ms, max checkpoints
# -> number of checkpoints pruned
_PUT = (
    _LUA_HELPERS
    + r"""
local base, id, ttl = ARGV[1], ARGV[3], ARGV[5]
local idx, run_key = base .. 'idx', KEYS[2]
redis.call('HSET', base .. 'data', id, ARGV[4])
redis.call('ZADD', idx, 0, id)
redis.call('HSET', KEYS[1], ARGV[2], ttl)
if run_key then
  redis.call('HSET', base .. 'runs', id, run_key)
  redis.call('SADD', run_key, base .. '\0' .. id)
  extend(run_key, ttl)
end
local excess = redis.call('ZCARD', idx) - tonumber(ARGV[6])
if excess > 0 then
  -- All scores are 0, so the lowest members are the oldest ids.
  local old = redis.call('ZPOPMIN', idx, excess)
  for i = 1, #old, 2 do drop_unindexed(base, old[i]) end
else
  excess = 0
end
touch(KEYS[1], base, ttl)
return excess
"""
)

# KEYS: ns-hash | ARGV: base, ns field, ttl override ms ('' = none), default ttl ms, n,
# then (field, value)*: the first n overwrite (special channels), the rest keep the first
# value stored for their field -> 1
_PUT_WRITES = (
    _LUA_HELPERS
    + r"""
local base, ttl = ARGV[1], ARGV[3]
if ttl == '' then
  ttl = redis.call('HGET', KEYS[1], ARGV[2])
  if not ttl then
    ttl = ARGV[4]
    redis.call('HSET', KEYS[1], ARGV[2], ttl)
  end
else
  redis.call('HSET', KEYS[1], ARGV[2], ttl)
end
local writes, members = base .. 'writes', {}
local last_overwrite = 4 + 2 * tonumber(ARGV[5])
for i = 6, #ARGV, 2 do
  local field = ARGV[i]
  if i <= last_overwrite then
    redis.call('HSET', writes, field, ARGV[i + 1])
  else
    redis.call('HSETNX', writes, field, ARGV[i + 1])
  end
  members[#members + 1] = 0
  members[#members + 1] = field
end
for i = 1, #members, 1000 do
  redis.call('ZADD', base .. 'widx', unpack(members, i, math.min(i + 999, #members)))
end
touch(KEYS[1], base, ttl)
return 1
"""
)

# KEYS: ns-hash | ARGV: thread key base -> number of namespaces removed
_DELETE_THREAD = r"""
local fields = redis.call('HKEYS', KEYS[1])
for i = 1, #fields do
  local base = ARGV[1] .. fields[i] .. ':'
  local runs = redis.call('HGETALL', base .. 'runs')
  for j = 1, #runs, 2 do redis.call('SREM', runs[j + 1], base .. '\0' .. runs[j]) end
  redis.call('DEL', base .. 'idx', base .. 'data', base .. 'writes', base .. 'widx',
             base .. 'runs')
end
redis.call('DEL', KEYS[1])
return #fields
"""

# KEYS: ns-hash | ARGV: thread key base -> number of checkpoints removed
_KEEP_LATEST = (
    _LUA_HELPERS
    + r"""
local fields = redis.call('HKEYS', KEYS[1])
local n = 0
for i = 1, #fields do
  local base = ARGV[1] .. fields[i] .. ':'
  local old = redis.call('ZRANGE', base .. 'idx', 0, -2)
  for j = 1, #old do drop_checkpoint(base, old[j]) end
  n = n + #old
end
return n
"""
)

# KEYS: run keys -> number of checkpoints removed
_DELETE_FOR_RUNS = (
    _LUA_HELPERS
    + r"""
local n = 0
for k = 1, #KEYS do
  local members = redis.call('SMEMBERS', KEYS[k])
  for i = 1, #members do
    local m = members[i]
    local sep = string.find(m, '\0', 1, true)
    if sep then
      drop_checkpoint(string.sub(m, 1, sep - 1), string.sub(m, sep + 1))
      n = n + 1
    end
  end
  redis.call('DEL', KEYS[k])
end
return n
"""
)

# KEYS: source ns-hash, target ns-hash | ARGV: source thread base, target thread base
# -> number of namespaces copied. Merges into whatever the target already holds.
_COPY_THREAD = (
    _LUA_HELPERS
    + r"""
local function copy_hash(src, dst)
  local pairs_ = redis.call('HGETALL', src)
  for i = 1, #pairs_, 2 do redis.call('HSET', dst, pairs_[i], pairs_[i + 1]) end
end
local function copy_zset(src, dst)
  local members = redis.call('ZRANGE', src, 0, -1)
  for i = 1, #members do redis.call('ZADD', dst, 0, members[i]) end
end
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local field, ttl = fields[i], fields[i + 1]
  local s, d = ARGV[1] .. field .. ':', ARGV[2] .. field .. ':'
  copy_zset(s .. 'idx', d .. 'idx')
  copy_zset(s .. 'widx', d .. 'widx')
  copy_hash(s .. 'data', d .. 'data')
  copy_hash(s .. 'writes', d .. 'writes')
  local runs = redis.call('HGETALL', s .. 'runs')
  for j = 1, #runs, 2 do
    redis.call('HSET', d .. 'runs', runs[j], runs[j + 1])
    redis.call('SADD', runs[j + 1], d .. '\0' .. runs[j])
    extend(runs[j + 1], ttl)
  end
  redis.call('HSET', KEYS[2], field, ttl)
  extend(KEYS[2], ttl)
  for j = 1, #SUFFIXES do redis.call('PEXPIRE', d .. SUFFIXES[j], ttl) end
end
return #fields / 2
"""
)


# -- binary framing -------------------------------------------------------------------------

_LEN = struct.Struct(">I")


def _pack(*parts: bytes) -> bytes:
    """Length-prefixed concatenation: binary-safe whatever the parts contain."""
    return b"".join(_LEN.pack(len(p)) + p for p in parts)


def _unpack(data: bytes) -> list[bytes]:
    parts: list[bytes] = []
    pos = 0
    while pos < len(data):
        (size,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        parts.append(data[pos : pos + size])
        pos += size
    return parts


def _split_framed(data: bytes) -> list[bytes]:
    """Split the netstrings (``<length>:<bytes>``) that ``_GET`` concatenates."""
    parts: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        colon = data.index(b":", pos)
        pos = colon + 1 + int(data[pos:colon])
        parts.append(data[colon + 1 : pos])
    return parts


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _enc(value: str) -> str:
    """Percent-encode a key part so ':' and friends inside ids cannot alias other keys."""
    return quote(value, safe="")


class _Script:
    """A Lua script run with EVALSHA, loaded on NOSCRIPT (a restarted or fresh server)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


class _NsKeys(NamedTuple):
    """The key names of one (thread, namespace), built once and cached."""

    ns_hash: str  # {prefix}:cp:t=T:ns
    field: str  # n=N, the namespace's field in ns_hash
    base: str  # {prefix}:cp:t=T:n=N:
    idx: str  # base + "idx"


def _config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


_TurnMemo = dict[tuple[str, str, str], "CheckpointTuple | None"]
_turn_memo: ContextVar[_TurnMemo | None] = ContextVar("switchboard_checkpoint_turn", default=None)


@contextlib.contextmanager
def reading_once() -> Iterator[None]:
    """Within this block (one turn, under the thread's lease), a checkpoint read a second
    time is served from the first read instead of another round trip; any write through
    the saver forgets what was read. The runtime checks for a paused run (``aget_state``)
    and then runs the graph, which loads the same checkpoint again: one read, not two.

    Only :class:`RedisCheckpointSaver` consults it; with other savers it does nothing.
    Safe only while nobody else writes the thread, which the lease guarantees."""
    token = _turn_memo.set({})
    try:
        yield
    finally:
        _turn_memo.reset(token)


def _forget_reads() -> None:
    memo = _turn_memo.get()
    if memo:
        memo.clear()


def _fresh(found: CheckpointTuple) -> CheckpointTuple:
    """A copy a caller may change (the Pregel loop updates its checkpoint's version maps
    in place) without changing what the memo serves next."""
    return found._replace(
        checkpoint=copy_checkpoint(found.checkpoint),
        metadata=dict(found.metadata),  # type: ignore[arg-type]
        pending_writes=list(found.pending_writes or []),
    )


class RedisCheckpointSaver(BaseCheckpointSaver[str]):
    """LangGraph checkpointer on core Redis: async-only, bounded, expiring.

    ``ttl`` is how long a thread is remembered after its last write (overridable per
    thread with ``configurable["memory_ttl_seconds"]``); ``max_checkpoints`` bounds the
    checkpoints kept per thread and namespace. Use it from async graph methods
    (``ainvoke``, ``astream``); the sync methods raise :class:`NotImplementedError`.
    """

    def __init__(
        self,
        *,
        redis: Redis,
        keys: Keys,
        ttl: timedelta = timedelta(days=7),
        max_checkpoints: int = 20,
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(serde=serde)
        if max_checkpoints < 1:
            raise ValueError(f"max_checkpoints must be at least 1, got {max_checkpoints}")
        if ttl <= timedelta(0):
            raise ValueError(f"ttl must be positive, got {ttl}")
        self._redis = redis
        self._keys = keys
        self._ttl_ms = ttl_ms(ttl)
        self._max_checkpoints = max_checkpoints
        self._get = _Script(_GET)
        self._list = _Script(_LIST)
        self._put = _Script(_PUT)
        self._put_writes = _Script(_PUT_WRITES)
        self._delete_thread = _Script(_DELETE_THREAD)
        self._keep_latest = _Script(_KEEP_LATEST)
        self._delete_for_runs = _Script(_DELETE_FOR_RUNS)
        self._copy_thread = _Script(_COPY_THREAD)
        self._key_cache: dict[tuple[str, str], _NsKeys] = {}

    async def _eval(
        self,
        script: _Script,
        operation: str,
        keys: Sequence[str],
        args: Sequence[str | bytes | int] = (),
    ) -> Any:
        """Run ``script``: one EVALSHA, plus SCRIPT LOAD and a retry if the server lacks it.

        Calls ``execute_command`` directly (redis-py's ``Script`` wrapper and the
        ``redis_errors`` context manager cost a few microseconds per call on the hot
        path); transport failures still become :class:`RedisUnavailable` via
        ``redis_errors``, entered only once a failure has happened.
        """
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            try:
                return await self._redis.execute_command(*command)  # type: ignore[no-untyped-call]
            except NoScriptError:
                await self._redis.script_load(script.source)
                return await self._redis.execute_command(*command)  # type: ignore[no-untyped-call]
        except TRANSIENT_ERRORS:
            async with redis_errors(operation):
                raise

    # -- keys -----------------------------------------------------------------------------

    def _ns_keys(self, thread_id: str, ns: str) -> _NsKeys:
        cached = self._key_cache.get((thread_id, ns))
        if cached is None:
            field = self._ns_field(ns)
            base = self._thread_base(thread_id) + field + ":"
            cached = _NsKeys(self._ns_hash(thread_id), field, base, base + "idx")
            if len(self._key_cache) >= _KEY_CACHE_SIZE:
                self._key_cache.clear()
            self._key_cache[thread_id, ns] = cached
        return cached

    def _thread_base(self, thread_id: str) -> str:
        return self._keys.key(KeyKind.CHECKPOINT, f"t={_enc(thread_id)}") + ":"

    def _ns_hash(self, thread_id: str) -> str:
        return self._keys.key(KeyKind.CHECKPOINT, f"t={_enc(thread_id)}", "ns")

    @staticmethod
    def _ns_field(ns: str) -> str:
        return f"n={_enc(ns)}"

    def _run_key(self, run_id: str) -> str:
        return self._keys.key(KeyKind.CHECKPOINT, "run", _enc(run_id))

    # -- config helpers -------------------------------------------------------------------

    @staticmethod
    def _thread_and_ns(config: RunnableConfig) -> tuple[str, str]:
        configurable = config.get("configurable") or {}
        thread_id = configurable.get("thread_id")
        if thread_id is None or thread_id == "":
            raise ValueError("RedisCheckpointSaver needs configurable['thread_id']")
        return str(thread_id), str(configurable.get("checkpoint_ns") or "")

    @staticmethod
    def _ttl_override_ms(config: RunnableConfig) -> int | None:
        value = (config.get("configurable") or {}).get(MEMORY_TTL_KEY)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{MEMORY_TTL_KEY} must be a positive number, got {value!r}")
        return ttl_ms(timedelta(seconds=value))

    # -- decoding -------------------------------------------------------------------------

    def _decode_writes(self, raw: Sequence[bytes]) -> list[PendingWrite]:
        decoded: list[tuple[tuple[str, str, int], PendingWrite]] = []
        for item in raw:
            task_id, channel, type_, value, task_path, idx = _unpack(item)
            write: PendingWrite = (
                task_id.decode(),
                channel.decode(),
                self.serde.loads_typed((type_.decode(), value)),
            )
            decoded.append((writes_sort_key(task_path.decode(), write[0], int(idx)), write))
        decoded.sort(key=lambda pair: pair[0])
        return [write for _, write in decoded]

    def _tuple(
        self,
        thread_id: str,
        ns: str,
        checkpoint_id: str,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        parent_id: str,
        raw_writes: Sequence[bytes],
    ) -> CheckpointTuple:
        return CheckpointTuple(
            config=_config(thread_id, ns, checkpoint_id),
            checkpoint=checkpoint,
            metadata=metadata,
            parent_config=_config(thread_id, ns, parent_id) if parent_id else None,
            pending_writes=self._decode_writes(raw_writes),
        )

    def _decode(self, thread_id: str, ns: str, framed: bytes) -> CheckpointTuple:
        checkpoint_id, record, *raw_writes = _split_framed(framed)
        cp_type, cp_bytes, md_type, md_bytes, parent = _unpack(record)
        return self._tuple(
            thread_id,
            ns,
            checkpoint_id.decode(),
            self.serde.loads_typed((cp_type.decode(), cp_bytes)),
            self.serde.loads_typed((md_type.decode(), md_bytes)),
            parent.decode(),
            raw_writes,
        )

    # -- async API ------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by ``config``, or the thread's latest; one round trip."""
        thread_id, ns = self._thread_and_ns(config)
        checkpoint_id = get_checkpoint_id(config) or ""
        memo = _turn_memo.get()
        key = (thread_id, ns, checkpoint_id)
        if memo is not None and key in memo:
            found = memo[key]
            return None if found is None else _fresh(found)
        k = self._ns_keys(thread_id, ns)
        framed = await self._eval(self._get, "checkpoint get", (k.idx,), (k.base, checkpoint_id))
        decoded = self._decode(thread_id, ns, framed) if framed else None
        if memo is not None:
            memo[key] = decoded
            return None if decoded is None else _fresh(decoded)
        return decoded

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Checkpoints of one thread, newest first, per namespace.

        ``config`` must name a thread: the saver keeps per-thread indexes only, so listing
        across all threads is not supported. Without ``checkpoint_ns`` every namespace of
        the thread is listed. ``filter`` matches metadata keys by equality.
        """
        if config is None:
            raise ValueError(
                "RedisCheckpointSaver.alist needs a config with a thread_id; "
                "listing across all threads is not supported"
            )
        thread_id, _ = self._thread_and_ns(config)
        configurable = config.get("configurable") or {}
        if configurable.get("checkpoint_ns") is None:
            async with redis_errors("checkpoint list namespaces"):
                fields = await self._redis.hkeys(self._ns_hash(thread_id))
            namespaces = sorted(unquote(_text(f)[2:]) for f in fields)
        else:
            namespaces = [str(configurable["checkpoint_ns"])]
        remaining = limit
        before_id = get_checkpoint_id(before) if before else None
        only_id = get_checkpoint_id(config)
        for ns in namespaces:
            if remaining is not None and remaining <= 0:
                return
            async for tup in self._list_ns(thread_id, ns, filter, before_id, only_id, remaining):
                yield tup
                if remaining is not None:
                    remaining -= 1

    async def _list_ns(
        self,
        thread_id: str,
        ns: str,
        filter: dict[str, Any] | None,
        before_id: str | None,
        only_id: str | None,
        limit: int | None,
    ) -> AsyncIterator[CheckpointTuple]:
        k = self._ns_keys(thread_id, ns)
        keys = (k.idx,)
        if only_id is not None:
            if before_id is not None and only_id >= before_id:
                return
            framed = await self._eval(self._get, "checkpoint list", keys, (k.base, only_id))
            parts = _split_framed(framed) if framed else []
            rows = [(parts[0], parts[1], parts[2:])] if parts else []
            for tup in self._filtered(thread_id, ns, rows, filter):
                yield tup
            return
        page_size = limit if (limit is not None and not filter) else _LIST_PAGE
        page_size = max(1, min(page_size, _LIST_PAGE))
        upper = before_id or ""
        produced = 0
        while True:
            rows = await self._eval(self._list, "checkpoint list", keys, (k.base, upper, page_size))
            for tup in self._filtered(thread_id, ns, rows, filter):
                yield tup
                produced += 1
                if limit is not None and produced >= limit:
                    return
            if len(rows) < page_size:
                return
            upper = rows[-1][0].decode()

    def _filtered(
        self,
        thread_id: str,
        ns: str,
        rows: Sequence[Any],
        filter: dict[str, Any] | None,
    ) -> Iterator[CheckpointTuple]:
        for checkpoint_id, record, raw_writes in rows:
            cp_type, cp_bytes, md_type, md_bytes, parent = _unpack(record)
            metadata: CheckpointMetadata = self.serde.loads_typed((md_type.decode(), md_bytes))
            if filter and not all(metadata.get(k) == v for k, v in filter.items()):
                continue
            yield self._tuple(
                thread_id,
                ns,
                checkpoint_id.decode(),
                self.serde.loads_typed((cp_type.decode(), cp_bytes)),
                metadata,
                parent.decode(),
                raw_writes,
            )

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store ``checkpoint`` whole, refresh the namespace's TTL and prune beyond the bound.

        One round trip. ``new_versions`` is not needed: channel values are stored inline.
        """
        _forget_reads()
        thread_id, ns = self._thread_and_ns(config)
        ttl = self._ttl_override_ms(config) or self._ttl_ms
        full_metadata = get_checkpoint_metadata(config, metadata)
        cp_type, cp_bytes = self.serde.dumps_typed(checkpoint)
        md_type, md_bytes = self.serde.dumps_typed(full_metadata)
        parent_id = get_checkpoint_id(config) or ""
        record = _pack(cp_type.encode(), cp_bytes, md_type.encode(), md_bytes, parent_id.encode())
        k = self._ns_keys(thread_id, ns)
        run_id = full_metadata.get("run_id")
        keys = (k.ns_hash, self._run_key(str(run_id))) if run_id else (k.ns_hash,)
        args = (k.base, k.field, checkpoint["id"], record, ttl, self._max_checkpoints)
        await self._eval(self._put, "checkpoint put", keys, args)
        return _config(thread_id, ns, checkpoint["id"])

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes for the checkpoint in ``config``; one round trip.

        A repeated ``(task_id, idx)`` keeps the first value, except for the special
        channels (errors, interrupts, ...) whose latest value wins, as in LangGraph's savers.
        """
        _forget_reads()
        thread_id, ns = self._thread_and_ns(config)
        checkpoint_id = get_checkpoint_id(config)
        if not checkpoint_id:
            raise ValueError("aput_writes needs configurable['checkpoint_id']")
        override = self._ttl_override_ms(config)
        k = self._ns_keys(thread_id, ns)
        overwrite: list[str | bytes] = []  # special channels (idx < 0): latest value wins
        keep_first: list[str | bytes] = []
        task, path = task_id.encode(), task_path.encode()
        for position, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, position)
            type_, payload = self.serde.dumps_typed(value)
            (overwrite if idx < 0 else keep_first).extend(
                (
                    f"{checkpoint_id}\x00{task_id}\x00{idx}",
                    _pack(task, channel.encode(), type_.encode(), payload, path, b"%d" % idx),
                )
            )
        args = (
            k.base,
            k.field,
            "" if override is None else override,
            self._ttl_ms,
            len(overwrite) // 2,
            *overwrite,
            *keep_first,
        )
        await self._eval(self._put_writes, "checkpoint put_writes", (k.ns_hash,), args)

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint and write of ``thread_id``, in all namespaces."""
        _forget_reads()
        thread_id = str(thread_id)
        await self._eval(
            self._delete_thread,
            "checkpoint delete_thread",
            (self._ns_hash(thread_id),),
            (self._thread_base(thread_id),),
        )

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) created by any of ``run_ids``."""
        _forget_reads()
        if not run_ids:
            return
        run_keys = [self._run_key(str(r)) for r in run_ids]
        await self._eval(self._delete_for_runs, "checkpoint delete_for_runs", run_keys)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and write of one thread onto another (merging)."""
        _forget_reads()
        source, target = str(source_thread_id), str(target_thread_id)
        if source == target:
            return
        await self._eval(
            self._copy_thread,
            "checkpoint copy_thread",
            (self._ns_hash(source), self._ns_hash(target)),
            (self._thread_base(source), self._thread_base(target)),
        )

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``keep_latest`` keeps each namespace's newest checkpoint; ``delete`` drops all."""
        _forget_reads()
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'")
        for thread_id in thread_ids:
            if strategy == "delete":
                await self.adelete_thread(thread_id)
                continue
            await self._eval(
                self._keep_latest,
                "checkpoint prune",
                (self._ns_hash(str(thread_id)),),
                (self._thread_base(str(thread_id)),),
            )

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Zero-padded counter plus a random tie-breaker, as LangGraph's own savers do."""
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"

    # -- sync API: not supported ----------------------------------------------------------

    @staticmethod
    def _async_only(name: str) -> NoReturn:
        raise NotImplementedError(
            f"RedisCheckpointSaver is async-only: use a{name}() "
            "(run graphs with ainvoke/astream, not invoke/stream)"
        )

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        self._async_only("get_tuple")

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        self._async_only("list")

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        self._async_only("put")

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._async_only("put_writes")

    def delete_thread(self, thread_id: str) -> None:
        self._async_only("delete_thread")

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._async_only("delete_for_runs")

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._async_only("copy_thread")

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._async_only("prune")
