"""The `digits-client` command (client/cli.py and the modules under it), run as a real
process against a real server on a loopback port with the real model and UNIPEN digits;
plus its pure pieces (pacing schedule, file parsing) with literal inputs."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from client import connect
from client.cli import main
from client.pen import Pace, frames
from client.replay import percentile
from protocol.strokefile import LineError, Sample, parse_draw_line, parse_sample, read_samples
from tests.serverkit import Digit, MakeClient, metric, start, unipen_digits

REPO = Path(__file__).resolve().parent.parent


async def cli(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    """Run `python -m client.cli ARGS`; its exit status, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client.cli", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def twenty() -> list[Digit]:
    """Two clear UNIPEN digits of each label."""
    chosen = unipen_digits()[::2]
    assert sorted(d.label for d in chosen) == sorted(list(range(10)) * 2)
    return list(chosen)


def sample_line(i: int, digit: Digit) -> str:
    return json.dumps({"id": f"s{i}", "label": digit.label, "strokes": digit.strokes})


def write_samples(path: Path, lines: list[str]) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def records(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def summary(err: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(err.strip().splitlines()[-1])
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# ---- recognize ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_recognize_at_pen_speed_reports_every_sample_and_the_accuracy(
    aiohttp_client: MakeClient, tmp_path: Path
) -> None:
    server, url = await start(aiohttp_client)
    digits = twenty()
    path = write_samples(
        tmp_path / "digits.jsonl.gz", [sample_line(i, d) for i, d in enumerate(digits)]
    )
    rc, out, err = await cli(
        "recognize", str(path), "--url", url, "--rate", "300", "--concurrency", "4"
    )
    assert rc == 0, err
    rows = records(out)
    assert [r["id"] for r in rows] == [f"s{i}" for i in range(20)]  # input order
    assert [r["line"] for r in rows] == list(range(1, 21))
    assert [r["digit"] for r in rows] == [d.label for d in digits]
    assert all(r["correct"] and r["label"] == r["digit"] for r in rows)
    assert {r["verdict"] for r in rows} <= {"digit", "unsure"}
    for row, digit in zip(rows, digits, strict=True):
        assert row["top"][0] == {
            "digit": digit.label,
            "p": pytest.approx(digit.probs.max(), abs=1e-4),
        }
        assert len(row["top"]) == 3 and row["points"] == digit.points
        assert row["live"] >= 1 and row["latency_ms"] > 0
    s = summary(err)
    assert (s["count"], s["errors"], s["labelled"], s["accuracy"]) == (20, 0, 20, 1.0)
    assert 0 < s["latency_ms_p50"] <= s["latency_ms_p99"] == max(r["latency_ms"] for r in rows)
    text = await (await server.get("/metrics")).text()
    assert metric(text, "digits_messages_total", '{type="hello"}') == 4  # --concurrency 4
    assert metric(text, "digits_predictions_total", '{kind="live"}') == sum(r["live"] for r in rows)


@pytest.mark.asyncio
async def test_fast_and_concurrent_under_a_strict_rate_limit(
    aiohttp_client: MakeClient, tmp_path: Path
) -> None:
    """--fast sends as fast as the announced rate limit allows: no message is refused."""
    server, url = await start(aiohttp_client, messages_per_second=150.0, message_burst=20)
    digits = twenty()
    path = write_samples(
        tmp_path / "digits.jsonl", [sample_line(i, d) for i, d in enumerate(digits)]
    )
    out_file = tmp_path / "out.jsonl"
    args = ["--fast", "--batch", "4", "--concurrency", "8", "--out", str(out_file), "--json"]
    rc, out, err = await cli("recognize", str(path), "--url", url, *args)
    assert rc == 0, err
    assert out == ""
    rows = records(out_file.read_text())
    assert [r["digit"] for r in rows] == [d.label for d in digits]
    s = summary(err)
    assert (s["count"], s["errors"], s["accuracy"]) == (20, 0, 1.0)
    text = await (await server.get("/metrics")).text()
    assert metric(text, "digits_messages_total", '{type="hello"}') == 8
    assert metric(text, "digits_messages_total", '{type="recognize"}') == 20
    assert "digits_errors_total{" not in text  # not one message refused


@pytest.mark.asyncio
async def test_malformed_lines_are_reported_and_the_others_still_run(
    aiohttp_client: MakeClient, tmp_path: Path
) -> None:
    _, url = await start(aiohttp_client)
    d = twenty()
    lines = [
        sample_line(0, d[0]),
        "this is not json",
        sample_line(2, d[5]),
        '{"label": 3}',
        "",
        '{"strokes": [[[0, NaN]]], "label": 1}',
        '{"strokes": [[[0, 1], [2]]]}',
        '{"strokes": [[[0, 1]]], "label": 12}',
        sample_line(7, d[13]),
    ]
    path = write_samples(tmp_path / "mixed.jsonl", lines)
    rc, out, err = await cli("recognize", str(path), "--url", url, "--fast", "--concurrency", "2")
    assert rc == 1
    assert [(r["id"], r["line"], r["digit"]) for r in records(out)] == [
        ("s0", 1, d[0].label), ("s2", 3, d[5].label), ("s7", 9, d[13].label),
    ]  # fmt: skip
    problems = err.strip().splitlines()[:-1]
    assert [p.split(": ")[0] for p in problems] == [f"{path}:{n}" for n in (2, 4, 6, 7, 8)]
    assert "not JSON" in problems[0] and '"strokes"' in problems[1]
    assert "finite" in problems[2] and "[x, y]" in problems[3] and "label" in problems[4]
    s = summary(err)
    assert (s["count"], s["errors"], s["accuracy"]) == (3, 5, 1.0)


@pytest.mark.asyncio
async def test_a_truncated_gzip_file_reports_where_it_broke(
    aiohttp_client: MakeClient, tmp_path: Path
) -> None:
    _, url = await start(aiohttp_client)
    lines = [sample_line(i, d) for i, d in enumerate(twenty())]
    packed = gzip.compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])
    rc, out, err = await cli("recognize", str(path), "--url", url, "--fast")
    assert rc == 1
    done = records(out)
    assert 0 < len(done) < 20
    assert f"{path}:{len(done) + 1}: file is corrupt or truncated" in err
    assert summary(err)["errors"] == 1


