"""The HTTP side of a push: proxies, redirects, a streamed pack, against real servers.

A forwarding HTTP proxy and a redirecting front end are written here (Python's
:mod:`http.server` on 127.0.0.1, forwarding to the real ``git http-backend`` of
``tests/support/servers.py`` with :mod:`http.client`); each counts what reached it.
The large push goes to a real ``git daemon``, so that what the test process
allocates is the client's alone.
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pygit2
import pytest

from progreg import AuthenticationError, InvalidInputError, ProgramStorage, RemoteError
from progreg.git.wire import remote
from progreg.git.wire.proxies import Proxy, bypassed, proxy_for
from support.gitcli import assert_fsck_clean, git

if TYPE_CHECKING:
    from pathlib import Path

    from support.servers import GitServer

MAIN = "refs/heads/main"
HOST = "127.0.0.1"


def save(storage: ProgramStorage, n: int) -> str:
    state = {"predict": {"signature": {"instructions": f"Instruction {n}"}, "demos": []}}
    result = {"best_score_name": "accuracy", "best_score_value": 0.5}
    return storage.save_program(state, result, {"signature_class": "Classify"}).program_id


# -- servers written for these tests -----------------------------------------------------


class Seen:
    """What reached a test server: ``(method, target, headers)`` of each request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    def methods(self) -> list[str]:
        return [method for method, _target, _headers in self.requests]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    seen: Seen
    route: Callable[[str, str], tuple[str, int] | tuple[int, str]]


class _Forwarding(BaseHTTPRequestHandler):
    """Forwards each request where ``server.route`` says, or answers a redirect."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests look at :class:`Seen`."""

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self) -> None:
        body = self._body()
        self.server.seen.requests.append((self.command, self.path, dict(self.headers.items())))
        where = self.server.route(self.command, self.path)
        if isinstance(where[0], int):  # (status, location): a redirect
            status, location = where
            self.send_response(status)
            self.send_header("Location", str(location))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        target, port = where
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in ("host", "transfer-encoding", "content-length", "connection")
            and not name.lower().startswith("proxy-")
        }
        headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(HOST, int(port), timeout=60)
        try:
            upstream.request(self.command, str(target), body=body, headers=headers)
            answer = upstream.getresponse()
            content = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


@pytest.fixture
def start() -> Iterator[Callable[..., tuple[int, Seen]]]:
    """Start forwarding servers on 127.0.0.1; stop them at teardown."""
    running: list[tuple[_Server, threading.Thread]] = []

    def started(route: Callable[[str, str], tuple[str, int] | tuple[int, str]]) -> tuple[int, Seen]:
        server = _Server((HOST, 0), _Forwarding)
        server.seen, server.route = Seen(), route
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        running.append((server, thread))
        return server.server_address[1], server.seen

    yield started
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def as_proxy(backend: GitServer) -> Callable[[str, str], tuple[str, int]]:
    """A forwarding proxy: the request target is the absolute URL on ``backend``."""

    def route(_method: str, target: str) -> tuple[str, int]:
        parts = urlsplit(target)
        assert parts.scheme == "http" and parts.port == backend.port, target  # absolute-form
        return parts.path + (f"?{parts.query}" if parts.query else ""), backend.port

    return route


