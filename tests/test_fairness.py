"""Fairness against a real server: points budgets per connection and per client address
(server/budget.py, applied in server/connection.py) and fair queueing in the batcher."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from client import DigitsClient, Prediction
from server.app import BUDGETS, METRICS
from tests.serverkit import MakeClient, metric, start, stepped, unipen_digits, unlimited_session

pytestmark = pytest.mark.asyncio

PROXY = {"trusted_proxies": ("127.0.0.1/32",)}


def paced(server: TestClient[Any, Any]) -> float:
    return metric(server.app[METRICS].render().decode(), "digits_ink_paced_total")


def stroke(n: int, offset: int = 0) -> list[list[float]]:
    return [[float((offset + i) % 97), float((offset + 7 * i) % 89)] for i in range(n)]


async def test_ink_beyond_the_connection_budget_waits_and_is_not_lost(
    aiohttp_client: MakeClient,
) -> None:
    server, url = await start(aiohttp_client, points_per_second=2000.0, points_burst=500)
    async with await DigitsClient.open(url) as c:
        t0 = time.perf_counter()
        await c.start_stroke(stroke(500))
        for k in range(1, 4):
            await c.points(stroke(500, 500 * k))
        await c.end_stroke()
        final = await c.recognize()
        elapsed = time.perf_counter() - t0
    assert not final.empty and final.strokes == 1  # every point arrived, nothing refused
    assert elapsed >= 1500 / 2000 * 0.95  # 1500 points beyond the burst, at 2000 per second
    assert paced(server) >= 2


async def test_one_address_over_its_budget_does_not_slow_another(
    aiohttp_client: MakeClient,
) -> None:
    server, url = await start(
        aiohttp_client, points_per_second_per_client=1000.0, points_burst_per_client=0, **PROXY
    )
    digit = unipen_digits(1)[0]
    async with unlimited_session() as http:

        async def open_as(ip: str) -> DigitsClient:
            return await DigitsClient.open(url, session=http, headers={"X-Forwarded-For": ip})

        floods = [await open_as("10.0.0.1") for _ in range(2)]
        healthy = await open_as("10.0.0.2")
        for f in floods:  # 2 x 1000 points from one address: two seconds of its budget
            await f.start_stroke(stroke(500))
            await f.end_stroke(stroke(500, 500))
        flood_done = [asyncio.create_task(f.recognize()) for f in floods]
        await stepped(lambda: paced(server) >= 1)
        for s in digit.strokes:
            await healthy.start_stroke(s)
            await healthy.end_stroke()
        answer = await healthy.recognize()
        assert not answer.empty and not any(t.done() for t in flood_done)
        finals: list[Prediction] = await asyncio.gather(*flood_done)
        assert all(p.strokes == 1 and not p.empty for p in finals)
        assert len(server.app[BUDGETS]) == 2
        for c in (*floods, healthy):
            await c.close()
        await stepped(lambda: len(server.app[BUDGETS]) == 0)


async def test_json_posted_to_v1_is_paid_from_its_address_budget(
    aiohttp_client: MakeClient,
) -> None:
    """A JSON body is charged to its address's points budget (one point per 10 bytes) before
    it is read: an address posting big batches waits, another address is answered meanwhile."""
    server, url = await start(
        aiohttp_client, points_per_second_per_client=1000.0, points_burst_per_client=0, **PROXY
    )
    digit = unipen_digits(1)[0]
    body = json.dumps({"drawings": [[stroke(600, k)] for k in range(3)]}).encode()
    assert len(body) > 10_000  # over a second of 10.0.0.1's budget

    async def post_as(ip: str, data: bytes) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", "X-Forwarded-For": ip}
        resp = await server.post("/v1/recognize", data=data, headers=headers)
        return resp.status, await resp.json()

    batch = asyncio.create_task(post_as("10.0.0.1", body))
    await stepped(lambda: paced(server) >= 1)
    assert len(server.app[BUDGETS]) == 1  # the waiting request holds its address's budget
    async with unlimited_session() as http:
        healthy = await DigitsClient.open(
            url, session=http, headers={"X-Forwarded-For": "10.0.0.2"}
        )
        for s in digit.strokes:
            await healthy.start_stroke(s)
            await healthy.end_stroke()
        answer = await healthy.recognize()
        assert not answer.empty and not batch.done()
        await healthy.close()
    status, answers = await batch
    assert status == 200 and len(answers["results"]) == 3
    await stepped(lambda: len(server.app[BUDGETS]) == 0)
