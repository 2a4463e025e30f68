"""The drawing page as people use it (issue 13), in real headless Chromium against a real server:
keys that never destroy a drawing, ink clipped at the pad's edge, redo, final answers shared
with a room, what a watcher sees, accessibility (axe-core from node_modules, never a CDN),
layouts that fit the screen, share links that keep their secrets out of requests, a page
that works under its Content-Security-Policy, and a page that rides out a deploy (close 1012).
"""

from __future__ import annotations

import itertools
import re
import signal
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.browserkit import AXE, SCREENSHOT, WAIT_MS, Page, Samples, ServerProcess, save_screenshot
from tests.rediskit import Nginx, RedisServer, new_prefix
from tests.rediskit import ServerProcess as RedisBackedServer
from tests.serverkit import metric, unipen_rejects

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
PHONE_LANDSCAPE = {"width": 844, "height": 390}
SMALLEST_PHONE = {"width": 320, "height": 568}
# Recorded in every page before its own scripts run (DevTools, not a <script>: the CSP stays on).
WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


def share(
    make_page: Callable[..., Page], server: ServerProcess, **options: Any
) -> tuple[Page, dict[str, str]]:
    """A page that shared its (empty) drawing, and its links; the dialog is closed again."""
    owner = make_page(**options)
    owner.open(server.url)
    owner.page.get_by_role("button", name="Share").click()
    owner.page.get_by_role("dialog").wait_for(state="visible", timeout=WAIT_MS)
    links = {kind: owner.page.input_value(f"#share-{kind}-link") for kind in ("draw", "watch")}
    owner.page.get_by_role("button", name="Done").click()
    owner.page.get_by_role("dialog").wait_for(state="hidden", timeout=WAIT_MS)
    return owner, links


def join(make_page: Callable[..., Page], link: str, role: str, **options: Any) -> Page:
    member = make_page(**options)
    member.open(link)
    member.wait("r => window.digits.room.role === r", role)
    return member


def stroke_count(page: Page) -> int:
    count: int = page.js("() => window.digits.ink.strokes.length")
    return count


# ---- 1. keys never destroy a drawing ----------------------------------------------------------


def test_enter_after_clicking_clear_or_undo_recognizes_and_keeps_the_ink(
    page: Page, samples: Samples
) -> None:
    page.draw(samples.clear[8].strokes)
    page.page.get_by_role("button", name="Clear").click()  # the button keeps the focus
    page.draw(samples.clear[3].strokes)
    page.wait_state("live")
    assert page.recognize()["digit"] == "3"
    page.page.keyboard.press("Space")  # not chosen from the keyboard: presses nothing
    assert page.ink_amount() > 0 and page.shown()["state"] == "final"

    strokes, label = samples.two_part.strokes, str(samples.two_part.label)
    page.page.keyboard.press("Delete")
    page.draw(strokes)
    page.wait_settled()
    page.page.get_by_role("button", name="Undo").click()
    page.wait("() => window.digits.ink.strokes.length === 1")
    final = page.recognize()  # the answer for the first stroke, not another undo
    assert final["digit"] != label and stroke_count(page) == 1 and page.ink_amount() > 0
    page.page.keyboard.press("Space")
    assert stroke_count(page) == 1

    # With the keyboard's focus, Clear is pressed by Space; once the person draws, no longer.
    page.page.focus("#clear")
    page.draw(strokes[1:], frame=strokes)
    page.page.keyboard.press("Space")
    assert stroke_count(page) == 2
    page.page.focus("#clear")
    page.page.keyboard.press("Space")
    assert page.shown()["state"] == "empty" and page.ink_amount() == 0


