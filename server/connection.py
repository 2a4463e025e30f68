"""One client connection: frames in, the session's messages carried out, messages out.

Belongs here: the rate limit and the points budgets, the dispatch of each message (about one
line each), the send path with its slow-reader rule, and handing every failure to the error
funnel (server/errors.py). Knows asyncio but not aiohttp: the socket is the small `Peer`
protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from protocol import (
    ClientMessage,
    End,
    Hello,
    Join,
    Leave,
    Limits,
    Ping,
    PointsMsg,
    Pong,
    Prediction,
    ProtocolError,
    Recognize,
    ServerMessage,
    Share,
    Start,
    decode,
    encode,
    message_type,
)
from server.budget import PointBudget
from server.errors import fault, flooding, rate_limited, too_slow
from server.hub import Hub
from server.metrics import Metrics
from server.ratelimit import TokenBucket, Verdict
from server.session import Session

LAST_WORD_S = 2.0  # how long the error before a close may wait for a client that is behind
WRITE_S = 2.0  # a write that cannot complete in this long (the peer's buffers are full) gives up
# A write that leaves at most this much in the socket's buffer cannot reach the transport's
# high-water mark (64 KiB), so it cannot wait: it needs no timeout (one per write cost ~4% of
# a fan-out process's CPU).
QUICK_WRITE_BYTES = 16 * 1024


def _kind(msg: ServerMessage) -> str | None:
    """A prediction's label in the predictions metric (None: not a prediction)."""
    if not isinstance(msg, Prediction):
        return None
    return "empty" if msg.empty else "final" if msg.final else "live"


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
        hub: Hub,
        metrics: Metrics,
        clock: Callable[[], float] = time.perf_counter,
        address_budget: PointBudget | None = None,
    ) -> None:
        self.peer, self.session, self.hub, self.metrics = peer, session, hub, metrics
        self.limits: Limits = session.identity.limits
        self.clock = clock
        self.bucket = TokenBucket(
            self.limits.messages_per_second, self.limits.message_burst, clock()
        )
        own = PointBudget(self.limits.points_per_second, self.limits.points_burst, clock())
        self.budgets = (own,) if address_budget is None else (own, address_budget)
        self.binary = True  # reply in the encoding of the client's last frame
        self.open = True
        self.last_seen = self.opened_at = clock()  # for the idle and hello deadlines
        self._held: Prediction | None = None  # a live prediction waiting for the client
        self._outbox: deque[tuple[bytes | str, str | None]] = deque()  # unsent, in order
        self._queued = 0  # bytes in the outbox
        # Bytes of messages larger than send_buffer_bytes alone (a `joined` of a room full of
        # ink) waiting or being written: they are not the client falling behind.
        self._oversize = 0
        self._holding: asyncio.Task[Any] | None = None  # a writer waiting for the client to read
        self._writer: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[bool] | None = None
        self._closed = asyncio.Event()

    @property
    def top_k(self) -> int:
        return self.session.top_k

    @property
    def preview(self) -> bool:
        return self.session.preview

    @property
    def address(self) -> str:
        return self.session.identity.client

    # ---- frames in ----------------------------------------------------------------------

    async def receive(self, data: bytes | str) -> bool:
        """Handle one frame. Returns False when the connection has been closed."""
        now = self.last_seen = self.clock()
        self.binary = isinstance(data, bytes)
        verdict = self.bucket.spend(now)
        seq = None
        try:
            if verdict is Verdict.FLOOD:
                raise flooding()
            msg = self._decode(data, verdict)
            seq = msg.seq
            self.metrics.count(self.metrics.messages, message_type(msg))
            await self._pace(msg)
            await self._handle(msg)
        except Exception as exc:  # the funnel decides what each one becomes
            return await self.fail(exc, seq)
        return self.open

    def _decode(self, data: bytes | str, verdict: Verdict) -> ClientMessage:
        """The frame's message (parsed once); rate_limited when it has no token."""
        try:
            msg = decode(data, self.limits)
        except ProtocolError as exc:
            if verdict is Verdict.REFUSE:
                raise rate_limited(exc.seq) from None
            raise
        if verdict is Verdict.REFUSE:
            raise rate_limited(msg.seq)
        return msg

    async def _pace(self, msg: ClientMessage) -> None:
        """Ink beyond a points budget (server/budget.py) waits here until it is paid for;
        meanwhile nothing more is read from this socket: backpressure, not loss."""
        points = len(msg.points) if isinstance(msg, Start | PointsMsg | End) else 0
        if points:
            now = self.clock()
            wait = max(budget.spend(points, now) for budget in self.budgets)
            if wait > 0:
                self.metrics.paced.inc()
                await asyncio.sleep(wait)

    async def _handle(self, msg: ClientMessage) -> None:
        session = self.session
        session.advance(msg)
        if isinstance(msg, Hello):
            self.session = await self.hub.hello(session, self, msg)
            return
        drawing, member = session.drawing, session.member
        assert drawing is not None
        if isinstance(msg, Ping):
            await self.hub.settled(member)  # room ink still on its way through the log
            await self.send(Pong(msg.seq))
        elif isinstance(msg, Recognize):
            drawing.recognize(member, msg.seq)
        elif isinstance(msg, Share):
            await self.hub.share(session, self, msg.seq)
        elif isinstance(msg, Join):
            await self.hub.join(session, self, msg)
        elif isinstance(msg, Leave):
            await self.hub.leave(session, self, msg.seq)
        else:
            await self.hub.draw(session, msg)

    # ---- messages out -------------------------------------------------------------------

    async def send(self, msg: ServerMessage) -> None:
        """Send a message that is never dropped, without waiting for the client: what the
        socket cannot take at once waits in order in the outbox, written as the client
        reads (so a room's fan-out never waits for its slowest member). A client with more
        than send_buffer_bytes waiting unsent (besides a message larger than that alone, such
        as a `joined` of a room full of ink) is not reading: closed with too_slow."""
        if not self.open:
            return
        limit = self.limits.send_buffer_bytes
        backlog = self.peer.buffered() + self._queued - self._oversize
        if backlog > limit:
            self._give_up()
            return
        data = encode(msg, self.binary)
        if self._held is not None:  # an older live prediction goes first
            held, self._held = self._held, None
            self._queue(encode(held, self.binary), _kind(held))
        if self._writer is None and backlog + len(data) <= min(QUICK_WRITE_BYTES, limit):
            await self.peer.send(data)  # stays far below the high-water mark: never waits
            self._count(_kind(msg))
        else:
            self._queue(data, _kind(msg))

    async def offer(self, prediction: Prediction) -> None:
        """Send a live prediction now, or hold it while the client is behind; a newer one
        replaces it (dropped). Behind for heartbeat_s / 2 in a row: too_slow."""
        if not self.open:
            return
        if self._writer is None:  # nothing waits (a held prediction has its writer)
            backlog = self.peer.buffered()
            if backlog <= self.limits.send_buffer_bytes:
                data = encode(prediction, self.binary)
                if backlog + len(data) <= QUICK_WRITE_BYTES:
                    await self.peer.send(data)
                    self._count(_kind(prediction))
                    return
        if self._held is not None:
            self.metrics.dropped.inc()
        self._held = prediction
        self._write_later()

    def _queue(self, data: bytes | str, kind: str | None) -> None:
        self._outbox.append((data, kind))
        self._queued += len(data)
        if len(data) > self.limits.send_buffer_bytes:
            self._oversize += len(data)
        holding = self._holding
        if holding is not None and holding is self._writer:  # it waits for the client to read:
            holding.cancel()  # what must be sent goes into the socket's buffer now
            self._writer = None
        self._write_later()

    def _write_later(self) -> None:
        if self._writer is None and self.open:
            self._writer = asyncio.create_task(self._write_behind())

    async def _write_behind(self) -> None:
        """Write what waits as the client reads: the outbox in order, then the held
        prediction once the client is within its limit. A write the client does not take
        in WRITE_S, or a prediction held for heartbeat_s / 2, is too_slow."""
        try:
            while self.open:
                if self._outbox:
                    data, kind = self._outbox.popleft()
                    self._queued -= len(data)
                    try:
                        async with asyncio.timeout(WRITE_S):
                            await self.peer.send(data)
                    finally:
                        if len(data) > self.limits.send_buffer_bytes:  # (0 once dropped)
                            self._oversize = max(0, self._oversize - len(data))
                    self._count(kind)
                elif self._held is not None:
                    limit, patience = self.limits.send_buffer_bytes, self.limits.heartbeat_s / 2
                    self._holding = asyncio.current_task()
                    try:
                        await asyncio.wait_for(self.peer.wait_writable(limit), patience)
                    finally:
                        if self._holding is asyncio.current_task():
                            self._holding = None
                    held, self._held = self._held, None
                    self._queue(encode(held, self.binary), _kind(held))  # (this writer goes on)
                else:
                    return
        except TimeoutError:
            self._give_up()
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None

    def _count(self, kind: str | None) -> None:
        if kind is not None:
            self.metrics.count(self.metrics.predictions, kind)

    def _give_up(self) -> None:
        """The client stopped reading: close it (once) without waiting for it."""
        if self._closing is None and self.open:
            self._closing = asyncio.create_task(self.fail(too_slow()))

    # ---- failure and close --------------------------------------------------------------

    async def fail(self, exc: BaseException, seq: int | None = None) -> bool:
        """Tell the client what `exc` means (server/errors.py decides), and close if the
        connection cannot continue. Returns whether it is still open."""
        f = fault(exc, seq)
        self.metrics.count(self.metrics.errors, f.label)
        if f.close_code is None:
            await self.send(f.error)
            return self.open
        if self.open:  # the last word: before what waits unsent (dropped, as the connection
            self._drop_unsent()  # closes), written even to a client that is behind, briefly
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.peer.send(encode(f.error, self.binary)), LAST_WORD_S)
        await self.close(f.close_code, f.label)
        return self.open

    async def close(self, code: int, reason: str) -> None:
        self.open = False
        self._drop_unsent()
        try:
            await self.peer.close(code, reason)
        finally:
            self._closed.set()

    async def wait_closed(self) -> None:
        """Wait until a close started by the server (any task) has finished its handshake."""
        await self._closed.wait()

    def abandon(self) -> None:
        """The socket is gone: send nothing more. Not a coroutine (runs while cancelled)."""
        self.open = False
        self._drop_unsent()
        self.hub.park(self.session, self)

    def _drop_unsent(self) -> None:
        self._held = None
        self._outbox.clear()
        self._queued = self._oversize = 0
        if self._writer is not None:
            self._writer.cancel()

    async def stop(self) -> None:
        """Cancel the writer of what waits unsent; let a close in progress finish."""
        tasks = [t for t in (self._writer, self._closing) if t is not None]
        if self._writer is not None:
            self._writer.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
