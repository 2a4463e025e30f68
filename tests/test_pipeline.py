"""server/pipeline.py: coalescing with literal snapshots (S("v1") stands for some ink)."""

from __future__ import annotations

from dataclasses import dataclass

from server.pipeline import Pipeline


@dataclass(frozen=True)
class S:
    ink: str
    final: bool = False

    def __eq__(self, other: object) -> bool:  # compare with the ink's name
        return self.ink == (other.ink if isinstance(other, S) else other)

    def __hash__(self) -> int:
        return hash(self.ink)


class Ink:
    """A canvas stand-in: `now` is the newest ink."""

    def __init__(self) -> None:
        self.now = "v0"

    def pipeline(self) -> Pipeline[S]:
        return Pipeline(lambda: S(self.now))


def test_one_job_in_flight_and_changes_meanwhile_coalesce_into_one() -> None:
    ink = Ink()
    pipe = ink.pipeline()
    ink.now = "v1"
    assert pipe.changed() == "v1" and pipe.busy
    for version in ("v2", "v3", "v4"):
        ink.now = version
        assert pipe.changed() is None  # in flight: only dirty
    assert pipe.dirty
    assert pipe.done() == "v4"  # one job of the newest ink
    assert pipe.done() is None and not pipe.busy and not pipe.dirty


def test_each_recognize_gets_its_own_final_of_the_ink_as_it_was() -> None:
    """start, end, recognize(3), recognize(4), clear(5) back to back: the live job in
    flight, then two finals of the drawn ink, then the empty ink."""
    ink = Ink()
    pipe = ink.pipeline()
    ink.now = "start"
    assert pipe.changed() == "start"
    ink.now = "end"
    assert pipe.changed() is None
    assert pipe.final(S("final@3", True)) is None and not pipe.dirty  # the final covers "end"
    assert pipe.final(S("final@4", True)) is None
    ink.now = "cleared"
    assert pipe.changed() is None
    assert pipe.refresh(S("start")) == "start"  # finals wait: no late binding
    assert [pipe.done(), pipe.done(), pipe.done(), pipe.done()] == [
        "final@3",
        "final@4",
        "cleared",
        None,
    ]


def test_a_queued_live_job_takes_the_newest_ink_as_it_leaves_the_queue() -> None:
    ink = Ink()
    pipe = ink.pipeline()
    ink.now = "v1"
    queued = pipe.changed()
    assert queued is not None and queued == "v1"
    ink.now = "v2"
    pipe.changed()
    assert pipe.refresh(queued) == "v2" and not pipe.dirty
    assert pipe.done() is None  # v2 is what was predicted: nothing more to do
    assert pipe.refresh(S("v2")) == "v2"  # clean: stays


def test_a_final_is_never_swapped() -> None:
    ink = Ink()
    pipe = ink.pipeline()
    assert pipe.final(S("final@1", True)) == "final@1"
    ink.now = "v2"
    pipe.changed()
    assert pipe.refresh(S("final@1", True)) == "final@1" and pipe.dirty
    assert pipe.done() == "v2"


def test_reset_forgets_everything() -> None:
    ink = Ink()
    pipe = ink.pipeline()
    pipe.changed()
    pipe.final(S("f", True))
    pipe.changed()
    pipe.reset()
    assert (pipe.busy, pipe.dirty, list(pipe.finals)) == (False, False, [])
    assert pipe.done() is None
