"""POST /v1/recognize and GET /v1 (server/http_api.py) over real HTTP against a real server
on a loopback port, with the real model: every input kind, every bad input, the batch form,
shared batches with the WebSocket path, metrics."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import numpy as np
import pytest

from client import connect
from server.images import preprocess
from server.raster import ink_bounds, rasterize
from tests.imagekit import digit_file, plain_png, png_header_only
from tests.serverkit import Digit, MakeClient, metric, start, unipen_digits, unipen_rejects

pytestmark = pytest.mark.asyncio

URL = "/v1/recognize"


def strokes_body(digit: Digit, **options: Any) -> dict[str, Any]:
    return {"strokes": digit.strokes, **options}


async def post_json(client: Any, body: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.post(URL, json=body)
    return resp.status, await resp.json()


async def post_bytes(
    client: Any, data: bytes, content_type: str, query: str = ""
) -> tuple[int, dict[str, Any]]:
    resp = await client.post(URL + query, data=data, headers={"Content-Type": content_type})
    return resp.status, await resp.json()


def error_of(status: int, body: dict[str, Any]) -> tuple[int, str]:
    assert set(body) == {"error"} and body["error"]["message"]
    return status, body["error"]["code"]


async def test_v1_announces_the_limits(aiohttp_client: MakeClient) -> None:
    client, _ = await start(
        aiohttp_client,
        max_body_bytes=12345,
        max_json_bytes=2345,
        max_items_per_request=7,
        max_points_per_session=999,
    )
    body = await (await client.get("/v1")).json()
    assert body["recognize"] == URL and body["model"] == "digits"
    assert {"application/json", "image/png", "image/jpeg", "image/webp"} <= set(body["media_types"])
    limits = body["limits"]
    assert (limits["max_body_bytes"], limits["max_items_per_request"]) == (12345, 7)
    assert limits["max_json_bytes"] == 2345
    assert limits["max_points_per_drawing"] == 999
    assert limits["max_image_pixels"] == 16_000_000 and limits["max_top_k"] == 10


async def test_every_answer_carries_the_verdict(aiohttp_client: MakeClient) -> None:
    """A UNIPEN letter is not_digit, a digit is digit, in one drawing and in a batch."""
    client, _ = await start(aiohttp_client)
    letter, digit = unipen_rejects("A")[0], unipen_digits()[4]
    status, body = await post_json(client, {"strokes": letter.strokes})
    assert status == 200 and body["verdict"] == "not_digit"
    status, body = await post_json(client, strokes_body(digit))
    assert status == 200 and body["verdict"] == "digit"
    drawings = [letter.strokes, digit.strokes, []]
    status, body = await post_json(client, {"drawings": drawings})
    assert status == 200
    assert [r["verdict"] for r in body["results"]] == ["not_digit", "digit", None]


async def test_strokes_answer_top_bbox_and_input(aiohttp_client: MakeClient) -> None:
    client, _ = await start(aiohttp_client)
    digit = unipen_digits()[4]
    status, body = await post_json(client, strokes_body(digit, top_k=5, preview=True))
    assert status == 200
    assert body["top"][0]["digit"] == digit.expected and len(body["top"]) == 5
    assert body["top"][0]["p"] == pytest.approx(float(digit.probs.max()), abs=1e-4)
    assert body["empty"] is False and body["strokes"] == len(digit.strokes)
    arrays = [np.asarray(s, np.float64)[:, :2] for s in digit.strokes]
    assert body["bbox"] == pytest.approx(list(ink_bounds(arrays)))
    expected = np.rint(rasterize(digit.strokes) * 255).astype(np.uint8).tobytes()
    assert base64.b64decode(body["input"]) == expected
    status, plain = await post_json(client, strokes_body(digit))
    assert status == 200 and "input" not in plain and len(plain["top"]) == 3


async def test_empty_strokes_answer_empty(aiohttp_client: MakeClient) -> None:
    client, _ = await start(aiohttp_client)
    status, body = await post_json(client, {"strokes": [[], []]})
    assert status == 200
    assert (body["empty"], body["top"], body["bbox"]) == (True, [], None)


async def test_batch_of_drawings_in_order(aiohttp_client: MakeClient) -> None:
    client, _ = await start(aiohttp_client)
    digits = list(unipen_digits()[::4])
    status, body = await post_json(client, {"drawings": [d.strokes for d in digits], "top_k": 1})
    assert status == 200
    assert [r["top"][0]["digit"] for r in body["results"]] == [d.expected for d in digits]
    assert all(len(r["top"]) == 1 for r in body["results"])


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
async def test_image_bodies(aiohttp_client: MakeClient, fmt: str) -> None:
    client, _ = await start(aiohttp_client)
    for digit, style in (
        (unipen_digits()[2], {}),
        (unipen_digits()[17], {"ink": (255, 255, 255), "paper": (0, 0, 0), "size": 120}),
        (unipen_digits()[33], {"ink": (0, 0, 200), "paper": (250, 240, 220), "noise": 0.05}),
    ):
        data = digit_file(digit, fmt, **style)
        status, body = await post_bytes(client, data, f"image/{fmt.lower()}", "?preview=1")
        assert status == 200, body
        assert body["top"][0]["digit"] == digit.label and body["empty"] is False
        assert "bbox" not in body
        expected = np.rint(preprocess(data) * 255).astype(np.uint8).tobytes()
        assert base64.b64decode(body["input"]) == expected


async def test_multipart_with_several_images(aiohttp_client: MakeClient) -> None:
    client, _ = await start(aiohttp_client)
    digits = [unipen_digits()[i] for i in (1, 15, 28)]
    form = aiohttp.FormData()
    for i, (digit, fmt) in enumerate(zip(digits, ("PNG", "JPEG", "WEBP"), strict=True)):
        data = digit_file(digit, fmt)
        form.add_field(
            "file", data, filename=f"d{i}.{fmt.lower()}", content_type=f"image/{fmt.lower()}"
        )
    form.add_field("file", digit_file(digits[0]), filename="sniffed.bin")  # octet-stream
    resp = await client.post(URL + "?top_k=2", data=form)
    body = await resp.json()
    assert resp.status == 200, body
    assert [r["name"] for r in body["results"]] == ["d0.png", "d1.jpeg", "d2.webp", "sniffed.bin"]
    assert [r["top"][0]["digit"] for r in body["results"]] == [d.label for d in digits] + [
        digits[0].label
    ]
    assert all(len(r["top"]) == 2 for r in body["results"])


async def test_http_and_websocket_share_a_batch(aiohttp_client: MakeClient) -> None:
    """With room for two in a batch and a long wait to fill it, an HTTP image and a
    WebSocket drawing arriving together are answered by one model call. (One session never
    has two predictions queued, so a batch of two holds the image and a session's ink.)"""
    client, url = await start(aiohttp_client, batch_max=2, batch_wait_ms=2000.0)
    digit = unipen_digits()[6]
    async with connect(url) as ws:

        async def over_ws() -> int:
            prediction = await ws.draw(digit.strokes)
            return prediction.top[0].digit

        http, ws_digit = await asyncio.gather(
            post_bytes(client, digit_file(digit), "image/png"), over_ws()
        )
    assert http[0] == 200 and http[1]["top"][0]["digit"] == digit.label
    assert ws_digit == digit.expected
    text = await (await client.get("/metrics")).text()
    batches = metric(text, "digits_batch_size_count")
    of_one = metric(text, "digits_batch_size_bucket", '{le="1.0"}')
    assert batches - of_one == 1


BAD_JSON_BODIES = [
    (b"{not json", 400, "bad_json"),
    (b'{"strokes": [[[NaN, 1], [2, 3]]]}', 422, "bad_number"),
    (b'{"strokes": [[[1, Infinity]]]}', 422, "bad_number"),
    (b'{"strokes": [[[1e400, 1]]]}', 422, "bad_number"),
    (b'{"strokes": [[[' + b"9" * 5000 + b", 1]]]}", 422, "bad_number"),  # past int's limit
    (b'{"strokes": [[[1, 2], [3]]]}', 422, "bad_message"),
    (b'{"strokes": [[["1", 2]]]}', 422, "bad_message"),
    (b'{"strokes": "12"}', 422, "bad_message"),
    (b"[1, 2]", 422, "bad_message"),
    (b"{}", 422, "bad_message"),
    (b'{"strokes": [], "drawings": []}', 422, "bad_message"),
    (b'{"drawings": []}', 422, "bad_message"),
    (b'{"strokes": [], "top_k": 11}', 422, "bad_message"),
    (b'{"strokes": [], "preview": "yes"}', 422, "bad_message"),
    (b'{"strokes": [[[2000000, 1]]]}', 422, "bad_number"),
    (b'{"strokes": [[[1, 1]], [[2, 2]], [[3, 3]], [[4, 4]]]}', 422, "too_many_strokes"),
    (json.dumps({"strokes": [[[i, i] for i in range(60)]]}).encode(), 422, "too_many_points"),
    (json.dumps({"strokes": [[[i, i] for i in range(30)]] * 3}).encode(), 422, "too_many_points"),
    (json.dumps({"drawings": [[]] * 6}).encode(), 413, "too_many_items"),
    (b"[" * 100000 + b"]" * 100000, 400, "bad_json"),
]


async def test_bad_json_bodies(aiohttp_client: MakeClient) -> None:
    client, _ = await start(
        aiohttp_client,
        max_points_per_session=50,
        max_strokes_per_session=3,
        max_items_per_request=5,
    )
    for data, status, code in BAD_JSON_BODIES:
        got = await post_bytes(client, data, "application/json")
        assert error_of(*got) == (status, code), data[:60]
    status, _ = await post_json(client, strokes_body(unipen_digits()[0]))  # still serving
    assert status == 200


async def test_a_bad_drawing_in_a_batch_is_named(aiohttp_client: MakeClient) -> None:
    client, _ = await start(aiohttp_client)
    good = unipen_digits()[0].strokes
    data = json.dumps({"drawings": [good, good, [[[0, 0], [1e9, 1]]]]}).encode()
    status, body = await post_bytes(client, data, "application/json")
    assert error_of(status, body) == (422, "bad_number")
    assert body["error"]["item"] == 2 and body["error"]["message"].startswith("drawing 2:")


async def test_bad_images(aiohttp_client: MakeClient) -> None:
    client, _ = await start(aiohttp_client, max_image_pixels=1_000_000)
    png = digit_file(unipen_digits()[0])
    cases = [
        (b"", "image/png", 400, "bad_image"),
        (b"this is not an image at all", "image/png", 400, "not_an_image"),
        (png[: len(png) // 2], "image/png", 400, "bad_image"),  # truncated
        (png_header_only(0, 28), "image/png", 400, "bad_image"),  # zero-sized
        (plain_png(200, 100), "image/png", 422, "no_ink"),  # all one colour
        (png_header_only(2000, 2000), "image/png", 413, "image_too_big"),
        (png_header_only(100000, 100000), "image/png", 413, "image_too_big"),
        (png, "image/gif", 415, "unsupported_type"),
        (png, "text/plain", 415, "unsupported_type"),
        (png, "application/octet-stream", 415, "unsupported_type"),
    ]
    for data, content_type, status, code in cases:
        got = await post_bytes(client, data, content_type)
        assert error_of(*got) == (status, code), (content_type, data[:20])
    got = await post_bytes(client, png, "image/png", "?top_k=0")
    assert error_of(*got) == (422, "bad_message")
    got = await post_bytes(client, png, "image/png", "?preview=maybe")
    assert error_of(*got) == (422, "bad_message")
    # A GIF is an image, but not one of ours; no decoder but ours is ever tried.
    resp = await client.post(URL, data=b"GIF89a" + bytes(40), headers={"Content-Type": "image/png"})
    assert error_of(resp.status, await resp.json()) == (400, "not_an_image")
    status, body = await post_bytes(client, png, "image/png")  # still serving
    assert status == 200 and body["top"][0]["digit"] == unipen_digits()[0].label


async def test_bad_multipart(aiohttp_client: MakeClient) -> None:
    client, _ = await start(aiohttp_client, max_items_per_request=2)
    png = digit_file(unipen_digits()[0])

    async def send(*parts: tuple[bytes, str, str]) -> tuple[int, str, dict[str, Any]]:
        form = aiohttp.FormData()
        for data, name, content_type in parts:
            form.add_field("file", data, filename=name, content_type=content_type)
        resp = await client.post(URL, data=form)
        body = await resp.json()
        return resp.status, body["error"]["code"], body["error"]

    status, code, error = await send((png, "a.png", "image/png"), (b"junk", "b.png", "image/png"))
    assert (status, code, error["item"]) == (400, "not_an_image", 1)
    assert "b.png" in error["message"]
    status, code, error = await send((png, "a.png", "image/png"), (png, "b.gif", "image/gif"))
    assert (status, code, error["item"]) == (415, "unsupported_type", 1)
    assert "b.gif" in error["message"]
    assert (await send((png, "a.txt", "text/plain")))[:2] == (415, "unsupported_type")
    three = [(png, f"{i}.png", "image/png") for i in range(3)]
    assert (await send(*three))[:2] == (413, "too_many_items")
    resp = await client.post(
        URL, data=b"--x--\r\n", headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert error_of(resp.status, await resp.json()) == (422, "bad_message")


async def test_plain_form_fields_are_ignored(aiohttp_client: MakeClient) -> None:
    """Fields without a file name, typed text or not typed (as HTML forms and `curl -F a=b`
    send them), are not images: ignored beside one, and alone an upload with no image."""
    client, _ = await start(aiohttp_client)
    digit = unipen_digits()[4]
    form = aiohttp.FormData()
    form.add_field("note", "hello")  # no Content-Type, as curl and browsers send fields
    form.add_field("file", digit_file(digit), filename="four.png", content_type="image/png")
    form.add_field("lang", "en", content_type="text/plain; charset=utf-8")
    resp = await client.post(URL, data=form)
    body = await resp.json()
    assert resp.status == 200, body
    assert [(r["name"], r["top"][0]["digit"]) for r in body["results"]] == [
        ("four.png", digit.label)
    ]
    form = aiohttp.FormData(default_to_multipart=True)  # `curl -F a=b`
    form.add_field("a", "b")
    form.add_field("file", "", content_type="text/plain")  # no file name: a field too
    resp = await client.post(URL, data=form)
    assert error_of(resp.status, await resp.json()) == (422, "bad_message")


async def test_other_methods_get_405_with_allow(aiohttp_client: MakeClient) -> None:
    client, _ = await start(aiohttp_client)
    for method, path, allow in (
        ("GET", URL, "POST"),
        ("PUT", URL, "POST"),
        ("DELETE", URL, "POST"),
        ("OPTIONS", URL, "POST"),
        ("POST", "/v1", "GET, HEAD"),
    ):
        resp = await client.request(method, path)
        assert error_of(resp.status, await resp.json()) == (405, "method_not_allowed"), method
        assert resp.headers["Allow"] == allow
    resp = await client.head(URL)
    assert (resp.status, resp.headers["Allow"]) == (405, "POST")
    assert (await client.get("/v1")).status == 200


async def test_a_missing_content_type_is_named(aiohttp_client: MakeClient) -> None:
    client, _ = await start(aiohttp_client)
    png = digit_file(unipen_digits()[0])
    for data in (None, png):
        resp = await client.post(URL, data=data, skip_auto_headers=["Content-Type"])
        assert "Content-Type" not in resp.request_info.headers
        status, body = resp.status, await resp.json()
        assert error_of(status, body) == (415, "unsupported_type")
        message = body["error"]["message"]
        assert message.startswith("no Content-Type: send one of application/json, image/png")
        assert "octet-stream" not in message
    status, body = await post_bytes(client, png, "application/octet-stream")
    assert body["error"]["message"].startswith("Content-Type 'application/octet-stream': ")


async def test_oversized_bodies_get_413(aiohttp_client: MakeClient) -> None:
    client, _ = await start(aiohttp_client, max_body_bytes=20_000, max_json_bytes=2_000)
    big = bytes(30_000)
    for content_type in ("image/png", "application/json"):
        got = await post_bytes(client, big, content_type)
        assert error_of(*got) == (413, "body_too_big")
    got = await post_bytes(client, b" " * 3_000 + b"{}", "application/json")  # JSON: its own limit
    assert error_of(*got) == (413, "body_too_big") and "2000 bytes" in got[1]["error"]["message"]

    async def chunked() -> Any:  # no Content-Length: refused while reading
        for _ in range(10):
            yield bytes(5_000)

    resp = await client.post(URL, data=chunked(), headers={"Content-Type": "image/png"})
    assert error_of(resp.status, await resp.json()) == (413, "body_too_big")
    form = aiohttp.FormData()
    for i in range(3):
        form.add_field("file", bytes(9_000), filename=f"{i}.png", content_type="image/png")
    resp = await client.post(URL, data=form)
    assert error_of(resp.status, await resp.json()) == (413, "body_too_big")
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("text", "x" * 30_000)  # a form field counts too
    resp = await client.post(URL, data=form)
    assert error_of(resp.status, await resp.json()) == (413, "body_too_big")


async def test_metrics_of_the_endpoint(aiohttp_client: MakeClient) -> None:
    client, _ = await start(aiohttp_client)
    digit = unipen_digits()[0]
    await post_json(client, strokes_body(digit))
    await post_json(client, {"drawings": [digit.strokes, digit.strokes]})
    await post_bytes(client, digit_file(digit), "image/png")
    await post_bytes(client, b"junk", "image/png")
    await post_bytes(client, b"junk", "text/plain")
    text = await (await client.get("/metrics")).text()
    for labels, count in (
        ('{kind="strokes",status="200"}', 1),
        ('{kind="batch",status="200"}', 1),
        ('{kind="image",status="200"}', 1),
        ('{kind="image",status="400"}', 1),
        ('{kind="other",status="415"}', 1),
    ):
        assert metric(text, "digits_http_requests_total", labels) == count, labels
    assert metric(text, "digits_http_items_total", '{kind="drawing"}') == 3
    assert metric(text, "digits_http_items_total", '{kind="image"}') == 1
    assert metric(text, "digits_http_request_seconds_count", '{kind="image"}') == 2
    assert metric(text, "digits_image_preprocess_seconds_count") == 1
    assert metric(text, "digits_errors_total", '{code="not_an_image"}') == 1
