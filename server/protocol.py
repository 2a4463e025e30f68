"""The wire protocol, version 1: message types, their codecs and the limits they obey.

Belongs here: frozen message dataclasses, decode/encode for both directions (msgpack in
binary frames, JSON in text frames), validation of every client field. No I/O, no state,
no clock; a decode failure is a ClientError with a stable code. See docs/PROTOCOL.md.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from server.errors import ClientError, Code

VERSION = 1
MAX_TOP_K = 10
MAX_SEQ = 2**53 - 1  # exact in JSON numbers and doubles
MAX_TIME = 1e15  # bound on a point's t (any clock in ms, epoch included)

Point = tuple[float, ...]  # (x, y) or (x, y, t)
Points = tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class Limits:
    """Every limit a connection obeys; all are settings and all are announced in welcome."""

    max_frame_bytes: int = 65536
    max_points_per_message: int = 512
    max_points_per_session: int = 20000
    max_strokes_per_session: int = 100
    max_coordinate: float = 1e6
    messages_per_second: float = 200.0
    message_burst: int = 400
    max_connections: int = 4096
    max_connections_per_client: int = 64
    idle_timeout_s: float = 300.0
    heartbeat_s: float = 30.0
    max_members_per_room: int = 16
    max_rooms: int = 1000
    max_rooms_per_client: int = 20
    room_empty_ttl_s: float = 300.0
    resume_grace_s: float = 60.0

    def to_wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---- client -> server ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    version: int = VERSION
    top_k: int = 3
    preview: bool = False
    resume: str | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Start:
    """Begin a new stroke, optionally with its first points."""

    points: Points = ()
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class PointsMsg:
    """Append points to the open stroke (wire type "points")."""

    points: Points = ()
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class End:
    """End the open stroke, optionally with its last points."""

    points: Points = ()
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Undo:
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Clear:
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Recognize:
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Share:
    """Turn this session into a shared one (a room seeded with its ink)."""

    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Join:
    """Enter a room with its draw or watch token."""

    room: str
    token: str
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    """Leave the room, keeping a copy of its ink as this session's own."""

    seq: int | None = None


ClientMessage = (
    Hello | Start | PointsMsg | End | Undo | Clear | Recognize | Ping | Share | Join | Leave
)

# ---- server -> client ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Welcome:
    session: str
    resume_token: str
    model: str
    accelerator: str
    runtime: str
    top_k: int
    preview: bool
    limits: Limits = field(default_factory=Limits)
    version: int = VERSION
    resumed: bool = False  # the session is the one `hello.resume` named
    resume_error: str | None = None  # why it was not: resume_expired | resume_unknown
    strokes: int = 0  # the session's own ink, as restored
    points: int = 0


@dataclass(frozen=True, slots=True)
class Guess:
    digit: int
    p: float


@dataclass(frozen=True, slots=True)
class Prediction:
    """The model's answer for the ink as of client message `seq`."""

    seq: int | None
    final: bool
    empty: bool
    top: tuple[Guess, ...] = ()
    bbox: tuple[float, float, float, float] | None = None
    strokes: int = 0
    input: bytes | None = None  # 784 uint8, row-major, 255 = ink; only with preview
    verdict: str | None = None  # "digit" | "unsure" | "not_digit"; None for empty ink


@dataclass(frozen=True, slots=True)
class Error:
    code: str
    message: str
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Pong:
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class RoomStroke:
    """One stroke of a shared canvas, as `joined` lists it."""

    id: int
    author: str
    points: Points
    open: bool


@dataclass(frozen=True, slots=True)
class Member:
    member: str
    role: str  # "draw" | "watch"


@dataclass(frozen=True, slots=True)
class Shared:
    """Answer to share: the room and its two secret tokens."""

    room: str
    draw_token: str
    watch_token: str
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Joined:
    """Answer to join (and to a resume in a room): the whole room as it is now."""

    room: str
    role: str
    member: str
    members: tuple[Member, ...] = ()
    strokes: tuple[RoomStroke, ...] = ()
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Left:
    """Answer to leave."""

    room: str
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Presence:
    """Someone joined or left the room."""

    room: str
    event: str  # "joined" | "left"
    member: str
    role: str


