"""Where shared drawings and parked sessions live, behind one interface (`Store`) with two
implementations: `MemoryStore` here (one process, nothing to run beside it; the default) and
`RedisStore` (server/store_redis.py: many processes, many machines, nothing lost on a
restart). See docs/SCALING.md.

A store keeps room ids and their tokens, the per-server and per-address room quotas, room
expiry and, when shared, each room's log and the records of sessions that may be resumed on
another process. Must not: know the canvas, the session or the connection (logs and records
are opaque bytes and plain values). A refusal raises ProtocolError (rooms) or ResumeFailed
(resume) and changes nothing; a shared store that cannot be reached raises `unavailable()`.
The pure cores below (`Rooms`, `Parked`) take `now` and do no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from protocol import Code, ProtocolError, ResumeError

ROOM_ID_BYTES = 9  # 12 characters; the id is not what keeps a room private
TOKEN_BYTES = 24  # 32 characters, 192 bits: the tokens are the secrets
RESUME_TOKEN_BYTES = 18

D = TypeVar("D")  # a shared drawing
S = TypeVar("S")  # a parked session


def new_resume_token() -> str:
    return secrets.token_urlsafe(RESUME_TOKEN_BYTES)


@dataclass(slots=True)
class Room(Generic[D]):
    id: str
    draw_token: str
    watch_token: str
    drawing: D
    origin: str = ""  # the creator's client address, for the per-address quota
    empty_since: float | None = None

    def expired(self, now: float, ttl: float) -> bool:
        return self.empty_since is not None and now - self.empty_since >= ttl


def _refused() -> ProtocolError:
    return ProtocolError(Code.ROOM_REFUSED, "no room with that token (wrong, expired or unknown)")


class Rooms(Generic[D]):
    """The server's shared drawings by room id, each with a draw and a watch token."""

    def __init__(self, max_rooms: int = 1000, per_origin: int = 20, ttl_s: float = 300.0) -> None:
        self.max_rooms, self.per_origin, self.ttl_s = max_rooms, per_origin, ttl_s
        self._rooms: dict[str, Room[D]] = {}
        self._dummy = secrets.token_urlsafe(TOKEN_BYTES)  # compared when the room is unknown

    def __len__(self) -> int:
        return len(self._rooms)

    def __contains__(self, room_id: object) -> bool:
        return room_id in self._rooms

    def drawings(self) -> list[D]:
        return [room.drawing for room in self._rooms.values()]

    def create(self, drawing: D, now: float, origin: str = "") -> Room[D]:
        """A new room for `drawing`. Raises TOO_MANY_ROOMS beyond either quota."""
        live = [r for r in self._rooms.values() if not r.expired(now, self.ttl_s)]
        if len(live) >= self.max_rooms:
            raise ProtocolError(Code.TOO_MANY_ROOMS, "too many shared sessions; try later")
        if origin and sum(r.origin == origin for r in live) >= self.per_origin:
            text = "too many shared sessions from one address; leave some, or try later"
            raise ProtocolError(Code.TOO_MANY_ROOMS, text)
        while (room_id := secrets.token_urlsafe(ROOM_ID_BYTES)) in self._rooms:
            pass  # 72 random bits: practically never taken
        draw, watch = secrets.token_urlsafe(TOKEN_BYTES), secrets.token_urlsafe(TOKEN_BYTES)
        room = Room(room_id, draw, watch, drawing, origin)
        self._rooms[room_id] = room
        return room

    def find(self, room_id: str, token: str, now: float) -> tuple[Room[D], bool]:
        """The room and whether `token` is its draw token (else its watch token). An unknown
        room, a wrong token and an expired room are one ROOM_REFUSED, found in the same time."""
        room = self._rooms.get(room_id)
        given = token.encode("utf-8", "replace")
        draw = (room.draw_token if room else self._dummy).encode()
        watch = (room.watch_token if room else self._dummy).encode()
        is_draw, is_watch = hmac.compare_digest(given, draw), hmac.compare_digest(given, watch)
        if room is None or not (is_draw or is_watch) or room.expired(now, self.ttl_s):
            raise _refused()
        return room, is_draw

    def occupied(self, room_id: str, members: int, now: float) -> None:
        """The room now has `members` members: with none, its expiry clock runs."""
        room = self._rooms.get(room_id)
        if room is not None:
            room.empty_since = None if members else now

    def expire(self, now: float) -> list[D]:
        """Forget rooms empty for `ttl_s`, tokens and all; returns their drawings."""
        gone = [r for r in self._rooms.values() if r.expired(now, self.ttl_s)]
        for room in gone:
            del self._rooms[room.id]
        return [room.drawing for room in gone]


