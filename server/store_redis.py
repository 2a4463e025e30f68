"""The shared store on Redis: many server processes, on many machines, see the same rooms,
and a restart of any of them (or of Redis, with its append-only file) loses nothing
acknowledged. The keys and why they are what they are: docs/SCALING.md.

Belongs here: every Redis command of the server (no other module imports redis). Each room's
log is a Redis stream (XADD, XRANGE, XREAD), so its entries have one total order that every
process applies; rooms, hashed tokens, resumable sessions and quotas are hashes and sorted
sets with expiry, changed by small Lua scripts so that each check-and-change is atomic.
A command that cannot complete within UNAVAILABLE_S raises `unavailable()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, NoScriptError, RedisError

from protocol import Code, ProtocolError, ResumeError
from server.roomlog import entry_key
from server.store import (
    ROOM_ID_BYTES,
    TOKEN_BYTES,
    UNAVAILABLE_S,
    Follower,
    ResumeFailed,
    RoomKeys,
    SessionRecord,
    Store,
    token_hash,
    unavailable,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

LEASE_S = 3.0  # a process that has not said it is alive for this long is dead
CANCEL_TRIES, CANCEL_WAIT_S = 10, 0.5  # stop: cancel a task again while it runs on
BLOCK_MS = 1000  # one XREAD of the inbox waits this long for new entries at most
INBOX_KEPT = 100_000  # a process's inbox keeps about this many entries (MAXLEN ~)
INBOX_KEEP_MS = 30_000  # an inbox (and its rooms set) outlives a silent owner by this much
EXPIRE_BATCH = 100  # parked sessions claimed per sweep
ANSWERS_KEPT = 32  # a room's answers stream keeps about this many (MAXLEN ~)
PREDICTOR_KEEP_MS = 30_000  # a room's predictor key outlives a silent owner by this much

_CREATE = """
local rooms, origins, room, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, max_rooms, per_origin = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', rooms, '-inf', now)
if redis.call('ZCARD', rooms) >= max_rooms then return {'full'} end
if ARGV[6] ~= '' then
  redis.call('ZREMRANGEBYSCORE', origins, '-inf', now)
  if redis.call('ZCARD', origins) >= per_origin then return {'origin'} end
end
if redis.call('EXISTS', room) == 1 then return {'taken'} end
redis.call('HSET', room, 'draw', ARGV[4], 'watch', ARGV[5], 'origin', ARGV[6], 'members', 1)
local id = redis.call('XADD', log, '*', 'o', ARGV[7])
redis.call('ZADD', rooms, '+inf', ARGV[8])
if ARGV[6] ~= '' then redis.call('ZADD', origins, '+inf', ARGV[8]) end
return {'ok', id}
"""

_OCCUPANCY = """
local room, log, rooms = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', room) == 0 then return -1 end
local n = redis.call('HINCRBY', room, 'members', ARGV[1])
local origin = redis.call('HGET', room, 'origin')
local score = '+inf'
if n <= 0 then
  redis.call('PEXPIRE', room, ARGV[3])
  redis.call('PEXPIRE', log, ARGV[3])
  score = tonumber(ARGV[2]) + tonumber(ARGV[3]) / 1000
else
  redis.call('PERSIST', room)
  redis.call('PERSIST', log)
end
redis.call('ZADD', rooms, score, ARGV[4])
if origin and origin ~= '' then redis.call('ZADD', ARGV[5] .. origin, score, ARGV[4]) end
return n
"""

_RESUME = """
local session, parked, prefix, th = KEYS[1], KEYS[2], ARGV[2], ARGV[3]
local h = redis.call('HMGET', session, 'session', 'room', 'solo', 'state', 'owner', 'deadline')
if not h[1] then return {'unknown'} end
if h[4] == 'live' then
  if redis.call('EXISTS', prefix .. 'proc:' .. h[5]) == 1 then return {'unavailable'} end
elseif h[4] == 'expired' or tonumber(h[6]) <= tonumber(ARGV[1]) then
  return {'expired'}
