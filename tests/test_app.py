"""server/app.py over HTTP: the page, health, readiness and metrics of a real server."""

from __future__ import annotations

import asyncio
import re

import pytest

from client import connect
from server.app import SETTINGS, create_app
from tests.serverkit import MakeClient, bundled_model, metric, settings, start

pytestmark = pytest.mark.asyncio


async def test_page_and_its_files_are_served_from_web(aiohttp_client: MakeClient) -> None:
    client, _ = await start(aiohttp_client)
    web_dir = client.app[SETTINGS].web_dir
    page = await client.get("/")
    assert page.status == 200 and page.content_type == "text/html"
    assert await page.text() == (web_dir / "index.html").read_text()
    for path in sorted(p for p in web_dir.iterdir() if p.is_file()):
        response = await client.get(f"/{path.name}")
        assert response.status == 200 and await response.read() == path.read_bytes()
    assert (await client.get("/nope.js")).status == 404
    assert (await client.get("/../pyproject.toml")).status in (403, 404)


async def test_every_response_carries_the_security_headers(aiohttp_client: MakeClient) -> None:
    client, _ = await start(aiohttp_client)
    for path in ("/", "/app.js", "/style.css", "/healthz", "/metrics", "/nope.js"):
        response = await client.get(path)
        csp = response.headers.get("Content-Security-Policy", "")
        directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ")}
        assert directives["default-src"] == ["'self'"], path
        assert directives["connect-src"] == ["'self'"], path  # the WebSocket is same-origin
        assert directives["frame-ancestors"] == ["'none'"], path
        assert "script-src" not in directives  # scripts fall back to 'self': no inline script
        assert response.headers.get("X-Content-Type-Options") == "nosniff", path
        assert response.headers.get("Referrer-Policy") == "no-referrer", path
    page = await (await client.get("/")).text()
    assert re.findall(r"<script[^>]*>", page) == ['<script type="module" src="app.js">']
    assert re.search(r"\son\w+=", page) is None  # no inline event handlers either


async def test_health_and_readiness(aiohttp_client: MakeClient) -> None:
    client, _ = await start(aiohttp_client)
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    body = await ready.json()
    model = bundled_model()
    assert ready.status == 200
    assert (body["status"], body["model"], body["accelerator"]) == ("ready", model.name, "cpu")
    assert body["inference"] == "thread"  # tests/serverkit.py's; "process" in tests/test_offload.py
    assert (body["store"], body["store_reachable"]) == ("memory", True)  # Redis: test_scaling


async def test_metrics_count_this_app_only(aiohttp_client: MakeClient) -> None:
    first, url = await start(aiohttp_client)
    second = await aiohttp_client(create_app(settings(), bundled_model()))
    async with connect(url) as c:
        await c.start_stroke([[0, 0], [1, 5]])
        await c.recognize()
        await c.points([[1, 1]])  # no error: a stroke is open
        await c.end_stroke([[2, 2], [3, 3]])
        await c.ping()
        during = await (await first.get("/metrics")).text()
    assert metric(during, "digits_connections") == 1
    for kind in ("hello", "start", "points", "end", "recognize", "ping"):
        assert metric(during, "digits_messages_total", f'{{type="{kind}"}}') == 1
    assert metric(during, "digits_predictions_total", '{kind="final"}') == 1
    assert metric(during, "digits_batch_size_count") >= 1
    for name in (
        "digits_queue_wait_seconds",
        "digits_inference_seconds",
        "digits_update_to_prediction_seconds",
    ):
        assert metric(during, f"{name}_count") >= 1
    other = await (await second.get("/metrics")).text()
    assert metric(other, "digits_messages_total", '{type="hello"}') == 0
    for _ in range(500):  # the server notices the close a moment later
        after = await (await first.get("/metrics")).text()
        if metric(after, "digits_connections") == 0:
            break
        await asyncio.sleep(0.01)
    assert metric(after, "digits_connections") == 0


async def test_errors_are_counted_by_code(aiohttp_client: MakeClient) -> None:
    client, url = await start(aiohttp_client)
    async with connect(url) as c:
        await c.points([[1, 1]])
        await c.ping()
    text = await (await client.get("/metrics")).text()
    assert metric(text, "digits_errors_total", '{code="no_stroke"}') == 1
