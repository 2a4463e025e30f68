"""Shared pieces of the functional server tests: the real model, UNIPEN digits the model
reads correctly offline, and a real server on a loopback port."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import functools
import os
import re
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import aiohttp
import msgpack
import numpy as np
from aiohttp.test_utils import TestClient

from client import DigitsClient
from convert.data import LETTERS_FILE, UNIPEN_FILE, StrokeSample, load_strokes
from protocol import Limits
from server.app import create_app
from server.config import Settings
from server.connection import Connection
from server.model import DEFAULT_MODEL, Model, load_model
from server.raster import rasterize
from tests.rediskit import new_prefix

MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@functools.cache
def bundled_model() -> Model:
    """The real bundled model, loaded once per test run (CPU: the same on every machine)."""
    return load_model(DEFAULT_MODEL, "cpu")


@dataclasses.dataclass(frozen=True)
class Digit:
    label: int
    strokes: list[list[list[float]]]
    probs: np.ndarray  # what the model says offline, through the same rasterizer

    @property
    def expected(self) -> int:
        """The digit the model reads offline (with the bundled model: the label)."""
        return int(self.probs.argmax())

    @property
    def points(self) -> int:
        return sum(len(s) for s in self.strokes)


@functools.cache
def unipen_digits(count: int = 40, max_points: int = 80) -> tuple[Digit, ...]:
    """UNIPEN dev digits of every label that the model reads correctly and confidently
    (p > 0.9) offline, so that a wrong answer over the wire, or a different one from an image
    of the same ink, is the server's fault, not a borderline reading flipped by a subpixel."""
    model = bundled_model()
    samples: list[StrokeSample] = [
        s
        for s in load_strokes(UNIPEN_FILE)
        if s.label is not None and sum(map(len, s.strokes)) <= max_points
    ]
    images = np.stack([rasterize(s.strokes) for s in samples[:2000]])
    probs = model.predict_batch(images)
    good = [
        Digit(int(s.label), s.strokes, p)
        for s, p in zip(samples, probs, strict=False)
        if s.label is not None and int(p.argmax()) == s.label and p.max() > 0.9
    ]
    by_label = sorted(good, key=lambda d: (good.index(d) // 10, d.label))
    chosen: list[Digit] = []
    for label in range(10):
        chosen.extend([d for d in by_label if d.label == label][: max(1, count // 10)])
    return tuple(chosen)


SHARED_STORE: list[str] = []  # a Redis URL while tests run on the shared store


@contextlib.contextmanager
def shared_store(url: str) -> Iterator[None]:
    """Servers started meanwhile keep their rooms in this Redis, each under its own prefix."""
    SHARED_STORE.append(url)
    try:
        yield
    finally:
        SHARED_STORE.pop()


@functools.cache
def unipen_rejects(chars: str = "A#") -> tuple[StrokeSample, ...]:
    """For each character, the first UNIPEN sample of it that the model scores as not a
    digit offline (P(not a digit) >= 0.9), so a verdict over the wire is the server's."""
    model = bundled_model()
    out = []
    for char in chars:
        samples = [s for s in load_strokes(LETTERS_FILE) if s.char == char][:40]
        images = np.stack([rasterize(s.strokes) for s in samples])
        scores = model.predict_scores(images)
        out.append(next(s for s, p in zip(samples, scores.not_digit, strict=True) if p >= 0.9))
    return tuple(out)


def settings(**limits: Any) -> Settings:
    """Test settings: the bundled model, a lenient rate limit, and any limit overridden."""
    top = {
        k: limits.pop(k)
        for k in list(limits)
        if k in {f.name for f in dataclasses.fields(Settings)}
    }
    # Inference in a thread: a process each would cost every test server a second to start;
    # tests/test_offload.py and the subprocess servers (tests/test_main.py) cover the process.
    top.setdefault("inference", "thread")
    if SHARED_STORE and "redis" not in top:
        top.update(redis=SHARED_STORE[-1], redis_prefix=new_prefix())
    base = {
        "messages_per_second": 10000.0,
        "message_burst": 10000,
        "points_per_second": 1e9,  # tests/test_fairness.py sets the points budgets it tests
        "points_burst": 10**9,
        "points_per_second_per_client": 1e9,
        "points_burst_per_client": 10**9,
        "max_connections_per_client": 1000,
    }
    return Settings(port=0, **top, limits=Limits(**{**base, **limits}))


async def start(aiohttp_client: MakeClient, **overrides: Any) -> tuple[TestClient[Any, Any], str]:
    """A real server on a loopback port; returns the HTTP test client and the ws:// URL."""
    client = await aiohttp_client(create_app(settings(**overrides), bundled_model()))
    return client, str(client.make_url("/ws")).replace("http://", "ws://", 1)


def metric(text: str, name: str, labels: str = "") -> float:
    """One sample's value from Prometheus text (0 if absent)."""
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def unlimited_session() -> aiohttp.ClientSession:
    """An aiohttp session that can hold hundreds of sockets at once."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


async def stepped(done: Callable[[], bool]) -> None:
    """Run the event loop until `done()`. The test server runs in the test's own loop, so
    this waits for the server to get there, on no wall clock (the timeout is a guard)."""
    async with asyncio.timeout(10):
        while not done():  # noqa: ASYNC110 -- the condition is the server's state, not an event
            await asyncio.sleep(0)


async def until(c: DigitsClient, kind: type, **fields: Any) -> Any:
    """The next message of type `kind` with these field values (others are skipped)."""
    async with asyncio.timeout(20):
        while True:
            msg = await c.receive()
            if isinstance(msg, kind) and all(getattr(msg, k) == v for k, v in fields.items()):
                return msg


async def draw(c: DigitsClient, strokes: Sequence[Sequence[Sequence[float]]]) -> int:
    """Send strokes as fast as possible, a few points per message; return the last message's
    seq (the live prediction with it reflects all of the ink)."""
    seq = -1
    for stroke in strokes:
        await c.start_stroke(stroke[:1])
        for i in range(1, len(stroke), 4):
            await c.points(stroke[i : i + 4])
        seq = await c.end_stroke()
    return seq


class StubbornSocket:
    """A WebSocket client on a raw socket that sends but never reads, with a tiny receive
    buffer, so the server's writes back up quickly."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    async def open(cls, host: str, port: int) -> StubbornSocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += await loop.sock_recv(sock, 1)
        assert head.startswith(b"HTTP/1.1 101")
        return cls(sock)

    async def send(self, obj: dict[str, Any]) -> None:
        await self.send_frame(msgpack.packb(obj), opcode=0x2)

    async def send_frame(self, payload: bytes, opcode: int) -> None:
        """One final, masked frame of a small payload, bytes as given (0x1 text, 0x2 binary)."""
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        frame = bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked
        await asyncio.get_running_loop().sock_sendall(self.sock, frame)

    async def read_all(self, until: bytes, limit: float = 20.0) -> bytes:
        """Read what the server sent, until `until` appears (or `limit` seconds pass)."""
        loop, data = asyncio.get_running_loop(), b""
        deadline = loop.time() + limit
        while until not in data and loop.time() < deadline:
            with contextlib.suppress(TimeoutError):
                data += await asyncio.wait_for(loop.sock_recv(self.sock, 65536), 0.5)
        return data


def narrow(conn: Connection) -> None:
    """A slow network: a small kernel send buffer for the server's side of a connection
    (else loopback absorbs megabytes before the server's own buffer fills)."""
    transport = conn.peer.request.transport  # type: ignore[attr-defined]
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