end
redis.call('DEL', session)
redis.call('ZREM', parked, th)
if h[5] then redis.call('SREM', prefix .. 'proc:' .. h[5] .. ':sessions', th) end
return {'ok', h[1], h[2] or '', h[3] or ''}
"""

_CLAIM = """
local me, prefix, keep = ARGV[1], ARGV[2], ARGV[3]
local counts = prefix .. 'predicting'
local out = {}
for i = 4, #ARGV do
  local key = prefix .. 'pred:' .. ARGV[i]
  local owner = redis.call('GET', key)
  local take = owner == me or not owner or redis.call('EXISTS', prefix .. 'proc:' .. owner) == 0
  if not take then  -- an owner predicting two rooms more than this process hands one over
    local theirs = tonumber(redis.call('HGET', counts, owner) or '0')
    take = theirs > tonumber(redis.call('HGET', counts, me) or '0') + 1
    if take then redis.call('HINCRBY', counts, owner, -1) end
  end
  if take then
    if owner ~= me then redis.call('HINCRBY', counts, me, 1) end
    redis.call('SET', key, me, 'PX', keep)
    redis.call('PEXPIRE', prefix .. 'ans:' .. ARGV[i], keep)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""

# Appends, many at once (ARGV from 4: room, kind, data, maxlen per append): each to its
# room's log (kind 'o') or answers stream (kind 'a', capped), and a copy of each to the inbox
# of every process following the room (answers: not to their writer, which ignores its own).
# Each inbox gets one entry per call, `m`: a msgpack list of [room, kind, id, id before, data].
# A log entry names the entry before it, so that a follower that missed one (its inbox
# trimmed, a lost reply) notices and reads the log again. One script: the copies are in the
# order of the appends. Returns the ids.
_APPEND = """
local prefix, me, kept = ARGV[1], ARGV[2], ARGV[3]
local ids, last, followers, boxes, order = {}, {}, {}, {}, {}
for i = 4, #ARGV, 4 do
  local room, kind, data, maxlen = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local stream = prefix .. (kind == 'o' and 'log:' or 'ans:') .. room
  local prev = ''
  if kind == 'o' then
    prev = last[room]
    if prev == nil then
      local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
      prev = top[1] and top[1][1] or ''
    end
  end
  local id
  if maxlen == '' then
    id = redis.call('XADD', stream, '*', kind, data)
  else
    id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', kind, data)
  end
  if kind == 'o' then last[room] = id end
  ids[#ids + 1] = id
  local fol = followers[room]
  if fol == nil then
    fol = redis.call('SMEMBERS', prefix .. 'fol:' .. room)
    followers[room] = fol
  end
  for _, p in ipairs(fol) do
    if kind == 'o' or p ~= me then
      if boxes[p] == nil then boxes[p] = {}; order[#order + 1] = p end
      local box = boxes[p]
      box[#box + 1] = {room, kind, id, prev, data}
    end
  end
end
for _, p in ipairs(order) do
  local inbox = prefix .. 'inbox:' .. p
  redis.call('XADD', inbox, 'MAXLEN', '~', kept, '*', 'm', cmsgpack.pack(boxes[p]))
end
return ids
"""

# A dead process follows no room any more: out of every room's followers, inbox gone.
_FORGET = """
local rooms, inbox, prefix, pid = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
for _, room in ipairs(redis.call('SMEMBERS', rooms)) do
  redis.call('SREM', prefix .. 'fol:' .. room, pid)
end
redis.call('DEL', rooms, inbox)
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

_ORPHANS = """
local sessions, parked, deadline, keep = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
for _, th in ipairs(redis.call('SMEMBERS', sessions)) do
  local key = ARGV[3] .. 'session:' .. th
  if redis.call('HGET', key, 'state') == 'live' then
    redis.call('HSET', key, 'state', 'parked', 'deadline', deadline)
    redis.call('PEXPIRE', key, keep)
    redis.call('ZADD', parked, deadline, th)
  end
