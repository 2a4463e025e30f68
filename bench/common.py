"""What every benchmark shares: the line it prints first (date and machine, so a table can be
recorded as is), and how its load generator runs its event loop."""

from __future__ import annotations

import asyncio
import os
import platform
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def probe_ms(rounds: int = 5) -> float:
    """Milliseconds a fixed pure-Python loop takes here, best of `rounds`: this machine's
    speed changes by half from one hour to the next (docs/BENCHMARKS.md, fifth session), so
    each table says how fast the machine was while it was taken. Lower is faster."""
    best = float("inf")
    for _ in range(rounds):
        start, total = time.perf_counter(), 0
        for i in range(300_000):
            total += i * i % 7
        best = min(best, time.perf_counter() - start)
    return best * 1000


def machine_line() -> str:
    return (
        f"# {time.strftime('%Y-%m-%d %H:%M')} | {cpu_name()} | {os.cpu_count()} cores | "
        f"Python {platform.python_version()} | probe {probe_ms():.1f} ms"
    )


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a load generator's coroutine on uvloop where it is installed (as the server does):
    the generator shares the machine with the servers it measures, so the less CPU it takes,
    the more the figures say about them. Tables before 2026-11-28 11:00 UTC ran the generator
    on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
