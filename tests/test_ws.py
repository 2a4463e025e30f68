"""The WebSocket endpoint, end to end: a real server on a loopback port, real WebSocket
clients (the client library and raw aiohttp sockets), the real model and UNIPEN digits."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import aiohttp
import msgpack
import numpy as np
import pytest

from client import ConnectionClosed, DigitsClient, Prediction, ServerError, connect
from protocol import Error, Pong, decode_server
from server.app import CLIENTS, CONNECTIONS, RECOGNIZER
from server.raster import ink_bounds, rasterize
from tests.serverkit import (
    MakeClient,
    StubbornSocket,
    bundled_model,
    metric,
    narrow,
    start,
    stepped,
    unipen_digits,
    unipen_rejects,
    unlimited_session,
)

pytestmark = pytest.mark.asyncio


async def raw_socket(
    http: aiohttp.ClientSession, url: str, hello: bool = True, binary: bool = False
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(url)
    if hello:
        await send(ws, {"type": "hello", "version": 1}, binary)
        assert (await next_message(ws))["type"] == "welcome"
    return ws


async def send(
    ws: aiohttp.ClientWebSocketResponse, obj: dict[str, Any], binary: bool = False
) -> None:
    if binary:
        await ws.send_bytes(msgpack.packb(obj))
    else:
        await ws.send_str(json.dumps(obj))


async def next_message(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    frame = await asyncio.wait_for(ws.receive(), 10)
    if frame.type is aiohttp.WSMsgType.TEXT:
        return json.loads(frame.data)  # type: ignore[no-any-return]
    if frame.type is aiohttp.WSMsgType.BINARY:
        return msgpack.unpackb(frame.data)  # type: ignore[no-any-return]
    if frame.type is aiohttp.WSMsgType.CLOSE:  # the code the server sent
        return {"type": "closed", "code": frame.data}
    return {"type": "closed", "code": ws.close_code}


async def until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        msg = await next_message(ws)
        if msg["type"] in (kind, "closed"):
            return msg


# ---- streaming a digit ------------------------------------------------------------------


async def prediction_for(c: DigitsClient, seq: int) -> Prediction:
    """The next prediction, which must reflect client message `seq`."""
    msg = await c.receive()
    while not isinstance(msg, Prediction):
        msg = await c.receive()
    assert msg.seq == seq
    return msg


@pytest.mark.parametrize("binary", [True, False], ids=["msgpack", "json"])
async def test_a_unipen_digit_streamed_point_by_point(
    aiohttp_client: MakeClient, binary: bool
) -> None:
    _, url = await start(aiohttp_client)
    digit = unipen_digits()[7]
    live: list[Prediction] = []
    async with connect(url, binary=binary) as c:
        for stroke in digit.strokes:  # one point per message; each answered before the next
            live.append(await prediction_for(c, await c.start_stroke(stroke[:1])))
            for point in stroke[1:]:
                live.append(await prediction_for(c, await c.points([point])))
            live.append(await prediction_for(c, await c.end_stroke()))
        final = await c.recognize()
    assert len(live) == digit.points + len(digit.strokes)
    assert all(not p.final and not p.empty for p in live)
    assert [p.strokes for p in live][-1] == len(digit.strokes)
    assert final.final and not final.empty
    assert final.top[0].digit == digit.expected == digit.label
    assert [g.p for g in final.top] == sorted((g.p for g in final.top), reverse=True)
    assert np.allclose([g.p for g in final.top], np.sort(digit.probs)[::-1][:3], atol=1e-3)
    assert final.strokes == len(digit.strokes)
    assert final.bbox == pytest.approx(ink_bounds([np.asarray(s)[:, :2] for s in digit.strokes]))
    assert live[-1].top == final.top  # the last live prediction already saw all the ink


async def test_a_digit_drawn_at_pen_speed_gets_live_predictions(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client)
    digit = unipen_digits()[17]
    live: list[Prediction] = []
    hook = lambda m, _t: live.append(m) if isinstance(m, Prediction) and not m.final else None  # noqa: E731
    async with connect(url, on_message=hook) as c:
        final = await c.draw(digit.strokes, point_interval=0.004, frame_rate=60)
    assert final is not None and final.top[0].digit == digit.expected
    assert live and all(not p.empty for p in live)
    seqs = [p.seq for p in live]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # each newer than the last


@pytest.mark.parametrize("binary", [True, False], ids=["msgpack", "json"])
async def test_letters_get_not_digit_and_digits_get_digit(
    aiohttp_client: MakeClient, binary: bool
) -> None:
    _, url = await start(aiohttp_client)
    live: list[Prediction] = []
    hook = lambda m, _t: live.append(m) if isinstance(m, Prediction) else None  # noqa: E731
    async with connect(url, binary=binary, on_message=hook) as c:
        for letter in unipen_rejects("A#"):
            final = await c.draw(letter.strokes, point_interval=0)
            assert final is not None and final.verdict == "not_digit", letter.char
            await c.clear()
        digit = unipen_digits()[7]
        final = await c.draw(digit.strokes, point_interval=0)
        assert final is not None and final.verdict == "digit"
        assert final.top[0].digit == digit.expected
        await c.clear()
        assert (await c.recognize()).verdict is None  # empty ink: no verdict
    assert {p.verdict for p in live if not p.empty} <= {"digit", "unsure", "not_digit"}


async def test_verdict_thresholds_are_server_settings(aiohttp_client: MakeClient) -> None:
    """The same digit is unsure when the server asks for certainty and not_digit when it
    rejects at a probability below the digit's own P(not a digit)."""
    model = bundled_model()
    digit = next(
        d
        for d in unipen_digits()
        if (s := model.predict_scores(rasterize(d.strokes)[None])).digits.max() < 0.999  # type: ignore[index]
        and s.not_digit[0] > 1e-6
    )
    not_digit = float(model.predict_scores(rasterize(digit.strokes)[None]).not_digit[0])  # type: ignore[index]
    for overrides, expected in (
        ({"reject_at": 1.0, "unsure_below": 1.0}, "unsure"),
        ({"reject_at": not_digit / 2}, "not_digit"),
    ):
        _, url = await start(aiohttp_client, **overrides)
        async with connect(url) as c:
            final = await c.draw(digit.strokes, point_interval=0)
        assert final is not None and final.verdict == expected


