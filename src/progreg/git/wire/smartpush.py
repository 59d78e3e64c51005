"""Pushes over ``git://`` and smart HTTP(S): dulwich's send-pack, progreg's objects and rules.

dulwich speaks the protocol (``gitprotocol-pack``, ``gitprotocol-http``): the
ref advertisement, the ``<old> <new> <ref>`` commands, side-band, the
report-status. progreg supplies the rest:

* every ref is judged against the advertised value before anything is sent
  (:func:`~progreg.git.refs.refupdates.plan`: branches only fast-forward, tags
  never move), in the ``update_refs`` callback, which ends the exchange with
  nothing pushed when a ref may not move;
* the pack holds what :func:`~progreg.git.wire.pushobjects.missing_object_ids`
  selects (the new commits and the parts of their trees that changed), each
  object read from the object database only when the pack reaches it, so a
  push holds one object at a time, never the pack; over HTTP a body larger
  than dulwich's post buffer (1 MiB) goes out with chunked transfer encoding;
* ``git://``: one TCP connection (``git-receive-pack /path\\0host=<host[:port]>\\0``)
  that times out after :data:`TIMEOUT` seconds of silence;
* HTTP(S) requests go through :class:`_HttpClient`: certificates verified,
  the proxy of :func:`~progreg.git.wire.proxies.proxy_for`, credentials from
  :class:`~progreg.git.wire.credentials.CredentialSource` on a ``401`` (HTTP
  Basic, to the remote's own host only), and Git's redirect rule: only the
  first request (``GET info/refs``) may be redirected, up to
  :data:`MAX_REDIRECTS` times, and the ``POST`` goes to the base URL the
  redirect named (dulwich rebases it); a redirected ``POST`` is an error;
* the server's refusals become :class:`~progreg.PushRejectedError` with its
  reasons and what its hooks printed, scrubbed of every secret.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable, Iterator, Mapping, Set
from contextlib import suppress
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote, urljoin, urlsplit

import pygit2
import urllib3
from dulwich.client import AbstractHttpGitClient, HTTPUnauthorized, TraditionalGitClient
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository, SendPackError
from dulwich.objects import ObjectID
from dulwich.pack import UnpackedObject
from dulwich.protocol import Protocol
from dulwich.refs import Ref
from pygit2.enums import CredentialType

from progreg._version import __version__
from progreg.errors import AuthenticationError, ProgregError, RemoteError
from progreg.git.refs.refupdates import (
    ZERO,
    PushOutcome,
    RefUpdate,
    hinted,
    plan,
    rejected,
    remote_lines,
)
from progreg.git.wire.credentials import CredentialSource
from progreg.git.wire.proxies import Proxy, proxy_for
from progreg.git.wire.pushobjects import missing_object_ids
from progreg.git.wire.urls import CREDENTIALS_HELP, scrub

if TYPE_CHECKING:
    from urllib3.response import BaseHTTPResponse

#: Seconds a connection may stay silent (a slow hook included) before the push fails.
TIMEOUT = 300.0
GIT_PORT = 9418
#: Redirects followed for the first request, as curl's limit in Git (``CURLOPT_MAXREDIRS``).
MAX_REDIRECTS = 20
#: What the server prints on side-band 2 (a hook's reasons) is kept up to this size.
MAX_SIDEBAND = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_BRANCHES = b"refs/heads/"


class _GitClient(TraditionalGitClient):
    """``git-receive-pack`` over one ``git://`` TCP connection, with a timeout."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(quiet=True)
        self.host, self.port = host, port

    def _connect(
        self, cmd: bytes, path: str | bytes, protocol_version: int | None = None
    ) -> tuple[Protocol, Callable[[], bool], IO[bytes] | None]:
        sock = socket.create_connection((self.host, self.port), timeout=TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rfile, wfile = sock.makefile("rb", -1), sock.makefile("wb", 0)

        def close() -> None:
            rfile.close()
            wfile.close()
            sock.close()

        def shutdown_write() -> None:
            wfile.flush()
            with suppress(OSError):
                sock.shutdown(socket.SHUT_WR)

        proto = Protocol(rfile.read, wfile.write, close, shutdown_write=shutdown_write)
        host = f"[{self.host}]" if ":" in self.host else self.host
        host = host if self.port == GIT_PORT else f"{host}:{self.port}"
        path = path if isinstance(path, bytes) else path.encode()
        self.protocol_version = 0
        proto.send_cmd(b"git-" + cmd, path, b"host=" + host.encode())
        return proto, lambda: False, None


class _HttpClient(AbstractHttpGitClient):
    """Smart HTTP(S) requests with urllib3: proxy, HTTP Basic and Git's redirect rule."""

    def __init__(
        self, url: str, where: str, proxy: Proxy | None, authorization: str | None
    ) -> None:
        super().__init__(url, quiet=True)
        self.where = where
        headers = {"User-Agent": f"git/progreg-{__version__}"}
        self.manager: urllib3.PoolManager
        if proxy is None:
            self.manager = urllib3.PoolManager(headers=headers)
        else:
            proxy_headers = (
                urllib3.make_headers(proxy_basic_auth=f"{proxy.username}:{proxy.password or ''}")
                if proxy.username is not None
                else None
            )
            self.manager = urllib3.ProxyManager(
                proxy.url, headers=headers, proxy_headers=proxy_headers
            )
        self.origin = _origin(url)
        self.authorization = authorization
        self.requests = 0

    def close(self) -> None:
        """Close the pooled connections."""
        self.manager.clear()

    def _http_request(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        data: bytes | Iterator[bytes] | None = None,
        raise_for_status: bool = True,
    ) -> tuple[Any, Callable[[int], bytes]]:
        self.requests += 1
        first, requested = self.requests == 1, url
        for _ in range(MAX_REDIRECTS + 1):
            sent = {**(headers or {}), "Pragma": "no-cache"}
            if self.authorization is not None and _origin(url) == self.origin:
                sent["Authorization"] = self.authorization  # never to another host
            response = self.manager.request(
                "GET" if data is None else "POST",
                url,
                body=data,
                headers=sent,
                redirect=False,
                retries=False,  # a streamed body cannot be sent twice
                preload_content=False,
                timeout=urllib3.Timeout(connect=TIMEOUT, read=TIMEOUT),
            )
            if response.status not in _REDIRECTS:
                break
            location = response.headers.get("Location")
            response.drain_conn()
            if not first or data is not None or not location:
                raise RemoteError(
                    f"push to {self.where} failed: the server redirected the push itself"
                    f" (HTTP {response.status}); like Git, progreg follows a redirect only"
                    " for the first request (info/refs): set the remote's URL to the new one"
                )
            url = urljoin(url, location)
            if urlsplit(url).scheme.lower() not in ("http", "https"):
                raise RemoteError(
                    f"push to {self.where} failed: the server redirected to a URL that is not"
                    " HTTP(S)"
                )
        else:
            raise RemoteError(f"push to {self.where} failed: more than {MAX_REDIRECTS} redirects")
        _check_status(response, self.where)
        response_any: Any = response
        response_any.content_type = response.headers.get("Content-Type")
        response_any.redirect_location = url if url != requested else ""
        return response_any, _reader(response)


def _reader(response: BaseHTTPResponse) -> Callable[[int], bytes]:
    def read(size: int) -> bytes:
        return response.read(size)

    return read


def _check_status(response: BaseHTTPResponse, where: str) -> None:
    """Raise the exception a failed HTTP ``response`` stands for."""
    status = response.status
    if status == 200:
        return
    response.drain_conn()
    if status == 401:
        raise HTTPUnauthorized(response.headers.get("WWW-Authenticate"), "")
    if status == 403:
        raise AuthenticationError(
            f"{where} refused the push (HTTP 403): these credentials may not push there."
            f" {CREDENTIALS_HELP}"
        )
    if status == 404:
        raise RemoteError(f"push to {where} failed: no Git repository there (HTTP 404)")
    if status == 407:
        raise AuthenticationError(
            f"the proxy to {where} asks for credentials (HTTP 407): give them in the proxy"
            " URL (http.proxy or the *_proxy environment variables)"
        )
    reason = f" {response.reason}" if response.reason else ""
    raise RemoteError(f"push to {where} failed: HTTP {status}{reason}")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


class _Printed:
    """What the server printed on side-band 2, up to :data:`MAX_SIDEBAND` bytes."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def __call__(self, data: bytes) -> None:
        if self.size < MAX_SIDEBAND:
            self.chunks.append(data)
            self.size += len(data)

    def lines(self, secrets: tuple[str, ...]) -> list[str]:
        text = b"".join(self.chunks).decode(errors="replace")
        return [scrub(line, secrets) for line in remote_lines(text)]


class _Exchange:
    """The callbacks dulwich calls during one push, and what they decided."""

    def __init__(self, repo: pygit2.Repository, wanted: Mapping[str, str], where: str) -> None:
        self.repo = repo
        self.wanted = wanted
        self.where = where
        self.updates: list[RefUpdate] = []
        self.up_to_date: list[str] = []
        self.branches: list[pygit2.Oid] = []

    def update_refs(self, advertised: dict[Ref, ObjectID]) -> dict[Ref, ObjectID]:
        """Judge every wanted ref against ``advertised``; the refs to send (none: nothing)."""

        def value(ref: str) -> str | None:
            found = advertised.get(Ref(ref.encode()))
            return None if found is None or found == ZERO.encode() else found.decode()

        self.updates, self.up_to_date, reasons = plan(self.repo, self.wanted, value)
        if reasons:
            raise rejected(self.where, reasons)
        self.branches = [
            pygit2.Oid(hex=oid.decode())
            for ref, oid in advertised.items()
            if ref.startswith(_BRANCHES) and not ref.endswith(b"^{}") and oid != ZERO.encode()
        ]
        return {Ref(u.ref.encode()): ObjectID(u.new.encode()) for u in self.updates}

    def generate_pack_data(
        self,
        have: Set[bytes],
        want: Set[bytes],
        *,
        ofs_delta: bool = False,
        progress: Callable[[bytes], None] | None = None,
    ) -> tuple[int, Iterator[UnpackedObject]]:
        """The objects the remote lacks, each read when the pack reaches it."""
        new = [pygit2.Oid(hex=oid.decode()) for oid in want]
        objects = missing_object_ids(self.repo, new, self.branches)
        odb = self.repo.odb

        def records() -> Iterator[UnpackedObject]:
            for oid, kind in objects:
                data = odb.read(pygit2.Oid(raw=oid))[1]
                yield UnpackedObject(kind, sha=oid.hex().encode(), decomp_chunks=[data])

        return len(objects), records()


#: A dulwich client for one attempt, given the ``Authorization`` header to send (if any).
ClientFactory = Callable[[str | None], tuple[TraditionalGitClient | AbstractHttpGitClient, bytes]]


def push_smart(
    repo: pygit2.Repository,
    url: str,
    wanted: Mapping[str, str],
    where: str,
    source: CredentialSource,
    proxy: str | None = None,
    env: Mapping[str, str] | None = None,
) -> PushOutcome:
    """Push ``wanted`` (ref name to new value) to ``url`` (``git://``, ``http(s)://``).

    ``where`` is the URL to show; ``proxy`` the configured proxy
    (``remote.<name>.proxy`` or ``http.proxy``, ``None`` when unset);
    ``env`` the environment the ``*_proxy`` variables are read from.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        path = (unquote(parts.path) or "/").encode()
        return send_with(
            lambda _auth: (_GitClient(parts.hostname or "", parts.port or GIT_PORT), path),
            repo,
            wanted,
            where,
            source,
        )
    chosen = proxy_for(url, proxy, source.env if env is None else env)
    base = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    extra = (chosen.password,) if chosen is not None and chosen.password else ()
    return send_with(
        lambda auth: (_HttpClient(base, where, chosen, auth), b""),
        repo,
        wanted,
        where,
        source,
        extra,
    )


def send_with(
    connect: ClientFactory,
    repo: pygit2.Repository,
    wanted: Mapping[str, str],
    where: str,
    source: CredentialSource,
    secrets: tuple[str, ...] = (),
) -> PushOutcome:
    """Push ``wanted`` with the clients ``connect`` makes: one, and one more with
    credentials from ``source`` when the server asks for them (HTTP ``401``).

    Every failure of the exchange becomes a :class:`~progreg.ProgregError`
    whose message holds none of ``secrets`` nor of those ``source`` handed out.
    """
    exchange = _Exchange(repo, wanted, where)
    printed = _Printed()
    authorization: str | None = None

    def hidden(text: str) -> str:
        return scrub(text, source.secrets() + secrets)

    try:
        while True:
            client, path = connect(authorization)
            try:
                result = client.send_pack(
                    path, exchange.update_refs, exchange.generate_pack_data, progress=printed
                )
                break
            except HTTPUnauthorized:
                authorization = _authorization(source, source.url, where)
            finally:
                client.close()
    except ProgregError:
        raise
    except SendPackError as exc:
        message = hidden(_text(exc))
        raise RemoteError(f"{where} could not store the pushed objects: {message}") from None
    except NotGitRepository:
        raise RemoteError(f"push to {where} failed: no Git repository there") from None
    except HangupException as exc:
        message = hidden(_text(exc))
        raise RemoteError(f"{where} closed the connection: {message}") from None
    except (GitProtocolError, OSError, urllib3.exceptions.HTTPError, ValueError) as exc:
        raise RemoteError(f"push to {where} failed: {hidden(_text(exc))}") from None
    except (AssertionError, LookupError, TypeError) as exc:  # dulwich on a malformed reply
        message = hidden(_text(exc))
        raise RemoteError(f"{where} sent a malformed reply: {message}") from None
    if not exchange.updates:
        return PushOutcome([], exchange.up_to_date)
    if result.ref_status is None:
        raise RemoteError(f"{where} sent no push report: the push may not have happened")
    statuses = {ref.decode(errors="replace"): reason for ref, reason in result.ref_status.items()}
    unreported = "the server did not report on this ref"
    refused = {
        u.ref: hinted(hidden(statuses.get(u.ref) or unreported))
        for u in exchange.updates
        if u.ref not in statuses or statuses[u.ref] is not None
    }
    accepted = [u for u in exchange.updates if u.ref not in refused]
    if refused:
        raise rejected(where, refused, printed.lines(source.secrets() + secrets), accepted)
    return PushOutcome(accepted, exchange.up_to_date)


def _text(exc: BaseException) -> str:
    parts = [a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in exc.args]
    return " ".join(p for p in parts if p).strip() or type(exc).__name__


def _authorization(source: CredentialSource, url: str, where: str) -> str:
    """The next ``Authorization`` header from ``source`` (which raises on a second request)."""
    username = urlsplit(url).username
    credential = source(url, unquote(username) if username else None, _USERPASS)
    values = tuple(getattr(credential, "credential_tuple", ()))
    if len(values) != 2 or not all(isinstance(v, str) for v in values):
        raise AuthenticationError(
            f"{where} needs a user name and password (pygit2.UserPass) over HTTP"
        )
    token = base64.b64encode(f"{values[0]}:{values[1]}".encode()).decode()
    return f"Basic {token}"


_USERPASS = CredentialType.USERPASS_PLAINTEXT
