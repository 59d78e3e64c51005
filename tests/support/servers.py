"""Real Git servers on 127.0.0.1 for the remote tests: ``git daemon`` and ``git http-backend``.

The root conftest loads the fixtures for every test module (``pytest_plugins =
["support.servers"]``); import the rest: ``from support.servers import GitServer``). Each fixture
starts its server for one test, on a free loopback port, serving the bare
repositories the test creates with :meth:`GitServer.create`, and stops it at
teardown. Nothing listens on, or connects to, any other address.

* :func:`git_daemon`: ``git daemon`` over ``git://`` with ``receive-pack``
  enabled (anyone may push, as on a trusted LAN).
* :func:`http_server`: Python's :mod:`http.server` in a thread, running
  ``git http-backend`` as a CGI program for every request that carries the
  right HTTP Basic credentials (:data:`HTTP_USERNAME` / :data:`HTTP_PASSWORD`),
  and answering ``401`` to every other one.

Served repositories refuse non-fast-forward updates and ref deletions
(``receive.denyNonFastForwards``, ``receive.denyDeletes``), as a shared Git
host does.
"""

from __future__ import annotations

import base64
import hmac
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HOST = "127.0.0.1"
HTTP_USERNAME = "reviewer"
HTTP_PASSWORD = "s3cret-Pa55word-for-tests"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Return once 127.0.0.1:``port`` accepts connections; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"no server came up on {HOST}:{port} within {timeout:g} s")
            time.sleep(0.01)


def server_environment(home: Path) -> dict[str, str]:
    """The environment of a server process: no user or system Git configuration."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GIT_", "PROGREG_")) and key not in {"HOME", "XDG_CONFIG_HOME"}
    }
    home.mkdir(parents=True, exist_ok=True)
    config = home / ".gitconfig"
    config.touch()
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        GIT_CONFIG_GLOBAL=str(config),
        GIT_CONFIG_NOSYSTEM="1",
    )
    return env


@dataclass
class GitServer:
    """A running server: where its repositories live and how to reach them."""

    root: Path
    port: int
    scheme: str
    env: dict[str, str]
    username: str = ""
    password: str = ""
    requests: list[tuple[str, str, int]] = field(default_factory=list)

    def url(self, name: str) -> str:
        """The URL of repository ``name`` (a directory under :attr:`root`)."""
        return f"{self.scheme}://{HOST}:{self.port}/{name}"

    def create(self, name: str = "registry.git") -> Path:
        """Create the empty bare repository ``name`` to serve; return its path."""
        path = self.root / name
        self.git("init", "-q", "--bare", "--initial-branch=main", str(path))
        for key, value in (
            ("receive.denyNonFastForwards", "true"),
            ("receive.denyDeletes", "true"),
            ("http.receivepack", "true"),
        ):
            self.git("-C", str(path), "config", key, value)
        return path

    def git(self, *args: str) -> str:
        """Run the git command line with the server's environment."""
        done = subprocess.run(
            ["git", *args], env=self.env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            pytest.fail(f"git {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def install_hook(self, name: str, hook: str, script: str) -> None:
        """Write executable hook ``hook`` (such as ``pre-receive``) into repository ``name``."""
        path = self.root / name / "hooks" / hook
        path.write_text(script)
        path.chmod(0o755)


def start_git_daemon(
    root: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``git daemon`` serving ``root`` (pushes enabled) on a free port of 127.0.0.1;
    the process and the port (the caller waits for it: :func:`wait_for_port`)."""
    port = free_port()
    process = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            f"--base-path={root}",
            "--export-all",
            "--enable=receive-pack",
            "--informative-errors",
            f"--listen={HOST}",
            f"--port={port}",
            str(root),
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, port


@pytest.fixture
def git_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    """``git daemon`` serving a temporary directory over ``git://127.0.0.1:<port>/``."""
    base = tmp_path_factory.mktemp("daemon")
    root = base / "served"
    root.mkdir()
    env = server_environment(base / "home")
    process, port = start_git_daemon(root, env)
    try:
        wait_for_port(port)
        yield GitServer(root, port, "git", env)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _GitHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    git: GitServer


class _GitHTTPHandler(BaseHTTPRequestHandler):
    """Basic auth in front of ``git http-backend`` run as a CGI program."""

    protocol_version = "HTTP/1.1"
    server: _GitHTTPServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: the tests look at :attr:`GitServer.requests` instead."""

    def _authorized(self) -> bool:
        expected = base64.b64encode(f"{HTTP_USERNAME}:{HTTP_PASSWORD}".encode()).decode()
        return hmac.compare_digest(
            self.headers.get("Authorization", "").encode(), f"Basic {expected}".encode()
        )

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.server.git.requests.append((self.command, self.path, status))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve(self) -> None:
        body = self._body()
        if not self._authorized():
            self._reply(401, [("WWW-Authenticate", 'Basic realm="progreg tests"')], b"")
            return
        path, _, query = self.path.partition("?")
        env = {
            **self.server.git.env,
            "GIT_PROJECT_ROOT": str(self.server.git.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": HTTP_USERNAME,
            "REMOTE_ADDR": HOST,
            "AUTH_TYPE": "Basic",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
        }
        for header in ("Content-Encoding", "Git-Protocol"):
            if header in self.headers:
                env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        head, sep, content = done.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, _, content = done.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self._reply(status, headers, content)


@pytest.fixture
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    """``git http-backend`` behind HTTP Basic auth on ``http://127.0.0.1:<port>/``."""
    base = tmp_path_factory.mktemp("http")
    root = base / "served"
    root.mkdir()
    env = server_environment(base / "home")
    server = _GitHTTPServer((HOST, 0), _GitHTTPHandler)
    port = server.server_address[1]
    server.git = GitServer(root, port, "http", env, HTTP_USERNAME, HTTP_PASSWORD)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="git-http", daemon=True
    )
    thread.start()
    try:
        yield server.git
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
