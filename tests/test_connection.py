"""The connection and room core (server/connection.py, hub.py, drawing.py) with a fake peer,
a fake recognizer held open by an asyncio.Event, and an injected clock: no socket, no model.
Each test drives frames in and asserts the exact messages out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from protocol import (
    Clear,
    ClientMessage,
    End,
    Error,
    Guess,
    Hello,
    Join,
    Joined,
    Leave,
    Left,
    Limits,
    Ping,
    PointsMsg,
    Pong,
    Prediction,
    Presence,
    Recognize,
    ResumeError,
    ServerMessage,
    Share,
    Shared,
    Start,
    StrokeEvent,
    Welcome,
    decode_server,
    encode_client,
)
from server.canvas import Snapshot
from server.connection import Connection
from server.drawing import MAX_FINALS
from server.hub import Hub
from server.metrics import Metrics
from server.recognizer import Answer, Recognizer
from server.session import Identity, Session
from server.store import MemoryStore, ResumeFailed, SessionRecord

pytestmark = pytest.mark.asyncio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakePeer:
    """A socket that records what is sent. `backlog` is what the network has not taken;
    `drained` releases wait_writable."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[ServerMessage] = asyncio.Queue()
        self.backlog = 0
        self.drained = asyncio.Event()
        self.closed: tuple[int, str] | None = None
        self.jammed = False  # a write stays in the socket's buffer until `drained`

    async def send(self, data: bytes | str) -> None:
        if self.jammed:
            self.backlog += len(data)
            await self.drained.wait()
            self.backlog = 0
        self.inbox.put_nowait(decode_server(data))

    def buffered(self) -> int:
        return self.backlog

    async def wait_writable(self, limit: int) -> None:
        await self.drained.wait()
        self.backlog = 0

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    async def next(self) -> ServerMessage:
        async with asyncio.timeout(5):  # a guard, not a wait: the message is due
            return await self.inbox.get()

    def sent(self) -> list[ServerMessage]:
        out = []
        while not self.inbox.empty():
            out.append(self.inbox.get_nowait())
        return out