def test_enter_on_a_button_the_keyboard_is_on_presses_that_button(
    page: Page, samples: Samples
) -> None:
    strokes = samples.two_part.strokes
    page.draw(strokes)
    page.wait_settled()
    page.page.focus("#undo")  # reached with Tab: Enter presses it, as it would anywhere
    page.page.keyboard.press("Enter")
    page.wait("() => window.digits.ink.strokes.length === 1")
    assert page.shown()["state"] != "final"

    page.page.focus("#share-start")
    page.page.keyboard.press("Enter")  # opens the dialog: no final answer instead
    page.page.get_by_role("dialog").wait_for(state="visible", timeout=WAIT_MS)
    page.page.keyboard.press("Escape")
    page.page.get_by_role("dialog").wait_for(state="hidden", timeout=WAIT_MS)
    # Share is gone from the header: the keyboard's focus goes to Links, not to the top.
    page.wait("() => document.activeElement?.id === 'room-links'")
    page.page.keyboard.press("Enter")
    page.page.get_by_role("dialog").wait_for(state="visible", timeout=WAIT_MS)
    page.page.keyboard.press("Escape")
    page.page.get_by_role("dialog").wait_for(state="hidden", timeout=WAIT_MS)
    page.draw(strokes[1:], frame=strokes)  # drawing takes the focus to the pad
    assert page.recognize()["digit"] == str(samples.two_part.label)  # and Enter recognizes


# ---- 2. the honest guess (the verdict in words: tests/web/guess.test.js) ---------------------


def test_the_page_never_claims_certainty(page: Page, samples: Samples) -> None:
    page.draw(samples.clear[1].strokes)  # the model is all but certain of this 1
    shown = page.recognize()
    assert shown["digit"] == "1"
    shares = re.findall(r"[<>]?\d+%", " ".join([shown["verdict"], *shown["bars"]]))
    assert len(shares) == 4  # the answer's and the three bars'
    assert [p for p in shares if not re.fullmatch(r"<1%|>99%|[1-9]\d?%", p)] == []  # never 100%


def test_a_letter_drawn_on_the_pad_shows_the_not_a_digit_message(page: Page) -> None:
    not_digit = "That doesn't look like a digit"
    for letter in unipen_rejects("A#"):  # letters the shipped model rejects offline
        page.page.keyboard.press("Delete")
        page.draw(letter.strokes)
        shown = page.recognize()
        assert (shown["digit"], shown["verdict"], shown["announced"]) == ("?", not_digit, not_digit)
        assert page.js("() => window.digits.debug.lastPrediction.verdict") == "not_digit"
        fills = page.js(
            "() => [...document.querySelectorAll('#bars .bar-fill')]"
            ".map(el => getComputedStyle(el).backgroundColor)"
        )
        assert len(fills) == 3 and len(set(fills)) == 1  # no green bar under "not a digit"


# ---- 3. sharing -------------------------------------------------------------------------------


def test_in_a_room_a_final_answer_reaches_every_member(
    make_page: Callable[..., Page], server: ServerProcess, samples: Samples
) -> None:
    owner, links = share(make_page, server)
    drawer = join(make_page, links["draw"], "draw")
    watcher = join(make_page, links["watch"], "watch")
    owner.wait("() => document.getElementById('room-status').textContent.includes('3 people')")
    drawer.draw(samples.clear[4].strokes)
    owner.shows_digit(4)
    assert drawer.recognize()["digit"] == "4"
    for other in (owner, watcher):
        other.wait_state("final")
        shown = other.shown()
        assert shown["digit"] == "4" and shown["verdict"].startswith("Final answer: 4")
        assert shown["announced"] == "Final answer: 4"


def test_a_reload_takes_back_the_session_its_room_and_its_own_strokes(
    make_page: Callable[..., Page], server: ServerProcess, samples: Samples
) -> None:
    """A reload is not a new person: no member is left behind in the room for the resume
    grace, the strokes drawn before it can still be undone, and the sharer keeps both links."""
    owner, links = share(make_page, server)
    draw_fragment = urlsplit(links["draw"]).fragment
    assert owner.js("() => location.hash") == f"#{draw_fragment}"  # the address is the link now
    drawer = join(make_page, links["draw"], "draw")
    owner.wait("() => window.digits.room.members.length === 2")
    strokes = samples.two_part.strokes
    drawer.draw(strokes)
    owner.wait("n => window.digits.room.others.size === n", len(strokes))
    session = drawer.js("() => window.digits.conn.welcome.session")

    drawer.page.reload()
    drawer.wait_connected()
    drawer.wait("() => window.digits.room.role === 'draw' && window.digits.debug.resumed")
    assert drawer.js("() => window.digits.conn.welcome.session") == session
    assert drawer.js("() => window.digits.room.members.length") == 2  # nobody left behind
    assert stroke_count(drawer) == len(strokes)  # still its own strokes
    drawer.page.keyboard.press("Control+z")
    owner.wait("n => window.digits.room.others.size === n", len(strokes) - 1)
    assert owner.js("() => window.digits.room.members.length") == 2

    owner.page.reload()
    owner.wait_connected()
    owner.wait("() => window.digits.room.role === 'draw' && window.digits.debug.resumed")
    assert owner.js("() => location.hash") == f"#{draw_fragment}"
    assert owner.page.input_value("#share-watch-link") == links["watch"]
    assert owner.page.input_value("#share-draw-link") == links["draw"]


