"""The server's sessions and drawings at run time: a new session's own canvas, sharing,
joining and leaving rooms, parking a session whose connection dropped and resuming it.

Belongs here: the steps of share, join, leave, park and resume over the store
(server/store.py), each refused before anything changes. Knows asyncio, not aiohttp;
decides nothing about ink (server/canvas.py) or predictions (server/drawing.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Coroutine

from protocol import Code, Hello, Join, Left, Limits, ProtocolError, Shared
from server.canvas import Canvas, Event, InkLimits, Role
from server.drawing import Drawing, Endpoint
from server.metrics import Metrics
from server.recognizer import Recognizer
from server.session import Session, State
from server.store import Parked, ResumeFailed, Rooms, new_resume_token


class Hub:
    """Rooms and parked sessions, shared by all connections. A member is named by its
    session id."""

    def __init__(
        self,
        limits: Limits,
        recognizer: Recognizer,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ink_limits = InkLimits.of(limits)
        self.recognizer, self.metrics, self.clock = recognizer, metrics, clock
        self.rooms: Rooms[Drawing] = Rooms(
            limits.max_rooms, limits.max_rooms_per_client, limits.room_empty_ttl_s
        )
        self.parked: Parked[Session] = Parked(
            limits.resume_grace_s, max_parked=limits.max_connections
        )
        self._tasks: set[asyncio.Task[None]] = set()  # fan-outs of dropped members

    def drawing(self, canvas: Canvas) -> Drawing:
        return Drawing(canvas, self.recognizer, self.metrics)

    def solo(self, member: str, seq: int | None = None) -> Drawing:
        """A new drawing of one drawer."""
        canvas = Canvas(self.ink_limits)
        canvas.add(member, Role.DRAW, seq)
        return self.drawing(canvas)

    # ---- hello and resume ---------------------------------------------------------------

    async def hello(self, session: Session, ep: Endpoint, hello: Hello) -> Session:
        """Welcome a session: the parked one `hello.resume` names if there is one (then it
        continues on this connection, with a new resume token), else `session`, new."""
        resumed, error = session, None
        if hello.resume is not None:
            try:
                resumed = self.parked.resume(hello.resume, self.clock())
            except ResumeFailed as exc:
                error = exc.code.value
            else:
                token = new_resume_token()
                resumed.identity = dataclasses.replace(resumed.identity, resume_token=token)
                resumed.state = State.READY
        if resumed.drawing is None:
            resumed.drawing = self.solo(resumed.member)
        await ep.send(resumed.welcome(hello, resumed is not session, error))
        await self._attach(resumed, ep, predict=resumed is not session)
        return resumed

    async def _attach(self, session: Session, ep: Endpoint, predict: bool) -> None:
        """The session's connection is `ep` from now on; a room sends its state first.
        A resumed session is shown a prediction of where it stands."""
        drawing = session.drawing
        assert drawing is not None
        if drawing.room is None:
            drawing.attach(session.member, ep)
        else:
            await drawing.admit(session.member, ep, drawing.canvas.state(session.member, None))
        if predict:
            drawing.touch()

    def park(self, session: Session, ep: Endpoint) -> None:
        """The connection ended: keep the session for `resume_grace_s` under the resume token
        welcome announced. A member stays in its room meanwhile, pen lifted. Not a
        coroutine: it runs even while the handler is being cancelled."""
        drawing = session.drawing
        if session.state is not State.READY or drawing is None:
            return
        drawing.detach(session.member, ep)
        events = drawing.canvas.lift(session.member)
        session.state = State.PARKED
        if not self.parked.park(session, session.identity.resume_token, self.clock()):
            events += self._forget(session)  # too many parked: the session ends now
        self._spawn(drawing.publish(events))

    # ---- rooms --------------------------------------------------------------------------

    async def share(self, session: Session, ep: Endpoint, seq: int | None) -> None:
        """The session's own drawing becomes a room, with its ink and its pipeline."""
        drawing = self._own(session)
        room = self.rooms.create(drawing, self.clock(), session.identity.client)
        drawing.canvas.lift(session.member)  # the open stroke is ended as drawn
        drawing.canvas.room = room.id
        drawing.canvas.see(session.member, seq)
        await drawing.tell(ep, Shared(room.id, room.draw_token, room.watch_token, seq))

    async def join(self, session: Session, ep: Endpoint, msg: Join) -> None:
        """Enter a room; the session's own drawing is discarded."""
        own = self._own(session)
        room, draws = self.rooms.find(msg.room, msg.token, self.clock())
        drawing = room.drawing
        role = Role.DRAW if draws else Role.WATCH
        events = drawing.canvas.add(session.member, role, msg.seq)
        own.detach(session.member)
        session.drawing = drawing
        self.rooms.occupied(room.id, len(drawing.canvas.members), self.clock())
        joined = drawing.canvas.state(session.member, msg.seq)
        await drawing.admit(session.member, ep, joined, events)
        drawing.touch()  # the joiner's first prediction, the same for everyone

    async def leave(self, session: Session, ep: Endpoint, seq: int | None) -> None:
        """Leave the room with a copy of its ink, predicted at once with `seq`."""
        drawing = session.drawing
        if drawing is None or drawing.room is None:
            raise ProtocolError(Code.NOT_IN_ROOM, "not in a shared session", seq)
        room, canvas = drawing.room, drawing.canvas
        own = self.drawing(canvas.copy_for(session.member, seq))
        events = canvas.remove(session.member)
        drawing.detach(session.member)
        self.rooms.occupied(room, len(canvas.members), self.clock())
        await drawing.publish(events)
        session.drawing = own
        own.attach(session.member, ep)
        await ep.send(Left(room, seq))
        own.touch()

    def _own(self, session: Session) -> Drawing:
        """The session's drawing when it is its own (not a room's)."""
        drawing = session.drawing
        assert drawing is not None
        if drawing.room is not None:
            raise ProtocolError(Code.ALREADY_IN_ROOM, "already in a shared session; leave first")
        return drawing

    # ---- lifetimes ----------------------------------------------------------------------

    def _forget(self, session: Session) -> list[Event]:
        """A session gone for good leaves its room."""
        drawing = session.drawing
        if drawing is None or drawing.room is None:
            return []
        events = drawing.canvas.remove(session.member)
        self.rooms.occupied(drawing.room, len(drawing.canvas.members), self.clock())
        return events

    async def expire(self) -> None:
        """Sessions past their grace period leave their rooms; rooms empty for
        `room_empty_ttl_s` are forgotten, tokens and all."""
        now = self.clock()
        for session in self.parked.expire(now):
            if session.drawing is not None:
                await session.drawing.publish(self._forget(session))
        for drawing in self.rooms.expire(now):
            await drawing.stop()

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop every room's pipeline and pending fan-out (server shutdown)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for drawing in self.rooms.drawings():
            await drawing.stop()
