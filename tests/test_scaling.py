"""Many processes on one Redis (server/store_redis.py), end to end: real server processes
(`python -m server --redis ...`), a real redis-server, real WebSocket clients, the real model.
Members on different processes see one order and the same predictions; sessions survive the
death (SIGKILL) or restart (SIGTERM) of their process; Redis going away stops only rooms."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest
import redis

from client import ConnectionClosed, DigitsClient, JoinRefused, Prediction, ServerError, connect
from protocol import Joined, Presence, ServerMessage, StrokeEvent
from server.hub import COMPACT_AFTER
from tests.rediskit import Nginx, RedisServer, ServerProcess, new_prefix
from tests.serverkit import draw, metric, unipen_digits, until

pytestmark = pytest.mark.asyncio


async def readiness(url: str) -> dict[str, Any]:
    """/readyz of a server process: still 200 (ready) whatever its store says."""
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        assert body["store"] == "redis"
        return body


async def store_reachable_becomes(url: str, reachable: bool) -> None:
    """Until /readyz says `store_reachable` is `reachable` (its follower noticed)."""
    async with asyncio.timeout(10):
        while (await readiness(url))["store_reachable"] is not reachable:  # noqa: ASYNC110 -- another process
            await asyncio.sleep(0.05)


def servers(redis_url: str, n: int, *args: str, prefix: str = "") -> list[ServerProcess]:
    prefix = prefix or new_prefix()
    procs = [ServerProcess("--redis", redis_url, "--redis-prefix", prefix, *args) for _ in range(n)]
    for proc in procs:
        proc.start()
    return procs


@contextlib.contextmanager
def two_on(
    redis_url: str, *args: str
) -> Iterator[tuple[ServerProcess, ServerProcess, redis.Redis, str]]:
    """Two server processes on one Redis under a new prefix, and a client of that Redis."""
    prefix = new_prefix()
    one, other = servers(redis_url, 2, *args, prefix=prefix)
    store = redis.Redis.from_url(redis_url)
    try:
        yield one, other, store, prefix
    finally:
        store.close()
        one.stop()
        other.stop()


@pytest.fixture
def two(redis_server: RedisServer) -> Iterator[list[ServerProcess]]:
    """Two server processes on one Redis."""
    procs = servers(redis_server.url, 2)
    yield procs
    for proc in procs:
        proc.stop()


async def strokes_until(c: DigitsClient, ends: int) -> list[tuple[Any, ...]]:
    """The stroke events `c` receives up to the `ends`-th end."""
    seen: list[tuple[Any, ...]] = []
    async with asyncio.timeout(30):
        while sum(e[0] == "end" for e in seen) < ends:
            msg: ServerMessage = await c.receive()
            if isinstance(msg, StrokeEvent):
                seen.append((msg.event, msg.stroke, msg.author, msg.points))
    return seen


async def resume_when_ready(url: str, token: str) -> DigitsClient:
    """Resume with `token`; while the dead process's lease runs, the store answers
    resume_unavailable (try again), which a reconnecting client does."""
    async with asyncio.timeout(20):
        while True:
            c = await DigitsClient.open(url, resume=token)
            assert c.welcome is not None
            if c.welcome.resumed:
                return c
            assert c.welcome.resume_error == "resume_unavailable"
            await c.close()
            await asyncio.sleep(0.2)  # the other process's lease is a clock: poll it


async def heard(c: DigitsClient, ends: int = 0) -> list[tuple[Any, ...]]:
    """The stroke events and predictions (of ink) `c` receives, in order, up to the
    `ends`-th end or, with `ends` 0, up to the first final answer."""
    seen: list[tuple[Any, ...]] = []

    def done() -> bool:
        if ends:
            return sum(e[0] == "end" for e in seen) >= ends
        return bool(seen) and seen[-1][0] == "prediction" and seen[-1][1] is True

    async with asyncio.timeout(30):
        while not done():
            msg: ServerMessage = await c.receive()
            if isinstance(msg, StrokeEvent):
                seen.append((msg.event, msg.stroke, msg.author, msg.points))
            elif isinstance(msg, Prediction) and msg.strokes:
                seen.append(("prediction", msg.final, msg.strokes, msg.top, msg.bbox, msg.input))
    return seen


async def inferred(proc: ServerProcess) -> float:
    """Images the process's model has been run on."""
    async with aiohttp.ClientSession() as http:
        text = await (await http.get(f"http://127.0.0.1:{proc.port}/metrics")).text()
    return metric(text, "digits_batch_size_sum")