def test_a_reload_keeps_a_drawing_of_ones_own(page: Page, samples: Samples) -> None:
    page.draw(samples.clear[5].strokes)
    page.wait_settled()
    session = page.js("() => window.digits.conn.welcome.session")
    ink = page.js("() => window.digits.ink.strokes")
    page.page.reload()
    page.wait_connected()
    page.wait("() => window.digits.debug.resumed")
    assert page.js("() => window.digits.conn.welcome.session") == session
    assert page.js("() => window.digits.ink.strokes") == ink and page.ink_amount() > 0
    assert page.recognize()["digit"] == "5"  # the server has the same ink


def test_a_watcher_sees_no_recognize_and_errors_leave_stop_watching_free(
    make_page: Callable[..., Page], server: ServerProcess, samples: Samples
) -> None:
    owner, links = share(make_page, server)
    watcher = join(make_page, links["watch"], "watch", viewport=PHONE)
    for hidden in ("#recognize", "#undo", "#redo", "#clear", "#share-start"):
        assert watcher.page.locator(hidden).is_hidden(), hidden
    said = watcher.page.inner_text("#pad-hint") + " " + watcher.shown()["verdict"]
    assert "Draw" not in said and "draw a digit" not in said, said
    owner.draw(samples.clear[2].strokes)
    watcher.shows_digit(2)

    watcher.draw([[[0, 0], [10, 10]]])  # refused on the page: watchers cannot draw
    alert = watcher.page.get_by_role("alert")
    alert.wait_for(state="visible", timeout=WAIT_MS)
    toast = alert.bounding_box()
    for kept_free in ("#room", "#room-leave"):
        box = watcher.page.locator(kept_free).bounding_box()
        assert watcher.page.locator(kept_free).is_visible()
        apart = (
            toast["y"] >= box["y"] + box["height"]
            or box["y"] >= toast["y"] + toast["height"]
            or toast["x"] >= box["x"] + box["width"]
            or box["x"] >= toast["x"] + toast["width"]
        )
        assert apart, f"the error covers {kept_free}"
    assert watcher.page.inner_text("#room-leave") == "Stop watching"


def test_share_shows_the_links_in_view_and_copy_says_so_without_a_jump(
    make_page: Callable[..., Page], server: ServerProcess, samples: Samples
) -> None:
    page = make_page()
    page.page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.open(server.url)
    page.draw(samples.clear[7].strokes)
    page.page.get_by_role("button", name="Share").click()
    dialog = page.page.get_by_role("dialog")
    dialog.wait_for(state="visible", timeout=WAIT_MS)
    assert in_view(page, "#share-draw-link") and in_view(page, "#share-watch-link")
    copy = page.page.locator("#share-draw button")
    copy.click()
    page.wait("() => document.getElementById('copy-status').textContent === 'Link copied'")
    assert copy.inner_text() == "Copied"
    clipboard = page.js("() => navigator.clipboard.readText()")
    assert clipboard == page.page.input_value("#share-draw-link")
    assert page.js("() => [window.scrollX, window.scrollY]") == [0, 0]
    dialog.get_by_role("button", name="Done").click()
    assert in_view(page, "#pad") and in_view(page, "#room-leave")


def in_view(page: Page, selector: str) -> bool:
    inside: bool = page.page.evaluate(
        """s => { const r = document.querySelector(s).getBoundingClientRect();
                  return r.width > 0 && r.top >= 0 && r.left >= 0
                    && r.bottom <= innerHeight && r.right <= innerWidth; }""",
        selector,
    )
    return inside


# ---- 4. ink the person cannot see -------------------------------------------------------------


