"""A canvas at run time, solo or shared: its members' live connections, its prediction
pipeline driven by one task, and fan-out to the members in one order.

Belongs here: carrying out what server/canvas.py and server/pipeline.py decide, on live
connections (`Endpoint`). Knows asyncio, not aiohttp; decides nothing about ink.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from protocol import Code, Ink, Prediction, ProtocolError, ServerMessage, StrokeEvent
from server import roomlog
from server.canvas import Canvas, Event, Snapshot
from server.metrics import Metrics
from server.pipeline import Pipeline
from server.recognizer import Answer, Recognizer

MAX_FINALS = 32  # recognize answers waiting per drawing (one per member of a full room, twice)


class Endpoint(Protocol):
    """A member's live connection, as a drawing sees it."""

    @property
    def top_k(self) -> int: ...

    @property
    def preview(self) -> bool: ...

    @property
    def address(self) -> str:
        """The client's address: whose share of inference this member's drawing uses."""

    async def send(self, msg: ServerMessage) -> None:
        """Send a message that is never dropped (or give up on a client not reading)."""

    async def offer(self, prediction: Prediction) -> None:
        """Send a live prediction, or hold it while the client is behind (a newer one
        replaces it)."""

    async def fail(self, exc: BaseException, seq: int | None = None) -> bool:
        """Tell the client about `exc` through the error funnel."""


