"""Python client for the digits-live server.

import asyncio
from client import connect

async def main() -> None:
    async with connect("ws://127.0.0.1:8080/ws", top_k=3) as digits:
        prediction = await digits.draw([[[0, 0], [0, 40]]])  # one stroke: a "1"
        print(prediction.top[0].digit, prediction.top[0].p)

asyncio.run(main())

Shared sessions: `shared = await digits.share()` gives a room and two tokens; another client
`await other.join(shared.room, shared.watch_token)` gets the room's state (`Joined`), then
the live stream (`StrokeEvent`, `Presence`, `Prediction`, ...) through `async for`.
Resuming: `connect(url, resume=old_welcome.resume_token)`; `client.welcome.resumed` says
whether the old session came back.
"""

from client.client import (
    ConnectionClosed,
    DigitsClient,
    DigitsClientError,
    JoinRefused,
    ServerError,
    connect,
)
from protocol import (
    Cleared,
    Error,
    Guess,
    Joined,
    Left,
    Pong,
    Prediction,
    Presence,
    ServerMessage,
    Shared,
    StrokeEvent,
    Undone,
    Welcome,
)

__all__ = [
    "Cleared",
    "ConnectionClosed",
    "DigitsClient",
    "DigitsClientError",
    "Error",
    "Guess",
    "JoinRefused",
    "Joined",
    "Left",
    "Pong",
    "Prediction",
    "Presence",
    "ServerError",
    "ServerMessage",
    "Shared",
    "StrokeEvent",
    "Undone",
    "Welcome",
    "connect",
]
