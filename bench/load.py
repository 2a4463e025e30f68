"""Load generator: real WebSocket clients replaying UNIPEN dev digits at pen speed against
a server started as a subprocess on loopback; prints one table row per load level.

Each drawer streams a digit as a pen and a browser would (a point every 8-16 ms, sent in
batches 60 times a second), asks for the final answer, clears, and starts the next digit.
Measured per level: update-to-prediction latency of live predictions (from the start of
sending the update a prediction reflects to receiving it: tables before 2026-11-28 06:00 UTC
timed from the end of the send, see docs/BENCHMARKS.md), live predictions per second per drawer,
errors, server CPU (from /proc; 100% = one core; the server and its child processes, such
as the inference process: the event loop's thread + the rest), server RSS (the same
processes), mean inference batch size,
and the load generator's own CPU.

    .venv/bin/python bench/load.py [--levels 1,10,100,300,1000] [--idle 1000] [--seconds 10]
        [--checkout DIR]   (that tree's server, this load generator)
    .venv/bin/python bench/load.py --fairness [--checkout DIR ...]   (bench/fairness.py)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import resource
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import fairness
from bench.common import machine_line, run_loop
from bench.drawer import Drawer
from client import DigitsClient
from client.replay import percentile
from convert.data import UNIPEN_FILE, load_strokes

FRAME_S = 1 / 60
Strokes = Sequence[Sequence[Sequence[float]]]


async def draw_digit(
    client: DigitsClient, me: Drawer, strokes: Strokes, rng: random.Random
) -> None:
    """Stream one digit at pen speed: points due by each 60 Hz frame go in one message."""
    interval = rng.uniform(0.008, 0.016)
    for stroke in strokes:
        due = 1
        await me.send(client.start_stroke(stroke[:1]))
        started = time.perf_counter()
        while due < len(stroke):
            await asyncio.sleep(FRAME_S)
            upto = min(len(stroke), 1 + int((time.perf_counter() - started) / interval))
            if upto > due:
                await me.send(client.points(stroke[due:upto]))
                due = upto
        await me.send(client.end_stroke())
    await client.recognize()
    await me.send(client.clear())
    await asyncio.sleep(rng.uniform(0.05, 0.2))  # a breath between digits


async def drawer_loop(
    client: DigitsClient, me: Drawer, digits: Sequence[Strokes], stop: float, seed: int
) -> None:
    rng = random.Random(seed)
    await asyncio.sleep(rng.uniform(0, 0.5))  # people do not start in lockstep
    try:
        while time.perf_counter() < stop:
            await draw_digit(client, me, digits[rng.randrange(len(digits))], rng)
    except Exception:
        me.errors += 1


def _cpu_s(where: str) -> float:
    try:
        fields = Path(f"{where}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # gone
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """`python -m server` as a subprocess, with /proc readings of its CPU and memory."""

    def __init__(
        self, port: int, extra: list[str], checkout: Path | None = None, lenient: bool = True
    ) -> None:
        """`checkout`: the tree to run (default this one); `lenient`: the per-address limits
        off, since every simulated user connects from this one loopback address. The points
        budgets are lifted through DIGITS_* variables, which servers without them ignore."""
        args = [sys.executable, "-m", "server", "--port", str(port), "--log-level", "WARNING"]
        limits = ["--max-connections", "10000", "--max-connections-per-client", "10000"]
        per_address = {
            "DIGITS_POINTS_PER_SECOND_PER_CLIENT": "1000000000",
            "DIGITS_POINTS_BURST_PER_CLIENT": "1000000000",
        }
        root = checkout or Path(__file__).resolve().parent.parent
        self.proc = subprocess.Popen(
            [*args, *(limits if lenient else []), *extra],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root), **(per_address if lenient else {})},
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(self.url + "/readyz", timeout=1).status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError("server did not become ready")

    def pids(self) -> list[int]:
        """The server's process and its children (an inference process, multiprocessing's
        resource tracker): the server's CPU and memory are theirs together."""
        pid, kids = self.proc.pid, list[int]()
        for task in Path(f"/proc/{pid}/task").glob("*"):  # a child belongs to the thread
            with contextlib.suppress(OSError):  # that started it
                kids += map(int, (task / "children").read_text().split())
        return [pid, *kids]

    def cpu_s(self, task: int | None = None) -> float:
        """CPU seconds of the server with its children, or of one of its threads (the event
        loop's is the pid)."""
        if task is not None:
            return _cpu_s(f"/proc/{self.proc.pid}/task/{task}")
        return sum(_cpu_s(f"/proc/{pid}") for pid in self.pids())

    def rss_mb(self) -> float:
        """Resident memory of the server with its children."""
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{pid}/status").read_text()
                match = re.search(r"VmRSS:\s+(\d+) kB", status)
                total += int(match.group(1)) / 1024 if match else float("nan")
        return total

    def batches(self) -> tuple[float, float]:
        text = urllib.request.urlopen(self.url + "/metrics", timeout=5).read().decode()
        values = [
            re.search(rf"^digits_batch_size_{k} (\S+)$", text, re.M) for k in ("count", "sum")
        ]
        return tuple(float(m.group(1)) if m else 0.0 for m in values)  # type: ignore[return-value]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def latency_ms(latencies: list[float], q: float) -> float:
    """Nearest-rank percentile q (0..100) of latencies in seconds, in ms; NaN when none."""
    value = percentile(latencies, q)
    return float("nan") if value is None else value * 1000