async def test_preview_is_the_model_input(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client)
    digit = unipen_digits()[3]
    for binary in (True, False):
        async with connect(url, preview=True, top_k=10, binary=binary) as c:
            final = await c.draw(digit.strokes, point_interval=0)
        assert final is not None and final.input is not None and len(final.top) == 10
        expected = np.rint(rasterize(digit.strokes) * 255).astype(np.uint8)  # type: ignore[operator]
        assert np.array_equal(np.frombuffer(final.input, np.uint8).reshape(28, 28), expected)


async def test_replies_follow_the_encoding_of_the_last_frame(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client)
    async with unlimited_session() as http:
        ws = await raw_socket(http, url, binary=False)
        await send(ws, {"type": "ping", "seq": 1}, binary=True)
        assert (await ws.receive()).type is aiohttp.WSMsgType.BINARY
        await send(ws, {"type": "ping", "seq": 2}, binary=False)
        frame = await ws.receive()
        assert frame.type is aiohttp.WSMsgType.TEXT and json.loads(frame.data) == {
            "type": "pong",
            "seq": 2,
        }


async def test_empty_ink_is_an_explicit_empty_answer(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client)
    async with connect(url) as c:
        final = await c.recognize()
        assert (final.empty, final.top, final.bbox, final.strokes) == (True, (), None, 0)
        await c.start_stroke()  # a stroke with no points is still no ink
        assert (await c.recognize()).empty


async def test_a_stroke_ended_without_points_is_dropped(aiohttp_client: MakeClient) -> None:
    """As in a room (test_shared.py): not counted, and undo does not count it."""
    _, url = await start(aiohttp_client)
    async with connect(url) as c:
        await c.start_stroke([[0, 0], [0, 40]])
        await c.end_stroke()
        await c.start_stroke()
        await c.end_stroke()
        assert (await c.recognize()).strokes == 1
        await c.undo()  # the drawn stroke, not the empty one
        assert (await c.recognize()).empty
        await c.sync()  # nothing was refused


