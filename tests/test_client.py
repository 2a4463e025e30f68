"""The client library (client/client.py) against a real server on a loopback port with the
real model: how the server's refusals come out of the library. The protocol itself is
tested in test_ws.py and test_shared.py, the command line in test_cli.py."""

from __future__ import annotations

import pytest

from client import Error, ServerError, connect
from tests.serverkit import MakeClient, start, unipen_digits, until

pytestmark = pytest.mark.asyncio


async def test_a_watchers_draw_raises_watch_only(aiohttp_client: MakeClient, store: str) -> None:
    _, url = await start(aiohttp_client)
    digit = unipen_digits()[3]
    async with connect(url) as owner, connect(url) as watcher:
        before = await owner.draw(digit.strokes, point_interval=0)
        shared = await owner.share()
        await watcher.join(shared.room, shared.watch_token)
        first = watcher.seq + 1
        with pytest.raises(ServerError) as refused:
            await watcher.draw([[[0, 0], [10, 10]]], point_interval=0)
        assert (refused.value.code, refused.value.seq) == ("watch_only", first)
        with pytest.raises(ServerError, match="watch_only"):
            await watcher.draw([[[0, 0], [10, 10]]], point_interval=0, recognize=False)
        assert (await watcher.recognize()).strokes == before.strokes  # nothing was drawn
        await watcher.sync()  # both drawings' refusals were reported: nothing left


async def test_a_draw_with_a_nan_coordinate_raises_bad_number(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client)
    async with connect(url) as c:
        with pytest.raises(ServerError) as refused:
            await c.draw([[[0, 0], [float("nan"), 5], [0, 40]]], point_interval=0)
        assert refused.value.code == "bad_number"
        assert (await c.recognize()).strokes == 1  # the stroke's first point was drawn


async def test_a_refused_points_is_raised_by_sync_once(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client)
    digit = unipen_digits()[0]
    async with connect(url) as c:
        seq = await c.points([[1, 1]])  # no open stroke: sent, not waited for
        error = await until(c, Error)  # the refusal is in the inbox as every message is
        assert (error.code, error.seq) == ("no_stroke", seq)
        final = await c.draw(digit.strokes, point_interval=0)  # its own ink was taken
        assert final is not None and final.top[0].digit == digit.expected
        with pytest.raises(ServerError) as refused:
            await c.sync()
        assert (refused.value.code, refused.value.seq) == ("no_stroke", seq)
        await c.sync()  # reported once
        await c.end_stroke()
        await c.undo()  # accepted ink is not a refusal
        with pytest.raises(ServerError, match="no_stroke"):
            await c.sync()
