"""The server's sessions and drawings at run time: a new session's own canvas, sharing,
joining and leaving rooms, parking a session whose connection dropped and resuming it.

Belongs here: the steps of share, join, leave, park and resume over the store
(server/store.py), each refused before anything changes. Knows asyncio, not aiohttp;
decides nothing about ink (server/canvas.py) or predictions (server/drawing.py).

With a shared store (Redis) every change of a room is an operation appended to the room's
log (server/roomlog.py); this process applies the log, its own operations included, in log
order to its replica of the room, so all processes agree. One process per room, its
predictor (chosen by the store, taken over when it dies), runs the model on the room's live
ink and publishes each answer; the others forward those to their members. Solo drawings
stay local.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine
from functools import partial

from protocol import (
    Clear,
    Code,
    End,
    Hello,
    Ink,
    Join,
    Left,
    Limits,
    ProtocolError,
    ResumeError,
    Shared,
    Undo,
)
from server import roomlog
from server.canvas import Canvas, Event, InkLimits, Role
from server.drawing import Drawing, Endpoint
from server.metrics import Metrics
from server.recognizer import Answer, Recognizer
from server.roomlog import Op
from server.session import Session, State
from server.store import (
    UNAVAILABLE_S,
    MemoryStore,
    Parked,
    ResumeFailed,
    SessionRecord,
    Store,
    new_resume_token,
    unavailable,
)

log = logging.getLogger(__name__)
COMEBACK_S = 5.0  # how long an appended operation may take to come back from the log
COMPACT_AFTER = 1000  # a room's predictor compacts its log after this many entries
OPEN_SAVE_S = 0.5  # a solo stroke being drawn is written to the store this often at most
IN_FLIGHT = 32  # a member's room ink messages on their way through the log, at most


class Hub:
    """Rooms and parked sessions, shared by all connections. A member is named by its
    session id."""

    def __init__(
        self,
        limits: Limits,
        recognizer: Recognizer,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        store: Store | None = None,
    ) -> None:
        self.ink_limits = InkLimits.of(limits)
        self.recognizer, self.metrics, self.clock = recognizer, metrics, clock
        self.grace_s = limits.resume_grace_s
        self.room_rate = limits.room_predictions_per_second
        self.store: Store = store or MemoryStore(
            limits.max_rooms, limits.max_rooms_per_client, limits.room_empty_ttl_s
        )
        self.replicas: dict[str, Drawing] = {}  # the rooms this process serves members of
        self.parked: Parked[Session] = Parked(
            limits.resume_grace_s, max_parked=limits.max_connections
        )
        self._tasks: set[asyncio.Task[None]] = set()  # fan-outs of dropped members
        self._process = secrets.token_hex(4)
        self._nonces = itertools.count()
        self._waiting: dict[str, asyncio.Future[Canvas | None]] = {}  # our ops in the log
        self._loading: dict[str, asyncio.Task[Drawing]] = {}
        self._saving: dict[str, bool] = {}  # member -> solo ink changed during its write
        self._early: dict[str, list[Answer]] = {}  # answers of ink not applied here yet
        self._uncompacted: dict[str, int] = {}  # room -> entries applied since its last seed
        self._open_saves: dict[str, asyncio.TimerHandle] = {}  # member -> its next solo save
        self._records: dict[str, asyncio.Task[None]] = {}  # resume token -> its last write
        self._in_flight: dict[str, deque[asyncio.Task[None]]] = {}  # member -> its room ink

    def drawing(self, canvas: Canvas) -> Drawing:
        return Drawing(canvas, self.recognizer, self.metrics, room_rate=self.room_rate)

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
                resumed = await self._resume(hello.resume, session)
            except ResumeFailed as exc:
                error = exc.code.value
            except ProtocolError:  # the shared store is out of reach; the token still works
                error = ResumeError.UNAVAILABLE.value
            else:
                token = new_resume_token()
                resumed.identity = dataclasses.replace(resumed.identity, resume_token=token)
                resumed.state = State.READY
        if resumed.drawing is None:
            resumed.drawing = self.solo(resumed.member)
        self._record(resumed)
        if resumed is not session and self.store.shared:
            self._save_solo(resumed)  # under its new token
        await ep.send(resumed.welcome(hello, resumed is not session, error))
        await self._attach(resumed, ep, predict=resumed is not session)
        return resumed

    async def _resume(self, token: str, new: Session) -> Session:
        """The parked session of `token`: from this process, or rebuilt from the store."""
        now = self.clock()
        if not self.store.shared:
            return self.parked.resume(token, now)
        pending = self._records.get(token)
        if pending is not None:  # this process is still writing the token's record (its
            await asyncio.wait([pending])  # park): claim it once written, not before
        try:
            record = await self.store.resume(token, now)  # claimed: no other process has it
        except (ResumeFailed, ProtocolError):
            if token not in self.parked:  # parked here, the store out of reach: resume it
                raise
            self._in_order(token, self.store.drop(token))  # after any write still under way
            return self.parked.resume(token, now)
        try:
            session = self.parked.resume(token, now)
        except ResumeFailed:
            return await self._revive(record, new)
        if session.drawing is not None and session.drawing.room is not None:
            session.drawing = await self._replica(session.drawing.room)
        return session

    async def _revive(self, record: SessionRecord, new: Session) -> Session:
        """A session parked by another process (or one that died) continues here."""
        identity = dataclasses.replace(new.identity, session=record.session)
        session = Session(identity)
        if record.room is not None:
            try:
                drawing = await self._replica(record.room)
            except ProtocolError as exc:
                if exc.code != Code.ROOM_REFUSED:
                    raise
                raise ResumeFailed(ResumeError.EXPIRED) from None  # the room is gone
            if record.session not in drawing.canvas.members:
                raise ResumeFailed(ResumeError.EXPIRED)  # it left the room meanwhile
            session.drawing = drawing
        elif record.solo is not None:
            session.drawing = self.drawing(roomlog.canvas_of(record.solo, self.ink_limits))
        return session

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
        session.state = State.PARKED
        events: list[Event] = []
        if drawing.room is None or not self.store.shared:
            events = drawing.canvas.lift(session.member)
        deadline = self.clock() + self.grace_s
        self._spawn(self._parked(session, drawing, events, deadline))
        if not self.parked.park(session, session.identity.resume_token, self.clock()):
            self._spawn(self._forget(session))  # too many parked: the session ends now

    async def _parked(
        self, session: Session, drawing: Drawing, events: list[Event], deadline: float
    ) -> None:
        """The rest of parking, which may wait: the room is told; the store keeps a record."""
        room = drawing.room
        if room is not None and self.store.shared:
            try:
                await self._submit(drawing, Op(roomlog.LIFT, session.member))
            except ProtocolError:  # the pen stays down in the room; the record matters more
                log.warning("a dropped member's open stroke could not be ended")
        else:
            await drawing.publish(events)
        if self.store.shared:
            solo = roomlog.seed_of(drawing.canvas) if room is None else None
            record = SessionRecord(session.member, room, solo)
            token = session.identity.resume_token
            await self._in_order(token, self.store.park(token, record, deadline))

    def _record(self, session: Session) -> asyncio.Task[None] | None:
        """A shared store records where a live session is, for resuming it elsewhere (and,
        should this process die, for taking it out of its room)."""
        if not self.store.shared:
            return None
        room = session.drawing.room if session.drawing is not None else None
        record = SessionRecord(session.member, room)
        token = session.identity.resume_token
        return self._in_order(token, self.store.register(token, record))

    async def _recorded(self, session: Session) -> None:
        """`_record`, written before the client is told of the change: a process killed
        right after telling it a room must leave a record naming the room."""
        task = self._record(session)
        if task is not None:
            await asyncio.wait([task])

    def _in_order(self, token: str, write: Coroutine[None, None, None]) -> asyncio.Task[None]:
        """Write a session's record after the writes of it already under way (on pooled
        connections two writes could land in either order: a hello's record after the
        share's, or after the park, would say the wrong room, or live)."""
        before = self._records.get(token)

        async def after() -> None:
            try:
                if before is not None:
                    await asyncio.wait([before])
            except asyncio.CancelledError:
                write.close()  # never started
                raise
            await write

        task = self._spawn(after())
        self._records[token] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._records.get(token) is t:
                del self._records[token]

        task.add_done_callback(done)
        return task

    # ---- ink ----------------------------------------------------------------------------

    async def draw(self, session: Session, msg: Ink) -> None:
        """An ink message: on a solo drawing at once; in a room through its log."""
        drawing = session.drawing
        assert drawing is not None
        if drawing.room is None or not self.store.shared:
            await drawing.draw(session.member, msg)
            if self.store.shared:
                self._saved_later(session, isinstance(msg, End | Undo | Clear))
        else:
            await self._room_ink(drawing, session.member, msg)

    async def _room_ink(self, drawing: Drawing, member: str, msg: Ink) -> None:
        """Room ink through the log without waiting for it to come back, so that a member's
        messages stream: up to IN_FLIGHT at once, appended in the order sent (the order
        they take effect); one the canvas refuses is answered with its error when it comes
        back."""
        flying = self._in_flight.setdefault(member, deque())
        while flying and flying[0].done():
            flying.popleft()
        if len(flying) >= IN_FLIGHT:
            await asyncio.wait({flying[0]})
        op = Op(roomlog.INK, member, ink=msg)
        task = asyncio.create_task(self._ink(drawing, member, op, msg.seq))  # started in order
        flying.append(task)
        task.add_done_callback(lambda _: self._landed(member))

    async def _ink(self, drawing: Drawing, member: str, op: Op, seq: int | None) -> None:
        try:
            await self._submit(drawing, op, seq)
        except Exception as exc:  # the member's connection's funnel decides what it becomes
            ep = drawing.online.get(member)
            if ep is not None:
                await ep.fail(exc, exc.seq if isinstance(exc, ProtocolError) else seq)

    def _landed(self, member: str) -> None:
        flying = self._in_flight.get(member)
        while flying and flying[0].done():
            flying.popleft()
        if flying is not None and not flying:
            del self._in_flight[member]

    def _unsettled(self, member: str) -> list[asyncio.Task[None]]:
        """The member's room ink sent so far and not yet applied (or refused)."""
        return [t for t in self._in_flight.get(member, ()) if not t.done()]

    async def settled(self, member: str) -> None:
        """Wait until the member's room ink sent so far has been applied (or refused)."""
        flying = self._unsettled(member)
        if flying:
            await asyncio.wait(flying)

    def _recognize(self, drawing: Drawing, member: str, seq: int | None) -> None:
        """A recognize in a room on many processes: the final answer of the ink once the
        member's ink sent before it has been applied."""
        flying = self._unsettled(member)
        if not flying:
            drawing.final(member, seq)
            return

        async def after() -> None:
            await asyncio.wait(flying)
            if member in drawing.canvas.members:
                drawing.final(member, seq)

        self._spawn(after())

    def _saved_later(self, session: Session, now: bool) -> None:
        """Solo ink is written to the store at once when a stroke is finished (or undone,
        or cleared), and a stroke being drawn at most every OPEN_SAVE_S."""
        member = session.member
        if now:
            handle = self._open_saves.pop(member, None)
            if handle is not None:
                handle.cancel()
            self._save_solo(session)
        elif member not in self._open_saves:
            loop = asyncio.get_running_loop()
            self._open_saves[member] = loop.call_later(OPEN_SAVE_S, self._save_open, session)

    def _save_open(self, session: Session) -> None:
        self._open_saves.pop(session.member, None)
        self._save_solo(session)

    def _save_solo(self, session: Session) -> None:
        """A shared store keeps a solo session's finished strokes in its record, so that
        they survive the death of this process. One write in flight per session; changes
        meanwhile are written once after it."""
        member = session.member
        if member in self._saving:
            self._saving[member] = True  # again once the write in flight is done
            return
        self._saving[member] = False
        self._spawn(self._write_solo(session))

    async def _write_solo(self, session: Session) -> None:
        member = session.member
        try:
            while True:
                drawing = session.drawing
                if drawing is None or drawing.room is not None or session.state is not State.READY:
                    return
                seed = roomlog.seed_of(drawing.canvas)
                await self.store.save_solo(session.identity.resume_token, seed)
                if not self._saving.get(member):
                    return
                self._saving[member] = False
        finally:
            self._saving.pop(member, None)

    # ---- rooms --------------------------------------------------------------------------

    async def share(self, session: Session, ep: Endpoint, seq: int | None) -> None:
        """The session's own drawing becomes a room, with its ink and its pipeline."""
        drawing, member = self._own(session), session.member
        shared = roomlog.canvas_of(roomlog.seed_of(drawing.canvas), self.ink_limits)
        shared.lift(member)  # the open stroke is ended as drawn
        shared.see(member, seq)
        seed = roomlog.dump(Op(roomlog.SEED, member, seed=roomlog.seed_of(shared)))
        keys = await self.store.create_room(session.identity.client, self.clock(), seed)
        drawing.canvas.lift(member)
        drawing.canvas.room = keys.id
        drawing.canvas.see(member, seq)
        self.replicas[keys.id] = drawing
        if self.store.shared:
            self._follow(drawing, keys.id, keys.log_id)
        await self._recorded(session)
        await drawing.tell(ep, Shared(keys.id, keys.draw_token, keys.watch_token, seq))

    async def join(self, session: Session, ep: Endpoint, msg: Join) -> None:
        """Enter a room; the session's own drawing is discarded."""
        own = self._own(session)
        draws = await self.store.find_room(msg.room, msg.token, self.clock())
        drawing = await self._replica(msg.room)
        role = Role.DRAW if draws else Role.WATCH
        await self._submit(drawing, Op(roomlog.JOIN, session.member, role.value, msg.seq))
        own.detach(session.member)  # joined, in the log: nothing below may fail
        session.drawing = drawing
        await self._recorded(session)
        joined = drawing.canvas.state(session.member, msg.seq)
        await drawing.admit(session.member, ep, joined)
        drawing.touch()  # the joiner's first prediction, the same for everyone
        await self._count(msg.room, 1)

    async def leave(self, session: Session, ep: Endpoint, seq: int | None) -> None:
        """Leave the room with a copy of its ink, predicted at once with `seq`."""
        drawing = session.drawing
        if drawing is None or drawing.room is None:
            raise ProtocolError(Code.NOT_IN_ROOM, "not in a shared session", seq)
        room = drawing.room
        copy = await self._submit(drawing, Op(roomlog.LEAVE, session.member, seq=seq), seq)
        assert copy is not None
        own = self.drawing(copy)
        session.drawing = own
        own.attach(session.member, ep)
        self._record(session)
        await ep.send(Left(room, seq))
        own.touch()
        if self.store.shared:
            self._save_solo(session)  # the copy it took along
        await self._count(room, -1)

    def _own(self, session: Session) -> Drawing:
        """The session's drawing when it is its own (not a room's)."""
        drawing = session.drawing
        assert drawing is not None
        if drawing.room is not None:
            raise ProtocolError(Code.ALREADY_IN_ROOM, "already in a shared session; leave first")
        return drawing

    async def _count(self, room: str, delta: int) -> None:
        """Count members in or out: at once in memory; a shared store's answer is not
        waited for (the join or leave is in the log already, whatever it says)."""
        if self.store.shared:
            self._spawn(self._occupancy(room, delta))
        else:
            await self._occupancy(room, delta)

    async def _occupancy(self, room: str, delta: int) -> None:
        await self.store.occupancy(room, delta, self.clock())

    # ---- the log ------------------------------------------------------------------------

    async def _submit(self, drawing: Drawing, op: Op, seq: int | None = None) -> Canvas | None:
        """Carry out a room operation: at once in memory; with a shared store, through the
        room's log, returning once this process has applied it in log order."""
        if not self.store.shared:
            return await drawing.apply(op, local=True)
        assert drawing.room is not None
        op = dataclasses.replace(op, nonce=f"{self._process}:{next(self._nonces)}")
        done: asyncio.Future[Canvas | None] = asyncio.get_running_loop().create_future()
        self._waiting[op.nonce] = done
        try:
            await self.store.append(drawing.room, roomlog.dump(op))  # unavailable within 1 s
            async with asyncio.timeout(COMEBACK_S):
                return await done
        except TimeoutError:
            raise unavailable(seq) from None
        except ProtocolError as exc:
            raise exc.with_seq(exc.seq if exc.seq is not None else seq) from None
        finally:
            self._waiting.pop(op.nonce, None)

    async def on_entries(self, room: str, entries: list[tuple[str, bytes]]) -> None:
        """New entries of a room's log (the store's follower calls this, in order)."""
        drawing = self.replicas.get(room)
        if drawing is None:
            return
        await self._apply(drawing, room, entries)
        if drawing.predicts:
            self._compact(drawing, room, len(entries), entries[-1][0])
        if room in self._early:
            await self._forward(drawing, room, [])

    async def _apply(self, drawing: Drawing, room: str, entries: list[tuple[str, bytes]]) -> None:
        for _, data in entries:
            op = roomlog.load(data)
            if op.kind == roomlog.SEED:
                continue
            done = self._waiting.pop(op.nonce, None) if op.nonce else None
            try:
                result = await drawing.apply(op, local=done is not None)
            except Exception as exc:
                if done is not None and not done.done():
                    done.set_exception(exc)
                elif not isinstance(exc, ProtocolError):
                    log.exception("applying room %s's log failed", room)
                continue
            if done is not None and not done.done():
                done.set_result(result)
            elif done is None and op.kind == roomlog.JOIN and self._mine(op):
                self._spawn(self._undo_join(drawing, op.member))  # its joiner gave up

    def _compact(self, drawing: Drawing, room: str, applied: int, upto: str) -> None:
        """Every COMPACT_AFTER entries the room's predictor appends a seed of the canvas as of
        `upto`, and the store drops the entries the previous seed stood for: a joiner replays
        at most that many."""
        since = self._uncompacted.get(room, 0) + applied
        self._uncompacted[room] = since
        if since >= COMPACT_AFTER:
            self._uncompacted[room] = 0
            self._spawn(self.store.compact(room, roomlog.compacted(drawing.canvas, upto), upto))

    # ---- predictions of a room on many processes -----------------------------------------

    def _publish(self, room: str, answer: Answer) -> None:
        """An answer made here goes to the room's other processes: every live answer of the
        room's predictor, and any final answer (it is shown to every member)."""
        drawing = self.replicas.get(room)
        if drawing is not None and (drawing.predicts or answer.snapshot.final):
            self.store.publish(room, roomlog.dump_answer(answer, self._process))

    async def on_answers(self, room: str, answers: list[bytes]) -> None:
        """Answers published by other processes for a room served here, in their order."""
        drawing = self.replicas.get(room)
        if drawing is None:
            return
        theirs = []
        for data in answers:
            process, answer = roomlog.load_answer(data)
            if process == self._process or (drawing.predicts and not answer.snapshot.final):
                continue  # ours, or another's live answer while the room passes to us
            theirs.append(answer)
        await self._forward(drawing, room, theirs)

    async def _forward(self, drawing: Drawing, room: str, answers: list[Answer]) -> None:
        """Send answers in order; one of ink this replica has not reached yet (its log
        entries come in a later read) waits for it, and so do those behind it."""
        queue = self._early.pop(room, [])
        queue.extend(answers)
        while queue and queue[0].snapshot.version <= drawing.canvas.version:
            await drawing.forward(queue.pop(0))
        if queue:
            self._early[room] = queue

    def on_predictor(self, room: str, mine: bool) -> None:
        """The store chose this process to predict the room (its predictor died or left),
        or another one; a new predictor predicts the ink as it is now."""
        drawing = self.replicas.get(room)
        if drawing is None:
            return
        was, drawing.predicts = drawing.predicts, mine
        if mine and not was:
            drawing.touch()

    def _mine(self, op: Op) -> bool:
        return op.nonce.startswith(self._process + ":")

    async def _undo_join(self, drawing: Drawing, member: str) -> None:
        try:
            await self._submit(drawing, Op(roomlog.LEAVE, member))
        except ProtocolError:
            log.warning("a join that timed out could not be undone")

    async def _replica(self, room: str) -> Drawing:
        """This process's copy of a room, loaded from the store's log when it has none."""
        drawing = self.replicas.get(room)
        if drawing is not None:
            return drawing
        if not self.store.shared:
            raise ProtocolError(Code.ROOM_REFUSED, "no room with that token")
        loading = self._loading.get(room)
        if loading is None:
            loading = self._loading[room] = asyncio.create_task(self._load(room))
            loading.add_done_callback(lambda _: self._loading.pop(room, None))
        return await asyncio.shield(loading)

    async def _load(self, room: str) -> Drawing:
        entries = await self.store.history(room)
        if not entries:
            raise ProtocolError(Code.ROOM_REFUSED, "no room with that token")
        canvas = roomlog.replay(room, entries, self.ink_limits)
        drawing = self.drawing(canvas)
        drawing.predicts = False  # until the store says this process is the predictor
        self.replicas[room] = drawing
        self._follow(drawing, room, entries[-1][0])
        return drawing

    def _follow(self, drawing: Drawing, room: str, after: str) -> None:
        """Make `drawing` this process's replica of a room on a shared store: its answers are
        published, its recognizes wait for the member's ink in flight, and the room's log is
        applied to it from entry `after` on."""
        drawing.on_answer = partial(self._publish, room)
        drawing.on_recognize = partial(self._recognize, drawing)
        self.store.follow(room, after, self)

    # ---- lifetimes ----------------------------------------------------------------------

    async def _forget(self, session: Session) -> None:
        """A session gone for good leaves its room."""
        drawing = session.drawing
        if drawing is None or drawing.room is None:
            return
        room = drawing.room
        if self.store.shared:
            await self.store.drop(session.identity.resume_token)
        await self._submit(drawing, Op(roomlog.LEAVE, session.member))
        await self._occupancy(room, -1)

    async def expire(self) -> None:
        """Sessions past their grace period leave their rooms; rooms empty for
        `room_empty_ttl_s` are forgotten, tokens and all."""
        now = self.clock()
        for session in self.parked.expire(now):
            if not self.store.shared:
                await self._forget(session)
        try:
            await self._expire_store(now)
        except ProtocolError:  # the shared store is out of reach: next time
            log.debug("expiry skipped: shared store unavailable")

    async def _expire_store(self, now: float) -> None:
        for record in await self.store.expire_parked(now):  # claimed by this process
            if record.room is not None:
                leave = roomlog.dump(Op(roomlog.LEAVE, record.session))
                await self.store.append(record.room, leave)
                await self._occupancy(record.room, -1)
        for room in await self.store.expire_rooms(now):
            await self._drop_replica(room)
        if self.store.shared:
            await self._drop_idle_replicas()

    async def _drop_idle_replicas(self) -> None:
        """Stop following rooms nobody here is in (online or parked)."""
        if self._waiting:  # an operation of ours (a join?) is on its way back: not now
            return
        parked = {s.drawing.room for s in self.parked.sessions() if s.drawing is not None}
        for room, drawing in list(self.replicas.items()):
            if not drawing.online and room not in parked and room not in self._loading:
                await self._drop_replica(room)

    async def _drop_replica(self, room: str) -> None:
        """Forget this process's copy of a room and stop following its log."""
        drawing = self.replicas.pop(room, None)
        self._early.pop(room, None)
        self._uncompacted.pop(room, None)
        if self.store.shared:
            self.store.unfollow(room)
        if drawing is not None:
            await drawing.stop()

    @property
    def busy(self) -> bool:
        """Whether background steps (parking, fan-out of dropped members) are under way."""
        return bool(self._tasks)

    def _spawn(self, work: Coroutine[None, None, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(self._logged(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    async def _logged(work: Coroutine[None, None, None]) -> None:
        try:
            await work
        except ProtocolError as exc:  # the shared store is out of reach: said once, here
            log.warning("background step skipped: %s", exc.message)

    async def stop(self) -> None:
        """Stop every room's pipeline and pending fan-out (server shutdown). A shared store
        is given a moment to record the sessions just parked, to be resumed elsewhere."""
        for handle in self._open_saves.values():
            handle.cancel()
        for flying in self._in_flight.values():
            for task in flying:
                task.cancel()
        tasks = list(self._tasks)
        if tasks and self.store.shared:
            await asyncio.wait(tasks, timeout=UNAVAILABLE_S)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for drawing in self.replicas.values():
            await drawing.stop()
