"""The messages of the wire protocol, version 1, as frozen dataclasses, and the limits a
server announces. No codec here (protocol/codec.py), no behaviour. See docs/PROTOCOL.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

VERSION = 1
MAX_TOP_K = 10
MAX_SEQ = 2**53 - 1  # exact in JSON numbers and doubles
MAX_TIME = 1e15  # bound on a point's t (any clock in ms, epoch included)

Point = tuple[float, ...]  # (x, y) or (x, y, t), each an int or a float as the client sent it
Points = tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class Limits:
    """Every limit a connection obeys; all are server settings, all announced in welcome."""

    max_frame_bytes: int = 65536
    max_points_per_message: int = 512
    max_points_per_session: int = 20000
    max_strokes_per_session: int = 100
    max_coordinate: float = 1e6
    messages_per_second: float = 200.0
    message_burst: int = 400
    points_per_second: float = 4000.0
    points_burst: int = 20000
    points_per_second_per_client: float = 8000.0
    points_burst_per_client: int = 40000
    max_connections: int = 4096
    max_connections_per_client: int = 64
    idle_timeout_s: float = 300.0
    hello_timeout_s: float = 5.0
    heartbeat_s: float = 30.0
    send_buffer_bytes: int = 65536
    max_members_per_room: int = 16
    max_rooms: int = 1000
    max_rooms_per_client: int = 20
    room_empty_ttl_s: float = 300.0
    resume_grace_s: float = 60.0
    room_predictions_per_second: float = 20.0

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


Ink = Start | PointsMsg | End | Undo | Clear  # the messages that change the ink
ClientMessage = Hello | Ink | Recognize | Ping | Share | Join | Leave

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
    bbox: tuple[float, float, float, float] | None = None  # as the client's numbers were
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
