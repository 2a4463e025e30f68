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
from redis.exceptions import RedisError

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
BLOCK_MS = 1000  # one XREAD waits this long for new entries at most
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
    """An XADD waiting for the next pipeline; `done` gets the entry's id (None: nobody
    waits)."""

    key: str
    field: bytes
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
        opts: dict[str, Any] = {"socket_connect_timeout": UNAVAILABLE_S / 2}
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
        self._dummy = token_hash(secrets.token_urlsafe(TOKEN_BYTES))
        self._following: dict[str, str] = {}  # room -> id of the last entry delivered
        self._answered: dict[str, str] = {}  # room -> id of the last answer delivered
        self._answers_start: dict[str, str] = {}  # room -> its newest answer, at `history`
        self._predicting: set[str] = set()  # rooms this process predicts
        self._follower: Follower | None = None
        self._wake_id = "0-0"  # the stream is this process's own: every wake counts
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

    # ---- lifetime -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start following and saying this process is alive. Redis need not be up yet."""
        self._tasks = [
            asyncio.create_task(self._follow_logs(), name="redis-follower"),
            asyncio.create_task(self._heartbeat(), name="redis-heartbeat"),
        ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._background, *([self._flusher] if self._flusher else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(UNAVAILABLE_S):  # alive no more; left in `procs`, so
                # that a sweeper claims any session that could not be parked
                await self.redis.delete(
                    self._k("proc", self.process), self._k("wake", self.process)
                )
                await self.redis.hdel(self._k("predicting"), self.process)
        await self.redis.aclose()
        await self._reader.aclose()

    async def _call(self, work: Awaitable[T]) -> T:
        """One round trip to Redis, or `unavailable` within UNAVAILABLE_S."""
        try:
            async with asyncio.timeout(UNAVAILABLE_S):
                return await work
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
        """XADD, sent with the other appends of this moment in one pipeline (one round trip
        for all the connections that drew meanwhile)."""
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._queue(_Append(self._log(room_id), b"o", data, None, done))
        return await done

    async def compact(self, room_id: str, seed: bytes, upto: str) -> None:
        """XADD the seed, then XTRIM MINID just past `upto`, in one transaction."""
        ms, n = entry_key(upto)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self._log(room_id), {"o": seed})
            pipe.xtrim(self._log(room_id), minid=f"{ms}-{n + 1}", approximate=False)
            await self._call(pipe.execute())

    def publish(self, room_id: str, answer: bytes) -> None:
        """XADD to the room's answers stream (capped), in the next pipeline of appends."""
        self._queue(_Append(self._answers(room_id), b"a", answer, ANSWERS_KEPT, None))

    def _queue(self, append: _Append) -> None:
        self._appends.append(append)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_appends())

    async def _flush_appends(self) -> None:
        while self._appends:
            batch, self._appends = self._appends, []
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for a in batch:
                        pipe.xadd(a.key, {a.field: a.data}, maxlen=a.maxlen, approximate=True)
                    ids = await self._call(pipe.execute())
            except ProtocolError:
                for a in batch:
                    if a.done is not None and not a.done.done():
                        a.done.set_exception(unavailable())
                continue
            for a, entry_id in zip(batch, ids, strict=True):
                if a.done is not None and not a.done.done():
                    a.done.set_result(entry_id.decode())

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
        self._later(self._wake())
        self._later(self._claim_predictors([room_id]))

    def unfollow(self, room_id: str) -> None:
        self._following.pop(room_id, None)
        self._answered.pop(room_id, None)
        if room_id in self._predicting:
            self._predicting.discard(room_id)
            key = self._k("pred", room_id)
            self._later(self._call(self._release(keys=[key], args=[self.process])))

    async def _wake(self) -> None:
        """Interrupt the follower's XREAD so that it reads the new set of rooms."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(self._k("wake", self.process), {"w": 1}, maxlen=1)
            pipe.pexpire(self._k("wake", self.process), round(LEASE_S * 1000))
            await self._call(pipe.execute())

    async def _follow_logs(self) -> None:
        """One XREAD for every room followed here; entries go to the hub in log order."""
        pause = 0.05
        while True:
            streams = {self._log(room): last for room, last in self._following.items()}
            streams.update({self._answers(room): last for room, last in self._answered.items()})
            streams[self._k("wake", self.process)] = self._wake_id
            try:
                reply = await self._reader.xread(streams, count=1000, block=BLOCK_MS)  # type: ignore[arg-type]
            except (RedisError, OSError) as exc:
                log.warning("redis unreachable (%s); retrying in %.2f s", type(exc).__name__, pause)
                await asyncio.sleep(pause)
                pause = min(1.0, pause * 2)
                continue
            pause = 0.05
            replies = [(key.decode(), entries) for key, entries in reply or []]
            answers = self._k("ans", "")
            for key, entries in sorted(replies, key=lambda r: r[0].startswith(answers)):
                await self._deliver(key, entries)  # logs first: answers follow their ink

    async def _deliver(self, key: str, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        if key == self._k("wake", self.process):
            self._wake_id = entries[-1][0].decode()
            return
        follower, logs = self._follower, self._k("log", "")
        try:
            if key.startswith(logs):
                room = key[len(logs) :]
                if room not in self._following or follower is None:
                    return
                self._following[room] = entries[-1][0].decode()
                await follower.on_entries(room, [(i.decode(), f[b"o"]) for i, f in entries])
            else:
                room = key[len(self._k("ans", "")) :]
                if room not in self._answered or follower is None:
                    return
                self._answered[room] = entries[-1][0].decode()
                await follower.on_answers(room, [f[b"a"] for _, f in entries])
        except Exception:
            log.exception("a room's entries could not be applied")

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

    def _later(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            with contextlib.suppress(ProtocolError):
                await work

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
