"""The batch's numeric work (rasterize + model) in a process of its own.

Belongs here: starting that process, moving a batch's validated ink to it and its images and
scores back, and starting it again when it dies. Why: in one process the inference thread's
numpy and the event loop take turns holding the GIL, so under load a batch waits for the
loop more than it computes (at 300 drawers a batch of 64 took 20 ms for 8.7 ms of CPU) and
the server cannot use a second core. The event loop's process keeps validating the ink (and
its cache of finished strokes), bounding boxes and ranking; the ink crosses as one flat
array per batch.

The parent side is synchronous: the batcher's thread calls `draw_and_score` and blocks
without the GIL while the child works. One batch at a time, as the batcher guarantees.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from server.model import Accelerator, Model, Scores
from server.raster import Image, rasterize_batch

log = logging.getLogger(__name__)

Stroke = npt.NDArray[np.float64]
Drawn = tuple[list[Image | None], Scores | None]

START_TIMEOUT_S = 60.0  # loading the runtime and the model takes ~1 s on an idle core
BATCH_TIMEOUT_S = 30.0  # a batch is bounded to ~20 ms of work (server/cost.py): it is hung


class OffloadError(RuntimeError):
    """The inference process could not be started, or died while running a batch."""


def draw_and_score(
    model: Model, drawings: Sequence[Sequence[Stroke]], ready: Sequence[Image | None] = ()
) -> Drawn:
    """Rasterize the drawings (validated, bounded strokes) in one pass and run the model once
    on every image; `ready[i]`, when given and not None, is drawing i's image already made
    (its ink is empty). Returns each drawing's image (None: no ink) and the scores of the
    images that are not None, in order (None when there are none)."""
    images = rasterize_batch(drawings)
    if ready:
        images = [
            made if made is not None else drawn for made, drawn in zip(ready, images, strict=True)
        ]
    drawn = [img for img in images if img is not None]
    return images, model.predict_scores(np.stack(drawn)) if drawn else None


Sparse = tuple[int, list[int], npt.NDArray[np.float32] | None]


def sparse(images: Sequence[Image | None]) -> Sparse:
    """Images some of which are None as (count, where the others are, them stacked)."""
    where = [i for i, img in enumerate(images) if img is not None]
    stacked = np.stack([img for img in images if img is not None]) if where else None
    return len(images), where, stacked


def dense(packed: Sparse) -> list[Image | None]:
    """`sparse`'s inverse."""
    count, where, stacked = packed
    images: list[Image | None] = [None] * count
    for k, i in enumerate(where):
        assert stacked is not None
        images[i] = stacked[k]
    return images


def pack(drawings: Sequence[Sequence[Stroke]], ready: Sequence[Image | None]) -> tuple[Any, ...]:
    """A batch as a few arrays: strokes per drawing, points per stroke, all points (n, 2)."""
    strokes = [s for d in drawings for s in d]
    per_drawing = np.fromiter(map(len, drawings), np.intp, len(drawings))
    lengths = np.fromiter(map(len, strokes), np.intp, len(strokes))
    points = np.concatenate(strokes) if strokes else np.zeros((0, 2))
    return per_drawing, lengths, points, *sparse(ready)


def unpack(packed: tuple[Any, ...]) -> tuple[list[list[Stroke]], list[Image | None]]:
    """`pack`'s inverse (strokes come back as views of one array)."""
    per_drawing, lengths, points, count, where, stacked = packed
    strokes = np.split(points, np.cumsum(lengths)[:-1]) if len(lengths) else []
    ends = np.cumsum(per_drawing).tolist()
    starts = [0, *ends[:-1]] if ends else []
    drawings = [strokes[a:b] for a, b in zip(starts, ends, strict=True)]
    return drawings, dense((count, where, stacked))


def _serve(
    conn: Connection, path: str, accelerator: Accelerator, threads: int, quiet: bool
) -> None:
    """The child: load the model, then answer batches until the parent closes the pipe (or
    dies). Ctrl-C and SIGTERM are the parent's to handle: it drains, then closes the pipe."""
    from server.model import load_model
    from server.quiet import native_output

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    try:
        with native_output(quiet=quiet):
            model = load_model(path, accelerator, threads)
    except Exception as exc:  # the parent reports it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", model.accelerator))
    while True:
        try:
            packed = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if packed is None:
            return
        try:
            images, scores = draw_and_score(model, *unpack(packed))
            reply: tuple[Any, ...] = ("ok", sparse(images), scores)
        except Exception as exc:  # this batch fails; the process goes on
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except OSError:  # the parent is gone
            return


