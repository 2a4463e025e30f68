"""The drawing page (web/) in real headless Chromium against a real server on a loopback port.

UNIPEN dev digits are drawn with synthetic mouse and touch input; the tests read what the page
shows (the big digit, the top-3 bars, its data-state/data-count attributes, the canvas pixels).
Set DIGITS_UPDATE_SCREENSHOT=1 to refresh docs/screenshot.png from the mid-drawing test.
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

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
SCREENSHOT = REPO / "docs" / "screenshot.png"
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
DESKTOP = {"viewport": {"width": 1100, "height": 760}, "device_scale_factor": 2}
PHONE = {"width": 375, "height": 667}  # a small phone: the page is taller than the screen
NO_GUESS = "\u2013"  # the en dash the page shows instead of a digit
WAIT_MS = 15_000  # generous: a prediction normally shows within a frame or two

if os.environ.get("CI") and not Path(CHROMIUM).exists():
    raise RuntimeError(f"{CHROMIUM} is missing in CI: `make test` installs it")
sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip("Chromium is not installed (make test installs it)", allow_module_level=True)

Strokes = Sequence[Sequence[Sequence[float]]]


# ---- choosing digits the model reads correctly ---------------------------------------------


@dataclass(frozen=True)
class Samples:
    clear: dict[int, StrokeSample]  # per digit, one the model reads with high confidence
    two_part: StrokeSample  # two strokes; the first alone reads as another digit


@pytest.fixture(scope="module")
def samples() -> Samples:
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
            time.sleep(0.1)
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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("server") / "server.log")
    srv.start()
    yield srv
    srv.stop()


# ---- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """One browser tab on the drawing page, with helpers that draw and read what it shows."""

    def __init__(self, page: Any, errors: list[str]) -> None:
        self.page = page
        self.errors = errors

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.wait_connected()

    def wait_connected(self) -> None:
        self.page.wait_for_selector('#conn[data-state="open"]', timeout=WAIT_MS)

    def wait(self, js: str, arg: Any = None) -> None:
        self.page.wait_for_function(js, arg=arg, timeout=WAIT_MS)

    def shown(self) -> dict[str, Any]:
        """What the prediction panel shows right now."""
        result: dict[str, Any] = self.page.evaluate(
            """() => {
              const r = document.getElementById('result');
              return {
                state: r.dataset.state,
                count: Number(r.dataset.count),
                digit: document.getElementById('digit').textContent,
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

    def canvas_pixels(self) -> str:
        """The drawing as a data URL (device pixels), to compare drawings."""
        url: str = self.page.evaluate("() => document.getElementById('pad').toDataURL()")
        return url

    def ink_amount(self) -> int:
        """How many device pixels of the drawing pad carry ink."""
        amount: int = self.page.evaluate(
            """() => {
              const c = document.getElementById('pad');
              const a = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              let n = 0;
              for (let i = 3; i < a.length; i += 4) if (a[i] > 0) n++;
              return n;
            }"""
        )
        return amount

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
        screen = self.to_screen(strokes, frame)
        mouse = self.page.mouse
        for i, stroke in enumerate(screen):
            mouse.move(*stroke[0])
            mouse.down()
            for j, (x, y) in enumerate(stroke[1:], 1):
                mouse.move(x, y)
                if partway is not None and i == len(screen) - 1 and j == len(stroke) * 7 // 10:
                    partway()
            mouse.up()

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


@pytest.fixture
def make_page(browser: Any) -> Iterator[Callable[..., Page]]:
    contexts: list[Any] = []
    errors: list[str] = []

    def make(**options: Any) -> Page:
        context = browser.new_context(**{**DESKTOP, **options})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return Page(page, errors)

    yield make
    for context in contexts:
        context.close()
    assert errors == [], "the page threw"


@pytest.fixture
def page(make_page: Callable[..., Page], server: ServerProcess) -> Page:
    p = make_page()
    p.open(server.url)
    return p


def recognize(page: Page) -> dict[str, Any]:
    page.page.keyboard.press("Enter")
    page.wait_state("final")
    return page.shown()


# ---- tests -----------------------------------------------------------------------------------


def test_empty_page_shows_no_guess(page: Page) -> None:
    shown = page.shown()
    assert shown["state"] == "empty" and shown["digit"] == NO_GUESS
    assert shown["bars"] == [None, None, None]
    assert page.ink_amount() == 0
    page.page.keyboard.press("Enter")  # nothing to recognize: still no guess
    assert page.shown()["state"] == "empty"
    assert "draw a digit first" in page.page.locator("#verdict").inner_text()
    # The pad is sharp on this 2x screen: one canvas pixel per device pixel.
    backing = page.page.evaluate(
        """() => { const c = document.getElementById('pad');
                   const r = c.getBoundingClientRect();
                   return [c.width, c.height, Math.round(r.width * devicePixelRatio)]; }"""
    )
    assert backing[0] == backing[1] == backing[2] >= 2 * 300


@pytest.mark.parametrize("digit", [0, 3, 4, 7, 8])
def test_drawing_a_digit_predicts_live_and_recognizes_it(
    page: Page, samples: Samples, digit: int
) -> None:
    sample = samples.clear[digit]

    def mid_drawing() -> None:
        # Partway through the last stroke, predictions for it have already come in.
        page.wait_count_above(count_before_last)
        page.wait_state("live")
        if digit == 3:  # a partly drawn 3: the model is still torn between 2 and 3
            wait_settled(page)
            save_screenshot(page)

    count_before_last = 0
    if len(sample.strokes) > 1:
        page.draw(sample.strokes[:-1], frame=sample.strokes)
        count_before_last = wait_settled(page)["count"]
    page.draw(sample.strokes[-1:], frame=sample.strokes, partway=mid_drawing)
    assert page.ink_amount() > 0
    final = recognize(page)
    assert final["digit"] == str(digit), sample.id
    assert final["bars"][0].startswith(f"{digit}: ")
    assert final["announced"] == f"Final answer: {digit}"


def save_screenshot(page: Page) -> None:
    data = page.page.screenshot()
    assert data.startswith(b"\x89PNG")
    if os.environ.get("DIGITS_UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.write_bytes(data)


def test_delete_clears_canvas_prediction_and_server_ink(page: Page, samples: Samples) -> None:
    page.draw(samples.clear[8].strokes)
    page.wait_state("live")
    page.page.keyboard.press("Delete")
    shown = page.shown()
    assert shown["state"] == "empty" and shown["digit"] == NO_GUESS and shown["bars"] == [None] * 3
    assert page.ink_amount() == 0
    # The server forgot the 8 too: a new digit alone is what gets recognized.
    page.draw(samples.clear[1].strokes)
    assert recognize(page)["digit"] == "1"
    page.page.keyboard.press("Backspace")
    assert page.shown()["state"] == "empty" and page.ink_amount() == 0


def test_undo_removes_the_last_stroke(page: Page, samples: Samples) -> None:
    strokes = samples.two_part.strokes
    label = str(samples.two_part.label)
    page.draw(strokes[:1], frame=strokes)
    first_only = wait_settled(page)
    assert first_only["digit"] != label
    pixels_first_only = page.canvas_pixels()

    # Draw the same two strokes (the first lands where it did) and undo the second.
    page.page.keyboard.press("Delete")
    page.draw(strokes)
    both = recognize(page)
    assert both["digit"] == label
    page.page.keyboard.press("Control+z")
    page.wait(
        "d => document.getElementById('digit').textContent === d"
        " && document.getElementById('result').dataset.state === 'live'",
        first_only["digit"],
    )
    assert wait_settled(page)["bars"] == first_only["bars"]
    assert page.canvas_pixels() == pixels_first_only
    page.page.keyboard.press("Control+z")
    assert page.shown()["state"] == "empty" and page.ink_amount() == 0


def wait_settled(page: Page) -> dict[str, Any]:
    """The prediction once the server has answered for everything sent so far."""
    page.wait(
        "() => window.digits.conn.seq > 0 && window.digits.debug.lastPredictionSeq"
        " === window.digits.conn.seq"
    )
    return page.shown()


def test_touch_drawing_works_and_the_page_does_not_scroll(
    make_page: Callable[..., Page], server: ServerProcess, samples: Samples
) -> None:
    page = make_page(viewport=PHONE, has_touch=True, is_mobile=True, device_scale_factor=3)
    page.open(server.url)
    can_scroll = page.page.evaluate(
        "() => document.documentElement.scrollHeight > window.innerHeight"
    )
    assert can_scroll, "the phone layout should be taller than the screen for this test"
    # Mostly vertical strokes: the drags most likely to scroll a page.
    page.touch_draw(samples.clear[1].strokes)
    assert page.page.evaluate("() => window.digits.debug.lastPointerType") == "touch"
    assert recognize(page)["digit"] == "1"
    page.page.keyboard.press("Delete")
    page.touch_draw(samples.clear[2].strokes)
    assert recognize(page)["digit"] == "2"
    assert page.page.evaluate("() => [window.scrollY, window.visualViewport.scale]") == [0, 1]


def test_reconnects_after_a_server_restart_and_keeps_the_drawing(
    make_page: Callable[..., Page], samples: Samples, tmp_path: Path
) -> None:
    srv = ServerProcess(tmp_path / "server.log")
    srv.start()
    try:
        page = make_page()
        page.open(srv.url)
        page.draw(samples.clear[5].strokes)
        before = wait_settled(page)
        assert before["digit"] == "5"
        pixels = page.canvas_pixels()

        restart(page, srv)
        page.wait_count_above(before["count"])  # a prediction from the new session
        after = wait_settled(page)
        assert (after["state"], after["bars"]) == ("live", before["bars"])
        assert page.canvas_pixels() == pixels
        assert recognize(page)["digit"] == "5"

        # A stroke drawn while the server is away reaches the next session too.
        strokes, label = samples.two_part.strokes, str(samples.two_part.label)
        page.page.keyboard.press("Delete")
        page.draw(strokes[:1], frame=strokes)
        assert wait_settled(page)["digit"] != label
        srv.stop()
        page.page.wait_for_selector('#conn:not([data-state="open"])', timeout=WAIT_MS)
        page.draw(strokes[1:], frame=strokes)
        srv.start()
        page.wait_connected()
        assert recognize(page)["digit"] == label
    finally:
        srv.stop()


def restart(page: Page, srv: ServerProcess) -> None:
    srv.stop()
    page.page.wait_for_selector('#conn:not([data-state="open"])', timeout=WAIT_MS)
    srv.start()
    page.wait_connected()


def test_an_idle_page_pauses_and_reconnects_when_drawing_starts(
    make_page: Callable[..., Page], samples: Samples, tmp_path: Path
) -> None:
    srv = ServerProcess(tmp_path / "server.log", "--idle-timeout-s", "1")
    srv.start()
    try:
        page = make_page()
        page.page.goto(srv.url)  # connects, then the server closes the silent socket
        page.page.wait_for_selector('#conn[data-state="idle"]', timeout=WAIT_MS)
        assert page.page.get_by_role("alert").is_hidden()  # a pause, not an error
        page.draw(samples.clear[9].strokes)
        page.wait_connected()
        assert recognize(page)["digit"] == "9"
    finally:
        srv.stop()


def test_the_page_keeps_to_the_stroke_limit_the_server_announces(
    make_page: Callable[..., Page], samples: Samples, tmp_path: Path
) -> None:
    srv = ServerProcess(tmp_path / "server.log", "--max-strokes-per-session=1")
    srv.start()
    try:
        page = make_page()
        page.open(srv.url)
        one = samples.clear[1]
        other = next(x for x in samples.clear.values() if x.label != 1 and len(x.strokes) == 1)
        page.draw(one.strokes)
        wait_settled(page)
        pixels = page.canvas_pixels()
        page.draw(other.strokes)  # a second stroke: refused before it is sent
        alert = page.page.get_by_role("alert")
        alert.wait_for(state="visible", timeout=WAIT_MS)
        assert "clear the pad" in alert.inner_text() and "(too_many_strokes)" in alert.inner_text()
        assert page.canvas_pixels() == pixels
        assert recognize(page)["digit"] == "1"
        page.page.keyboard.press("Control+z")  # room again
        page.draw(other.strokes)
        assert recognize(page)["digit"] == str(other.label)
    finally:
        srv.stop()


def test_server_errors_show_as_readable_messages(page: Page) -> None:
    # Points outside a stroke: the page never sends this, so send it by hand.
    page.page.evaluate("() => window.digits.conn.send({type: 'points', points: [[1, 2]]})")
    alert = page.page.get_by_role("alert")
    alert.wait_for(state="visible", timeout=WAIT_MS)
    assert "(no_stroke)" in alert.inner_text()
    page.page.get_by_role("button", name="Dismiss message").click()
    alert.wait_for(state="hidden", timeout=WAIT_MS)
    assert page.page.locator("#conn").get_attribute("data-state") == "open"


def test_controls_are_buttons_reachable_from_the_keyboard(page: Page, samples: Samples) -> None:
    page.draw(samples.clear[6].strokes)
    page.wait_state("live")
    focused = []
    for _ in range(3):
        page.page.keyboard.press("Tab")
        focused.append(page.page.evaluate("() => document.activeElement.id"))
    assert focused == ["undo", "clear", "recognize"]
    page.page.keyboard.press("Enter")  # activates the focused Recognize button
    page.wait_state("final")
    page.page.keyboard.press("Shift+Tab")
    page.page.keyboard.press("Enter")  # Clear, and only Clear: no final answer follows
    assert page.shown()["state"] == "empty" and page.ink_amount() == 0
    assert page.page.get_attribute("#announce", "aria-live") == "polite"


# ---- shared drawings and resumed sessions ------------------------------------------------------


def shows_digit(page: Page, digit: int) -> None:
    page.wait("d => document.getElementById('digit').textContent === d", str(digit))


def test_share_links_let_others_watch_and_draw_live(
    make_page: Callable[..., Page], server: ServerProcess, samples: Samples
) -> None:
    owner = make_page()
    owner.open(server.url)
    owner.draw(samples.clear[7].strokes)
    shows_digit(owner, 7)
    owner.page.get_by_role("button", name="Share this drawing").click()
    owner.page.wait_for_selector("#share-info:not([hidden])", timeout=WAIT_MS)
    draw_link = owner.page.input_value("#share-draw-link")
    watch_link = owner.page.input_value("#share-watch-link")
    assert draw_link.startswith(server.url + "?room=") and "&token=" in draw_link
    assert watch_link != draw_link

    watcher = make_page()
    watcher.open(watch_link)
    watcher.wait("() => window.digits.share.role === 'watch'")
    shows_digit(watcher, 7)  # the late joiner sees the drawing and its prediction
    assert watcher.ink_amount() > 0 and watcher.page.locator("#undo").is_disabled()
    assert "read-only" in watcher.page.text_content("#share-status")  # type: ignore[operator]
    owner.wait("() => document.getElementById('share-status').textContent.includes('2 people')")

    owner.page.keyboard.press("Delete")  # clear reaches the watcher live
    watcher.wait("() => window.digits.others.size === 0")
    watcher.wait_state("empty")
    assert watcher.ink_amount() == 0
    owner.draw(samples.clear[3].strokes)
    shows_digit(watcher, 3)
    assert watcher.ink_amount() > 0

    watcher.draw([[[0, 0], [10, 10]]])  # refused on the page itself, with a readable reason
    assert "only people with the drawing link can draw" in watcher.page.text_content("#error-text")  # type: ignore[operator]
    assert watcher.page.evaluate("() => window.digits.ink.strokes.length") == 0

    drawer = make_page()
    drawer.open(draw_link)
    drawer.wait("() => window.digits.share.role === 'draw'")
    drawer.page.keyboard.press("Delete")
    drawer.draw(samples.clear[1].strokes)
    shows_digit(owner, 1)
    shows_digit(watcher, 1)
    drawer.page.get_by_role("button", name="Leave").click()
    owner.wait("() => document.getElementById('share-status').textContent.includes('2 people')")
    drawer.wait("() => window.digits.share.room === null && location.search === ''")


def test_a_dropped_connection_resumes_the_same_session(page: Page, samples: Samples) -> None:
    page.draw(samples.clear[6].strokes)
    before = wait_settled(page)
    session = page.page.evaluate("() => window.digits.conn.welcome.session")
    page.page.evaluate("() => window.digits.conn.ws.close()")
    page.wait("() => window.digits.debug.resumed === true")
    page.wait_connected()
    assert page.page.evaluate("() => window.digits.conn.welcome.session") == session
    assert recognize(page)["digit"] == before["digit"] == "6"
