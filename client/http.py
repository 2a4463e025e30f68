"""One-shot recognition of image files over HTTP (`POST /v1/recognize`), for
`digits-client image`. Depends on aiohttp and the standard library only.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import aiohttp

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")


class Unreachable(Exception):
    """The server did not answer HTTP at all."""


def http_base(url: str) -> str:
    """The server's http(s):// root from a ws(s)://.../ws or http(s):// URL."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    if path.endswith("/ws"):
        path = path[: -len("/ws")]
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def media_type(path: str, data: bytes) -> str:
    """The image's type from its first bytes, else from its name; octet-stream if neither."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    guessed = mimetypes.guess_type(path)[0]
    return guessed or "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Result:
    """One file's line: the server's answer, or why there is none."""

    file: str
    answer: dict[str, Any] | None = None
    status: int | None = None
    error: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file}
        if self.answer is not None:
            top = self.answer.get("top") or [{}]
            out["digit"] = top[0].get("digit")
            out.update(self.answer)
        else:
            out.update({"status": self.status, "error": self.error})
        return out


async def recognize_image(
    http: aiohttp.ClientSession, base: str, path: str, top_k: int = 3
) -> Result:
    """POST one image file; its Result. Raises Unreachable when no HTTP answer comes."""
    try:
        data = await asyncio.to_thread(Path(path).read_bytes)
    except OSError as exc:
        return Result(path, error={"code": "unreadable", "message": exc.strerror or str(exc)})
    url = f"{base}/v1/recognize"
    headers = {"Content-Type": media_type(path, data)}
    try:
        async with http.post(url, data=data, headers=headers, params={"top_k": top_k}) as resp:
            body = await resp.json(content_type=None)
            status = resp.status
    except aiohttp.ClientConnectorError as exc:  # its text names "ssl:default" even for http
        why = exc.os_error.strerror or exc.os_error
        raise Unreachable(f"{base}: cannot connect to {exc.host}:{exc.port} ({why})") from None
    except (aiohttp.ClientConnectionError, aiohttp.InvalidURL) as exc:
        raise Unreachable(f"{base}: {exc}") from None
    except (aiohttp.ContentTypeError, json.JSONDecodeError) as exc:
        raise Unreachable(f"{url}: not a digits-live server ({exc})") from None
    if status == 200 and isinstance(body, dict) and "top" in body:
        return Result(path, answer=body)
    error = body.get("error") if isinstance(body, dict) else None
    return Result(path, status=status, error=error or {"message": str(body)[:200]})


async def recognize_images(
    base: str, paths: Sequence[str], top_k: int, timeout_s: float, out: TextIO
) -> int:
    """Recognize every file in turn, one JSON line each on `out`; the number that failed."""
    failed = 0
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for path in paths:
            result = await recognize_image(http, base, path, top_k)
            failed += result.answer is None
            print(json.dumps(result.to_json(), separators=(",", ":")), file=out, flush=True)
    return failed