async def test_undo_and_clear(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client)
    a, b = unipen_digits()[0], unipen_digits()[5]
    async with connect(url) as c:
        only_a = await c.draw(a.strokes, point_interval=0)
        await c.draw(b.strokes, point_interval=0, recognize=False)
        both = await c.recognize()
        assert both.strokes == len(a.strokes) + len(b.strokes)
        for _ in b.strokes:
            await c.undo()
        after_undo = await c.recognize()
        assert after_undo.strokes == len(a.strokes)
        assert after_undo.top == only_a.top and after_undo.bbox == only_a.bbox
        await c.clear()
        cleared = await c.recognize()
        assert cleared.empty and cleared.strokes == 0


async def test_a_fast_sender_gets_few_current_predictions(aiohttp_client: MakeClient) -> None:
    """299 updates while the first prediction is held in the model (the real batch function,
    behind a gate): they coalesce into one prediction of the newest ink."""
    client, url = await start(aiohttp_client)
    batcher = client.app[RECOGNIZER].batcher
    batcher.inline_cost = 0.0  # held in the inference thread, not on the event loop
    entered, gate, real = threading.Event(), threading.Event(), batcher._fn
    batcher._fn = lambda items: (entered.set(), gate.wait(10), real(items))[2]
    async with unlimited_session() as http:
        ws = await raw_socket(http, url, binary=True)
        await send(ws, {"type": "start", "points": [[0, 0]], "seq": 0}, binary=True)
        await asyncio.to_thread(entered.wait, 10)  # its prediction is in the model
        updates = 300
        for i in range(1, updates):
            await send(ws, {"type": "points", "points": [[i, (i * 7) % 50]], "seq": i}, True)
        await send(ws, {"type": "ping", "seq": updates}, binary=True)
        assert await next_message(ws) == {"type": "pong", "seq": updates}  # all were handled
        gate.set()
        live = [(await until(ws, "prediction"))["seq"] for _ in range(2)]
        assert live == [0, updates - 1]  # the one in flight, then one of the newest ink
        await send(ws, {"type": "recognize", "seq": updates + 1}, binary=True)
        final = await until(ws, "prediction")
        assert final["final"] and final["seq"] == updates + 1
    text = await (await client.get("/metrics")).text()
    assert metric(text, "digits_predictions_total", '{kind="live"}') == 2


async def test_concurrent_sessions_share_inference_batches(aiohttp_client: MakeClient) -> None:
    client, url = await start(aiohttp_client, batch_wait_ms=20.0)
    digits = unipen_digits()[:10]
    async with unlimited_session() as http:
        clients = [await DigitsClient.open(url, session=http) for _ in digits]
        finals = await asyncio.gather(
            *(
                c.draw(d.strokes, point_interval=0.002, frame_rate=250)
                for c, d in zip(clients, digits, strict=True)
            )
        )
        for c in clients:
            await c.close()
    assert [f.top[0].digit if f else None for f in finals] == [d.expected for d in digits]
    text = await (await client.get("/metrics")).text()
    batches, images = metric(text, "digits_batch_size_count"), metric(text, "digits_batch_size_sum")
    assert images > batches > 0  # some batch held more than one session's ink


@pytest.mark.parametrize("inference", ["thread", "process"])
async def test_200_concurrent_sessions_get_their_own_answers(
    aiohttp_client: MakeClient, inference: str
) -> None:
    _, url = await start(aiohttp_client, inference=inference)
    digits = unipen_digits()
    async with unlimited_session() as http:
        clients = await asyncio.gather(*(DigitsClient.open(url, session=http) for _ in range(200)))
        assignments = [digits[i % len(digits)] for i in range(200)]
        finals = await asyncio.gather(
            *(
                c.draw(d.strokes, point_interval=0)
                for c, d in zip(clients, assignments, strict=True)
            )
        )
        await asyncio.gather(*(c.close() for c in clients))
    got = [(f.top[0].digit, f.strokes) if f else None for f in finals]
    assert got == [(d.expected, len(d.strokes)) for d in assignments]