@pytest.mark.asyncio
async def test_an_unreachable_server_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = write_samples(tmp_path / "one.jsonl", [sample_line(0, twenty()[0])])
    url = f"ws://127.0.0.1:{free_port()}/ws"
    for command in (["recognize", str(path)], ["draw"]):
        rc, out, err = await cli(*command, "--url", url, stdin=b"[[0, 0], [1, 1]]\n")
        assert rc == 2 and out == ""
        assert err.count("\n") == 1 and err.startswith(f"digits-client: {url}: cannot connect")
        assert "Traceback" not in err


@pytest.mark.asyncio
async def test_a_refused_room_token_is_a_clear_error(
    aiohttp_client: MakeClient, tmp_path: Path
) -> None:
    _, url = await start(aiohttp_client)
    path = write_samples(tmp_path / "one.jsonl", [sample_line(0, twenty()[0])])
    rc, out, err = await cli("recognize", str(path), "--url", url, "--room", "r1", "--token", "no")
    assert rc == 3 and out == ""
    assert err.count("\n") == 1 and "joining room 'r1' was refused" in err


@pytest.mark.asyncio
async def test_watch_prints_the_shared_drawing_and_draw_joins_with_room_and_token(
    aiohttp_client: MakeClient,
) -> None:
    _, url = await start(aiohttp_client)
    digit = twenty()[6]
    async with connect(url) as owner:
        await owner.draw(digit.strokes, point_interval=0)
        shared = await owner.share()
        room = ["--url", url, f"--room={shared.room}"]  # ids and tokens may start with "-"
        rc, out, err = await cli("watch", *room, f"--token={shared.watch_token}", "--count", "1")
        assert rc == 0, err
        (row,) = records(out)
        assert (row["digit"], row["strokes"], row["final"]) == (
            digit.label,
            len(digit.strokes),
            False,
        )
        stroke = json.dumps([[0, 0], [500, 500]]).encode() + b"\n"
        rc, out, err = await cli(
            "draw", *room, f"--token={shared.draw_token}", "--fast", stdin=stroke
        )
        assert rc == 0, err
        assert records(out)[-1]["strokes"] == len(digit.strokes) + 1  # drew on the shared canvas
        rc, out, err = await cli(
            "watch", *room, f"--token={shared.watch_token}", "--events", "--count", "1"
        )
        assert rc == 0, err
        joined, prediction = records(out)
        assert (joined["type"], joined["role"]) == ("joined", "watch")
        assert len(joined["strokes"]) == prediction["strokes"] == len(digit.strokes) + 1
        rc, out, err = await cli("draw", *room, f"--token={shared.watch_token}", stdin=stroke)
        assert rc == 1
        assert err.splitlines() == [  # once for the line, not for its start and its end
            "stdin:1: server error watch_only: watchers cannot draw, undo or clear"
        ]


