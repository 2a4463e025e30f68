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

from protocol import messages as m
from protocol.errors import Code, ProtocolError

#: The one registry: wire "type" -> message class, both directions.
TYPES: dict[str, type] = {
    "hello": m.Hello,
    "start": m.Start,
    "points": m.PointsMsg,
    "end": m.End,
    "undo": m.Undo,
    "clear": m.Clear,
    "recognize": m.Recognize,
    "ping": m.Ping,
    "share": m.Share,
    "join": m.Join,
    "leave": m.Leave,
    "welcome": m.Welcome,
    "prediction": m.Prediction,
    "error": m.Error,
    "pong": m.Pong,
    "shared": m.Shared,
    "joined": m.Joined,
    "left": m.Left,
    "presence": m.Presence,
    "stroke": m.StrokeEvent,
    "undone": m.Undone,
    "cleared": m.Cleared,
}
DEFAULT_LIMITS = m.Limits()
NAMES: dict[type, str] = {cls: name for name, cls in TYPES.items()}
_FIELDS: dict[type, tuple[str, ...]] = {}  # filled lazily: field names per dataclass
_OMIT_IF_NONE = {(m.Prediction, "input")}  # server fields left out when None

# ---- framing ---------------------------------------------------------------------------


_UNPACK_ERRORS = (ValueError, TypeError, RecursionError, msgpack.UnpackException)
_INT_DIGITS = 4000  # longer JSON integers: beyond Python's int parsing limit (4300 digits)


def _load(data: bytes | str) -> Any:
    """A frame's payload: msgpack for bytes, JSON for str; BAD_FRAME if neither."""
    try:
        if isinstance(data, str):
            return load_json(data)
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except _UNPACK_ERRORS as exc:
        return _load_again(data, exc)


def load_json(data: bytes | str) -> Any:
    """`json.loads`, except that an integer literal too long for Python's int is read as an
    infinite float, which the checks of the fields the server reads refuse (`bad_number` for
    a coordinate). Only text that fails to load is parsed again. Raises ValueError or
    RecursionError for what is not JSON."""
    try:
        return json.loads(data)
    except ValueError:
        return json.loads(data, parse_int=_long_int)


def _load_again(data: bytes | str, cause: BaseException) -> Any:
    """Why a frame that failed to load is refused; a msgpack map whose keys are not all
    strings is valid msgpack (only such frames pay for the second parse), refused for its
    keys."""
    if isinstance(data, str):
        raise ProtocolError(Code.BAD_FRAME, "frame is not valid JSON") from cause
    try:  # arrays as tuples: an array key is hashable; a map key is not (TypeError)
        msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=False)
    except TypeError:
        pass
    except _UNPACK_ERRORS:
        raise ProtocolError(Code.BAD_FRAME, "frame is not valid msgpack") from cause
    raise ProtocolError(Code.BAD_FRAME, "map keys must be strings") from cause


def _long_int(text: str) -> int | float:
    """A JSON integer literal; one too long for an int is a float (±inf)."""
    return int(text) if len(text) <= _INT_DIGITS else float(text)


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
    return _int(obj, "seq", 0, m.MAX_SEQ, None)


def _seq_of(obj: Mapping[str, Any]) -> int | None:
    """The map's seq when it is a valid one (to name it in an error), else None."""
    seq = obj.get("seq")
    return seq if type(seq) is int and 0 <= seq <= m.MAX_SEQ else None


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


def _points(obj: Mapping[str, Any], limits: m.Limits, required: bool) -> m.Points:
    raw = obj.get("points")
    if raw is None and not required:
        return ()
    return parse_points(raw, limits.max_points_per_message, limits.max_coordinate, "message")


