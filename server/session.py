"""One client's session: who it is, what it asked for in hello, which drawing it draws on,
and its one state table. It outlives its connection while parked (see server/hub.py).

Belongs here: the session's states and their transitions. Pure: no I/O, no clock. An illegal
message raises ProtocolError and leaves the session as it was. The ink lives in the drawing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from protocol import (
    Clear,
    ClientMessage,
    Code,
    End,
    Hello,
    Join,
    Leave,
    Limits,
    Ping,
    PointsMsg,
    ProtocolError,
    Recognize,
    Share,
    Start,
    Undo,
    Welcome,
)
from server.drawing import Drawing


class State(Enum):
    AWAIT_HELLO = "await_hello"
    READY = "ready"  # welcomed: drawing, alone or in a room
    PARKED = "parked"  # its connection dropped; waiting for the resume token


_READY_TYPES = (Start, PointsMsg, End, Undo, Clear, Recognize, Ping, Share, Join, Leave)

#: (state, message type) -> next state. A pair missing here is illegal in that state.
#: A hello with `resume` is a hello like any other: it may turn into a resumed session.
TABLE: dict[tuple[State, type], State] = {
    (State.AWAIT_HELLO, Hello): State.READY,
    **{(State.READY, t): State.READY for t in _READY_TYPES},
}


@dataclass(frozen=True, slots=True)
class Identity:
    """What welcome tells a client about this session and the server."""

    session: str
    resume_token: str
    model: str
    accelerator: str
    runtime: str
    limits: Limits = field(default_factory=Limits)
    client: str = ""  # the client's address, for per-client quotas; never sent


@dataclass(slots=True)
class Session:
    identity: Identity
    drawing: Drawing | None = None  # its own canvas, or a room's; None before hello
    state: State = State.AWAIT_HELLO
    top_k: int = 3
    preview: bool = False

    @property
    def member(self) -> str:
        """Its id: its name on every canvas it draws on."""
        return self.identity.session

    def advance(self, msg: ClientMessage) -> None:
        """Take the transition `msg` makes; ProtocolError if it is illegal here."""
        following = TABLE.get((self.state, type(msg)))
        if following is None:
            raise self._illegal(msg)
        self.state = following

    def welcome(self, hello: Hello, resumed: bool, resume_error: str | None) -> Welcome:
        """Take hello's options and say welcome (the own ink counted, 0 in a room)."""
        self.top_k, self.preview = hello.top_k, hello.preview
        i, canvas = self.identity, self.drawing.canvas if self.drawing else None
        solo = canvas is not None and canvas.room is None
        return Welcome(
            i.session, i.resume_token, i.model, i.accelerator, i.runtime,
            hello.top_k, hello.preview, i.limits, resumed=resumed, resume_error=resume_error,
            strokes=canvas.inked if canvas and solo else 0,
            points=canvas.points if canvas and solo else 0,
        )  # fmt: skip

    def _illegal(self, msg: ClientMessage) -> ProtocolError:
        if self.state is State.AWAIT_HELLO:
            return ProtocolError(Code.HELLO_FIRST, "the first message must be hello", msg.seq)
        return ProtocolError(Code.ALREADY_HELLO, "hello was already received", msg.seq)
