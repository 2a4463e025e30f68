"""`python -m server` / `digits-server`: load the model, serve until SIGINT or SIGTERM.
With --workers N, N processes serve one port (SO_REUSEPORT), each with its own model and
batcher, sharing rooms through Redis; this process starts them and restarts one that dies."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import importlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import resource
import signal
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

try:  # the server's own dependencies come with the `server` extra
    from aiohttp import web

    from protocol import CloseCode
    from server.app import OFFLOAD, SHUTDOWN, create_app
    from server.config import Settings, load_settings
    from server.model import Model, ModelError, load_model
    from server.quiet import decision, native_output
except ImportError as exc:
    _MISSING: str | None = exc.name or str(exc)
else:
    _MISSING = None

log = logging.getLogger("server")
NEEDS_EXTRA = (
    "digits-server: the server is not installed (missing {}); "
    "install it with: pip install 'digits-live[server]'"
)


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit (each socket is a file)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


#: Allocations between young-generation collections (CPython's default is 700). Under load
#: most objects die young by reference counting; collecting ten times less often cut the
#: collector's time from ~2% of the server's CPU to ~0.2% (docs/BENCHMARKS.md).
GC_YOUNG = 7000


def settle_gc() -> None:
    """Once everything is loaded: move what exists now (modules, the model, the app) out of
    the collector's sight for good, and collect the young generation less often. A full
    collection then walks only what serving made, and pauses every client for half as long."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, older, oldest)


async def serve(settings: Settings, model: Model, accelerator: str = "") -> None:
    """Serve until SIGINT/SIGTERM, then stop accepting, close sockets, drain. SIGTERM is a
    restart (a deploy): sockets close with 1012 and clients resume elsewhere; SIGINT closes
    them with 1001."""
    verbose = logging.getLogger().isEnabledFor(logging.DEBUG)  # else no line per request
    app = create_app(settings, model)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=5.0,
        access_log=logging.getLogger("aiohttp.access") if verbose else None,
    )
    await runner.setup()
    settle_gc()
    reuse = settings.workers > 1
    site = web.TCPSite(runner, settings.host, settings.port, backlog=1024, reuse_port=reuse)
    try:
        await site.start()
    except OSError as exc:  # the port is taken, the address is not this machine's, ...
        await runner.cleanup()  # the inference process and the app's tasks stop with it
        raise StartError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping(code: CloseCode) -> None:
        app[SHUTDOWN].code = code
        stop.set()

    loop.add_signal_handler(signal.SIGINT, stopping, CloseCode.GOING_AWAY)
    loop.add_signal_handler(signal.SIGTERM, stopping, CloseCode.SERVICE_RESTART)
    where = ", ".join(f"http://{a[0]}:{a[1]}" for a in runner.addresses)
    accelerator = accelerator or f"{model.accelerator} ({model.runtime})"
    offload = app[OFFLOAD]
    inference = f"a process of its own (pid {offload.pid})" if offload else "a thread"
    log.info(
        "listening on %s (WebSocket /ws); model %s (%s); store %s; accelerator %s; inference in %s",
        where, model.name, model.path, store_name(settings), accelerator, inference,
    )  # fmt: skip
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()


#: A worker that exits START_TRIES times in a row, each within START_GRACE_S of its start,
#: cannot start (a taken port, a bad model, ...): the supervisor stops instead of retrying.
START_GRACE_S = 10.0
START_TRIES = 3


def store_name(settings: Settings) -> str:
    """Where rooms and sessions live, for the start-up line: "in memory", or the Redis URL
    without its password and with the key prefix."""
    if not settings.redis:
        return "in memory"
    url = urllib.parse.urlsplit(settings.redis)
    host = url.hostname or "localhost"
    where = f"{url.scheme}://{host}{f':{url.port}' if url.port else ''}{url.path}"
    return f"{where} (prefix {settings.redis_prefix!r})"


class StartError(Exception):
    """The server could not start serving; its message says why, in one line."""


def _worker(settings: Settings) -> None:
    """One of --workers N processes."""
    _configure(settings)
    _run(settings)