def parse_points(raw: Any, max_points: int, max_coordinate: float, per: str) -> m.Points:
    """Validate a list of [x, y] or [x, y, t] points (at most `max_points`, `per` naming
    what holds them in the error), numbers kept as sent. Raises ProtocolError."""
    if not isinstance(raw, list):
        raise _bad("points must be a list of [x, y] or [x, y, t]")
    if len(raw) > max_points:
        raise _bad(f"at most {max_points} points per {per}", Code.TOO_MANY_POINTS)
    out: list[tuple[float, ...]] = []
    lim = max_coordinate
    for p in raw:  # the server's hottest loop: plain numbers in range pass without a call
        if type(p) is list and len(p) == 2:
            x, y = p
            if (
                (type(x) is float or type(x) is int)
                and (type(y) is float or type(y) is int)
                and -lim <= x <= lim  # NaN and infinities fail these: the checked path
                and -lim <= y <= lim
            ):
                out.append((x, y))
                continue
        out.append(_point(p, max_coordinate))
    return tuple(out)


def _point(p: Any, max_coordinate: float) -> tuple[float, ...]:
    """One point, checked field by field (the error names what is wrong)."""
    if not isinstance(p, list) or not 2 <= len(p) <= 3:
        raise _bad("each point must be [x, y] or [x, y, t]")
    x = _number(p[0], max_coordinate, "coordinates")
    y = _number(p[1], max_coordinate, "coordinates")
    return (x, y) if len(p) == 2 else (x, y, _number(p[2], m.MAX_TIME, "t"))


