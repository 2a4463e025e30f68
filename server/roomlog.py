"""A room's log: the operations that change a shared canvas, in the one order every process
applies them, and their bytes in the store (a Redis stream entry, see docs/SCALING.md); and
the answers the room's predictor publishes, as bytes.

Belongs here: the operations, their encoding, and replaying them onto a canvas. Pure: no
I/O, no clock. Replaying the same log onto an empty canvas gives the same canvas on every
process (server/canvas.py is deterministic); an operation the canvas refuses is refused
alike everywhere, and so changes nothing anywhere.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import msgpack

from protocol import (
    Clear,
    Code,
    End,
    Guess,
    Ink,
    PointsMsg,
    ProtocolError,
    RoomStroke,
    Start,
    Undo,
)
from protocol.messages import Points
from server.canvas import Canvas, Drawer, Event, InkLimits, Role, Snapshot
from server.recognizer import Answer, preview_bytes

SEED, JOIN, LEAVE, LIFT, INK = "seed", "join", "leave", "lift", "ink"
_INK_TYPES: dict[str, type[Ink]] = {
    "start": Start,
    "points": PointsMsg,
    "end": End,
    "undo": Undo,
    "clear": Clear,
}
_INK_NAMES = {cls: name for name, cls in _INK_TYPES.items()}


@dataclass(frozen=True, slots=True)
class Op:
    """One change of a shared canvas by `member`. `nonce` lets the process that wrote it
    recognise it when it comes back from the log."""

    kind: str  # seed | join | leave | lift | ink
    member: str
    role: str = ""  # join: draw | watch
    seq: int | None = None  # join, leave: the member's message
    ink: Ink | None = None  # ink: start | points | end | undo | clear
    seed: dict[str, Any] | None = None  # seed: the canvas as it was shared
    nonce: str = ""


def _points(raw: Any) -> Points:
    return tuple(tuple(p) for p in raw)


def dump(op: Op) -> bytes:
    """The op as msgpack bytes (one stream entry)."""
    body: dict[str, Any] = {"k": op.kind, "m": op.member, "n": op.nonce}
    if op.role:
        body["r"] = op.role
    if op.seq is not None:
        body["s"] = op.seq
    if op.ink is not None:
        body["t"] = _INK_NAMES[type(op.ink)]
        body["s"] = op.ink.seq
        if isinstance(op.ink, Start | PointsMsg | End):
            body["p"] = op.ink.points
    if op.seed is not None:
        body["c"] = op.seed
    data: bytes = msgpack.packb(body)
    return data


def load(data: bytes) -> Op:
    """An op from its bytes (written by `dump`, so trusted: the writer validated it)."""
    body = msgpack.unpackb(data, raw=False)
    ink: Ink | None = None
    if "t" in body:
        cls, seq = _INK_TYPES[body["t"]], body.get("s")
        with_points = cls in (Start, PointsMsg, End)
        args = (_points(body.get("p", ())), seq) if with_points else (seq,)
        ink = cls(*args)
    seq = None if ink is not None else body.get("s")
    return Op(body["k"], body["m"], body.get("r", ""), seq, ink, body.get("c"), body.get("n", ""))


# ---- the canvas as a seed -----------------------------------------------------------------


def seed_of(canvas: Canvas) -> dict[str, Any]:
    """Everything a canvas holds, as plain values (the first entry of a room's log, and a
    parked solo session's ink)."""
    return {
        "room": canvas.room,
        "strokes": [[s.id, s.author, s.points, s.open] for s in canvas.strokes],
        "members": [[m, d.role.value, d.stroke, d.seq] for m, d in canvas.members.items()],
        "points": canvas.points,
        "version": canvas.version,
        "next": canvas._next_id,
    }


def canvas_of(seed: dict[str, Any], limits: InkLimits) -> Canvas:
    """The canvas a seed describes."""
    canvas = Canvas(limits, seed["room"])
    canvas.strokes = [RoomStroke(i, a, _points(p), bool(o)) for i, a, p, o in seed["strokes"]]
    canvas.members = {m: Drawer(Role(r), stroke, seq) for m, r, stroke, seq in seed["members"]}
    canvas.points, canvas.version, canvas._next_id = seed["points"], seed["version"], seed["next"]
    return canvas


# ---- applying -------------------------------------------------------------------------------


def apply(canvas: Canvas, op: Op) -> list[Event]:
    """Apply `op` to `canvas` (not a seed): the events for the room. Raises ProtocolError,
    changing nothing, where the canvas refuses it. A leave or lift of someone who is no
    longer a member changes nothing (it was forgotten already)."""
    if op.kind == JOIN:
        return canvas.add(op.member, Role(op.role), op.seq)
    if op.member not in canvas.members:
        if op.kind == INK:
            seq = op.ink.seq if op.ink is not None else None
            raise ProtocolError(Code.NOT_IN_ROOM, "not in the shared session any more", seq)
        return []
    if op.kind == LEAVE:
        return canvas.remove(op.member)
    if op.kind == LIFT:
        return canvas.lift(op.member)
    assert op.ink is not None
    return canvas.apply(op.member, op.ink)


def replay(room: str, entries: list[tuple[str, bytes]], limits: InkLimits) -> Canvas:
    """A room's canvas from its log, entries (id, bytes) in log order. The log starts with a
    seed; a compacted log holds a newer seed, the canvas as of the entry it names (`at`), and
    every entry after that one, some of them before the seed (see `compacted`)."""
    ops = [(entry_id, load(data)) for entry_id, data in entries]
    last = max((i for i, (_, op) in enumerate(ops) if op.kind == SEED), default=None)
    canvas, at = Canvas(limits, room), (0, 0)
    if last is not None:
        seed = ops[last][1].seed
        assert seed is not None
        canvas = canvas_of({**seed, "room": room}, limits)
        at = entry_key(seed.get("at", "0-0"))
    for entry_id, op in ops:
        if op.kind != SEED and entry_key(entry_id) > at:
            with contextlib.suppress(ProtocolError):  # refused alike on every process
                apply(canvas, op)
    return canvas


def compacted(canvas: Canvas, at: str) -> bytes:
    """A seed entry: `canvas` as it is once the log entry `at` is applied. Appended to the
    log, it lets the entries up to `at` be trimmed (`replay` starts from it)."""
    return dump(Op(SEED, "", seed={**seed_of(canvas), "at": at}))


def entry_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id ("ms-n") as numbers, in the log's order."""
    ms, _, n = entry_id.partition("-")
    return int(ms), int(n or 0)


# ---- answers --------------------------------------------------------------------------------


def dump_answer(answer: Answer, process: str) -> bytes:
    """What the members of other processes need of an answer made by `process`: everything
    a prediction message says (the model input as preview bytes), not the ink itself."""
    snap = answer.snapshot
    body: dict[str, Any] = {
        "w": process,
        "v": snap.version,
        "s": snap.seqs,
        "n": len(snap.ink),
    }
    if snap.final:
        body["f"], body["a"] = True, snap.asker
    if answer.top:
        body["t"] = [[g.digit, g.p] for g in answer.top]
        body["b"], body["d"] = answer.bbox, answer.verdict
        preview = answer._preview
        if preview is None and answer.image is not None:
            preview = preview_bytes(answer.image)
        body["i"] = preview
    data: bytes = msgpack.packb(body)
    return data


def load_answer(data: bytes) -> tuple[str, Answer]:
    """(the process that made it, the answer) from `dump_answer`'s bytes. The snapshot
    carries the number of strokes, not their points."""
    body = msgpack.unpackb(data, raw=False)
    empty: tuple[Points, ...] = ((),) * body["n"]
    snap = Snapshot(empty, body["v"], body["s"], body.get("f", False), body.get("a"))
    top = tuple(Guess(d, p) for d, p in body.get("t", ()))
    bbox = tuple(body["b"]) if body.get("b") is not None else None
    answer = Answer(snap, top, bbox, None, body.get("d"), body.get("i"))
    return body["w"], answer
