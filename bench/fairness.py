"""The fairness scenario (issue 11): one address uses every limit, another client just draws.

Eight flooders share one address, each within every per-message limit the server announces:
512-point JSON `points` messages at ~190 per second, clearing whenever the ink limit is
near, and reading everything the server sends. Beside them one healthy client (the client
library) draws real UNIPEN digits at pen speed and asks for the final answer of each.
Measured: the healthy client's draw-and-recognize latency (from sending `recognize` to its
final answer) and live update-to-prediction latency, the server's RSS growth over the run
(peak minus the RSS before the flood), the points per second the server accepted from the
flood, and what the flooders were told (error codes, closes).

`--flood http`: the flooders post JSON batches to /v1/recognize instead, back to back, each
body `--http-body-kb` of integer random-walk drawings of 20,000 points (what the JSON parser
chews on while holding the GIL); "flood points/s applied" counts the points of answered
batches, and what they were told is the HTTP statuses. `--flood image`: they post a PNG of
`--image-px` squared pixels (a digit drawn large; 4000: the largest the default
max_image_pixels admits) back to back; "points" are then images answered.

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
import io
import itertools
import json
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import machine_line, run_loop
from bench.drawer import Drawer
from client import DigitsClient
from client.replay import percentile
from convert.data import UNIPEN_FILE, load_strokes

if TYPE_CHECKING:  # bench/load.py imports this module: its Server is imported in run()
    from bench.load import Server

FLOOD_POINTS = 512  # max_points_per_message
FLOOD_RATE = 190.0  # messages per second per flooder, under messages_per_second (200)
INK_LIMIT = 20000  # max_points_per_session: clear before reaching it
Strokes = Sequence[Sequence[Sequence[float]]]


@dataclass
class Flood:
    """What the flooders heard: errors, closes by the server, and how much of their ink the
    server applied (the points up to the newest seq a prediction answered)."""

    applied_points: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)


def _ink(rng: random.Random, shape: str) -> Iterator[list[int]]:
    """Endless flood points on 1000x1000: `shape` "random", anywhere (the costliest ink to
    draw); "walk", a pen-like random walk of small steps."""
    x, y = 500, 500
    while True:
        if shape == "random":
            x, y = rng.randrange(1000), rng.randrange(1000)
        else:
            x, y = (
                min(999, max(0, x + rng.randint(-4, 4))),
                min(999, max(0, y + rng.randint(-4, 4))),
            )
        yield [x, y]


def _flood_frames(rng: random.Random, shape: str) -> list[str]:
    """One cycle of a flooder's frames, JSON-encoded once: a stroke of 512-point messages up
    to the ink limit (`_ink`'s `shape`), its end, and a clear."""
    ink = _ink(rng, shape)
    frames = []
    for i in range(INK_LIMIT // FLOOD_POINTS):
        pts = list(itertools.islice(ink, FLOOD_POINTS))
        frames.append(json.dumps({"type": "start" if i == 0 else "points", "points": pts}))
    frames += [json.dumps({"type": "end"}), json.dumps({"type": "clear"})]
    return frames


async def _flooder(
    url: str, http: aiohttp.ClientSession, flood: Flood, stop: float, seed: int, shape: str
) -> None:
    frames = _flood_frames(random.Random(seed), shape)
    points = [len(json.loads(f).get("points", ())) for f in frames]
    sent = [0]  # sent[seq]: points sent up to and including message seq
    answered = [0]  # the newest seq a prediction answered
    ws = await http.ws_connect(url, max_msg_size=0)
    await ws.send_str(json.dumps({"type": "hello", "version": 1}))
    reader = asyncio.create_task(_drain(ws, flood, answered))
    period, due, i = 1 / FLOOD_RATE, time.perf_counter(), 0
    try:  # a send blocks while the server reads slowly (backpressure): stop on time anyway
        async with asyncio.timeout(max(0.0, stop - time.perf_counter())):
            while not ws.closed:
                seq = len(sent)
                await ws.send_str(f'{frames[i][:-1]}, "seq": {seq}}}')
                sent.append(sent[-1] + points[i])
                i = (i + 1) % len(frames)
                due = max(due + period, time.perf_counter() - 0.05)  # no catch-up bursts
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
    except (TimeoutError, ConnectionError, aiohttp.ClientError):
        pass
    flood.applied_points += sent[min(answered[0], len(sent) - 1)]
    if ws.closed and ws.close_code is not None:  # closed by the server during the run
        flood.closes[ws.close_code] += 1
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    with contextlib.suppress(TimeoutError):  # a server still reading the flood's backlog may
        await asyncio.wait_for(ws.close(), 1.0)  # not answer the close in time: not its close


def _http_body(rng: random.Random, body_bytes: int) -> tuple[bytes, int]:
    """A JSON batch of random-walk drawings of 20,000 integer points, about `body_bytes`
    long; and its number of points."""
    drawings: list[list[list[list[int]]]] = []
    size, points = 0, 0
    ink = _ink(rng, "walk")
    while size < body_bytes:
        pts = list(itertools.islice(ink, INK_LIMIT))
        drawing = [pts]
        size += len(json.dumps(drawing)) + 1
        if size > body_bytes and drawings:
            break
        drawings.append(drawing)
        points += len(pts)
    return json.dumps({"drawings": drawings}).encode(), points


def _png(px: int) -> bytes:
    """A PNG of px x px pixels: a large 7 on white."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (px, px), 255)
    ImageDraw.Draw(image).line(
        [(px * 0.25, px * 0.2), (px * 0.75, px * 0.2), (px * 0.4, px * 0.85)],
        fill=0,
        width=px // 25,
    )
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


async def _http_flooder(
    url: str,
    http: aiohttp.ClientSession,
    flood: Flood,
    stop: float,
    body: bytes,
    points: int,
    content_type: str = "application/json",
) -> None:
    """POST the same body back to back until `stop`."""
    headers = {"Content-Type": content_type}
    with contextlib.suppress(TimeoutError, ConnectionError, aiohttp.ClientError):
        async with asyncio.timeout(max(0.0, stop - time.perf_counter())):
            while True:
                async with http.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    flood.errors[f"http {resp.status}"] += 1
                    if resp.status == 200:
                        flood.applied_points += points


async def _drain(ws: aiohttp.ClientWebSocketResponse, flood: Flood, answered: list[int]) -> None:
    async for msg in ws:
        if msg.type is not aiohttp.WSMsgType.TEXT:
            continue
        data = json.loads(msg.data)
        if data.get("type") == "error":
            flood.errors[data.get("code", "?")] += 1
        elif data.get("type") == "prediction" and isinstance(data.get("seq"), int):
            answered[0] = max(answered[0], data["seq"])


@dataclass
class Healthy(Drawer):
    """The healthy client: its live updates timed as every drawer's (bench/drawer.py), and
    each digit's recognize -> final answer."""

    finals: list[float] = field(default_factory=list)  # recognize -> final answer, s
    failures: int = 0


async def _draw(client: DigitsClient, me: Healthy, strokes: Strokes, rng: random.Random) -> None:
    """One digit at pen speed (a point every 8-16 ms, sent 60 times a second), then its final
    answer, timed."""
    interval = rng.uniform(0.008, 0.016)
    for stroke in strokes:
        await me.send(client.start_stroke(stroke[:1]))
        started, due = time.perf_counter(), 1
        while due < len(stroke):
            await asyncio.sleep(1 / 60)
            upto = min(len(stroke), 1 + int((time.perf_counter() - started) / interval))
            if upto > due:
                await me.send(client.points(stroke[due:upto]))
                due = upto
        await client.end_stroke()
    t0 = time.perf_counter()
    try:
        final = await client.recognize(wait_s=10.0)
    finally:  # no answer in 10 s counts as 10 s (a lower bound) and ends the run
        me.finals.append(time.perf_counter() - t0)
    if final.empty:
        me.failures += 1
    await client.clear()
    await asyncio.sleep(rng.uniform(0.05, 0.2))


async def _sample_rss(server: Server, peak: list[float], stop: float) -> None:
    while time.perf_counter() < stop:
        peak[0] = max(peak[0], server.rss_mb())
        await asyncio.sleep(0.25)


async def scenario(
    server: Server,
    digits: Sequence[Strokes],
    flooders: int,
    seconds: float,
    shape: str,
    http_body_kb: int = 1024,
    image_px: int = 4000,
) -> dict[str, Any]:
    ws_url = server.url.replace("http", "ws") + "/ws"
    me, flood, rng = Healthy(), Flood(), random.Random(11)
    # The healthy client comes from another address (127.0.0.2), the flood from 127.0.0.1.
    other = aiohttp.TCPConnector(limit=0, local_addr=("127.0.0.2", 0))
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
        aiohttp.ClientSession(connector=other) as own,
    ):
        client = await DigitsClient.open(ws_url, session=own, on_message=me.on_message)
        for strokes in digits[:3]:  # warm up: every batch size the scenario will see
            await _draw(client, Healthy(), strokes, rng)
        rss0 = server.rss_mb()
        peak = [rss0]
        start = time.perf_counter()
        stop = start + seconds
        if shape in ("http", "image"):
            if shape == "image":
                body, points, kind = _png(image_px), 1, "image/png"
            else:
                body, points = _http_body(random.Random(0), http_body_kb * 1024)
                kind = "application/json"
            post_url = server.url + "/v1/recognize"
            floods = [
                asyncio.create_task(_http_flooder(post_url, http, flood, stop, body, points, kind))
                for _ in range(flooders)
            ]
        else:
            floods = [
                asyncio.create_task(_flooder(ws_url, http, flood, stop, seed, shape))
                for seed in range(flooders)
            ]
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
    return {
        "digits": len(me.finals),
        "final_p50": _ms(me.finals, 50),
        "final_max": 1000 * max(me.finals, default=float("nan")),
        "live_p50": _ms(me.latencies, 50),
        "live_p99": _ms(me.latencies, 99),
        "rss0": rss0,
        "rss_growth": peak[0] - rss0,
        "accepted_pts_s": flood.applied_points / elapsed,
        "healthy_failures": me.failures,
        "flood_errors": " ".join(f"{k}:{v}" for k, v in sorted(flood.errors.items())) or "-",
        "flood_closes": " ".join(f"{k}:{v}" for k, v in sorted(flood.closes.items())) or "-",
    }


def _ms(seconds: list[float], q: float) -> float:
    value = percentile(seconds, q)
    return float("nan") if value is None else 1000 * value


HEADER = (
    "| checkout | runs (final p50/max each) | digits answered (failed) | final p50 ms "
    "| final max ms | live p50 ms | live p99 ms | RSS before | RSS growth "
    "| flood points/s applied | flood told (errors; closes) |"
)
NUMERIC = ("final_p50", "final_max", "live_p50", "live_p99", "rss0", "rss_growth")


def row(name: str, runs: list[dict[str, Any]]) -> str:
    med = {k: statistics.median(float(r[k]) for r in runs) for k in (*NUMERIC, "accepted_pts_s")}
    told = "; ".join(sorted({f"{r['flood_errors']}; {r['flood_closes']}" for r in runs}))
    each = ", ".join(f"{r['final_p50']:.0f}/{r['final_max']:.0f}" for r in runs)
    answered = "+".join(f"{r['digits'] - r['healthy_failures']}" for r in runs)
    failed = sum(r["healthy_failures"] for r in runs)
    return (
        f"| {name} | {len(runs)} ({each}) | {answered} ({failed}) "
        f"| {med['final_p50']:.1f} | {med['final_max']:.1f} "
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
    ap.add_argument(
        "--flood",
        choices=("random", "walk", "http", "image"),
        default="random",
        help="flood ink: points anywhere (costliest to draw), a pen-like random walk, or "
        "JSON batches or PNG images posted to /v1/recognize",
    )
    ap.add_argument("--image-px", type=int, default=4000, help="with --flood image: its side")
    ap.add_argument(
        "--http-body-kb", type=int, default=1024, help="with --flood http: each batch's size"
    )


def run(args: argparse.Namespace) -> None:
    """Run the scenario against each checkout in turn, `args.repeat` times; print a table."""
    from bench.load import Server, free_port, raise_open_file_limit

    raise_open_file_limit()
    digits = [s.strokes for s in load_strokes(UNIPEN_FILE)[:200]]
    checkouts = [c.resolve() for c in args.checkout or [Path(__file__).resolve().parents[1]]]
    results: dict[Path, list[dict[str, Any]]] = {c: [] for c in checkouts}
    print(machine_line())
    if args.flood == "http":
        flood = f"JSON batches of {args.http_body_kb} KB posted back to back"
    elif args.flood == "image":
        flood = f"{args.image_px}x{args.image_px} PNGs posted back to back"
    else:
        flood = f"{FLOOD_POINTS}-point JSON messages at {FLOOD_RATE:g}/s ({args.flood} ink)"
    print(
        f"# {args.flooders} flooders x {flood} + 1 healthy drawer, {args.seconds:g} s per run; "
        "default limits"
    )
    for _ in range(args.repeat):
        for checkout in checkouts:
            server = Server(free_port(), [], checkout, lenient=False)
            try:
                run = run_loop(
                    scenario(
                        server,
                        digits,
                        args.flooders,
                        args.seconds,
                        args.flood,
                        args.http_body_kb,
                        args.image_px,
                    )
                )
            finally:
                try:
                    server.stop()
                except subprocess.TimeoutExpired:  # still busy with the flood's backlog
                    server.proc.kill()
                    server.proc.wait()
            results[checkout].append(run)
            print(f"# {checkout}: {run}", flush=True)
    print(HEADER)
    print("|---" * (HEADER.count("|") - 1) + "|")
    for checkout, runs in results.items():
        print(row(str(checkout), runs), flush=True)


if __name__ == "__main__":
    sys.exit("run the fairness scenario through bench/load.py: bench/load.py --fairness [options]")
