"""Real services for the multi-process tests: redis-server (with its append-only file in a
temporary folder; optionally TLS only, with a throwaway CA) and nginx, each on a free
loopback port, started and stopped by the test. They and the openssl CLI are Debian
packages that `make test` installs when missing (`make services`)."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
_PREFIXES = itertools.count()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    """Until `port` accepts connections (the service is up); if it exits or never listens,
    it is killed (a failed start leaves nothing running) and this raises."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)  # waiting for another process to listen
    proc.kill()
    proc.wait()
    raise RuntimeError(f"{what} did not listen on {port}")


def new_prefix() -> str:
    """A key prefix of its own for each test, so tests sharing one Redis never meet."""
    return f"test{next(_PREFIXES)}:"


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost signed by it, in
    `folder`: (CA certificate, server certificate, server key), all PEM, valid for a day."""
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, request = folder / "server.pem", folder / "server.key", folder / "server.csr"
    names = folder / "names.cnf"
    names.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        ["req", "-x509", *new_key, "-keyout", ca_key, "-out", ca, "-days", "1",
         "-subj", "/CN=digits-live test CA"],
        ["req", *new_key, "-keyout", key, "-out", request, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "1", "-extfile", names],
    ]  # fmt: skip
    for step in steps:
        subprocess.run([OPENSSL, *map(str, step)], check=True, capture_output=True)
    return ca, cert, key


class RedisServer:
    """A redis-server with AOF persistence (fsync always) in `folder`; stop and start it
    again to test a restart: the same port, the same files. With `tls`, it speaks TLS only,
    with a certificate from a throwaway CA (`self.ca`), and `url` is a rediss:// URL that
    names that CA."""

    def __init__(self, folder: Path, password: str = "", tls: bool = False) -> None:
        self.folder, self.port, self.password = folder, free_port(), password
        self.ca: Path | None = None
        self.tls_args: list[str] = []
        if tls:
            self.ca, cert, key = make_certificates(folder)
            self.tls_args = [
                "--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                "--tls-key-file", str(key), "--tls-ca-cert-file", str(self.ca),
                "--tls-auth-clients", "no",  # clients prove themselves with the password
            ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        """The URL of database `db`, with the password if there is one (and the CA, for TLS:
        redis-py's from_url takes `ssl_ca_certs` from the query)."""
        auth = f":{self.password}@" if self.password else ""
        if self.ca is None:
            return f"redis://{auth}127.0.0.1:{self.port}/{db}"
        return f"rediss://{auth}127.0.0.1:{self.port}/{db}?ssl_ca_certs={self.ca}"

    def start(self) -> None:
        args = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.folder), "--appendonly", "yes", "--appendfsync", "always",
            "--save", "", "--daemonize", "no", "--logfile", str(self.folder / "redis.log"),
            *self.tls_args,  # the later --port 0 wins: no plain-text port
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.port, self.proc, "redis-server")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


class ServerProcess:
    """`python -m server` in a process of its own, on its own loopback port."""

    def __init__(self, *args: str, port: int | None = None, log: Path | None = None) -> None:
        self.port = free_port() if port is None else port
        self.args = ["--port", str(self.port), "--accelerator", "cpu", *args]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> ServerProcess:
        with contextlib.ExitStack() as files:
            err = files.enter_context(self.log.open("wb")) if self.log else subprocess.DEVNULL
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server", *self.args],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
                start_new_session=True,  # its workers too are stopped with it
            )
        wait_listening(self.port, self.proc, "the server")
        return self

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Kill it and any worker it started (its whole process group)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


SCALING_DOC = Path(__file__).resolve().parent.parent / "docs" / "SCALING.md"


def nginx_conf(folder: Path, listen: int, upstreams: list[int]) -> str:
    """docs/SCALING.md's nginx configuration, with these ports and files in `folder`."""
    text = SCALING_DOC.read_text()
    conf = text.split("```nginx\n", 1)[1].split("```", 1)[0]
    params = re.search(r"server 127\.0\.0\.1:\d+([^;]*);", conf)
    assert params is not None, "no upstream server line in docs/SCALING.md"
    lines = "".join(f"        server 127.0.0.1:{port}{params[1]};\n" for port in upstreams)
    conf = re.sub(r"( +server 127\.0\.0\.1:\d+[^;]*;.*\n)+", lines, conf)
    conf = conf.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{listen};")
    temp = "".join(
        f"    {kind}_temp_path {folder / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return conf.replace("http {\n", f"http {{\n{temp}    access_log off;\n", 1)


class Nginx:
    """nginx with docs/SCALING.md's configuration in front of `upstreams`."""

    def __init__(self, folder: Path, upstreams: list[int]) -> None:
        self.folder, self.port = folder, free_port()
        self.conf = folder / "nginx.conf"
        self.conf.write_text(nginx_conf(folder, self.port, upstreams))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> Nginx:
        error_log = self.folder / "error.log"
        directives = f"daemon off; master_process on; pid {self.folder / 'nginx.pid'};"
        args = [NGINX, "-p", str(self.folder), "-c", str(self.conf), "-e", str(error_log)]
        self.proc = subprocess.Popen(
            [*args, "-g", directives], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_listening(self.port, self.proc, "nginx")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