@pytest.fixture
def alice(
    http_server: GitServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ProgramStorage:
    """A registry with one program and remote ``origin`` on the http-backend (credentials set)."""
    monkeypatch.setenv("PROGREG_GIT_USERNAME", http_server.username)
    monkeypatch.setenv("PROGREG_GIT_PASSWORD", http_server.password)
    http_server.create()
    storage = ProgramStorage(tmp_path / "alice")
    storage.add_remote("origin", http_server.url("registry.git"))
    save(storage, 1)
    return storage


def pushed(storage: ProgramStorage, served: Path) -> bool:
    return git(served, "rev-parse", MAIN) == git(storage.path, "rev-parse", MAIN)


# -- proxies -------------------------------------------------------------------------------


def test_a_push_goes_through_the_proxy_of_http_proxy(
    alice: ProgramStorage,
    http_server: GitServer,
    start: Callable[..., tuple[int, Seen]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, seen = start(as_proxy(http_server))
    monkeypatch.setenv("http_proxy", f"http://{HOST}:{port}")
    assert alice.push().created == [MAIN]
    served = http_server.root / "registry.git"
    assert pushed(alice, served)
    assert_fsck_clean(served)
    # the advertisement (401, then with credentials) and the pack, every one through the proxy
    assert seen.methods() == ["GET", "GET", "POST"]
    assert len(http_server.requests) == 3
    assert all(
        target.startswith(f"http://{HOST}:{http_server.port}/") for _, target, _ in seen.requests
    )


def test_no_proxy_bypasses_the_proxy(
    alice: ProgramStorage,
    http_server: GitServer,
    start: Callable[..., tuple[int, Seen]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, seen = start(as_proxy(http_server))
    monkeypatch.setenv("HTTP_PROXY", f"http://{HOST}:{port}")
    monkeypatch.setenv("NO_PROXY", f"example.com,{HOST}")
    assert alice.push().created == [MAIN]
    assert pushed(alice, http_server.root / "registry.git")
    assert seen.requests == []
    assert [method for method, _path, _status in http_server.requests] == ["GET", "GET", "POST"]


def test_the_http_proxy_config_wins_over_the_environment(
    alice: ProgramStorage,
    http_server: GitServer,
    start: Callable[..., tuple[int, Seen]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, seen = start(as_proxy(http_server))
    dead, unused = start(as_proxy(http_server))
    monkeypatch.setenv("http_proxy", f"http://{HOST}:{dead}")
    git(alice.path, "config", "http.proxy", f"{HOST}:{port}")  # no scheme: an http:// proxy
    assert alice.push().created == [MAIN]
    assert seen.methods() == ["GET", "GET", "POST"] and unused.requests == []
    # remote.<name>.proxy wins over http.proxy; an empty one connects directly
    save(alice, 2)
    git(alice.path, "config", "remote.origin.proxy", "")
    assert alice.push().updated == [MAIN]
    assert len(seen.requests) == 3 and unused.requests == []
    assert pushed(alice, http_server.root / "registry.git")


def test_proxy_credentials_never_reach_a_message(
    alice: ProgramStorage, http_server: GitServer, tmp_path: Path
) -> None:
    with socket_bound() as closed_port:
        git(alice.path, "config", "http.proxy", f"http://pat:proxy-Secret-42@{HOST}:{closed_port}")
        with pytest.raises(RemoteError) as failed:
            alice.push()
    assert "proxy-Secret-42" not in str(failed.value)
    assert "pat:" not in str(failed.value)
    assert str(alice.registry.git.repo.references[MAIN].target) not in git(
        http_server.root / "registry.git", "for-each-ref"
    )


class socket_bound:
    """A 127.0.0.1 port bound but not listening: connections to it are refused."""

    def __enter__(self) -> int:
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        port: int = self.sock.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_which_proxy_git_rules_choose() -> None:
    url = "https://git.example.com/r.git"
    env = {"https_proxy": "http://env:3128", "http_proxy": "http://plain:3128"}
    assert proxy_for(url, None, env) == Proxy("http://env:3128")
    assert proxy_for("http://git.example.com/r.git", None, env) == Proxy("http://plain:3128")
    assert proxy_for(url, "config:8080", env) == Proxy("http://config:8080")  # config wins
    assert proxy_for(url, "", env) is None  # configured empty: no proxy
    assert proxy_for(url, None, {"HTTPS_PROXY": "http://up:1"}) == Proxy("http://up:1")
    assert proxy_for(url, None, {"ALL_PROXY": "http://all:1"}) == Proxy("http://all:1")
    cgi = {"HTTP_PROXY": "http://header-set:1", "REQUEST_METHOD": "GET"}
    assert proxy_for("http://h/r.git", None, cgi) is None  # httpoxy: a CGI's HTTP_PROXY
    assert proxy_for(url, "http://u:p%40ss@proxy:1", {}) == Proxy("http://proxy:1", "u", "p@ss")
    assert proxy_for(url, "config:8080", {"no_proxy": ".example.com"}) is None
    assert bypassed("git.example.com", "other, example.com") and bypassed("x", "*")
    assert not bypassed("notexample.com", "example.com")
    assert bypassed("127.0.0.1", "localhost,127.0.0.1")
    with pytest.raises(InvalidInputError, match="not supported"):
        proxy_for(url, "socks5://proxy:1080", {})
    with pytest.raises(InvalidInputError, match="invalid port") as bad:
        proxy_for(url, "http://u:Secret-9@proxy:99999", {})
    assert "Secret-9" not in str(bad.value)


# -- redirects -----------------------------------------------------------------------------


def test_a_redirected_info_refs_moves_the_whole_push(
    alice: ProgramStorage, http_server: GitServer, start: Callable[..., tuple[int, Seen]]
) -> None:
    """``/old.git/info/refs`` answers 301 to the real URL; the POST goes there directly."""

    def route(method: str, target: str) -> tuple[str, int] | tuple[int, str]:
        if target.startswith("/old.git/"):
            return 301, "/registry.git/" + target.removeprefix("/old.git/")
        return target, http_server.port

    port, seen = start(route)
    git(alice.path, "remote", "set-url", "origin", f"http://{HOST}:{port}/old.git")
    assert alice.push().created == [MAIN]
    served = http_server.root / "registry.git"
    assert pushed(alice, served)
    assert_fsck_clean(served)
    targets = [f"{method} {target.split('?')[0]}" for method, target, _ in seen.requests]
    assert targets == [
        "GET /old.git/info/refs",  # 301
        "GET /registry.git/info/refs",  # 401
        "GET /old.git/info/refs",  # with credentials: 301 again
        "GET /registry.git/info/refs",
        "POST /registry.git/git-receive-pack",  # the redirected base, no redirect asked
    ]


def test_a_redirect_of_the_push_itself_is_refused(
    alice: ProgramStorage, http_server: GitServer, start: Callable[..., tuple[int, Seen]]
) -> None:
    def route(method: str, target: str) -> tuple[str, int] | tuple[int, str]:
        if method == "POST":
            return 307, f"http://{HOST}:{http_server.port}{target}"
        return target, http_server.port

    port, _seen = start(route)
    git(alice.path, "remote", "set-url", "origin", f"http://{HOST}:{port}/registry.git")
    with pytest.raises(RemoteError, match="redirected the push itself"):
        alice.push()
    assert [method for method, _path, _status in http_server.requests] == ["GET", "GET"]
    assert git(http_server.root / "registry.git", "for-each-ref") == ""


def test_credentials_never_follow_a_redirect_to_another_host(
    alice: ProgramStorage, http_server: GitServer, start: Callable[..., tuple[int, Seen]]
) -> None:
    def route(_method: str, target: str) -> tuple[int, str]:
        return 302, f"http://{HOST}:{http_server.port}{target}"

    port, seen = start(route)  # another port: another origin
    git(alice.path, "remote", "set-url", "origin", f"http://{HOST}:{port}/registry.git")
    with pytest.raises(AuthenticationError) as refused:
        alice.push()
    assert http_server.password not in str(refused.value)
    assert any("Authorization" in headers for _, _, headers in seen.requests)  # its own host
    assert {status for _method, _path, status in http_server.requests} == {401}
    assert git(http_server.root / "registry.git", "for-each-ref") == ""


# -- a large pack is streamed --------------------------------------------------------------

BLOB = 1 << 20
BLOBS = 24


def commit_large_blobs(storage: ProgramStorage) -> int:
    """Commit :data:`BLOBS` incompressible blobs of :data:`BLOB` bytes on main; their size."""
    repo = storage.registry.git.repo
    builder = repo.TreeBuilder()
    for n in range(BLOBS):
        builder.insert(
            f"blob-{n:02d}", repo.create_blob(os.urandom(BLOB)), pygit2.GIT_FILEMODE_BLOB
        )
    parent = repo.references[MAIN].target
    signature = pygit2.Signature("Big Push", "big@example.com")
    tree = builder.write()
    repo.create_commit(MAIN, signature, signature, "large blobs\n", tree, [parent])
    return BLOBS * BLOB


def test_a_large_pack_is_streamed_not_held(git_daemon: GitServer, tmp_path: Path) -> None:
    served = git_daemon.create()
    storage = ProgramStorage(tmp_path / "registry")
    save(storage, 1)
    size = commit_large_blobs(storage)
    storage.registry.git.repo.remotes.create("origin", git_daemon.url("registry.git"))
    tracemalloc.start()
    try:
        outcome = remote.push(storage.registry.git, "origin", [MAIN])
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [update.ref for update in outcome.updated] == [MAIN]
    assert git(served, "rev-parse", MAIN) == git(storage.path, "rev-parse", MAIN)
    assert_fsck_clean(served)
    print(f"tracemalloc peak {peak} bytes for a pack of {size} bytes")
    assert peak < size // 4, f"peak {peak} bytes for a pack of {size} bytes"


def test_a_large_http_push_is_sent_chunked(
    alice: ProgramStorage,
    http_server: GitServer,
    start: Callable[..., tuple[int, Seen]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, seen = start(as_proxy(http_server))
    monkeypatch.setenv("http_proxy", f"http://{HOST}:{port}")
    commit_large_blobs(alice)
    assert alice.push().created == [MAIN]
    posts = [headers for method, _target, headers in seen.requests if method == "POST"]
    assert len(posts) == 1 and posts[0].get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in posts[0]
    assert_fsck_clean(http_server.root / "registry.git")