def _configure(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )
    raise_open_file_limit()


def supervise(settings: Settings) -> int:
    """Start `settings.workers` processes on one port and keep them running until SIGINT or
    SIGTERM, which each of them is sent in turn. Port 0 picks one free port for all."""
    holder = None
    if settings.port == 0:  # a bound, never listening socket reserves the port for all
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind((settings.host, 0))
        settings = dataclasses.replace(settings, port=holder.getsockname()[1])
    spawn = multiprocessing.get_context("spawn")
    # Run as `python -m server`, this module is `__main__`, which a spawned child cannot
    # import by that name: hand it the worker under the module's real name.
    worker = importlib.import_module("server.__main__")._worker
    workers: dict[int, Any] = {}
    started: dict[int, float] = {}
    quick_exits: dict[int, int] = {}  # exits in a row within START_GRACE_S of starting
    stopping: list[int] = []

    def start(index: int) -> None:
        proc = spawn.Process(target=worker, args=(settings,), name=f"worker-{index}")
        proc.start()
        workers[index] = proc
        started[index] = time.monotonic()

    def forward(signum: int, _: object) -> None:
        stopping.append(signum)
        for proc in workers.values():
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    for index in range(settings.workers):
        start(index)
    log.info("%d workers on port %d", settings.workers, settings.port)
    failed = False
    while workers:
        sentinels = {proc.sentinel: i for i, proc in workers.items()}
        for ready in multiprocessing.connection.wait(list(sentinels)):
            index = sentinels[ready]  # type: ignore[index]
            proc = workers.pop(index)
            proc.join()
            if stopping:
                continue
            quick = time.monotonic() - started[index] < START_GRACE_S
            quick_exits[index] = quick_exits.get(index, 0) + 1 if quick else 0
            if quick_exits[index] >= START_TRIES:  # it cannot start (it said why): give up
                log.error(
                    "worker %d exited %d times in a row within %g s of starting (%s); stopping",
                    index, START_TRIES, START_GRACE_S, proc.exitcode,
                )  # fmt: skip
                forward(signal.SIGTERM, None)
                failed = True
                continue
            log.warning("worker %d exited (%s); starting it again", index, proc.exitcode)
            time.sleep(0.5)  # a worker that cannot start must not spin
            start(index)
    if holder is not None:
        holder.close()
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> None:
    if _MISSING is not None:
        sys.exit(NEEDS_EXTRA.format(_MISSING))
    try:
        settings = load_settings(argv)
    except ValueError as exc:
        sys.exit(f"digits-server: {exc}")
    _configure(settings)
    if settings.workers > 1:
        sys.exit(supervise(settings))
    _run(settings)


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop to serve on: uvloop for 'uvloop', and for 'auto' where it is installed
    (the server extra installs it except on Windows); None is asyncio's own. Raises
    ImportError for 'uvloop' without uvloop."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def _run(settings: Settings) -> None:
    # The batcher's thread (validating ink; with --inference thread, rasterizing with numpy
    # too) holds the GIL; with the default 5 ms switch interval the event loop waits up to
    # 5 ms to get it back after every syscall.
    sys.setswitchinterval(0.0005)
    # The native runtime prints dozens of lines to fd 2 while loading (accelerator registry,
    # plugins, Vulkan/WebGPU probes): shown with --log-level debug only.
    debug = logging.getLogger().isEnabledFor(logging.DEBUG)
    try:
        with native_output(quiet=not debug) as native:
            model = load_model(settings.model, settings.accelerator, settings.threads)
    except ModelError as exc:
        sys.exit(f"digits-server: {exc}")
    used = decision(
        settings.accelerator, model.accelerator, model.runtime, model.gpu_error, native.text
    )
    try:
        factory = loop_factory(settings.event_loop)
    except ImportError:
        sys.exit("digits-server: --event-loop uvloop: uvloop is not installed")
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve(settings, model, used))
    except StartError as exc:
        sys.exit(f"digits-server: {exc}")


if __name__ == "__main__":
    main()
