"""Who may load the viewer page and open its websocket.

viser has no authentication, and any web page the user visits can open a websocket to
``localhost``. :class:`AccessPolicy` decides, from the HTTP request alone (before any
scene or GUI message is sent), whether to serve it:

* **Origin**: a websocket handshake that carries an ``Origin`` must come from the page
  this server served (Origin host = ``Host`` header). One without an ``Origin`` (not a
  browser) must carry the token.
* **Loopback** (bound to 127.0.0.0/8, ::1 or localhost): no token is needed, but the
  ``Host`` header must name this machine's loopback, so a page that re-points its own
  domain name at 127.0.0.1 (DNS rebinding) is still refused.
* **Any other address** (``--host 0.0.0.0``, a LAN address): every request needs the
  random token, like Jupyter's. The printed URL carries it (``/?token=...``); loading the
  page with it sets a cookie (viser's client drops the query from the websocket URL, the
  browser sends the cookie with the handshake).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Optional, Protocol
from urllib.parse import parse_qs, urlsplit


class Headers(Protocol):
    """The part of an HTTP header mapping the policy reads (websockets' ``Headers`` has it)."""

    def get_all(self, key: str) -> list[str]: ...


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a ``Host`` header's name) is this machine's loopback."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _hostname(host_header: str) -> str:
    """The host name of a ``Host`` header (``[::1]:8080`` -> ``::1``); empty when malformed."""
    try:
        return urlsplit(f"//{host_header}").hostname or ""
    except ValueError:
        return ""


def _same_origin(origin: str, host_header: str) -> bool:
    """Whether an ``Origin`` header names the host of the ``Host`` header (same name and port)."""
    try:
        return urlsplit(origin).netloc.lower() == host_header.lower()
    except ValueError:
        return False


def _single(headers: Headers, name: str) -> Optional[str]:
    """The one value of header ``name``; None when absent. Raises ValueError when repeated."""
    values = headers.get_all(name)
    if len(values) > 1:
        raise ValueError(f"more than one {name} header")
    return values[0] if values else None


@dataclass
class AccessPolicy:
    """The viewer's access rules for one server.

    Attributes:
        token_required: every request needs the token (the server is not on loopback).
        cookie_name: the cookie that carries the token (one per port: cookies ignore ports).
        token: random, URL-safe; also accepted from non-browser clients on loopback.
    """

    token_required: bool
    cookie_name: str
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @classmethod
    def for_host(cls, host: str, port: int) -> "AccessPolicy":
        """The policy for a server bound to ``host``: a token unless ``host`` is loopback."""
        return cls(token_required=not is_loopback(host), cookie_name=f"render3d-token-{port}")

    # ----- what a request carries -------------------------------------------------------------
    def _matches(self, candidate: Optional[str]) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.token.encode())

    def _query_token(self, path: str) -> Optional[str]:
        try:
            values = parse_qs(urlsplit(path).query).get("token", [])
        except ValueError:
            return None
        return values[0] if len(values) == 1 else None

    def _cookie_token(self, headers: Headers) -> Optional[str]:
        for header in headers.get_all("Cookie"):
            try:
                cookies = SimpleCookie(header)
            except CookieError:
                continue
            if self.cookie_name in cookies:
                return cookies[self.cookie_name].value
        return None

    def has_token(self, path: str, headers: Headers) -> bool:
        """Whether the request carries the token, in its query (``?token=``) or its cookie."""
        return self._matches(self._query_token(path)) or self._matches(self._cookie_token(headers))

    # ----- decisions ----------------------------------------------------------------------------
    def refusal(self, path: str, headers: Headers, websocket: bool) -> Optional[str]:
        """Why the request (a page load, or a websocket handshake) is refused; None to serve it.

        The reason goes back to the client, so it never repeats what the request carried.
        """
        try:
            host = _single(headers, "Host")
            origin = _single(headers, "Origin")
        except ValueError as exc:
            return str(exc)
        if host is None:
            return "no Host header"
        if not self.token_required and not is_loopback(_hostname(host)):
            return "this viewer serves only this machine (the Host header is not a loopback name)"
        has_token = self.has_token(path, headers)
        if self.token_required and not has_token:
            return "this viewer needs its token: open the URL (with ?token=...) that render3d printed"
        if websocket:
            if origin is None and not has_token:
                return "a client without an Origin header must give the token"
            if origin is not None and not _same_origin(origin, host):
                return "cross-origin websocket refused (Origin is not this page)"
        return None

    def cookie_for(self, path: str) -> Optional[str]:
        """A ``Set-Cookie`` value for a page loaded with the token in its URL; None otherwise."""
        if not (self.token_required and self._matches(self._query_token(path))):
            return None
        return f"{self.cookie_name}={self.token}; Path=/; HttpOnly; SameSite=Strict"

    def url(self, base: str) -> str:
        """``base`` (``http://host:port``) as printed: with the token when one is required."""
        return f"{base}/?token={self.token}" if self.token_required else base
