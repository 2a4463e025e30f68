"""Frames <-> messages, both directions: msgpack in binary frames, JSON in text frames.

Belongs here: the one registry of wire type names, validation of every client field, and the
encoders and decoders. No I/O, no state, no clock; a bad frame is a ProtocolError with a
stable code and, when the frame had a valid one, its seq. See docs/PROTOCOL.md.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import msgpack

from protocol.errors import Code, ProtocolError
from protocol.messages import (
    MAX_SEQ,
    MAX_TIME,
    MAX_TOP_K,
    VERSION,
    Clear,
    Cleared,
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
    Member,
    Ping,
    Points,
    PointsMsg,
    Pong,
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
    Welcome,
)

#: The one registry: wire "type" -> message class, both directions.
TYPES: dict[str, type] = {
    "hello": Hello,
    "start": Start,
    "points": PointsMsg,
    "end": End,
    "undo": Undo,
    "clear": Clear,
    "recognize": Recognize,
    "ping": Ping,
    "share": Share,
    "join": Join,
    "leave": Leave,
    "welcome": Welcome,
    "prediction": Prediction,
    "error": Error,
    "pong": Pong,
    "shared": Shared,
    "joined": Joined,
    "left": Left,
    "presence": Presence,
    "stroke": StrokeEvent,
    "undone": Undone,
    "cleared": Cleared,
}
DEFAULT_LIMITS = Limits()
NAMES: dict[type, str] = {cls: name for name, cls in TYPES.items()}
_FIELDS: dict[type, tuple[str, ...]] = {}  # filled lazily: field names per dataclass
_OMIT_IF_NONE = {(Prediction, "input")}  # server fields left out when None

# ---- framing ---------------------------------------------------------------------------


def _load(data: bytes | str) -> Any:
    """A frame's payload: msgpack for bytes, JSON for str; BAD_FRAME if neither."""
    try:
        if isinstance(data, str):
            return json.loads(data)
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
        kind = "JSON" if isinstance(data, str) else "msgpack"
        raise ProtocolError(Code.BAD_FRAME, f"frame is not valid {kind}") from exc


def _dump(obj: dict[str, Any], binary: bool) -> bytes | str:
    if binary:
        packed: bytes = msgpack.packb(obj, use_bin_type=True)
        return packed
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def _typed_map(data: bytes | str) -> tuple[type | None, str, Mapping[str, Any]]:
    obj = _load(data)
    if not isinstance(obj, dict):
        raise ProtocolError(Code.BAD_FRAME, "a message must be a map")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(Code.BAD_FRAME, 'a message needs a string "type"', _seq_of(obj))
    return TYPES.get(kind), kind, obj


# ---- validation of client fields -------------------------------------------------------


def _bad(message: str, code: Code = Code.BAD_MESSAGE) -> ProtocolError:
    return ProtocolError(code, message)


def _int(obj: Mapping[str, Any], key: str, lo: int, hi: int, default: int | None) -> int | None:
    value = obj.get(key)
    if value is None:
        return default
    if type(value) is not int or not lo <= value <= hi:
        raise _bad(f"{key} must be an integer from {lo} to {hi}")
    return value


def _seq(obj: Mapping[str, Any]) -> int | None:
    return _int(obj, "seq", 0, MAX_SEQ, None)


def _seq_of(obj: Mapping[str, Any]) -> int | None:
    """The map's seq when it is a valid one (to name it in an error), else None."""
    seq = obj.get("seq")
    return seq if type(seq) is int and 0 <= seq <= MAX_SEQ else None


def _number(value: Any, limit: float, what: str) -> float:
    """A number as sent (an int stays an int), finite and within ±limit."""
    if type(value) is int:
        if abs(value) > limit:
            raise _bad(f"{what} must be within ±{limit:g}", Code.BAD_NUMBER)
        return value
    if type(value) is not float:
        raise _bad(f"{what} must be numbers")
    if not math.isfinite(value):
        raise _bad(f"{what} must be finite", Code.BAD_NUMBER)
    if abs(value) > limit:
        raise _bad(f"{what} must be within ±{limit:g}", Code.BAD_NUMBER)
    return value


