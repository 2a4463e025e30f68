"""The `digits-client` command: recognize a strokes file, draw strokes read from stdin,
watch a shared session, or recognize image files over HTTP.

Belongs here: the arguments, the top of each subcommand, and the one place that turns
failures into a one-line message and an exit status. The work lives in client/replay.py
(files), client/pen.py (pacing) and protocol/strokefile.py (parsing).

Exit status: 0 all went well; 1 some lines or samples failed, or the input cannot be read;
2 the server cannot be reached or the connection was lost (also bad usage); 3 the server
refused to join the room (wrong or expired token, a full room, or a server without rooms).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any, TextIO

import aiohttp

from client import http as oneshot
from client.client import ConnectionClosed, JoinRefused, ServerError
from client.pen import Pace, Pen
from client.replay import Options, Unreachable, open_client, recognize_file
from protocol import (
    MAX_TOP_K,
    Cleared,
    Error,
    Joined,
    Prediction,
    Presence,
    ServerMessage,
    StrokeEvent,
    Undone,
    encode,
)
from protocol.strokefile import InputError, parse_draw_line, read_samples

EXIT_OK, EXIT_FAILURES, EXIT_UNREACHABLE, EXIT_REFUSED = 0, 1, 2, 3
DEFAULT_URL = os.environ.get("DIGITS_URL", "ws://127.0.0.1:8080/ws")
PROG = "digits-client"


# ---- arguments ------------------------------------------------------------------------------


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """--help that gives each option's default, where it has one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or action.help is None:
            return action.help or ""
        return super()._get_help_string(action) or ""


def _connection() -> argparse.ArgumentParser:
    """The options of every WebSocket subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=DEFAULT_URL, help="server WebSocket URL")
    common.add_argument(
        "--top-k", type=int, default=3, choices=range(1, MAX_TOP_K + 1), help="guesses per answer"
    )
    common.add_argument("--room", help="join this shared session (needs --token)")
    common.add_argument("--token", help="the room's draw or watch token")
    common.add_argument("--json", action="store_true", help="JSON text frames, not msgpack")
    common.add_argument(
        "--timeout", type=_positive(float), default=10.0, help="seconds to connect and join"
    )
    return common


def _pen() -> argparse.ArgumentParser:
    """The options of the subcommands that draw."""
    pen = argparse.ArgumentParser(add_help=False)
    pen.add_argument(
        "--rate", type=_positive(float), default=90.0, help="pen speed, points per second"
    )
    pen.add_argument(
        "--fast", action="store_true", help="send as fast as the server's rate limit allows"
    )
    pen.add_argument(
        "--batch", type=_positive(int), default=8, help="points per message with --fast"
    )
    return pen


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand; each one's --help gives the defaults and, in its
    epilog, the exit statuses."""
    exits = __doc__.split("\n\n")[2].replace("\n", " ")
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0], epilog=exits)
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser(
        "recognize",
        parents=[_connection(), _pen()],
        help="recognize every sample of a strokes file",
        formatter_class=_Help,
        epilog=exits,
    )
    rec.add_argument("file", help="JSON Lines strokes file, gzipped or not; - for stdin")
    rec.add_argument("--out", default="-", help="where to write one JSON line per sample")
    rec.add_argument("--concurrency", type=_positive(int), default=1, help="connections")
    draw = sub.add_parser(
        "draw",
        parents=[_connection(), _pen()],
        help="draw strokes from stdin, print live predictions",
        formatter_class=_Help,
        epilog=exits,
    )
    draw.add_argument(
        "--share",
        action="store_true",
        help="share the session first; the room and its tokens go to stderr as a JSON line",
    )
    watch = sub.add_parser(
        "watch",
        parents=[_connection()],
        help="watch a shared session (--room, --token)",
        formatter_class=_Help,
        epilog=exits,
    )
    watch.add_argument(
        "--events", action="store_true", help="print strokes, presence, undo and clear too"
    )
    watch.add_argument(
        "--count", type=_positive(int), help="stop after this many predictions (default: never)"
    )
    image = sub.add_parser(
        "image",
        help="recognize image files (PNG, JPEG, WebP) over HTTP, one JSON line each",
        formatter_class=_Help,
        epilog=exits,
    )
    image.add_argument("files", nargs="+", metavar="FILE")
    image.add_argument("--url", default=DEFAULT_URL, help="server URL, ws:// or http://")
    image.add_argument(
        "--top-k", type=int, default=3, choices=range(1, MAX_TOP_K + 1), help="guesses per answer"
    )
    image.add_argument(
        "--timeout", type=_positive(float), default=30.0, help="seconds for each image"
    )
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.command == "image":
        return
    if (args.room is None) != (args.token is None):
        parser.error("--room and --token go together")
    if args.command == "watch" and args.room is None:
        parser.error("watch needs --room and --token")
    if getattr(args, "share", False) and args.room is not None:
        parser.error("--share starts a new shared session: leave out --room")
    if args.room is not None and getattr(args, "concurrency", 1) > 1:
        parser.error("--room draws on one shared canvas: use --concurrency 1")
    if getattr(args, "batch", 0) > 512:
        parser.error("--batch must be at most 512")


