"""What aiohttp itself costs per WebSocket message on this machine, next to the server: the
floor under issue 11's "predictions per server CPU-second".

The same load (CONNECTIONS sockets, each sending msgpack `points` frames of three points at
pen rate, a stroke of 15 frames, a clear every 3 strokes: about a digit's ink; the frames
bench/load.py's drawers send 60 a second) goes in turn to:

* `read`: an aiohttp WebSocket handler that only reads each frame (the server's socket
  settings: no compression, a heartbeat);
* `decode`: the same, and it unpacks each frame with msgpack;
* `reply`: the same, and it sends one prediction-sized frame for every REPLY_EVERY frames
  it reads (about what a pen-speed drawer gets back);
* `server`: `python -m server` (hello first; it draws, predicts and answers for real).

Each server is a process of its own, measured from /proc (with its children: the real
server's inference process). Printed: frames per second, server CPU, CPU microseconds per
frame and, for the real server, predictions per second and per server CPU-second. A frame
that costs F microseconds in aiohttp alone, at M frames per prediction, leaves at most
1e6 / (M * F + inference) predictions per CPU-second to any server written on it.

    .venv/bin/python bench/floor.py [--rate 6000] [--connections 100] [--seconds 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import machine_line, run_loop
from bench.load import Server, _cpu_s, free_port
from protocol import Guess, Prediction, encode

BARE = ("read", "decode", "reply", "echo")
REPLY_EVERY = 5  # frames per prediction of a pen-speed drawer on a loaded server (issue 11)
LONE_PAUSES_MS = (0.0, 16.0)  # back to back, and pen speed (60 frames a second)
STROKE_FRAMES, STROKES_PER_CLEAR, WARMUP_S = 15, 3, 2.0  # 135 points: a digit's ink
REPLY: bytes = encode(  # type: ignore[assignment]  # binary: bytes
    Prediction(
        123,
        False,
        False,
        (Guess(7, 0.91), Guess(1, 0.05), Guess(2, 0.02)),
        (101.5, 220.25, 388.0, 610.75),
        2,
        None,
        "digit",
    ),
    True,
)


# ---- the bare servers -------------------------------------------------------------------


def serve(mode: str, port: int) -> None:
    """One of the bare aiohttp servers, until killed."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=65537, compress=False)
        await ws.prepare(request)
        frames = 0
        async for msg in ws:
            if mode != "read":
                msgpack.unpackb(msg.data)
            frames += 1
            if mode == "echo" or (mode == "reply" and frames % REPLY_EVERY == 0):
                await ws.send_bytes(REPLY)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()  # as the server runs by default
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


class Bare:
    """A bare server as a subprocess, with its CPU from /proc."""

    def __init__(self, mode: str, port: int) -> None:
        script = Path(__file__).resolve()
        self.proc = subprocess.Popen(
            [sys.executable, str(script), "--serve", mode, "--port", str(port)]
        )
        self.url = f"http://127.0.0.1:{port}"

    def cpu_s(self) -> float:
        return _cpu_s(f"/proc/{self.proc.pid}")


# ---- the load ---------------------------------------------------------------------------


def frames() -> list[bytes]:
    """One cycle of a drawer's frames: strokes of STROKE_FRAMES frames, then a clear."""
    out, x = [], 0
    for _ in range(STROKES_PER_CLEAR):
        for i in range(STROKE_FRAMES):
            points = [[100 + x + k, 200 + (x * 7 + k) % 300] for k in range(3)]
            x = (x + 3) % 500
            kind = "start" if i == 0 else "end" if i == STROKE_FRAMES - 1 else "points"
            out.append(msgpack.packb({"type": kind, "points": points}))
    out.append(msgpack.packb({"type": "clear"}))
    return out


