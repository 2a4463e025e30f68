"""Joining a shared session (room) from the client, until the client library speaks rooms.

Belongs here: `RoomClient`, a DigitsClient that can send `join {room, token}` and read the
`joined` answer (docs: the rooms proposal in issue 5). An `error` answering the join means
the token was refused. Remove once client/client.py has `join()`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import msgpack

from client.client import DigitsClient, DigitsClientError
from server.protocol import Error, ServerMessage


class JoinRefused(DigitsClientError):
    """The server refused to join the room: wrong or expired token, unknown room, or a
    server without rooms. `code` is the server's error code."""

    def __init__(self, room: str, error: Error) -> None:
        hint = " (this server does not support rooms)" if error.code == "unknown_type" else ""
        super().__init__(f"joining room {room!r} was refused: {error.code}: {error.message}{hint}")
        self.code = error.code


@dataclass(frozen=True, slots=True)
class Joined:
    """The server's `joined` answer: the room, this member's role ("draw" or "watch"),
    and everything else it sent (members, strokes, ...) in `raw`."""

    room: str
    role: str
    raw: dict[str, Any]


def _peek(data: bytes | str) -> dict[str, Any] | None:
    """The frame as a map if it is one, else None (the library reports garbage)."""
    try:
        obj = json.loads(data) if isinstance(data, str) else msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    return obj if isinstance(obj, dict) else None


class RoomClient(DigitsClient):
    """A DigitsClient with `join()`; otherwise identical."""

    _join: tuple[str, int, asyncio.Future[Joined]] | None = None

    async def join(self, room: str, token: str, wait_s: float = 10.0) -> Joined:
        """Join `room` with a draw or watch token; raises JoinRefused if refused."""
        seq = self._next_seq()
        future: asyncio.Future[Joined] = asyncio.get_running_loop().create_future()
        self._join = (room, seq, future)
        try:
            await self._send_raw({"type": "join", "room": room, "token": token, "seq": seq})
            return await asyncio.wait_for(future, wait_s)
        finally:
            self._join = None

    async def _send_raw(self, obj: dict[str, Any]) -> None:
        if self.binary:
            await self._ws.send_bytes(msgpack.packb(obj, use_bin_type=True))
        else:
            await self._ws.send_str(json.dumps(obj))

    def _dispatch(self, data: bytes | str) -> None:
        if self._join is not None:
            obj = _peek(data)
            if obj is not None and obj.get("type") == "joined":
                self._joined(obj)
                return
        super()._dispatch(data)

    def _joined(self, obj: dict[str, Any]) -> None:
        assert self._join is not None
        room, _, future = self._join
        if not future.done():
            future.set_result(Joined(str(obj.get("room", room)), str(obj.get("role")), obj))

    def _resolve(self, msg: ServerMessage) -> None:
        super()._resolve(msg)
        if isinstance(msg, Error) and self._join is not None:
            room, seq, future = self._join
            if msg.seq in (seq, None) and not future.done():
                future.set_exception(JoinRefused(room, msg))
