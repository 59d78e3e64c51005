"""Which HTTP proxy a push goes through, by Git's rules (``http.proxy``, ``no_proxy``).

Git (``http.c``) takes the proxy from the configuration first,
``remote.<name>.proxy`` then ``http.proxy``, and only without either from
the environment as curl reads it: ``https_proxy`` for ``https://`` URLs,
``http_proxy`` for ``http://`` ones, then ``all_proxy`` (upper case too; an
upper-case ``HTTP_PROXY`` is ignored inside a CGI program, where any client
can set it through a ``Proxy:`` header, as curl and Python do). A configured
empty value turns the proxy off. ``no_proxy`` (comma-separated host names,
domain suffixes, ``*`` for every host) bypasses the proxy, whichever of the
two named it. A proxy without a scheme is an ``http://`` proxy; its user
information, if any, is sent as ``Proxy-Authorization`` and kept out of every
message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from progreg.errors import InvalidInputError


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy: its URL without user information, and the credentials it was given."""

    url: str
    username: str | None = None
    password: str | None = None


def _environment(scheme: str, env: Mapping[str, str]) -> str | None:
    names = [f"{scheme}_proxy"]
    if scheme != "http" or "REQUEST_METHOD" not in env:
        names.append(f"{scheme.upper()}_PROXY")
    names += ["all_proxy", "ALL_PROXY"]
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


def bypassed(host: str, no_proxy: str) -> bool:
    """True when ``no_proxy`` (curl's list: names, ``.suffix``, ``*``) names ``host``."""
    host = host.lower().strip("[]").rstrip(".")
    for listed in no_proxy.split(","):
        entry = listed.strip().lower().strip("[]").rstrip(".")
        if entry == "*":
            return True
        domain = entry.lstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False


def proxy_for(url: str, configured: str | None, env: Mapping[str, str]) -> Proxy | None:
    """The proxy a request to ``url`` goes through, or ``None`` to connect directly.

    ``configured`` is the registry's ``remote.<name>.proxy`` or
    ``http.proxy`` (``None`` when neither is set, ``""`` to turn proxies off).
    """
    parts = urlsplit(url)
    value = configured if configured is not None else _environment(parts.scheme.lower(), env)
    if not value:
        return None
    no_proxy = env.get("no_proxy") or env.get("NO_PROXY") or ""
    if no_proxy and bypassed(parts.hostname or "", no_proxy):
        return None
    if "://" not in value:
        value = "http://" + value
    proxy = urlsplit(value)
    if proxy.scheme.lower() not in ("http", "https") or not proxy.hostname:
        raise InvalidInputError(
            f"proxy {proxy.scheme}://{proxy.hostname or ''} is not supported: progreg pushes"
            " through http:// and https:// proxies (check http.proxy, remote.<name>.proxy"
            " and the *_proxy environment variables)"
        )
    try:
        port = proxy.port
    except ValueError:
        raise InvalidInputError(
            f"the proxy {proxy.scheme}://{proxy.hostname} has an invalid port: check"
            " http.proxy, remote.<name>.proxy and the *_proxy environment variables"
        ) from None
    host = f"[{proxy.hostname}]" if ":" in proxy.hostname else proxy.hostname
    where = f"{proxy.scheme.lower()}://{host}" + (f":{port}" if port else "")
    username = unquote(proxy.username) if proxy.username else None
    password = unquote(proxy.password) if proxy.password else None
    return Proxy(where, username, password)