class Socket:
    """One connection: sends the cycle at `hz`, counts what comes back."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.sent, self.predictions = ws, 0, 0

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.BINARY and b"prediction" in msg.data:
                self.predictions += 1

    async def send(self, cycle: list[bytes], hz: float, stop: float, offset: float) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time() + offset
        for i in range(10**9):
            due = start + i / hz
            if due >= stop:
                return
            await asyncio.sleep(max(0.0, due - loop.time()))
            await self.ws.send_bytes(cycle[i % len(cycle)])
            self.sent += 1


async def measure(server: Bare | Server, hello: bool, args: argparse.Namespace) -> dict[str, float]:
    ws_url = server.url.replace("http", "ws") + "/ws"
    hz = args.rate / args.connections
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await (await connect(http, ws_url)).close()  # the bare server may still be starting
        sockets = []
        for _ in range(args.connections):
            ws = await http.ws_connect(ws_url)
            if hello:
                await ws.send_bytes(msgpack.packb({"type": "hello", "version": 1}))
                await ws.receive()  # welcome
            sockets.append(Socket(ws))
        readers = [asyncio.create_task(s.read()) for s in sockets]
        loop, cycle = asyncio.get_running_loop(), frames()
        stop = loop.time() + WARMUP_S + args.seconds
        senders = [
            asyncio.create_task(s.send(cycle, hz, stop, i / args.rate))
            for i, s in enumerate(sockets)
        ]
        await asyncio.sleep(WARMUP_S)
        sent0, pred0 = sum(s.sent for s in sockets), sum(s.predictions for s in sockets)
        cpu0, own0, t0 = server.cpu_s(), time.process_time(), time.perf_counter()
        await asyncio.gather(*senders)
        elapsed = time.perf_counter() - t0
        cpu1, own1 = server.cpu_s(), time.process_time()
        await asyncio.sleep(0.2)  # the last answers
        sent = sum(s.sent for s in sockets) - sent0
        predicted = sum(s.predictions for s in sockets) - pred0
        for s in sockets:
            await s.ws.close()
        for r in readers:
            r.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    cpu = cpu1 - cpu0
    return {
        "frames_s": sent / elapsed,
        "cpu": 100 * cpu / elapsed,
        "us_per_frame": 1e6 * cpu / max(1, sent),
        "pred_s": predicted / elapsed,
        "pred_per_cpu_s": predicted / max(1e-9, cpu),
        "loadgen_cpu": 100 * (own1 - own0) / elapsed,
    }


async def lone(server: Bare | Server, hello: bool, args: argparse.Namespace) -> dict[str, float]:
    """One socket: send a frame, wait for its answer (the real server: the prediction with
    its seq), pause, again. Seconds from before the send to the answer, per pause."""
    ws_url = server.url.replace("http", "ws") + "/ws"
    cycle = [msgpack.unpackb(f) for f in frames()]
    out: dict[str, float] = {}
    async with aiohttp.ClientSession() as http:
        ws = await connect(http, ws_url)
        if hello:
            await ws.send_bytes(msgpack.packb({"type": "hello", "version": 1}))
            await ws.receive()  # welcome
        seq = 0
        for pause_ms in LONE_PAUSES_MS:
            latencies = []
            for _ in range(args.updates):
                seq += 1
                frame = msgpack.packb({**cycle[seq % len(cycle)], "seq": seq})
                start = time.perf_counter()
                await ws.send_bytes(frame)
                while True:
                    reply = msgpack.unpackb((await ws.receive(timeout=5)).data)
                    if not hello or reply.get("seq") == seq:
                        break
                latencies.append(time.perf_counter() - start)
                await asyncio.sleep(pause_ms / 1000)
            latencies.sort()
            out[f"p50 {pause_ms:g}"] = 1000 * latencies[len(latencies) // 2]
            out[f"p99 {pause_ms:g}"] = 1000 * latencies[int(len(latencies) * 0.99)]
        await ws.close()
    return out


async def connect(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    """A socket to a server that may still be starting."""
    for _ in range(100):
        with contextlib.suppress(aiohttp.ClientError):
            return await http.ws_connect(url)
        await asyncio.sleep(0.1)
    return await http.ws_connect(url)


def start(mode: str) -> Bare | Server:
    port = free_port()
    return Server(port, []) if mode == "server" else Bare(mode, port)


def rounds(
    modes: list[str],
    run: Callable[[Bare | Server, bool, argparse.Namespace], Coroutine[Any, Any, dict[str, float]]],
    args: argparse.Namespace,
) -> dict[str, dict[str, float]]:
    """`run` on each server in turn, args.repeat rounds (alternating: the rounds share the
    machine's moods); the median of each figure."""
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for _ in range(args.repeat):
        for mode in modes:
            server = start(mode)
            try:
                runs[mode].append(run_loop(run(server, mode == "server", args)))
            finally:
                server.proc.terminate()
                server.proc.wait(timeout=30)
    return {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in runs.items()}


def print_lone(modes: list[str], args: argparse.Namespace) -> None:
    print(f"# one socket, {args.updates} round trips per pause, {args.repeat} rounds (medians)")
    meds = rounds(modes, lone, args)
    print("| server | pause between updates | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    for pause in LONE_PAUSES_MS:
        for mode, med in meds.items():
            p50, p99 = med[f"p50 {pause:g}"], med[f"p99 {pause:g}"]
            print(f"| {mode} | {pause:g} ms | {p50:.2f} | {p99:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=6000.0, help="frames per second, all sockets")
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0, help="measured time per run")
    ap.add_argument("--repeat", type=int, default=3, help="rounds over every server (median)")
    ap.add_argument(
        "--only", help="servers to run (default: read,decode,reply,server; --lone: echo,server)"
    )
    ap.add_argument("--lone", action="store_true", help="one socket's round trips instead")
    ap.add_argument("--updates", type=int, default=300, help="--lone: round trips per pause")
    ap.add_argument("--serve", choices=BARE, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    modes = (args.only or ("echo,server" if args.lone else "read,decode,reply,server")).split(",")
    print(machine_line())
    if args.lone:
        print_lone(modes, args)
        return
    print(
        f"# {args.connections} sockets, {args.rate:.0f} frames/s in all, {args.seconds:.0f} s "
        f"measured after {WARMUP_S:.0f} s, {args.repeat} rounds (medians)"
    )
    runs = rounds(modes, measure, args)
    print(
        "| server | frames/s | server CPU | CPU us per frame | predictions/s "
        "| predictions per server CPU-s | loadgen CPU |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for mode, med in runs.items():
        per_cpu = f"{med['pred_per_cpu_s']:,.0f}" if mode in ("reply", "server") else "-"
        print(
            f"| {mode} | {med['frames_s']:,.0f} | {med['cpu']:.0f}% | {med['us_per_frame']:.1f} "
            f"| {med['pred_s']:,.0f} | {per_cpu} | {med['loadgen_cpu']:.0f}% |"
        )


if __name__ == "__main__":
    main()
