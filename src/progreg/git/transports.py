"""Connections to a server's ``git-receive-pack``: ``git://`` (TCP) and smart HTTP(S).

* ``git://host[:port]/path``: one TCP connection; the first pkt-line names
  the service and the path (``git-receive-pack /path\\0host=<host>\\0``).
* ``http(s)://host[:port]/path``: ``GET <url>/info/refs?service=git-receive-pack``
  for the advertisement, then ``POST <url>/git-receive-pack`` with the
  commands and the pack (``gitprotocol-http``). HTTPS certificates are
  verified. A ``401`` is answered with credentials from
  :class:`~progreg.git.credentials.CredentialSource` (HTTP Basic), which
  raises :class:`~progreg.AuthenticationError` when they are refused in turn.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
from urllib.parse import unquote, urlsplit

from pygit2.enums import CredentialType

from progreg._version import __version__
from progreg.errors import AuthenticationError, RemoteError
from progreg.git.credentials import CredentialSource
from progreg.git.pktline import FLUSH, PktReader, encode, of_bytes, split
from progreg.git.urls import CREDENTIALS_HELP

#: Seconds a connection may stay silent (a slow hook included) before the push fails.
TIMEOUT = 300.0
GIT_PORT = 9418
_SERVICE = "git-receive-pack"


class GitTransport:
    """``git-receive-pack`` over a ``git://`` TCP connection."""

    def __init__(self, url: str, where: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or ""
        self.port = parts.port or GIT_PORT
        self.path = unquote(parts.path) or "/"
        self.where = where
        self._socket: socket.socket | None = None
        self._reader: PktReader | None = None

    def advertise(self) -> PktReader:
        """Connect, ask for ``git-receive-pack`` on the path, return the advertisement."""
        sock = socket.create_connection((self.host, self.port), timeout=TIMEOUT)
        self._socket = sock
        host = f"[{self.host}]" if ":" in self.host else self.host
        host = host if self.port == GIT_PORT else f"{host}:{self.port}"
        sock.sendall(encode(f"{_SERVICE} {self.path}\0host={host}\0".encode()))
        self._reader = PktReader(sock.recv, self.where)
        return self._reader

    def _connected(self) -> tuple[socket.socket, PktReader]:
        if self._socket is None or self._reader is None:
            raise RemoteError(f"{self.where}: not connected")
        return self._socket, self._reader

    def send(self, request: bytes) -> PktReader:
        """Send the commands and the pack; the reply comes on the same connection."""
        sock, reader = self._connected()
        sock.sendall(request)
        return reader

    def finish(self) -> None:
        """Tell the server nothing is pushed."""
        self._connected()[0].sendall(FLUSH)

    def close(self) -> None:
        """Close the connection."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class HttpTransport:
    """``git-receive-pack`` over smart HTTP(S), with HTTP Basic credentials on demand."""

    def __init__(self, url: str, where: str, source: CredentialSource) -> None:
        parts = urlsplit(url)
        self.url = url
        self.https = parts.scheme.lower() == "https"
        self.host = parts.hostname or ""
        self.port = parts.port
        self.path = parts.path.rstrip("/")
        self.username = unquote(parts.username) if parts.username else None
        self.where = where
        self.source = source
        self._authorization: str | None = None
        self._connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            if self.https:
                context = ssl.create_default_context()
                self._connection = http.client.HTTPSConnection(
                    self.host, self.port, timeout=TIMEOUT, context=context
                )
            else:
                self._connection = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        return self._connection

    def _request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> http.client.HTTPResponse:
        while True:
            sent = {"User-Agent": f"git/progreg-{__version__}", **headers}
            if self._authorization is not None:
                sent["Authorization"] = self._authorization
            connection = self._connect()
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            if response.status != 401:
                break
            response.read()
            self._authenticate()
        if response.status == 403:
            response.read()
            raise AuthenticationError(
                f"{self.where} refused the push (HTTP 403): these credentials may not"
                f" push there. {CREDENTIALS_HELP}"
            )
        if response.status != 200:
            response.read()
            raise RemoteError(
                f"push to {self.where} failed: HTTP {response.status} {response.reason}"
                f" for {method} {path.split('?', maxsplit=1)[0]}"
            )
        return response

    def _authenticate(self) -> None:
        """Take the next credentials (the source raises on a second request)."""
        credential = self.source(self.url, self.username, CredentialType.USERPASS_PLAINTEXT)
        values = tuple(getattr(credential, "credential_tuple", ()))
        if len(values) != 2 or not all(isinstance(v, str) for v in values):
            raise AuthenticationError(
                f"{self.where} needs a user name and password (pygit2.UserPass) over HTTP"
            )
        token = base64.b64encode(f"{values[0]}:{values[1]}".encode()).decode()
        self._authorization = f"Basic {token}"

    def advertise(self) -> PktReader:
        """``GET info/refs``: the advertisement, past the ``# service=`` header."""
        response = self._request("GET", f"{self.path}/info/refs?service={_SERVICE}", None, {})
        kind = response.getheader("Content-Type", "")
        body = response.read()
        if kind != f"application/x-{_SERVICE}-advertisement":
            raise RemoteError(
                f"{self.where} is not a smart Git HTTP server accepting pushes"
                f" (it answered {kind or 'no content type'})"
            )
        header = split(body, self.where)
        if not header or header[0].rstrip(b"\n") != f"# service={_SERVICE}".encode():
            raise RemoteError(f"{self.where} sent a malformed ref advertisement")
        return of_bytes(body[len(encode(header[0])) + len(FLUSH) :], self.where)

    def send(self, request: bytes) -> PktReader:
        """``POST git-receive-pack`` with the commands and the pack; return its reply."""
        response = self._request(
            "POST",
            f"{self.path}/{_SERVICE}",
            request,
            {
                "Content-Type": f"application/x-{_SERVICE}-request",
                "Accept": f"application/x-{_SERVICE}-result",
            },
        )
        return PktReader(response.read1, self.where)

    def finish(self) -> None:
        """Nothing to send: no request is made."""

    def close(self) -> None:
        """Close the connection."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
