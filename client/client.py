"""An asyncio client for the digits-live WebSocket protocol (docs/PROTOCOL.md).

Belongs here: connecting, sending client messages with increasing seq numbers, reading
server messages in a background task, and helpers to stream whole digits. No CLI (see
client/cli.py), no drawing UI.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiohttp

from protocol import (
    Clear,
    ClientMessage,
    End,
    Error,
    Hello,
    Join,
    Joined,
    Leave,
    Left,
    Ping,
    Point,
    PointsMsg,
    Pong,
    Prediction,
    ProtocolError,
    Recognize,
    ServerMessage,
    Share,
    Shared,
    Start,
    Undo,
    Welcome,
    decode_server,
    encode_client,
)

StrokeInput = Sequence[Sequence[float]]  # [[x, y] or [x, y, t], ...]
MessageHook = Callable[[ServerMessage, float], None]
MAX_SERVER_FRAME = 4 * 1024 * 1024  # server messages are small; refuse absurd ones


class DigitsClientError(Exception):
    """Root of the client's errors."""


class ServerError(DigitsClientError):
    """The server answered with an error message (see `code`, stable; docs/PROTOCOL.md)."""

    def __init__(self, error: Error) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.code, self.message, self.seq = error.code, error.message, error.seq


class JoinRefused(ServerError):
    """The server refused to join the room: unknown room, wrong or expired token (all
    `room_refused`, on purpose), a full room, or a server without rooms (`unknown_type`)."""

    def __init__(self, room: str, error: Error) -> None:
        super().__init__(error)
        hint = " (this server does not support rooms)" if error.code == "unknown_type" else ""
        self.args = (f"joining room {room!r} was refused: {error.code}: {error.message}{hint}",)


