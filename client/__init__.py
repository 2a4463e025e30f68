"""Python client for the digits-live server.

import asyncio
from client import connect

async def main() -> None:
    async with connect("ws://127.0.0.1:8080/ws", top_k=3) as digits:
        prediction = await digits.draw([[[0, 0], [0, 40]]])  # one stroke: a "1"
        print(prediction.top[0].digit, prediction.top[0].p)

asyncio.run(main())
"""

from client.client import (
    ConnectionClosed,
    DigitsClient,
    DigitsClientError,
    JoinRefused,
    ServerError,
    connect,
)
from server.protocol import Error, Guess, Pong, Prediction, ServerMessage, Welcome

__all__ = [
    "ConnectionClosed",
    "DigitsClient",
    "DigitsClientError",
    "Error",
    "Guess",
    "JoinRefused",
    "Pong",
    "Prediction",
    "ServerError",
    "ServerMessage",
    "Welcome",
    "connect",
]
