"""Images for the tests: UNIPEN digits drawn as files, and hand-made bad files."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from bench.image_accuracy import Style, draw_strokes
from tests.serverkit import Digit

__all__ = ["Style", "draw_strokes", "encoded", "plain_png", "png_header_only"]


def encoded(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt)
    return out.getvalue()


def plain_png(width: int, height: int, colour: tuple[int, int, int] = (255, 255, 255)) -> bytes:
    """A real PNG of one colour."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels but holds almost nothing: decoding it
    would allocate width*height bytes, so the limit must be checked on the header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def digit_file(digit: Digit, fmt: str = "PNG", **style: object) -> bytes:
    return draw_strokes(digit.strokes, Style(fmt=fmt, **style))  # type: ignore[arg-type]
