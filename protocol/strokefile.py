"""The strokes-file reader: JSON Lines sample files and single strokes (digits-client, convert).

Belongs here: opening a strokes file (gzipped or not, or "-" for stdin) and validating each
line into a Sample, or a LineError naming the file and line. No network, no asyncio.

A sample line is {"id": ..., "label": 0-9 or null, "strokes": [[[x, y], ...], ...]} (the
UNIPEN file's format); points may carry a third number, t. Coordinates must be finite. A
label may also be one non-digit character (the UNIPEN letters and symbols file): such a
sample has no digit label and carries the character in `char`.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, cast

GZIP_MAGIC = b"\x1f\x8b"
MAX_LINE_CHARS = 4_000_000  # a line beyond this is reported, not parsed

Point = tuple[float, ...]  # (x, y) or (x, y, t)
Stroke = tuple[Point, ...]


class InputError(Exception):
    """The strokes file cannot be read at all (missing, unreadable)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One digit to recognize: its strokes, and its label when the file has one."""

    line: int
    id: str
    label: int | None
    strokes: tuple[Stroke, ...]
    source: str = ""  # who contributed it, where the file says (UNIPEN: the source code)
    char: str | None = None  # the label when it is a character that is not a digit

    @property
    def points(self) -> int:
        return sum(len(s) for s in self.strokes)


@dataclass(frozen=True, slots=True)
class LineError:
    """A line that is not a valid sample; str() is "file:line: reason"."""

    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}"


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def _loads(text: str) -> Any:
    """JSON without NaN/Infinity (Python's json accepts them by default)."""
    return json.loads(text, parse_constant=_reject_constant)


def parse_point(raw: Any) -> Point:
    """[x, y] or [x, y, t] of finite numbers; ValueError otherwise."""
    if not isinstance(raw, list) or len(raw) not in (2, 3):
        raise ValueError("each point must be [x, y] or [x, y, t]")
    if any(type(v) not in (int, float) for v in raw):
        raise ValueError("point coordinates must be numbers")
    if not all(math.isfinite(v) for v in raw):
        raise ValueError("point coordinates must be finite")
    return tuple(float(v) for v in raw)


def parse_stroke(raw: Any) -> Stroke:
    """A stroke: a list of points (possibly empty); ValueError naming what is wrong."""
    if not isinstance(raw, list):
        raise ValueError("a stroke must be a list of [x, y] points")
    return tuple(parse_point(p) for p in raw)


def _label(raw: Any) -> int | None:
    if raw is None or _char(raw) is not None:
        return None
    if type(raw) is not int or not 0 <= raw <= 9:
        raise ValueError("label must be an integer from 0 to 9, or null")
    return raw


def _char(raw: Any) -> str | None:
    """A label that is one character other than a digit (a letter or a symbol), else None."""
    if isinstance(raw, str) and len(raw) == 1 and not raw.isdigit():
        return raw
    return None


def parse_sample(text: str, line: int) -> Sample:
    """One JSON Lines sample; ValueError with a short reason if it is not one."""
    if len(text) > MAX_LINE_CHARS:
        raise ValueError(f"line longer than {MAX_LINE_CHARS} characters")
    try:
        obj = _loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError("a sample must be a JSON object")
    if "strokes" not in obj:
        raise ValueError('a sample needs "strokes"')
    if not isinstance(obj["strokes"], list):
        raise ValueError('"strokes" must be a list of strokes')
    strokes = tuple(parse_stroke(s) for s in obj["strokes"])
    raw_id = obj.get("id")
    sample_id = f"line{line}" if raw_id is None else str(raw_id)
    source = str(obj.get("source", ""))
    raw_label = obj.get("label")
    return Sample(line, sample_id, _label(raw_label), strokes, source, _char(raw_label))


def parse_draw_line(text: str) -> Stroke | str:
    """A `digits-client draw` input line: a stroke ([[x, y], ...]) or one of the commands
    "undo", "clear", "recognize" (as JSON strings). ValueError otherwise."""
    try:
        obj = _loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if isinstance(obj, str):
        if obj not in ("undo", "clear", "recognize"):
            raise ValueError(f'unknown command {obj[:20]!r}: use "undo", "clear" or "recognize"')
        return obj
    return parse_stroke(obj)


def _open_binary(path: str) -> io.BufferedReader:
    if path == "-":
        return cast(io.BufferedReader, sys.stdin.buffer)
    try:
        return open(path, "rb")
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None


def _text(raw: io.BufferedReader) -> IO[str]:
    """A text view of `raw`, gunzipped when it starts with the gzip magic bytes."""
    if raw.peek(2)[:2] == GZIP_MAGIC:
        return io.TextIOWrapper(gzip.GzipFile(fileobj=raw), "utf-8", errors="replace")
    return io.TextIOWrapper(raw, "utf-8", errors="replace")


def read_samples(path: str) -> Iterator[Sample | LineError]:
    """Every sample of a strokes file, in order; a bad line yields a LineError and the rest
    still follow. A file that breaks off (corrupt gzip) ends with a LineError.
    Raises InputError at once if the file cannot be opened."""
    return _samples(_open_binary(path), "stdin" if path == "-" else path)


def _samples(raw: io.BufferedReader, source: str) -> Iterator[Sample | LineError]:
    line = 0
    try:
        with raw, _text(raw) as lines:
            for line, text in enumerate(lines, 1):
                if text.strip():
                    yield _sample_or_error(source, text, line)
    except (OSError, EOFError, zlib.error) as exc:
        yield LineError(source, line + 1, f"file is corrupt or truncated ({exc})")


def _sample_or_error(source: str, text: str, line: int) -> Sample | LineError:
    try:
        return parse_sample(text, line)
    except (ValueError, RecursionError) as exc:
        return LineError(source, line, str(exc) or type(exc).__name__)