def test_a_stroke_dragged_out_of_the_pad_has_no_points_outside_it(page: Page) -> None:
    # Down the pad, out at the bottom, round the outside and back in from the right.
    out_and_back = [(500, 150), (500, 500), (500, 850), (500, 1250), (1300, 1250), (1300, 500)]
    page.draw_on_screen([page.pad_units([*out_and_back, (800, 500), (650, 500)])])
    page.wait_settled()
    strokes = page.js("() => window.digits.ink.strokes")
    assert all(0 <= x <= 1000 and 0 <= y <= 1000 for s in strokes for x, y in s), strokes
    assert len(strokes) == 2  # leaving the pad ends the stroke, coming back starts one
    assert strokes[0][-1] == [500, 1000] and strokes[1][0] == [1000, 500]
    x0, y0, x1, y1 = page.js("() => window.digits.debug.lastPrediction.bbox")  # what the model saw
    assert min(x0, y0) >= 0 and max(x1, y1) <= 1000


# ---- 5. explain and correct -------------------------------------------------------------------


def test_redo_restores_an_undone_stroke(page: Page, samples: Samples) -> None:
    strokes, label = samples.two_part.strokes, str(samples.two_part.label)
    page.draw(strokes)
    assert page.wait_settled()["digit"] == label
    pixels = page.canvas_pixels()

    def by_button() -> None:
        page.page.get_by_role("button", name="Redo").click()

    def by_key(key: str) -> Callable[[], None]:
        return lambda: page.page.keyboard.press(key)

    for redo in (by_key("Control+Shift+Z"), by_key("Control+y"), by_button):
        page.page.keyboard.press("Control+z")
        page.wait("() => window.digits.ink.strokes.length === 1")
        assert page.wait_settled()["digit"] != label
        redo()
        page.wait("() => window.digits.ink.strokes.length === 2")
        assert page.canvas_pixels() == pixels
        assert page.wait_settled()["digit"] == label
    assert page.recognize()["digit"] == label  # the server has the stroke back too
    page.page.get_by_text("How it works").click()
    assert "20 \u00d7 20 box" in page.page.inner_text(".how")  # the preview explained


# ---- 6. accessibility and layout --------------------------------------------------------------


def axe_violations(page: Page) -> list[str]:
    """axe-core's WCAG violations on the page as it is now (axe from node_modules, run through
    DevTools, so the page's own CSP stays in force)."""
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `npm ci` (make install does)")
    if not page.js("() => typeof window.axe === 'object'"):
        page.page.evaluate(AXE.read_text())
    found: list[str] = page.page.evaluate(
        """async () => {
          const r = await axe.run(document, {resultTypes: ['violations']});
          return r.violations.flatMap(v => v.nodes.map(n => `${v.id}: ${n.target.join(' ')}`));
        }"""
    )
    return found


def test_axe_finds_no_violations_in_any_state(
    make_page: Callable[..., Page], server: ServerProcess, samples: Samples
) -> None:
    page = make_page()
    page.open(server.url)
    assert axe_violations(page) == [], "empty"
    page.draw(samples.clear[5].strokes)
    page.wait_settled()
    assert axe_violations(page) == [], "drawing"
    page.recognize()
    assert axe_violations(page) == [], "final"
    page.page.get_by_role("button", name="Share").click()
    page.page.get_by_role("dialog").wait_for(state="visible", timeout=WAIT_MS)
    assert axe_violations(page) == [], "share dialog"
    links = {kind: page.page.input_value(f"#share-{kind}-link") for kind in ("draw", "watch")}
    page.page.get_by_role("button", name="Done").click()
    assert axe_violations(page) == [], "shared"
    watcher = join(make_page, links["watch"], "watch", viewport=PHONE)
    watcher.shows_digit(5)
    assert axe_violations(watcher) == [], "watching"


