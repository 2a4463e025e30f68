"""protocol/codec.py: codecs round-trip, and every malformed frame gets its named error."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import msgpack
import pytest

from protocol import (
    Clear,
    Cleared,
    ClientMessage,
    Code,
    End,
    Error,
    Guess,
    Hello,
    Join,
    Joined,
    Leave,
    Left,
    Limits,
    Member,
    Ping,
    PointsMsg,
    Pong,
    Prediction,
    Presence,
    ProtocolError,
    Recognize,
    RoomStroke,
    ServerMessage,
    Share,
    Shared,
    Start,
    StrokeEvent,
    Undo,
    Undone,
    Welcome,
    decode,
    decode_server,
    encode,
    encode_client,
)

CLIENT_MESSAGES: list[ClientMessage] = [
    Hello(),
    Hello(version=1, top_k=10, preview=True, resume="abc", seq=0),
    Start(),
    Start(((1.0, 2.0), (3.5, -4.25, 17.0)), seq=1),
    PointsMsg(((0.0, 0.0),), seq=2),
    PointsMsg((), seq=None),
    End(seq=3),
    End(((9.0, 9.0),), seq=4),
    Undo(5),
    Clear(6),
    Recognize(7),
    Ping(2**53 - 1),
    Ping(),
    Share(),
    Share(8),
    Join("room1", "secret", 9),
    Join("r", "t"),
    Leave(10),
    Leave(),
]

SERVER_MESSAGES: list[ServerMessage] = [
    Welcome("s1", "tok", "digits", "cpu", "litert", 3, False, Limits(max_connections=7)),
    Prediction(5, False, False, (Guess(7, 0.9), Guess(1, 0.05)), (0.0, 1.0, 2.0, 3.5), 2),
    Prediction(6, True, False, (Guess(4, 0.4),), (0.0, 0.0, 1.0, 1.0), 1, verdict="not_digit"),
    Prediction(7, False, False, (Guess(2, 0.3),), (0.0, 0.0, 1.0, 1.0), 1, verdict="unsure"),
    Prediction(None, True, True),
    Prediction(
        9, True, False, (Guess(0, 1.0),), (1.0, 1.0, 1.0, 1.0), 1, bytes(range(256)) * 3 + bytes(16)
    ),
    Error("bad_frame", "frame is not valid JSON", None),
    Error("no_stroke", "no open stroke", 12),
    Pong(3),
    Pong(None),
    Welcome("s", "t", "m", "gpu", "r", 1, True, resumed=True, strokes=2, points=30),
    Welcome("s", "t", "m", "cpu", "r", 1, True, resume_error="resume_expired"),
    Shared("room1", "draw", "watch", 4),
    Joined(
        "room1",
        "watch",
        "m3",
        (Member("m1", "draw"), Member("m3", "watch")),
        (RoomStroke(1, "m1", ((1.0, 2.0), (3.0, 4.0, 5.0)), False), RoomStroke(2, "m1", (), True)),
        7,
    ),
    Joined("r", "draw", "m"),
    Left("room1", 3),
    Presence("room1", "left", "m2", "draw"),
    StrokeEvent("room1", "start", 3, "m2", ((0.0, 0.0),)),
    StrokeEvent("room1", "end", 3, "m2"),
    Undone("room1", 3, "m2"),
    Cleared("room1", "m1"),
]


@pytest.mark.parametrize("binary", [True, False], ids=["msgpack", "json"])
@pytest.mark.parametrize("msg", CLIENT_MESSAGES, ids=repr)
def test_client_messages_round_trip(msg: ClientMessage, binary: bool) -> None:
    frame = encode_client(msg, binary)
    assert isinstance(frame, bytes if binary else str)
    assert decode(frame) == msg


@pytest.mark.parametrize("binary", [True, False], ids=["msgpack", "json"])
@pytest.mark.parametrize("msg", SERVER_MESSAGES, ids=repr)
def test_server_messages_round_trip(msg: ServerMessage, binary: bool) -> None:
    frame = encode(msg, binary)
    assert isinstance(frame, bytes if binary else str)
    assert decode_server(frame) == msg


def test_preview_input_is_bin_in_msgpack_and_base64_in_json() -> None:
    pixels = bytes(range(200)) * 3 + bytes(184)
    msg = Prediction(1, False, False, (Guess(3, 0.5),), (0.0, 0.0, 1.0, 1.0), 1, pixels)
    assert msgpack.unpackb(encode(msg, True))["input"] == pixels
    assert base64.b64decode(json.loads(encode(msg, False))["input"]) == pixels


def test_wire_names_are_the_documented_ones() -> None:
    pred = json.loads(encode(Prediction(4, False, True), False))
    assert pred == {
        "type": "prediction", "seq": 4, "final": False, "empty": True,
        "top": [], "bbox": None, "strokes": 0, "verdict": None,
    }  # fmt: skip
    welcome = json.loads(encode(SERVER_MESSAGES[0], False))
    assert set(welcome) == {
        "type", "version", "session", "resume_token", "model", "accelerator",
        "runtime", "top_k", "preview", "limits", "resumed", "resume_error", "strokes", "points",
    }  # fmt: skip
    assert welcome["limits"]["max_connections"] == 7
    assert json.loads(encode_client(PointsMsg(((1.0, 2.0),), 3), False)) == {
        "type": "points", "points": [[1.0, 2.0]], "seq": 3,
    }  # fmt: skip


def test_room_wire_names_are_the_documented_ones() -> None:
    (full,) = [m for m in SERVER_MESSAGES if isinstance(m, Joined) and m.strokes]
    joined = json.loads(encode(full, False))
    assert joined == {
        "type": "joined", "room": "room1", "role": "watch", "member": "m3",
        "members": [{"member": "m1", "role": "draw"}, {"member": "m3", "role": "watch"}],
        "strokes": [
            {"id": 1, "author": "m1", "points": [[1.0, 2.0], [3.0, 4.0, 5.0]], "open": False},
            {"id": 2, "author": "m1", "points": [], "open": True},
        ],
        "seq": 7,
    }  # fmt: skip
    assert json.loads(encode(StrokeEvent("r", "points", 2, "m", ((1.0, 1.0),)), False)) == {
        "type": "stroke", "room": "r", "event": "points", "stroke": 2, "author": "m",
        "points": [[1.0, 1.0]],
    }  # fmt: skip
    assert json.loads(encode(Shared("r", "d", "w", None), False)) == {
        "type": "shared", "room": "r", "draw_token": "d", "watch_token": "w", "seq": None,
    }  # fmt: skip
    assert json.loads(encode_client(Join("r", "t", 1), False)) == {
        "type": "join", "room": "r", "token": "t", "seq": 1,
    }  # fmt: skip


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "join", "room": "r"},
        {"type": "join", "token": "t"},
        {"type": "join", "room": 5, "token": "t"},
        {"type": "join", "room": "r", "token": ""},
        {"type": "join", "room": "r", "token": "x" * 257},
        {"type": "share", "seq": -1},
        {"type": "leave", "seq": "1"},
    ],
    ids=repr,
)
def test_malformed_room_messages_are_bad_messages(frame: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(json.dumps(frame))
    assert info.value.code is Code.BAD_MESSAGE


def test_a_welcome_from_an_older_server_decodes_with_the_new_fields_defaulted() -> None:
    obj = json.loads(encode(SERVER_MESSAGES[0], False))
    for key in ("resumed", "resume_error", "strokes", "points"):
        del obj[key]
    welcome = decode_server(json.dumps(obj))
    assert isinstance(welcome, Welcome) and not welcome.resumed and welcome.resume_error is None


def test_unknown_fields_are_ignored_and_numbers_stay_as_sent() -> None:
    msg = decode(json.dumps({"type": "start", "points": [[1, 2.5, 7]], "pressure": 0.5}))
    assert isinstance(msg, Start) and msg.points == ((1, 2.5, 7),)
    assert [type(v) for v in msg.points[0]] == [int, float, int]  # integers are integers


@pytest.mark.parametrize("version", [-1, "1", 1.0, True, None, 2**64 - 1, 2, [1]])
def test_an_unusable_hello_version_is_bad_version_and_fatal(version: object) -> None:
    frame = msgpack.packb({"type": "hello", "version": version, "seq": 4})
    with pytest.raises(ProtocolError) as info:
        decode(frame)
    assert (info.value.code, info.value.seq, info.value.close_code) == ("bad_version", 4, 1008)


def test_null_optional_fields_count_as_absent() -> None:
    hello = decode(json.dumps({"type": "hello", "version": 1, "top_k": None, "resume": None}))
    assert hello == Hello(top_k=3, resume=None)
    assert decode(json.dumps({"type": "start", "points": None})) == Start(())
    assert _code(json.dumps({"type": "points", "points": None})) == (Code.BAD_MESSAGE, None)


def test_a_timestamp_beyond_1e15_is_a_bad_number() -> None:
    frame = json.dumps({"type": "start", "points": [[1, 2, 2e15]], "seq": 3})
    assert _code(frame) == (Code.BAD_NUMBER, 3)


def test_non_string_map_keys_are_a_bad_frame_that_says_so() -> None:
    for frame in (
        msgpack.packb({"type": "ping", 1: 2}),
        msgpack.packb({"type": "ping", "x": {(1, 2): 3}}),  # nested, an array key
        bytes([0x82, 0xA4, *b"type", 0xA4, *b"ping", 0x80, 0xC0]),  # {}: nil, a map key
    ):
        with pytest.raises(ProtocolError) as info:
            decode(frame)
        assert (info.value.code, info.value.message) == ("bad_frame", "map keys must be strings")
    with pytest.raises(ProtocolError, match="frame is not valid msgpack"):
        decode(b"\x81\x01")  # truncated, whatever its key


def test_json_integers_of_any_length_are_numbers() -> None:
    """Python refuses to parse integers of more than 4300 digits; the codec reads them as
    infinite floats, so a coordinate is a bad_number like a 23-digit one, and an ignored
    field stays ignored."""
    huge = "9" * 5000
    for digits in ("9" * 23, huge, "-" + huge):
        frame = '{"type": "points", "points": [[' + digits + ', 2]], "seq": 6}'
        assert _code(frame) == (Code.BAD_NUMBER, 6)
    frame = '{"type": "points", "points": [[1, 2, ' + huge + "]]}"  # t
    assert _code(frame) == (Code.BAD_NUMBER, None)
    assert _code('{"type": "ping", "seq": ' + huge + "}") == (Code.BAD_MESSAGE, None)
    assert decode('{"type": "start", "pressure": ' + huge + "}") == Start(())
    with pytest.raises(ProtocolError, match="frame is not valid JSON"):
        decode('{"type": "start", "pressure": ' + huge + "")


def _code(frame: bytes | str, limits: Limits | None = None) -> tuple[Code, int | None]:
    with pytest.raises(ProtocolError) as info:
        decode(frame, limits or Limits())
    return info.value.code, info.value.seq


BAD_FRAMES: list[tuple[bytes | str, Code]] = [
    (b"\xc1", Code.BAD_FRAME),  # never-used msgpack byte
    (b"\x92\x01", Code.BAD_FRAME),  # truncated array
    (msgpack.packb({"type": "ping"}) + b"\x00", Code.BAD_FRAME),  # trailing data
    (b"\xa2\xff\xfe", Code.BAD_FRAME),  # str that is not UTF-8
    (msgpack.packb({1: "ping"}), Code.BAD_FRAME),  # non-string key
    (msgpack.packb([1, 2]), Code.BAD_FRAME),  # not a map
    (b"", Code.BAD_FRAME),
    ("{", Code.BAD_FRAME),
    ("", Code.BAD_FRAME),
    ("[1]", Code.BAD_FRAME),
    ('"ping"', Code.BAD_FRAME),
    ("[" * 100000, Code.BAD_FRAME),  # nesting beyond recursion
    ("{}", Code.BAD_FRAME),  # no type
    ('{"type": 5}', Code.BAD_FRAME),
    ('{"type": "dance"}', Code.UNKNOWN_TYPE),
    ('{"type": "Ping"}', Code.UNKNOWN_TYPE),
    ('{"type": "hello"}', Code.BAD_VERSION),
    ('{"type": "hello", "version": 2}', Code.BAD_VERSION),
    ('{"type": "hello", "version": "1"}', Code.BAD_VERSION),
    ('{"type": "hello", "version": true}', Code.BAD_VERSION),
    ('{"type": "hello", "version": 1, "top_k": 0}', Code.BAD_MESSAGE),
    ('{"type": "hello", "version": 1, "top_k": 11}', Code.BAD_MESSAGE),
    ('{"type": "hello", "version": 1, "top_k": 2.0}', Code.BAD_MESSAGE),
    ('{"type": "hello", "version": 1, "preview": 1}', Code.BAD_MESSAGE),
    ('{"type": "hello", "version": 1, "resume": 5}', Code.BAD_MESSAGE),
    ('{"type": "ping", "seq": -1}', Code.BAD_MESSAGE),
    ('{"type": "ping", "seq": 1.5}', Code.BAD_MESSAGE),
    ('{"type": "ping", "seq": "1"}', Code.BAD_MESSAGE),
    ('{"type": "ping", "seq": 9007199254740992}', Code.BAD_MESSAGE),
    ('{"type": "points"}', Code.BAD_MESSAGE),
    ('{"type": "points", "points": {"x": 1}}', Code.BAD_MESSAGE),
    ('{"type": "points", "points": [1, 2]}', Code.BAD_MESSAGE),
    ('{"type": "points", "points": [[1]]}', Code.BAD_MESSAGE),
    ('{"type": "points", "points": [[1, 2, 3, 4]]}', Code.BAD_MESSAGE),
    ('{"type": "points", "points": [["1", 2]]}', Code.BAD_MESSAGE),
    ('{"type": "points", "points": [[true, 2]]}', Code.BAD_MESSAGE),
    ('{"type": "points", "points": [[null, 2]]}', Code.BAD_MESSAGE),
    ('{"type": "start", "points": [[NaN, 2]]}', Code.BAD_NUMBER),
    ('{"type": "start", "points": [[1, Infinity]]}', Code.BAD_NUMBER),
    ('{"type": "end", "points": [[1, -Infinity]]}', Code.BAD_NUMBER),
    ('{"type": "points", "points": [[1e300, 2]]}', Code.BAD_NUMBER),
    ('{"type": "points", "points": [[1, 2, NaN]]}', Code.BAD_NUMBER),
    ('{"type": "points", "points": [[1, 2, 1e16]]}', Code.BAD_NUMBER),
    ('{"type": "points", "points": [[1e400, 2]]}', Code.BAD_NUMBER),  # parses as inf
    ('{"type": "points", "points": [[' + "9" * 400 + ", 2]]}", Code.BAD_NUMBER),
    ('{"type": "points", "points": [[' + "9" * 5000 + ", 2]]}", Code.BAD_NUMBER),
    (msgpack.packb({"type": "points", "points": [[math.nan, 0.0]]}), Code.BAD_NUMBER),
    (msgpack.packb({"type": "points", "points": [[0.0, math.inf]]}), Code.BAD_NUMBER),
    (msgpack.packb({"type": "points", "points": [[2**64 - 1, 0]]}), Code.BAD_NUMBER),
    (msgpack.packb({"type": "points", "points": [[b"\x00", 0]]}), Code.BAD_MESSAGE),
    (msgpack.packb({"type": "points", "points": [[0, 0]] * 513}), Code.TOO_MANY_POINTS),
]


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES, ids=lambda v: repr(v)[:50])
def test_malformed_frames_get_their_code(frame: bytes | str, code: Code) -> None:
    assert _code(frame)[0] is code


def test_errors_name_the_seq_of_the_frame_when_it_has_one() -> None:
    assert _code('{"type": "points", "points": [[NaN, 1]], "seq": 41}') == (Code.BAD_NUMBER, 41)
    assert _code('{"type": "fly", "seq": 7}') == (Code.UNKNOWN_TYPE, 7)
    assert _code('{"type": "fly", "seq": -7}') == (Code.UNKNOWN_TYPE, None)
    assert _code("{") == (Code.BAD_FRAME, None)


def test_limits_are_those_passed() -> None:
    tight = Limits(max_points_per_message=2, max_coordinate=10.0)
    assert _code('{"type": "points", "points": [[0, 0], [1, 1], [2, 2]]}', tight)[0] is (
        Code.TOO_MANY_POINTS
    )
    assert _code('{"type": "points", "points": [[10.5, 0]]}', tight)[0] is Code.BAD_NUMBER
    assert decode('{"type": "points", "points": [[-10, 10], [0, 0, 1.7e12]]}', tight) == PointsMsg(
        ((-10.0, 10.0), (0.0, 0.0, 1.7e12))  # t is a clock reading, not a coordinate
    )


@pytest.mark.parametrize(
    "frame", ["{", '{"type": "nope"}', '{"type": "welcome"}', '{"type": "prediction", "seq": 1}']
)
def test_decode_server_rejects_garbage(frame: str) -> None:
    with pytest.raises(ProtocolError):
        decode_server(frame)