# ---- bad input --------------------------------------------------------------------------

BAD_INPUT: list[tuple[str, bytes | str, str, int | None]] = [
    ("malformed msgpack", b"\xc1\x00", "bad_frame", None),
    ("truncated msgpack", b"\x82\xa4type", "bad_frame", None),
    ("malformed JSON", '{"type": "points",', "bad_frame", None),
    ("not a map", "[1, 2, 3]", "bad_frame", None),
    ("no type", '{"seq": 4}', "bad_frame", 4),
    ("unknown type", '{"type": "teleport", "seq": 4}', "unknown_type", 4),
    ("seq of the wrong type", '{"type": "ping", "seq": "four"}', "bad_message", None),
    ("points not a list", '{"type": "points", "points": "1,2", "seq": 4}', "bad_message", 4),
    ("point of strings", '{"type": "points", "points": [["1", "2"]], "seq": 4}', "bad_message", 4),
    ("NaN", '{"type": "points", "points": [[NaN, 1]], "seq": 4}', "bad_number", 4),
    ("infinity", '{"type": "points", "points": [[1, -Infinity]], "seq": 4}', "bad_number", 4),
    ("huge number", '{"type": "points", "points": [[1e300, 1]], "seq": 4}', "bad_number", 4),
    (
        "huge int",
        msgpack.packb({"type": "points", "points": [[2**63, 1]], "seq": 4}),
        "bad_number",
        4,
    ),
    (
        "too many points",
        msgpack.packb({"type": "points", "points": [[1, 1]] * 600}),
        "too_many_points",
        None,
    ),
    ("second hello", '{"type": "hello", "version": 1, "seq": 4}', "already_hello", 4),
]


@pytest.mark.parametrize(
    ("frame", "code", "seq"), [t[1:] for t in BAD_INPUT], ids=[t[0] for t in BAD_INPUT]
)
async def test_bad_input_gets_a_coded_error_and_the_session_goes_on(
    aiohttp_client: MakeClient, frame: bytes | str, code: str, seq: int | None
) -> None:
    _, url = await start(aiohttp_client)
    digit = unipen_digits()[12]
    async with unlimited_session() as http:
        ws = await raw_socket(http, url)
        await send(ws, {"type": "start", "points": [[0, 0], [10, 10]], "seq": 1})
        await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
        error = await until(ws, "error")
        assert (error["code"], error["seq"]) == (code, seq)
        await send(ws, {"type": "recognize", "seq": 5})
        final = await until(ws, "prediction")
        while not final["final"]:
            final = await until(ws, "prediction")
        assert final["seq"] == 5 and final["strokes"] == 1  # the ink before the bad frame is intact
        await ws.close()
    async with connect(url) as c:  # and the server serves everyone as before
        assert (await c.draw(digit.strokes, point_interval=0)).top[0].digit == digit.expected  # type: ignore[union-attr]


async def test_points_outside_a_stroke(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client)
    async with connect(url) as c:
        seq = await c.points([[1, 2]])
        error = await next_error(c)
        assert (error.code, error.seq) == ("no_stroke", seq)
        await c.end_stroke()
        assert (await next_error(c)).code == "no_stroke"
        assert (await c.recognize()).empty


async def next_error(c: DigitsClient) -> Error:
    """The next error message in the client's inbox."""
    async for msg in c:
        if isinstance(msg, Error):
            return msg
    raise AssertionError("closed without an error")


async def test_points_and_strokes_per_session_are_limited(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client, max_points_per_session=50, max_strokes_per_session=2)
    async with connect(url) as c:
        await c.start_stroke([[i, i] for i in range(40)])
        await c.points([[i, 0] for i in range(20)])
        assert (await next_error(c)).code == "too_many_points"
        await c.start_stroke([[0, 0]])
        await c.start_stroke([[1, 1]])
        assert (await next_error(c)).code == "too_many_strokes"
        final = await c.recognize()
        assert final.strokes == 2 and not final.empty