def test_live_updates_are_not_announced_one_by_one(page: Page, samples: Samples) -> None:
    page.js(
        """() => {
          window.__said = [];
          const live = document.querySelectorAll(
            '[aria-live], [role=status], [role=alert], output');
          const seen = new MutationObserver(() => window.__said.push(
            [performance.now(), [...live].map(el => el.textContent.trim()).join('|')]));
          const what = {childList: true, subtree: true, characterData: true};
          for (const el of live) seen.observe(el, what);
        }"""
    )
    page.draw(samples.two_part.strokes)
    page.wait_settled()
    for key in ("Control+z", "Control+y") * 2:  # each change brings a new live guess
        page.page.keyboard.press(key)
        page.wait_settled()
    guesses = page.shown()["count"]
    said: list[tuple[float, str]] = page.js("() => window.__said")
    # Live guesses are announced only as their verdict changes ("Looks like 8", "Keep
    # drawing"), never with each new probability, and at most one every two seconds.
    assert len(said) < guesses and not any("%" in text for _, text in said), said
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(said)]
    assert all(gap >= 1900 for gap in gaps), said
    page.recognize()  # a final answer is said at once
    page.wait("() => window.__said.at(-1)[1].includes('|Final answer: ')")


@pytest.mark.parametrize(
    "viewport",
    [{"width": 1280, "height": 800}, PHONE, PHONE_LANDSCAPE, SMALLEST_PHONE],
    ids=["desktop", "phone", "landscape", "320px"],
)
def test_everything_fits_on_the_screen_without_scrolling(
    make_page: Callable[..., Page],
    server: ServerProcess,
    samples: Samples,
    viewport: dict[str, int],
) -> None:
    touch = viewport["width"] != 1280
    page = make_page(viewport=viewport, has_touch=touch, is_mobile=touch)
    page.open(server.url)
    page.draw(samples.clear[0].strokes)
    page.wait_settled()
    if viewport in (PHONE, PHONE_LANDSCAPE):  # docs/screenshot.png: tests/test_browser.py
        name = "phone" if viewport["width"] < viewport["height"] else "landscape"
        save_screenshot(page, SCREENSHOT.with_name(f"screenshot-{name}.png"))
    things = [
        "#pad",
        "#undo",
        "#redo",
        "#clear",
        "#recognize",
        "#digit",
        "#bars",
        "#preview",
        "#share-start",
    ]
    assert [s for s in things if not in_view(page, s)] == []
    assert page.page.locator(".bar-track").first.bounding_box()["width"] >= 80  # readable bars
    page.page.get_by_role("button", name="Share").click()
    page.page.get_by_role("button", name="Done").click()
    things = [s for s in things if s != "#share-start"] + [
        "#room-status",
        "#room-links",
        "#room-leave",
    ]
    assert [s for s in things if not in_view(page, s)] == []
    sizes = page.js(
        "() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    assert sizes[0] <= viewport["width"] and sizes[1] <= viewport["height"]
    if touch:  # a tapped button keeps no hover colour: hover styles need a real hover
        assert page.js("() => matchMedia('(hover: hover)').matches") is False
        unguarded = page.js(
            """() => [...document.styleSheets].flatMap(sheet => [...sheet.cssRules])
                 .filter(rule => rule.selectorText?.includes(':hover'))
                 .map(rule => rule.selectorText)"""
        )
        assert unguarded == []  # every :hover rule sits inside @media (hover: hover)


# ---- 7. share links keep their secrets; the page keeps to its CSP ----------------------------


def test_share_links_hold_no_token_in_the_query_and_the_page_keeps_to_its_csp(
    make_page: Callable[..., Page], server: ServerProcess, samples: Samples
) -> None:
    requests: list[str] = []
    console: list[str] = []

    def watched(**options: Any) -> Page:
        p = make_page(**options)
        p.page.add_init_script(WATCH_CSP)
        p.page.on("request", lambda r: requests.append(r.url))
        p.page.on("console", lambda m: console.append(m.text))
        return p

    owner, links = share(watched, server)
    tokens = set()
    for link in links.values():
        parts = urlsplit(link)
        fragment = parse_qs(parts.fragment)
        assert "token" not in parse_qs(parts.query) and "room" not in parse_qs(parts.query)
        tokens.add(fragment["token"][0])
    watcher = join(watched, links["watch"], "watch")
    drawer = join(watched, links["draw"], "draw")
    drawer.draw(samples.clear[9].strokes)
    watcher.shows_digit(9)
    assert [url for url in requests if any(t in url for t in tokens)] == []

    # An old-style link still works once, and the page moves its secrets out of the query.
    invite = parse_qs(urlsplit(links["watch"]).fragment)
    room, token = invite["room"][0], invite["token"][0]
    late = watched()
    late.page.goto(f"{server.url}?test&room={room}&token={token}")
    late.wait("() => window.digits.room.role === 'watch'")
    moved = urlsplit(late.page.url)
    assert set(parse_qs(moved.query, keep_blank_values=True)) == {"test"}
    assert parse_qs(moved.fragment) == {"room": [room], "token": [token]}

    response = owner.page.request.get(server.url)
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    for p in (owner, watcher, drawer, late):
        assert p.js("() => window.__csp") == []
    assert [m for m in console if "Content Security Policy" in m] == []


# ---- 8. a deploy: the server process restarts (close 1012) -----------------------------------

# Every connection state the page goes through, with what it shows at that moment.
RECORD_STATES = """() => {
  const $ = (id) => document.getElementById(id);
  window.__states = [];
  window.digits.conn.addEventListener('state', ({ detail }) => window.__states.push({
    state: detail.state,
    pill: $('conn-text').textContent,
    note: $('pad-note').hidden ? '' : $('pad-note').textContent,
    error: !$('error').hidden,
  }));
}"""


def connections(proc: RedisBackedServer) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.port}/metrics", timeout=5) as resp:
        return metric(resp.read().decode(), "digits_connections")


