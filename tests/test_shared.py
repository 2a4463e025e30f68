"""Shared sessions (rooms) and resumable sessions, end to end: a real server on a loopback
port, real WebSocket clients (the client library and raw sockets), the real model and
UNIPEN digits. The cores are tested alone in test_canvas.py, test_store.py and
test_connection.py. No test waits for quiet: `drain` lets the server's predictions settle,
then reads up to a pong; time-outs run on a clock the test moves."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import server.connection
from client import DigitsClient, JoinRefused, Prediction, ServerError, connect
from protocol import (
    Cleared,
    Error,
    Joined,
    Pong,
    Presence,
    ServerMessage,
    StrokeEvent,
    Undone,
)
from server.app import CONNECTIONS, HUB
from tests.serverkit import (
    MakeClient,
    StubbornSocket,
    draw,
    narrow,
    start,
    stepped,
    unipen_digits,
    unipen_rejects,
    until,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("store")]  # both stores (conftest)


@contextlib.asynccontextmanager
async def clients(url: str, n: int, **kwargs: Any) -> AsyncIterator[list[DigitsClient]]:
    opened = [await DigitsClient.open(url, **kwargs) for _ in range(n)]
    try:
        yield opened
    finally:
        for c in opened:
            await c.close()


async def drain(app: web.Application, *cs: DigitsClient) -> list[list[ServerMessage]]:
    """Every message the server has sent each client so far. A first ping from each proves
    the server has handled all they sent; then no drawing may have a prediction in flight;
    then a second ping's pong comes after everything sent to that client."""
    for c in cs:
        await c.ping()
    drawings = [conn.session.drawing for conn in app[CONNECTIONS]]
    for drawing in {id(d): d for d in drawings if d is not None}.values():
        await drawing.settled()
    heard = []
    for c in cs:
        await c.ping()
        out, pongs = [], 0
        async with asyncio.timeout(10):
            while pongs < 2:
                msg = await c.receive()
                if isinstance(msg, Pong):
                    pongs += 1
                else:
                    out.append(msg)
        heard.append(out)
    return heard