class FakeRecognizer:
    """Answers `digit = number of strokes`; `gate` holds every prediction open."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.predicted: list[Snapshot] = []
        self.error: Exception | None = None

    async def predict(
        self,
        snap: Snapshot,
        refresh: Callable[[Snapshot], Snapshot] | None = None,
        owner: str | None = None,
    ) -> Answer:
        if not snap.ink:
            return Answer(snap)
        await self.gate.wait()  # queued
        snap = refresh(snap) if refresh is not None else snap
        self.predicted.append(snap)
        if self.error is not None:
            raise self.error
        if not snap.ink:
            return Answer(snap)
        xs = [p[0] for s in snap.ink for p in s]
        ys = [p[1] for s in snap.ink for p in s]
        top = (Guess(len(snap.ink) % 10, 0.9), Guess(7, 0.1))
        return Answer(snap, top, (min(xs), min(ys), max(xs), max(ys)))


class World:
    """One hub with its fakes; `connect()` gives a connection and its peer."""

    def __init__(self, **limits: Any) -> None:
        self.clock = Clock()
        self.limits = Limits(**limits)
        self.recognizer = FakeRecognizer()
        self.metrics = Metrics()
        recognizer: Recognizer = self.recognizer  # type: ignore[assignment]
        self.hub = Hub(self.limits, recognizer, self.metrics, clock=self.clock)
        self.count = 0

    def connect(self) -> tuple[Connection, FakePeer]:
        self.count += 1
        identity = Identity(f"s{self.count}", f"t{self.count}", "m", "cpu", "fake", self.limits)
        peer = FakePeer()
        return Connection(peer, Session(identity), self.hub, self.metrics, self.clock), peer

    async def hello(self, **fields: Any) -> tuple[Connection, FakePeer]:
        conn, peer = self.connect()
        await send(conn, Hello(**fields))
        assert isinstance(await peer.next(), Welcome)
        return conn, peer


async def send(conn: Connection, *msgs: ClientMessage) -> None:
    for msg in msgs:
        await conn.receive(encode_client(msg))


async def settle(conn: Connection) -> None:
    drawing = conn.session.drawing
    assert drawing is not None
    await drawing.settled()


def predictions(msgs: list[ServerMessage]) -> list[tuple[int | None, bool, int]]:
    return [(m.seq, m.final, m.strokes) for m in msgs if isinstance(m, Prediction)]


# ---- one connection -------------------------------------------------------------------------


async def test_hello_first_then_welcome_ping_and_a_live_prediction() -> None:
    world = World()
    conn, peer = world.connect()
    assert not await conn.receive(encode_client(Ping(seq=1)))
    assert await peer.next() == Error("hello_first", "the first message must be hello", 1)
    assert peer.closed == (1008, "hello_first")
    conn, peer = await world.hello(top_k=1)
    await send(conn, Ping(seq=1), Start(((1, 2), (3, 4)), seq=2))
    assert await peer.next() == Pong(1)
    assert await peer.next() == Prediction(2, False, False, (Guess(1, 0.9),), (1, 2, 3, 4), 1)


async def test_a_failed_hello_may_be_retried() -> None:
    world = World()
    conn, peer = world.connect()
    assert await conn.receive('{"type": "hello", "version": 1, "top_k": 99, "seq": 3}')
    error = await peer.next()
    assert isinstance(error, Error) and (error.code, error.seq) == ("bad_message", 3)
    assert peer.closed is None
    await send(conn, Hello())
    assert isinstance(await peer.next(), Welcome)


async def test_each_recognize_gets_its_own_final_back_to_back() -> None:
    """Protocol bug 1: start, end, recognize(3), recognize(4), clear(5) sent back to back."""
    world = World()
    conn, peer = await world.hello()
    world.recognizer.gate.clear()  # the live prediction of `start` stays queued
    await send(conn, Start(((0, 0), (0, 9)), seq=1), End(seq=2), Recognize(3), Recognize(4))
    await send(conn, Clear(seq=5))
    world.recognizer.gate.set()
    await settle(conn)
    assert predictions(peer.sent()) == [(1, False, 1), (3, True, 1), (4, True, 1), (5, False, 0)]


async def test_a_queued_live_prediction_takes_the_newest_ink() -> None:
    world = World()
    conn, peer = await world.hello()
    world.recognizer.gate.clear()
    await send(conn, Start(((0, 0),), seq=1), PointsMsg(((5, 5),), seq=2), End(((9, 0),), seq=3))
    world.recognizer.gate.set()
    await settle(conn)
    (only,) = [m for m in peer.sent() if isinstance(m, Prediction)]
    assert (only.seq, only.bbox) == (3, (0, 0, 9, 5))
    assert [len(s.ink[0]) for s in world.recognizer.predicted] == [3]


async def test_share_right_after_start_keeps_the_live_prediction() -> None:
    """Protocol bug 2: `start` then `share` back to back."""
    world = World()
    conn, peer = await world.hello()
    world.recognizer.gate.clear()
    await send(conn, Start(((0, 0), (1, 1)), seq=1), Share(seq=2))
    shared = await peer.next()
    assert isinstance(shared, Shared) and shared.seq == 2
    world.recognizer.gate.set()
    await settle(conn)
    assert predictions(peer.sent()) == [(1, False, 1)]  # the start's


async def test_an_internal_failure_goes_through_the_funnel() -> None:
    world = World()
    conn, peer = await world.hello()
    world.recognizer.error = RuntimeError("secret detail")
    await send(conn, Start(((0, 0),), seq=4))
    await settle(conn)
    assert peer.sent() == [Error("internal", "internal error", 4)]
    assert peer.closed == (1011, "internal") and not conn.open
    assert 'digits_errors_total{code="internal"} 1.0' in world.metrics.render().decode()


async def test_a_flood_is_refused_then_closed_on_the_injected_clock() -> None:
    world = World(messages_per_second=1.0, message_burst=2)
    conn, peer = await world.hello()  # hello took one token
    await send(conn, Ping(1), Ping(2))
    assert [await peer.next(), await peer.next()] == [
        Pong(1),
        Error("rate_limited", "message rate limit exceeded", 2),
    ]
    world.clock.now += 2.0  # two tokens back: the debt of ping 2, and one
    await send(conn, Ping(3))
    assert await peer.next() == Pong(3)
    await send(conn, Ping(4), Ping(5))
    assert peer.closed == (1008, "rate_limited")


# ---- a client that is behind ----------------------------------------------------------------


async def test_a_client_behind_gets_the_newest_live_prediction_once_it_reads() -> None:
    world = World(send_buffer_bytes=100)
    conn, peer = await world.hello()
    peer.backlog = 1000  # not reading
    for seq in (1, 2, 3):
        await send(conn, Start(((seq, 0),), seq=seq))
        await settle(conn)
    assert peer.sent() == []  # held, each replacing the one before
    peer.drained.set()
    assert predictions([await peer.next()]) == [(3, False, 3)]
    assert "digits_predictions_dropped_total 2.0" in world.metrics.render().decode()


async def test_what_was_held_and_then_written_leaves_nothing_counted_as_waiting() -> None:
    """Every prediction held while the client was behind, once written, no longer counts
    toward send_buffer_bytes: the limit means the same after any number of such turns."""
    world = World(send_buffer_bytes=100)
    conn, peer = await world.hello()
    for seq in range(1, 4):
        peer.backlog, peer.drained = 1000, asyncio.Event()  # behind
        await send(conn, Start(((seq, 0),), seq=seq))
        await settle(conn)
        peer.drained.set()  # reads again: the held prediction goes out
        assert predictions([await peer.next()]) == [(seq, False, seq)]
        if conn._writer is not None:
            await asyncio.wait({conn._writer})
    assert conn._queued == 0  # (it went below zero by each prediction: the limit loosened)
    peer.backlog = 101  # over the limit
    await send(conn, Ping(seq=9))
    assert conn._closing is not None


async def test_a_message_behind_a_held_prediction_goes_out_without_waiting() -> None:
    """A live prediction held for a client that is behind (within its limit) waits for it to
    read; a message that cannot be dropped goes out at once, after that prediction."""
    world = World(send_buffer_bytes=64 * 1024)
    conn, peer = await world.hello()
    peer.backlog = 20_000  # behind: more than a quick write leaves, within the limit
    await send(conn, Start(((0, 0),), seq=1))
    await settle(conn)
    assert peer.sent() == []  # held for the client
    await send(conn, Ping(seq=2))
    assert predictions([await peer.next()]) == [(1, False, 1)]  # the older message first
    assert await peer.next() == Pong(2)
    assert not peer.drained.is_set() and conn.open


async def test_a_message_larger_than_the_limit_is_written_and_what_follows_waits_for_it() -> None:
    """A `joined` of a room full of ink can exceed send_buffer_bytes alone: while it is being
    written, what follows waits behind it instead of closing the client with too_slow."""
    world = World(send_buffer_bytes=4096)
    conn, peer = await world.hello()
    peer.jammed = True  # the network takes it slowly
    await conn.send(Error("big", "x" * 20_000))
    await conn.send(Pong(1))
    assert conn.open and conn._closing is None
    peer.drained.set()
    assert (await peer.next()).code == "big"  # type: ignore[union-attr]
    assert await peer.next() == Pong(1)


async def test_a_message_that_cannot_be_dropped_closes_a_client_behind_with_too_slow() -> None:
    world = World(send_buffer_bytes=100)
    conn, peer = await world.hello()
    peer.backlog = 1000
    await send(conn, Ping(seq=1))
    assert conn._closing is not None
    await asyncio.wait({conn._closing})  # the close runs in its own task
    assert peer.closed == (1008, "too_slow") and not conn.open


async def test_a_client_that_sends_but_never_reads_is_dropped() -> None:
    """Protocol bug 6: behind for heartbeat_s / 2 in a row is too_slow (1008)."""
    world = World(send_buffer_bytes=100, heartbeat_s=0.02)
    conn, peer = await world.hello()
    peer.backlog = 1000
    await send(conn, Start(((0, 0),), seq=1))
    await settle(conn)
    assert conn._writer is not None
    await asyncio.wait({conn._writer})  # waits heartbeat_s / 2 for the client to read
    assert conn._closing is not None
    await asyncio.wait({conn._closing})
    assert peer.closed == (1008, "too_slow")


# ---- rooms ----------------------------------------------------------------------------------


async def test_a_member_whose_socket_takes_nothing_holds_up_neither_the_room_nor_the_drawer() -> (
    None
):
    """A write the peer does not take waits in that member's outbox: the room's other members
    get the stroke at once, and the one behind is closed only once it is over its limit."""
    world = World(send_buffer_bytes=64 * 1024)
    a, pa, b, pb, shared = await room_of_two(world)
    c, pc = await world.hello()
    await send(c, Join(shared.room, shared.watch_token, seq=1))
    assert isinstance(await pc.next(), Joined)
    await settle(c)
    pb.backlog, pb.jammed = 20_000, True  # over the quick-write bound: b's next write waits
    pc.sent()
    for seq in range(10, 13):
        await send(a, Start(((seq, seq),), seq=seq))
        event = await pc.next()  # the other member is not kept waiting for b
        while not (isinstance(event, StrokeEvent) and event.event == "start"):
            event = await pc.next()
        assert event.points == ((seq, seq),)
    assert b.open and b._closing is None  # b is behind, within its limit: still served
    assert isinstance(await pa.next(), Prediction)  # and so is the drawer
    pb.drained.set()  # b reads again: it gets everything, in order
    await settle(a)
    starts = [m.points for m in pb.sent() if isinstance(m, StrokeEvent) and m.event == "start"]
    assert starts == [((10, 10),), ((11, 11),), ((12, 12),)]
    assert b._closing is None and b.open


async def test_a_member_that_stays_behind_its_limit_is_closed_without_holding_up_the_room() -> None:
    world = World(send_buffer_bytes=100)
    a, _, b, pb, _ = await room_of_two(world)
    pb.backlog, pb.jammed = 20_000, True
    await send(a, Start(((1, 1),), seq=10))  # b is over its limit: too_slow, not a wait
    assert b._closing is not None
    await asyncio.wait({b._closing}, timeout=5)  # the last word waits LAST_WORD_S at most
    assert pb.closed == (1008, "too_slow") and not b.open


async def room_of_two(world: World) -> tuple[Any, ...]:
    a, pa = await world.hello()
    await send(a, Start(((0, 0), (1, 1)), seq=1), Share(seq=2))
    shared = await pa.next()
    assert isinstance(shared, Shared)
    await settle(a)
    b, pb = await world.hello()
    await send(b, Join(shared.room, shared.draw_token, seq=7))
    joined = await pb.next()
    assert isinstance(joined, Joined) and joined.seq == 7
    await settle(b)
    assert predictions(pb.sent()) == [(7, False, 1)]  # its join's seq
    return a, pa, b, pb, shared


async def test_members_see_each_others_strokes_and_predictions_with_their_own_seq() -> None:
    world = World()
    _, pa, b, pb, shared = await room_of_two(world)
    assert [m for m in pa.sent() if not isinstance(m, Prediction)] == [
        Presence(shared.room, "joined", "s2", "draw")
    ]
    await send(b, Start(((5, 5),), seq=8))
    await settle(b)
    assert pa.sent() == [
        StrokeEvent(shared.room, "start", 2, "s2", ((5, 5),)),
        Prediction(2, False, False, (Guess(2, 0.9), Guess(7, 0.1)), (0, 0, 5, 5), 2),
    ]
    assert predictions(pb.sent()) == [(8, False, 2)]  # no stroke event to its author


async def test_recognize_in_a_room_answers_the_asker_and_shows_everyone() -> None:
    world = World()
    _, pa, b, pb, _ = await room_of_two(world)
    pa.sent()
    await send(b, Recognize(seq=9))
    await settle(b)
    assert predictions(pb.sent()) == [(9, True, 1)]  # the answer to its recognize
    assert predictions(pa.sent()) == [(None, True, 1)]  # the same final, answering nothing of a's


async def test_leave_keeps_a_copy_predicted_with_the_leave_seq() -> None:
    world = World()
    _, pa, b, pb, shared = await room_of_two(world)
    pa.sent()
    await send(b, Leave(seq=10))
    assert await pb.next() == Left(shared.room, 10)
    await settle(b)
    assert predictions(pb.sent()) == [(10, False, 1)]
    assert pa.sent() == [Presence(shared.room, "left", "s2", "draw")]


async def test_a_dropped_member_resumes_into_its_room() -> None:
    world = World(resume_grace_s=60.0)
    _, pa, b, _, shared = await room_of_two(world)
    await send(b, Start(((3, 3),), seq=8))
    await settle(b)
    b.abandon()  # the socket is gone: parked, its stroke ended
    await asyncio.gather(*world.hub._tasks)
    assert StrokeEvent(shared.room, "end", 2, "s2") in pa.sent()
    world.clock.now += 59.0
    c, pc = world.connect()
    await send(c, Hello(resume="t2"))
    welcome = await pc.next()
    assert isinstance(welcome, Welcome) and (welcome.resumed, welcome.session) == (True, "s2")
    joined = await pc.next()
    assert isinstance(joined, Joined) and joined.seq is None and len(joined.strokes) == 2
    await settle(c)
    assert predictions(pc.sent()) == [(8, False, 2)]


async def test_a_resume_after_the_grace_period_is_a_new_session() -> None:
    world = World(resume_grace_s=60.0)
    a, _ = await world.hello()
    a.abandon()
    world.clock.now += 60.0
    await world.hub.expire()
    c, pc = world.connect()
    await send(c, Hello(resume="t1"))
    welcome = await pc.next()
    assert isinstance(welcome, Welcome)
    assert (welcome.resumed, welcome.resume_error, welcome.session) == (
        False,
        "resume_expired",
        "s2",
    )


async def test_recognize_beyond_what_may_wait_is_overloaded_and_the_session_goes_on() -> None:
    world = World()
    conn, peer = await world.hello()
    world.recognizer.gate.clear()  # nothing is answered meanwhile
    await send(conn, Start(((0, 0), (0, 9)), seq=1))
    await send(conn, *(Recognize(seq) for seq in range(2, 2 + MAX_FINALS + 2)))
    refused = [m for m in peer.sent() if isinstance(m, Error)]
    assert [(e.code, e.seq) for e in refused] == [
        ("overloaded", 2 + MAX_FINALS),
        ("overloaded", 3 + MAX_FINALS),
    ]
    world.recognizer.gate.set()
    await settle(conn)
    finals = [p for p in predictions(peer.sent()) if p[1]]
    assert [seq for seq, _, _ in finals] == list(range(2, 2 + MAX_FINALS))
    await send(conn, Recognize(99))  # room again
    await settle(conn)
    assert predictions(peer.sent())[-1] == (99, True, 1)


class HeldStore(MemoryStore):
    """A shared store whose first session-record write waits for `gate` (a slow pooled
    connection); it notes the order in which the writes land."""

    shared = True

    def __init__(self) -> None:
        super().__init__(10, 10, 60.0)
        self.gate = asyncio.Event()
        self.parked = asyncio.Event()
        self.landed: list[tuple[str, str]] = []

    async def register(self, token: str, record: SessionRecord) -> None:
        if not self.landed and not self.gate.is_set():
            await self.gate.wait()
        self.landed.append(("register", token))

    async def park(self, token: str, record: SessionRecord, deadline: float) -> None:
        self.landed.append(("park", token))
        self.parked.set()

    async def save_solo(self, token: str, seed: dict[str, Any]) -> None:
        pass


async def test_a_sessions_record_is_written_in_the_order_of_its_changes() -> None:
    """The hello's record (held up) lands before the park that came after it: a record
    written live after its park would make the session unresumable elsewhere."""
    world = World()
    store = HeldStore()
    world.hub = Hub(world.limits, world.hub.recognizer, world.metrics, world.clock, store)
    conn, _ = await world.hello()
    token = conn.session.identity.resume_token
    conn.abandon()  # the socket dropped: parked
    for _ in range(10):  # turns of the loop (no clock): every task that can run, runs
        await asyncio.sleep(0)
    assert store.landed == []  # the park waits for the register before it
    store.gate.set()
    async with asyncio.timeout(5):
        await store.parked.wait()
    assert store.landed == [("register", token), ("park", token)]


async def test_a_rooms_live_predictions_are_paced_and_a_recognize_is_not() -> None:
    """At 4 a second, ink drawn right after a live prediction waits for the next one, which
    covers all of it; a recognize during the pause is answered at once."""
    world = World(room_predictions_per_second=4.0)
    conn, peer = await world.hello()
    await send(conn, Share(seq=1))
    assert isinstance(await peer.next(), Shared)
    loop = asyncio.get_running_loop()

    async def next_prediction() -> tuple[Prediction, float]:
        while not isinstance(msg := await peer.next(), Prediction):
            pass
        return msg, loop.time()

    await send(conn, Start(((0, 0),), seq=2))
    first, t1 = await next_prediction()
    await send(conn, Start(((1, 1),), seq=3), Start(((2, 2),), seq=4))  # during the pause
    second, t2 = await next_prediction()
    assert (first.seq, first.final, second.seq, second.strokes) == (2, False, 4, 3)
    assert t2 - t1 >= 0.2  # a quarter of a second after the first began, less its run
    await send(conn, Start(((3, 3),), seq=5), Recognize(seq=6))
    final, t3 = await next_prediction()
    assert (final.seq, final.final, final.strokes) == (6, True, 4)
    assert t3 - t2 < 0.25  # not held until the pause was over
    await settle(conn)
    assert predictions(peer.sent()) == []  # the final covered the ink: no live one after it


class RecordStore(MemoryStore):
    """A shared store that keeps session records as Redis does (live or parked, claimed
    once by `resume`), whose park writes wait for `gate` (a slow pooled connection)."""

    shared = True

    def __init__(self) -> None:
        super().__init__(10, 10, 60.0)
        self.gate = asyncio.Event()
        self.records: dict[str, tuple[str, SessionRecord]] = {}

    async def register(self, token: str, record: SessionRecord) -> None:
        self.records[token] = ("live", record)

    async def park(self, token: str, record: SessionRecord, deadline: float) -> None:
        await self.gate.wait()
        self.records[token] = ("parked", record)

    async def save_solo(self, token: str, seed: dict[str, Any]) -> None:
        pass

    async def resume(self, token: str, now: float) -> SessionRecord:
        state, record = self.records.get(token, ("", None))
        if record is None:
            raise ResumeFailed(ResumeError.UNKNOWN)
        if state == "live":  # its process is alive: not resumable elsewhere
            raise ResumeFailed(ResumeError.UNAVAILABLE)
        del self.records[token]
        return record

    async def drop(self, token: str) -> None:
        self.records.pop(token, None)


async def test_a_token_resumes_once_while_its_park_is_still_being_written() -> None:
    """A resume that arrives while the process is still writing the park of that token
    claims the record once it is written: claimed before, the park landing afterwards would
    leave the old token resumable a second time."""
    world = World(resume_grace_s=60.0)
    store = RecordStore()
    world.hub = Hub(world.limits, world.hub.recognizer, world.metrics, world.clock, store)
    conn, _ = await world.hello()
    token = conn.session.identity.resume_token
    conn.abandon()  # parked; the park's record write is held up
    c, pc = world.connect()
    resuming = asyncio.ensure_future(send(c, Hello(resume=token)))
    for _ in range(10):  # turns of the loop (no clock): every task that can run, runs
        await asyncio.sleep(0)
    store.gate.set()
    async with asyncio.timeout(5):
        await resuming
    welcome = await pc.next()
    assert isinstance(welcome, Welcome) and welcome.resumed and welcome.session == "s1"
    for _ in range(10):  # every write under way lands
        await asyncio.sleep(0)
    assert token not in store.records  # claimed, and not parked again by a late write
    d, pd = world.connect()
    await send(d, Hello(resume=token))
    again = await pd.next()
    assert isinstance(again, Welcome) and not again.resumed
    assert again.resume_error == "resume_unknown"
