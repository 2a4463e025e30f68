"""One-shot recognition over HTTP: `POST /v1/recognize` and the `GET /v1` document.

Belongs here: reading a body within the limits, telling its kind (JSON strokes, a JSON batch
of drawings, one image, a multipart upload of images), and the JSON answer or error. The
rules live elsewhere: points and ink limits in protocol/, pictures in server.images,
inference in the shared Recognizer, so HTTP requests and WebSocket sessions share batches.
See docs/HTTP.md.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from protocol import MAX_TOP_K, VERSION, Code, Prediction, ProtocolError, parse_points
from protocol.codec import load_json
from server.batching import BatcherStopped
from server.budget import AddressBudgets
from server.canvas import Snapshot
from server.config import Settings
from server.errors import fault
from server.images import MEDIA_TYPES, ImageLimits, prepare, preprocess, quick_open
from server.metrics import Metrics
from server.recognizer import Recognizer

#: HTTP status of each error code this endpoint answers with (anything else: 400).
STATUS: dict[Code, int] = {
    Code.BAD_JSON: 400,
    Code.NOT_AN_IMAGE: 400,
    Code.BAD_IMAGE: 400,
    Code.BAD_MESSAGE: 422,
    Code.BAD_NUMBER: 422,
    Code.TOO_MANY_POINTS: 422,
    Code.TOO_MANY_STROKES: 422,
    Code.NO_INK: 422,
    Code.BODY_TOO_BIG: 413,
    Code.IMAGE_TOO_BIG: 413,
    Code.TOO_MANY_ITEMS: 413,
    Code.UNSUPPORTED_TYPE: 415,
    Code.METHOD_NOT_ALLOWED: 405,
    Code.OVERLOADED: 503,
}

JSON_TYPE = "application/json"
MULTIPART_TYPE = "multipart/form-data"
SNIFFED_TYPE = "application/octet-stream"  # a multipart part of this type is tried as an image
#: The methods of each route; any other is answered 405 with Allow.
METHODS = {"/v1": ("GET", "HEAD"), "/v1/recognize": ("POST",)}
#: A JSON body is charged to its client address's points budget (the one its WebSockets
#: share: points_per_second_per_client) at one point per this many bytes, about what a point
#: takes ("[123,456]," is 10), before it is read; without a Content-Length, as if it had
#: max_json_bytes.
JSON_BYTES_PER_POINT = 10
_INLINE_JSON_BYTES = 32768  # smaller JSON bodies are parsed on the loop: cheaper than a thread hop


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Every limit of /v1/recognize; all are settings and all are announced by GET /v1."""

    max_body_bytes: int
    max_json_bytes: int
    max_image_pixels: int
    max_items_per_request: int
    max_points_per_drawing: int
    max_strokes_per_drawing: int
    max_coordinate: float
    max_top_k: int = MAX_TOP_K

    @classmethod
    def of(cls, settings: Settings) -> HttpLimits:
        ink = settings.limits
        return cls(
            settings.max_body_bytes,
            settings.max_json_bytes,
            settings.max_image_pixels,
            settings.max_items_per_request,
            ink.max_points_per_session,
            ink.max_strokes_per_session,
            ink.max_coordinate,
        )


@dataclass(frozen=True, slots=True)
class Options:
    top_k: int = 3
    preview: bool = False


class ItemError(ProtocolError):
    """A fault of one drawing or image of a request, naming which."""

    def __init__(self, exc: ProtocolError, item: int, name: str | None = None) -> None:
        label = f"drawing {item}" if name is None else f"image {item} ({name[:80]})"
        super().__init__(exc.code, f"{label}: {exc.message}")
        self.item = item


