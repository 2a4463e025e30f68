"""Snapshots of ink -> answers of the model, micro-batched across all canvases.

Belongs here: the batch function (ink to validated arrays in the batcher's thread, then
rasterize and one `predict_scores` call there or in the inference process of
server/offload.py), the ranking of digits, the verdict, the bounding box as the
client's own numbers, and each member's cut of an answer (top_k, preview, its seq).
No sockets, no canvas state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

import numpy as np
import numpy.typing as npt

from protocol import Code, Guess, Points, Prediction, ProtocolError
from server.batching import BatchStats, MicroBatcher, QueueFull
from server.canvas import Snapshot
from server.cost import MAX_STAMPS, bounded, job_cost
from server.model import Model
from server.offload import Drawn, draw_and_score
from server.raster import Image, InkError, as_strokes
from server.verdict import Thresholds, decide

Bbox = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the batch function found for one snapshot's ink."""

    probs: npt.NDArray[np.float32] | None  # (10,), None when the ink was empty
    image: Image | None
    bbox: Bbox | None
    error: str | None = None
    not_digit: float = 0.0  # P(the ink is not a digit)
    top: Sequence[Guess] = ()  # all ten digits, most probable first (`ranked`)


def bounds(ink: tuple[Points, ...], arrays: list[npt.NDArray[np.float64]]) -> Bbox:
    """(min x, min y, max x, max y) of the ink, each the client's own number (an int stays
    an int). `arrays` are the same non-empty strokes as float arrays."""
    xy = (np.concatenate(arrays) if len(arrays) > 1 else arrays[0])[:, :2]
    lens = [len(a) for a in arrays]
    ends = np.cumsum(lens)
    # the first point reaching min x, min y, max x, max y, and its stroke: few numpy calls
    picks = np.concatenate([xy.argmin(axis=0), xy.argmax(axis=0)])
    strokes = np.searchsorted(ends, picks, side="right")
    points = (picks - (ends - lens)[strokes]).tolist()
    out = [
        ink[s][p][axis] for axis, s, p in zip((0, 1, 0, 1), strokes.tolist(), points, strict=True)
    ]
    return out[0], out[1], out[2], out[3]


def bounds_batch(
    inks: Sequence[tuple[Points, ...]], arrays: Sequence[list[npt.NDArray[np.float64]]]
) -> list[Bbox | None]:
    """`bounds` of many drawings in one numpy pass (None where there is no ink): the first
    point reaching each extreme gives its number."""
    inked = [i for i, a in enumerate(arrays) if a]
    out: list[Bbox | None] = [None] * len(arrays)
    if len(inked) < 3:  # a lone drawing costs fewer numpy calls one by one
        for i in inked:
            out[i] = bounds(inks[i], arrays[i])
        return out
    strokes = [a for i in inked for a in arrays[i]]
    lens = np.array([len(a) for a in strokes])
    per = np.array([len(arrays[i]) for i in inked])
    stroke_end = np.cumsum(lens)
    stroke_start = stroke_end - lens
    first_stroke = np.cumsum(per) - per
    starts = stroke_start[first_stroke]
    xy = np.concatenate(strokes)[:, :2]
    owner = np.repeat(np.arange(len(inked)), np.add.reduceat(lens, first_stroke))
    # min x, min y, max x, max y of each drawing, and the first point reaching each
    extremes = np.hstack([np.minimum.reduceat(xy, starts), np.maximum.reduceat(xy, starts)])
    hit = xy[:, (0, 1, 0, 1)] == extremes[owner]
    first = np.minimum.reduceat(np.where(hit, np.arange(len(xy))[:, None], len(xy)), starts)
    stroke = np.searchsorted(stroke_end, first, side="right")
    point = (first - stroke_start[stroke]).tolist()
    stroke = (stroke - first_stroke[:, None]).tolist()
    for i, s, p in zip(inked, stroke, point, strict=True):
        ink = inks[i]
        out[i] = ink[s[0]][p[0]][0], ink[s[1]][p[1]][1], ink[s[2]][p[2]][0], ink[s[3]][p[3]][1]
    return out


def _array(stroke: Points) -> npt.NDArray[np.float64]:
    """One stroke as an (n, 2) or (n, 3) array; x, y only when [x, y] and [x, y, t] mix."""
    try:
        return np.asarray(stroke, dtype=np.float64)
    except ValueError:
        return np.asarray([p[:2] for p in stroke], dtype=np.float64)


