"""Recognizing every sample of a strokes file over several connections at once.

Belongs here: opening a client (and joining a room) with errors a person can read, one
worker per connection that draws a sample and asks for its final answer, the per-sample
record, and the run's summary. Output goes to the streams it is given; no argument parsing.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiohttp

from client.client import ConnectionClosed, DigitsClient, MessageHook, ServerError
from client.pen import Pace, Pen
from protocol import Error, Prediction, ServerMessage
from protocol.strokefile import LineError, Sample

SLACK_S = 30.0  # on top of a sample's drawing time before it counts as stuck


class Unreachable(Exception):
    """No session could be opened: nothing listens, not a WebSocket endpoint, no welcome."""


@dataclass(frozen=True, slots=True)
class Options:
    """How to connect and draw."""

    url: str
    pace: Pace = field(default_factory=Pace)
    top_k: int = 3
    room: str | None = None
    token: str | None = None
    binary: bool = True
    connect_timeout_s: float = 10.0


def _unreachable(url: str, exc: BaseException, timeout_s: float) -> Unreachable:
    """One readable line for each way connecting can fail."""
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        why = f"not a WebSocket endpoint (HTTP {exc.status} {exc.message})"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        why = f"cannot connect ({exc.os_error.strerror or exc.os_error})"
    elif isinstance(exc, aiohttp.InvalidURL | ValueError):
        why = "not a ws://host:port/path URL"
    elif isinstance(exc, TimeoutError):
        why = f"no welcome within {timeout_s:g} s"
    elif isinstance(exc, ServerError):
        why = f"the server refused the session ({exc})"
    elif isinstance(exc, ConnectionClosed):
        why = f"the server closed the connection (code {exc.code})"
    else:
        why = str(exc) or type(exc).__name__
    return Unreachable(f"{url}: {why}")


async def open_client(
    opts: Options, http: aiohttp.ClientSession, hook: MessageHook | None = None
) -> DigitsClient:
    """A welcomed client, in the room when `opts.room` is set. Raises Unreachable, or
    JoinRefused when the room refuses the token (or the server has no rooms)."""
    try:
        client = await DigitsClient.open(
            opts.url, top_k=opts.top_k, binary=opts.binary, session=http,
            on_message=hook, wait_s=opts.connect_timeout_s,
        )  # fmt: skip
    except (aiohttp.ClientError, ValueError, TimeoutError, ServerError, ConnectionClosed) as exc:
        raise _unreachable(opts.url, exc, opts.connect_timeout_s) from None
    if opts.room is not None:
        try:
            await client.join(opts.room, opts.token or "", opts.connect_timeout_s)
        except BaseException:
            await client.close()
            raise
    return client


# ---- one sample -------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """What one connection heard about the sample in progress (messages after `mark`)."""

    mark: int = 0
    live: int = 0
    errors: list[Error] = field(default_factory=list)

    def reset(self, mark: int) -> None:
        self.mark, self.live, self.errors = mark, 0, []

    def hear(self, msg: ServerMessage, _at: float) -> None:
        """The client library's on_message hook."""
        seq = getattr(msg, "seq", None)
        after = seq is None or seq > self.mark
        if isinstance(msg, Prediction) and not msg.final and after:
            self.live += 1
        elif isinstance(msg, Error) and after:
            self.errors.append(msg)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A sample's final answer."""

    sample: Sample
    prediction: Prediction
    live: int
    latency_ms: float

    @property
    def digit(self) -> int | None:
        return None if self.prediction.empty else self.prediction.top[0].digit

    def record(self) -> dict[str, Any]:
        """The JSON line written for this sample."""
        out: dict[str, Any] = {
            "id": self.sample.id,
            "line": self.sample.line,
            "label": self.sample.label,
            "digit": self.digit,
            "top": [{"digit": g.digit, "p": round(g.p, 6)} for g in self.prediction.top],
            "verdict": self.prediction.verdict,
            "live": self.live,
            "latency_ms": round(self.latency_ms, 3),
            "strokes": len(self.sample.strokes),
            "points": self.sample.points,
        }
        if self.sample.label is not None:
            out["correct"] = self.digit == self.sample.label
        if self.sample.char is not None:
            out["char"] = self.sample.char
        return out


@dataclass(frozen=True, slots=True)
class Failure:
    """A sample that got no answer, or a line that is not a sample."""

    where: str  # "file:line" or "file:line (id)"
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


def _budget(sample: Sample, pace: Pace) -> float:
    drawing = 0.0 if pace.fast else sample.points / pace.rate + len(sample.strokes) * pace.frame_s
    return drawing + SLACK_S


