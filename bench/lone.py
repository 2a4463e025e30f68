"""One drawer alone on the server: update-to-prediction latency by the pause between updates,
and what the client's own send costs after that pause.

The drawer replays real UNIPEN dev digits, two points per `points` message; after each
update it waits for that update's prediction (matched by seq), then pauses 0, 2 or 16 ms
(16 ms is pen speed at 60 frames a second) before the next one. Latency is measured from
just before the send and from just after it: on a machine whose idle cores sleep, the send
itself gets slower as the pause grows, and that part is the machine waking up, not the
server. Several checkouts run alternately, each its own server, so their figures come from
the same minutes.

    .venv/bin/python bench/lone.py [--checkout DIR ...] [--updates 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import machine_line
from bench.load import Server, free_port, latency_ms
from client import DigitsClient, Prediction, ServerMessage
from convert.data import UNIPEN_FILE, load_strokes

PAUSES_MS = (0.0, 2.0, 16.0)
WAIT_S = 2.0


@dataclass
class Run:
    """One pause's figures: latencies (s) from before and from after each send, and how
    many updates got no prediction of their own (a newer one answered them)."""

    before: list[float] = field(default_factory=list)
    after: list[float] = field(default_factory=list)
    missing: int = 0


Strokes = Sequence[Sequence[Sequence[float]]]


def updates_of(digits: list[Strokes]) -> Iterator[tuple[str, list[list[float]]]]:
    """Endless ("start" | "points" | "end" | "clear", points): each digit stroke by stroke,
    two points per `points` message, then a clear."""
    for strokes in itertools.cycle(digits):
        for stroke in strokes:
            yield "start", [list(stroke[0])]
            for i in range(1, len(stroke), 2):
                yield "points", [list(p) for p in stroke[i : i + 2]]
            yield "end", []
        yield "clear", []


async def measure(url: str, digits: list[Strokes], updates: int) -> dict[float, Run]:
    """Per pause: the latencies of `updates` answered `points` updates."""
    arrived: dict[int, float] = {}
    news = asyncio.Event()

    def on_message(msg: ServerMessage, received: float) -> None:
        if isinstance(msg, Prediction) and msg.seq is not None:
            arrived[msg.seq] = received
            news.set()

    out: dict[float, Run] = {}
    async with aiohttp.ClientSession() as http:
        client = await DigitsClient.open(url, session=http, on_message=on_message)
        steps = updates_of(digits)
        for pause_ms in PAUSES_MS:
            run = out[pause_ms] = Run()
            while len(run.before) < updates:
                kind, points = next(steps)
                if kind != "points":
                    await SENDS[kind](client, points)
                    continue
                t0 = time.perf_counter()
                seq = await client.points(points)
                t1 = time.perf_counter()
                if await answered(seq, arrived, news):
                    run.before.append(arrived[seq] - t0)
                    run.after.append(arrived[seq] - t1)
                else:
                    run.missing += 1
                await asyncio.sleep(pause_ms / 1000)
        await client.close()
    return out


SENDS: dict[str, Callable[[DigitsClient, list[list[float]]], Awaitable[int]]] = {
    "start": DigitsClient.start_stroke,
    "end": lambda client, _: client.end_stroke(),
    "clear": lambda client, _: client.clear(),
}


async def answered(seq: int, arrived: dict[int, float], news: asyncio.Event) -> bool:
    """Wait (at most WAIT_S) for the prediction of `seq`; False if it never came (a server
    may answer a newer update instead)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(WAIT_S):
            while seq not in arrived:
                news.clear()
                await news.wait()
    return seq in arrived


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkout", type=Path, action="append", help="tree to run (repeatable)")
    ap.add_argument("--updates", type=int, default=300, help="updates per pause and round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    trees = args.checkout or [Path(__file__).resolve().parent.parent]
    digits: list[Strokes] = [s.strokes for s in load_strokes(UNIPEN_FILE)[:200]]
    # (tree, pause) -> per round: p50, p99, the send's p50, updates without their own answer
    runs: dict[tuple[str, float], list[tuple[float, float, float, int]]] = {}
    for _ in range(args.rounds):
        for tree in trees:
            server = Server(free_port(), [], tree, lenient=False)
            try:
                url = server.url.replace("http", "ws") + "/ws"
                for pause, r in asyncio.run(measure(url, digits, args.updates)).items():
                    sends = [b - a for b, a in zip(r.before, r.after, strict=True)]
                    runs.setdefault((str(tree), pause), []).append(
                        (
                            latency_ms(r.before, 50),
                            latency_ms(r.before, 99),
                            latency_ms(sends, 50),
                            r.missing,
                        )
                    )
            finally:
                server.stop()
    print(machine_line())
    print(f"# {args.updates} updates per pause, {args.rounds} rounds; medians of the rounds")
    print(
        "| checkout | pause between updates | p50 ms | p99 ms | client's own send, p50 ms "
        "| updates answered only by a newer prediction |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for (tree, pause), figures in runs.items():
        p50, p99, send = (statistics.median(f[i] for f in figures) for i in range(3))
        missing = sum(f[3] for f in figures)
        print(f"| {tree} | {pause:.0f} ms | {p50:.2f} | {p99:.2f} | {send:.2f} | {missing} |")


if __name__ == "__main__":
    main()