class _Finished:
    """Finished strokes as validated arrays, by identity: a finished stroke is the same
    tuple in every snapshot of its canvas, so it is converted and validated once, not at
    every prediction. Used by one batch at a time (the batcher never overlaps batches);
    bounded, oldest out first."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._arrays: dict[int, tuple[Points, list[npt.NDArray[np.float64]]]] = {}

    def arrays(self, stroke: Points) -> list[npt.NDArray[np.float64]]:
        """`as_strokes` of the one stroke ([] when it is empty); raises InkError as it does."""
        hit = self._arrays.get(id(stroke))
        if hit is not None and hit[0] is stroke:
            return hit[1]
        arrays = as_strokes([_array(stroke)])
        if len(self._arrays) >= self.size:
            del self._arrays[next(iter(self._arrays))]
        self._arrays[id(stroke)] = (stroke, arrays)
        return arrays


_FINISHED = _Finished()


def _checked(ink: tuple[Points, ...]) -> tuple[list[npt.NDArray[np.float64]], str | None]:
    """The ink as validated arrays; the last stroke (maybe still being drawn) is converted
    and validated anew, the others come from the cache."""
    try:
        arrays = [a for s in ink[:-1] for a in _FINISHED.arrays(s)]
        return [*arrays, *as_strokes([_array(s) for s in ink[-1:]])], None
    except InkError:  # protocol validation should make this unreachable
        try:  # the error as the whole ink gives it (it names the stroke by its index)
            as_strokes([_array(s) for s in ink])
        except InkError as exc:
            return [], str(exc)
        raise


Engine = Callable[[Sequence[Sequence[npt.NDArray[np.float64]]], Sequence[Image | None]], Drawn]


def predict_ink(
    model: Model | Engine, batch: list[tuple[Points, ...]], ready: Sequence[Image | None] = ()
) -> list[Outcome]:
    """The batch function: rasterize all snapshots in one pass, run the model once on all
    the ink (in this thread with a Model, or through an engine such as an
    InferenceProcess's `draw_and_score`). Ink that cannot be drawn gets an Outcome with
    `error`; it never fails the batch. `ready[i]`, when given and not None, is item i's
    model input already made (an uploaded image, server/images.py; its ink is empty)."""
    checked = [_checked(ink) for ink in batch]
    drawings = [bounded(arrays) for arrays, _ in checked]  # server/cost.py
    if isinstance(model, Model):
        images, scores = draw_and_score(model, drawings, ready)
    else:
        images, scores = model(drawings, ready)
    tops = ranked_batch(scores.digits) if scores is not None else []
    boxes = bounds_batch(batch, [arrays for arrays, _ in checked])
    out, k = [], 0
    for (_, error), image, bbox in zip(checked, images, boxes, strict=True):
        if image is None or scores is None:
            out.append(Outcome(None, image, bbox, error))
            continue
        not_digit = float(scores.not_digit[k])
        out.append(Outcome(scores.digits[k], image, bbox, error, not_digit, tops[k]))
        k += 1
    return out


class Ranking(Sequence[Guess]):
    """All ten digits, most probable first, with probabilities rounded to 6 places. The
    Guess objects are made for what is read (a member's top_k), not for all ten of every
    prediction; it compares equal to any sequence of the same guesses."""

    __slots__ = ("_digits", "_ps")

    def __init__(self, digits: list[int], ps: list[float]) -> None:
        self._digits, self._ps = digits, ps

    def __len__(self) -> int:
        return len(self._digits)

    @overload
    def __getitem__(self, i: int) -> Guess: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Guess, ...]: ...
    def __getitem__(self, i: int | slice) -> Guess | tuple[Guess, ...]:
        if isinstance(i, slice):
            return tuple(map(Guess, self._digits[i], [round(p, 6) for p in self._ps[i]]))
        return Guess(self._digits[i], round(self._ps[i], 6))

    def __iter__(self) -> Iterator[Guess]:
        return iter(self[:])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Ranking({tuple(self)!r})"


def ranked(probs: npt.NDArray[np.float32]) -> Ranking:
    """All ten digits, most probable first."""
    return ranked_batch(probs[None])[0]


def ranked_batch(probs: npt.NDArray[np.float32]) -> list[Ranking]:
    """`ranked` for each row of (N, 10) probabilities, sorted in one numpy call."""
    order = np.argsort(-probs, axis=1, kind="stable")
    ps = np.take_along_axis(probs, order, axis=1).astype(np.float64).tolist()
    return list(map(Ranking, order.tolist(), ps))


def preview_bytes(image: Image) -> bytes:
    """The model input as 784 uint8 bytes, row-major, 255 = ink."""
    return bytes(np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8).tobytes())


@dataclass(slots=True)
class Answer:
    """The model's answer for one snapshot (the one actually predicted, after late binding),
    cut per member by `for_member`."""

    snapshot: Snapshot
    top: Sequence[Guess] = ()  # all ten, most probable first; () for empty ink
    bbox: Bbox | None = None
    image: Image | None = None
    verdict: str | None = None  # digit | unsure | not_digit (server/verdict.py); None: empty
    _preview: bytes | None = field(default=None, repr=False)

    @property
    def empty(self) -> bool:
        return not self.top

    def for_member(self, member: str, top_k: int, preview: bool) -> Prediction:
        """The prediction message for one member: its seq, its top_k, its preview."""
        snap = self.snapshot
        strokes = len(snap.ink)
        if self.empty:
            return Prediction(snap.seq(member), snap.final, True, strokes=strokes)
        if preview and self._preview is None and self.image is not None:
            self._preview = preview_bytes(self.image)
        image = self._preview if preview else None
        top = tuple(self.top[:top_k])  # a Ranking makes only these
        return Prediction(
            snap.seq(member), snap.final, False, top, self.bbox, strokes, image, self.verdict
        )


@dataclass(slots=True)
class Job:
    """One queued prediction. `refresh`, if set, runs on the event loop as the job leaves
    the queue and may swap in a newer snapshot (late binding, see server/pipeline.py)."""

    snapshot: Snapshot
    refresh: Callable[[Snapshot], Snapshot] | None = None
    image: Image | None = None  # a model input made elsewhere (server/images.py)


def _refresh(job: Job) -> Job:
    if job.refresh is not None:
        job.snapshot = job.refresh(job.snapshot)
    return job


#: A lone prediction costing at most this many stamps (a digit is 100-300 stamps; this
#: many take ~0.5 ms to rasterize) runs on the event loop, not in the inference thread:
#: when nothing else is queued the hand-offs cost more than the loop waits.
INLINE_STAMPS = 1024.0


class Recognizer:
    """Turns snapshots into Answers through one shared MicroBatcher."""

    def __init__(
        self,
        model: Model,
        *,
        max_batch: int = 64,
        max_wait: float = 0.0,
        max_queue: int = 4096,
        max_cost: float = 4 * MAX_STAMPS,
        inline_cost: float = INLINE_STAMPS,
        on_batch: Callable[[BatchStats], None] | None = None,
        thresholds: Thresholds | None = None,
        engine: Engine | None = None,
    ) -> None:
        """`engine`, if given, rasterizes and scores the batches in place of `model` (an
        InferenceProcess's `draw_and_score`); a lone cheap batch still runs on `model`."""
        self.model = model
        self.thresholds = thresholds or Thresholds.from_card(model.card)

        def batch_fn(run: Model | Engine) -> Callable[[list[Job]], list[Outcome]]:
            return lambda jobs: predict_ink(
                run, [job.snapshot.ink for job in jobs], [job.image for job in jobs]
            )

        self.batcher: MicroBatcher[Job, Outcome] = MicroBatcher(
            batch_fn(engine or model),
            inline_fn=batch_fn(model),
            prepare=_refresh,
            max_batch=max_batch,
            max_wait=max_wait,
            max_queue=max_queue,
            max_cost=max_cost,
            inline_cost=inline_cost,
            on_batch=on_batch,
        )

    def start(self) -> None:
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()

    async def predict(
        self,
        snap: Snapshot,
        refresh: Callable[[Snapshot], Snapshot] | None = None,
        owner: str | None = None,
    ) -> Answer:
        """The Answer for `snap` (or for what `refresh` swaps in when its batch starts);
        empty ink is answered at once, without the model. `owner` (a client address) is
        whose turn it is in the batcher's fair queue; its cost grows with the ink's points.
        Raises ProtocolError(OVERLOADED) when the inference queue is full."""
        if not snap.ink:
            return Answer(snap)
        job = Job(snap, refresh)
        outcome = await self._submit(job, owner, job_cost(sum(map(len, snap.ink))))
        if outcome.error is not None:
            raise ProtocolError(Code.BAD_NUMBER, outcome.error)
        if outcome.probs is None:
            return Answer(job.snapshot)
        return self._answer(job.snapshot, outcome)

    async def predict_image(self, image: Image) -> Answer:
        """The Answer for a ready 28x28 model input, batched with everyone's ink.
        Raises ProtocolError(OVERLOADED) when the inference queue is full."""
        job = Job(Snapshot((), 0, {}, final=True), image=image)
        outcome = await self._submit(job)
        assert outcome.probs is not None
        return self._answer(job.snapshot, outcome)

    def _answer(self, snap: Snapshot, outcome: Outcome) -> Answer:
        assert outcome.probs is not None
        verdict = decide(float(outcome.probs.max()), outcome.not_digit, self.thresholds)
        return Answer(snap, outcome.top, outcome.bbox, outcome.image, verdict)

    async def _submit(self, job: Job, owner: str | None = None, cost: float = 1.0) -> Outcome:
        try:
            return await self.batcher.submit(job, owner, cost)
        except QueueFull:
            raise ProtocolError(Code.OVERLOADED, "server busy: prediction skipped") from None
