"""One client connection: frames in, session actions executed, predictions out.

Belongs here: the rate limit, turning ClientErrors into error messages and closes (the one
place that does), the per-session prediction task, the slow-reader rule, handing room
messages to the hub (server/hub.py) and taking up a parked session on `hello.resume`. It
knows asyncio but not aiohttp: the socket is reached through the small `Peer` protocol.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from server.errors import ClientError, Code, flooding
from server.hub import Hub, new_resume_token
from server.metrics import Metrics
from server.protocol import (
    Error,
    Hello,
    Limits,
    Ping,
    Prediction,
    Recognize,
    ServerMessage,
    decode,
    encode,
    message_type,
    peek_seq,
)
from server.ratelimit import TokenBucket, Verdict
from server.recognizer import Recognizer
from server.session import Action, Predict, Send, Session, Snapshot, State, ToRoom

log = logging.getLogger(__name__)


class Peer(Protocol):
    """The socket, as a connection sees it."""

    async def send(self, data: bytes | str) -> None:
        """Send one frame; returns quietly if the socket has closed."""

    def buffered(self) -> int:
        """Bytes written but not yet accepted by the network."""

    async def wait_writable(self, limit: int) -> None:
        """Return once at most `limit` bytes are buffered, or the socket has closed."""

    async def close(self, code: int, reason: str) -> None: ...


class Connection:
    """Drives one Session from a Peer's frames. `receive` returns False once it closed."""

    def __init__(
        self,
        peer: Peer,
        session: Session,
        recognizer: Recognizer,
        metrics: Metrics,
        send_buffer_bytes: int,
        hub: Hub,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.peer, self.session, self.recognizer, self.metrics = peer, session, recognizer, metrics
        self.hub = hub  # rooms and parked sessions, shared by all connections
        self.limits: Limits = session.limits
        self.send_buffer_bytes = send_buffer_bytes
        self.clock = clock
        self.bucket = TokenBucket(
            self.limits.messages_per_second, self.limits.message_burst, clock()
        )
        self.binary = True  # reply in the encoding of the client's last frame
        self.open = True
        self._updated_at = clock()  # when the newest ink update arrived
        self._job_updated_at = self._updated_at  # ... as of the prediction in flight
        self.last_seen = clock()  # when the last frame arrived, for the idle sweeper
        self._task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()

    async def receive(self, data: bytes | str) -> bool:
        """Handle one frame. Returns False when the connection has been closed."""
        now = self.last_seen = self.clock()
        self.binary = isinstance(data, bytes)
        verdict = self.bucket.spend(now)
        try:
            if verdict is Verdict.FLOOD:
                raise flooding()
            if verdict is Verdict.REFUSE:
                raise ClientError(Code.RATE_LIMITED, "message rate limit exceeded", peek_seq(data))
            msg = decode(data, self.limits)
            self.metrics.count(self.metrics.messages, message_type(msg))
            if not isinstance(msg, Hello | Ping | Recognize):
                self._updated_at = now
            if (
                isinstance(msg, Hello)
                and msg.resume is not None
                and self.session.state is State.AWAIT_HELLO
            ):
                await self._resume(msg, msg.resume)
                return self.open
            actions = self.session.apply(msg)
            await self._run(actions)
        except ClientError as exc:
            return await self.fail(exc if exc.seq is not None else exc.with_seq(peek_seq(data)))
        return self.open

    async def _resume(self, hello: Hello, token: str) -> None:
        """hello with a resume token: the parked session if there is one, else a new one
        whose welcome says why not."""
        found = self.hub.unpark(token)
        if isinstance(found, str):
            self.session.resume_error = found
            await self._run(self.session.apply(hello))
            return
        self.session = found
        await self._run(found.resume(hello, new_resume_token()))
        if found.room is not None:
            await self.hub.rejoin(self)

    async def fail(self, exc: ClientError) -> bool:
        """Tell the client about `exc`; close if the connection cannot continue.
        Returns whether the connection is still open."""
        self.metrics.count(self.metrics.errors, exc.code)
        await self._send(Error(exc.code, exc.message, exc.seq))
        if exc.close_code is not None:
            await self.close(exc.close_code, exc.code)
        return self.open

    async def close(self, code: int, reason: str) -> None:
        self.open = False
        try:
            await self.peer.close(code, reason)
        finally:
            self._closed.set()

    async def wait_closed(self) -> None:
        """Wait until a close started by the server (any task) has finished its handshake."""
        await self._closed.wait()

    def abandon(self) -> None:
        """The socket is gone: cancel the prediction in flight, which from now on leaves
        the session alone (it may be parked and resumed by another connection)."""
        self.open = False
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        """Abandon the prediction in flight and wait until it has ended."""
        self.abandon()
        task, self._task = self._task, None
        if task is not None and not task.done():
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self, actions: list[Action]) -> None:
        """Carry out the session's actions. Raises ClientError when the room refuses."""
        for action in actions:
            if isinstance(action, Send):
                await self._send(action.message)
            elif isinstance(action, Predict):  # Session allows one at a time
                self._task = asyncio.create_task(self._predict_until_clean(action.snapshot))
            elif isinstance(action, ToRoom):
                await self._run(await self.hub.handle(self, action.message))

    async def send(self, msg: ServerMessage) -> None:
        """Send one message (the hub's way in); quiet once closed."""
        await self._send(msg)

    def backlog(self) -> int:
        """Bytes written but not yet taken by the network."""
        return self.peer.buffered()

    async def too_slow(self) -> None:
        """The hub gave up on this room member: it stopped reading (closes 1008)."""
        text = "too far behind the shared session; reconnect (resume) to catch up"
        await self.fail(ClientError(Code.TOO_SLOW, text))

    async def _send(self, msg: ServerMessage) -> None:
        if self.open:
            await self.peer.send(encode(msg, self.binary))

    async def _predict_until_clean(self, snap: Snapshot) -> None:
        """Predict `snap`, then whatever newer ink the session wants, until it wants none."""
        next_snap: Snapshot | None = snap
        while next_snap is not None and self.open:
            self._job_updated_at = self._updated_at
            await self._predict_one(next_snap)
            if not self.open:
                return
            actions = self.session.prediction_done()
            next_snap = next((a.snapshot for a in actions if isinstance(a, Predict)), None)

    def _refresh(self, pending: Snapshot) -> Snapshot:
        """As the prediction leaves the queue: predict the newest ink instead."""
        self._job_updated_at = self._updated_at
        return self.session.refresh(pending)

    async def _predict_one(self, snap: Snapshot) -> None:
        try:
            prediction = await self.recognizer.predict(
                snap, self.session.top_k, self.session.preview, self._refresh
            )
            await self._deliver(prediction, self._job_updated_at)
        except ClientError as exc:
            await self.fail(exc)
        except Exception:  # our bug: log it, tell the client nothing but "internal"
            log.exception("prediction failed")
            await self.fail(ClientError(Code.INTERNAL, "internal error", snap.seq))

    async def _deliver(self, prediction: Prediction, updated_at: float) -> None:
        """Send a prediction. A live one waits while the client is not reading, and is
        dropped if newer ink arrived meanwhile; final answers are never dropped. A live one
        of the session's own ink is dropped once the session is in a room (the room's
        predictions have taken over)."""
        if not prediction.final and self.session.room is not None:
            return
        if not prediction.final and self.peer.buffered() > self.send_buffer_bytes:
            await self.peer.wait_writable(self.send_buffer_bytes)
            if self.session.dirty:
                self.metrics.dropped.inc()
                return
        await self._send(prediction)
        kind = "empty" if prediction.empty else "final" if prediction.final else "live"
        self.metrics.count(self.metrics.predictions, kind)
        self.metrics.latency.observe(self.clock() - updated_at)