class ConnectionClosed(DigitsClientError):
    """The connection closed; `code` is the WebSocket close code (1001: server shutdown)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"connection closed (code {code})")
        self.code = code


class DigitsClient:
    """One drawing session over one WebSocket. Create with `connect(...)` or `DigitsClient.open`.

    Sending methods return the seq number they used. Every server message also lands in a
    bounded inbox read by `receive()` / `async for`; when nobody reads, the oldest messages
    are dropped. `latest` is the newest prediction, `welcome` the server's welcome
    (`welcome.resumed` tells whether `resume=` brought the old session back), `room` the
    shared session this client is in, if any.
    """

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        http: aiohttp.ClientSession | None,
        *,
        binary: bool = True,
        inbox_size: int = 256,
        on_message: MessageHook | None = None,
    ) -> None:
        self._ws, self._own_http = ws, http
        self.binary = binary
        self.on_message = on_message
        self.welcome: Welcome | None = None
        self.latest: Prediction | None = None
        self.close_code: int | None = None
        self.room: str | None = None
        self._seq = 0
        self._inbox: asyncio.Queue[ServerMessage] = asyncio.Queue(inbox_size)
        self._waiters: dict[tuple[str, int], asyncio.Future[Any]] = {}
        self._welcomed: asyncio.Future[Welcome] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(), name="digits-client-reader")

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        top_k: int = 3,
        preview: bool = False,
        binary: bool = True,
        session: aiohttp.ClientSession | None = None,
        headers: dict[str, str] | None = None,
        on_message: MessageHook | None = None,
        inbox_size: int = 256,
        wait_s: float = 10.0,
        resume: str | None = None,
    ) -> DigitsClient:
        """Connect to `url` (ws://host:port/ws), say hello and wait for welcome.
        Pass a shared aiohttp `session` to open many clients (give it a connector
        without a connection limit); otherwise the client owns one. `resume`: the
        `resume_token` of a session whose connection dropped; `welcome.resumed` says
        whether it came back (else `welcome.resume_error` says why, and this is a new one)."""
        http = session or aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(url, headers=headers, max_msg_size=MAX_SERVER_FRAME)
        except BaseException:
            if session is None:
                await http.close()
            raise
        client = cls(
            ws,
            None if session else http,
            binary=binary,
            inbox_size=inbox_size,
            on_message=on_message,
        )
        try:
            await client._send(Hello(top_k=top_k, preview=preview, resume=resume))
            client.welcome = await asyncio.wait_for(asyncio.shield(client._welcomed), wait_s)
        except BaseException:
            await client.close()
            raise
        return client

    # ---- sending ------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def _send(self, msg: ClientMessage) -> None:
        if self._ws.closed:
            raise ConnectionClosed(self.close_code or self._ws.close_code)
        data = encode_client(msg, self.binary)
        if isinstance(data, bytes):
            await self._ws.send_bytes(data)
        else:
            await self._ws.send_str(data)

    async def start_stroke(self, points: StrokeInput = ()) -> int:
        """Begin a new stroke, optionally with its first points."""
        seq = self._next_seq()
        await self._send(Start(_points(points), seq))
        return seq

    async def points(self, points: StrokeInput) -> int:
        """Append points to the open stroke."""
        seq = self._next_seq()
        await self._send(PointsMsg(_points(points), seq))
        return seq

    async def end_stroke(self, points: StrokeInput = ()) -> int:
        """End the open stroke, optionally with its last points."""
        seq = self._next_seq()
        await self._send(End(_points(points), seq))
        return seq

    async def undo(self) -> int:
        """Remove the last stroke (or the open one)."""
        seq = self._next_seq()
        await self._send(Undo(seq))
        return seq

    async def clear(self) -> int:
        """Remove all ink."""
        seq = self._next_seq()
        await self._send(Clear(seq))
        return seq

    async def recognize(self, wait_s: float = 10.0) -> Prediction:
        """Ask for the final answer for the ink so far, and wait for it."""
        seq = self._next_seq()
        return await self._request(("final", seq), Recognize(seq), wait_s)  # type: ignore[no-any-return]

    async def ping(self, wait_s: float = 10.0) -> float:
        """Round trip of an application-level ping, in seconds."""
        seq = self._next_seq()
        start = time.perf_counter()
        await self._request(("pong", seq), Ping(seq), wait_s)
        return time.perf_counter() - start

    async def share(self, wait_s: float = 10.0) -> Shared:
        """Share this session: a room seeded with its ink, and the tokens to give out."""
        seq = self._next_seq()
        shared: Shared = await self._request(("shared", seq), Share(seq), wait_s)
        self.room = shared.room
        return shared

    async def join(self, room: str, token: str, wait_s: float = 10.0) -> Joined:
        """Join a room with its draw or watch token: `joined` holds the whole room; live
        messages (stroke, presence, prediction, ...) follow in the inbox. Raises JoinRefused."""
        seq = self._next_seq()
        try:
            joined: Joined = await self._request(("joined", seq), Join(room, token, seq), wait_s)
        except ServerError as exc:
            raise JoinRefused(room, Error(exc.code, exc.message, exc.seq)) from None
        self.room = joined.room
        return joined

    async def leave(self, wait_s: float = 10.0) -> Left:
        """Leave the room, keeping a copy of its ink as this session's own."""
        seq = self._next_seq()
        left: Left = await self._request(("left", seq), Leave(seq), wait_s)
        self.room = None
        return left

    async def _request(self, key: tuple[str, int], msg: ClientMessage, wait_s: float) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[key] = future
        try:
            await self._send(msg)
            return await asyncio.wait_for(future, wait_s)
        finally:
            self._waiters.pop(key, None)

    async def draw(
        self,
        strokes: Sequence[StrokeInput],
        *,
        point_interval: float = 0.012,
        frame_rate: float = 60.0,
        recognize: bool = True,
    ) -> Prediction | None:
        """Stream a whole drawing as a pen would: one point every `point_interval` seconds,
        sent in batches `frame_rate` times a second (as a browser does), then the final
        answer when `recognize`. `point_interval=0` sends as fast as possible."""
        for stroke in strokes:
            await self._stream_stroke(stroke, point_interval, frame_rate)
        return await self.recognize() if recognize else None

    async def _stream_stroke(self, stroke: StrokeInput, interval: float, rate: float) -> None:
        if not stroke:
            return
        await self.start_stroke(stroke[:1])
        if interval <= 0:  # as fast as possible, a few points per message
            for i in range(1, len(stroke), 8):
                await self.points(stroke[i : i + 8])
        else:  # each frame sends the points the pen has reached by then
            loop = asyncio.get_running_loop()
            started, sent = loop.time(), 1
            while sent < len(stroke):
                await asyncio.sleep(1.0 / rate)
                due = min(len(stroke), 1 + int((loop.time() - started) / interval))
                if due > sent:
                    await self.points(stroke[sent:due])
                    sent = due
        await self.end_stroke()

    # ---- receiving ----------------------------------------------------------------------

    async def receive(self) -> ServerMessage:
        """The next server message from the inbox; ConnectionClosed once closed and empty."""
        if self._inbox.empty() and self._reader.done():
            raise ConnectionClosed(self.close_code)
        getter = asyncio.ensure_future(self._inbox.get())
        done, _ = await asyncio.wait({getter, self._reader}, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        raise ConnectionClosed(self.close_code)

    def __aiter__(self) -> AsyncIterator[ServerMessage]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ServerMessage]:
        while True:
            try:
                yield await self.receive()
            except ConnectionClosed:
                return

    async def _read(self) -> None:
        try:
            while True:
                frame = await self._ws.receive()
                if frame.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    self._dispatch(frame.data)
                    continue
                if frame.type is aiohttp.WSMsgType.CLOSE:
                    self.close_code = int(frame.data)  # the server's code, as sent
                break
        finally:
            self.close_code = self.close_code or self._ws.close_code
            self._fail_waiters(ConnectionClosed(self.close_code))

    def _dispatch(self, data: bytes | str) -> None:
        try:
            msg = decode_server(data)
        except ProtocolError:
            return  # a newer server's message we cannot read: skip it
        if self.on_message is not None:
            self.on_message(msg, time.perf_counter())
        self._resolve(msg)
        if self._inbox.full():
            self._inbox.get_nowait()  # nobody is reading: the oldest message goes
        self._inbox.put_nowait(msg)

    def _resolve(self, msg: ServerMessage) -> None:
        if isinstance(msg, Welcome) and not self._welcomed.done():
            self._welcomed.set_result(msg)
        elif isinstance(msg, Prediction):
            self.latest = msg
            if msg.final and msg.seq is not None:
                self._settle(("final", msg.seq), msg)
        elif isinstance(msg, Pong | Shared | Joined | Left) and msg.seq is not None:
            self._settle((_REPLIES[type(msg)], msg.seq), msg)
        elif isinstance(msg, Error):
            err = ServerError(msg)
            if not self._welcomed.done():
                self._welcomed.set_exception(err)
            elif msg.seq is not None:
                for kind in ("final", *_REPLIES.values()):
                    self._settle((kind, msg.seq), err)

    def _settle(self, key: tuple[str, int], value: object) -> None:
        future = self._waiters.get(key)
        if future is None or future.done():
            return
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)

    def _fail_waiters(self, exc: ConnectionClosed) -> None:
        if not self._welcomed.done():
            self._welcomed.set_exception(exc)
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(exc)

    # ---- closing ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def close(self) -> None:
        """Close the socket (1000) and release what the client owns."""
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        if self._welcomed.done() and not self._welcomed.cancelled():
            self._welcomed.exception()  # mark retrieved
        if self._own_http is not None:
            await self._own_http.close()

    async def __aenter__(self) -> DigitsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


_REPLIES: dict[type, str] = {Pong: "pong", Shared: "shared", Joined: "joined", Left: "left"}


def _points(points: StrokeInput) -> tuple[Point, ...]:
    """Points as the wire carries them: an int stays an int, anything else is a float."""
    return tuple(tuple(v if type(v) is int else float(v) for v in p) for p in points)


@contextlib.asynccontextmanager
async def connect(
    url: str, *, top_k: int = 3, preview: bool = False, binary: bool = True, **kwargs: Any
) -> AsyncIterator[DigitsClient]:
    """`async with connect("ws://127.0.0.1:8080/ws") as client:` -- see DigitsClient.open."""
    client = await DigitsClient.open(url, top_k=top_k, preview=preview, binary=binary, **kwargs)
    try:
        yield client
    finally:
        await client.close()