def options(args: argparse.Namespace) -> Options:
    """Connection and drawing options from parsed arguments."""
    pace = Pace(rate=args.rate, fast=args.fast, batch=args.batch) if "rate" in args else Pace()
    return Options(args.url, pace, args.top_k, args.room, args.token, not args.json, args.timeout)


# ---- recognize ------------------------------------------------------------------------------


async def run_recognize(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Recognize a whole file; the summary line goes to `err` last."""
    items = read_samples(args.file)
    source = "stdin" if args.file == "-" else args.file
    summary = await recognize_file(items, source, options(args), args.concurrency, out, err)
    print(json.dumps(summary.to_json(), separators=(",", ":")), file=err, flush=True)
    return EXIT_FAILURES if summary.errors else EXIT_OK


# ---- draw -----------------------------------------------------------------------------------


def prediction_record(msg: Prediction) -> dict[str, Any]:
    """A prediction as `draw` prints it."""
    return {
        "seq": msg.seq,
        "final": msg.final,
        "empty": msg.empty,
        "digit": None if msg.empty else msg.top[0].digit,
        "top": [{"digit": g.digit, "p": round(g.p, 6)} for g in msg.top],
        "verdict": msg.verdict,
        "strokes": msg.strokes,
    }


class DrawPrinter:
    """Prints every prediction as a JSON line, and the first server error of each input
    line as "stdin:line: ..." (the line whose messages it refused; the line's later errors
    follow from it, as `no_stroke` after a refused `start`). An error of a message that is
    no input line's (join, share, the final recognize) is raised by the call that sent it
    and reported once by main; one that names no message (`too_slow`) has no line."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out, self.err = out, err
        self.failures = 0
        self.line: int | None = None  # the input line being sent, if any
        self.start = 0  # messages up to this seq are no input line's
        self._ends: list[int] = []  # last seq sent for each finished line, ascending
        self._lines: list[int] = []
        self._reported: set[int] = set()

    def sent(self, seq: int) -> None:
        """All messages of the current line are out; the last one sent so far had `seq`."""
        last = self._ends[-1] if self._ends else self.start
        if self.line is not None and seq > last:
            self._ends.append(seq)
            self._lines.append(self.line)

    def line_of(self, seq: int) -> int | None:
        if seq <= self.start:
            return None
        i = bisect.bisect_left(self._ends, seq)
        return self._lines[i] if i < len(self._lines) else self.line

    def bad_line(self, line: int, reason: str) -> None:
        self.failures += 1
        print(f"stdin:{line}: {reason}", file=self.err, flush=True)

    def hear(self, msg: ServerMessage, _at: float) -> None:
        """The client library's on_message hook."""
        if isinstance(msg, Prediction):
            print(json.dumps(prediction_record(msg)), file=self.out, flush=True)
        elif isinstance(msg, Error):
            reason = f"server error {msg.code}: {msg.message}"
            if msg.seq is None:
                self.failures += 1
                print(f"{PROG}: {reason}", file=self.err, flush=True)
                return
            line = self.line_of(msg.seq)
            if line is not None and line not in self._reported:
                self._reported.add(line)
                self.bad_line(line, reason)


async def stdin_lines(limit: int = 64) -> AsyncIterator[tuple[int, str]]:
    """(line number, text) of stdin's lines, read by a daemon thread so that the loop keeps
    receiving predictions while stdin waits, and a blocked read never holds up exit."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue(limit)

    def pump() -> None:
        try:
            for text in sys.stdin:
                asyncio.run_coroutine_threadsafe(queue.put(text), loop).result()
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()
        except (RuntimeError, ValueError, OSError):
            return  # the loop or stdin closed under us: the command is ending anyway

    threading.Thread(target=pump, name="digits-client-stdin", daemon=True).start()
    line = 0
    while (text := await queue.get()) is not None:
        line += 1
        yield line, text


async def _draw_line(pen: Pen, printer: DrawPrinter, line: int, text: str) -> None:
    if not text.strip():
        return
    try:
        item = parse_draw_line(text)
    except (ValueError, RecursionError) as exc:
        printer.bad_line(line, str(exc))
        return
    printer.line = line
    if item == "recognize":
        await pen.pacer.take()
        with contextlib.suppress(ServerError):  # the printer reported it, with this line
            await pen.client.recognize()
    elif isinstance(item, str):
        await pen.command(item)
    else:
        await pen.stroke(item)
    printer.sent(pen.client.seq)


async def run_draw(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Draw stdin's strokes, print predictions as they come, the final answer at EOF."""
    printer = DrawPrinter(out, err)
    opts = options(args)
    async with aiohttp.ClientSession() as http:
        client = await open_client(opts, http, printer.hear)
        try:
            if args.share:
                shared = await client.share(opts.connect_timeout_s)
                room = {"room": shared.room, "draw_token": shared.draw_token}
                print(json.dumps({**room, "watch_token": shared.watch_token}), file=err, flush=True)
            pen = Pen(client, opts.pace)
            printer.start = client.seq  # the join's or share's: no input line's
            async for line, text in stdin_lines():
                await _draw_line(pen, printer, line, text)
            printer.line = None  # the final recognize raises its own errors
            await pen.pacer.take()
            await client.recognize()
        finally:
            await client.close()
    return EXIT_FAILURES if printer.failures else EXIT_OK


# ---- watch ----------------------------------------------------------------------------------

ROOM_EVENTS = (Presence, StrokeEvent, Undone, Cleared, Joined)


async def run_watch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Join a room and print its live predictions (and, with --events, what happens in it)
    until --count predictions, or until the server closes the connection."""
    async with aiohttp.ClientSession() as http:
        client = await open_client(options(args), http)
        try:
            seen = 0
            async for msg in client:
                if isinstance(msg, Prediction):
                    print(json.dumps(prediction_record(msg)), file=out, flush=True)
                    seen += 1
                    if args.count is not None and seen >= args.count:
                        return EXIT_OK
                elif isinstance(msg, Error):
                    print(f"server error {msg.code}: {msg.message}", file=err, flush=True)
                elif args.events and isinstance(msg, ROOM_EVENTS):
                    print(encode(msg, binary=False), file=out, flush=True)
        finally:
            await client.close()
    raise ConnectionClosed(client.close_code)


# ---- main -----------------------------------------------------------------------------------


async def run_image(args: argparse.Namespace, out: TextIO) -> int:
    """One JSON line per image file: the answer, or the error that file got."""
    base = oneshot.http_base(args.url)
    failed = await oneshot.recognize_images(base, args.files, args.top_k, args.timeout, out)
    return EXIT_FAILURES if failed else EXIT_OK


async def _run(args: argparse.Namespace) -> int:
    if args.command == "image":
        return await run_image(args, sys.stdout)
    if args.command == "draw":
        return await run_draw(args, sys.stdout, sys.stderr)
    if args.command == "watch":
        return await run_watch(args, sys.stdout, sys.stderr)
    if args.out == "-":
        return await run_recognize(args, sys.stdout, sys.stderr)
    try:
        out = open(args.out, "w", encoding="utf-8")  # noqa: ASYNC230, SIM115 -- once, small
    except OSError as exc:
        raise InputError(f"{args.out}: {exc.strerror or exc}") from None
    with out:
        return await run_recognize(args, out, sys.stderr)


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `digits-client` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    try:
        return asyncio.run(_run(args))
    except (Unreachable, oneshot.Unreachable) as exc:
        return _fail(str(exc), EXIT_UNREACHABLE)
    except ConnectionClosed as exc:
        return _fail(f"{args.url}: the connection was lost (code {exc.code})", EXIT_UNREACHABLE)
    except JoinRefused as exc:
        return _fail(str(exc), EXIT_REFUSED)
    except (InputError, ServerError) as exc:
        return _fail(str(exc), EXIT_FAILURES)
    except TimeoutError:
        return _fail("no final answer from the server in time", EXIT_FAILURES)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURES


if __name__ == "__main__":
    sys.exit(main())