@pytest.mark.parametrize(
    ("first", "code"),
    [
        ({"type": "start", "points": [[0, 0]]}, "hello_first"),
        ({"type": "hello", "version": 99}, "bad_version"),
        *(({"type": "hello", "version": v}, "bad_version") for v in (-1, "1", 1.0, True, None)),
        ({"type": "hello"}, "bad_version"),
    ],
)
async def test_fatal_protocol_errors_close_with_1008(
    aiohttp_client: MakeClient, first: dict[str, Any], code: str
) -> None:
    _, url = await start(aiohttp_client)
    async with unlimited_session() as http:
        ws = await raw_socket(http, url, hello=False)
        await send(ws, first)
        assert (await next_message(ws))["code"] == code
        assert (await next_message(ws)) == {"type": "closed", "code": 1008}


async def test_a_flood_is_rate_limited_then_closed(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client, messages_per_second=0.5, message_burst=10)
    async with unlimited_session() as http:
        ws = await raw_socket(http, url)
        for i in range(40):
            await send(ws, {"type": "ping", "seq": i})
        seen = []
        while (msg := await next_message(ws))["type"] != "closed":
            seen.append(msg.get("code", msg["type"]))
        assert seen.count("pong") <= 10 and "rate_limited" in seen
        assert msg["code"] == 1008
    async with connect(url) as c:  # a new, polite connection is served
        assert await c.ping() >= 0


async def test_an_oversize_frame_closes_with_1009(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client, max_frame_bytes=4096)
    async with unlimited_session() as http:
        ws = await raw_socket(http, url)
        await ws.send_str(json.dumps({"type": "points", "points": [[1.5, 2.5]] * 1000}))
        assert (await next_message(ws)) == {"type": "closed", "code": 1009}


async def test_a_text_frame_that_is_not_utf8_closes_with_1007(aiohttp_client: MakeClient) -> None:
    """The WebSocket layer closes (RFC 6455 8.1), with an empty reason and no error frame."""
    client, _ = await start(aiohttp_client)
    sock = await StubbornSocket.open(client.host, client.port)
    try:
        await sock.send_frame(json.dumps({"type": "hello", "version": 1}).encode(), opcode=0x1)
        await sock.send_frame(b'{"type": "ping", "pad": "\xff\xfe"}', opcode=0x1)
        close = bytes([0x88, 0x02]) + (1007).to_bytes(2, "big")  # no reason
        heard = await sock.read_all(close)
        assert heard.endswith(close) and b'"error"' not in heard
    finally:
        sock.sock.close()


async def test_a_frame_of_exactly_max_frame_bytes_is_accepted(aiohttp_client: MakeClient) -> None:
    """Protocol bug 3: the announced limit is the real one."""
    _, url = await start(aiohttp_client, max_frame_bytes=4096)
    async with unlimited_session() as http:
        ws = await raw_socket(http, url)
        for size, answer in ((4096, {"type": "pong", "seq": 1}), (4097, None)):
            ping = {"type": "ping", "seq": 1, "pad": ""}
            ping["pad"] = "x" * (size - len(json.dumps(ping)))
            await ws.send_str(json.dumps(ping))
            expected = answer or {"type": "closed", "code": 1009}
            assert (await next_message(ws)) == expected


async def test_a_hello_version_of_2_64_minus_1_is_bad_version(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client)
    async with unlimited_session() as http:
        ws = await raw_socket(http, url, hello=False)
        await send(ws, {"type": "hello", "version": 2**64 - 1}, binary=True)
        assert (await next_message(ws))["code"] == "bad_version"
        assert (await next_message(ws)) == {"type": "closed", "code": 1008}


