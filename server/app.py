"""The aiohttp application: routes, app state, lifetimes and the thin WebSocket handler.

Belongs here: everything that knows aiohttp. The handler admits a socket (origin, counts),
then feeds its frames to a Connection and stops; all protocol decisions live in the core.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web
from aiohttp.typedefs import Handler

from protocol import CloseCode, Code, ProtocolError, encode
from server.budget import AddressBudgets
from server.config import Settings
from server.connection import Connection
from server.deadlines import overdue, sweep_period
from server.errors import fault
from server.forwarding import Network, Seen, default_hosts, host_allowed, networks, seen
from server.http_api import HttpApi
from server.hub import Hub
from server.metrics import Metrics
from server.model import Accelerator, Model, load_model
from server.offload import InferenceProcess, usable_cores
from server.recognizer import Recognizer
from server.session import Identity, Session, State
from server.store import MemoryStore, Store

log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 2.0  # for the close handshake

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
MODEL = web.AppKey("model", Model)
RECOGNIZER = web.AppKey("recognizer", Recognizer)
HUB = web.AppKey("hub", Hub)  # rooms and parked sessions
#: The inference process, when batches run in one (--inference); None: in a thread here.
OFFLOAD: web.AppKey[InferenceProcess | None] = web.AppKey("offload")
SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey("sockets")
CLIENTS = web.AppKey("clients", Counter[str])  # open sockets per client address
CONNECTIONS: web.AppKey[weakref.WeakSet[Connection]] = web.AppKey("connections")
BUDGETS = web.AppKey("budgets", AddressBudgets)  # ink points per second per client address


@dataclasses.dataclass(slots=True)
class Shutdown:
    """How open sockets are closed on shutdown: 1001, or 1012 for a restart (SIGTERM)."""

    code: CloseCode = CloseCode.GOING_AWAY


SHUTDOWN = web.AppKey("shutdown", Shutdown)
TRUSTED: web.AppKey[tuple[Network, ...]] = web.AppKey("trusted_proxies")
HOSTS: web.AppKey[tuple[str, ...]] = web.AppKey("allowed_hosts")


def origin_allowed(
    origin: str | None, host: str | None, allowed: tuple[str, ...], scheme: str | None = None
) -> bool:
    """Whether a browser at `origin` may open a socket. No Origin header: not a browser,
    allowed. With no `allowed` list the origin must match the Host header (same origin),
    and the scheme too when a trusted proxy said which one the browser used."""
    if origin is None or "*" in allowed:
        return True
    if allowed:
        return origin.rstrip("/") in allowed
    parts = urlsplit(origin)
    same_host = host is not None and parts.netloc.lower() == host.lower()
    same_scheme = parts.scheme == scheme if scheme else parts.scheme in ("http", "https")
    return same_scheme and same_host


def _seen(request: web.Request) -> Seen:
    """The request's client, host and scheme, forwarded ones from trusted proxies only."""
    app = request.app
    return seen(request.remote or "?", request.host, request.scheme, request.headers, app[TRUSTED])


