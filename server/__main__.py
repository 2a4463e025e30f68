"""`python -m server` / `digits-server`: load the model, serve until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import sys
from collections.abc import Sequence

try:  # the server's own dependencies come with the `server` extra
    from aiohttp import web

    from server.app import create_app
    from server.config import Settings, load_settings
    from server.model import Model, ModelError, load_model
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


async def serve(settings: Settings, model: Model) -> None:
    """Serve until SIGINT/SIGTERM, then stop accepting, close sockets (1001), drain."""
    verbose = logging.getLogger().isEnabledFor(logging.DEBUG)  # else no line per request
    runner = web.AppRunner(
        create_app(settings, model),
        handle_signals=False,
        shutdown_timeout=5.0,
        access_log=logging.getLogger("aiohttp.access") if verbose else None,
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=1024)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    where = ", ".join(f"http://{a[0]}:{a[1]}" for a in runner.addresses)
    log.info(
        "listening on %s (WebSocket /ws); model %s (%s); accelerator %s (%s)",
        where, model.name, model.path, model.accelerator, model.runtime,
    )  # fmt: skip
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    if _MISSING is not None:
        sys.exit(NEEDS_EXTRA.format(_MISSING))
    settings = load_settings(argv)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    raise_open_file_limit()
    # The inference thread rasterizes with numpy while holding the GIL; with the default 5 ms
    # switch interval the event loop waits up to 5 ms to get it back after every syscall.
    sys.setswitchinterval(0.0005)
    try:
        model = load_model(settings.model, settings.accelerator, settings.threads)
    except ModelError as exc:
        sys.exit(f"digits-server: {exc}")
    asyncio.run(serve(settings, model))


if __name__ == "__main__":
    main()