class Worker:
    """One connection that recognizes samples one after another, reconnecting after a
    connection is lost (Unreachable if that fails)."""

    def __init__(self, opts: Options, http: aiohttp.ClientSession, source: str) -> None:
        self.opts, self.http, self.source = opts, http, source
        self.tally = Tally()
        self.client: DigitsClient | None = None
        self.pen: Pen | None = None
        self.drawn = 0

    async def connect(self) -> None:
        self.client = await open_client(self.opts, self.http, self.tally.hear)
        self.pen, self.drawn = Pen(self.client, self.opts.pace), 0

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        self.client = self.pen = None

    async def recognize(self, sample: Sample) -> Outcome | Failure:
        """The sample's final answer, or why there is none."""
        if self.client is None or self.client.closed:
            await self.close()
            await self.connect()
        where = f"{self.source}:{sample.line} ({sample.id})"
        try:
            async with asyncio.timeout(_budget(sample, self.opts.pace)):
                return await self._draw(sample, where)
        except TimeoutError:
            await self.close()  # a stuck connection is not reused
            return Failure(where, "no final answer in time")
        except (ServerError, ConnectionClosed) as exc:
            return Failure(where, str(exc))

    async def _draw(self, sample: Sample, where: str) -> Outcome | Failure:
        assert self.client is not None and self.pen is not None
        mark = await self.pen.command("clear") if self.drawn else 0
        self.drawn += 1
        self.tally.reset(mark)
        for stroke in sample.strokes:
            await self.pen.stroke(stroke)
        await self.pen.pacer.take()
        start = time.perf_counter()
        prediction = await self.client.recognize()
        latency_ms = (time.perf_counter() - start) * 1000
        if self.tally.errors:
            first = self.tally.errors[0]
            return Failure(where, f"server error {first.code}: {first.message}")
        return Outcome(sample, prediction, self.tally.live, latency_ms)


# ---- the run ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass(slots=True)
class Summary:
    """Counts and latencies of a run; `to_json()` is the summary line."""

    count: int = 0
    errors: int = 0
    labelled: int = 0
    correct: int = 0
    live: int = 0
    latencies: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def add(self, item: Outcome | Failure) -> None:
        if isinstance(item, Failure):
            self.errors += 1
            return
        self.count += 1
        self.live += item.live
        self.latencies.append(item.latency_ms)
        if item.sample.label is not None:
            self.labelled += 1
            self.correct += item.digit == item.sample.label

    def to_json(self) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.started
        p50, p99 = percentile(self.latencies, 50), percentile(self.latencies, 99)
        return {
            "count": self.count,
            "errors": self.errors,
            "labelled": self.labelled,
            "correct": self.correct,
            "accuracy": round(self.correct / self.labelled, 4) if self.labelled else None,
            "latency_ms_p50": None if p50 is None else round(p50, 3),
            "latency_ms_p99": None if p99 is None else round(p99, 3),
            "latency_ms_max": round(max(self.latencies), 3) if self.latencies else None,
            "live_per_sample": round(self.live / self.count, 2) if self.count else None,
            "elapsed_s": round(elapsed, 3),
            "samples_per_s": round(self.count / elapsed, 2) if elapsed > 0 else None,
        }


class Ordered:
    """Writes results in input order, whatever order they complete in: records to `out`
    as JSON lines, failures to `err` as "file:line: reason"."""

    def __init__(self, out: TextIO, err: TextIO, summary: Summary) -> None:
        self.out, self.err, self.summary = out, err, summary
        self.next = 0
        self.pending: dict[int, Outcome | Failure] = {}

    def put(self, index: int, item: Outcome | Failure) -> None:
        self.summary.add(item)
        self.pending[index] = item
        while self.next in self.pending:
            self._write(self.pending.pop(self.next))
            self.next += 1

    def _write(self, item: Outcome | Failure) -> None:
        if isinstance(item, Failure):
            print(item, file=self.err, flush=True)
        else:
            print(json.dumps(item.record(), separators=(",", ":")), file=self.out, flush=True)


Job = tuple[int, Sample] | None


async def _feed(
    queue: asyncio.Queue[Job], items: Iterator[Sample | LineError], writer: Ordered, workers: int
) -> None:
    """Hand samples to the workers; bad lines go straight to the writer."""
    for index, item in enumerate(items):
        if isinstance(item, LineError):
            writer.put(index, Failure(f"{item.source}:{item.line}", item.reason))
        else:
            await queue.put((index, item))
    for _ in range(workers):
        await queue.put(None)


async def _drain(worker: Worker, queue: asyncio.Queue[Job], writer: Ordered) -> None:
    while (job := await queue.get()) is not None:
        index, sample = job
        writer.put(index, await worker.recognize(sample))


async def recognize_file(
    items: Iterator[Sample | LineError],
    source: str,
    opts: Options,
    concurrency: int,
    out: TextIO,
    err: TextIO,
) -> Summary:
    """Recognize every sample over `concurrency` connections; write each result as it
    comes (in input order) and return the summary. Raises Unreachable or JoinRefused
    if the connections cannot be opened (or reopened after a loss)."""
    summary = Summary()
    writer = Ordered(out, err, summary)
    queue: asyncio.Queue[Job] = asyncio.Queue(concurrency * 2)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        workers = [Worker(opts, http, source) for _ in range(concurrency)]
        try:
            await _all_or_nothing([w.connect() for w in workers])
            tasks = [_drain(w, queue, writer) for w in workers]
            await _all_or_nothing([_feed(queue, items, writer, concurrency), *tasks])
        finally:
            await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
    return summary


async def _all_or_nothing(coros: list[Coroutine[Any, Any, None]]) -> None:
    """Run all; the first exception cancels the others and is raised."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