@web.middleware
async def _known_host(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse requests for a Host this server is not (DNS rebinding), on every route."""
    if not host_allowed(_seen(request).host, request.app[HOSTS]):
        request.app[METRICS].errors.labels(Code.BAD_HOST).inc()
        error = {"code": Code.BAD_HOST, "message": "this server does not answer to that host"}
        raise web.HTTPMisdirectedRequest(
            text=json.dumps({"error": error}), content_type="application/json"
        )
    return await handler(request)


class _WsPeer:
    """A WebSocketResponse as the `Peer` a Connection talks to."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws, self.request = ws, request

    async def send(self, data: bytes | str) -> None:
        if self.ws.closed:
            return
        try:
            if isinstance(data, bytes):
                await self.ws.send_bytes(data)
            else:
                await self.ws.send_str(data)
        except ConnectionError:  # the peer went away mid-send; the handler will notice
            pass

    def buffered(self) -> int:
        transport = self.request.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    async def wait_writable(self, limit: int) -> None:
        # aiohttp exposes no "buffer drained" event to wait on, so poll gently.
        while not self.ws.closed and self.buffered() > limit:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    async def close(self, code: int, reason: str) -> None:
        # A peer that does not read may never take the close frame: do not wait for it
        # longer than the close handshake's own timeout.
        close = self.ws.close(code=code, message=reason.encode()[:120], drain=False)
        try:
            await asyncio.wait_for(close, 2 * CLOSE_TIMEOUT_S)
        except TimeoutError:
            if self.request.transport is not None:
                self.request.transport.abort()


async def _refuse(ws: web.WebSocketResponse, app: web.Application) -> None:
    """Tell a client over the connection limits why, in its encoding, and close (1013)."""
    f = fault(ProtocolError(Code.TOO_MANY_CONNECTIONS, "too many connections; try again later"))
    app[METRICS].count(app[METRICS].errors, f.label)
    try:
        first = await ws.receive(timeout=2.0)  # its hello tells us msgpack or JSON
        binary = first.type is not WSMsgType.TEXT
    except TimeoutError:
        binary = True
    if not ws.closed:
        data = encode(f.error, binary)
        await (ws.send_bytes(data) if isinstance(data, bytes) else ws.send_str(data))
    await ws.close(code=f.close_code or CloseCode.OVERLOADED, message=f.label.encode())


def _admit(app: web.Application, client: str) -> bool:
    limits = app[SETTINGS].limits
    counts = app[CLIENTS]
    if (
        counts.total() >= limits.max_connections
        or counts[client] >= limits.max_connections_per_client
    ):
        return False
    counts[client] += 1
    return True


def _release(app: web.Application, client: str) -> None:
    counts = app[CLIENTS]
    counts[client] -= 1
    if counts[client] <= 0:
        del counts[client]


def _new_session(app: web.Application, client: str) -> Session:
    model, settings = app[MODEL], app[SETTINGS]
    identity = Identity(
        session=secrets.token_urlsafe(9),
        resume_token=secrets.token_urlsafe(18),
        model=model.name,
        accelerator=model.accelerator,
        runtime=model.runtime,
        limits=settings.limits,
        client=client,
    )
    return Session(identity)


async def websocket(request: web.Request) -> web.StreamResponse:
    """GET /ws: one drawing session per socket."""
    app, settings = request.app, request.app[SETTINGS]
    peer = _seen(request)
    scheme = peer.scheme if peer.forwarded else None
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, peer.host, settings.allowed_origins, scheme):
        app[METRICS].errors.labels("bad_origin").inc()
        raise web.HTTPForbidden(text="origin not allowed")
    limits = settings.limits
    ws = web.WebSocketResponse(
        heartbeat=limits.heartbeat_s,  # drops dead peers and never-reading clients
        max_msg_size=limits.max_frame_bytes + 1,  # aiohttp refuses max_msg_size itself
        compress=False,  # predictions are small; deflate would cost CPU per frame
        timeout=CLOSE_TIMEOUT_S,  # close handshake
    )
    await ws.prepare(request)
    client = peer.client
    if not _admit(app, client):
        await _refuse(ws, app)
        return ws
    app[SOCKETS].add(ws)
    app[METRICS].connections.inc()
    budget = app[BUDGETS].acquire(client, time.perf_counter())
    session = _new_session(app, client)
    conn = Connection(_WsPeer(ws, request), session, app[HUB], app[METRICS], address_budget=budget)
    app[CONNECTIONS].add(conn)
    try:
        await _serve(ws, conn)
    finally:  # bookkeeping first: the awaits below may be cancelled
        _release(app, client)
        app[BUDGETS].release(client)
        app[METRICS].connections.dec()
        conn.abandon()  # the session is parked for resume_grace_s
        await conn.stop()
    return ws


async def _serve(ws: web.WebSocketResponse, conn: Connection) -> None:
    """Feed frames to the connection until either side closes."""
    while conn.open and not ws.closed:
        msg = await ws.receive()
        if msg.type is WSMsgType.CLOSING and not conn.open:
            await conn.wait_closed()  # another task is closing: let it finish the handshake
            return
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            if msg.type is WSMsgType.ERROR:
                log.debug("socket error: %s", msg.data)
            return
        await conn.receive(msg.data)


async def _sweep_idle(app: web.Application) -> AsyncIterator[None]:
    """Close connections silent for idle_timeout_s, or without hello for hello_timeout_s
    (server/deadlines.py). One sweeper for all sockets is cheaper than a timer per frame."""
    limits = app[SETTINGS].limits
    closing: set[asyncio.Task[bool]] = set()

    async def sweep() -> None:
        while True:
            await asyncio.sleep(sweep_period(limits))
            live = app[CONNECTIONS]
            for conn in list(live):
                welcomed = conn.session.state is not State.AWAIT_HELLO
                error = overdue(conn.clock(), conn.opened_at, conn.last_seen, welcomed, limits)
                if conn.open and error is not None:
                    task = asyncio.create_task(conn.fail(error))
                    closing.add(task)
                    task.add_done_callback(closing.discard)

    sweeper = asyncio.create_task(sweep(), name="idle-sweeper")
    yield
    sweeper.cancel()
    await asyncio.gather(sweeper, *closing, return_exceptions=True)


