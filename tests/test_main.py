"""server/__main__.py: `python -m server` as a process -- its log line, and a graceful
SIGTERM that closes open sockets with 1012 (service restart) and exits 0."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys

import pytest

from client import ConnectionClosed, connect
from server.__main__ import store_name
from server.config import Settings
from server.model import DEFAULT_MODEL


@pytest.mark.asyncio
async def test_python_m_server_serves_then_shuts_down_gracefully() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "--port", "0", "--accelerator", "cpu",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        line = ""
        while "listening on" not in line:
            raw = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert raw, "server exited before listening"
            line = raw.decode()
        match = re.search(r"listening on (http://127\.0\.0\.1:(\d+))", line)
        assert match is not None
        assert f"model digits ({DEFAULT_MODEL})" in line and "accelerator cpu (litert" in line
        url = match.group(1).replace("http", "ws") + "/ws"
        async with connect(url, reconnect=False) as client:
            final = await client.draw([[[50, 10], [50, 90]]], point_interval=0)
            assert final is not None and not final.empty
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed):
                while True:
                    await client.receive()
            assert client.close_code == 1012
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_the_event_loop_is_uvloop_where_installed_unless_asyncio_is_asked_for() -> None:
    import uvloop

    from server.__main__ import loop_factory

    for choice, kind in (("auto", uvloop.Loop), ("uvloop", uvloop.Loop)):
        factory = loop_factory(choice)
        assert factory is not None
        with asyncio.Runner(loop_factory=factory) as runner:
            assert isinstance(runner.get_loop(), kind)
    assert loop_factory("asyncio") is None  # asyncio.Runner's own loop


def test_settle_gc_hides_what_is_loaded_from_the_collector() -> None:
    import gc

    from server.__main__ import GC_YOUNG, settle_gc

    threshold = gc.get_threshold()
    try:
        settle_gc()
        assert gc.get_freeze_count() > 10_000  # this test process's modules and more
        assert gc.get_threshold() == (GC_YOUNG, *threshold[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from server.__main__ import loop_factory

    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert loop_factory("auto") is None
    with pytest.raises(ImportError):
        loop_factory("uvloop")


# How the runtime's own lines begin (LiteRT, TFLite, absl, Dawn).
NATIVE_NOISE = ("INFO: ", "WARNING: ", "ERROR: ", "Warning: ", "E0000", "===", "third_party/")


async def _start_up_lines(*flags: str) -> list[str]:
    """What `python -m server` writes to stderr up to and including its listening line."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "--port", "0", *flags, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        while not lines or "listening on" not in lines[-1]:
            raw = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert raw, f"server exited before listening: {lines}"
            lines.append(raw.decode())
    finally:
        proc.terminate()
        await proc.wait()
    return lines


@pytest.mark.asyncio
async def test_start_up_is_quiet_and_says_which_accelerator_and_why() -> None:
    lines = await _start_up_lines()
    noise = [line for line in lines if line.lstrip().startswith(NATIVE_NOISE)]
    assert noise == []
    assert len(lines) == 1  # the listening line is all
    assert re.search(r"accelerator (gpu \(\w+|cpu \([\w-]+; GPU not used: .+\))$", lines[0])


@pytest.mark.asyncio
async def test_start_up_with_debug_shows_the_native_runtime() -> None:
    lines = await _start_up_lines("--log-level", "debug", "--accelerator", "cpu")
    assert any(line.startswith(NATIVE_NOISE) for line in lines)  # the runtime's, let through
    assert "accelerator cpu (litert; as --accelerator cpu asks)" in lines[-1]


@pytest.mark.asyncio
async def test_a_port_it_cannot_listen_on_is_one_line_and_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", "--port", str(port), stderr=asyncio.subprocess.PIPE
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)  # exits: no hang on the way out
    assert proc.returncode == 1
    lines = err.decode().strip().splitlines()
    assert lines == [
        f"digits-server: cannot listen on 127.0.0.1:{port}: " + lines[0].split(": ", 2)[2]
    ]
    assert "address already in use" in lines[0]


def test_the_start_up_line_names_the_store_without_its_password() -> None:
    assert store_name(Settings()) == "in memory"
    secret = Settings(redis="rediss://:s3cret@db.example:6380/2", redis_prefix="blue:")
    assert store_name(secret) == "rediss://db.example:6380/2 (prefix 'blue:')"
