"""What every benchmark prints first: date and machine, so a table can be recorded as is."""

from __future__ import annotations

import os
import platform
import time


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    return (
        f"# {time.strftime('%Y-%m-%d %H:%M')} | {cpu_name()} | {os.cpu_count()} cores | "
        f"Python {platform.python_version()}"
    )
