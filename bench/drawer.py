"""One simulated person's live updates and their predictions, timed from the start of each
send: shared by bench/load.py and bench/fairness.py."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass, field

from client import Error, Prediction, ServerMessage


@dataclass
class Drawer:
    """One simulated person: when it began sending each update, when each live prediction
    arrived, and errors. Latency runs from the start of the send (what a person sees: on
    loopback the send itself includes waking the server), matched by seq once the level is
    over, so a prediction that arrives before its send has returned still counts."""

    live: int = 0
    errors: int = 0
    sent_at: dict[int, float] = field(default_factory=dict)
    answered_at: dict[int, float] = field(default_factory=dict)

    def on_message(self, msg: ServerMessage, received: float) -> None:
        if isinstance(msg, Error):
            self.errors += 1
        elif isinstance(msg, Prediction) and not msg.final and msg.seq is not None:
            self.live += 1
            self.answered_at.setdefault(msg.seq, received)

    async def send(self, update: Awaitable[int]) -> None:
        """Await a client call that sends an update; note when it began."""
        began = time.perf_counter()
        self.sent_at[await update] = began

    @property
    def latencies(self) -> list[float]:
        return [t - self.sent_at[seq] for seq, t in self.answered_at.items() if seq in self.sent_at]
