"""Many processes on one Redis: capacity with 1 and 2 workers in the same run, cross-process
stroke fan-out latency, and what Redis costs (commands per client message, Redis CPU).

Capacity: bench/load.py's drawers (UNIPEN digits at pen speed, solo) against
`python -m server` (1 worker, in memory) and `python -m server --workers 2 --redis URL`,
level by level; "served" is the largest level where every drawer gets >= 10 live
predictions/s with p99 <= 100 ms. Server CPU is the whole process tree's (100% = one core).

Fan-out: two server processes A and B on one Redis; ROOMS rooms of one drawer on A and two
watchers on B. Each drawer sends a points message every frame (--hz, 60), each point's x
unique; latency is from sending it on A to a watcher on B receiving its `stroke` event.
Drawers keep random phases of the frame (--lockstep: all at once, the worst burst).
Redis figures come from INFO (commandstats, used_cpu_*) over the measured seconds; server
CPU is each process's (A, B), and the load generator's own CPU is shown too (it shares the
machine: 100% = one core).

    flock /work/heavy.lock .venv/bin/python bench/scaling.py [--levels 100,200,300] [--repeat 3]
        [--rooms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import machine_line, run_loop
from bench.load import HEADER, Server, free_port, raise_open_file_limit, row, run_level
from client import DigitsClient, ServerMessage, StrokeEvent
from client.replay import percentile
from convert.data import UNIPEN_FILE, load_strokes


class Tree(Server):
    """A server and its worker processes: CPU of the whole tree."""

    def cpu_s(self, task: int | None = None) -> float:
        if task is not None:
            return super().cpu_s(task)
        total = 0.0
        for pid in [self.proc.pid, *children(self.proc.pid)]:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> None:
        """SIGTERM, as a deploy would; a tree still there after 15 s is killed and said so."""
        tree = [*children(self.proc.pid), self.proc.pid]
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            print(f"(the server did not stop within 15 s of SIGTERM: killed {tree})", flush=True)
            for pid in tree:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait()


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


class Redis:
    """A redis-server of the benchmark's own (AOF on, fsync every second)."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(folder), "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis.from_url(self.url)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def reading(self) -> tuple[int, float]:
        """(commands processed so far, Redis CPU seconds so far)."""
        stats = self.client.info("commandstats")
        calls = sum(int(v["calls"]) for v in stats.values())
        cpu = self.client.info("cpu")
        return calls, float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(10)


# ---- capacity -------------------------------------------------------------------------------


def capacity(levels: list[int], seconds: float, redis_url: str, repeat: int = 1) -> None:
    """Each level `repeat` times in a row; a level's row is the median of each figure over
    its runs (this machine's noise moves one run's p99 by tens of milliseconds), and
    "served" judges those medians."""
    digits = [s.strokes for s in load_strokes(UNIPEN_FILE)[:500]]
    print("\n## Capacity: 1 worker (in memory) and 2 workers (Redis), same run\n")
    if repeat > 1:
        print(f"Each row: the median of {repeat} runs of the level, figure by figure.")
    for label, extra in (
        ("1 worker", []),
        ("2 workers", ["--workers", "2", "--redis", redis_url, "--redis-prefix", "cap:"]),
    ):
        server = Tree(free_port(), extra)
        time.sleep(2 if extra else 0)  # the second worker loads its model too
        print(f"\n### {label}: python -m server {' '.join(extra)}\n")
        print(HEADER)
        print("|---" * (HEADER.count("|") - 1) + "|")
        served = 0
        try:
            for drawers in levels:
                runs = [
                    run_loop(run_level(server, digits, drawers, 0, seconds))  # type: ignore[arg-type]
                    for _ in range(repeat)
                ]
                r = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
                print(row(r), flush=True)
                if r["pred_s_min"] >= 10 and r["p99_ms"] <= 100 and not r["errors"]:
                    served = drawers
        finally:
            server.stop()
        print(f"\n{label}: drawers served at >= 10 predictions/s with p99 <= 100 ms: {served}")


# ---- fan-out --------------------------------------------------------------------------------