def test_a_restarting_server_process_is_ridden_out_quietly_with_the_room_and_ink(
    make_page: Callable[..., Page], samples: Samples, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Two processes on one Redis behind nginx; the one serving the page is stopped with
    SIGTERM (a rolling deploy closes its sockets with 1012). The page reconnects at once
    through nginx to the other process, resumes its session, is still in its room with its
    ink, says "restarting" by the connection pill only (no error, no offline note), and the
    next stroke reaches the other member."""
    prefix = new_prefix()
    procs = [
        RedisBackedServer("--redis", redis_server.url, "--redis-prefix", prefix) for _ in range(2)
    ]
    proxy = None
    try:
        for proc in procs:
            proc.start()
        proxy = Nginx(tmp_path, [p.port for p in procs]).start()
        site = f"http://127.0.0.1:{proxy.port}/"
        owner = make_page()
        owner.open(site)
        (serving,) = [p for p in procs if connections(p) == 1]  # only the owner is connected yet
        owner.page.get_by_role("button", name="Share").click()
        owner.page.get_by_role("dialog").wait_for(state="visible", timeout=WAIT_MS)
        link = owner.page.input_value("#share-watch-link")
        owner.page.get_by_role("button", name="Done").click()
        watcher = join(make_page, link, "watch")
        strokes, label = samples.two_part.strokes, str(samples.two_part.label)
        owner.draw(strokes[:1], frame=strokes)
        watcher.wait("() => window.digits.room.others.size === 1")
        owner.wait_settled()
        room = owner.js("() => window.digits.room.room")
        session = owner.js("() => window.digits.conn.welcome.session")
        pixels = owner.canvas_pixels()
        owner.js(RECORD_STATES)

        serving.signal(signal.SIGTERM)
        assert serving.wait() == 0
        owner.wait("() => window.digits.debug.resumed === true")
        owner.wait_connected()
        states = owner.js("() => window.__states")
        assert states[0]["state"] == "restarting"
        assert states[-1]["state"] == "open"
        assert "waiting" not in [s["state"] for s in states]  # no backoff, never "offline"
        assert all(s["note"] == "" and not s["error"] for s in states)  # quiet: no error
        assert states[0]["pill"] == "Server restarting, reconnecting…"
        assert owner.js("() => window.digits.conn.welcome.session") == session
        assert owner.js("() => [window.digits.room.room, window.digits.room.role]") == [
            room,
            "draw",
        ]
        assert stroke_count(owner) == 1 and owner.canvas_pixels() == pixels

        owner.draw(strokes[1:], frame=strokes)  # the room goes on, on the other process
        assert owner.recognize()["digit"] == label
        watcher.wait_state("final")
        assert watcher.shown()["digit"] == label
        assert watcher.js("() => window.digits.room.others.size") == 2
        assert owner.js("() => document.getElementById('error').hidden") is True
    finally:
        if proxy is not None:
            proxy.stop()
        for proc in procs:
            proc.stop()