@dataclass(frozen=True, slots=True)
class StrokeEvent:
    """Another member started, extended or ended a stroke (wire type "stroke")."""

    room: str
    event: str  # "start" | "points" | "end"
    stroke: int
    author: str
    points: Points = ()


@dataclass(frozen=True, slots=True)
class Undone:
    """A member undid one of their strokes."""

    room: str
    stroke: int
    author: str


@dataclass(frozen=True, slots=True)
class Cleared:
    """A member cleared the shared canvas."""

    room: str
    by: str


RoomMessage = Shared | Joined | Left | Presence | StrokeEvent | Undone | Cleared
ServerMessage = Welcome | Prediction | Error | Pong | RoomMessage

# ---- framing ---------------------------------------------------------------------------


def _load(data: bytes | str) -> Any:
    """A frame's payload: msgpack for bytes, JSON for str; ClientError(BAD_FRAME) if neither."""
    try:
        if isinstance(data, str):
            return json.loads(data)
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
        kind = "JSON" if isinstance(data, str) else "msgpack"
        raise ClientError(Code.BAD_FRAME, f"frame is not valid {kind}") from exc


def _dump(obj: dict[str, Any], binary: bool) -> bytes | str:
    if binary:
        packed: bytes = msgpack.packb(obj, use_bin_type=True)
        return packed
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def _typed_map(data: bytes | str) -> tuple[str, Mapping[str, Any]]:
    obj = _load(data)
    if not isinstance(obj, dict):
        raise ClientError(Code.BAD_FRAME, "a message must be a map")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ClientError(Code.BAD_FRAME, 'a message needs a string "type"')
    return kind, obj


# ---- validation of client fields -------------------------------------------------------


def _bad(message: str, code: Code = Code.BAD_MESSAGE) -> ClientError:
    return ClientError(code, message)


def _int(obj: Mapping[str, Any], key: str, lo: int, hi: int, default: int | None) -> int | None:
    value = obj.get(key, default)
    if value is None:
        return None
    if type(value) is not int or not lo <= value <= hi:
        raise _bad(f"{key} must be an integer from {lo} to {hi}")
    return value


def _seq(obj: Mapping[str, Any]) -> int | None:
    return _int(obj, "seq", 0, MAX_SEQ, None)


def _number(value: Any, limit: float) -> float:
    if type(value) not in (int, float):
        raise _bad("coordinates must be numbers")
    if type(value) is float and not math.isfinite(value):
        raise _bad("coordinates must be finite", Code.BAD_NUMBER)
    if abs(value) > limit:
        raise _bad(f"coordinates must be within ±{limit:g}", Code.BAD_NUMBER)
    return float(value)


def _points(obj: Mapping[str, Any], limits: Limits, required: bool) -> Points:
    raw = obj.get("points")
    if raw is None and not required:
        return ()
    return parse_points(raw, limits.max_points_per_message, limits.max_coordinate, "message")


def parse_points(raw: Any, max_points: int, max_coordinate: float, per: str) -> Points:
    """Validate a JSON/msgpack list of [x, y] or [x, y, t] points (at most `max_points`,
    "per" naming what holds them in the error). Raises ClientError."""
    if not isinstance(raw, list):
        raise _bad("points must be a list of [x, y] or [x, y, t]")
    if len(raw) > max_points:
        raise _bad(f"at most {max_points} points per {per}", Code.TOO_MANY_POINTS)
    out = []
    for p in raw:
        if not isinstance(p, list) or len(p) not in (2, 3):
            raise _bad("each point must be [x, y] or [x, y, t]")
        x, y = _number(p[0], max_coordinate), _number(p[1], max_coordinate)
        out.append((x, y) if len(p) == 2 else (x, y, _number(p[2], MAX_TIME)))
    return tuple(out)


