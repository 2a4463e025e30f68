"""One drawer alone on the server: update-to-prediction latency by the pause between updates,
and what the client's own send costs after that pause.

Each update is a `points` message of two points to an open stroke; the client waits for the
prediction of that update (matched by seq), then pauses 0, 2 or 16 ms (16 ms is pen speed at
60 frames a second) before the next one. Latency is measured from just before the send and
from just after it: on a machine whose idle cores sleep, the send itself gets slower as the
pause grows, and that part is the machine waking up, not the server. Several checkouts run
alternately, each its own server, so their figures come from the same minutes.

    .venv/bin/python bench/lone.py [--checkout DIR ...] [--updates 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import machine_line
from bench.load import Server, free_port
from client import DigitsClient, Prediction, ServerMessage

PAUSES_MS = (0.0, 2.0, 16.0)
STROKE = 60  # updates per stroke; then clear and start again (the ink stays digit-sized)


async def measure(url: str, updates: int) -> dict[float, tuple[list[float], list[float]]]:
    """Per pause: latencies (s) from before the send and from after it."""
    arrived: dict[int, float] = {}
    news = asyncio.Event()

    def on_message(msg: ServerMessage, received: float) -> None:
        if isinstance(msg, Prediction) and msg.seq is not None:
            arrived[msg.seq] = received
            news.set()

    out: dict[float, tuple[list[float], list[float]]] = {}
    async with aiohttp.ClientSession() as http:
        client = await DigitsClient.open(url, session=http, on_message=on_message)
        for pause_ms in PAUSES_MS:
            before, after = [], []
            for i in range(updates):
                if i % STROKE == 0:
                    if i:
                        await client.clear()
                    await client.start_stroke([[10, 10]])
                x, y = 10 + i % STROKE, 10 + (i * 7) % 40
                t0 = time.perf_counter()
                seq = await client.points([[x, y], [x + 0.5, y + 0.5]])
                t1 = time.perf_counter()
                while seq not in arrived:
                    news.clear()
                    await news.wait()
                before.append(arrived[seq] - t0)
                after.append(arrived[seq] - t1)
                await asyncio.sleep(pause_ms / 1000)
            out[pause_ms] = (before, after)
        await client.close()
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkout", type=Path, action="append", help="tree to run (repeatable)")
    ap.add_argument("--updates", type=int, default=300, help="updates per pause and round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    trees = args.checkout or [Path(__file__).resolve().parent.parent]
    # (tree, pause) -> per-round p50s and p99s
    runs: dict[tuple[str, float], list[tuple[float, float, float]]] = {}
    for _ in range(args.rounds):
        for tree in trees:
            server = Server(free_port(), [], tree, lenient=False)
            try:
                url = server.url.replace("http", "ws") + "/ws"
                for pause, (before, after) in asyncio.run(measure(url, args.updates)).items():
                    sends = [b - a for b, a in zip(before, after, strict=True)]
                    runs.setdefault((str(tree), pause), []).append(
                        (pct(before, 0.5), pct(before, 0.99), pct(sends, 0.5))
                    )
            finally:
                server.stop()
    print(machine_line())
    print(f"# {args.updates} updates per pause, {args.rounds} rounds; medians of the rounds")
    print("| checkout | pause between updates | p50 ms | p99 ms | client's own send, p50 ms |")
    print("|---|---:|---:|---:|---:|")
    for (tree, pause), figures in runs.items():
        p50, p99, send = (statistics.median(f[i] for f in figures) for i in range(3))
        print(f"| {tree} | {pause:.0f} ms | {p50:.2f} | {p99:.2f} | {send:.2f} |")


if __name__ == "__main__":
    main()
