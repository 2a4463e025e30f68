"""Server settings: one frozen object built from defaults, DIGITS_* variables and flags.

Belongs here: every tunable and its default. Precedence: command-line flag, then the
environment variable DIGITS_<NAME> (e.g. DIGITS_PORT, DIGITS_MAX_CONNECTIONS), then default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import Limits
from server.forwarding import networks
from server.model import DEFAULT_MODEL, Accelerator
from server.verdict import Thresholds

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
ACCELERATORS = ("auto", "cpu", "gpu")
EVENT_LOOPS = ("auto", "asyncio", "uvloop")
INFERENCE = ("auto", "thread", "process")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")  # in any case: --log-level debug

_HELP = {
    "host": "address to listen on",
    "port": "TCP port (0 picks a free one)",
    "model": "the .tflite model (its .json card must sit beside it)",
    "accelerator": "auto | cpu | gpu",
    "threads": "TFLite interpreter threads",
    "inference": "where batches are rasterized and scored: process (a process of its own, "
    "so the event loop keeps its core), thread (in the server process), or auto (process "
    "when the machine has more cores than --workers)",
    "reject_at": "verdict not_digit once P(not a digit) reaches this (negative: the model card's)",
    "unsure_below": "verdict unsure while the top digit's probability is below this "
    "(negative: the model card's)",
    "web_dir": "directory of static files served at /",
    "event_loop": "auto (uvloop where installed, else asyncio's) | asyncio | uvloop",
    "log_level": "debug | info | warning | error (any case)",
    "allowed_origins": "browser origins allowed on /ws (comma-separated; none = same origin; *)",
    "trusted_proxies": "proxy addresses or networks (comma-separated CIDRs) whose "
    "X-Forwarded-For/-Host/-Proto are believed; from anyone else they are ignored",
    "allowed_hosts": "Host names this server answers to (comma-separated; none = the bound "
    "address, localhost and the machine's names; *); IP addresses and localhost always",
    "redis": "Redis URL of the shared store (redis:// or rediss://, password and database "
    "in the URL); none = rooms in this process's memory",
    "redis_prefix": "prefix of every Redis key of this server",
    "workers": "server processes on one port (SO_REUSEPORT); more than 1 needs --redis",
    "batch_max": "largest inference batch",
    "batch_wait_ms": "longest wait for a batch to fill, from its first item",
    "queue_max": "most snapshots queued for inference before clients get 'overloaded'",
    "send_buffer_bytes": "unsent bytes beyond which live predictions wait (see too_slow)",
    "max_body_bytes": "largest HTTP request body accepted by /v1/recognize (larger: 413)",
    "max_json_bytes": "largest JSON body (strokes) accepted by /v1/recognize (larger: 413)",
    "max_image_pixels": "most pixels (width x height) of one image, checked before decoding",
    "max_items_per_request": "most drawings or images in one /v1/recognize request",
    "max_frame_bytes": "largest WebSocket frame accepted (larger: close 1009)",
    "max_points_per_message": "points in one start/points/end message",
    "max_points_per_session": "points in one session's ink",
    "max_strokes_per_session": "strokes in one session's ink",
    "max_coordinate": "largest |x| or |y| of a point",
    "messages_per_second": "token-bucket refill rate per connection",
    "message_burst": "token-bucket size per connection",
    "points_per_second": "ink points per second per connection; beyond, reading waits",
    "points_burst": "ink points a connection may send at once",
    "points_per_second_per_client": "ink points per second of all connections of one "
    "client IP address together; beyond, reading waits",
    "points_burst_per_client": "ink points one client IP address may send at once",
    "max_connections": "open WebSockets in total (beyond: close 1013)",
    "max_connections_per_client": "open WebSockets per client IP address (beyond: close 1013)",
    "idle_timeout_s": "close a connection silent this long",
    "hello_timeout_s": "close a connection that has not sent hello this long after connecting",
    "heartbeat_s": "WebSocket ping interval; a peer not answering within half is dropped",
    "max_members_per_room": "members (drawers and watchers) in one shared session",
    "max_rooms": "shared sessions on the server at once",
    "max_rooms_per_client": "shared sessions created from one client IP address, alive at once",
    "room_empty_ttl_s": "a shared session empty this long is gone, tokens and all",
    "resume_grace_s": "how long a dropped session waits for its resume token",
    "room_predictions_per_second": "most live predictions a shared session makes per second "
    "(0: no limit; solo drawings are never paced)",
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server can be told. `limits` is announced to every client."""

    host: str = "127.0.0.1"
    port: int = 8080
    model: Path = DEFAULT_MODEL
    accelerator: Accelerator = "auto"
    threads: int = 1
    inference: str = "auto"
    reject_at: float = -1.0  # negative: the model card's value
    unsure_below: float = -1.0  # negative: the model card's value
    web_dir: Path = WEB_DIR
    log_level: str = "INFO"
    event_loop: str = "auto"
    allowed_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    redis: str = ""
    redis_prefix: str = "digits:"
    workers: int = 1
    batch_max: int = 64
    batch_wait_ms: float = (
        0.0  # greedy, as Triton by default: what queues during a batch forms the next
    )
    queue_max: int = 4096
    max_body_bytes: int = 8 * 2**20
    #: JSON is parsed holding the GIL (~50 ms per MiB here): bodies stay small, and each one
    #: is paid for from its address's points budget (server/http_api.py).
    max_json_bytes: int = 2**20
    max_image_pixels: int = 16_000_000
    max_items_per_request: int = 64
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if self.accelerator not in ACCELERATORS:
            raise ValueError(f"accelerator must be one of {', '.join(ACCELERATORS)}")
        if self.inference not in INFERENCE:
            raise ValueError(f"inference must be one of {', '.join(INFERENCE)}")
        if self.event_loop not in EVENT_LOOPS:
            raise ValueError(f"event_loop must be one of {', '.join(EVENT_LOOPS)}")
        if self.log_level.upper() not in LOG_LEVELS:  # logging would fail with a traceback
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS).lower()}")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be 0..65535")
        networks(self.trusted_proxies)  # ValueError names a bad one
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.workers > 1 and not self.redis:
            raise ValueError(
                "--workers above 1 needs --redis (DIGITS_REDIS): the processes share rooms "
                "and sessions through Redis"
            )
        if self.reject_at > 1 or self.unsure_below > 1:
            raise ValueError("reject_at and unsure_below are probabilities (at most 1)")
        if self.reject_at == 0:
            raise ValueError("reject_at must be above 0 (0 would reject everything)")

    def offload(self, cores: int) -> bool:
        """Whether batches run in a process of their own on a machine with `cores` cores."""
        return self.inference == "process" or (self.inference == "auto" and cores > self.workers)

    def thresholds(self, card: Mapping[str, Any]) -> Thresholds:
        """The verdict thresholds: these settings where given, else the model card's."""
        return Thresholds.from_card(
            card,
            self.reject_at if self.reject_at >= 0 else None,
            self.unsure_below if self.unsure_below >= 0 else None,
        )