class ResumeFailed(Exception):
    def __init__(self, code: ResumeError) -> None:
        super().__init__(code.value)
        self.code = code


class Parked(Generic[S]):
    """Sessions whose connection dropped, each waiting `grace_s` for its resume token.
    Tokens are kept hashed, so a lookup's timing says nothing about them. A token that
    expired is remembered for `remember_s` to tell "expired" from "unknown"."""

    def __init__(
        self, grace_s: float = 60.0, max_parked: int = 10000, remember_s: float | None = None
    ) -> None:
        self.grace_s, self.max_parked = grace_s, max_parked
        self.remember_s = 10 * grace_s if remember_s is None else remember_s
        self._parked: dict[bytes, tuple[float, S]] = {}  # key -> (deadline, session)
        self._expired: dict[bytes, float] = {}  # key -> when to forget it

    def __len__(self) -> int:
        return len(self._parked)

    def __contains__(self, token: object) -> bool:
        return isinstance(token, str) and self._key(token) in self._parked

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "replace")).digest()

    def park(self, session: S, token: str, now: float) -> bool:
        """Keep `session` until now + grace_s under `token`; False when full."""
        key = self._key(token)
        if key not in self._parked and len(self._parked) >= self.max_parked:
            return False
        self._parked[key] = (now + self.grace_s, session)
        self._expired.pop(key, None)
        return True

    def resume(self, token: str, now: float) -> S:
        """The parked session, which leaves the registry (a token works once).
        Raises ResumeFailed: EXPIRED after the grace period, UNKNOWN for any other token
        (one never issued, one already used, or one of a session still connected)."""
        key = self._key(token)
        entry = self._parked.get(key)
        if entry is None:
            expired = key in self._expired
            raise ResumeFailed(ResumeError.EXPIRED if expired else ResumeError.UNKNOWN)
        deadline, session = entry
        if now >= deadline:
            raise ResumeFailed(ResumeError.EXPIRED)
        del self._parked[key]
        return session

    def sessions(self) -> list[S]:
        return [session for _, session in self._parked.values()]

    def expire(self, now: float) -> list[S]:
        """Drop sessions past their grace period (returned, to be released) and forget
        expired tokens past `remember_s`."""
        gone = [key for key, (deadline, _) in self._parked.items() if now >= deadline]
        sessions = [self._parked.pop(key)[1] for key in gone]
        for key in gone:
            self._expired[key] = now + self.remember_s
        for key in [k for k, forget_at in self._expired.items() if now >= forget_at]:
            del self._expired[key]
        while len(self._expired) > self.max_parked:
            del self._expired[next(iter(self._expired))]
        return sessions


# ---- the interface ----------------------------------------------------------------------

UNAVAILABLE_S = 1.0  # a shared store that does not answer within this is unavailable


def unavailable(seq: int | None = None) -> ProtocolError:
    """The shared store cannot be reached: rooms and resume wait; solo drawing goes on."""
    text = "shared sessions are unavailable right now; try again shortly"
    return ProtocolError(Code.UNAVAILABLE, text, seq)


def token_hash(token: str) -> str:
    """What a store keeps of a secret token."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True, slots=True)
class RoomKeys:
    """A new room: its id and its two secret tokens (given out once, stored hashed)."""

    id: str
    draw_token: str
    watch_token: str
    log_id: str = ""  # the id of its log's first entry (shared stores)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What another process needs to resume a session: its id, its room, and (parked
    solo) its canvas as a seed."""

    session: str
    room: str | None = None
    solo: dict[str, Any] | None = None


class Follower(Protocol):
    """What a shared store tells the process that follows rooms (the hub)."""

    async def on_entries(self, room: str, entries: list[tuple[str, bytes]]) -> None:
        """New entries (id, bytes) of the room's log, in log order."""

    async def on_answers(self, room: str, answers: list[bytes]) -> None:
        """Answers other processes published for the room (`publish`), in their order."""

    def on_predictor(self, room: str, mine: bool) -> None:
        """This process became (`mine`) or stopped being the room's predictor."""