class HttpApi:
    """The handlers of /v1. `recognizer` returns the app's Recognizer once it has started."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        recognizer: Callable[[], Recognizer | None],
        budgets: AddressBudgets,
        client_of: Callable[[web.Request], str],
    ) -> None:
        self.limits = HttpLimits.of(settings)
        self.metrics = metrics
        self._recognizer = recognizer
        self._budgets = budgets
        self._client_of = client_of

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1", self.describe)
        app.router.add_post("/v1/recognize", self.recognize)
        for path in METHODS:
            app.router.add_route("*", path, self.not_allowed)

    async def not_allowed(self, request: web.Request) -> web.Response:
        """Any other method: 405 with the JSON error body and Allow."""
        allowed = METHODS[request.path]
        message = f"{request.method} is not allowed here; use {' or '.join(allowed)}"
        status, body = self._error(ProtocolError(Code.METHOD_NOT_ALLOWED, message))
        return web.json_response(body, status=status, headers={"Allow": ", ".join(allowed)})

    async def describe(self, request: web.Request) -> web.Response:
        """GET /v1: what the endpoint takes, and its limits."""
        recognizer = self._recognizer()
        return web.json_response(
            {
                "version": VERSION,
                "recognize": "/v1/recognize",
                "model": None if recognizer is None else recognizer.model.name,
                "media_types": [JSON_TYPE, *MEDIA_TYPES, MULTIPART_TYPE],
                "limits": asdict(self.limits),
            }
        )

    async def recognize(self, request: web.Request) -> web.Response:
        """POST /v1/recognize: the answer for the body's drawing(s) or image(s)."""
        started = time.perf_counter()
        kind = _kind(request.content_type)
        try:
            recognizer = self._recognizer()
            if recognizer is None:
                raise ProtocolError(Code.OVERLOADED, "the model is still loading")
            if kind == "json":
                kind, body = await self._json(request, recognizer)
            elif kind == "image":
                body = await self._image(request, recognizer)
            elif kind == "multipart":
                body = await self._multipart(request, recognizer)
            else:
                raise _unsupported(request)
            status = 200
        except BatcherStopped:  # shutting down
            status, body = self._error(ProtocolError(Code.OVERLOADED, "the server is stopping"))
        except Exception as exc:  # the funnel decides; a bug of ours is only "internal"
            status, body = self._error(exc)
        elapsed = time.perf_counter() - started
        self.metrics.http_requests.labels(kind, str(status)).inc()
        self.metrics.http_seconds.labels(kind).observe(elapsed)
        headers = {"Server-Timing": f"total;dur={elapsed * 1000:.3f}"}
        if status == 503:
            headers["Retry-After"] = "1"
        return web.json_response(body, status=status, headers=headers)

    def _error(self, exc: BaseException) -> tuple[int, dict[str, Any]]:
        """The HTTP status and body of any exception, as server/errors.py decides it."""
        f = fault(exc)
        self.metrics.count(self.metrics.errors, f.label)
        error: dict[str, Any] = {"code": str(f.error.code), "message": f.error.message}
        if isinstance(exc, ItemError):
            error["item"] = exc.item
        if f.label == Code.INTERNAL:
            return 500, {"error": error}
        return STATUS.get(Code(f.error.code), 400), {"error": error}

    # ---- JSON --------------------------------------------------------------------------

    async def _json(self, request: web.Request, recognizer: Recognizer) -> tuple[str, Any]:
        limit = self.limits.max_json_bytes
        _refuse_declared(request, limit)  # before it is paid for
        client = self._client_of(request)
        budget = self._budgets.acquire(client, time.perf_counter())
        try:  # paid before it is read: one address cannot keep the parser (and the GIL) busy
            cost = -(-(request.content_length or limit) // JSON_BYTES_PER_POINT)
            wait = budget.spend(cost, time.perf_counter())
            if wait > 0:
                self.metrics.paced.inc()
                await asyncio.sleep(wait)
            return await self._json_body(await _read(request, limit), recognizer)
        finally:
            self._budgets.release(client)

    async def _json_body(self, data: bytes, recognizer: Recognizer) -> tuple[str, Any]:
        if len(data) <= _INLINE_JSON_BYTES:
            drawings, single, options = self._drawings(data)
        else:  # parsing megabytes would stall every socket on the loop
            loop = asyncio.get_running_loop()
            drawings, single, options = await loop.run_in_executor(None, self._drawings, data)
        answers_ = await asyncio.gather(*(recognizer.predict(snap) for snap in drawings))
        predictions = [a.for_member("", options.top_k, options.preview) for a in answers_]
        self.metrics.http_items.labels("drawing").inc(len(drawings))
        answers = [answer(p) for p in predictions]
        return ("strokes", answers[0]) if single else ("batch", {"results": answers})

    def _drawings(self, data: bytes) -> tuple[list[Snapshot], bool, Options]:
        """Parse and validate a JSON body: its drawings, whether it was one, its options."""
        try:
            obj = load_json(data)
        except (ValueError, RecursionError):
            raise ProtocolError(Code.BAD_JSON, "the body is not valid JSON") from None
        if not isinstance(obj, dict):
            raise ProtocolError(Code.BAD_MESSAGE, "the body must be a JSON object")
        if ("strokes" in obj) == ("drawings" in obj):
            raise ProtocolError(Code.BAD_MESSAGE, 'give either "strokes" or "drawings"')
        options = _options(obj.get("top_k", 3), obj.get("preview", False))
        if "strokes" in obj:
            return [self._snapshot(obj["strokes"])], True, options
        raw = obj["drawings"]
        if not isinstance(raw, list) or not raw:
            raise ProtocolError(Code.BAD_MESSAGE, "drawings must be a non-empty list of strokes")
        self._count(len(raw), "drawings")
        snaps = []
        for i, strokes in enumerate(raw):
            try:
                snaps.append(self._snapshot(strokes))
            except ProtocolError as exc:
                raise ItemError(exc, i) from None
        return snaps, False, options

    def _snapshot(self, raw: Any) -> Snapshot:
        """One drawing's strokes, validated by the protocol's point rules and ink limits."""
        lim = self.limits
        if not isinstance(raw, list):
            raise ProtocolError(Code.BAD_MESSAGE, "strokes must be a list of lists of points")
        if len(raw) > lim.max_strokes_per_drawing:
            message = f"at most {lim.max_strokes_per_drawing} strokes per drawing"
            raise ProtocolError(Code.TOO_MANY_STROKES, message)
        strokes = [
            parse_points(stroke, lim.max_points_per_drawing, lim.max_coordinate, "drawing")
            for stroke in raw
        ]
        if sum(len(s) for s in strokes) > lim.max_points_per_drawing:
            message = f"at most {lim.max_points_per_drawing} points per drawing"
            raise ProtocolError(Code.TOO_MANY_POINTS, message)
        return Snapshot(tuple(s for s in strokes if s), 0, {}, final=True)

    def _count(self, count: int, what: str) -> None:
        if count > self.limits.max_items_per_request:
            message = f"at most {self.limits.max_items_per_request} {what} per request"
            raise ProtocolError(Code.TOO_MANY_ITEMS, message)

    # ---- images ------------------------------------------------------------------------

    async def _image(self, request: web.Request, recognizer: Recognizer) -> dict[str, Any]:
        options = _options(*_query(request))
        data = await _read(request, self.limits.max_body_bytes)
        return await self._recognize_image(data, recognizer, options, quick=True)

    async def _multipart(self, request: web.Request, recognizer: Recognizer) -> dict[str, Any]:
        options = _options(*_query(request))
        parts = await self._parts(request)
        if not parts:
            raise ProtocolError(Code.BAD_MESSAGE, "the upload holds no image")
        jobs = [self._recognize_image(data, recognizer, options) for _, data in parts]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        answers = []
        for i, ((name, _), result) in enumerate(zip(parts, results, strict=True)):
            if isinstance(result, ProtocolError):
                raise ItemError(result, i, name)
            if isinstance(result, BaseException):
                raise result
            answers.append({"name": name, **result})
        return {"results": answers}

    async def _parts(self, request: web.Request) -> list[tuple[str, bytes]]:
        """(file name, bytes) of every image part, reading at most max_body_bytes in all.
        Plain form fields (no file name, a text type or none, as HTML forms send them) are
        read within that budget and ignored."""
        limit = self.limits.max_body_bytes
        _refuse_declared(request, limit)
        try:
            reader = await request.multipart()
        except (AssertionError, ValueError, KeyError) as exc:
            raise ProtocolError(Code.BAD_MESSAGE, f"malformed multipart body ({exc})") from None
        budget = limit
        parts: list[tuple[str, bytes]] = []
        while True:
            try:
                part = await reader.next()
            except ValueError as exc:
                raise ProtocolError(Code.BAD_MESSAGE, f"malformed multipart body ({exc})") from None
            if part is None:
                return parts
            if not isinstance(part, BodyPartReader):
                raise ProtocolError(Code.UNSUPPORTED_TYPE, "nested multipart bodies are not taken")
            sent = part.headers.get("Content-Type")
            mime = (sent or SNIFFED_TYPE).split(";")[0].strip().lower()
            if part.filename is None and (sent is None or mime.startswith("text/")):
                budget -= len(await _read_part(part, budget, limit))
                budget -= sum(len(k) + len(v) + 4 for k, v in part.headers.items())
                if budget < 0:  # fields without end, each a few bytes: still bounded
                    raise _too_big(limit)
                continue  # a form field
            name = part.filename or part.name or f"part {len(parts)}"
            if mime not in MEDIA_TYPES and mime != SNIFFED_TYPE:
                message = f"{mime!r} is not a PNG, JPEG or WebP image"
                raise ItemError(ProtocolError(Code.UNSUPPORTED_TYPE, message), len(parts), name)
            self._count(len(parts) + 1, "images")
            data = await _read_part(part, budget, limit)
            budget -= len(data)
            parts.append((name, data))

    async def _recognize_image(
        self, data: bytes, recognizer: Recognizer, options: Options, quick: bool = False
    ) -> dict[str, Any]:
        """The answer for one image. With `quick`, a small one (server.images.quick_open) is
        prepared on the loop: about 1 ms, to which a worker thread adds 0.1-0.25 ms here.
        The images of a multipart upload always go to threads: many of them would stall
        the loop."""
        started = time.perf_counter()
        limits = ImageLimits(self.limits.max_image_pixels)
        picture = quick_open(data, limits) if quick else None
        if picture is not None:
            image = prepare(picture)
        else:  # a large picture would stall every socket on the loop
            loop = asyncio.get_running_loop()
            image = await loop.run_in_executor(None, preprocess, data, limits)
        self.metrics.image_seconds.observe(time.perf_counter() - started)
        made = await recognizer.predict_image(image)
        prediction = made.for_member("", options.top_k, options.preview)
        self.metrics.http_items.labels("image").inc()
        out = answer(prediction)
        del out["bbox"], out["strokes"]
        return out


def answer(prediction: Prediction) -> dict[str, Any]:
    """A prediction as the endpoint answers it: the WebSocket prediction's fields, less
    the session's (type, seq, final); `input` base64 as in JSON frames."""
    out: dict[str, Any] = {
        "empty": prediction.empty,
        "top": [{"digit": g.digit, "p": g.p} for g in prediction.top],
        "bbox": None if prediction.bbox is None else list(prediction.bbox),
        "strokes": prediction.strokes,
        "verdict": prediction.verdict,
    }
    if prediction.input is not None:
        out["input"] = base64.b64encode(prediction.input).decode("ascii")
    return out


def _kind(content_type: str) -> str:
    if content_type == JSON_TYPE:
        return "json"
    if content_type in MEDIA_TYPES:
        return "image"
    if content_type == MULTIPART_TYPE:
        return "multipart"
    return "other"


def _unsupported(request: web.Request) -> ProtocolError:
    # aiohttp reports a missing Content-Type as application/octet-stream: say it is missing
    sent = request.headers.get("Content-Type")
    said = "no Content-Type" if sent is None else f"Content-Type {request.content_type!r}"
    types = ", ".join([JSON_TYPE, *MEDIA_TYPES, MULTIPART_TYPE])
    return ProtocolError(Code.UNSUPPORTED_TYPE, f"{said}: send one of {types}")


def _query(request: web.Request) -> tuple[Any, Any]:
    """top_k and preview from the query string (for bodies that are not JSON)."""
    query = request.query
    raw = query.get("top_k", "3")
    top_k: Any = int(raw) if raw.isdigit() else raw  # _options names the fault
    flags = {"true": True, "1": True, "false": False, "0": False}
    preview = query.get("preview", "false")
    return top_k, flags.get(preview.lower(), preview)


def _options(top_k: Any, preview: Any) -> Options:
    if type(top_k) is not int or not 1 <= top_k <= MAX_TOP_K:
        raise ProtocolError(Code.BAD_MESSAGE, f"top_k must be an integer from 1 to {MAX_TOP_K}")
    if not isinstance(preview, bool):
        raise ProtocolError(Code.BAD_MESSAGE, "preview must be true or false")
    return Options(top_k, preview)


def _too_big(limit: int) -> ProtocolError:
    return ProtocolError(Code.BODY_TOO_BIG, f"the body is larger than {limit} bytes")


def _refuse_declared(request: web.Request, limit: int) -> None:
    """BODY_TOO_BIG when the Content-Length already says more than `limit` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_big(limit)


async def _read(request: web.Request, limit: int) -> bytes:
    """The whole body, refusing it as soon as it is known to exceed `limit` bytes."""
    _refuse_declared(request, limit)
    data = bytearray()
    async for chunk in request.content.iter_chunked(65536):
        data += chunk
        if len(data) > limit:
            raise _too_big(limit)
    return bytes(data)


async def _read_part(part: BodyPartReader, budget: int, limit: int) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(65536):
        data += chunk
        if len(data) > budget:
            raise _too_big(limit)
    return bytes(data)