def _convert(kind: type, raw: str) -> Any:
    if kind is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if kind is bool:
        return raw.lower() in ("1", "true", "yes", "on")
    return kind(raw)


def _options() -> list[tuple[str, type, Any, bool]]:
    """(name, type, default, is_limit) for every setting."""
    out = []
    for defaults, is_limit in ((Settings(), False), (Limits(), True)):
        for f in dataclasses.fields(defaults):
            if f.name != "limits":
                default = getattr(defaults, f.name)
                out.append((f.name, type(default), default, is_limit))
    return out


def _converter(kind: type) -> Callable[[str], Any]:
    return lambda raw: _convert(kind, raw)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="digits-server",
        description="Live handwritten-digit recognition over WebSocket.",
        epilog="Every flag has an environment variable DIGITS_<FLAG>, e.g. DIGITS_PORT=9000.",
    )
    for name, kind, default, _ in _options():
        shown = ",".join(default) if kind is tuple else default
        help_text = _HELP.get(name, "limit announced to clients") + f" (default: {shown})"
        p.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=_converter(kind),
            default=None,
            help=help_text,
        )
    return p


def load_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from flags (argv), then DIGITS_* variables (environ), then defaults."""
    args = vars(parser().parse_args(argv))
    env = os.environ if environ is None else environ
    top: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    for name, kind, _, is_limit in _options():
        value = args.get(name)
        raw = env.get("DIGITS_" + name.upper())
        if value is None and raw is not None:
            value = _convert(kind, raw)
        if value is not None:
            (limits if is_limit else top)[name] = value
    return Settings(**top, limits=Limits(**limits))
