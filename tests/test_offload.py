"""Batches rasterized and scored in a process of their own (server/offload.py): the real
model in a real child process, compared with the same work in this process; a child killed
or hung mid-run; a server whose inference process is killed while clients draw."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from client import DigitsClient
from server.app import OFFLOAD
from server.config import Settings
from server.offload import InferenceProcess, OffloadError, draw_and_score, pack, unpack
from server.raster import as_strokes, rasterize
from tests.serverkit import MakeClient, bundled_model, start, unipen_digits, unlimited_session


@pytest.fixture(scope="module")
def child() -> Iterator[InferenceProcess]:
    proc = InferenceProcess(bundled_model().path, "cpu")
    yield proc
    proc.close()


def drawings(count: int = 12) -> list[list[np.ndarray]]:
    """Real UNIPEN digits as validated strokes, with an empty drawing among them."""
    out = [as_strokes(d.strokes) for d in unipen_digits()[:count]]
    out.insert(3, [])
    return out


def test_a_batch_crosses_as_a_few_arrays_and_comes_back_equal() -> None:
    ink = drawings()
    image = np.full((28, 28), 0.5, np.float32)
    ready = [None] * len(ink)
    ready[3] = image  # an uploaded image rides with the ink
    packed = pack(ink, ready)
    assert sum(isinstance(part, np.ndarray) for part in packed) == 4
    back, back_ready = unpack(packed)
    assert len(back) == len(ink)
    for got, want in zip(back, ink, strict=True):
        assert len(got) == len(want)
        assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
    assert back_ready[3] is not None and np.array_equal(back_ready[3], image)
    assert sum(r is not None for r in back_ready) == 1
    assert unpack(pack([], []))[0] == []


def test_the_child_gives_exactly_what_this_process_gives(child: InferenceProcess) -> None:
    ink = drawings()
    images, scores = child.draw_and_score(ink)
    want_images, want_scores = draw_and_score(bundled_model(), ink)
    assert images[3] is None and want_images[3] is None  # no ink, no image
    uploaded = rasterize(unipen_digits()[20].strokes)  # an image made elsewhere, as HTTP's
    ready: list[np.ndarray | None] = [None] * len(ink)
    ready[3] = uploaded
    with_image, with_scores = child.draw_and_score(ink, ready)
    assert with_image[3] is not None and np.array_equal(with_image[3], uploaded)
    assert with_scores is not None and with_scores.digits.argmax(axis=1)[3] == (
        unipen_digits()[20].expected
    )
    for got, want in zip(images, want_images, strict=True):
        assert (got is None) == (want is None)
        assert got is None or np.array_equal(got, want)
    assert scores is not None and want_scores is not None
    assert np.array_equal(scores.digits, want_scores.digits)
    assert np.array_equal(scores.not_digit, want_scores.not_digit)
    expected = [d.expected for d in unipen_digits()[:12]]
    assert scores.digits.argmax(axis=1).tolist() == expected


def test_a_batch_the_child_cannot_draw_fails_alone(child: InferenceProcess) -> None:
    pid = child.pid
    with pytest.raises(OffloadError, match="inference process: IndexError"):
        child.draw_and_score([[np.zeros((3, 1))]])  # x without y: the rasterizer raises
    images, _ = child.draw_and_score(drawings(5))  # the same process serves the next batch
    assert [img is None for img in images] == [False, False, False, True, False, False]
    assert child.pid == pid


def test_a_killed_child_is_started_again_and_the_batch_still_answered() -> None:
    proc = InferenceProcess(bundled_model().path, "cpu")
    try:
        first = proc.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        _, scores = proc.draw_and_score(drawings(4))
        assert proc.restarts == 1 and proc.pid not in (None, first)
        assert scores is not None and len(scores.digits) == 4
        assert scores.digits.argmax(axis=1).tolist() == [d.expected for d in unipen_digits()[:4]]
    finally:
        proc.close()
    assert proc.pid is None


def test_a_hung_child_is_killed_its_batch_fails_and_the_next_gets_a_new_one() -> None:
    proc = InferenceProcess(bundled_model().path, "cpu", batch_timeout_s=0.5)
    try:
        stopped = proc.pid
        assert stopped is not None
        os.kill(stopped, signal.SIGSTOP)  # hung: alive, never answering
        with pytest.raises(OffloadError, match=r"did not answer within 0\.5 s"):
            proc.draw_and_score(drawings(4))
        assert proc.restarts == 1 and proc.pid not in (None, stopped)
        _, scores = proc.draw_and_score(drawings(4))
        assert scores is not None and len(scores.digits) == 4
    finally:
        proc.close()
    with pytest.raises(ProcessLookupError):
        os.kill(stopped, 0)  # killed and reaped


def test_a_child_that_cannot_load_the_model_says_why(tmp_path: Path) -> None:
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a model")
    (tmp_path / "broken.json").write_text(
        Path(bundled_model().path.with_suffix(".json")).read_text()
    )
    with pytest.raises(OffloadError, match="failed to start"):
        InferenceProcess(broken, "cpu")


def test_close_stops_the_child_and_may_be_repeated() -> None:
    proc = InferenceProcess(bundled_model().path, "cpu")
    pid = proc.pid
    assert pid is not None
    proc.close()
    proc.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: gone
    with pytest.raises(OffloadError, match="closed"):
        proc.draw_and_score(drawings(1))


def test_where_inference_runs_follows_the_setting_and_the_cores() -> None:
    assert Settings().offload(cores=2) and not Settings().offload(cores=1)
    assert not Settings(redis="redis://x", workers=2).offload(cores=2)
    assert Settings(inference="process").offload(cores=1)
    assert not Settings(inference="thread").offload(cores=8)
    with pytest.raises(ValueError, match="inference must be one of"):
        Settings(inference="gpu")


@pytest.mark.asyncio
async def test_clients_draw_on_while_the_servers_inference_process_is_killed(
    aiohttp_client: MakeClient,
) -> None:
    client, url = await start(aiohttp_client, inference="process")
    offload = client.app[OFFLOAD]
    assert offload is not None and offload.pid is not None
    assert (await (await client.get("/readyz")).json())["inference"] == "process"
    digits = unipen_digits()[:10]

    async def everyone_draws() -> list[int | None]:
        async with unlimited_session() as http:
            clients = [await DigitsClient.open(url, session=http) for _ in digits]
            finals = await asyncio.gather(
                *(c.draw(d.strokes, point_interval=0) for c, d in zip(clients, digits, strict=True))
            )
            await asyncio.gather(*(c.close() for c in clients))
        return [f.top[0].digit if f else None for f in finals]

    expected = [d.expected for d in digits]
    assert await everyone_draws() == expected
    assert offload.restarts == 0
    os.kill(offload.pid, signal.SIGKILL)
    assert await everyone_draws() == expected  # batches of several: they went to the child
    assert offload.restarts == 1


def test_a_lone_drawing_image_matches_rasterize(child: InferenceProcess) -> None:
    d = unipen_digits()[5]
    images, _ = child.draw_and_score([as_strokes(d.strokes)])
    want = rasterize(d.strokes)
    assert images[0] is not None and want is not None and np.array_equal(images[0], want)