async def _sweep_hub(app: web.Application) -> AsyncIterator[None]:
    """Expire parked sessions after their grace period and rooms left empty too long."""
    limits = app[SETTINGS].limits
    period = min(1.0, limits.resume_grace_s / 4, limits.room_empty_ttl_s / 4)

    async def sweep() -> None:
        while True:
            await asyncio.sleep(max(0.01, period))
            try:
                await app[HUB].expire()
            except Exception:  # a bug of ours must not stop expiry for good
                log.exception("expiring rooms and parked sessions failed")

    sweeper = asyncio.create_task(sweep(), name="hub-sweeper")
    yield
    sweeper.cancel()
    await asyncio.gather(sweeper, return_exceptions=True)


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers HTTP."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: the model is loaded and the batcher runs. Where rooms live, and whether that
    store answers, are said too; an unreachable Redis keeps it ready (solo drawing works)."""
    app = request.app
    if MODEL not in app or RECOGNIZER not in app or not app[RECOGNIZER].batcher.running:
        return web.json_response({"status": "starting"}, status=503)
    model, offload = app[MODEL], app.get(OFFLOAD)
    body = {"status": "ready", "model": model.name, "accelerator": model.accelerator}
    store = app[HUB].store
    where = {
        "inference": "process" if offload is not None else "thread",
        "store": "redis" if store.shared else "memory",
        "store_reachable": store.reachable,
    }
    return web.json_response({**body, **where, "runtime": model.runtime, "path": str(model.path)})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


async def index(request: web.Request) -> web.StreamResponse:
    page = request.app[SETTINGS].web_dir / "index.html"
    if not page.is_file():
        raise web.HTTPNotFound(text="no page: web/index.html is missing")
    return web.FileResponse(page)


def _store(settings: Settings) -> Store:
    """The in-memory store, or Redis with --redis."""
    limits = settings.limits
    quotas = (limits.max_rooms, limits.max_rooms_per_client, limits.room_empty_ttl_s)
    if not settings.redis:
        return MemoryStore(*quotas)
    from server.store_redis import RedisStore  # only a shared server needs redis installed

    return RedisStore(settings.redis, settings.redis_prefix, *quotas, limits.resume_grace_s)


# The page runs only its own files: no inline script, no other origin (the WebSocket is
# same-origin too), never inside a frame. Share links carry their secrets in the URL
# fragment, and no Referer leaves the page.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every response (page, files, JSON, the socket upgrade)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def _inference(preloaded: Model | None) -> object:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        if preloaded is None:
            load = lambda: load_model(settings.model, settings.accelerator, settings.threads)  # noqa: E731
            app[MODEL] = await asyncio.get_running_loop().run_in_executor(None, load)
        model = app[MODEL]
        offload = None
        if settings.offload(usable_cores()):
            where: Accelerator = "gpu" if model.accelerator == "gpu" else "cpu"
            quiet = not logging.getLogger().isEnabledFor(logging.DEBUG)  # as __main__ loads
            start = lambda: InferenceProcess(model.path, where, settings.threads, quiet)  # noqa: E731
            offload = await asyncio.get_running_loop().run_in_executor(None, start)
        app[OFFLOAD] = offload
        recognizer = Recognizer(
            app[MODEL],
            max_batch=settings.batch_max,
            max_wait=settings.batch_wait_ms / 1000.0,
            max_queue=settings.queue_max,
            on_batch=app[METRICS].observe_batch,
            thresholds=settings.thresholds(app[MODEL].card),
            engine=offload.draw_and_score if offload is not None else None,
        )
        app[RECOGNIZER] = recognizer
        store = _store(settings)
        clock = time.time if store.shared else time.monotonic  # shared: one clock for all
        app[HUB] = Hub(settings.limits, recognizer, app[METRICS], clock, store)
        await store.start()
        recognizer.start()
        yield
        await app[HUB].stop()
        await store.stop()
        await recognizer.stop()
        if offload is not None:
            await asyncio.get_running_loop().run_in_executor(None, offload.close)

    return ctx


async def _close_sockets(app: web.Application) -> None:
    """On shutdown: close every open socket with 1001 (going away), or 1012 (service
    restart: resume on another process)."""
    code = app[SHUTDOWN].code
    reason = b"server restart" if code == CloseCode.SERVICE_RESTART else b"server shutdown"
    live = app[SOCKETS]
    sockets = list(live)
    await asyncio.gather(
        *(ws.close(code=code, message=reason) for ws in sockets), return_exceptions=True
    )


def create_app(settings: Settings, model: Model | None = None) -> web.Application:
    """The application. Pass a loaded `model` to share it (tests); else it loads at startup."""
    app = web.Application(middlewares=[_known_host])
    app[SETTINGS] = settings
    app[TRUSTED] = networks(settings.trusted_proxies)
    app[HOSTS] = tuple(h.lower() for h in settings.allowed_hosts) or default_hosts(settings.host)
    app[METRICS] = Metrics()
    app[SOCKETS] = weakref.WeakSet()
    app[CLIENTS] = Counter()
    app[CONNECTIONS] = weakref.WeakSet()
    limits = settings.limits
    app[BUDGETS] = AddressBudgets(
        limits.points_per_second_per_client, limits.points_burst_per_client
    )
    app[SHUTDOWN] = Shutdown()
    if model is not None:
        app[MODEL] = model
    app.cleanup_ctx.append(_inference(model))  # type: ignore[arg-type]
    app.cleanup_ctx.append(_sweep_idle)
    app.cleanup_ctx.append(_sweep_hub)
    app.on_shutdown.append(_close_sockets)
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/", index)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    api = HttpApi(
        settings,
        app[METRICS],
        lambda: app.get(RECOGNIZER),
        app[BUDGETS],
        lambda request: _seen(request).client,
    )
    api.add_routes(app)
    if settings.web_dir.is_dir():
        app.router.add_static("/", settings.web_dir)
    return app
