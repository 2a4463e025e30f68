"""Snapshots of ink -> predictions, micro-batched across all sessions.

Belongs here: the batch function (rasterize, then one `predict_scores` call, in the
batcher's thread), top-k, the verdict, bounding box and preview bytes. No sockets, no
session state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from server.batching import BatchStats, MicroBatcher, QueueFull
from server.errors import ClientError, Code
from server.model import Model
from server.protocol import Guess, Prediction
from server.raster import Image, InkError, as_strokes, ink_bounds, rasterize_batch
from server.session import Snapshot, Stroke
from server.verdict import Thresholds, decide


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the batch function found for one snapshot."""

    probs: npt.NDArray[np.float32] | None  # (10,), None when the ink was empty or bad
    image: Image | None
    bbox: tuple[float, float, float, float] | None
    error: str | None = None
    not_digit: float = 0.0  # P(the ink is not a digit)


def _checked(strokes: tuple[Stroke, ...]) -> tuple[list[Stroke], str | None]:
    try:
        return as_strokes(strokes), None
    except InkError as exc:  # protocol validation should make this unreachable
        return [], str(exc)


def predict_strokes(
    model: Model, batch: list[tuple[Stroke, ...]], ready: Sequence[Image | None] = ()
) -> list[Outcome]:
    """The batch function: rasterize all snapshots in one pass, run the model once on all
    the ink. A snapshot that cannot be drawn gets an Outcome with `error`; it never fails
    the batch. `ready[i]`, when given and not None, is item i's model input already made
    (an uploaded image; its strokes are empty)."""
    checked = [_checked(strokes) for strokes in batch]
    images = rasterize_batch([arrays for arrays, _ in checked])
    if ready:
        images = [
            given if given is not None else drawn
            for given, drawn in zip(ready, images, strict=True)
        ]
    drawn = [img for img in images if img is not None]
    scores = model.predict_scores(np.stack(drawn)) if drawn else None
    out, k = [], 0
    for (arrays, error), image in zip(checked, images, strict=True):
        bbox = ink_bounds(arrays) if arrays else None
        if image is None or scores is None:
            out.append(Outcome(None, image, bbox, error))
            continue
        out.append(Outcome(scores.digits[k], image, bbox, error, float(scores.not_digit[k])))
        k += 1
    return out


def top_k(probs: npt.NDArray[np.float32], k: int) -> tuple[Guess, ...]:
    """The k most probable digits, most probable first."""
    order = np.argsort(-probs, kind="stable")[:k]
    return tuple(Guess(int(d), round(float(probs[d]), 6)) for d in order)


def preview_bytes(image: Image) -> bytes:
    """The model input as 784 uint8 bytes, row-major, 255 = ink."""
    return bytes(np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8).tobytes())


@dataclass(slots=True)
class Job:
    """One queued prediction. `refresh`, if set, runs on the event loop as the job leaves
    the queue and may swap in a newer snapshot (see Session.refresh)."""

    snapshot: Snapshot
    refresh: Callable[[Snapshot], Snapshot] | None = None
    image: Image | None = None  # a model input made elsewhere (server.images): not rasterized


def _refresh(job: Job) -> Job:
    if job.refresh is not None:
        job.snapshot = job.refresh(job.snapshot)
    return job


class Recognizer:
    """Turns session snapshots into Prediction messages through one shared MicroBatcher."""

    def __init__(
        self,
        model: Model,
        *,
        max_batch: int = 64,
        max_wait: float = 0.0,
        max_queue: int = 4096,
        on_batch: Callable[[BatchStats], None] | None = None,
        thresholds: Thresholds | None = None,
    ) -> None:
        self.model = model
        self.thresholds = thresholds or Thresholds.from_card(model.card)
        self.batcher: MicroBatcher[Job, Outcome] = MicroBatcher(
            lambda jobs: predict_strokes(
                model, [job.snapshot.strokes for job in jobs], [job.image for job in jobs]
            ),
            prepare=_refresh,
            max_batch=max_batch,
            max_wait=max_wait,
            max_queue=max_queue,
            on_batch=on_batch,
        )

    def start(self) -> None:
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()

    async def predict(
        self,
        snap: Snapshot,
        k: int,
        preview: bool,
        refresh: Callable[[Snapshot], Snapshot] | None = None,
    ) -> Prediction:
        """The Prediction for `snap` (or for what `refresh` swaps in when its batch starts);
        empty ink is answered at once, without the model.
        Raises ClientError(OVERLOADED) when the inference queue is full."""
        if snap.points == 0:
            return Prediction(snap.seq, snap.final, empty=True, strokes=0)
        job = Job(snap, refresh)
        outcome = await self._submit(job)
        snap = job.snapshot
        if outcome.error is not None:
            raise ClientError(Code.BAD_NUMBER, outcome.error, snap.seq)
        strokes = sum(1 for s in snap.strokes if len(s))
        if outcome.probs is None or outcome.image is None:
            return Prediction(snap.seq, snap.final, empty=True, strokes=strokes)
        return Prediction(
            snap.seq,
            snap.final,
            empty=False,
            top=top_k(outcome.probs, k),
            bbox=outcome.bbox,
            strokes=strokes,
            input=preview_bytes(outcome.image) if preview else None,
            verdict=decide(float(outcome.probs.max()), outcome.not_digit, self.thresholds),
        )

    async def predict_image(self, image: Image, k: int, preview: bool) -> Prediction:
        """The Prediction for a ready 28x28 model input, batched with everyone's ink.
        Raises ClientError(OVERLOADED) when the inference queue is full."""
        outcome = await self._submit(Job(Snapshot(None, True, ()), image=image))
        assert outcome.probs is not None
        top = top_k(outcome.probs, k)
        return Prediction(
            None,
            True,
            empty=False,
            top=top,
            input=preview_bytes(image) if preview else None,
            verdict=decide(float(outcome.probs.max()), outcome.not_digit, self.thresholds),
        )

    async def _submit(self, job: Job) -> Outcome:
        try:
            return await self.batcher.submit(job)
        except QueueFull:
            seq = job.snapshot.seq
            raise ClientError(Code.OVERLOADED, "server busy: prediction skipped", seq) from None