async def test_integer_coordinates_come_back_as_integers(aiohttp_client: MakeClient) -> None:
    """Protocol bug 5, for bbox (stroke and joined: test_shared.py)."""
    _, url = await start(aiohttp_client)
    async with unlimited_session() as http:
        for binary in (False, True):
            ws = await raw_socket(http, url, binary=binary)
            await send(ws, {"type": "start", "points": [[3, 4], [10, 40.5]], "seq": 1}, binary)
            await send(ws, {"type": "recognize", "seq": 2}, binary)
            final = await until(ws, "prediction")
            while not final["final"]:
                final = await until(ws, "prediction")
            assert final["bbox"] == [3, 4, 10, 40.5]
            assert [type(v) for v in final["bbox"]] == [int, int, int, float]


async def test_points_with_and_without_t_mix_in_one_stroke(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client)
    async with unlimited_session() as http:
        ws = await raw_socket(http, url)
        await send(ws, {"type": "start", "points": [[0, 0], [0, 20, 5.5], [1, 40]], "seq": 1})
        await send(ws, {"type": "recognize", "seq": 2})
        msg = await until(ws, "prediction")
        while not msg["final"]:
            msg = await until(ws, "prediction")
        assert not msg["empty"] and msg["bbox"] == [0, 0, 1, 40]


async def test_back_to_back_recognizes_each_get_a_final(aiohttp_client: MakeClient) -> None:
    """Protocol bug 1: start, end, recognize(3), recognize(4), clear(5) back to back."""
    _, url = await start(aiohttp_client)
    digit = unipen_digits()[3]
    async with unlimited_session() as http:
        ws = await raw_socket(http, url)
        for msg in (
            {"type": "start", "points": digit.strokes[0], "seq": 1},
            {"type": "end", "seq": 2},
            {"type": "recognize", "seq": 3},
            {"type": "recognize", "seq": 4},
            {"type": "clear", "seq": 5},
        ):
            await send(ws, msg)
        seen = []
        while not seen or seen[-1][0] != 5:
            msg = await until(ws, "prediction")
            seen.append((msg["seq"], msg["final"], msg["empty"]))
    finals = [s for s in seen if s[1]]
    assert finals == [(3, True, False), (4, True, False)] and seen[-1] == (5, False, True)
    assert [s[0] for s in seen] == sorted(s[0] for s in seen)


async def test_start_then_share_still_gets_the_live_prediction(aiohttp_client: MakeClient) -> None:
    """Protocol bug 2."""
    _, url = await start(aiohttp_client)
    async with unlimited_session() as http:
        ws = await raw_socket(http, url)
        await send(ws, {"type": "start", "points": [[0, 0], [0, 40]], "seq": 1})
        await send(ws, {"type": "share", "seq": 2})
        got = {}
        while "prediction" not in got or "shared" not in got:
            msg = await next_message(ws)
            got[msg["type"]] = msg
        assert got["prediction"]["seq"] == 1 and not got["prediction"]["empty"]


async def test_idle_connections_are_closed(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client, idle_timeout_s=0.3)
    async with unlimited_session() as http:
        ws = await raw_socket(http, url)
        assert (await next_message(ws))["code"] == "idle_timeout"
        assert (await next_message(ws))["code"] == 1000


async def test_a_socket_without_hello_is_closed_and_frees_its_slot(
    aiohttp_client: MakeClient,
) -> None:
    server, url = await start(aiohttp_client, hello_timeout_s=0.3, max_connections_per_client=2)
    async with unlimited_session() as http:
        silent = [await raw_socket(http, url, hello=False) for _ in range(2)]
        await send(silent[1], {"type": "no such type"})  # frames other than hello do not help
        assert (await next_message(silent[1]))["code"] == "unknown_type"
        for ws in silent:
            assert (await next_message(ws))["code"] == "hello_timeout"
            assert (await next_message(ws))["code"] == 1008
        await stepped(lambda: server.app[CLIENTS].total() == 0)
        ws = await raw_socket(http, url, hello=False)  # the address is not locked out
        await send(ws, {"type": "hello", "version": 1})
        welcome = await next_message(ws)
        assert welcome["type"] == "welcome" and welcome["limits"]["hello_timeout_s"] == 0.3


