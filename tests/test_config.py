"""server/config.py: flags beat DIGITS_* variables, which beat defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import Settings, load_settings
from server.model import DEFAULT_MODEL
from server.verdict import Thresholds


def test_defaults() -> None:
    s = load_settings([], {})
    assert s == Settings()
    assert (s.host, s.port, s.model, s.accelerator) == ("127.0.0.1", 8080, DEFAULT_MODEL, "auto")


def test_flags_override_environment_which_overrides_defaults() -> None:
    env = {"DIGITS_PORT": "7000", "DIGITS_HEARTBEAT_S": "5", "DIGITS_MODEL": "/m.tflite"}
    s = load_settings(["--port", "9000", "--max-connections-per-client", "3"], env)
    assert s.port == 9000 and s.model == Path("/m.tflite")
    assert (s.limits.heartbeat_s, s.limits.max_connections_per_client) == (5.0, 3)


def test_allowed_origins_are_a_comma_list() -> None:
    s = load_settings(["--allowed-origins", "https://a.example, https://b.example"], {})
    assert s.allowed_origins == ("https://a.example", "https://b.example")


@pytest.mark.parametrize("argv", [["--accelerator", "tpu"], ["--port", "70000"]])
def test_bad_values_are_refused(argv: list[str]) -> None:
    with pytest.raises(ValueError):
        load_settings(argv, {})


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Settings().port = 1  # type: ignore[misc]


def test_room_and_resume_settings_are_flags_and_variables() -> None:
    env = {"DIGITS_RESUME_GRACE_S": "5", "DIGITS_MAX_ROOMS": "7", "DIGITS_ROOM_EMPTY_TTL_S": "9"}
    s = load_settings(["--max-members-per-room", "3", "--max-rooms-per-client", "2"], env)
    lim = s.limits
    assert (lim.resume_grace_s, lim.max_rooms, lim.room_empty_ttl_s) == (5.0, 7, 9.0)
    assert (lim.max_members_per_room, lim.max_rooms_per_client) == (3, 2)
    assert Settings().limits.resume_grace_s == 60.0


def test_scaling_settings_are_flags_and_variables() -> None:
    env = {"DIGITS_REDIS": "rediss://:secret@cache.example:6380/2", "DIGITS_WORKERS": "4"}
    s = load_settings(["--redis-prefix", "blue:", "--trusted-proxies", "10.0.0.0/8, ::1"], env)
    assert (s.redis, s.workers, s.redis_prefix) == (env["DIGITS_REDIS"], 4, "blue:")
    assert s.trusted_proxies == ("10.0.0.0/8", "::1")
    assert load_settings(["--allowed-hosts", "a.example,b.example"], {}).allowed_hosts == (
        "a.example",
        "b.example",
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--workers", "2"], "needs --redis"),
        (["--workers", "0"], "at least 1"),
        (["--trusted-proxies", "10.0.0.0/40"], "10.0.0.0/40"),
    ],
)
def test_bad_scaling_settings_are_refused_with_a_reason(argv: list[str], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        load_settings(argv, {})


def test_verdict_thresholds_default_to_the_card_and_are_flags_and_variables() -> None:
    card = {"verdict": {"reject_at": 0.5, "unsure_below": 0.6}}
    assert load_settings([], {}).thresholds(card) == Thresholds(0.5, 0.6)
    s = load_settings(["--reject-at", "0.8"], {"DIGITS_UNSURE_BELOW": "0.3"})
    assert s.thresholds(card) == Thresholds(0.8, 0.3)
    assert load_settings([], {"DIGITS_REJECT_AT": "0.7"}).thresholds({}) == Thresholds(0.7, 0.6)


@pytest.mark.parametrize(
    "argv", [["--reject-at", "0"], ["--reject-at", "1.5"], ["--unsure-below", "2"]]
)
def test_bad_verdict_thresholds_are_refused(argv: list[str]) -> None:
    with pytest.raises(ValueError):
        load_settings(argv, {})


def test_the_event_loop_is_a_setting() -> None:
    assert Settings().event_loop == "auto"
    assert load_settings(["--event-loop", "asyncio"], {}).event_loop == "asyncio"
    assert load_settings([], {"DIGITS_EVENT_LOOP": "uvloop"}).event_loop == "uvloop"
    with pytest.raises(ValueError, match="event_loop"):
        load_settings(["--event-loop", "trio"], {})


def test_the_log_level_is_taken_in_any_case() -> None:
    for given in ("debug", "DEBUG", "Warning"):
        assert load_settings(["--log-level", given], {}).log_level == given  # upper() at use
    assert load_settings([], {"DIGITS_LOG_LEVEL": "error"}).log_level == "error"
    with pytest.raises(ValueError, match="log_level must be one of debug, info"):
        load_settings(["--log-level", "loud"], {})