def _point(p: Any, limit: float) -> tuple[float, ...]:
    if not isinstance(p, list) or len(p) not in (2, 3):
        raise _bad("each point must be [x, y] or [x, y, t]")
    x, y = _number(p[0], limit, "coordinates"), _number(p[1], limit, "coordinates")
    return (x, y) if len(p) == 2 else (x, y, _number(p[2], MAX_TIME, "t"))


def _points(obj: Mapping[str, Any], limits: Limits, required: bool) -> Points:
    raw = obj.get("points")
    if raw is None and not required:
        return ()
    if not isinstance(raw, list):
        raise _bad("points must be a list of [x, y] or [x, y, t]")
    if len(raw) > limits.max_points_per_message:
        text = f"at most {limits.max_points_per_message} points per message"
        raise _bad(text, Code.TOO_MANY_POINTS)
    return tuple(_point(p, limits.max_coordinate) for p in raw)


def _token(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= 256:
        raise _bad(f"{key} must be a string of 1 to 256 characters")
    return value


def _hello(obj: Mapping[str, Any], limits: Limits) -> Hello:
    version = obj.get("version")
    if type(version) is not int or version != VERSION:
        shown = repr(version)[:40]
        raise _bad(f"protocol version {shown} unsupported; use {VERSION}", Code.BAD_VERSION)
    preview = obj.get("preview", False)
    if preview is not None and not isinstance(preview, bool):
        raise _bad("preview must be true or false")
    resume = obj.get("resume")
    if resume is not None and (not isinstance(resume, str) or len(resume) > 256):
        raise _bad("resume must be a string of at most 256 characters")
    top_k = _int(obj, "top_k", 1, MAX_TOP_K, 3)
    assert top_k is not None
    return Hello(version, top_k, bool(preview), resume, _seq(obj))


_PARSE: dict[type, Callable[[Mapping[str, Any], Limits], ClientMessage]] = {
    Hello: _hello,
    Start: lambda o, lim: Start(_points(o, lim, False), _seq(o)),
    PointsMsg: lambda o, lim: PointsMsg(_points(o, lim, True), _seq(o)),
    End: lambda o, lim: End(_points(o, lim, False), _seq(o)),
    Undo: lambda o, lim: Undo(_seq(o)),
    Clear: lambda o, lim: Clear(_seq(o)),
    Recognize: lambda o, lim: Recognize(_seq(o)),
    Ping: lambda o, lim: Ping(_seq(o)),
    Share: lambda o, lim: Share(_seq(o)),
    Join: lambda o, lim: Join(_token(o, "room"), _token(o, "token"), _seq(o)),
    Leave: lambda o, lim: Leave(_seq(o)),
}


def decode(data: bytes | str, limits: Limits = DEFAULT_LIMITS) -> ClientMessage:
    """Parse and validate one client frame (the server side). Raises ProtocolError naming
    what is wrong, with the frame's seq when it has a valid one. Unknown fields are ignored;
    an optional field that is null counts as absent."""
    cls, kind, obj = _typed_map(data)
    parse = _PARSE.get(cls) if cls is not None else None
    if parse is None:
        text = f"unknown message type {kind[:40]!r}"
        raise ProtocolError(Code.UNKNOWN_TYPE, text, _seq_of(obj))
    try:
        return parse(obj, limits)
    except ProtocolError as exc:
        raise exc.with_seq(_seq_of(obj)) from None


# ---- encoding --------------------------------------------------------------------------


def _fields(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _wire(value: Any, binary: bool) -> Any:
    """A field value as msgpack/JSON data: dataclasses become maps, tuples lists, and
    bytes stay bin in msgpack but become base64 text in JSON."""
    if isinstance(value, tuple | list):
        return [_wire(v, binary) for v in value]
    if isinstance(value, bytes):
        return value if binary else base64.b64encode(value).decode("ascii")
    if dataclasses.is_dataclass(value):
        return {name: _wire(getattr(value, name), binary) for name in _fields(type(value))}
    return value


def encode(msg: ServerMessage, binary: bool) -> bytes | str:
    """A server message as a frame: msgpack bytes when `binary`, else JSON text."""
    cls = type(msg)
    obj: dict[str, Any] = {"type": NAMES[cls]}
    for name in _fields(cls):
        value = getattr(msg, name)
        if value is None and (cls, name) in _OMIT_IF_NONE:
            continue
        obj[name] = _wire(value, binary)
    return _dump(obj, binary)


def encode_client(msg: ClientMessage, binary: bool = True) -> bytes | str:
    """A client message as a frame (fields that are None left out)."""
    obj: dict[str, Any] = {"type": NAMES[type(msg)]}
    for name in _fields(type(msg)):
        value = getattr(msg, name)
        if value is not None:
            obj[name] = _wire(value, binary)
    return _dump(obj, binary)


def message_type(msg: ClientMessage | ServerMessage) -> str:
    """The wire "type" of a message."""
    return NAMES[type(msg)]


# ---- decoding server messages (the client side) ------------------------------------------


def _points_from(raw: Any) -> Points:
    return tuple(tuple(p) for p in raw)


def _prediction_from(obj: Mapping[str, Any]) -> Prediction:
    raw_input = obj.get("input")
    if isinstance(raw_input, str):
        raw_input = base64.b64decode(raw_input)
    bbox = obj.get("bbox")
    return Prediction(
        seq=obj.get("seq"),
        final=bool(obj["final"]),
        empty=bool(obj["empty"]),
        top=tuple(Guess(int(g["digit"]), float(g["p"])) for g in obj["top"]),
        bbox=None if bbox is None else (bbox[0], bbox[1], bbox[2], bbox[3]),
        strokes=int(obj["strokes"]),
        input=raw_input,
    )


def _welcome_from(obj: Mapping[str, Any]) -> Welcome:
    known = set(_fields(Limits))
    limits = Limits(**{k: v for k, v in obj["limits"].items() if k in known})
    fields = dataclasses.fields(Welcome)
    required = {f.name for f in fields if f.default is dataclasses.MISSING} - {"limits"}
    optional = {f.name for f in fields if f.default is not dataclasses.MISSING}
    given = {k: obj[k] for k in optional if k in obj and k != "limits"}
    return Welcome(limits=limits, **{k: obj[k] for k in required}, **given)


def _joined_from(o: Mapping[str, Any]) -> Joined:
    members = tuple(Member(str(m["member"]), str(m["role"])) for m in o["members"])
    strokes = tuple(
        RoomStroke(int(s["id"]), str(s["author"]), _points_from(s["points"]), bool(s["open"]))
        for s in o["strokes"]
    )
    return Joined(str(o["room"]), str(o["role"]), str(o["member"]), members, strokes, o.get("seq"))


def _stroke_from(o: Mapping[str, Any]) -> StrokeEvent:
    points = _points_from(o.get("points", ()))
    return StrokeEvent(str(o["room"]), str(o["event"]), int(o["stroke"]), str(o["author"]), points)


_READ: dict[type, Callable[[Mapping[str, Any]], ServerMessage]] = {
    Prediction: _prediction_from,
    Welcome: _welcome_from,
    Error: lambda o: Error(str(o["code"]), str(o["message"]), o.get("seq")),
    Pong: lambda o: Pong(o.get("seq")),
    Shared: lambda o: Shared(
        str(o["room"]), str(o["draw_token"]), str(o["watch_token"]), o.get("seq")
    ),
    Joined: _joined_from,
    Left: lambda o: Left(str(o["room"]), o.get("seq")),
    Presence: lambda o: Presence(str(o["room"]), str(o["event"]), str(o["member"]), str(o["role"])),
    StrokeEvent: _stroke_from,
    Undone: lambda o: Undone(str(o["room"]), int(o["stroke"]), str(o["author"])),
    Cleared: lambda o: Cleared(str(o["room"]), str(o["by"])),
}


def decode_server(data: bytes | str) -> ServerMessage:
    """Parse one server frame (the client side). Raises ProtocolError: BAD_FRAME for
    garbage or a malformed message, UNKNOWN_TYPE for a type this version does not know."""
    cls, kind, obj = _typed_map(data)
    read = _READ.get(cls) if cls is not None else None
    if read is None:
        raise ProtocolError(Code.UNKNOWN_TYPE, f"unknown server message type {kind[:40]!r}")
    try:
        return read(obj)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ProtocolError(Code.BAD_FRAME, f"malformed {kind} message: {exc}") from exc
