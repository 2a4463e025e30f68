"""The split of the distribution: protocol and client work without the server's
dependencies, and digits-server without them says in one line what to install."""

from __future__ import annotations

import subprocess
import sys

SERVER_ONLY = (
    "numpy",
    "ai_edge_litert",
    "tflite_runtime",
    "skimage",
    "scipy",
    "PIL",
    "prometheus_client",
)


def run_without(modules: tuple[str, ...], code: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter where importing any of `modules` fails."""
    block = f"import sys\nfor m in {modules!r}: sys.modules[m] = None\n"
    return subprocess.run(
        [sys.executable, "-c", block + code], capture_output=True, text=True, timeout=60
    )


def test_protocol_and_client_need_neither_the_server_nor_its_dependencies() -> None:
    code = (
        "import protocol, protocol.strokefile, client, client.cli\n"
        "assert not [m for m, mod in sys.modules.items() if m.startswith('server') and mod]\n"
        "print(protocol.decode_server(protocol.encode(protocol.Pong(1), True)))"
    )
    done = run_without((*SERVER_ONLY, "server"), code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Pong(seq=1)"


def test_digits_server_without_the_server_extra_says_what_to_install() -> None:
    done = run_without(SERVER_ONLY, "from server.__main__ import main\nmain([])")
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("digits-server: the server is not installed")
    assert "pip install 'digits-live[server]'" in line
