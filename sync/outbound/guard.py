"""Which URLs the service may send events to: the guard against server-side request forgery.

An app's endpoint is an `https` URL whose host resolves to public addresses only. With
ALLOW_PRIVATE_WEBHOOK_URLS (local development, tests) `http` is allowed too, and so are private,
loopback and link-local addresses; multicast, unspecified and reserved ones never are. The check runs
when the endpoint is registered and again at every delivery, which then connects to the address it
checked (never resolving the name a second time, so a DNS answer changed in between cannot
redirect it inside).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
SCHEMES = ("http", "https")


class UnsafeUrl(ValueError):
    """A URL events may not be sent to; the message says why (it names the host, never a query)."""


@dataclass(frozen=True)
class Target:
    """Where one delivery goes: the URL's parts and the address checked for its host."""

    scheme: str
    host: str
    port: int
    path: str  # with its query
    address: str


def check_url(url: str, *, allow_private: bool) -> Target:
    """The URL's target, its host resolved and every address checked; UnsafeUrl otherwise."""
    scheme, host, port, path = parts_of(url)
    if scheme != "https" and not allow_private:
        raise UnsafeUrl("the URL must be https://")
    addresses = resolve(host, port)
    for address in addresses:
        refuse_address(address, allow_private=allow_private)
    return Target(scheme, host, port, path, str(addresses[0]))


def parts_of(url: str) -> tuple[str, str, int, str]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrl("not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UnsafeUrl("the URL must be https:// (or http:// where private URLs are allowed)")
    if not parts.hostname:
        raise UnsafeUrl("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("the URL may not carry credentials")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80), path


def resolve(host: str, port: int) -> list[Address]:
    """Every address the host resolves to (an IP literal: itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass  # a name
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UnsafeUrl(f"the host {host!r} does not resolve") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in found]
    if not addresses:
        raise UnsafeUrl(f"the host {host!r} does not resolve")
    return addresses


def refuse_address(address: Address, *, allow_private: bool) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_multicast or address.is_unspecified:
        raise UnsafeUrl(f"the host resolves to {address}, which is not a unicast address")
    internal = address.is_private or address.is_loopback or address.is_link_local
    if internal and allow_private:
        return
    # ::1 counts as reserved too (::/8): only after the allowance above.
    if internal or address.is_reserved or not address.is_global:
        raise UnsafeUrl(f"the host resolves to {address}, which is not a public address")
