"""Shared pieces of the browser tests (tests/test_browser.py, tests/test_page.py): a real server
process on a loopback port, real headless Chromium through Playwright, a tab on the drawing page
with helpers that draw and read what it shows, and UNIPEN digits the shipped model reads right.

The fixtures live in tests/conftest.py. The page is opened in test mode (`?test`), which gives
the tests `window.digits`; a page opened without it has no test hooks.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from convert.data import UNIPEN_FILE, StrokeSample, load_strokes
from server.model import DEFAULT_MODEL, load_model
from server.raster import rasterize

REPO = Path(__file__).resolve().parent.parent
SCREENSHOT = REPO / "docs" / "screenshot.png"
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"  # `make install` runs `npm ci`
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"viewport": {"width": 1280, "height": 800}, "device_scale_factor": 2}
NO_GUESS = "\u2013"  # the en dash the page shows instead of a digit
WAIT_MS = 15_000  # generous: a prediction normally shows within a frame or two

Strokes = Sequence[Sequence[Sequence[float]]]


def launch_chromium() -> Iterator[Any]:
    """Headless Chromium, or a skip where it is missing (never in CI: `make test` installs it)."""
    if os.environ.get("CI") and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing in CI: `make test` installs it")
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (make test installs it)")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def with_test_mode(url: str) -> str:
    """`url` with the page's test switch (`?test`) in its query, before any fragment."""
    base, hash_, fragment = url.partition("#")
    if "test" in base.partition("?")[2].split("&"):
        return url
    return f"{base}{'&' if '?' in base else '?'}test{hash_}{fragment}"


# ---- choosing digits the model reads correctly ---------------------------------------------


@dataclass(frozen=True)
class Samples:
    clear: dict[int, StrokeSample]  # per digit, one the model reads with high confidence
    two_part: StrokeSample  # two strokes; the first alone reads as another digit


def choose_samples() -> Samples:
    """Clearly drawn UNIPEN dev digits, chosen in file order by what the shipped model says,
    so the page is tested on ink the model itself gets right."""
    model = load_model(DEFAULT_MODEL, "cpu")
    everything = load_strokes(UNIPEN_FILE)

    def confident(strokes: Strokes) -> tuple[int, float]:
        image = rasterize(strokes)
        assert image is not None
        probs = model.predict_batch(image[None])[0]
        return int(probs.argmax()), float(probs.max())

    clear: dict[int, StrokeSample] = {}
    two_part = None
    for sample in everything[::7]:
        label = sample.label
        if label is None or (label in clear and two_part is not None):
            continue
        digit, p = confident(sample.strokes)
        if digit != label or p < 0.98:
            continue
        clear.setdefault(label, sample)
        if two_part is None and len(sample.strokes) == 2 and len(sample.strokes[1]) >= 3:
            first, q = confident(sample.strokes[:1])
            if first != label and q >= 0.9:
                two_part = sample
        if len(clear) == 10 and two_part is not None:
            break
    assert len(clear) == 10 and two_part is not None
    return Samples(clear, two_part)