async def test_connections_per_client_and_in_total_are_limited(aiohttp_client: MakeClient) -> None:
    server, url = await start(aiohttp_client, max_connections_per_client=2)
    async with unlimited_session() as http:
        kept = [await raw_socket(http, url) for _ in range(2)]
        extra = await raw_socket(http, url, hello=False)
        await send(extra, {"type": "hello", "version": 1})
        assert (await next_message(extra))["code"] == "too_many_connections"
        assert (await next_message(extra))["code"] == 1013
        await kept[0].close()
        await stepped(lambda: server.app[CLIENTS].total() < 2)
        assert (await raw_socket(http, url)).closed is False  # a slot came free
    _, url = await start(aiohttp_client, max_connections=1)
    async with connect(url), unlimited_session() as http:
        extra = await raw_socket(http, url, hello=False)
        await send(extra, {"type": "hello", "version": 1}, binary=True)
        assert decode_server((await extra.receive()).data) == Error(
            "too_many_connections", "too many connections; try again later"
        )


@pytest.mark.parametrize(
    ("origin", "allowed", "ok"),
    [
        (None, (), True),  # not a browser
        ("SAME", (), True),
        ("http://evil.example", (), False),
        ("null", (), False),
        ("https://app.example", ("https://app.example",), True),
        ("SAME", ("https://app.example",), False),
        ("http://anything.example", ("*",), True),
    ],
)
async def test_browser_origins_are_checked(
    aiohttp_client: MakeClient, origin: str | None, allowed: tuple[str, ...], ok: bool
) -> None:
    client, url = await start(aiohttp_client, allowed_origins=allowed)
    if origin == "SAME":
        origin = f"http://{client.host}:{client.port}"
    headers = {} if origin is None else {"Origin": origin}
    async with unlimited_session() as http:
        if ok:
            async with connect(url, session=http, headers=headers) as c:
                assert await c.ping() >= 0
        else:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(url, headers=headers)
            assert info.value.status == 403


async def test_an_internal_failure_closes_with_1011_and_hides_details(
    aiohttp_client: MakeClient,
) -> None:
    client, url = await start(aiohttp_client)
    async with connect(url) as c:
        await client.app[RECOGNIZER].stop()  # inference is gone: every prediction now fails
        await c.start_stroke([[0, 0], [5, 5]])
        error = await next_error(c)
        assert (error.code, error.message) == ("internal", "internal error")
        with pytest.raises(ConnectionClosed):
            await c.recognize()
        assert c.close_code == 1011


async def test_shutdown_closes_every_socket_with_1001(aiohttp_client: MakeClient) -> None:
    client, url = await start(aiohttp_client)
    async with unlimited_session() as http:
        clients = [await DigitsClient.open(url, session=http) for _ in range(3)]
        await clients[0].start_stroke([[0, 0], [3, 3]])
        await client.server.close()
        for c in clients:
            with pytest.raises(ConnectionClosed):
                while True:
                    await c.receive()
            assert c.close_code == 1001
            await c.close()


async def test_server_errors_reach_waiting_requests(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client, messages_per_second=0.001, message_burst=2)
    async with connect(url) as c:  # hello took one token
        assert await c.ping() >= 0
        with pytest.raises(ServerError) as info:
            await c.ping()
        assert info.value.code == "rate_limited"


async def test_a_client_that_never_reads_is_bounded_and_others_are_served(
    aiohttp_client: MakeClient,
) -> None:
    client, url = await start(aiohttp_client, send_buffer_bytes=8192)
    app = client.app
    stubborn = await StubbornSocket.open(str(client.host), int(client.port))
    await stubborn.send({"type": "hello", "version": 1, "preview": True})  # ~1 KB predictions
    await stubborn.send({"type": "start", "points": [[0, 0]], "seq": 0})
    await stepped(lambda: len(app[CONNECTIONS]) == 1)
    (conn,) = app[CONNECTIONS]
    narrow(conn)
    digit = unipen_digits()[20]
    last = 1500
    async with connect(url) as polite:
        for seq in range(1, last + 1):
            await stubborn.send({"type": "points", "points": [[seq % 97, seq % 89]], "seq": seq})
            await asyncio.sleep(0.002)  # a pen's pace, not a wait for an event
            if seq % 250 == 0:
                final = await polite.draw(digit.strokes, point_interval=0)
                assert final is not None and final.top[0].digit == digit.expected
                await polite.clear()
                assert conn.peer.buffered() <= 8192 + 2048  # the limit plus one prediction
    # Once it reads again it gets the prediction of its latest ink, not a backlog.
    latest = b"\xa3seq\xcd" + last.to_bytes(2, "big")
    data = await stubborn.read_all(until=latest)
    assert latest in data and len(data) < 200_000
    text = await (await client.get("/metrics")).text()
    assert metric(text, "digits_predictions_dropped_total") >= 1
    stubborn.sock.close()