async def test_members_on_two_processes_see_one_order_and_the_same_predictions(
    redis_server: RedisServer,
) -> None:
    """Unpaced rooms (--room-predictions-per-second 0): many live answers to compare."""
    with contextlib.ExitStack() as stack:
        one, other = servers(redis_server.url, 2, "--room-predictions-per-second", "0")
        for proc in (one, other):
            stack.callback(proc.stop)
        await _one_order_and_the_same_predictions(one, other)


async def _one_order_and_the_same_predictions(one: ServerProcess, other: ServerProcess) -> None:
    first, second = unipen_digits()[3], unipen_digits()[17]
    async with connect(one.url) as a:
        shared = await a.share()  # `one` is the room's predictor: the room began there
        async with (
            connect(other.url) as b,
            connect(one.url, preview=True) as watch_one,
            connect(other.url, preview=True) as watch_other,
        ):
            await b.join(shared.room, shared.draw_token)
            await watch_one.join(shared.room, shared.watch_token)
            await watch_other.join(shared.room, shared.watch_token)
            await asyncio.gather(draw(a, first.strokes), draw(b, second.strokes))
            ends = len(first.strokes) + len(second.strokes)
            seen_one = await heard(watch_one, ends)
            seen_other = await heard(watch_other, ends)
            strokes = [e for e in seen_one if e[0] != "prediction"]
            assert strokes == [e for e in seen_other if e[0] != "prediction"]  # one total order
            authors = {author for _, _, author, _ in strokes}
            assert authors == {a.welcome.session, b.welcome.session}  # type: ignore[union-attr]
            await a.recognize()  # published by `one` after every live answer before it
            seen_one += await heard(watch_one)
            seen_other += await heard(watch_other)
            answers = [e for e in seen_one if e[0] == "prediction"]
            assert len(answers) > 1 and answers[-1][2] == ends
            assert answers == [e for e in seen_other if e[0] == "prediction"]  # bit for bit
            assert await inferred(other) == 0  # it forwarded `one`'s answers, never predicted
            p_one, p_other = await watch_one.recognize(), await watch_other.recognize()
            assert p_one.strokes == p_other.strokes == ends and p_one.input == p_other.input
            assert p_one.top == p_other.top and p_one.bbox == p_other.bbox  # bit for bit
            async with connect(other.url) as late:  # the predictor predicts for a joiner
                await late.join(shared.room, shared.watch_token)
                ink = p_one.input
                live_one = await until(watch_one, Prediction, final=False, input=ink)
                live_other = await until(watch_other, Prediction, final=False, input=ink)
            assert live_one.top == live_other.top == p_one.top


async def test_another_process_takes_over_predicting_when_the_predictor_is_killed(
    two: list[ServerProcess],
) -> None:
    one, other = two
    digit = unipen_digits()[6]
    a = await DigitsClient.open(one.url)
    shared = await a.share()  # `one` predicts the room
    async with connect(other.url) as b, connect(other.url) as watcher:
        await b.join(shared.room, shared.draw_token)
        await watcher.join(shared.room, shared.watch_token)
        one.signal(signal.SIGKILL)
        one.wait()
        await a.close()
        before = await inferred(other)
        await draw(b, digit.strokes)
        n = len(digit.strokes)
        live = await until(watcher, Prediction, final=False, strokes=n)  # once `other` took over
        assert await inferred(other) > before
        final = await b.recognize()
        assert final.strokes == n and final.top[0].digit == digit.expected
        shown = await until(watcher, Prediction, final=True)  # b's final, made on `other`
        assert (shown.top, shown.strokes, live.strokes) == (final.top, n, n)


