"""An asyncio client for the digits-live WebSocket protocol (docs/PROTOCOL.md).

Belongs here: connecting, sending client messages with increasing seq numbers, reading
server messages in a background task, and helpers to stream whole digits. No CLI (see
client/cli.py), no drawing UI.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import aiohttp

from protocol import (
    Clear,
    ClientMessage,
    Code,
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
#: Close codes after which a reconnecting client resumes: going away, dropped, service
#: restart, overloaded (and 1008 when the reason is too_slow).
RESUMABLE = frozenset({1001, 1006, 1012, 1013})
RETRIED = ("final", "pong")  # requests sent again after a reconnection (the others fail)
MAX_UNACKED = 4096  # ink messages kept until a prediction shows the server applied them
MAX_REFUSED = 256  # refusals of ink kept until sync() or draw() reports them (the newest)
Ink = Start | PointsMsg | End | Undo | Clear
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


@dataclasses.dataclass
class _Dial:
    """How to connect again: what `open` was given."""

    url: str
    http: aiohttp.ClientSession
    headers: dict[str, str] | None
    top_k: int
    preview: bool
    wait_s: float
    budget_s: float  # how long to keep trying after a drop


class DigitsClient:
    """One drawing session over one WebSocket. Create with `connect(...)` or `DigitsClient.open`.

    Sending methods return the seq number they used. Every server message also lands in a
    bounded inbox read by `receive()` / `async for`; when nobody reads, the oldest messages
    are dropped. `latest` is the newest prediction, `welcome` the server's welcome
    (`welcome.resumed` tells whether `resume=` brought the old session back), `room` the
    shared session this client is in, if any.

    Errors: a request (`recognize`, `ping`, `share`, `join`, `leave`) the server refuses
    raises ServerError (`code`, `seq`). Ink (`start_stroke`, `points`, `end_stroke`, `undo`,
    `clear`) is streamed without waiting for an answer: a refusal of it (`watch_only`,
    `no_stroke`, `bad_number`, ...) is raised by `draw()` or by the next `sync()`, once.
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
        self._dial: _Dial | None = None  # set when reconnecting is on
        self._online = asyncio.Event()  # cleared while reconnecting: sends wait
        self._online.set()
        self._changed = asyncio.Event()  # set (and replaced) when a reconnection ends
        self._sent: dict[tuple[str, int], ClientMessage] = {}  # requests awaiting answers
        self._closing = False
        self._too_slow = False
        self._unacked: collections.deque[Ink] = collections.deque(maxlen=MAX_UNACKED)
        self._ink_seqs: collections.deque[int] = collections.deque(maxlen=MAX_UNACKED)
        self._refused: collections.deque[Error] = collections.deque(maxlen=MAX_REFUSED)
        self._replaying = False  # resumed: waiting for the prediction that says where it is
        self._tasks: set[asyncio.Task[None]] = set()
        self.reconnects = 0  # how many times the session was resumed on a new connection
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
        reconnect: bool = False,
        reconnect_s: float = 30.0,
    ) -> DigitsClient:
        """Connect to `url` (ws://host:port/ws), say hello and wait for welcome.
        Pass a shared aiohttp `session` to open many clients (give it a connector
        without a connection limit); otherwise the client owns one. `resume`: the
        `resume_token` of a session whose connection dropped; `welcome.resumed` says
        whether it came back (else `welcome.resume_error` says why, and this is a new one).

        `reconnect`: when the connection drops or the server restarts (close codes in
        RESUMABLE, or too_slow), connect again with backoff for up to `reconnect_s` and
        resume the session; sending waits meanwhile, a pending `recognize` or `ping` is
        sent again, a pending `share`, `join` or `leave` fails with ConnectionClosed. The new
        `welcome` (resumed) lands in the inbox. Ink sent just before the drop may not have
        reached the server: `welcome.strokes` says what it kept (in a room, `joined`)."""
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
        if reconnect:
            client._dial = _Dial(url, http, headers, top_k, preview, wait_s, reconnect_s)
        return client

    # ---- sending ------------------------------------------------------------------------

    @property
    def seq(self) -> int:
        """The seq of the last message sent (0 before any)."""
        return self._seq

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def _send(self, msg: ClientMessage) -> None:
        data = encode_client(msg, self.binary)
        if isinstance(msg, Ink):
            if msg.seq is not None:
                self._ink_seqs.append(msg.seq)
            if self._dial is not None:
                self._unacked.append(msg)
        while True:
            if not self._online.is_set() and not self._reader.done():
                await self._online.wait()  # reconnecting; the reader sets or gives up
            ws, changed = self._ws, self._changed
            try:
                if ws.closed:
                    raise ConnectionResetError
                await (ws.send_bytes(data) if isinstance(data, bytes) else ws.send_str(data))
                return
            except ConnectionResetError:  # aiohttp's reset error is one too
                if self._dial is None or self._closing or self._reader.done():
                    raise ConnectionClosed(self.close_code or ws.close_code) from None
                await changed.wait()  # the reader reconnects (or gives up): try again

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

    async def sync(self, wait_s: float = 10.0) -> None:
        """Wait until the server has handled every message sent so far (a ping's round
        trip), then raise ServerError for the first ink message it refused that was not
        reported yet (`seq` names it; `await c.points(p); await c.sync()` raises that
        `points`'s refusal). Each refusal is raised once; all are in the inbox too."""
        await self.ping(wait_s)
        self._raise_refused(since=0)

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
        self._sent[key] = msg
        try:
            await self._send(msg)
            return await asyncio.wait_for(future, wait_s)
        finally:
            self._waiters.pop(key, None)
            self._sent.pop(key, None)

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
        answer when `recognize` (else None once the server has handled the ink).
        `point_interval=0` sends as fast as possible.

        Raises ServerError when the server refused any of the drawing's messages (a watcher's
        `watch_only`, `bad_number`, `too_many_points`, ...): at once when the refusal comes
        while drawing (what was sent before it stays drawn), else after the final answer."""
        since = self._seq  # this drawing's messages come after
        for stroke in strokes:
            await self._stream_stroke(stroke, point_interval, frame_rate, since)
        if recognize:
            final: Prediction | None = await self.recognize()
        else:
            await self.ping()  # every refusal of the ink comes before the pong
            final = None
        self._raise_refused(since)
        return final

    async def _stream_stroke(
        self, stroke: StrokeInput, interval: float, rate: float, since: int
    ) -> None:
        if not stroke:
            return
        await self.start_stroke(stroke[:1])
        if interval <= 0:  # as fast as possible, a few points per message
            for i in range(1, len(stroke), 8):
                self._raise_refused(since)
                await self.points(stroke[i : i + 8])
        else:  # each frame sends the points the pen has reached by then
            loop = asyncio.get_running_loop()
            started, sent = loop.time(), 1
            while sent < len(stroke):
                await asyncio.sleep(1.0 / rate)
                self._raise_refused(since)
                due = min(len(stroke), 1 + int((loop.time() - started) / interval))
                if due > sent:
                    await self.points(stroke[sent:due])
                    sent = due
        await self.end_stroke()

    def _raise_refused(self, since: int) -> None:
        """Raise ServerError for the first refused ink message after seq `since`, if any
        came; the refusals after `since` count as reported (the later ones mostly follow
        from the first: a stroke that never began gets `no_stroke`)."""
        if not self._refused:  # the usual case, checked between the messages of draw()
            return
        newer = [e for e in self._refused if (e.seq or 0) > since]
        if newer:
            kept = [e for e in self._refused if (e.seq or 0) <= since]
            self._refused = collections.deque(kept, maxlen=MAX_REFUSED)
            raise ServerError(min(newer, key=lambda e: e.seq or 0))

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
                await self._read_socket()
                resumed = await self._reconnected()
                self._changed.set()
                self._changed = asyncio.Event()
                if not resumed:
                    break
        finally:
            self._online.set()  # senders waiting for a reconnection see the close
            self._changed.set()
            self._fail_waiters(ConnectionClosed(self.close_code))

    async def _read_socket(self) -> None:
        self.close_code, reason = None, ""
        while True:
            frame = await self._ws.receive()
            if frame.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                self._dispatch(frame.data)
                continue
            if frame.type is aiohttp.WSMsgType.CLOSE:
                self.close_code, reason = int(frame.data), str(frame.extra or "")
            break
        self.close_code = self.close_code or self._ws.close_code or 1006
        self._too_slow = reason == "too_slow"

    # ---- reconnecting -------------------------------------------------------------------

    async def _reconnected(self) -> bool:
        """After a drop: connect again with backoff and resume. False: the session is over
        (reconnecting is off, the close was final, the session cannot be resumed, or
        `reconnect_s` ran out)."""
        dial, welcome = self._dial, self.welcome
        resumable = self.close_code in RESUMABLE or self._too_slow
        if dial is None or welcome is None or self._closing or not resumable:
            return False
        self._online.clear()
        for key, future in self._waiters.items():
            if key[0] not in RETRIED and not future.done():
                future.set_exception(ConnectionClosed(self.close_code))
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + dial.budget_s, 0.05
        while loop.time() < deadline:
            outcome = await self._resume_once(dial, welcome.resume_token)
            if outcome == "resumed":
                return True
            if outcome == "over":
                return False
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(2.0, delay * 2)
        return False

    async def _resume_once(self, dial: _Dial, token: str) -> str:
        """One try: "resumed", "again" (unreachable, or the server says try again) or
        "over" (the session is gone)."""
        try:
            ws = await dial.http.ws_connect(
                dial.url, headers=dial.headers, max_msg_size=MAX_SERVER_FRAME
            )
        except (aiohttp.ClientError, OSError):
            return "again"
        try:
            hello = Hello(top_k=dial.top_k, preview=dial.preview, resume=token)
            data = encode_client(hello, self.binary)
            await (ws.send_bytes(data) if isinstance(data, bytes) else ws.send_str(data))
            frame = await ws.receive(timeout=dial.wait_s)
            welcome = decode_server(frame.data) if isinstance(frame.data, bytes | str) else None
        except (aiohttp.ClientError, OSError, TimeoutError, ProtocolError):
            await ws.close()
            return "again"
        if isinstance(welcome, Welcome) and welcome.resumed:
            self._ws, self.welcome = ws, welcome
            self.reconnects += 1
            self._replaying = True  # sending resumes once the server says what it has
            self._deliver(welcome)
            return "resumed"
        await ws.close()
        if isinstance(welcome, Welcome) and welcome.resume_error == "resume_unavailable":
            return "again"
        return "over" if isinstance(welcome, Welcome) else "again"

    def _dispatch(self, data: bytes | str) -> None:
        try:
            msg = decode_server(data)
        except ProtocolError:
            return  # a newer server's message we cannot read: skip it
        self._deliver(msg)

    def _deliver(self, msg: ServerMessage) -> None:
        if self.on_message is not None:
            self.on_message(msg, time.perf_counter())
        self._resolve(msg)
        if self._inbox.full():
            self._inbox.get_nowait()  # nobody is reading: the oldest message goes
        self._inbox.put_nowait(msg)

    def _acknowledged(self, seq: int) -> None:
        while self._unacked and (self._unacked[0].seq or 0) <= seq:
            self._unacked.popleft()

    async def _replay(self, applied: int) -> None:
        """After a resume: send again the ink the server did not get (seq above `applied`),
        then pending recognize/ping, then let senders go on. A stroke that was open at the
        drop was ended by the server: its remaining points start a new stroke."""
        self._acknowledged(applied)
        ink: list[Ink] = list(self._unacked)
        self._unacked.clear()
        first = ink[0] if ink else None
        if isinstance(first, PointsMsg | End):
            ink[:1] = [Start(first.points, first.seq)] if first.points else []
            if first.points and isinstance(first, End):
                ink.insert(1, End((), first.seq))
        retried = [m for k, m in self._sent.items() if k[0] in RETRIED]
        again: list[ClientMessage] = [*ink, *retried]
        try:
            for msg in again:
                if isinstance(msg, Ink):
                    self._unacked.append(msg)
                data = encode_client(msg, self.binary)
                await (
                    self._ws.send_bytes(data)
                    if isinstance(data, bytes)
                    else self._ws.send_str(data)
                )
        except ConnectionResetError:
            pass  # dropped again: the reader reconnects once more
        finally:
            self._online.set()

    def _resolve(self, msg: ServerMessage) -> None:
        if isinstance(msg, Welcome) and not self._welcomed.done():
            self._welcomed.set_result(msg)
        elif isinstance(msg, Prediction):
            self.latest = msg
            if msg.seq is not None:
                self._acknowledged(msg.seq)
            if self._replaying and not msg.final:
                self._replaying = False
                self._later(self._replay(msg.seq or 0))
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
                # overloaded on ink: its live prediction was skipped, the ink was applied
                if msg.code != Code.OVERLOADED and msg.seq in self._ink_seqs:
                    self._refused.append(msg)

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        self._closing = True
        await self._ws.close()
        for task in [*self._tasks, self._reader]:
            task.cancel()
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
    url: str,
    *,
    top_k: int = 3,
    preview: bool = False,
    binary: bool = True,
    reconnect: bool = True,
    **kwargs: Any,
) -> AsyncIterator[DigitsClient]:
    """`async with connect("ws://127.0.0.1:8080/ws") as client:` -- see DigitsClient.open.
    The client reconnects and resumes after a drop or a server restart unless
    `reconnect=False`."""
    client = await DigitsClient.open(
        url, top_k=top_k, preview=preview, binary=binary, reconnect=reconnect, **kwargs
    )
    try:
        yield client
    finally:
        await client.close()
