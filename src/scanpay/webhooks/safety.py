"""Where a webhook may go: http(s) URLs whose host resolves to public addresses only.

Checked twice: when an endpoint is created (the API answers 422 with the reason) and before
every delivery, on the address actually connected to (:func:`resolve_public`; the sender
connects to that address, so a name re-pointed after the check — DNS rebinding — gains
nothing). Loopback, private, link-local (cloud metadata at 169.254.169.254), shared,
multicast, reserved and unspecified addresses are refused, as are IPv6 forms of them,
unless private addresses are allowed (the demo and tests: ``webhook_allow_private``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from scanpay.errors import ValidationError

MAX_URL: Final = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrlError(ValidationError):
    code = "WEBHOOK_URL_REFUSED"


@dataclass(frozen=True)
class Target:
    """A parsed endpoint URL: what to connect to and what to say in ``Host``/SNI."""

    url: str
    scheme: str
    host: str  # a name or a literal address, without brackets
    port: int
    path: str  # path and query, at least "/"

    @property
    def host_header(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return shown if self.port == default else f"{shown}:{self.port}"


def parse_url(url: str) -> Target:
    """Parse an endpoint URL or raise :class:`UnsafeUrlError` saying what is wrong."""
    if len(url) > MAX_URL or any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise UnsafeUrlError("the URL is too long or contains spaces or control characters")
    if not url.isascii():
        raise UnsafeUrlError(
            "the URL must be ASCII: percent-encode its path and write the host in its "
            "xn-- (punycode) form"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrlError("the URL must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrlError("the URL must not contain a user name or password")
    if parts.fragment:
        raise UnsafeUrlError("the URL must not contain a fragment")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise UnsafeUrlError("the URL's port is not a number from 0 to 65535") from None
    if not host:
        raise UnsafeUrlError("the URL has no host")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    default = 443 if parts.scheme == "https" else 80
    return Target(url, parts.scheme, host, port or default, path)


def refusal(address: IPAddress) -> str | None:
    """Why webhooks may not go to ``address``; None for a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        return "the unspecified address (it reaches this machine)"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata lives here)"
    if address.is_private:
        return "a private address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved or not address.is_global:
        return "not a public address"
    return None


def literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (a literal is itself); UnsafeUrlError if none."""
    found = literal(host)
    if found is not None:
        return [found]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError):
        raise UnsafeUrlError(f"the host {host!r} does not resolve") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeUrlError(f"the host {host!r} does not resolve")
    return addresses


async def resolve_public(target: Target, *, allow_private: bool) -> IPAddress:
    """The address to connect to for ``target``: every address the host resolves to must
    be public (unless ``allow_private``), else :class:`UnsafeUrlError` with the reason."""
    addresses = await resolve(target.host, target.port)
    if not allow_private:
        for address in addresses:
            why = refusal(address)
            if why is not None:
                shown = "" if literal(target.host) is not None else f"{target.host} resolves to "
                raise UnsafeUrlError(f"webhook URL refused: {shown}{address} is {why}")
    return addresses[0]


async def check_url(url: str, *, allow_private: bool) -> Target:
    """Parse and check an endpoint URL (at creation)."""
    target = parse_url(url)
    await resolve_public(target, allow_private=allow_private)
    return target