end
redis.call('DEL', sessions)
return 1
"""


@dataclass(slots=True)
class _Append:
    """An append (`_APPEND`) waiting for the next pipeline: kind "o" to the room's log, "a"
    to its answers stream, capped at `maxlen`; `done` gets the entry's id (None: nobody
    waits)."""

    room: str
    kind: str
    data: bytes
    maxlen: int | None
    done: asyncio.Future[str] | None


class RedisStore(Store):
    """Rooms, logs and sessions in one Redis (redis:// or rediss://, password and database
    in the URL), under keys that start with `prefix`."""

    shared = True

    def __init__(
        self,
        url: str,
        prefix: str = "digits:",
        max_rooms: int = 1000,
        per_origin: int = 20,
        ttl_s: float = 300.0,
        grace_s: float = 60.0,
        remember_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.prefix, self.max_rooms, self.per_origin = prefix, max_rooms, per_origin
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.grace_s = grace_s
        self.remember_ms = round(1000 * (10 * grace_s if remember_s is None else remember_s))
        self.clock = clock
        self.process = secrets.token_hex(6)
        # A pooled connection that Redis closed (a restart) fails its next command: that is
        # tried once more on a new connection. Only connection errors: a command that timed
        # out may have run, and running an append twice would draw its ink twice.
        retry = Retry(NoBackoff(), 1, supported_errors=(ConnectionError,))
        opts: dict[str, Any] = {"socket_connect_timeout": UNAVAILABLE_S / 2, "retry": retry}
        # redis-py's replies are typed as unions of every reply shape: typed Any here, and
        # each reply is read where it arrives.
        self.redis: Any = aioredis.Redis.from_url(url, socket_timeout=UNAVAILABLE_S, **opts)
        self._reader: Any = aioredis.Redis.from_url(url, socket_timeout=BLOCK_MS / 1000 + 2, **opts)
        self._create: Any = self.redis.register_script(_CREATE)
        self._occupancy: Any = self.redis.register_script(_OCCUPANCY)
        self._resume: Any = self.redis.register_script(_RESUME)
        self._orphans: Any = self.redis.register_script(_ORPHANS)
        self._claim: Any = self.redis.register_script(_CLAIM)
        self._release: Any = self.redis.register_script(_RELEASE)
        self._append: Any = self.redis.register_script(_APPEND)
        self._forget: Any = self.redis.register_script(_FORGET)
        self._dummy = token_hash(secrets.token_urlsafe(TOKEN_BYTES))
        self._following: dict[str, str] = {}  # room -> id of the last entry delivered
        self._answered: dict[str, str] = {}  # room -> id of the last answer delivered
        self._answers_start: dict[str, str] = {}  # room -> its newest answer, at `history`
        self._compacted: dict[str, str] = {}  # room -> `upto` of this process's last compaction
        self._joining: set[str] = set()  # followed, not yet in the room's followers set
        self._predicting: set[str] = set()  # rooms this process predicts
        self._follower: Follower | None = None
        self._inbox_id = "0-0"  # the inbox is this process's own: every entry counts
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._appends: list[_Append] = []  # waiting for XADD
        self._flusher: asyncio.Task[None] | None = None

    # ---- keys ---------------------------------------------------------------------------

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _log(self, room: str) -> str:
        return self._k("log", room)

    def _answers(self, room: str) -> str:
        return self._k("ans", room)

    def _inbox(self) -> str:
        return self._k("inbox", self.process)

    # ---- lifetime -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start following and saying this process is alive. Redis need not be up yet."""
        self._tasks = [
            asyncio.create_task(self._follow_logs(), name="redis-follower"),
            asyncio.create_task(self._heartbeat(), name="redis-heartbeat"),
        ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._background, *([self._flusher] if self._flusher else [])]
        await _cancel(tasks)
        with contextlib.suppress(RedisError, OSError, TimeoutError, ProtocolError):
            async with asyncio.timeout(UNAVAILABLE_S):  # alive no more; left in `procs`, so
                # that a sweeper claims any session that could not be parked
                await self.redis.delete(self._k("proc", self.process))
                await self.redis.hdel(self._k("predicting"), self.process)
                await self._forget_process(self.process)
        await self.redis.aclose()
        await self._reader.aclose()

    async def _call(self, work: Awaitable[T]) -> T:
        """One round trip to Redis, or `unavailable` within UNAVAILABLE_S."""
        try:
            async with asyncio.timeout(UNAVAILABLE_S):
                return await work
        except NoScriptError:
            raise  # the caller loads the script
        except (RedisError, OSError, TimeoutError) as exc:
            log.debug("redis: %s", type(exc).__name__)
            raise unavailable() from None

    async def _heartbeat(self) -> None:
        """This process is alive (its sessions are not resumable elsewhere) for LEASE_S."""
        while True:
            with contextlib.suppress(ProtocolError):
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.set(self._k("proc", self.process), 1, px=round(LEASE_S * 1000))
                    pipe.zadd(self._k("procs"), {self.process: self.clock()})
                    pipe.hset(self._k("predicting"), self.process, len(self._predicting))
                    pipe.pexpire(self._inbox(), INBOX_KEEP_MS)
                    pipe.pexpire(self._k("proc", self.process, "rooms"), INBOX_KEEP_MS)
                    await self._call(pipe.execute())
                await self._claim_predictors(list(self._following))
            await asyncio.sleep(LEASE_S / 3)

    async def _claim_predictors(self, rooms: list[str]) -> None:
        """Be the predictor of each of `rooms` that has none alive (or keep being it), or
        whose predictor predicts two rooms more than this process (so the model work of
        rooms spreads over the processes that serve them); the follower is told of every
        change. A room handed over is predicted by both for up to a heartbeat."""
        if not rooms:
            return
        args = [self.process, self.prefix, PREDICTOR_KEEP_MS, *rooms]
        mine = await self._call(self._claim(args=args))
        for room, won in zip(rooms, mine, strict=True):
            if room not in self._following or bool(won) == (room in self._predicting):
                continue
            if won:
                self._predicting.add(room)
            else:
                self._predicting.discard(room)
            if self._follower is not None:
                self._follower.on_predictor(room, bool(won))

    # ---- rooms --------------------------------------------------------------------------

    async def create_room(self, origin: str, now: float, seed: bytes) -> RoomKeys:
        draw, watch = secrets.token_urlsafe(TOKEN_BYTES), secrets.token_urlsafe(TOKEN_BYTES)
        for _ in range(3):
            room = secrets.token_urlsafe(ROOM_ID_BYTES)
            keys = [self._k("rooms"), self._k("origin", origin), self._k("room", room)]
            args = [now, self.max_rooms, self.per_origin, token_hash(draw), token_hash(watch)]
            reply = await self._call(
                self._create(keys=[*keys, self._log(room)], args=[*args, origin, seed, room])
            )
            outcome = reply[0].decode()
            if outcome == "ok":
                return RoomKeys(room, draw, watch, reply[1].decode())
            if outcome == "full":
                raise ProtocolError(Code.TOO_MANY_ROOMS, "too many shared sessions; try later")
            if outcome == "origin":
                text = "too many shared sessions from one address; leave some, or try later"
                raise ProtocolError(Code.TOO_MANY_ROOMS, text)
        raise unavailable()  # three random 72-bit ids taken: something is wrong

    async def find_room(self, room_id: str, token: str, now: float) -> bool:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self._k("room", room_id), "draw", "watch")
            pipe.zscore(self._k("rooms"), room_id)
            (draw, watch), until = await self._call(pipe.execute())
        if until is not None and until <= now:  # empty for its time to live: gone
            draw = watch = None
        given = token_hash(token).encode()
        is_draw = hmac.compare_digest(given, draw or self._dummy.encode())
        is_watch = hmac.compare_digest(given, watch or self._dummy.encode())
        if draw is None or not (is_draw or is_watch):
            raise ProtocolError(
                Code.ROOM_REFUSED, "no room with that token (wrong, expired or unknown)"
            )
        return is_draw

    async def occupancy(self, room_id: str, delta: int, now: float) -> None:
        keys = [self._k("room", room_id), self._log(room_id), self._k("rooms")]
        args = [delta, now, self.ttl_ms, room_id, self._k("origin", "")]
        await self._call(self._occupancy(keys=keys, args=args))

    async def expire_rooms(self, now: float) -> list[str]:
        gone = await self._call(self.redis.zrangebyscore(self._k("rooms"), "-inf", now))
        if gone:
            await self._call(self.redis.zrem(self._k("rooms"), *gone))
        return [room.decode() for room in gone]

    # ---- logs ---------------------------------------------------------------------------

    async def append(self, room_id: str, data: bytes) -> str:
        """Append to the room's log (and its followers' inboxes), sent with the other appends
        of this moment in one pipeline (one round trip for all the connections that drew
        meanwhile)."""
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._queue(_Append(room_id, "o", data, None, done))
        return await done

    async def compact(self, room_id: str, seed: bytes, upto: str) -> None:
        """Append the seed, then XTRIM MINID just past the `upto` of this process's previous
        compaction of the room (none the first time), in one transaction. Not past this
        one's: a process that read the log just before (loading the room) follows it from
        the last entry it read, which must still be there with everything after it."""
        previous, self._compacted[room_id] = self._compacted.get(room_id), upto
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.eval(_APPEND, 0, *self._append_args([_Append(room_id, "o", seed, None, None)]))
            if previous is not None:
                ms, n = entry_key(previous)
                pipe.xtrim(self._log(room_id), minid=f"{ms}-{n + 1}", approximate=False)
            await self._call(pipe.execute())

    def publish(self, room_id: str, answer: bytes) -> None:
        """Append to the room's answers stream (capped) and the other followers' inboxes, in
        the next pipeline of appends."""
        self._queue(_Append(room_id, "a", answer, ANSWERS_KEPT, None))

    def _append_args(self, batch: list[_Append]) -> list[Any]:
        args: list[Any] = [self.prefix, self.process, INBOX_KEPT]
        for a in batch:
            args += [a.room, a.kind, a.data, "" if a.maxlen is None else a.maxlen]
        return args

    def _queue(self, append: _Append) -> None:
        self._appends.append(append)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_appends())

    async def _flush_appends(self) -> None:
        while self._appends:
            batch, self._appends = self._appends, []
            try:
                ids = await self._send_appends(batch)
            except ProtocolError:
                for a in batch:
                    if a.done is not None and not a.done.done():
                        a.done.set_exception(unavailable())
                continue
            for a, entry_id in zip(batch, ids, strict=True):
                if a.done is not None and not a.done.done():
                    a.done.set_result(entry_id.decode())

    async def _send_appends(self, batch: list[_Append]) -> list[bytes]:
        """All the appends of this moment in one script call (by its SHA: redis-py's Script
        would ask SCRIPT EXISTS first). A Redis that lost its scripts (restarted) answers
        NOSCRIPT and ran none of them: it is given the script and the call again."""
        args = self._append_args(batch)
        try:
            return list(await self._call(self.redis.evalsha(self._append.sha, 0, *args)))
        except NoScriptError:
            await self._call(self.redis.script_load(_APPEND))
        try:
            return list(await self._call(self.redis.evalsha(self._append.sha, 0, *args)))
        except NoScriptError:
            raise unavailable() from None

    async def history(self, room_id: str) -> list[tuple[str, bytes]]:
        """The log (XRANGE) and, for `follow`, where the answers stream stands."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xrange(self._log(room_id))
            pipe.xrevrange(self._answers(room_id), count=1)
            entries, newest = await self._call(pipe.execute())
        self._answers_start[room_id] = newest[0][0].decode() if newest else "0-0"
        return [(i.decode(), fields[b"o"]) for i, fields in entries]

    def follow(self, room_id: str, after: str, follower: Follower) -> None:
        self._follower = follower
        self._following[room_id] = after
        self._answered[room_id] = self._answers_start.pop(room_id, "0-0")
        self._joining.add(room_id)
        self._later(self._wake())
        self._later(self._claim_predictors([room_id]))

    def unfollow(self, room_id: str) -> None:
        self._following.pop(room_id, None)
        self._compacted.pop(room_id, None)
        self._answered.pop(room_id, None)
        self._joining.discard(room_id)
        self._later(self._leave(room_id))
        if room_id in self._predicting:
            self._predicting.discard(room_id)
            key = self._k("pred", room_id)
            self._later(self._call(self._release(keys=[key], args=[self.process])))

    async def _leave(self, room: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.srem(self._k("fol", room), self.process)
            pipe.srem(self._k("proc", self.process, "rooms"), room)
            await self._call(pipe.execute())

    async def _forget_process(self, pid: str) -> None:
        keys = [self._k("proc", pid, "rooms"), self._k("inbox", pid)]
        await self._call(self._forget(keys=keys, args=[self.prefix, pid]))

    async def _wake(self) -> None:
        """Interrupt the inbox's XREAD so that the rooms just followed join their followers."""
        await self._call(self.redis.xadd(self._inbox(), {"w": 1}, maxlen=INBOX_KEPT))

    async def _follow_logs(self) -> None:
        """One XREAD of this process's inbox, which holds the entries and answers of every
        room it follows in the order they were appended; they go to the hub in log order."""
        pause = 0.05
        while True:
            try:
                await self._join()
                reply = await self._reader.xread(
                    {self._inbox(): self._inbox_id}, count=1000, block=BLOCK_MS
                )
            except (RedisError, OSError, ProtocolError) as exc:
                log.warning("redis unreachable (%s); retrying in %.2f s", type(exc).__name__, pause)
                self.reachable = False
                await asyncio.sleep(pause)
                pause = min(1.0, pause * 2)
                continue
            if not self.reachable:
                log.info("redis reachable again")
            pause, self.reachable = 0.05, True
            entries = reply[0][1] if reply else []
            if not entries:
                continue
            self._inbox_id = entries[-1][0].decode()
            logs: dict[str, list[tuple[str, str, bytes]]] = {}
            answers: dict[str, list[tuple[str, bytes]]] = {}
            for _, fields in entries:
                packed = fields.get(b"m")
                if packed is None:
                    continue  # a wake-up
                for room_b, kind, entry_id, before, data in msgpack.unpackb(packed, raw=True):
                    room = room_b.decode()
                    if kind == b"o":
                        logs.setdefault(room, []).append((entry_id.decode(), before.decode(), data))
                    else:
                        answers.setdefault(room, []).append((entry_id.decode(), data))
            for room, got in logs.items():  # logs first: answers follow their ink
                await self._deliver_entries(room, got)
            for room, said in answers.items():
                await self._deliver_answers(room, said)

    async def _join(self) -> None:
        """Rooms just followed join their followers' sets, then get what their log and
        answers gained since `history` (what also reaches the inbox is skipped later, by id)."""
        while self._joining:
            rooms = sorted(self._joining)
            async with self.redis.pipeline(transaction=False) as pipe:
                for room in rooms:
                    pipe.sadd(self._k("fol", room), self.process)
                    pipe.sadd(self._k("proc", self.process, "rooms"), room)
                pipe.pexpire(self._k("proc", self.process, "rooms"), INBOX_KEEP_MS)
                await self._call(pipe.execute())
            for room in rooms:
                if room in self._following:
                    await self._catch_up(room)
                else:  # unfollowed while joining: its leaving may have gone first
                    await self._leave(room)
                self._joining.discard(room)

    async def _catch_up(self, room: str) -> None:
        """What the room's log and answers hold past what was delivered here."""
        last, said = self._following.get(room), self._answered.get(room)
        if last is None or said is None:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xrange(self._log(room), min=f"({last}")
            pipe.xrange(self._answers(room), min=f"({said}")
            entries, answers = await self._call(pipe.execute())
        await self._deliver_entries(room, [(i.decode(), "", f[b"o"]) for i, f in entries], True)
        await self._deliver_answers(room, [(i.decode(), f[b"a"]) for i, f in answers])

    async def _deliver_entries(
        self, room: str, got: list[tuple[str, str, bytes]], complete: bool = False
    ) -> None:
        """Entries (id, id before it, data) in log order; those already delivered are
        skipped, and one whose predecessor was never delivered (`complete`: the list is the
        log itself) sends this process back to the log for what it missed."""
        last, follower = self._following.get(room), self._follower
        if last is None or follower is None:
            return
        fresh: list[tuple[str, bytes]] = []
        for entry_id, before, data in got:
            if entry_key(entry_id) <= entry_key(last):
                continue
            if not complete and before != last:
                await self._deliver(follower, room, fresh)
                await self._catch_up(room)  # delivers the rest of `got` from the log
                return
            fresh.append((entry_id, data))
            last = entry_id
        await self._deliver(follower, room, fresh)

    async def _deliver(self, follower: Follower, room: str, fresh: list[tuple[str, bytes]]) -> None:
        if not fresh or room not in self._following:
            return
        self._following[room] = fresh[-1][0]
        try:
            await follower.on_entries(room, fresh)
        except Exception:
            log.exception("a room's entries could not be applied")

    async def _deliver_answers(self, room: str, said: list[tuple[str, bytes]]) -> None:
        last, follower = self._answered.get(room), self._follower
        if last is None or follower is None:
            return
        fresh = [(i, data) for i, data in said if entry_key(i) > entry_key(last)]
        if not fresh:
            return
        self._answered[room] = fresh[-1][0]
        try:
            await follower.on_answers(room, [data for _, data in fresh])
        except Exception:
            log.exception("a room's answers could not be applied")

    # ---- sessions -----------------------------------------------------------------------

    async def register(self, token: str, record: SessionRecord) -> None:
        th = token_hash(token)
        async with self.redis.pipeline(transaction=True) as pipe:
            fields = self._fields(record, "live", 0.0)
            del fields["solo"]  # kept up to date by save_solo, in whatever order they land
            pipe.hset(self._k("session", th), mapping=fields)
            pipe.persist(self._k("session", th))
            pipe.sadd(self._k("proc", self.process, "sessions"), th)
            await self._call(pipe.execute())

    async def park(self, token: str, record: SessionRecord, deadline: float) -> None:
        th = token_hash(token)
        keep = round(self.grace_s * 1000) + self.remember_ms
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._k("session", th), mapping=self._fields(record, "parked", deadline))
            pipe.pexpire(self._k("session", th), max(1, keep))
            pipe.zadd(self._k("parked"), {th: deadline})
            pipe.srem(self._k("proc", self.process, "sessions"), th)
            await self._call(pipe.execute())

    async def save_solo(self, token: str, seed: dict[str, Any]) -> None:
        key = self._k("session", token_hash(token))
        await self._call(self.redis.hset(key, "solo", msgpack.packb(seed)))

    def _fields(self, record: SessionRecord, state: str, deadline: float) -> dict[str, Any]:
        solo = msgpack.packb(record.solo) if record.solo is not None else b""
        return {
            "session": record.session,
            "room": record.room or "",
            "solo": solo,
            "state": state,
            "owner": self.process,
            "deadline": deadline,
        }

    async def resume(self, token: str, now: float) -> SessionRecord:
        th = token_hash(token)
        keys = [self._k("session", th), self._k("parked")]
        reply = await self._call(self._resume(keys=keys, args=[now, self.prefix, th]))
        outcome = reply[0].decode()
        if outcome != "ok":
            raise ResumeFailed(ResumeError(f"resume_{outcome}"))
        session, room, solo = reply[1].decode(), reply[2].decode(), reply[3]
        seed = msgpack.unpackb(solo, raw=False) if solo else None
        return SessionRecord(session, room or None, seed)

    async def drop(self, token: str) -> None:
        th = token_hash(token)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._k("session", th))
            pipe.zrem(self._k("parked"), th)
            pipe.srem(self._k("proc", self.process, "sessions"), th)
            await self._call(pipe.execute())

    async def expire_parked(self, now: float) -> list[SessionRecord]:
        await self._claim_orphans(now)
        due = await self._call(
            self.redis.zrangebyscore(self._k("parked"), "-inf", now, start=0, num=EXPIRE_BATCH)
        )
        records = []
        for th in due:
            if not await self._call(self.redis.zrem(self._k("parked"), th)):
                continue  # another process claimed it
            key = self._k("session", th.decode())
            session, room = await self._call(self.redis.hmget(key, "session", "room"))
            await self._call(self.redis.hset(key, "state", "expired"))
            if session is not None:
                records.append(SessionRecord(session.decode(), (room or b"").decode() or None))
        return records

    async def _claim_orphans(self, now: float) -> None:
        """The live sessions of a process that died are parked, as if their connections
        had dropped when it was last seen alive."""
        dead = await self._call(self.redis.zrangebyscore(self._k("procs"), "-inf", now - LEASE_S))
        for proc in dead:
            if not await self._call(self.redis.zrem(self._k("procs"), proc)):
                continue
            pid = proc.decode()
            keys = [self._k("proc", pid, "sessions"), self._k("parked")]
            keep = round(self.grace_s * 1000) + self.remember_ms
            args = [now + self.grace_s, keep, self.prefix]
            await self._call(self._orphans(keys=keys, args=args))
            await self._call(self.redis.hdel(self._k("predicting"), pid))
            await self._forget_process(pid)

    def _later(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            with contextlib.suppress(ProtocolError):
                await work

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and wait for them to end, cancelling again those still running: redis-py
    can swallow a cancellation that lands while a connection is being set up or read
    (redis/redis-py#2028, #2551), and the follower's loop then goes on reading for good, so
    that the process would never exit (seen when a server that could not listen stopped
    right after starting)."""
    pending: set[asyncio.Task[Any]] = set(tasks)
    for _ in range(CANCEL_TRIES):
        for task in pending:
            task.cancel()
        if not pending:
            return
        _, pending = await asyncio.wait(pending, timeout=CANCEL_WAIT_S)
    if pending:
        log.warning(
            "%d redis tasks did not stop: %s", len(pending), [t.get_name() for t in pending]
        )