def _token(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= 256:
        raise _bad(f"{key} must be a string of 1 to 256 characters")
    return value


def _hello(obj: Mapping[str, Any], limits: m.Limits) -> m.Hello:
    version = obj.get("version")
    if type(version) is not int or version != m.VERSION:
        shown = repr(version)[:40]
        raise _bad(f"protocol version {shown} unsupported; use {m.VERSION}", Code.BAD_VERSION)
    preview = obj.get("preview", False)
    if preview is not None and not isinstance(preview, bool):
        raise _bad("preview must be true or false")
    resume = obj.get("resume")
    if resume is not None and (not isinstance(resume, str) or len(resume) > 256):
        raise _bad("resume must be a string of at most 256 characters")
    top_k = _int(obj, "top_k", 1, m.MAX_TOP_K, 3)
    assert top_k is not None
    return m.Hello(version, top_k, bool(preview), resume, _seq(obj))


_PARSE: dict[type, Callable[[Mapping[str, Any], m.Limits], m.ClientMessage]] = {
    m.Hello: _hello,
    m.Start: lambda o, lim: m.Start(_points(o, lim, False), _seq(o)),
    m.PointsMsg: lambda o, lim: m.PointsMsg(_points(o, lim, True), _seq(o)),
    m.End: lambda o, lim: m.End(_points(o, lim, False), _seq(o)),
    m.Undo: lambda o, lim: m.Undo(_seq(o)),
    m.Clear: lambda o, lim: m.Clear(_seq(o)),
    m.Recognize: lambda o, lim: m.Recognize(_seq(o)),
    m.Ping: lambda o, lim: m.Ping(_seq(o)),
    m.Share: lambda o, lim: m.Share(_seq(o)),
    m.Join: lambda o, lim: m.Join(_token(o, "room"), _token(o, "token"), _seq(o)),
    m.Leave: lambda o, lim: m.Leave(_seq(o)),
}


def decode(data: bytes | str, limits: m.Limits = DEFAULT_LIMITS) -> m.ClientMessage:
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


_SCALARS = frozenset({int, float, str, bool, type(None)})


def _fields(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _wire(value: Any, binary: bool) -> Any:
    """A field value as msgpack/JSON data: dataclasses become maps, tuples lists, and
    bytes stay bin in msgpack but become base64 text in JSON. Scalars are passed through
    without a call (every prediction goes through here)."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is tuple or kind is list:
        return [v if type(v) in _SCALARS else _wire(v, binary) for v in value]
    if kind is bytes:
        return value if binary else base64.b64encode(value).decode("ascii")
    names = _FIELDS.get(kind)
    if names is None and dataclasses.is_dataclass(value):
        names = _fields(kind)
    if names is None:
        return value  # a str or int subclass (an enum member), as msgpack and JSON write it
    fields = [(name, getattr(value, name)) for name in names]
    return {n: v if type(v) in _SCALARS else _wire(v, binary) for n, v in fields}


def encode(msg: m.ServerMessage, binary: bool) -> bytes | str:
    """A server message as a frame: msgpack bytes when `binary`, else JSON text."""
    cls = type(msg)
    obj: dict[str, Any] = {"type": NAMES[cls]}
    for name in _fields(cls):
        value = getattr(msg, name)
        if type(value) in _SCALARS:
            if value is None and (cls, name) in _OMIT_IF_NONE:
                continue
            obj[name] = value
        else:
            obj[name] = _wire(value, binary)
    return _dump(obj, binary)


def encode_client(msg: m.ClientMessage, binary: bool = True) -> bytes | str:
    """A client message as a frame (fields that are None left out)."""
    obj: dict[str, Any] = {"type": NAMES[type(msg)]}
    for name in _fields(type(msg)):
        value = getattr(msg, name)
        if value is not None:
            obj[name] = _wire(value, binary)
    return _dump(obj, binary)


def message_type(msg: m.ClientMessage | m.ServerMessage) -> str:
    """The wire "type" of a message."""
    return NAMES[type(msg)]


# ---- decoding server messages (the client side) ------------------------------------------


def _points_from(raw: Any) -> m.Points:
    return tuple(tuple(p) for p in raw)


def _prediction_from(obj: Mapping[str, Any]) -> m.Prediction:
    raw_input = obj.get("input")
    if isinstance(raw_input, str):
        raw_input = base64.b64decode(raw_input)
    bbox = obj.get("bbox")
    return m.Prediction(
        seq=obj.get("seq"),
        final=bool(obj["final"]),
        empty=bool(obj["empty"]),
        top=tuple(m.Guess(int(g["digit"]), float(g["p"])) for g in obj["top"]),
        bbox=None if bbox is None else (bbox[0], bbox[1], bbox[2], bbox[3]),
        strokes=int(obj["strokes"]),
        input=raw_input,
        verdict=None if obj.get("verdict") is None else str(obj["verdict"]),
    )


def _welcome_from(obj: Mapping[str, Any]) -> m.Welcome:
    known = set(_fields(m.Limits))
    limits = m.Limits(**{k: v for k, v in obj["limits"].items() if k in known})
    fields = dataclasses.fields(m.Welcome)
    required = {f.name for f in fields if f.default is dataclasses.MISSING} - {"limits"}
    optional = {f.name for f in fields if f.default is not dataclasses.MISSING}
    given = {k: obj[k] for k in optional if k in obj and k != "limits"}
    return m.Welcome(limits=limits, **{k: obj[k] for k in required}, **given)


def _joined_from(o: Mapping[str, Any]) -> m.Joined:
    members = tuple(m.Member(str(x["member"]), str(x["role"])) for x in o["members"])
    strokes = tuple(
        m.RoomStroke(int(s["id"]), str(s["author"]), _points_from(s["points"]), bool(s["open"]))
        for s in o["strokes"]
    )
    return m.Joined(
        str(o["room"]), str(o["role"]), str(o["member"]), members, strokes, o.get("seq")
    )


def _stroke_from(o: Mapping[str, Any]) -> m.StrokeEvent:
    points = _points_from(o.get("points", ()))
    return m.StrokeEvent(
        str(o["room"]), str(o["event"]), int(o["stroke"]), str(o["author"]), points
    )


_READ: dict[type, Callable[[Mapping[str, Any]], m.ServerMessage]] = {
    m.Prediction: _prediction_from,
    m.Welcome: _welcome_from,
    m.Error: lambda o: m.Error(str(o["code"]), str(o["message"]), o.get("seq")),
    m.Pong: lambda o: m.Pong(o.get("seq")),
    m.Shared: lambda o: m.Shared(
        str(o["room"]), str(o["draw_token"]), str(o["watch_token"]), o.get("seq")
    ),
    m.Joined: _joined_from,
    m.Left: lambda o: m.Left(str(o["room"]), o.get("seq")),
    m.Presence: lambda o: m.Presence(
        str(o["room"]), str(o["event"]), str(o["member"]), str(o["role"])
    ),
    m.StrokeEvent: _stroke_from,
    m.Undone: lambda o: m.Undone(str(o["room"]), int(o["stroke"]), str(o["author"])),
    m.Cleared: lambda o: m.Cleared(str(o["room"]), str(o["by"])),
}


def decode_server(data: bytes | str) -> m.ServerMessage:
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
