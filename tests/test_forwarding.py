"""server/forwarding.py alone (literal headers), then a real server behind a pretend proxy:
X-Forwarded-* count only from --trusted-proxies, and --allowed-hosts refuses DNS rebinding."""

from __future__ import annotations

import aiohttp
import pytest

from protocol import CloseCode
from server.forwarding import default_hosts, host_allowed, hostname, networks, seen
from tests.serverkit import MakeClient, start

LOOPBACK = networks(["127.0.0.1/32", "::1"])
PROXIES = networks(["10.0.0.0/8"])


def test_forwarded_headers_are_ignored_from_anyone_but_a_trusted_proxy() -> None:
    headers = {
        "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Host": "evil",
        "X-Forwarded-Proto": "https",
    }
    got = seen("198.51.100.7", "digits.example", "http", headers, PROXIES)
    assert (got.client, got.host, got.scheme, got.forwarded) == (
        "198.51.100.7", "digits.example", "http", False,
    )  # fmt: skip


def test_the_client_is_the_rightmost_address_that_is_not_a_proxy() -> None:
    headers = {"X-Forwarded-For": "1.1.1.1, 203.0.113.9, 10.1.1.1", "X-Forwarded-Proto": "https"}
    got = seen("10.0.0.2", "internal:8080", "http", headers, PROXIES)
    assert (got.client, got.host, got.scheme, got.forwarded) == (
        "203.0.113.9", "internal:8080", "https", True,
    )  # fmt: skip
    assert seen("10.0.0.2", "h", "http", {}, PROXIES).client == "10.0.0.2"  # no header
    garbage = {"X-Forwarded-For": "1.1.1.1, not-an-ip, 10.1.1.1"}
    assert seen("10.0.0.2", "h", "http", garbage, PROXIES).client == "10.1.1.1"
    host = {"X-Forwarded-Host": "digits.example, other"}
    assert seen("10.0.0.2", "h", "http", host, PROXIES).host == "digits.example"


def test_bad_networks_are_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33'"):
        networks(["10.0.0.0/8", "10.0.0.0/33"])


@pytest.mark.parametrize(
    ("host", "name"),
    [("Digits.Example:8080", "digits.example"), ("[::1]:80", "::1"), ("::1", "::1"), ("h", "h")],
)
def test_hostname_drops_the_port(host: str, name: str) -> None:
    assert hostname(host) == name


def test_default_hosts_are_the_bound_address_localhost_and_the_machine() -> None:
    hosts = default_hosts("127.0.0.1")
    assert {"127.0.0.1", "localhost", "::1"} <= set(hosts)
    assert host_allowed("localhost:8080", hosts) and host_allowed("[::1]:8080", hosts)
    assert not host_allowed("attacker.example:8080", hosts) and not host_allowed(None, hosts)
    assert host_allowed("attacker.example", ("*",))
    only = ("digits.example",)
    assert host_allowed("digits.example.:443", only) and host_allowed("10.0.0.5:8080", only)
    assert host_allowed("[fd00::1]:80", only) and host_allowed("localhost", only)
    assert not host_allowed("10.0.0.5.attacker.example", only)
    assert "0.0.0.0" not in default_hosts("0.0.0.0")


# ---- a real server ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_dns_rebinding_is_refused_and_known_hosts_are_served(
    aiohttp_client: MakeClient,
) -> None:
    client, url = await start(aiohttp_client)
    evil = {
        "Host": f"attacker.example:{client.port}",
        "Origin": f"http://attacker.example:{client.port}",
    }
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, headers=evil)
        assert refused.value.status == 421
        page = await http.get(url.replace("ws://", "http://").replace("/ws", "/"), headers=evil)
        assert page.status == 421
        assert (await page.json())["error"]["code"] == "bad_host"
        same = {"Origin": f"http://localhost:{client.port}", "Host": f"localhost:{client.port}"}
        async with http.ws_connect(url, headers=same) as ws:
            await ws.send_json({"type": "hello", "version": 1})
            assert (await ws.receive_json())["type"] == "welcome"
    _, named_url = await start(aiohttp_client, allowed_hosts=("digits.example",))
    async with aiohttp.ClientSession() as http:
        headers = {"Host": "digits.example", "Origin": "http://digits.example"}
        async with http.ws_connect(named_url, headers=headers) as ws:
            await ws.send_json({"type": "hello", "version": 1})
            assert (await ws.receive_json())["type"] == "welcome"
        headers = {"Host": "other.example", "Origin": "http://other.example"}
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(named_url, headers=headers)  # not on its list
        assert refused.value.status == 421
        async with http.ws_connect(named_url) as ws:  # by address: never a rebinding
            await ws.send_json({"type": "hello", "version": 1})
            assert (await ws.receive_json())["type"] == "welcome"
        ready = named_url.replace("ws://", "http://").replace("/ws", "/readyz")
        assert (await http.get(ready)).status == 200  # a health check by address
        assert (await http.get(ready, headers={"Host": "localhost"})).status == 200
        assert (await http.get(ready, headers={"Host": "DIGITS.example."})).status == 200


async def _hello(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[str, int | None]:
    """The type of the first answer to hello, and the close code if the server closed."""
    async with http.ws_connect(url, headers=headers) as ws:
        await ws.send_json({"type": "hello", "version": 1})
        first = await ws.receive_json()
        if first["type"] == "error":
            await ws.receive()
            return first["code"], ws.close_code
        return first["type"], None


@pytest.mark.asyncio
@pytest.mark.parametrize("trusted", [True, False])
async def test_per_client_limits_use_the_forwarded_address_only_from_trusted_proxies(
    aiohttp_client: MakeClient, trusted: bool
) -> None:
    proxies = ("127.0.0.0/8",) if trusted else ()
    _, url = await start(aiohttp_client, trusted_proxies=proxies, max_connections_per_client=1)
    async with aiohttp.ClientSession() as http:
        first = await http.ws_connect(url, headers={"X-Forwarded-For": "203.0.113.1"})
        await first.send_json({"type": "hello", "version": 1})
        assert (await first.receive_json())["type"] == "welcome"
        other = await _hello(http, url, {"X-Forwarded-For": "203.0.113.2"})
        same = await _hello(http, url, {"X-Forwarded-For": "203.0.113.1"})
        await first.close()
    full = ("too_many_connections", CloseCode.OVERLOADED)
    assert same == full
    assert other == (("welcome", None) if trusted else full)


@pytest.mark.asyncio
@pytest.mark.parametrize("trusted", [True, False])
async def test_the_origin_check_uses_the_forwarded_host_and_scheme_from_trusted_proxies(
    aiohttp_client: MakeClient, trusted: bool
) -> None:
    proxies = ("127.0.0.0/8",) if trusted else ()
    _, url = await start(
        aiohttp_client, trusted_proxies=proxies, allowed_hosts=("digits.example", "127.0.0.1")
    )
    page = {
        "Origin": "https://digits.example",
        "X-Forwarded-Host": "digits.example",
        "X-Forwarded-Proto": "https",
    }
    async with aiohttp.ClientSession() as http:
        if trusted:
            assert await _hello(http, url, page) == ("welcome", None)
            downgraded = {**page, "Origin": "http://digits.example"}  # not the browser's scheme
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(url, headers=downgraded)
        else:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(url, headers=page)
        assert refused.value.status == 403