async def fan_out(
    redis_server: Redis, rooms: int, seconds: float, hz: float, lockstep: bool = False
) -> None:
    """Each drawer on process A streams points at `hz`; its two watchers on B hear them.
    Drawers start at random phases of the period, as people do (`lockstep`: all together, the
    worst burst), and keep it."""
    ports = [free_port(), free_port()]
    extra = [
        "--redis",
        redis_server.url,
        "--redis-prefix",
        "fan:",
        "--max-rooms-per-client",
        "10000",
    ]
    servers = [Tree(port, extra) for port in ports]
    sent: dict[float, float] = {}  # the point's x -> when it was sent
    latencies: list[float] = []
    messages = 0

    def hear(msg: ServerMessage, received: float) -> None:
        if isinstance(msg, StrokeEvent) and msg.points:
            x = msg.points[0][0]
            if x in sent:
                latencies.append(received - sent[x])

    async def drawer(c: DigitsClient, index: int, stop: float) -> None:
        nonlocal messages
        n = 0
        if not lockstep:
            await asyncio.sleep(random.Random(index).uniform(0, 1 / hz))
        while time.perf_counter() < stop:
            await c.start_stroke([[index, 0]])
            messages += 1
            for _ in range(30):
                await asyncio.sleep(1 / hz)
                n += 1
                x = index + n / 4096  # unique per point, exact, within max_coordinate
                sent[x] = time.perf_counter()
                await c.points([[x, 1.0]])
                messages += 1
            await c.end_stroke()
            await c.clear()
            messages += 2

    try:
        urls = [f"ws://127.0.0.1:{p}/ws" for p in ports]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            drawers, watchers = [], []
            for _ in range(rooms):
                d = await DigitsClient.open(urls[0], session=http)
                shared = await d.share()
                for _ in range(2):
                    w = await DigitsClient.open(urls[1], session=http, on_message=hear)
                    await w.join(shared.room, shared.watch_token)
                    watchers.append(w)
                drawers.append(d)
            calls0, cpu0 = redis_server.reading()
            servers0, own0 = [s.cpu_s() for s in servers], time.process_time()
            t0 = time.perf_counter()
            await asyncio.gather(*(drawer(d, i + 1, t0 + seconds) for i, d in enumerate(drawers)))
            elapsed = time.perf_counter() - t0
            calls1, cpu1 = redis_server.reading()
            busy = [s.cpu_s() - c for s, c in zip(servers, servers0, strict=True)]
            own = time.process_time() - own0
            for c in drawers + watchers:
                await c.close()
    finally:
        for s in servers:
            s.stop()
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print(f"\n## Cross-process fan-out: {rooms} rooms x 3 members (drawer on A, 2 watchers on B),"
          f" {hz:g} points messages/s per drawer"
          f"{', all drawers in lockstep' if lockstep else ''}\n")  # fmt: skip
    print("| rooms | client messages/s | stroke events received | p50 ms | p99 ms "
          "| Redis commands/s | Redis commands per client message | Redis CPU "
          "| server CPU A / B | load generator CPU |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {rooms} | {messages / elapsed:.0f} | {len(latencies)} "
        f"| {(p50 or float('nan')) * 1000:.1f} | {(p99 or float('nan')) * 1000:.1f} "
        f"| {(calls1 - calls0) / elapsed:.0f} | {(calls1 - calls0) / max(1, messages):.2f} "
        f"| {100 * (cpu1 - cpu0) / elapsed:.0f}% "
        f"| {100 * busy[0] / elapsed:.0f}% / {100 * busy[1] / elapsed:.0f}% "
        f"| {100 * own / elapsed:.0f}% |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="100,200,300,400", help="drawer counts per capacity run")
    ap.add_argument("--seconds", type=float, default=10.0, help="drawing time per level")
    ap.add_argument("--rooms", type=int, default=100, help="rooms in the fan-out run")
    ap.add_argument("--hz", default="60", help="points messages per second per drawer (list)")
    ap.add_argument("--skip-capacity", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="runs per capacity level (median)")
    ap.add_argument(
        "--lockstep", action="store_true", help="fan-out drawers all send at once (worst burst)"
    )
    args = ap.parse_args()
    raise_open_file_limit()
    print(machine_line())
    with tempfile.TemporaryDirectory() as folder:
        store = Redis(Path(folder))
        try:
            if not args.skip_capacity:
                levels = [int(x) for x in args.levels.split(",") if x]
                capacity(levels, args.seconds, store.url, args.repeat)
            for hz in [float(x) for x in args.hz.split(",") if x]:
                run_loop(fan_out(store, args.rooms, args.seconds, hz, args.lockstep))
        finally:
            store.stop()


if __name__ == "__main__":
    main()
