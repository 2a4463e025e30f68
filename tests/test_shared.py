"""Shared sessions (rooms) and resumable sessions, end to end: a real server on a loopback
port, real WebSocket clients (the client library and raw sockets), the real model and
UNIPEN digits. server/hub.py wires server/rooms.py (tested alone in test_rooms.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from client import DigitsClient, Prediction
from server.protocol import Error, Presence, ServerMessage, StrokeEvent
from tests.serverkit import MakeClient, start, unipen_digits

pytestmark = pytest.mark.asyncio

QUIET_S = 0.4  # no message for this long: everything sent has arrived


@contextlib.asynccontextmanager
async def clients(url: str, n: int, **kwargs: Any) -> AsyncIterator[list[DigitsClient]]:
    opened = [await DigitsClient.open(url, **kwargs) for _ in range(n)]
    try:
        yield opened
    finally:
        for c in opened:
            await c.close()


async def drain(c: DigitsClient, quiet_s: float = QUIET_S) -> list[ServerMessage]:
    """Every message until none has come for `quiet_s`."""
    out = []
    with contextlib.suppress(TimeoutError):
        while True:
            out.append(await asyncio.wait_for(c.receive(), quiet_s))
    return out


async def until(c: DigitsClient, kind: type, **fields: Any) -> Any:
    """The next message of type `kind` with these field values (others are skipped)."""
    async with asyncio.timeout(10):
        while True:
            msg = await c.receive()
            if isinstance(msg, kind) and all(getattr(msg, k) == v for k, v in fields.items()):
                return msg


def live(messages: list[ServerMessage]) -> list[tuple[Any, ...]]:
    """The live predictions among `messages`, as comparable values."""
    return [
        (m.seq, m.empty, m.top, m.bbox, m.strokes)
        for m in messages
        if isinstance(m, Prediction) and not m.final
    ]


def after(messages: list[ServerMessage], marker: Any) -> list[ServerMessage]:
    return messages[messages.index(marker) + 1 :]


async def draw(c: DigitsClient, strokes: list[list[list[float]]]) -> None:
    for stroke in strokes:
        await c.start_stroke(stroke[:1])
        for i in range(1, len(stroke), 4):
            await c.points(stroke[i : i + 4])
            await asyncio.sleep(0.002)
        await c.end_stroke()


# ---- rooms --------------------------------------------------------------------------------------


async def test_three_members_see_the_same_strokes_and_predictions_in_the_same_order(
    aiohttp_client: MakeClient,
) -> None:
    _, url = await start(aiohttp_client)
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
        heard = await asyncio.gather(drain(a), drain(b), drain(w))
    marker = Presence(shared.room, "joined", ids[2], "watch")
    a_msgs, b_msgs, w_msgs = after(heard[0], marker), after(heard[1], marker), heard[2]
    w_msgs = w_msgs[1:] if isinstance(w_msgs[0], Prediction) else w_msgs  # its own join's
    assert live(a_msgs) == live(b_msgs) == live(w_msgs) != []
    assert all(p.seq is None for p in a_msgs if isinstance(p, Prediction))
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


async def test_a_watcher_cannot_draw_undo_or_clear(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client)
    async with clients(url, 2) as (a, w):
        await draw(a, [[[0, 0], [0, 40]]])
        shared = await a.share()
        await w.join(shared.room, shared.watch_token)
        await drain(a)
        for seq in (await w.start_stroke([[1, 1]]), await w.undo(), await w.clear()):
            err = await until(w, Error)
            assert (err.code, err.seq) == ("watch_only", seq)
        assert [m for m in await drain(a) if not isinstance(m, Prediction)] == []
        assert (await w.recognize()).strokes == 1  # watching still reads the answer
        await w.points([[2, 2]])
        assert (await until(w, Error)).code == "watch_only"
