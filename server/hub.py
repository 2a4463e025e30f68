"""Shared and resumable sessions at run time: live connections as room members.

Belongs here: carrying out what server.rooms decides (the pure registry) on live connections:
fan-out of room events to every member in one order (a lock per room), one coalescing
prediction pipeline per room, parking dropped sessions and handing them back on resume, and
turning RoomErrors into ClientErrors. Knows asyncio, not aiohttp; decides nothing about ink.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Protocol

import numpy as np

from server import rooms as core
from server.errors import ClientError, Code
from server.protocol import (
    MAX_TOP_K,
    Cleared,
    ClientMessage,
    End,
    Error,
    Join,
    Joined,
    Leave,
    Left,
    Limits,
    Member,
    Points,
    PointsMsg,
    Prediction,
    Presence,
    Recognize,
    RoomStroke,
    ServerMessage,
    Share,
    Shared,
    Start,
    StrokeEvent,
    Undo,
    Undone,
)
from server.recognizer import Recognizer
from server.session import Action, Session, Snapshot, State

log = logging.getLogger(__name__)

RESUME_TOKEN_BYTES = 18

#: Room registry codes as the client sees them (resume codes travel in welcome instead).
_CODES: dict[core.RoomCode, Code] = {
    core.RoomCode.REFUSED: Code.ROOM_REFUSED,
    core.RoomCode.ROOM_FULL: Code.ROOM_FULL,
    core.RoomCode.TOO_MANY_ROOMS: Code.TOO_MANY_ROOMS,
    core.RoomCode.ALREADY_IN_ROOM: Code.ALREADY_IN_ROOM,
    core.RoomCode.NOT_IN_ROOM: Code.NOT_IN_ROOM,
    core.RoomCode.WATCH_ONLY: Code.WATCH_ONLY,
    core.RoomCode.NO_STROKE: Code.NO_STROKE,
    core.RoomCode.TOO_MANY_STROKES: Code.TOO_MANY_STROKES,
    core.RoomCode.TOO_MANY_POINTS: Code.TOO_MANY_POINTS,
}


class Endpoint(Protocol):
    """A live connection, as the hub sees it."""

    session: Session

    async def send(self, msg: ServerMessage) -> None:
        """Send one message; returns quietly if the connection has closed."""

    def backlog(self) -> int:
        """Bytes waiting unsent to this client."""

    async def too_slow(self) -> None:
        """Disconnect this client: it is too far behind the room (it may resume)."""


def new_resume_token() -> str:
    return secrets.token_urlsafe(RESUME_TOKEN_BYTES)


def room_settings(limits: Limits) -> core.RoomSettings:
    """A room holds what a session may: the per-session ink limits apply to the canvas."""
    return core.RoomSettings(
        max_members=limits.max_members_per_room,
        max_rooms=limits.max_rooms,
        empty_ttl_s=limits.room_empty_ttl_s,
        max_rooms_per_origin=limits.max_rooms_per_client,
        max_strokes=limits.max_strokes_per_session,
        max_points=limits.max_points_per_session,
    )


def snapshot(ink: Iterable[Points], seq: int | None, final: bool) -> Snapshot:
    """A room's ink as the recognizer takes it (x, y only)."""
    strokes = tuple(np.array([p[:2] for p in s], dtype=np.float64) for s in ink if s)
    return Snapshot(seq, final, strokes)


def for_member(prediction: Prediction, session: Session) -> Prediction:
    """A room prediction cut to what this member asked for in hello (top_k, preview)."""
    return dataclasses.replace(
        prediction,
        top=prediction.top[: session.top_k],
        input=prediction.input if session.preview else None,
    )


def wire(event: core.Event, role: core.Role) -> ServerMessage:
    """A room event as the message members receive; `role` is the member's it concerns."""
    match event:
        case core.Joined(room, member, _) | core.Left(room, member):
            kind = "joined" if isinstance(event, core.Joined) else "left"
            return Presence(room, kind, member, role.value)
        case core.StrokeStarted(room, stroke):
            return StrokeEvent(room, "start", stroke.id, stroke.author, stroke.points)
        case core.StrokePoints(room, stroke_id, author, points):
            return StrokeEvent(room, "points", stroke_id, author, points)
        case core.StrokeEnded(room, stroke_id, author):
            return StrokeEvent(room, "end", stroke_id, author)
        case core.Undone(room, stroke_id, author):
            return Undone(room, stroke_id, author)
        case core.Cleared(room, by):
            return Cleared(room, by)
    raise AssertionError(f"unknown room event {event!r}")