class Drawing:
    """One canvas with its pipeline and its members' connections."""

    def __init__(
        self,
        canvas: Canvas,
        recognizer: Recognizer,
        metrics: Metrics,
        clock: Callable[[], float] = time.perf_counter,
        room_rate: float = 0.0,
    ) -> None:
        self.canvas, self.recognizer, self.metrics, self.clock = canvas, recognizer, metrics, clock
        # As a room, at most `room_rate` live predictions a second (0: as fast as the model
        # goes); each goes to every member and, on many processes, through Redis.
        self.room_interval = 1.0 / room_rate if room_rate > 0 else 0.0
        self._final_due = asyncio.Event()  # a recognize cuts a pause short
        self.pipeline: Pipeline[Snapshot] = Pipeline(canvas.snapshot)
        self.online: dict[str, Endpoint] = {}
        self._since: dict[str, int] = {}  # member -> canvas version of the state it was shown
        self._changed_at: dict[int, float] = {0: clock()}  # canvas version -> when it came
        self._lock = asyncio.Lock()  # held while sending to members: one order for all
        self._task: asyncio.Task[None] | None = None
        # A shared room on many processes (server/hub.py): only its predictor process runs
        # the model on live ink and hands each answer to `on_answer` to publish; the others
        # `forward` what it published. Solo drawings and in-memory rooms always predict.
        self.predicts = True
        self.on_answer: Callable[[Answer], None] | None = None
        self.on_recognize: Callable[[str, int | None], None] | None = None  # then `final`

    @property
    def room(self) -> str | None:
        return self.canvas.room

    # ---- messages of members ------------------------------------------------------------

    async def draw(self, member: str, msg: Ink) -> None:
        """An ink message: change the canvas, tell the others, predict the new ink."""
        events = self.canvas.apply(member, msg)
        self._changed_at[self.canvas.version] = self.clock()
        if events:
            await self.publish(events)
        self.touch()

    async def apply(self, op: roomlog.Op, local: bool) -> Canvas | None:
        """One operation of a room's log, in log order (server/roomlog.py): change the
        canvas, tell the online members, predict. `local`: its author is served here and
        waits for it. A local member's leave returns the copy of the ink it takes along.
        Raises ProtocolError, changing nothing, where the canvas refuses it."""
        copy = None
        if op.kind == roomlog.LEAVE and local and op.member in self.canvas.members:
            copy = self.canvas.copy_for(op.member, op.seq)
        events = roomlog.apply(self.canvas, op)
        if op.kind == roomlog.INK:
            self._changed_at[self.canvas.version] = self.clock()
        elif op.kind == roomlog.LEAVE:
            self.detach(op.member)
        await self.publish(events)
        if op.kind == roomlog.INK or (op.kind == roomlog.JOIN and not local):
            self.touch()  # a local joiner's first prediction follows its joined state
        return copy

    def recognize(self, member: str, seq: int | None) -> None:
        """A final answer of the ink as it is now, for `member` only (in a shared room on
        many processes, `on_recognize` first waits for the member's ink on its way). Raises
        ProtocolError(OVERLOADED), changing nothing, while MAX_FINALS already wait."""
        if len(self.pipeline.finals) >= MAX_FINALS:  # what waits is memory: bounded
            raise ProtocolError(Code.OVERLOADED, "too many recognize waiting; try again", seq)
        if self.on_recognize is not None:
            self.on_recognize(member, seq)
        else:
            self.final(member, seq)

    def final(self, member: str, seq: int | None) -> None:
        self.canvas.see(member, seq)
        self._final_due.set()
        self._run(self.pipeline.final(self.canvas.snapshot(final=True, asker=member)))

    def touch(self) -> None:
        """Predict the ink (it changed, or a member needs to see it)."""
        if self.predicts:
            self._run(self.pipeline.changed())

    # ---- members' connections -----------------------------------------------------------

    def attach(self, member: str, ep: Endpoint) -> None:
        """`ep` receives this drawing's messages from now on; predictions of ink older than
        the state it is about to be shown are not sent to it."""
        self.online[member] = ep
        self._since[member] = self.canvas.version

    def detach(self, member: str, ep: Endpoint | None = None) -> None:
        """The member's connection is gone (only if it is `ep`, when given). With nobody
        left online, the pipeline stops: the next member to come back predicts again."""
        if ep is not None and self.online.get(member) is not ep:
            return
        self.online.pop(member, None)
        self._since.pop(member, None)
        if not self.online:
            self.halt()

    def halt(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.pipeline.reset()

    async def settled(self) -> None:
        """Wait until the pipeline has nothing in flight."""
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})

    async def stop(self) -> None:
        task, self._task = self._task, None
        self.pipeline.reset()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def admit(
        self, member: str, ep: Endpoint, state: ServerMessage, events: Sequence[Event] = ()
    ) -> None:
        """`ep` comes online with `state` (joined) first, the others are told `events`;
        nothing the room sends can come between."""
        async with self._lock:
            self.attach(member, ep)
            await ep.send(state)
            await self._fan_out(events, skip=member)

    async def publish(self, events: Sequence[Event]) -> None:
        """Room events to every online member, in member order (a stroke not to its author)."""
        if events and self.online:
            async with self._lock:
                await self._fan_out(events)

    async def _fan_out(self, events: Sequence[Event], skip: str | None = None) -> None:
        for member in list(self.canvas.members):
            ep = self.online.get(member)
            if ep is None or member == skip:
                continue
            for event in events:
                if not (isinstance(event, StrokeEvent) and event.author == member):
                    await ep.send(event)

    async def tell(self, ep: Endpoint, msg: ServerMessage) -> None:
        """One member's answer, in order with the room's messages."""
        async with self._lock:
            await ep.send(msg)

    # ---- predictions --------------------------------------------------------------------

    def _run(self, job: Snapshot | None) -> None:
        if job is not None:
            self._task = asyncio.create_task(self._predict(job))

    async def _predict(self, job: Snapshot | None) -> None:
        """Predict jobs until the pipeline has none: the one place predictions are made."""
        while job is not None:
            began = asyncio.get_running_loop().time()
            try:
                owner = next((ep.address for ep in self.online.values()), None)
                answer = await self.recognizer.predict(job, self.pipeline.refresh, owner)
                await self._deliver(answer)
            except Exception as exc:  # every failure goes to the funnel; the pipeline goes on
                await self._failed(job, exc)
            if not job.final and self.room is not None and self.room_interval:
                await self._pause(began + self.room_interval)
            job = self.pipeline.done()

    async def _pause(self, until: float) -> None:
        """A room's next live prediction waits until `until` (ink meanwhile coalesces into
        it, the pipeline being busy); a recognize does not wait."""
        rest = until - asyncio.get_running_loop().time()
        if rest <= 0 or self.pipeline.finals:
            return
        self._final_due.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._final_due.wait(), rest)

    async def _deliver(self, answer: Answer) -> None:
        snap = answer.snapshot
        self.metrics.latency.observe(self.clock() - self._stamp(snap.version))
        await self._send(answer)
        if self.on_answer is not None:
            self.on_answer(answer)

    async def forward(self, answer: Answer) -> None:
        """An answer another process made of this room's ink (its predictor's, or a final
        answer asked there), sent to the members here as if made here."""
        self._stamp(answer.snapshot.version)
        await self._send(answer)

    async def _send(self, answer: Answer) -> None:
        snap = answer.snapshot
        async with self._lock:
            for member, ep in list(self.online.items()):
                prediction = answer.for_member(member, ep.top_k, ep.preview)
                if snap.final and member == snap.asker:
                    await ep.send(prediction)  # the answer to its recognize: never dropped
                elif snap.final:  # everyone sees the final answer; it answers none of theirs
                    await ep.offer(dataclasses.replace(prediction, seq=None))
                elif self._since.get(member, 0) <= snap.version:
                    await ep.offer(prediction)

    async def _failed(self, job: Snapshot, exc: Exception) -> None:
        """A prediction failed: the asker (final) or every member (live) is told."""
        targets = [job.asker or ""] if job.final else list(self.online)
        for member in targets:
            ep = self.online.get(member)
            if ep is not None:
                await ep.fail(exc, job.seq(member))

    def _stamp(self, version: int) -> float:
        """When the canvas reached `version`; older stamps are forgotten."""
        stamp = self._changed_at.get(version, self.clock())
        for old in [v for v in self._changed_at if v < version]:
            del self._changed_at[old]
        return stamp