class Store(ABC):
    """Rooms, their logs and resumable sessions. `shared` stores are seen by many processes:
    then every room change goes through the room's log, and sessions are recorded."""

    shared = False
    #: Whether the store answered its latest request (a shared store's backend can go away;
    #: the server reports it at /readyz and goes on serving solo drawing meanwhile).
    reachable = True

    async def start(self) -> None:
        """Connect and start following logs."""
        return None

    async def stop(self) -> None:
        """Stop following; close connections."""
        return None

    # ---- rooms ----

    @abstractmethod
    async def create_room(self, origin: str, now: float, seed: bytes) -> RoomKeys:
        """A new room of one member whose log starts with `seed`. Raises TOO_MANY_ROOMS
        beyond either quota."""

    @abstractmethod
    async def find_room(self, room_id: str, token: str, now: float) -> bool:
        """Whether `token` is the room's draw token (else its watch token). Raises
        ROOM_REFUSED for an unknown room, a wrong token or an expired room alike."""

    @abstractmethod
    async def occupancy(self, room_id: str, delta: int, now: float) -> None:
        """The room gained (delta > 0) or lost members; with none, its expiry clock runs."""

    @abstractmethod
    async def expire_rooms(self, now: float) -> list[str]:
        """Forget rooms empty for their time to live; returns their ids."""

    # ---- logs (shared stores) ----

    async def append(self, room_id: str, data: bytes) -> str:
        """Add an entry to the room's log; returns its id."""
        raise TypeError(f"{type(self).__name__} is not shared: it keeps no room logs")

    async def history(self, room_id: str) -> list[tuple[str, bytes]]:
        """The room's whole log."""
        raise TypeError(f"{type(self).__name__} is not shared: it keeps no room logs")

    def follow(self, room_id: str, after: str, follower: Follower) -> None:
        """Deliver the room's entries after `after`, and the answers published for it, to
        `follower` in order, until `unfollow`; tell it whether this process is the room's
        predictor (one process per room, taken over when it dies)."""
        raise TypeError(f"{type(self).__name__} is not shared: it keeps no room logs")

    def unfollow(self, room_id: str) -> None:
        """Stop following the room (and stop being its predictor)."""
        raise TypeError(f"{type(self).__name__} is not shared: it keeps no room logs")

    async def compact(self, room_id: str, seed: bytes, upto: str) -> None:
        """Append `seed` (the room as of entry `upto`) to the room's log and drop the
        entries that the previous seed replaces (a reader just behind keeps its place)."""
        raise TypeError(f"{type(self).__name__} is not shared: it keeps no room logs")

    def publish(self, room_id: str, answer: bytes) -> None:
        """Send a prediction of the room's ink to the other processes following it (not
        waited for; an answer that cannot be sent is dropped, as a late one would be)."""
        raise TypeError(f"{type(self).__name__} is not shared: it keeps no room logs")

    # ---- resumable sessions (shared stores) ----

    async def register(self, token: str, record: SessionRecord) -> None:
        """A live session of this process, resumable elsewhere should this process die."""
        return None

    async def park(self, token: str, record: SessionRecord, deadline: float) -> None:
        """The session's connection dropped: resumable until `deadline`."""
        return None

    async def save_solo(self, token: str, seed: dict[str, Any]) -> None:
        """A live solo session's canvas, kept with its record (see `register`)."""
        return None

    async def resume(self, token: str, now: float) -> SessionRecord:
        """Claim a parked session (once). Raises ResumeFailed."""
        raise ResumeFailed(ResumeError.UNKNOWN)

    async def drop(self, token: str) -> None:
        """The session is gone for good, or resumed under a new token."""
        return None

    async def expire_parked(self, now: float) -> list[SessionRecord]:
        """Sessions past their deadline, each claimed by exactly one process, which writes
        their leaving to their room's log."""
        return []


class MemoryStore(Store):
    """Rooms in this process's memory; sessions are parked by the hub itself."""

    def __init__(self, max_rooms: int = 1000, per_origin: int = 20, ttl_s: float = 300.0) -> None:
        self.rooms: Rooms[str] = Rooms(max_rooms, per_origin, ttl_s)
        self._members: dict[str, int] = {}

    async def create_room(self, origin: str, now: float, seed: bytes) -> RoomKeys:
        room = self.rooms.create("", now, origin)
        room.drawing = room.id
        self._members[room.id] = 1
        return RoomKeys(room.id, room.draw_token, room.watch_token)

    async def find_room(self, room_id: str, token: str, now: float) -> bool:
        return self.rooms.find(room_id, token, now)[1]

    async def occupancy(self, room_id: str, delta: int, now: float) -> None:
        if room_id in self._members:
            self._members[room_id] += delta
            self.rooms.occupied(room_id, self._members[room_id], now)

    async def expire_rooms(self, now: float) -> list[str]:
        gone = self.rooms.expire(now)
        for room_id in gone:
            self._members.pop(room_id, None)
        return gone
