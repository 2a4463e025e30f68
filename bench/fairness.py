"""The fairness scenario (issue 11): one address uses every limit, another client just draws.

Eight flooders share one address, each within every per-message limit the server announces:
512-point JSON `points` messages at ~190 per second, clearing whenever the ink limit is
near, and reading everything the server sends. Beside them one healthy client (the client
library) draws real UNIPEN digits at pen speed and asks for the final answer of each.
Measured: the healthy client's draw-and-recognize latency (from sending `recognize` to its
final answer) and live update-to-prediction latency, the server's RSS growth over the run
(peak minus the RSS before the flood), the points per second the server accepted from the
flood, and what the flooders were told (error codes, closes).

Each checkout given (`--checkout DIR`, repeatable; the first is "before") runs the same
scenario as `python -m server` with PYTHONPATH=DIR, alternating, `--repeat` times; the table
gives medians over the repeats.

    flock /work/heavy.lock .venv/bin/python bench/load.py --fairness \\
        --checkout /work/before11 --checkout . --repeat 3 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import machine_line
from client import DigitsClient, Prediction, ServerMessage
from client.replay import percentile
from convert.data import UNIPEN_FILE, load_strokes

FLOOD_POINTS = 512  # max_points_per_message
FLOOD_RATE = 190.0  # messages per second per flooder, under messages_per_second (200)
INK_LIMIT = 20000  # max_points_per_session: clear before reaching it
Strokes = list[list[list[float]]]


@dataclass
class Flood:
    """What the flooders sent and heard."""

    sent_points: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)


def _flood_frames(rng: random.Random) -> list[str]:
    """One cycle of a flooder's frames, JSON-encoded once: a stroke of 512-point messages up
    to the ink limit, its end, and a clear."""
    per_cycle = INK_LIMIT // FLOOD_POINTS
    frames = []
    for i in range(per_cycle):
        pts = [[rng.randrange(1000), rng.randrange(1000)] for _ in range(FLOOD_POINTS)]
        frames.append(json.dumps({"type": "start" if i == 0 else "points", "points": pts}))
    frames += [json.dumps({"type": "end"}), json.dumps({"type": "clear"})]
    return frames


async def _flooder(url: str, http: aiohttp.ClientSession, flood: Flood, stop: float) -> None:
    frames = _flood_frames(random.Random(len(flood.closes) + id(flood)))
    points = [f.count("],[") + 1 if '"points"' in f else 0 for f in frames]
    async with http.ws_connect(url, max_msg_size=0) as ws:
        await ws.send_str(json.dumps({"type": "hello", "version": 1}))
        reader = asyncio.create_task(_drain(ws, flood))
        period, due, i = 1 / FLOOD_RATE, time.perf_counter(), 0
        try:
            while time.perf_counter() < stop and not ws.closed:
                await ws.send_str(frames[i])
                flood.sent_points += points[i]
                i = (i + 1) % len(frames)
                due = max(due + period, time.perf_counter() - 0.05)  # no catch-up bursts
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
        except (ConnectionError, aiohttp.ClientError):
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if ws.close_code is not None and ws.close_code != 1000:
            flood.closes[ws.close_code] += 1


async def _drain(ws: aiohttp.ClientWebSocketResponse, flood: Flood) -> None:
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.TEXT and '"error"' in msg.data:
            flood.errors[json.loads(msg.data).get("code", "?")] += 1


@dataclass
class Healthy:
    finals: list[float] = field(default_factory=list)  # recognize -> final answer, s
    live: list[float] = field(default_factory=list)  # update -> its live prediction, s
    sent_at: dict[int, float] = field(default_factory=dict)
    failures: int = 0

    def on_message(self, msg: ServerMessage, received: float) -> None:
        if isinstance(msg, Prediction) and not msg.final and msg.seq in self.sent_at:
            self.live.append(received - self.sent_at.pop(msg.seq))


async def _draw(client: DigitsClient, me: Healthy, strokes: Strokes, rng: random.Random) -> None:
    """One digit at pen speed (a point every 8-16 ms, sent 60 times a second), then its final
    answer, timed."""
    interval = rng.uniform(0.008, 0.016)
    for stroke in strokes:
        me.sent_at[await client.start_stroke(stroke[:1])] = time.perf_counter()
        started, due = time.perf_counter(), 1
        while due < len(stroke):
            await asyncio.sleep(1 / 60)
            upto = min(len(stroke), 1 + int((time.perf_counter() - started) / interval))
            if upto > due:
                me.sent_at[await client.points(stroke[due:upto])] = time.perf_counter()
                due = upto
        await client.end_stroke()
    t0 = time.perf_counter()
    final = await client.recognize()
    me.finals.append(time.perf_counter() - t0)
    if final.empty:
        me.failures += 1
    await client.clear()
    await asyncio.sleep(rng.uniform(0.05, 0.2))


class Server:
    """`python -m server` from one checkout, with the default limits."""

    def __init__(self, checkout: Path, port: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        cmd = [sys.executable, "-m", "server", "--port", str(port), "--log-level", "WARNING"]
        self.proc = subprocess.Popen(cmd, cwd=checkout, env=env, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(self.url + "/readyz", timeout=1).status == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server from {checkout} did not become ready")

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(match.group(1)) / 1024 if match else float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def _sample_rss(server: Server, peak: list[float], stop: float) -> None:
    while time.perf_counter() < stop:
        peak[0] = max(peak[0], server.rss_mb())
        await asyncio.sleep(0.25)


async def scenario(
    server: Server, digits: list[Strokes], flooders: int, seconds: float
) -> dict[str, float]:
    ws_url = server.url.replace("http", "ws") + "/ws"
    me, flood, rng = Healthy(), Flood(), random.Random(11)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        client = await DigitsClient.open(ws_url, session=http, on_message=me.on_message)
        for strokes in digits[:3]:  # warm up: every batch size the scenario will see
            await _draw(client, Healthy(), strokes, rng)
        rss0 = server.rss_mb()
        peak = [rss0]
        start = time.perf_counter()
        stop = start + seconds
        floods = [asyncio.create_task(_flooder(ws_url, http, flood, stop)) for _ in range(flooders)]
        sampler = asyncio.create_task(_sample_rss(server, peak, stop))
        await asyncio.sleep(1.0)  # let the flood reach its pace before measuring
        me = Healthy()
        client.on_message = me.on_message
        try:
            while time.perf_counter() < stop:
                await _draw(client, me, digits[rng.randrange(len(digits))], rng)
        except Exception:
            me.failures += 1
        await asyncio.gather(*floods, sampler, return_exceptions=True)
        elapsed = time.perf_counter() - start
        await client.close()
    ms = lambda xs, q: 1000 * (percentile(xs, q) or float("nan"))  # noqa: E731
    return {
        "digits": len(me.finals),
        "final_p50": ms(me.finals, 50),
        "final_max": 1000 * max(me.finals, default=float("nan")),
        "live_p50": ms(me.live, 50),
        "live_p99": ms(me.live, 99),
        "rss0": rss0,
        "rss_growth": peak[0] - rss0,
        "accepted_pts_s": flood.sent_points / elapsed,
        "healthy_failures": me.failures,
        "flood_errors": " ".join(f"{k}:{v}" for k, v in sorted(flood.errors.items())) or "-",
        "flood_closes": " ".join(f"{k}:{v}" for k, v in sorted(flood.closes.items())) or "-",
    }


HEADER = (
    "| checkout | runs | final p50 ms | final max ms | live p50 ms | live p99 ms | RSS before "
    "| RSS growth | flood points/s accepted | flood told (errors; closes) |"
)
NUMERIC = ("final_p50", "final_max", "live_p50", "live_p99", "rss0", "rss_growth")


def row(name: str, runs: list[dict[str, float]]) -> str:
    med = {k: statistics.median(float(r[k]) for r in runs) for k in (*NUMERIC, "accepted_pts_s")}
    told = "; ".join(sorted({f"{r['flood_errors']}; {r['flood_closes']}" for r in runs}))
    each = ", ".join(f"{r['final_p50']:.0f}/{r['final_max']:.0f}" for r in runs)
    return (
        f"| {name} | {len(runs)} ({each}) | {med['final_p50']:.1f} | {med['final_max']:.1f} "
        f"| {med['live_p50']:.1f} | {med['live_p99']:.1f} | {med['rss0']:.0f} MB "
        f"| {med['rss_growth']:.0f} MB | {med['accepted_pts_s']:,.0f} | {told} |"
    )


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--checkout",
        action="append",
        type=Path,
        help="a checkout to run `python -m server` from (repeatable; default: this one)",
    )
    ap.add_argument("--flooders", type=int, default=8, help="flooding connections, one address")
    ap.add_argument("--repeat", type=int, default=3, help="runs per checkout (medians)")


def run(args: argparse.Namespace) -> None:
    """Run the scenario against each checkout in turn, `args.repeat` times; print a table."""
    from bench.load import free_port, raise_open_file_limit

    raise_open_file_limit()
    digits = [s.strokes for s in load_strokes(UNIPEN_FILE)[:200]]
    checkouts = [c.resolve() for c in args.checkout or [Path(__file__).resolve().parents[1]]]
    results: dict[Path, list[dict[str, float]]] = {c: [] for c in checkouts}
    print(machine_line())
    print(
        f"# {args.flooders} flooders x {FLOOD_POINTS}-point JSON messages at {FLOOD_RATE:g}/s "
        f"+ 1 healthy drawer, {args.seconds:g} s per run; default limits"
    )
    for _ in range(args.repeat):
        for checkout in checkouts:
            server = Server(checkout, free_port())
            try:
                results[checkout].append(
                    asyncio.run(scenario(server, digits, args.flooders, args.seconds))
                )
            finally:
                server.stop()
    print(HEADER)
    print("|---" * (HEADER.count("|") - 1) + "|")
    for checkout, runs in results.items():
        print(row(str(checkout), runs), flush=True)
