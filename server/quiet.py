"""Keeping the native runtime quiet: LiteRT, its accelerator registry, the OpenVINO plugin
loader and Dawn (WebGPU) write dozens of lines straight to file descriptor 2 while a model
loads, whatever the Python log level, and no environment variable silences them all.

Belongs here: holding fd 2 while native code runs, and turning what it said into a few words
about why the GPU was not used. Nothing about models or logging setup.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

#: (what the runtime says, what it means), first match wins; the runtime's own exception
#: text names only source lines, so the reason is read from what it printed.
_REASONS = (
    ("libvulkan", "no Vulkan driver (libvulkan.so.1 not found)"),
    ("no adapters found", "no GPU adapter found"),
    ("libopencl", "no OpenCL driver"),
    ("not run every op", "the GPU does not run every op of this model"),
)


@dataclass(slots=True)
class Captured:
    """What native code wrote to fd 2 inside `native_output` ("" until it exits)."""

    text: str = ""


@contextlib.contextmanager
def native_output(quiet: bool = True) -> Iterator[Captured]:
    """While inside, whatever the process writes to fd 2 (native libraries included) is
    captured instead of printed; with `quiet` False, nothing changes. Python's own
    sys.stderr is flushed first so nothing written before is lost."""
    captured = Captured()
    if not quiet:
        yield captured
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode(errors="replace")


def gpu_reason(error: str, native: str = "") -> str:
    """Why the GPU was not used, in a few words, from the runtime's exception text and what
    it printed meanwhile."""
    said = f"{error}\n{native}".lower()
    for needle, reason in _REASONS:
        if needle in said:
            return reason
    first = error.strip().splitlines()[0] if error.strip() else ""
    if not first or first.startswith("ERROR: ["):  # a source location, not a reason
        return "the GPU accelerator could not be set up"
    return first[:80]


def decision(asked: str, used: str, runtime: str, gpu_error: str | None, native: str) -> str:
    """The accelerator decision for the start-up line, e.g. 'cpu (litert; GPU not used:
    no GPU adapter found)'."""
    if used == "gpu":
        return f"gpu ({runtime})"
    if asked == "cpu":
        return f"cpu ({runtime}; as --accelerator cpu asks)"
    return f"cpu ({runtime}; GPU not used: {gpu_reason(gpu_error or '', native)})"