@pytest.mark.asyncio
async def test_draw_share_prints_the_tokens_and_a_wrong_token_exits_3(
    aiohttp_client: MakeClient,
) -> None:
    _, url = await start(aiohttp_client)
    stroke = json.dumps([[0, 0], [0, 400]]).encode() + b"\n"
    rc, out, err = await cli("draw", "--url", url, "--share", "--fast", stdin=stroke)
    assert rc == 0, err
    share = json.loads(err.splitlines()[0])
    async with connect(url) as c:
        joined = await c.join(share["room"], share["watch_token"])
        assert [len(s.points) for s in joined.strokes] == [2]
    for command in ("watch", "draw"):
        rc, out, err = await cli(
            command, "--url", url, f"--room={share['room']}", f"--token={share['room']}"
        )
        assert rc == 3 and out == "" and "Traceback" not in err
        (line,) = err.splitlines()  # once, and as no input line's (no "stdin:0:")
        assert line.startswith(f"digits-client: joining room {share['room']!r} was refused: ")
        assert "room_refused" in line


@pytest.mark.asyncio
async def test_not_a_websocket_endpoint_and_a_missing_file(
    aiohttp_client: MakeClient, tmp_path: Path
) -> None:
    _, url = await start(aiohttp_client)
    path = write_samples(tmp_path / "one.jsonl", [sample_line(0, twenty()[0])])
    rc, _, err = await cli("recognize", str(path), "--url", url.replace("/ws", "/healthz"))
    assert rc == 2 and "not a WebSocket endpoint" in err and err.count("\n") == 1
    rc, _, err = await cli("recognize", str(tmp_path / "missing.jsonl"), "--url", url)
    assert (
        rc == 1
        and err == f"digits-client: {tmp_path / 'missing.jsonl'}: No such file or directory\n"
    )


# ---- draw -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_draw_prints_live_predictions_then_the_final_answer(
    aiohttp_client: MakeClient,
) -> None:
    _, url = await start(aiohttp_client)
    digit = unipen_digits()[7]
    strokes = [json.dumps(s) for s in digit.strokes]
    stdin = "\n".join(["[[5, 5], [6, 6]]", '"undo"', *strokes, "{oops", "[[1, NaN]]", ""])
    # 47 points at 150 a second: a third of a second of drawing, several live answers even
    # on a busy machine (at 500 a second, once in a CI run, the ink coalesced into one)
    rc, out, err = await cli("draw", "--url", url, "--rate", "150", stdin=stdin.encode())
    bad_line = len(strokes) + 3
    problems = err.splitlines()
    assert len(problems) == 2 and problems[0].startswith(f"stdin:{bad_line}: not JSON (")
    assert problems[1] == f"stdin:{bad_line + 1}: NaN is not a finite number"
    assert rc == 1
    shown = records(out)
    live, final = shown[:-1], shown[-1]
    assert final["final"] and final["digit"] == digit.label == final["top"][0]["digit"]
    assert final["verdict"] == "digit"
    assert final["strokes"] == len(digit.strokes)  # the undone stroke is gone
    assert len(live) >= 3 and not any(p["final"] for p in live)
    seqs = [p["seq"] for p in shown]
    assert seqs == sorted(seqs)


@pytest.mark.asyncio
async def test_draw_reports_server_errors_with_the_input_line(aiohttp_client: MakeClient) -> None:
    _, url = await start(aiohttp_client, max_coordinate=100.0)
    stdin = b"[[1, 1], [2, 2]]\n[[1, 1], [500, 2]]\n[[3, 3], [4, 4]]\n"
    rc, out, err = await cli("draw", "--url", url, "--fast", stdin=stdin)
    assert rc == 1
    assert err.startswith("stdin:2: server error bad_number: coordinates must be within")
    assert len(err.splitlines()) == 1  # not the no_stroke of its end that follows from it
    assert records(out)[-1]["final"] and records(out)[-1]["strokes"] == 2


