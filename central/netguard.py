"""Where the endpoint may send webhooks: public addresses only, unless the operator allows internal targets.

An admin types webhook URLs, and the endpoint then POSTs to them from inside the network; without this check a
URL such as http://127.0.0.1:5432/ or http://169.254.169.254/ turns alert delivery into a probe of internal
services (blind SSRF). Checked when a rule is saved and again before each delivery (DNS may have changed).
Pure functions plus a DNS lookup; any thread.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

Resolver = Callable[[str, int], list[str]]
ALLOW_INTERNAL_ENV = "DESKWARDEN_ALLOW_INTERNAL_WEBHOOKS"


class InternalTarget(ValueError):
    """The URL points at (or resolves to) a loopback, private, link-local or otherwise non-public address."""


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise InternalTarget(f"webhook host {host!r} does not resolve ({type(exc).__name__})") from None
    return sorted({str(info[4][0]) for info in infos})


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_webhook_url(url: str, *, allow_internal: bool, resolver: Resolver = resolve) -> None:
    """Raise InternalTarget unless every address `url`'s host resolves to is public (or internal is allowed)."""
    if allow_internal:
        return
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise InternalTarget("webhook URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InternalTarget("webhook URL has an invalid port") from None
    addresses = resolver(host, port)
    internal = [a for a in addresses if not is_public(a)]
    if internal or not addresses:
        raise InternalTarget(
            f"webhook host {host} is internal ({', '.join(internal) or 'no address'}); "
            f"internal targets need {ALLOW_INTERNAL_ENV}=1 on the endpoint"
        )