@dataclasses.dataclass(slots=True)
class _Pipeline:
    """One room's live predictions: at most one in flight; ink changes meanwhile make it
    dirty, and one more prediction of the newest ink follows."""

    dirty: bool = False
    task: asyncio.Task[None] | None = None
    version: int = 0  # ink changes so far
    taken: int = 0  # the version the prediction in flight predicts


class Hub:
    """The server's rooms and parked sessions, with the connections that are their members.
    A member is named by its session id."""

    def __init__(
        self,
        limits: Limits,
        recognizer: Recognizer,
        clock: Callable[[], float] = time.monotonic,
        send_buffer_bytes: int = 65536,
    ) -> None:
        self.rooms = core.Rooms(room_settings(limits))
        self.resumes: core.Resumes[Session] = core.Resumes(
            limits.resume_grace_s, max_parked=limits.max_connections
        )
        self.recognizer, self.clock = recognizer, clock
        self.send_buffer_bytes = send_buffer_bytes
        self._online: dict[str, Endpoint] = {}
        self._pipelines: dict[str, _Pipeline] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # finals and fan-outs of drops
        self._since: dict[str, int] = {}  # member -> room version when it (re)joined

    # ---- client messages ----------------------------------------------------------------

    async def handle(self, ep: Endpoint, msg: ClientMessage) -> list[Action]:
        """Carry out a message the session handed to the room (a `ToRoom` action).
        Returns the session's follow-up actions. Raises ClientError, changing nothing."""
        try:
            return await self._dispatch(ep, msg)
        except core.RoomError as exc:
            raise ClientError(_CODES[exc.code], exc.message, msg.seq) from None

    async def _dispatch(self, ep: Endpoint, msg: ClientMessage) -> list[Action]:
        member = ep.session.identity.session
        if isinstance(msg, Share):
            await self._share(ep, member, msg.seq)
        elif isinstance(msg, Join):
            await self._join(ep, member, msg)
        elif isinstance(msg, Leave):
            return await self._leave(ep, member, msg.seq)
        elif isinstance(msg, Recognize):
            self._final(ep, msg.seq)
        else:
            await self._draw(member, msg)
        return []

    async def _share(self, ep: Endpoint, member: str, seq: int | None) -> None:
        origin = ep.session.identity.client
        share = self.rooms.create(member, self.clock(), ep.session.ink(), origin)
        ep.session.enter_room(share.room)
        self._go_online(share.room, member, ep)
        async with self._lock(share.room):
            await ep.send(Shared(share.room, share.draw_token, share.watch_token, seq))

    async def _join(self, ep: Endpoint, member: str, msg: Join) -> None:
        joined = self.rooms.join(msg.room, msg.token, member, self.clock())
        ep.session.enter_room(joined.room)
        self._go_online(joined.room, member, ep)
        async with self._lock(joined.room):
            await ep.send(self.state(joined.room, member, msg.seq))
            await self._fan_out(joined.room, [wire(joined, joined.role)], skip=member)
        self._touch(joined.room)  # the joiner's first prediction, the same for everyone

    async def _leave(self, ep: Endpoint, member: str, seq: int | None) -> list[Action]:
        room = ep.session.room
        assert room is not None
        role, ink = self.rooms.role(member), self.rooms.ink(room)
        events = self.rooms.leave(member, self.clock())
        self._go_offline(member)
        actions = ep.session.leave_room(ink, seq)
        async with self._lock(room):
            await self._fan_out(room, [wire(e, role) for e in events])
            await ep.send(Left(room, seq))
        return actions

    async def _draw(self, member: str, msg: ClientMessage) -> None:
        events = self._apply(member, msg)
        room = self.rooms.room_of(member)
        if not events or room is None:
            return
        async with self._lock(room):
            await self._fan_out(room, [wire(e, core.Role.DRAW) for e in events])
        self._touch(room)

    def _apply(self, member: str, msg: ClientMessage) -> list[core.Event]:
        if isinstance(msg, Start):
            return self.rooms.start(member, msg.points)
        if isinstance(msg, PointsMsg):
            return self.rooms.extend(member, msg.points)
        if isinstance(msg, End):
            return self.rooms.end(member, msg.points)
        if isinstance(msg, Undo):
            return self.rooms.undo(member)
        return self.rooms.clear(member)

    def state(self, room: str, member: str, seq: int | None) -> Joined:
        """The whole room, as a joiner (or a member resuming) receives it."""
        members = tuple(Member(m, r.value) for m, r in self.rooms.members(room).items())
        strokes = tuple(
            RoomStroke(s.id, s.author, s.points, s.open) for s in self.rooms.strokes(room)
        )
        role = self.rooms.role(member).value
        return Joined(room, role, member, members, strokes, seq)

    # ---- fan-out ------------------------------------------------------------------------

    def _lock(self, room: str) -> asyncio.Lock:
        """Held while sending to a room's members. Taken right after the registry changed,
        with no await between, so members receive events in the order they happened."""
        return self._locks.setdefault(room, asyncio.Lock())

    async def _fan_out(
        self, room: str, messages: list[ServerMessage], skip: str | None = None
    ) -> None:
        """Send to every connected member (in the room's member order), under the lock."""
        if room not in self.rooms:
            return
        for member in self.rooms.members(room):
            ep = self._online.get(member)
            if ep is None or member == skip:
                continue
            for msg in messages:
                if not (isinstance(msg, StrokeEvent) and msg.author == member):
                    await self._deliver(member, ep, msg)

    async def _deliver(self, member: str, ep: Endpoint, msg: ServerMessage) -> None:
        """Send a room event, unless the member has stopped reading: then the room does not
        wait for it (a send to a full socket would hold the room's lock); it is dropped
        instead, and may resume to get the room's state again."""
        if ep.backlog() <= self.send_buffer_bytes:
            await ep.send(msg)
        elif self._online.get(member) is ep:
            self._go_offline(member)
            self._spawn(ep.too_slow())

    async def _publish(
        self, room: str, events: list[core.Event], roles: dict[str, core.Role]
    ) -> None:
        """Fan out events whose members' roles were read before the registry changed."""
        async with self._lock(room):
            await self._fan_out(
                room, [wire(e, roles.get(_member(e), core.Role.DRAW)) for e in events]
            )

    # ---- predictions --------------------------------------------------------------------

    def _touch(self, room: str) -> None:
        """The room's ink changed (or someone needs a prediction): predict it."""
        pipe = self._pipelines.setdefault(room, _Pipeline())
        pipe.dirty = True
        pipe.version += 1
        if pipe.task is None or pipe.task.done():
            pipe.task = asyncio.create_task(self._predict_room(room, pipe), name=f"room-{room}")

    async def _predict_room(self, room: str, pipe: _Pipeline) -> None:
        def refresh(pending: Snapshot) -> Snapshot:  # late binding, as Session.refresh
            if not pipe.dirty or room not in self.rooms:
                return pending
            pipe.dirty, pipe.taken = False, pipe.version
            return snapshot(self.rooms.ink(room), None, False)

        while pipe.dirty and room in self.rooms:
            pipe.dirty, pipe.taken = False, pipe.version
            snap = snapshot(self.rooms.ink(room), None, False)
            try:
                prediction = await self.recognizer.predict(snap, MAX_TOP_K, True, refresh)
            except ClientError as exc:  # overloaded: everyone is told, the next change retries
                async with self._lock(room):
                    await self._fan_out(room, [Error(exc.code, exc.message)])
                continue
            except Exception:
                log.exception("room prediction failed")
                return
            async with self._lock(room):
                await self._send_prediction(room, prediction, pipe.taken)

    async def _send_prediction(self, room: str, prediction: Prediction, version: int) -> None:
        """The same prediction to every member, except a member not reading (it gets a
        later one) and one that joined after this ink changed (its state is newer)."""
        if room not in self.rooms:
            return
        for member in self.rooms.members(room):
            ep = self._online.get(member)
            if ep is None or ep.backlog() > self.send_buffer_bytes:
                continue
            if self._since.get(member, 0) <= version:
                await ep.send(for_member(prediction, ep.session))

    def _final(self, ep: Endpoint, seq: int | None) -> None:
        """recognize in a room: the final answer for the room's ink goes to every member,
        the asker's with its seq (never dropped), the others' with seq null."""
        room = ep.session.room
        assert room is not None
        snap = snapshot(self.rooms.ink(room), seq, True)

        async def answer() -> None:
            try:
                prediction = await self.recognizer.predict(snap, MAX_TOP_K, True)
            except ClientError as exc:
                await ep.send(Error(exc.code, exc.message, seq))
                return
            except Exception:
                log.exception("room final prediction failed")
                await ep.send(Error(Code.INTERNAL, "internal error", seq))
                return
            async with self._lock(room):
                await self._send_final(room, ep, prediction)

        self._spawn(answer())

    async def _send_final(self, room: str, asker: Endpoint, prediction: Prediction) -> None:
        await asker.send(for_member(prediction, asker.session))
        if room not in self.rooms:
            return
        others = dataclasses.replace(prediction, seq=None)
        for member in self.rooms.members(room):
            ep = self._online.get(member)
            if ep is None or ep is asker or ep.backlog() > self.send_buffer_bytes:
                continue
            await ep.send(for_member(others, ep.session))

    # ---- dropped and resumed sessions ---------------------------------------------------

    def drop(self, ep: Endpoint) -> None:
        """The connection ended: park its session for `resume_grace_s` under the resume
        token welcome announced. A member stays in its room meanwhile, pen lifted. Not a
        coroutine: it runs even while the handler is being cancelled."""
        session = ep.session
        if session.state is State.AWAIT_HELLO:
            return
        member, now = session.identity.session, self.clock()
        if self._online.get(member) is ep:
            self._go_offline(member)
        room = session.room
        role = self._role_or_draw(member)
        events = self.rooms.lift(member) if room is not None else []
        session.park()
        try:
            self.resumes.park(session, now, session.identity.resume_token)
        except core.RoomError:  # too many parked: the session ends now
            events += self._forget(session, now)
        if room is not None and events:
            self._spawn(self._publish(room, events, {member: role}))

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def unpark(self, token: str) -> Session | str:
        """The session parked under `token`, or why not (resume_expired | resume_unknown)."""
        try:
            return self.resumes.resume(token, self.clock())
        except core.RoomError as exc:
            return exc.code.value

    async def rejoin(self, ep: Endpoint) -> None:
        """A resumed session that was in a room: back online, with the room's state."""
        member, room = ep.session.identity.session, ep.session.room
        assert room is not None
        self._go_online(room, member, ep)
        async with self._lock(room):
            await ep.send(self.state(room, member, None))
        self._touch(room)

    def _go_online(self, room: str, member: str, ep: Endpoint) -> None:
        """The member's connection receives the room's messages from now on; predictions
        of ink older than the state it is about to receive are not sent to it."""
        self._online[member] = ep
        self._since[member] = self._pipelines.setdefault(room, _Pipeline()).version

    def _go_offline(self, member: str) -> None:
        self._online.pop(member, None)
        self._since.pop(member, None)

    def _forget(self, session: Session, now: float) -> list[core.Event]:
        """A session gone for good leaves its room."""
        member = session.identity.session
        if self.rooms.room_of(member) is None:
            return []
        return self.rooms.leave(member, now)

    def _role_or_draw(self, member: str) -> core.Role:
        return self.rooms.role(member) if self.rooms.room_of(member) else core.Role.DRAW

    async def expire(self) -> None:
        """Sessions past their grace period leave their rooms; rooms empty for
        `room_empty_ttl_s` are forgotten, tokens and all."""
        now = self.clock()
        for session in self.resumes.expire(now):
            room, member = session.room, session.identity.session
            if room is None or self.rooms.room_of(member) is None:
                continue
            role = self.rooms.role(member)
            await self._publish(room, self._forget(session, now), {member: role})
        for room in self.rooms.expire(now):
            pipe = self._pipelines.pop(room, None)
            if pipe is not None and pipe.task is not None:
                pipe.task.cancel()
            self._locks.pop(room, None)

    async def stop(self) -> None:
        """Cancel every room prediction (server shutdown)."""
        tasks = [p.task for p in self._pipelines.values() if p.task is not None]
        tasks += list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _member(event: core.Event) -> str:
    match event:
        case core.Joined(_, member, _) | core.Left(_, member):
            return member
        case core.StrokeStarted(_, stroke):
            return stroke.author
        case core.StrokePoints(_, _, author, _) | core.StrokeEnded(_, _, author):
            return author
        case core.Undone(_, _, author):
            return author
        case core.Cleared(_, by):
            return by
    raise AssertionError(f"unknown room event {event!r}")
