"""The one error funnel: any exception -> the wire error, the close code, the metric label
and the log line. Every place that tells a client about a failure goes through `fault`.

Belongs here: that decision, and the few errors the server raises on its own initiative.
The codes themselves are the protocol's (protocol/errors.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from protocol import CloseCode, Code, Error, ProtocolError

log = logging.getLogger("server")


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do about one exception on one connection."""

    error: Error  # the message to send
    close_code: CloseCode | None  # then close with this, or keep the connection
    label: str  # the `code` label of digits_errors_total


def fault(exc: BaseException, seq: int | None = None) -> Fault:
    """Decide, for any exception, what the client is told. A ProtocolError is the client's
    fault: its code and message go out, naming its seq (or `seq`). Anything else is our bug:
    logged with its traceback, and the client learns only `internal`, then 1011."""
    if isinstance(exc, ProtocolError):
        log.debug("client fault %s: %s", exc.code, exc.message)
        error = Error(exc.code, exc.message, exc.seq if exc.seq is not None else seq)
        return Fault(error, exc.close_code, exc.code)
    log.error("internal error", exc_info=exc)
    return Fault(Error(Code.INTERNAL, "internal error", seq), CloseCode.INTERNAL, Code.INTERNAL)


def rate_limited(seq: int | None) -> ProtocolError:
    """A message beyond the rate limit: dropped, the connection goes on."""
    return ProtocolError(Code.RATE_LIMITED, "message rate limit exceeded", seq)


def flooding() -> ProtocolError:
    """Rate limit exceeded for so long that the connection is closed (1008)."""
    text = "message rate limit exceeded; closing"
    return ProtocolError(Code.RATE_LIMITED, text, None, CloseCode.POLICY)


def too_slow() -> ProtocolError:
    """The client stopped reading: what waits unsent for it stayed above the limit."""
    text = "too far behind in reading; reconnect (resume) to catch up"
    return ProtocolError(Code.TOO_SLOW, text)