def _token(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= 256:
        raise _bad(f"{key} must be a string of 1 to 256 characters")
    return value


def _hello(obj: Mapping[str, Any], limits: Limits) -> Hello:
    version = _int(obj, "version", 0, MAX_SEQ, None)
    if version is None:
        raise _bad("hello needs an integer version")
    if version != VERSION:
        raise ClientError(
            Code.BAD_VERSION, f"protocol version {version} unsupported; use {VERSION}"
        )
    preview = obj.get("preview", False)
    if not isinstance(preview, bool):
        raise _bad("preview must be true or false")
    resume = obj.get("resume")
    if resume is not None and (not isinstance(resume, str) or len(resume) > 256):
        raise _bad("resume must be a string of at most 256 characters")
    top_k = _int(obj, "top_k", 1, MAX_TOP_K, 3)
    assert top_k is not None
    return Hello(version, top_k, preview, resume, _seq(obj))


_DECODERS: dict[str, Callable[[Mapping[str, Any], Limits], ClientMessage]] = {
    "hello": _hello,
    "start": lambda o, lim: Start(_points(o, lim, False), _seq(o)),
    "points": lambda o, lim: PointsMsg(_points(o, lim, True), _seq(o)),
    "end": lambda o, lim: End(_points(o, lim, False), _seq(o)),
    "undo": lambda o, lim: Undo(_seq(o)),
    "clear": lambda o, lim: Clear(_seq(o)),
    "recognize": lambda o, lim: Recognize(_seq(o)),
    "ping": lambda o, lim: Ping(_seq(o)),
    "share": lambda o, lim: Share(_seq(o)),
    "join": lambda o, lim: Join(_token(o, "room"), _token(o, "token"), _seq(o)),
    "leave": lambda o, lim: Leave(_seq(o)),
}


def peek_seq(data: bytes | str) -> int | None:
    """The frame's "seq" when it is a map with a valid one, for naming it in an error."""
    try:
        obj = _load(data)
        return _seq(obj) if isinstance(obj, dict) else None
    except ClientError:
        return None


def decode(data: bytes | str, limits: Limits = Limits()) -> ClientMessage:
    """Parse and validate one client frame. Raises ClientError naming what is wrong,
    with the frame's seq when it has one. Unknown fields are ignored."""
    kind, obj = _typed_map(data)
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise ClientError(Code.UNKNOWN_TYPE, f"unknown message type {kind[:40]!r}", peek_seq(data))
    try:
        return decoder(obj, limits)
    except ClientError as exc:
        raise exc.with_seq(peek_seq(data)) from None


# ---- encoding --------------------------------------------------------------------------

_CLIENT_TYPES: dict[type, str] = {
    Hello: "hello",
    Start: "start",
    PointsMsg: "points",
    End: "end",
    Undo: "undo",
    Clear: "clear",
    Recognize: "recognize",
    Ping: "ping",
    Share: "share",
    Join: "join",
    Leave: "leave",
}


def message_type(msg: ClientMessage) -> str:
    """The wire "type" of a client message."""
    return _CLIENT_TYPES[type(msg)]


def encode_client(msg: ClientMessage, binary: bool = True) -> bytes | str:
    """A client message as a frame: msgpack bytes when `binary`, else JSON text."""
    obj: dict[str, Any] = {"type": _CLIENT_TYPES[type(msg)]}
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        if f.name == "points":
            obj["points"] = [list(p) for p in value]
        elif value is not None:
            obj[f.name] = value
    return _dump(obj, binary)


def _prediction_wire(msg: Prediction, binary: bool) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "prediction",
        "seq": msg.seq,
        "final": msg.final,
        "empty": msg.empty,
        "top": [{"digit": g.digit, "p": g.p} for g in msg.top],
        "bbox": None if msg.bbox is None else list(msg.bbox),
        "strokes": msg.strokes,
        "verdict": msg.verdict,
    }
    if msg.input is not None:
        obj["input"] = msg.input if binary else base64.b64encode(msg.input).decode("ascii")
    return obj