async def open_many(
    url: str, n: int, http: aiohttp.ClientSession, hooks: list[Drawer] | None
) -> list[DigitsClient]:
    """Open n clients, 50 at a time (as people arrive, not in one SYN flood)."""
    clients: list[DigitsClient] = []
    for start in range(0, n, 50):
        batch = range(start, min(n, start + 50))
        clients += await asyncio.gather(
            *(
                DigitsClient.open(
                    url, session=http, on_message=hooks[i].on_message if hooks else None
                )
                for i in batch
            )
        )
    return clients


async def run_level(
    server: Server, digits: Sequence[Strokes], drawers: int, idle: int, seconds: float
) -> dict[str, float]:
    ws_url = server.url.replace("http", "ws") + "/ws"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        idlers = await open_many(ws_url, idle, http, None)
        people = [Drawer() for _ in range(drawers)]
        clients = await open_many(ws_url, drawers, http, people)
        count0, sum0 = server.batches()
        cpu0, own0, t0 = server.cpu_s(), time.process_time(), time.perf_counter()
        loop0 = server.cpu_s(server.proc.pid)
        stop = t0 + seconds
        await asyncio.gather(
            *(
                drawer_loop(c, p, digits, stop, i)
                for i, (c, p) in enumerate(zip(clients, people, strict=True))
            )
        )
        elapsed = time.perf_counter() - t0
        cpu1, own1, loop1 = server.cpu_s(), time.process_time(), server.cpu_s(server.proc.pid)
        count1, sum1 = server.batches()
        alive = sum(1 for c in idlers if not c.closed)
        pings = await asyncio.gather(*(c.ping() for c in idlers[:100]), return_exceptions=True)
        rss = server.rss_mb()
        await asyncio.gather(*(c.close() for c in clients + idlers), return_exceptions=True)
    latencies = [x for p in people for x in p.latencies]
    rates = [p.live / elapsed for p in people]
    return {
        "drawers": drawers,
        "idle": idle,
        "idle_alive": alive,
        "idle_ping_fail": sum(1 for r in pings if isinstance(r, BaseException)),
        "p50_ms": latency_ms(latencies, 50),
        "p99_ms": latency_ms(latencies, 99),
        "pred_s_median": statistics.median(rates) if rates else float("nan"),
        "pred_s_min": min(rates) if rates else float("nan"),
        "pred_s_total": sum(rates),
        "errors": sum(p.errors for p in people),
        "server_cpu": 100 * (cpu1 - cpu0) / elapsed,
        "loop_cpu": 100 * (loop1 - loop0) / elapsed,
        "per_cpu_s": sum(rates) / max(1e-9, (cpu1 - cpu0) / elapsed),
        "server_rss_mb": rss,
        "batch_mean": (sum1 - sum0) / max(1.0, count1 - count0),
        "loadgen_cpu": 100 * (own1 - own0) / elapsed,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_open_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


HEADER = (
    "| drawers | idle | p50 ms | p99 ms | pred/s per drawer (median, min) | pred/s total | errors "
    "| server CPU (event loop + the rest) | server RSS | mean batch | loadgen CPU "
    "| predictions per server CPU-s |"
)


def row(r: dict[str, float]) -> str:
    idle = (
        f"{int(r['idle'])} ({int(r['idle_alive'])} alive, {int(r['idle_ping_fail'])} ping fail)"
        if r["idle"]
        else "0"
    )
    children = max(0.0, r["server_cpu"] - r["loop_cpu"])  # readings a moment apart: never -0
    return (
        f"| {int(r['drawers'])} | {idle} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
        f"| {r['pred_s_median']:.1f}, {r['pred_s_min']:.1f} | {r['pred_s_total']:.0f} "
        f"| {int(r['errors'])} "
        f"| {r['server_cpu']:.0f}% ({r['loop_cpu']:.0f} + {children:.0f}) "
        f"| {r['server_rss_mb']:.0f} MB | {r['batch_mean']:.1f} "
        f"| {r['loadgen_cpu']:.0f}% | {r['per_cpu_s']:.0f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="1,10,100,300,1000", help="drawer counts, comma-separated")
    ap.add_argument(
        "--idle", type=int, default=1000, help="idle clients for the last row (0: none)"
    )
    ap.add_argument(
        "--idle-drawers", type=int, default=10, help="drawers alongside the idle clients"
    )
    ap.add_argument("--seconds", type=float, default=10.0, help="drawing time per level")
    ap.add_argument("--server-args", default="", help="extra flags for python -m server")
    ap.add_argument("--fairness", action="store_true", help="the fairness scenario instead")
    fairness.add_arguments(ap)
    args = ap.parse_args()
    if args.fairness:
        fairness.run(args)
        return
    raise_open_file_limit()
    digits = [s.strokes for s in load_strokes(UNIPEN_FILE)[:500]]
    if args.checkout and len(args.checkout) > 1:
        ap.error("the load levels run one checkout's server (--checkout once)")
    tree = args.checkout[0].resolve() if args.checkout else None
    server = Server(free_port(), args.server_args.split(), tree)
    print(machine_line())
    where = f" (from {tree})" if tree else ""
    print(f"# server: python -m server {args.server_args}{where}".replace("  ", " "))
    print(HEADER)
    print("|---" * (HEADER.count("|") - 1) + "|")
    try:
        for drawers in [int(x) for x in args.levels.split(",") if x]:
            print(row(run_loop(run_level(server, digits, drawers, 0, args.seconds))), flush=True)
        if args.idle:
            print(
                row(
                    run_loop(run_level(server, digits, args.idle_drawers, args.idle, args.seconds))
                ),
                flush=True,
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