class InferenceProcess:
    """A child process running `draw_and_score` on the model at `path`. Started at
    construction (blocking until the model is loaded); started again, once per batch, if it
    dies. `close` stops it. `quiet`: the native runtime's chatter kept off stderr.

    A child that has not answered a batch within `batch_timeout_s` is hung: a watchdog
    thread kills it, that batch fails (OffloadError) and the next one gets a new child."""

    def __init__(
        self,
        path: Path | str,
        accelerator: Accelerator = "cpu",
        threads: int = 1,
        quiet: bool = True,
        batch_timeout_s: float = BATCH_TIMEOUT_S,
    ) -> None:
        self.path, self.accelerator, self.threads = str(path), accelerator, threads
        self.quiet, self.batch_timeout_s = quiet, batch_timeout_s
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Connection | None = None
        self.restarts = 0
        self._closed = False
        self._due: float | None = None  # when the batch in flight must be answered by
        self._hung = False  # the watchdog killed the child
        self._start()
        self._watch_stop = threading.Event()
        threading.Thread(target=self._watch, name="inference-watchdog", daemon=True).start()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_serve,
            args=(child, self.path, self.accelerator, self.threads, self.quiet),
            name="digits-inference",
            daemon=True,
        )
        proc.start()
        child.close()
        try:
            if parent.poll(START_TIMEOUT_S):
                kind, detail = parent.recv()
            else:
                kind, detail = "error", f"not ready within {START_TIMEOUT_S:.0f} s"
        except (EOFError, OSError) as exc:
            kind, detail = "error", f"it exited ({exc.__class__.__name__})"
        if kind != "ready":
            proc.kill()
            proc.join()
            raise OffloadError(f"inference process failed to start: {detail}")
        self._proc, self._conn = proc, parent
        log.debug("inference process %d ready (%s)", proc.pid, detail)

    def draw_and_score(
        self, drawings: Sequence[Sequence[Stroke]], ready: Sequence[Image | None] = ()
    ) -> Drawn:
        """`draw_and_score` in the child. If the child has died, it is started again and the
        batch sent once more; raises OffloadError if that fails too, or if the child hung on
        this batch (the watchdog killed it; the batch is not sent again)."""
        packed = pack(drawings, ready)
        with self._lock:
            if self._closed:
                raise OffloadError("inference process is closed")
            try:
                reply = self._round_trip(packed)
            except (EOFError, OSError) as exc:
                if self._hung:  # this batch may be why: it is not sent again
                    self._restart()
                    raise OffloadError(
                        f"inference process did not answer within {self.batch_timeout_s:g} s; "
                        "started another"
                    ) from exc
                log.warning("inference process died (%s); starting another", type(exc).__name__)
                self._restart()
                try:
                    reply = self._round_trip(packed)
                except (EOFError, OSError) as again:
                    self._restart()
                    raise OffloadError("inference process died twice on one batch") from again
        if reply[0] != "ok":
            raise OffloadError(f"inference process: {reply[1]}")
        _, images, scores = reply
        return dense(images), scores

    def _round_trip(self, packed: tuple[Any, ...]) -> tuple[Any, ...]:
        if self._conn is None:  # a restart failed: start it now
            raise OSError("no inference process")
        self._due = time.monotonic() + self.batch_timeout_s
        try:
            self._conn.send(packed)
            return self._conn.recv()  # type: ignore[no-any-return]
        finally:
            self._due = None

    def _watch(self) -> None:
        """Kill a child that is late with its answer (its pipe then fails in the batch's
        thread). Checks a few times per timeout; costs nothing while batches are answered."""
        tick = min(1.0, self.batch_timeout_s / 4)
        while not self._watch_stop.wait(tick):
            due, proc = self._due, self._proc
            if due is not None and time.monotonic() > due and proc is not None:
                log.warning("inference process %d did not answer in time; killing it", proc.pid)
                self._hung = True
                proc.kill()

    def _restart(self) -> None:
        self._stop(kill=True)
        self.restarts += 1
        self._hung = False
        self._start()

    def close(self) -> None:
        """Stop the child (it finishes the batch it has). Idempotent."""
        self._watch_stop.set()
        with self._lock:
            self._closed = True
            self._stop(kill=False)

    def _stop(self, kill: bool) -> None:
        proc, conn, self._proc, self._conn = self._proc, self._conn, None, None
        if conn is not None:
            if not kill:
                with contextlib.suppress(OSError):
                    conn.send(None)
            conn.close()
        if proc is not None:
            proc.join(0 if kill else 5)
            if proc.is_alive():
                proc.kill()
                proc.join()


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