async def test_a_member_resumes_on_another_process_after_sigkill(
    two: list[ServerProcess],
) -> None:
    one, other = two
    digit = unipen_digits()[5]
    a = await DigitsClient.open(one.url)
    shared = await a.share()
    await draw(a, digit.strokes)
    await a.start_stroke([[1, 1], [2, 2]])  # open when its process dies
    await a.ping()  # its process has handled (and logged) everything before
    assert a.welcome is not None
    member, token = a.welcome.session, a.welcome.resume_token
    async with connect(other.url) as b:
        joined = await b.join(shared.room, shared.watch_token)
        assert len(joined.strokes) == len(digit.strokes) + 1
        one.signal(signal.SIGKILL)
        one.wait()
        await a.close()
        a2 = await resume_when_ready(other.url, token)
        try:
            assert a2.welcome is not None and a2.welcome.session == member
            state = await until(a2, Joined)
            assert state.room == shared.room and state.role == "draw"
            assert [s.points for s in state.strokes[: len(digit.strokes)]] == [
                tuple(tuple(p) for p in s) for s in digit.strokes
            ]
            await a2.start_stroke([[9, 9]])
            event = await until(b, StrokeEvent, event="start", points=((9, 9),))
            assert event.author == member
            assert (await b.recognize()).strokes == len(digit.strokes) + 2
        finally:
            await a2.close()
        left = [m for m in await drain(b) if isinstance(m, Presence) and m.event == "left"]
        assert left == []  # it never left the room


async def drain(c: DigitsClient) -> list[ServerMessage]:
    await c.ping()
    out = []
    while not c._inbox.empty():
        out.append(c._inbox.get_nowait())
    return out


async def test_sigterm_closes_with_1012_and_the_session_resumes_elsewhere(
    two: list[ServerProcess],
) -> None:
    one, other = two
    digit = unipen_digits()[8]
    a = await DigitsClient.open(one.url)
    await draw(a, digit.strokes)
    assert (await a.recognize()).top[0].digit == digit.expected
    assert a.welcome is not None
    token = a.welcome.resume_token
    one.signal(signal.SIGTERM)
    with pytest.raises(Exception):  # noqa: B017 -- the connection ends, whatever the client says
        while True:
            await a.receive()
    assert a.close_code == 1012
    assert one.wait() == 0
    await a.close()
    async with connect(other.url, resume=token) as a2:
        assert a2.welcome is not None and a2.welcome.resumed
        assert (a2.welcome.strokes, a2.welcome.points) == (len(digit.strokes), digit.points)
        assert (await a2.recognize()).top[0].digit == digit.expected


async def test_without_redis_solo_drawing_goes_on_and_rooms_answer_unavailable(
    own_redis: RedisServer,
) -> None:
    prefix = new_prefix()
    one, other = servers(own_redis.url, 2, prefix=prefix)
    digit = unipen_digits()[12]
    store = redis.Redis.from_url(own_redis.url)
    try:
        async with connect(one.url) as a:
            shared = await a.share()
            async with connect(other.url) as b:
                assert b.welcome is not None
                token = b.welcome.resume_token
            async with asyncio.timeout(10):  # its process has recorded it parked
                while not store.zcard(prefix + "parked"):  # noqa: ASYNC110 -- another process
                    await asyncio.sleep(0.02)
            ready = one.url.replace("ws://", "http://").replace("/ws", "/readyz")
            assert (await readiness(ready))["store_reachable"] is True
            own_redis.stop()
            await store_reachable_becomes(ready, False)
            async with connect(one.url) as c:
                last = await draw(c, digit.strokes)  # solo: live predictions, the model is local
                live = await until(c, Prediction, final=False, seq=last)  # all of its ink
                assert live.top[0].digit == digit.expected
                began = time.monotonic()
                with pytest.raises(ServerError) as refused:
                    await c.share()
                assert refused.value.code == "unavailable"
                with pytest.raises(JoinRefused) as info:
                    await c.join(shared.room, shared.draw_token)
                assert info.value.code == "unavailable"
                assert time.monotonic() - began < 3.0  # answered, not hung
            async with connect(one.url, resume=token) as d:
                assert d.welcome is not None and d.welcome.resume_error == "resume_unavailable"
            own_redis.start()  # the same port and append-only file: nothing was lost
            async with connect(one.url) as e:
                async with asyncio.timeout(20):
                    while True:
                        try:
                            joined = await e.join(shared.room, shared.watch_token)
                            break
                        except JoinRefused as exc:
                            assert exc.code == "unavailable"  # until it reconnects
                            await asyncio.sleep(0.1)
                assert joined.room == shared.room
            async with connect(one.url, resume=token) as d:
                assert d.welcome is not None and d.welcome.resumed
            await store_reachable_becomes(ready, True)  # its follower reads again
        for proc in (one, other):
            assert proc.proc is not None and proc.proc.poll() is None  # nothing crashed
    finally:
        store.close()
        for proc in (one, other):
            proc.stop()