# ---- pure pieces ----------------------------------------------------------------------------


def test_pen_speed_batches_the_points_due_in_each_frame() -> None:
    assert frames(5, Pace(rate=4, frame_s=0.5)) == [(0.0, 0, 2), (0.5, 2, 4), (1.0, 4, 5)]
    assert frames(3, Pace(rate=1, frame_s=0.5)) == [(0.0, 0, 1), (1.0, 1, 2), (2.0, 2, 3)]
    assert frames(0, Pace()) == []


def test_fast_sends_batches_at_once() -> None:
    assert frames(10, Pace(fast=True, batch=4)) == [(0.0, 0, 4), (0.0, 4, 8), (0.0, 8, 10)]


def test_parse_sample_accepts_the_unipen_format_and_names_what_is_wrong() -> None:
    ok = parse_sample('{"id": 7, "label": 3, "strokes": [[[1, 2], [3, 4.5, 9]], []]}', 4)
    assert ok == Sample(4, "7", 3, (((1.0, 2.0), (3.0, 4.5, 9.0)), ()))
    assert parse_sample('{"strokes": []}', 9) == Sample(9, "line9", None, ())
    letter = parse_sample('{"label": "A", "source": "apa", "strokes": [[[1, 2]]]}', 2)
    assert (letter.label, letter.char, letter.source) == (None, "A", "apa")
    bad = {
        "[1, 2]": "a sample must be a JSON object",
        '{"strokes": 3}': '"strokes" must be a list of strokes',
        '{"strokes": [[[true, 1]]]}': "point coordinates must be numbers",
        '{"strokes": [[[1, Infinity]]]}': "Infinity is not a finite number",
        '{"strokes": [[[1e999, 1]]]}': "point coordinates must be finite",
        '{"strokes": [], "label": 3.0}': "label must be an integer from 0 to 9, or null",
        '{"strokes": [], "label": "7"}': "label must be an integer from 0 to 9, or null",
        '{"strokes": [], "label": "AB"}': "label must be an integer from 0 to 9, or null",
    }
    for text, reason in bad.items():
        with pytest.raises(ValueError, match=reason.replace("[", r"\[")):
            parse_sample(text, 1)


def test_parse_draw_line() -> None:
    assert parse_draw_line("[[1, 2], [3, 4]]") == ((1.0, 2.0), (3.0, 4.0))
    assert parse_draw_line('"clear"') == "clear"
    with pytest.raises(ValueError, match="unknown command"):
        parse_draw_line('"erase"')


def test_read_samples_gzipped_or_not_with_line_numbers(tmp_path: Path) -> None:
    lines = ['{"strokes": [[[1, 2]]], "label": 1}', "", "nope", '{"strokes": []}']
    for name in ("a.jsonl", "a.jsonl.gz", "gz-without-suffix"):
        path = tmp_path / name
        data = "\n".join(lines).encode()
        path.write_bytes(data if name == "a.jsonl" else gzip.compress(data))
        items = list(read_samples(str(path)))
        assert [type(i) for i in items] == [Sample, LineError, Sample]
        assert [i.line for i in items] == [1, 3, 4]
        assert str(items[1]).startswith(f"{path}:3: not JSON")


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        50,
        99,
        100,
    )
    assert percentile([3.0], 99) == 3.0 and percentile([], 50) is None


@pytest.mark.asyncio
async def test_python_m_client_runs_the_command() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client", "draw", "--help",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    assert out.decode().startswith("usage: digits-client draw ")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["draw", "--room", "r"],
        ["recognize", "f", "--room", "r", "--token", "t", "--concurrency", "2"],
        ["recognize", "f", "--rate", "0"],
        ["watch"],
        ["draw", "--share", "--room", "r", "--token", "t"],
        ["watch", "--room", "r", "--token", "t", "--rate", "5"],  # watching draws nothing
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    assert "--room and --token go together" in capsys.readouterr().err


def test_help_gives_the_defaults_and_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["recognize", "--help"])
    said = capsys.readouterr().out
    assert "pen speed, points per second (default: 90.0)" in said
    assert "(default: None)" not in said and "Exit status: 0 all went well" in said