class Clock:
    """The hub's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def hub_clock(app: web.Application) -> Clock:
    clock = Clock()
    app[HUB].clock = clock
    return clock


def live(messages: list[ServerMessage]) -> list[tuple[Any, ...]]:
    """The live predictions among `messages`, as comparable values (each member's own
    `seq` aside: a room's prediction names every member's latest message)."""
    return [
        (m.empty, m.top, m.bbox, m.strokes)
        for m in messages
        if isinstance(m, Prediction) and not m.final
    ]


def after(messages: list[ServerMessage], marker: Any) -> list[ServerMessage]:
    return messages[messages.index(marker) + 1 :]


# ---- rooms --------------------------------------------------------------------------------------


async def test_three_members_see_the_same_strokes_and_predictions_in_the_same_order(
    aiohttp_client: MakeClient,
) -> None:
    server, url = await start(aiohttp_client)
    app = server.app
    one, seven = unipen_digits()[4], unipen_digits()[28]
    async with clients(url, 3) as (a, b, w):
        shared = await a.share()
        assert shared.room and shared.draw_token != shared.watch_token
        joined_b = await b.join(shared.room, shared.draw_token)
        joined_w = await w.join(shared.room, shared.watch_token)
        assert (joined_b.role, joined_w.role) == ("draw", "watch")
        assert [m.role for m in joined_w.members] == ["draw", "draw", "watch"]
        ids = [m.member for m in joined_w.members]
        assert ids == [a.welcome.session, b.welcome.session, w.welcome.session]  # type: ignore[union-attr]
        await asyncio.gather(draw(a, one.strokes), draw(b, seven.strokes))
        sent = [c._seq for c in (a, b, w)]  # each one's latest seq, before drain's pings
        heard = await drain(app, a, b, w)
    marker = Presence(shared.room, "joined", ids[2], "watch")
    a_msgs, b_msgs, w_msgs = after(heard[0], marker), after(heard[1], marker), heard[2]
    w_msgs = w_msgs[1:] if isinstance(w_msgs[0], Prediction) else w_msgs  # its own join's
    assert live(a_msgs) == live(b_msgs) == live(w_msgs) != []
    for last, msgs in zip(sent, (a_msgs, b_msgs, w_msgs), strict=True):  # each its own seq
        seqs = [p.seq for p in msgs if isinstance(p, Prediction)]
        assert seqs == sorted(seqs) and seqs[-1] == last
    assert {p.seq for p in w_msgs if isinstance(p, Prediction)} == {joined_w.seq}
    assert live(w_msgs)[-1][-1] == len(one.strokes) + len(seven.strokes)
    strokes = [m for m in w_msgs if isinstance(m, StrokeEvent)]
    assert [m for m in a_msgs if isinstance(m, StrokeEvent)] == [
        m for m in strokes if m.author == ids[1]
    ]
    assert [m for m in b_msgs if isinstance(m, StrokeEvent)] == [
        m for m in strokes if m.author == ids[0]
    ]
    for author, digit in ((ids[0], one), (ids[1], seven)):
        mine = [m for m in strokes if m.author == author]
        assert [m.event for m in mine].count("start") == len(digit.strokes)
        assert sum(len(m.points) for m in mine) == digit.points


async def test_a_late_joiner_gets_the_whole_room_then_the_live_stream(
    aiohttp_client: MakeClient,
) -> None:
    _, url = await start(aiohttp_client)
    digit = unipen_digits()[12]
    async with clients(url, 3, top_k=2) as (a, b, late):
        await draw(a, digit.strokes)
        shared = await a.share()
        await b.join(shared.room, shared.draw_token)
        await b.start_stroke([[5, 5], [6, 6]])  # left open
        await until(a, StrokeEvent, event="start")
        joined = await late.join(shared.room, shared.watch_token)
        assert joined.role == "watch" and joined.room == shared.room
        assert [s.author for s in joined.strokes] == [a.welcome.session] * len(digit.strokes) + [  # type: ignore[union-attr]
            b.welcome.session  # type: ignore[union-attr]
        ]
        assert [s.open for s in joined.strokes] == [False] * len(digit.strokes) + [True]
        assert [len(s.points) for s in joined.strokes[:-1]] == [len(s) for s in digit.strokes]
        first = await until(late, Prediction)
        assert first.strokes == len(digit.strokes) + 1 and len(first.top) == 2
        await b.points([[7, 7]])
        event = await until(late, StrokeEvent)
        assert (event.event, event.author, event.points) == (
            "points",
            b.welcome.session,
            ((7.0, 7.0),),
        )  # type: ignore[union-attr]
        await b.end_stroke()
        final = await late.recognize()
        assert final.final and final.strokes == len(digit.strokes) + 1


async def test_the_shared_ink_is_recognized_like_a_solo_drawing(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client)
    digit = unipen_digits()[20]
    async with clients(url, 2) as (a, w):
        shared = await a.share()
        await w.join(shared.room, shared.watch_token)
        await draw(a, digit.strokes)
        assert (await a.recognize()).top[0].digit == digit.expected
        assert (await w.recognize()).top[0].digit == digit.expected
        await a.clear()
        await draw(a, unipen_rejects("#")[0].strokes)
        assert (await a.recognize()).verdict == (await w.recognize()).verdict == "not_digit"


async def test_a_final_answer_reaches_every_member(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client)
    digit = unipen_digits()[20]
    async with clients(url, 3) as (a, b, w):
        shared = await a.share()
        await b.join(shared.room, shared.draw_token)
        await w.join(shared.room, shared.watch_token)
        await draw(a, digit.strokes)
        await a.ping()  # a's ink is in the room (through Redis it is not there on arrival)
        mine = await b.recognize()
        assert mine.final and mine.seq is not None and mine.strokes == len(digit.strokes)
        for other in (a, w):
            theirs = await until(other, Prediction, final=True)
            assert theirs.seq is None  # it answers no message of theirs
            assert (theirs.top[0], theirs.strokes) == (mine.top[0], mine.strokes)


async def test_a_watcher_cannot_draw_undo_or_clear(aiohttp_client: MakeClient) -> None:
    server, url = await start(aiohttp_client)
    app = server.app
    async with clients(url, 2) as (a, w):
        await draw(a, [[[0, 0], [0, 40]]])
        shared = await a.share()
        await w.join(shared.room, shared.watch_token)
        (await drain(app, a))[0]
        for seq in (await w.start_stroke([[1, 1]]), await w.undo(), await w.clear()):
            err = await until(w, Error)
            assert (err.code, err.seq) == ("watch_only", seq)
        assert [m for m in (await drain(app, a))[0] if not isinstance(m, Prediction)] == []
        assert (await w.recognize()).strokes == 1  # watching still reads the answer
        await w.points([[2, 2]])
        assert (await until(w, Error)).code == "watch_only"


async def test_wrong_tokens_and_unknown_rooms_get_the_same_refusal(
    aiohttp_client: MakeClient,
) -> None:
    server, url = await start(aiohttp_client)
    app = server.app
    digit = unipen_digits()[8]
    async with clients(url, 2) as (a, b):
        shared = await a.share()
        refusals = []
        for room, token in (
            (shared.room, "wrong"),
            ("no-such-room", shared.draw_token),
            (shared.room, shared.draw_token[:-1]),
            ("no-such-room", "wrong"),
        ):
            with pytest.raises(JoinRefused) as info:
                await b.join(room, token)
            refusals.append((info.value.code, info.value.message))
        assert len(set(refusals)) == 1 and refusals[0][0] == "room_refused"
        assert b.room is None
        assert (await b.draw(digit.strokes, point_interval=0)).top[0].digit == digit.expected  # type: ignore[union-attr]
        assert [m for m in (await drain(app, a))[0] if isinstance(m, Presence | StrokeEvent)] == []


async def test_misplaced_room_messages_get_named_errors(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client)
    async with clients(url, 2) as (a, b), aiohttp.ClientSession() as http:
        with pytest.raises(ServerError) as info:
            await a.leave()
        assert info.value.code == "not_in_room"
        shared = await a.share()
        for call in (a.share(), a.join(shared.room, shared.draw_token)):
            with pytest.raises(ServerError) as info:
                await call
            assert info.value.code == "already_in_room"
        await b.join(shared.room, shared.draw_token)
        await b.points([[1, 1]])
        assert (await until(b, Error)).code == "no_stroke"
        ws = await http.ws_connect(url)
        await ws.send_str(json.dumps({"type": "join", "room": "r", "token": "t"}))
        assert json.loads((await ws.receive()).data)["code"] == "hello_first"
        await ws.close()
        ws = await http.ws_connect(url)
        await ws.send_str(json.dumps({"type": "hello", "version": 1}))
        await ws.receive()
        for frame, code in (
            ({"type": "join", "room": shared.room, "seq": 4}, "bad_message"),
            ({"type": "join", "room": shared.room, "token": 7, "seq": 5}, "bad_message"),
            ({"type": "leave", "seq": 6}, "not_in_room"),
        ):
            await ws.send_str(json.dumps(frame))
            reply = json.loads((await ws.receive()).data)
            assert (reply["type"], reply["code"], reply["seq"]) == ("error", code, frame["seq"])
        await ws.send_str(json.dumps({"type": "ping", "seq": 9}))
        assert json.loads((await ws.receive()).data) == {"type": "pong", "seq": 9}
        await ws.close()


async def test_undo_removes_only_your_own_last_stroke_and_clear_clears_all(
    aiohttp_client: MakeClient,
) -> None:
    _, url = await start(aiohttp_client)
    async with clients(url, 3) as (a, b, w):
        shared = await a.share()
        await b.join(shared.room, shared.draw_token)
        await a.start_stroke([[0, 0], [0, 50]])
        await a.end_stroke()
        await until(b, StrokeEvent, event="end")
        await b.start_stroke([[10, 0], [10, 50]])
        await b.end_stroke()
        await until(a, StrokeEvent, event="end")
        await a.undo()
        undone = await until(b, Undone)
        assert (undone.stroke, undone.author) == (1, a.welcome.session)  # type: ignore[union-attr]
        assert (await until(a, Undone)) == undone  # the author hears it too
        await a.undo()  # nothing of a's is left: no event, no change
        joined = await w.join(shared.room, shared.watch_token)
        assert [(s.id, s.author) for s in joined.strokes] == [(2, b.welcome.session)]  # type: ignore[union-attr]
        await a.clear()
        cleared = await until(w, Cleared)
        assert cleared == Cleared(shared.room, a.welcome.session)  # type: ignore[union-attr]
        assert (await until(w, Prediction, empty=True)).strokes == 0
        assert (await w.recognize()).empty


async def test_room_limits_are_announced_and_enforced(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client, max_members_per_room=2, max_rooms=1)
    async with clients(url, 4) as (a, b, c, d):
        limits = a.welcome.limits  # type: ignore[union-attr]
        assert (limits.max_members_per_room, limits.max_rooms) == (2, 1)
        assert limits.room_empty_ttl_s == 300.0 and limits.resume_grace_s == 60.0
        shared = await a.share()
        await b.join(shared.room, shared.watch_token)
        with pytest.raises(JoinRefused) as info:
            await c.join(shared.room, shared.watch_token)
        assert info.value.code == "room_full"
        with pytest.raises(ServerError) as info2:
            await d.share()
        assert info2.value.code == "too_many_rooms"
        await b.leave()
        await c.join(shared.room, shared.draw_token)  # a place became free


async def test_rooms_per_client_address_are_limited(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client, max_rooms_per_client=1)
    async with clients(url, 2) as (a, b):  # both from 127.0.0.1
        await a.share()
        with pytest.raises(ServerError) as info:
            await b.share()
        assert info.value.code == "too_many_rooms" and "one address" in info.value.message


async def test_leaving_keeps_a_copy_and_tells_the_others(aiohttp_client: MakeClient) -> None:
    server, url = await start(aiohttp_client)
    app = server.app
    digit = unipen_digits()[16]
    async with clients(url, 2) as (a, b):
        await draw(a, digit.strokes)
        shared = await a.share()
        await b.join(shared.room, shared.draw_token)
        left = await b.leave()
        assert left.room == shared.room and b.room is None
        presence = await until(a, Presence, event="left")
        assert (presence.member, presence.role) == (b.welcome.session, "draw")  # type: ignore[union-attr]
        mine = await until(b, Prediction, seq=left.seq)
        assert mine.strokes == len(digit.strokes) and mine.top[0].digit == digit.expected
        await b.start_stroke([[0, 0], [5, 5]])  # on b's own canvas now
        assert (await until(b, Prediction)).strokes == len(digit.strokes) + 1
        assert [m for m in (await drain(app, a))[0] if isinstance(m, StrokeEvent)] == []


async def test_an_empty_room_expires_after_its_ttl(aiohttp_client: MakeClient) -> None:
    server, url = await start(aiohttp_client, room_empty_ttl_s=300.0)
    clock = hub_clock(server.app)
    async with clients(url, 2) as (a, b):
        shared = await a.share()
        await a.leave()
        clock.now += 299.9
        await b.join(shared.room, shared.watch_token)  # empty, not expired: it still works
        await b.leave()
        clock.now += 300.0
        with pytest.raises(JoinRefused) as info:
            await b.join(shared.room, shared.draw_token)
        assert info.value.code == "room_refused"


# ---- resume -------------------------------------------------------------------------------------


async def test_resume_within_the_grace_period_keeps_the_session(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client)
    digit = unipen_digits()[24]
    async with connect(url) as c:
        await draw(c, digit.strokes)
        await c.recognize()
        assert c.welcome is not None
        session, token = c.welcome.session, c.welcome.resume_token
    async with connect(url, resume=token) as c:
        welcome = c.welcome
        assert welcome is not None and welcome.resumed and welcome.resume_error is None
        assert welcome.session == session and welcome.resume_token != token
        assert (welcome.strokes, welcome.points) == (len(digit.strokes), digit.points)
        first = await until(c, Prediction)
        assert first.strokes == len(digit.strokes) and first.top[0].digit == digit.expected
        seq = await c.start_stroke([[0, 0], [1, 1]])
        assert (await until(c, Prediction, seq=seq)).strokes == len(digit.strokes) + 1
    async with connect(url, resume=token) as c:  # a token works once
        assert c.welcome is not None and c.welcome.resume_error == "resume_unknown"


async def test_after_the_grace_period_the_client_is_told_it_is_gone(
    aiohttp_client: MakeClient,
) -> None:
    server, url = await start(aiohttp_client, resume_grace_s=60.0)
    clock, parked = hub_clock(server.app), server.app[HUB].parked
    async with connect(url) as c:
        await c.start_stroke([[0, 0], [0, 40]])
        assert c.welcome is not None
        session, token = c.welcome.session, c.welcome.resume_token
    hub = server.app[HUB]
    await stepped(lambda: len(parked) == 1 and not hub.busy)  # the server saw it end
    clock.now += 60.0
    async with connect(url, resume=token) as c:
        welcome = c.welcome
        assert welcome is not None and not welcome.resumed
        assert welcome.resume_error == "resume_expired" and welcome.session != session
        assert (welcome.strokes, welcome.points) == (0, 0)
        assert (await c.recognize()).empty
    async with connect(url, resume="never-issued") as c:
        assert c.welcome is not None and c.welcome.resume_error == "resume_unknown"


async def test_a_dropped_member_resumes_into_its_room(aiohttp_client: MakeClient) -> None:
    server, url = await start(aiohttp_client)
    app = server.app
    async with clients(url, 1) as (a,):
        shared = await a.share()
        b = await DigitsClient.open(url)
        await b.join(shared.room, shared.draw_token)
        await b.start_stroke([[0, 0], [0, 30]])  # open when the connection drops
        assert b.welcome is not None
        token = b.welcome.resume_token
        await b._ws.close()  # the network goes: no leave
        await b.close()
        ended = await until(a, StrokeEvent, event="end")
        assert ended.author == b.welcome.session
        async with connect(url, resume=token) as b2:
            assert b2.welcome is not None and b2.welcome.resumed
            joined = await until(b2, Joined)
            assert joined.room == shared.room and joined.role == "draw" and joined.seq is None
            assert [(s.author, s.open) for s in joined.strokes] == [(b.welcome.session, False)]
            assert (await until(b2, Prediction)).strokes == 1
            await b2.start_stroke([[5, 5]])
            assert (await until(a, StrokeEvent, event="start")).author == b.welcome.session
        presences = [m for m in (await drain(app, a))[0] if isinstance(m, Presence)]
        assert presences == []  # parked, not gone: nobody was told it left


async def test_a_member_gone_past_the_grace_period_leaves_its_room(
    aiohttp_client: MakeClient,
) -> None:
    server, url = await start(aiohttp_client, resume_grace_s=60.0)
    clock, hub = hub_clock(server.app), server.app[HUB]
    async with clients(url, 1) as (a,):
        shared = await a.share()
        b = await DigitsClient.open(url)
        await b.join(shared.room, shared.watch_token)
        assert b.welcome is not None
        await b.close()
        await stepped(lambda: len(hub.parked) == 1 and not hub.busy)
        clock.now += 60.0
        await hub.expire()  # what the sweeper does every second
        presence = await until(a, Presence, event="left")
        assert (presence.member, presence.role) == (b.welcome.session, "watch")


async def test_the_shared_canvas_keeps_the_session_ink_limits(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client, max_strokes_per_session=2, max_points_per_session=5)
    async with clients(url, 2) as (a, b):
        shared = await a.share()
        await b.join(shared.room, shared.draw_token)
        await a.start_stroke([[0, 0], [1, 1]])
        await b.start_stroke([[5, 5]])
        await until(a, StrokeEvent, author=b.welcome.session)  # type: ignore[union-attr]
        seq = await a.start_stroke([[2, 2]])  # a third stroke
        err = await until(a, Error)
        assert (err.code, err.seq) == ("too_many_strokes", seq)
        seq = await b.points([[6, 6], [7, 7], [8, 8]])  # 6 points in all
        err = await until(b, Error)
        assert (err.code, err.seq) == ("too_many_points", seq)
        await b.points([[6, 6], [7, 7]])  # exactly 5: fine
        assert (await b.recognize()).strokes == 2


async def test_an_empty_resume_token_is_unknown(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client)
    async with connect(url, resume="") as c:
        assert c.welcome is not None and c.welcome.resume_error == "resume_unknown"
        assert (await c.draw([[[0, 0], [0, 40]]], point_interval=0)) is not None


async def test_a_member_that_stops_reading_is_dropped_and_never_holds_up_the_room(
    aiohttp_client: MakeClient,
) -> None:
    _, url = await start(aiohttp_client)
    stroke = [[123.456789 + i, 234.567891 + i] for i in range(500)]  # about 12 kB a message
    async with clients(url, 1) as (a,), aiohttp.ClientSession() as http:
        shared = await a.share()
        slow = await http.ws_connect(url)  # joins, then never reads again
        await slow.send_str(json.dumps({"type": "hello", "version": 1}))
        join = {"type": "join", "room": shared.room, "token": shared.watch_token}
        await slow.send_str(json.dumps(join))
        await until(a, Presence, event="joined")
        async with asyncio.timeout(180):  # a guard: through Redis each message is a round trip
            for i in range(1500):  # some 18 MB for the slow member: more than sockets buffer
                if i % 39 == 0:
                    await a.clear()
                await a.start_stroke(stroke)
            assert (await a.recognize(wait_s=180)).strokes == 1500 % 39
        frames = []
        async with asyncio.timeout(30):
            async for frame in slow:
                frames.append(frame)
        last = json.loads(frames[-1].data)
        assert (last["type"], last["code"]) == ("error", "too_slow")
        assert slow.close_code == 1008
        async with connect(url, resume="") as other:  # the server is fine
            assert other.welcome is not None


async def test_a_member_whose_socket_is_full_never_delays_the_others(
    aiohttp_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The room's fan-out does not wait for its slowest member: with a member that never
    reads behind a small socket, room for 400 kB waiting for it, and a write allowed to wait
    a minute for it, every other member gets each stroke at once until that member is closed
    (too_slow). (Before the outbox, the write that reached aiohttp's flow control, every
    256 KiB written, waited for that member and held up the room.)"""
    monkeypatch.setattr(server.connection, "WRITE_S", 60.0)
    client, url = await start(aiohttp_client, send_buffer_bytes=400_000)
    app = client.app
    stroke = [[700 + i % 50, 900 + i // 50] for i in range(500)]  # 3.5 kB a message
    async with clients(url, 2) as (a, c):
        shared = await a.share()
        await c.join(shared.room, shared.watch_token)
        stubborn = await StubbornSocket.open(str(client.host), int(client.port))
        await stubborn.send({"type": "hello", "version": 1})
        await stubborn.send({"type": "join", "room": shared.room, "token": shared.watch_token})
        await until(c, Presence, event="joined")
        known = {x.welcome.session for x in (a, c) if x.welcome is not None}
        (slow,) = [conn for conn in app[CONNECTIONS] if conn.session.member not in known]
        narrow(slow)
        strokes = 0
        while slow.open:
            strokes += 1
            assert strokes < 1000  # a guard: its buffers take less than a few hundred
            if strokes % 30 == 0:
                await a.clear()  # within max_points_per_session
            await a.start_stroke(stroke)
            await until(c, StrokeEvent, event="start")  # at once, not after WRITE_S
        data = await stubborn.read_all(until=b"too_slow")
        assert strokes > 3
        assert b"\xa4code\xa8too_slow" in data
        stubborn.sock.close()


async def test_integer_points_stay_integers_in_stroke_and_joined(
    aiohttp_client: MakeClient,
) -> None:
    """Protocol bug 5, for the room messages (bbox: test_ws.py)."""
    _, url = await start(aiohttp_client)
    async with clients(url, 3) as (a, b, c):
        await a.start_stroke([[1, 2], [3.5, 4]])
        shared = await a.share()
        joined = await b.join(shared.room, shared.watch_token)
        assert joined.strokes[0].points == ((1, 2), (3.5, 4))
        assert [type(v) for v in joined.strokes[0].points[0]] == [int, int]
        await a.start_stroke([[7, 8, 1700000000000]])
        event = await until(b, StrokeEvent, event="start")
        assert [type(v) for v in event.points[0]] == [int, int, int]
        later = await c.join(shared.room, shared.draw_token)
        assert [type(v) for v in later.strokes[1].points[0]] == [int, int, int]
