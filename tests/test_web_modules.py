"""The page's pure modules (web/protocol.js, outbox.js, room.js, guess.js, ink.js) under
Node's own test runner: the unit tests in tests/web/, with literal inputs and a fake socket.
The page as a whole is tested in real Chromium (tests/test_browser.py, tests/test_page.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNIT_TESTS = sorted((REPO / "tests" / "web").glob("*.test.js"))


def test_the_page_modules_pass_their_unit_tests() -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is missing in CI: `make test` installs it")
        pytest.skip("node is not installed (make test installs it)")
    assert len(UNIT_TESTS) >= 5
    run = subprocess.run(
        [node, "--test", *map(str, UNIT_TESTS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    passed = re.search(r"^# pass (\d+)$", run.stdout, re.M)
    assert passed is not None and int(passed.group(1)) >= 15, report