# ---- the server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`python -m server` on a loopback port, stoppable and restartable on the same port."""

    def __init__(self, log_path: Path, *flags: str) -> None:
        self.flags = ("--host=127.0.0.1", *flags)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server", *self.flags, f"--port={self.port}"],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)  # polling a process that is starting up: no event to wait on
        self.stop()
        raise RuntimeError(f"server not ready in 60 s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


# ---- the browser -----------------------------------------------------------------------------

#: A JS expression: how many device pixels of the drawing pad carry ink.
INK_AMOUNT = """(() => {
  const c = document.getElementById('pad');
  const a = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < a.length; i += 4) if (a[i] > 0) n++;
  return n;
})()"""


class Page:
    """One browser tab on the drawing page, with helpers that draw and read what it shows."""

    def __init__(self, page: Any, errors: list[str]) -> None:
        self.page = page
        self.errors = errors

    def open(self, url: str) -> None:
        self.page.goto(with_test_mode(url))
        self.wait_connected()

    def wait_connected(self) -> None:
        self.page.wait_for_selector('#conn[data-state="open"]', timeout=WAIT_MS)

    def wait(self, js: str, arg: Any = None) -> None:
        self.page.wait_for_function(js, arg=arg, timeout=WAIT_MS)

    def js(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    def shown(self) -> dict[str, Any]:
        """What the prediction panel shows right now."""
        result: dict[str, Any] = self.page.evaluate(
            """() => {
              const r = document.getElementById('result');
              return {
                state: r.dataset.state,
                count: Number(r.dataset.count),
                digit: document.getElementById('digit').textContent,
                verdict: document.getElementById('verdict').textContent,
                bars: [...document.querySelectorAll('#bars li')].map(
                  li => li.getAttribute('aria-label')),
                announced: document.getElementById('announce').textContent,
              };
            }"""
        )
        return result

    def wait_count_above(self, count: int) -> None:
        self.wait("n => Number(document.getElementById('result').dataset.count) > n", count)

    def wait_state(self, state: str) -> None:
        self.wait("s => document.getElementById('result').dataset.state === s", state)

    def wait_settled(self) -> dict[str, Any]:
        """The prediction once the server has answered for everything sent so far."""
        self.wait(
            "() => window.digits.conn.seq > 0 && window.digits.debug.lastPredictionSeq"
            " === window.digits.conn.seq"
        )
        return self.shown()

    def recognize(self) -> dict[str, Any]:
        self.page.keyboard.press("Enter")
        self.wait_state("final")
        return self.shown()

    def shows_digit(self, digit: int) -> None:
        self.wait("d => document.getElementById('digit').textContent === d", str(digit))

    def canvas_pixels(self) -> str:
        """The drawing as a data URL (device pixels), to compare drawings."""
        url: str = self.page.evaluate("() => document.getElementById('pad').toDataURL()")
        return url

    def ink_amount(self) -> int:
        """How many device pixels of the drawing pad carry ink."""
        amount: int = self.page.evaluate(f"() => {INK_AMOUNT}")
        return amount

    def wait_ink(self, present: bool) -> None:
        """Until the pad shows ink (or none): it is painted at the next animation frame
        after the ink changed, so a test reads it once it is there."""
        self.wait(f"p => ({INK_AMOUNT} > 0) === p", present)

    def to_screen(
        self, strokes: Strokes, frame: Strokes | None = None
    ) -> list[list[tuple[float, float]]]:
        """Strokes in page coordinates, scaled so that `frame` (default: the strokes
        themselves) fills the middle 70% of the drawing pad."""
        box = self.page.locator("#pad").bounding_box()
        xs = [p[0] for s in frame or strokes for p in s]
        ys = [p[1] for s in frame or strokes for p in s]
        span = max(max(xs) - min(xs), max(ys) - min(ys), 1e-6)
        k = 0.7 * box["width"] / span
        ox = box["x"] + box["width"] / 2 - k * (max(xs) + min(xs)) / 2
        oy = box["y"] + box["height"] / 2 - k * (max(ys) + min(ys)) / 2
        return [[(ox + k * p[0], oy + k * p[1]) for p in s] for s in strokes]

    def draw(
        self,
        strokes: Strokes,
        frame: Strokes | None = None,
        partway: Callable[[], None] | None = None,
    ) -> None:
        """Draw with the mouse (placed as `to_screen` says); `partway` runs 70% of the way
        through the last stroke, with the button down."""
        self.draw_on_screen(self.to_screen(strokes, frame), partway)

    def draw_on_screen(
        self,
        screen: Sequence[Sequence[tuple[float, float]]],
        partway: Callable[[], None] | None = None,
    ) -> None:
        """Draw strokes given in page coordinates with the mouse."""
        mouse = self.page.mouse
        for i, stroke in enumerate(screen):
            mouse.move(*stroke[0])
            mouse.down()
            for j, (x, y) in enumerate(stroke[1:], 1):
                mouse.move(x, y)
                if partway is not None and i == len(screen) - 1 and j == len(stroke) * 7 // 10:
                    partway()
            mouse.up()

    def pad_units(self, points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        """Points in the pad's logical units (0..1000 across) as page coordinates."""
        box = self.page.locator("#pad").bounding_box()
        k = box["width"] / 1000
        return [(box["x"] + k * x, box["y"] + k * y) for x, y in points]

    def touch_draw(self, strokes: Strokes) -> None:
        """Draw with a finger: raw touch events through the DevTools protocol."""
        cdp = self.page.context.new_cdp_session(self.page)
        for stroke in self.to_screen(strokes):
            kind = "touchStart"
            for x, y in stroke:
                cdp.send(
                    "Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]}
                )
                kind = "touchMove"
            cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        cdp.detach()


def save_screenshot(page: Page, path: Path) -> None:
    """A screenshot of the page, written to docs/ when DIGITS_UPDATE_SCREENSHOT is set."""
    data = page.page.screenshot()
    assert data.startswith(b"\x89PNG")
    if os.environ.get("DIGITS_UPDATE_SCREENSHOT"):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