async def test_nginx_in_front_of_two_processes_with_the_documented_configuration(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    procs = servers(redis_server.url, 2)
    proxy = Nginx(tmp_path, [p.port for p in procs]).start()
    digit = unipen_digits()[30]
    members: list[DigitsClient] = []
    try:
        members = [await DigitsClient.open(proxy.url) for _ in range(4)]
        a = members[0]
        shared = await a.share()
        for c in members[1:]:
            await c.join(shared.room, shared.draw_token)
        await draw(a, digit.strokes)
        for c in members[1:]:
            seen = await strokes_until(c, len(digit.strokes))
            assert {author for _, _, author, _ in seen} == {a.welcome.session}  # type: ignore[union-attr]
        finals = [await c.recognize() for c in members]
        assert all(f.top == finals[0].top for f in finals)
        assert finals[0].top[0].digit == digit.expected
        page = f"http://127.0.0.1:{proxy.port}"
        async with aiohttp.ClientSession() as http:  # the page's own origin passes the proxy
            async with http.ws_connect(proxy.url, origin=page) as ws:
                await ws.send_str('{"type": "hello", "version": 1}')
                assert "welcome" in (await ws.receive_str())
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(proxy.url, origin="http://evil.example")
            assert refused.value.status == 403
        procs[0].signal(signal.SIGKILL)
        procs[0].wait()
        dropped = []
        for c in members:
            try:
                await c.ping(wait_s=5)
            except ConnectionClosed:
                dropped.append(c)
        assert 0 < len(dropped) < len(members)  # nginx spread them over both processes
        for c in dropped:
            assert c.welcome is not None
            again = await resume_when_ready(proxy.url, c.welcome.resume_token)
            members.append(again)
            state = await until(again, Joined)
            assert state.room == shared.room and len(state.strokes) == len(digit.strokes)
    finally:
        for c in members:
            await c.close()
        proxy.stop()
        for proc in procs:
            proc.stop()


async def test_a_rolling_restart_behind_nginx_loses_nobody(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A deploy restarts the processes one after the other (SIGTERM, start again on the same
    port). Through docs/SCALING.md's nginx every client resumes each time, and a new
    connection made while the second process is down reaches the first, restarted a moment
    earlier (nginx's default would still count it as failed, and answer 502)."""
    procs = servers(redis_server.url, 2, "--trusted-proxies", "127.0.0.1/32")
    proxy = Nginx(tmp_path, [p.port for p in procs]).start()
    digit = unipen_digits()[3]
    try:
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(connect(proxy.url)) for _ in range(6)]
            for c in clients:
                await draw(c, digit.strokes[:1])
            for c in clients:  # the stroke is on the server, ended: a restart keeps it whole
                await c.ping()  # (a stroke still arriving when its process stops is split)
            for proc in procs:
                proc.signal(signal.SIGTERM)
                assert proc.wait() == 0
                async with connect(proxy.url, reconnect=False) as fresh:  # no 502: another is up
                    await fresh.ping()
                proc.start()
            for c in clients:
                await draw(c, digit.strokes[1:])
                final = await c.recognize()
                assert final.strokes == len(digit.strokes) and c.reconnects >= 1
                assert c.welcome is not None and c.welcome.resumed
    finally:
        proxy.stop()
        for proc in procs:
            proc.stop()


async def test_more_than_one_worker_needs_redis() -> None:
    done = subprocess.run(  # noqa: ASYNC221 -- the test has nothing else to do meanwhile
        [sys.executable, "-m", "server", "--workers", "2"], capture_output=True, timeout=60
    )
    assert done.returncode != 0
    assert b"--workers above 1 needs --redis" in done.stderr


async def test_workers_that_cannot_listen_stop_the_supervisor(redis_server: RedisServer) -> None:
    """A port held by another program: each worker says why and exits; after three quick
    exits in a row the supervisor stops them all and exits 1 instead of retrying forever."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(  # noqa: ASYNC221 -- the test has nothing else to do meanwhile
            [sys.executable, "-m", "server", "--workers", "2", "--port", str(port),
             "--redis", redis_server.url, "--redis-prefix", new_prefix()],
            capture_output=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}".encode() in done.stderr
    assert b"exited 3 times in a row" in done.stderr


async def test_two_workers_serve_one_port_and_share_its_rooms(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    server = ServerProcess(
        "--workers", "2", "--redis", redis_server.url, "--redis-prefix", new_prefix(), log=log
    ).start()
    members: list[DigitsClient] = []
    try:
        async with asyncio.timeout(60):  # both workers have started (another process: poll)
            while len(re.findall(r"\[(\d+)\]: listening on", log.read_text())) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        pids = set(re.findall(r"\[(\d+)\]: listening on", log.read_text()))
        assert len(pids) == 2 and f":{server.port} " in log.read_text()
        os.kill(int(min(pids)), signal.SIGKILL)  # a worker dies: it is started again
        async with asyncio.timeout(60):
            while len(re.findall(r"\[(\d+)\]: listening on", log.read_text())) < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert "exited (-9); starting it again" in log.read_text()
        digit = unipen_digits()[21]
        members = [await DigitsClient.open(server.url) for _ in range(6)]
        shared = await members[0].share()
        for c in members[1:]:
            await c.join(shared.room, shared.watch_token)
        await draw(members[0], digit.strokes)
        for c in members[1:]:
            assert len(await strokes_until(c, len(digit.strokes))) > 0
            assert (await c.recognize()).top[0].digit == digit.expected
        server.signal(signal.SIGTERM)  # every worker closes its sockets with 1012
        for c in members:
            with pytest.raises(ConnectionClosed):
                while True:
                    await c.receive()
            assert c.close_code == 1012
        assert server.wait() == 0
    finally:
        for c in members:
            await c.close()
        server.stop()


async def connections(proc: ServerProcess) -> float:
    async with aiohttp.ClientSession() as http:
        text = await (await http.get(f"http://127.0.0.1:{proc.port}/metrics")).text()
    return metric(text, "digits_connections")


async def test_the_client_reconnects_and_resumes_when_its_process_is_killed(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    procs = servers(redis_server.url, 2)
    proxy = Nginx(tmp_path, [p.port for p in procs]).start()
    digit = unipen_digits()[33]
    try:
        async with connect(proxy.url) as a:  # reconnects by default
            serving = [p for p in procs if await connections(p) == 1]
            assert len(serving) == 1
            dying, living = serving[0], next(p for p in procs if p is not serving[0])
            shared = await a.share()
            async with connect(living.url) as b:
                await b.join(shared.room, shared.watch_token)
                await draw(a, digit.strokes[:1])
                await a.ping()
                dying.signal(signal.SIGKILL)
                dying.wait()
                await draw(a, [*digit.strokes[1:], [[7, 7], [8, 8]]])  # waits, then goes on
                final = await a.recognize()
                assert a.reconnects == 1 and a.welcome is not None and a.welcome.resumed
                assert final.strokes == len(digit.strokes) + 1
                seen = await strokes_until(b, len(digit.strokes) + 1)
                assert {author for _, _, author, _ in seen} == {a.welcome.session}
            async with connect(living.url, reconnect=False) as c:
                living.signal(signal.SIGKILL)
                with pytest.raises(ConnectionClosed):
                    await c.recognize()
    finally:
        proxy.stop()
        for proc in procs:
            proc.stop()


async def test_rooms_and_parked_sessions_outlive_every_process(redis_server: RedisServer) -> None:
    prefix = new_prefix()
    (first,) = servers(redis_server.url, 1, prefix=prefix)
    digit = unipen_digits()[27]
    try:
        async with connect(first.url, reconnect=False) as a:
            shared = await a.share()
            await draw(a, digit.strokes)
            await a.ping()
            async with connect(first.url, reconnect=False) as solo:
                await draw(solo, digit.strokes)
                assert (await solo.recognize()).strokes == len(digit.strokes)
                assert solo.welcome is not None
                token = solo.welcome.resume_token
        first.signal(signal.SIGTERM)
        assert first.wait() == 0
    finally:
        first.stop()
    (second,) = servers(redis_server.url, 1, prefix=prefix)  # a new process, nothing in memory
    try:
        async with connect(second.url) as b:
            joined = await b.join(shared.room, shared.watch_token)
            assert len(joined.strokes) == len(digit.strokes)
            assert (await b.recognize()).top[0].digit == digit.expected
        async with connect(second.url, resume=token) as again:
            assert again.welcome is not None and again.welcome.resumed
            assert again.welcome.strokes == len(digit.strokes)
    finally:
        second.stop()


async def test_room_ink_is_one_log_entry_per_message_and_solo_ink_none(
    own_redis: RedisServer,
) -> None:
    prefix = new_prefix()
    (proc,) = servers(own_redis.url, 1, prefix=prefix)
    store = redis.Redis.from_url(own_redis.url)
    digit = unipen_digits()[9]
    messages = sum(2 + (len(s) - 1 + 3) // 4 for s in digit.strokes)  # as `draw` sends them
    try:
        async with connect(proc.url) as solo, connect(proc.url) as a:
            await draw(solo, digit.strokes)
            await solo.ping()
            assert store.keys(prefix + "log:*") == []  # solo drawing never touches Redis
            shared = await a.share()
            await draw(a, digit.strokes)
            await a.ping()
            assert store.xlen(f"{prefix}log:{shared.room}") == 1 + messages  # the seed, then ink
    finally:
        store.close()
        proc.stop()


async def test_a_password_and_a_database_in_the_url(tmp_path: Path) -> None:
    secured = RedisServer(tmp_path, password="s3cret")
    secured.start()
    prefix = new_prefix()
    url = f"redis://:s3cret@127.0.0.1:{secured.port}/3"
    (proc,) = servers(url, 1, prefix=prefix)
    store = redis.Redis(port=secured.port, password="s3cret", db=3)
    try:
        async with connect(proc.url) as a:
            shared = await a.share()
        assert store.exists(f"{prefix}room:{shared.room}")
        draw_hash = store.hget(f"{prefix}room:{shared.room}", "draw")
        assert draw_hash is not None and shared.draw_token.encode() not in draw_hash  # hashed
    finally:
        store.close()
        proc.stop()
        secured.stop()


async def test_a_rediss_url_with_a_password_a_database_and_a_ca(tmp_path: Path) -> None:
    """Redis over TLS only (no plain-text port), its certificate from a CA that only the URL
    names (`?ssl_ca_certs=`): two processes share a room through it, in database 5."""
    secured = RedisServer(tmp_path, password="s3cret", tls=True)
    secured.start()
    url = secured.url_for(5)
    assert url.startswith("rediss://:s3cret@") and f"ssl_ca_certs={secured.ca}" in url
    prefix = new_prefix()
    one, other = servers(url, 2, prefix=prefix)
    store = redis.Redis.from_url(url)
    digit = unipen_digits()[4]
    try:
        async with connect(one.url) as a, connect(other.url) as b:
            shared = await a.share()
            await b.join(shared.room, shared.draw_token)
            await draw(a, digit.strokes)
            seen = await strokes_until(b, len(digit.strokes))
            assert {author for _, _, author, _ in seen} == {a.welcome.session}  # type: ignore[union-attr]
            per_stroke: dict[int, int] = {}
            for _, stroke, _, points in seen:
                per_stroke[stroke] = per_stroke.get(stroke, 0) + len(points)
            assert list(per_stroke.values()) == [len(s) for s in digit.strokes]  # every point
        assert store.exists(f"{prefix}room:{shared.room}")  # in database 5, over TLS
        assert redis.Redis.from_url(secured.url_for(0)).keys(f"{prefix}*") == []
    finally:
        store.close()
        one.stop()
        other.stop()
        secured.stop()


async def test_members_of_a_killed_process_leave_their_rooms_after_the_grace_period(
    redis_server: RedisServer,
) -> None:
    one, other = servers(redis_server.url, 2, "--resume-grace-s", "1")
    try:
        async with connect(other.url) as watcher:
            a = await DigitsClient.open(one.url)
            shared = await a.share()
            await watcher.join(shared.room, shared.watch_token)
            assert a.welcome is not None
            one.signal(signal.SIGKILL)  # nobody parks its sessions: the survivors notice
            one.wait()
            await a.close()
            left = await until(watcher, Presence, event="left")
            assert (left.member, left.role) == (a.welcome.session, "draw")
    finally:
        one.stop()
        other.stop()


def saved_strokes(solo: bytes | None) -> list[object]:
    return list(msgpack.unpackb(solo)["strokes"]) if solo else []


async def test_a_solo_session_keeps_its_strokes_when_its_process_is_killed(
    redis_server: RedisServer,
) -> None:
    digit = unipen_digits()[14]
    n = len(digit.strokes)
    with two_on(redis_server.url) as (one, other, store, prefix):
        a = await DigitsClient.open(one.url)
        await draw(a, digit.strokes)
        assert (await a.recognize()).top[0].digit == digit.expected
        await a.start_stroke([[5, 5], [6, 6]])  # still being drawn when its process dies
        await a.points([[7, 7]])
        assert a.welcome is not None
        token = a.welcome.resume_token
        key = f"{prefix}session:{hashlib.sha256(token.encode()).hexdigest()}"
        async with asyncio.timeout(10):  # written a moment after `end`; an open stroke later
            while len(saved_strokes(store.hget(key, "solo"))) < n + 1:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        one.signal(signal.SIGKILL)
        one.wait()
        await a.close()
        again = await resume_when_ready(other.url, token)
        try:
            assert again.welcome is not None
            got = (again.welcome.strokes, again.welcome.points)
            assert got == (n + 1, digit.points + 3)
            await again.points([[8, 8]])  # the open stroke goes on
            await again.end_stroke()
            assert (await again.recognize()).strokes == n + 1
        finally:
            await again.close()


async def test_a_long_room_log_is_compacted_and_a_joiner_rebuilds_the_room_from_it(
    redis_server: RedisServer,
) -> None:
    digit = unipen_digits()[2]
    unlimited = ("--messages-per-second", "100000", "--message-burst", "100000")
    with two_on(redis_server.url, *unlimited) as (one, other, store, prefix):
        async with connect(one.url) as a:
            shared = await a.share()
            await a.start_stroke([[0, 0]])
            # One long stroke: two compactions (the second drops what the first stands for).
            for i in range(2 * COMPACT_AFTER + 100):
                await a.points([[i % 200, i // 200]])
            await a.end_stroke()
            await draw(a, digit.strokes)
            await a.ping()
            key = f"{prefix}log:{shared.room}"
            async with asyncio.timeout(10):  # the predictor compacts a moment after
                while store.xlen(key) > COMPACT_AFTER + 300:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            async with connect(other.url) as b:  # `other` has no copy: it replays the log
                joined = await b.join(shared.room, shared.watch_token)
                assert len(joined.strokes) == 1 + len(digit.strokes)
                assert len(joined.strokes[0].points) == 2 * COMPACT_AFTER + 101
                assert [s.points for s in joined.strokes[1:]] == [
                    tuple(tuple(p) for p in s) for s in digit.strokes
                ]
                assert (await b.recognize()).strokes == (await a.recognize()).strokes


async def test_the_rooms_model_work_is_spread_over_the_processes_that_serve_them(
    redis_server: RedisServer,
) -> None:
    digit = unipen_digits()[11]
    with two_on(redis_server.url) as (one, other, store, prefix):
        async with contextlib.AsyncExitStack() as stack:
            sharers = [await stack.enter_async_context(connect(one.url)) for _ in range(4)]
            rooms = [await a.share() for a in sharers]  # `one` predicts all four at first
            for shared in rooms:  # `other` serves a member of every room
                w = await stack.enter_async_context(connect(other.url))
                await w.join(shared.room, shared.watch_token)
            keys = [f"{prefix}pred:{shared.room}" for shared in rooms]
            async with asyncio.timeout(10):  # the claims run every second
                while sorted(Counter(store.mget(keys)).values()) != [2, 2]:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            assert [await inferred(one), await inferred(other)] == [0, 0]  # no ink yet
            await asyncio.gather(*(draw(a, digit.strokes) for a in sharers))
            for a in sharers:  # each sees the live answer of its ink, whoever made it
                await until(a, Prediction, final=False, strokes=len(digit.strokes))
            assert await inferred(one) > 0 and await inferred(other) > 0