def encode(msg: ServerMessage, binary: bool) -> bytes | str:
    """A server message as a frame: msgpack bytes when `binary`, else JSON text."""
    if isinstance(msg, Prediction):
        return _dump(_prediction_wire(msg, binary), binary)
    if isinstance(msg, Welcome):
        obj = {"type": "welcome", **{f.name: getattr(msg, f.name) for f in dataclasses.fields(msg)}}
        obj["limits"] = msg.limits.to_wire()
        return _dump(obj, binary)
    kind = _SERVER_TYPES[type(msg)]
    return _dump({"type": kind, **dataclasses.asdict(msg)}, binary)


_SERVER_TYPES: dict[type, str] = {
    Error: "error",
    Pong: "pong",
    Shared: "shared",
    Joined: "joined",
    Left: "left",
    Presence: "presence",
    StrokeEvent: "stroke",
    Undone: "undone",
    Cleared: "cleared",
}


# ---- decoding server messages (for clients) ----------------------------------------------


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
        bbox=None
        if bbox is None
        else (float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3])),
        strokes=int(obj["strokes"]),
        input=raw_input,
        verdict=None if obj.get("verdict") is None else str(obj["verdict"]),
    )


def _welcome_from(obj: Mapping[str, Any]) -> Welcome:
    known = {f.name for f in dataclasses.fields(Limits)}
    limits = Limits(**{k: v for k, v in obj["limits"].items() if k in known})
    fields = dataclasses.fields(Welcome)
    required = {f.name for f in fields if f.default is dataclasses.MISSING} - {"limits"}
    optional = {f.name for f in fields if f.default is not dataclasses.MISSING}
    given = {k: obj[k] for k in optional if k in obj}
    return Welcome(limits=limits, **{k: obj[k] for k in required}, **given)


def _wire_points(raw: Any) -> Points:
    return tuple(tuple(float(v) for v in p) for p in raw)


def _joined_from(o: Mapping[str, Any]) -> Joined:
    members = tuple(Member(str(m["member"]), str(m["role"])) for m in o["members"])
    strokes = tuple(
        RoomStroke(int(s["id"]), str(s["author"]), _wire_points(s["points"]), bool(s["open"]))
        for s in o["strokes"]
    )
    return Joined(str(o["room"]), str(o["role"]), str(o["member"]), members, strokes, o.get("seq"))


def _stroke_from(o: Mapping[str, Any]) -> StrokeEvent:
    points = _wire_points(o.get("points", ()))
    return StrokeEvent(str(o["room"]), str(o["event"]), int(o["stroke"]), str(o["author"]), points)


_SERVER_DECODERS: dict[str, Callable[[Mapping[str, Any]], ServerMessage]] = {
    "prediction": _prediction_from,
    "welcome": _welcome_from,
    "error": lambda o: Error(str(o["code"]), str(o["message"]), o.get("seq")),
    "pong": lambda o: Pong(o.get("seq")),
    "shared": lambda o: Shared(
        str(o["room"]), str(o["draw_token"]), str(o["watch_token"]), o.get("seq")
    ),
    "joined": _joined_from,
    "left": lambda o: Left(str(o["room"]), o.get("seq")),
    "presence": lambda o: Presence(
        str(o["room"]), str(o["event"]), str(o["member"]), str(o["role"])
    ),
    "stroke": _stroke_from,
    "undone": lambda o: Undone(str(o["room"]), int(o["stroke"]), str(o["author"])),
    "cleared": lambda o: Cleared(str(o["room"]), str(o["by"])),
}


def decode_server(data: bytes | str) -> ServerMessage:
    """Parse one server frame (the client side). Raises ClientError(BAD_FRAME) on garbage."""
    kind, obj = _typed_map(data)
    decoder = _SERVER_DECODERS.get(kind)
    if decoder is None:
        raise ClientError(Code.UNKNOWN_TYPE, f"unknown server message type {kind[:40]!r}")
    try:
        return decoder(obj)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ClientError(Code.BAD_FRAME, f"malformed {kind} message: {exc}") from exc