async def test_a_client_that_sends_but_never_reads_is_dropped(aiohttp_client: MakeClient) -> None:
    """Protocol bug 6: incoming frames keep the heartbeat alive, so the send backlog decides:
    behind for heartbeat_s / 2 in a row, the client is closed with too_slow (1008)."""
    client, _ = await start(aiohttp_client, send_buffer_bytes=4096, heartbeat_s=2.0)
    stubborn = await StubbornSocket.open(str(client.host), int(client.port))
    await stubborn.send({"type": "hello", "version": 1, "preview": True})
    (conn,) = client.app[CONNECTIONS]
    narrow(conn)
    async with asyncio.timeout(30):
        seq = 0
        while conn.open:  # it keeps sending, about at pen speed, and never reads
            seq += 1
            await stubborn.send({"type": "start", "points": [[seq % 97, seq % 89]], "seq": seq})
            await asyncio.sleep(0.005)  # a pen's pace, not a wait for an event
    close_1008 = b"\x88\x0a" + (1008).to_bytes(2, "big") + b"too_slow"  # the close frame
    data = await stubborn.read_all(until=close_1008)
    assert b"\xa4code\xa8too_slow" in data and close_1008 in data
    text = await (await client.get("/metrics")).text()
    assert metric(text, "digits_errors_total", '{code="too_slow"}') == 1
    stubborn.sock.close()


async def test_a_full_inference_queue_answers_overloaded_and_recovers(
    aiohttp_client: MakeClient,
) -> None:
    client, url = await start(aiohttp_client, queue_max=1, batch_wait_ms=1000.0)
    batcher = client.app[RECOGNIZER].batcher
    async with connect(url) as first, connect(url) as second:
        await first.start_stroke([[0, 0], [5, 5]])  # queued, held by the batch wait
        await stepped(lambda: len(batcher) > 0)
        seq = await second.start_stroke([[0, 0], [9, 9]])
        error = await next_error(second)
        assert (error.code, error.seq) == ("overloaded", seq)
        while not isinstance(await first.receive(), Prediction):  # the held batch ran
            pass
        final = await second.recognize()  # the queue has room again: the session goes on
        assert not final.empty and final.strokes == 1


async def test_the_client_inbox_keeps_the_newest_messages(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client)
    async with connect(url, inbox_size=4) as c:
        for _ in range(10):
            await c.ping()
        kept = [await c.receive() for _ in range(4)]
        with pytest.raises(TimeoutError):  # nothing else is kept (and nothing else comes)
            await asyncio.wait_for(c.receive(), 0.2)
    assert kept == [Pong(7), Pong(8), Pong(9), Pong(10)]


async def test_a_queued_live_prediction_reflects_the_newest_ink(aiohttp_client: MakeClient) -> None:
    client, url = await start(aiohttp_client, batch_wait_ms=1000.0)
    batcher = client.app[RECOGNIZER].batcher
    async with connect(url) as c:
        await c.start_stroke([[0, 0]])  # its prediction is queued, the batch held open
        await stepped(lambda: len(batcher) > 0)
        await c.points([[5, 5]])
        newest = await c.points([[9, 0]])
        first = await c.receive()
        while not isinstance(first, Prediction):
            first = await c.receive()
        assert (first.seq, first.bbox) == (newest, (0.0, 0.0, 9.0, 5.0))
