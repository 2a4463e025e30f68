"""Error and close codes of the wire protocol, and the error that carries them.

Belongs here: every stable code an `error` message can carry, the WebSocket close code that
follows the fatal ones, and ProtocolError, raised by the codec (and by a server for the
client's faults). Deciding what an arbitrary exception becomes is the server's business.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class CloseCode(IntEnum):
    """WebSocket close codes of the protocol (RFC 6455, section 7.4.1)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL = 1011
    SERVICE_RESTART = 1012  # the server process is stopping (a deploy): reconnect and resume
    OVERLOADED = 1013


class Code(StrEnum):
    """Stable error codes sent in `error` messages; clients may switch on them."""

    BAD_FRAME = "bad_frame"  # not msgpack / JSON, or not a map with a string "type"
    UNKNOWN_TYPE = "unknown_type"  # "type" names no client message
    BAD_MESSAGE = "bad_message"  # missing field, wrong type, value out of its range
    BAD_NUMBER = "bad_number"  # NaN, infinity, or a number beyond its bound
    BAD_VERSION = "bad_version"  # hello without a usable version, or one we do not speak
    HELLO_FIRST = "hello_first"  # the first message was not hello
    ALREADY_HELLO = "already_hello"  # a second hello
    NO_STROKE = "no_stroke"  # points or end outside a stroke
    TOO_MANY_POINTS = "too_many_points"  # per message or per drawing
    TOO_MANY_STROKES = "too_many_strokes"  # per drawing
    RATE_LIMITED = "rate_limited"  # messages beyond the token bucket; flooding closes
    FRAME_TOO_BIG = "frame_too_big"  # a frame above max_frame_bytes
    TOO_MANY_CONNECTIONS = "too_many_connections"  # total or per client address
    IDLE_TIMEOUT = "idle_timeout"  # nothing received for idle_timeout_s
    HELLO_TIMEOUT = "hello_timeout"  # no hello within hello_timeout_s of connecting
    OVERLOADED = "overloaded"  # the inference queue is full; try again
    INTERNAL = "internal"  # the server's bug; details are logged, never sent
    ROOM_REFUSED = "room_refused"  # unknown room, wrong or expired token: one code for all
    ROOM_FULL = "room_full"  # max_members_per_room
    TOO_MANY_ROOMS = "too_many_rooms"  # max_rooms, max_rooms_per_client
    ALREADY_IN_ROOM = "already_in_room"  # share or join while in a room
    NOT_IN_ROOM = "not_in_room"  # leave outside a room
    WATCH_ONLY = "watch_only"  # a watcher tried to draw, undo or clear
    TOO_SLOW = "too_slow"  # the client stopped reading; it may resume
    UNAVAILABLE = "unavailable"  # rooms and resume are out of reach for now (shared store)
    # HTTP (/v1/recognize, docs/HTTP.md) only:
    BAD_JSON = "bad_json"  # a body that is not valid JSON
    TOO_MANY_ITEMS = "too_many_items"  # more drawings or images than max_items_per_request
    NOT_AN_IMAGE = "not_an_image"  # the body is not a PNG, JPEG or WebP image
    BAD_IMAGE = "bad_image"  # a truncated, corrupt or zero-sized image
    IMAGE_TOO_BIG = "image_too_big"  # more pixels than max_image_pixels
    NO_INK = "no_ink"  # the image is all one colour
    BODY_TOO_BIG = "body_too_big"  # a request body above max_body_bytes
    UNSUPPORTED_TYPE = "unsupported_type"  # a Content-Type the endpoint does not take
    METHOD_NOT_ALLOWED = "method_not_allowed"  # e.g. GET /v1/recognize: 405, with Allow
    BAD_HOST = "bad_host"  # (any route) a Host the server does not answer to: 421


class ResumeError(StrEnum):
    """Why `hello.resume` did not bring a session back (sent in `welcome.resume_error`)."""

    EXPIRED = "resume_expired"  # the session existed; its grace period is over
    UNKNOWN = "resume_unknown"  # never issued, already used, or still connected elsewhere
    UNAVAILABLE = "resume_unavailable"  # not reachable now (shared store): the token still
    # works; try it again shortly


#: Codes after which the connection is closed, and the close code used.
FATAL: dict[Code, CloseCode] = {
    Code.BAD_VERSION: CloseCode.POLICY,
    Code.HELLO_FIRST: CloseCode.POLICY,
    Code.FRAME_TOO_BIG: CloseCode.TOO_BIG,
    Code.TOO_MANY_CONNECTIONS: CloseCode.OVERLOADED,
    Code.IDLE_TIMEOUT: CloseCode.NORMAL,
    Code.HELLO_TIMEOUT: CloseCode.POLICY,
    Code.INTERNAL: CloseCode.INTERNAL,
    Code.TOO_SLOW: CloseCode.POLICY,
}


class ProtocolError(Exception):
    """A message that breaks the protocol. It travels as an `error` message with `code`,
    followed by a close with `close_code` when the connection cannot continue (by default
    `FATAL[code]`; None keeps the connection). `seq` names the offending message."""

    def __init__(
        self, code: Code, message: str, seq: int | None = None, close_code: CloseCode | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.seq = seq
        self.close_code = close_code if close_code is not None else FATAL.get(code)

    def with_seq(self, seq: int | None) -> ProtocolError:
        """The same error, naming the client sequence number it refers to."""
        return ProtocolError(self.code, self.message, seq, self.close_code)
