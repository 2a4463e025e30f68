"""`digits-client image FILE...` (client/http.py) run as a real process against a real
server on a loopback port; and its pure helpers."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from client.http import http_base, media_type
from tests.imagekit import digit_file, plain_png
from tests.serverkit import MakeClient, start, unipen_digits
from tests.test_cli import cli, records


@pytest.mark.asyncio
async def test_one_json_line_per_image(aiohttp_client: MakeClient, tmp_path: Path) -> None:
    _, url = await start(aiohttp_client)
    digits = [unipen_digits()[i] for i in (0, 11, 22)]
    files = []
    for digit, fmt in zip(digits, ("PNG", "JPEG", "WEBP"), strict=True):
        path = tmp_path / f"digit{digit.label}.{fmt.lower()}"
        path.write_bytes(digit_file(digit, fmt))
        files.append(str(path))
    # the JPEG under a misleading name: the type comes from its bytes
    odd = tmp_path / "scan.dat"
    odd.write_bytes(digit_file(digits[1], "JPEG"))
    code, out, err = await cli("image", *files, str(odd), "--url", url, "--top-k", "2")
    assert code == 0, err
    lines = records(out)
    assert [line["file"] for line in lines] == [*files, str(odd)]
    assert [line["digit"] for line in lines] == [d.label for d in digits] + [digits[1].label]
    assert all(len(line["top"]) == 2 and line["top"][0]["digit"] == line["digit"] for line in lines)


@pytest.mark.asyncio
async def test_bad_files_get_their_error_line(aiohttp_client: MakeClient, tmp_path: Path) -> None:
    client, _ = await start(aiohttp_client)
    good = tmp_path / "good.png"
    good.write_bytes(digit_file(unipen_digits()[3]))
    blank = tmp_path / "blank.png"
    blank.write_bytes(plain_png(64, 64))
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    missing = tmp_path / "missing.png"
    base = str(client.make_url("/"))  # an http:// URL works as well as ws://.../ws
    paths = [str(p) for p in (good, blank, text, missing)]
    code, out, err = await cli("image", *paths, "--url", base)
    assert code == 1, err
    lines = records(out)
    assert [line["file"] for line in lines] == paths
    assert lines[0]["digit"] == unipen_digits()[3].label
    assert (lines[1]["status"], lines[1]["error"]["code"]) == (422, "no_ink")
    assert (lines[2]["status"], lines[2]["error"]["code"]) == (415, "unsupported_type")
    assert lines[3]["error"]["code"] == "unreadable"


@pytest.mark.asyncio
async def test_unreachable_server_exits_2(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "d.png"
    path.write_bytes(digit_file(unipen_digits()[0]))
    code, out, err = await cli("image", str(path), "--url", f"http://127.0.0.1:{port}")
    assert code == 2 and out == ""
    base = f"http://127.0.0.1:{port}"
    assert err.startswith(f"digits-client: {base}: cannot connect to 127.0.0.1:{port} (")
    assert "ssl" not in err and err.count("\n") == 1


def test_http_base_and_media_type() -> None:
    assert http_base("ws://h:8080/ws") == "http://h:8080"
    assert http_base("wss://h/app/ws/") == "https://h/app"
    assert http_base("http://h:1/") == "http://h:1"
    assert media_type("x.bin", b"\x89PNG\r\n\x1a\n...") == "image/png"
    assert media_type("x.png", b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert media_type("x", b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert media_type("x.txt", b"hello") == "text/plain"
    assert media_type("x", b"hello") == "application/octet-stream"
