"""Cost of one-shot HTTP recognition, end to end in a real server (`python -m server` as a
subprocess on loopback): a 280x280 PNG of a UNIPEN digit, beside the same digit as JSON
strokes and a bare GET /healthz (the HTTP floor), measured in the same run, one request at a
time. "server ms" is the handler's own time from the Server-Timing header (body read,
decode and preprocessing, the shared micro-batcher, the model, the answer); "round trip ms"
adds the client and loopback. Medians over all requests of all rounds. The PNG is drawn in
RGB (as a canvas or a photo is) and, for comparison, the same picture saved as grey; the
preprocessing alone is timed in this process too.

    .venv/bin/python bench/image.py [--requests 300] [--rounds 3] [--size 280]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import time
from pathlib import Path

import aiohttp
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import machine_line
from bench.image_accuracy import Style, draw_strokes
from bench.load import Server, free_port
from convert.data import UNIPEN_FILE, load_strokes
from server.images import preprocess


async def timed(
    http: aiohttp.ClientSession, method: str, url: str, data: bytes | None, ctype: str
) -> tuple[float, float]:
    """(round trip, server) seconds of one request; server is 0 without Server-Timing."""
    headers = {"Content-Type": ctype} if data is not None else {}
    started = time.perf_counter()
    async with http.request(method, url, data=data, headers=headers) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}")
        timing = resp.headers.get("Server-Timing", "")
    trip = time.perf_counter() - started
    server = float(timing.split("dur=")[1]) / 1000 if "dur=" in timing else 0.0
    return trip, server


Cases = dict[str, tuple[str, bytes | None, str]]  # name -> (path, body or None for GET, type)


async def measure(base: str, cases: Cases, n: int) -> dict[str, tuple[list[float], list[float]]]:
    """Per case: lists of round-trip and server seconds, the cases interleaved."""
    out: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in cases}
    async with aiohttp.ClientSession() as http:
        for i in range(n + 20):
            for name, (path, data, ctype) in cases.items():
                method = "GET" if data is None else "POST"
                trip, server = await timed(http, method, base + path, data, ctype)
                if i >= 20:  # warm-up
                    out[name][0].append(trip)
                    out[name][1].append(server)
    return out


def in_process_ms(data: bytes | None, n: int = 300) -> float:
    """Median ms of server.images.preprocess on `data`, called directly (no server)."""
    assert data is not None
    times = []
    for _ in range(n):
        started = time.perf_counter()
        preprocess(data)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=300, help="per case and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=280, help="side of the PNG, px")
    args = ap.parse_args()
    sample = next(s for s in load_strokes(UNIPEN_FILE) if s.label is not None)
    png = draw_strokes(sample.strokes, Style(size=args.size))
    grey = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("L").save(grey, "PNG")
    strokes = json.dumps({"strokes": sample.strokes}).encode()
    side = f"{args.size}x{args.size}"
    cases = {
        "GET /healthz (HTTP floor)": ("/healthz", None, ""),
        f"POST {side} PNG, RGB ({len(png)} B)": ("/v1/recognize", png, "image/png"),
        f"POST {side} PNG, grey ({len(grey.getvalue())} B)": (
            "/v1/recognize",
            grey.getvalue(),
            "image/png",
        ),
        f"POST JSON strokes ({sum(map(len, sample.strokes))} points)": (
            "/v1/recognize",
            strokes,
            "application/json",
        ),
    }
    trips: dict[str, list[float]] = {k: [] for k in cases}
    servers: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.rounds):
        server = Server(free_port(), [])
        try:
            got = asyncio.run(measure(server.url, cases, args.requests))
        finally:
            server.stop()
        for name, (trip, handler) in got.items():
            trips[name] += trip
            servers[name] += handler
    alone = {
        name: in_process_ms(data)
        for name, (_, data, ctype) in cases.items()
        if ctype == "image/png"
    }
    print(machine_line())
    print("| request | server ms, median | round trip ms, median | p90 round trip ms |")
    print("|---|---:|---:|---:|")
    for name in cases:
        server_ms = statistics.median(servers[name]) * 1000 if servers[name][0] else float("nan")
        trip = sorted(trips[name])
        p90 = trip[int(0.9 * (len(trip) - 1))] * 1000
        print(f"| {name} | {server_ms:.2f} | {statistics.median(trip) * 1000:.2f} | {p90:.2f} |")
    for name, ms in alone.items():
        print(f"# server.images.preprocess alone, in this process, {name[5:]}: {ms:.2f} ms median")


if __name__ == "__main__":
    main()
