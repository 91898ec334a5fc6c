"""Where a webhook may be sent: http(s) to public addresses only (unless private ones are allowed).

The host is resolved and every address it resolves to is checked, at creation and again at
send time; the request then goes to the address that was checked (no second lookup a DNS
rebinding could answer differently), and redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from lifeline.errors import Unprocessable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Cloud metadata services that are not covered by the link-local range.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
)


class UnsafeUrl(Unprocessable):
    """The URL is not one Lifeline will send webhooks to."""


@dataclass(frozen=True)
class Target:
    """A checked destination: connect to ``address``, present ``host``."""

    url: str
    scheme: str
    host: str
    port: int
    address: str

    @property
    def pinned_url(self) -> str:
        """The URL with its host replaced by the checked address."""
        parts = urlsplit(self.url)
        literal = f"[{self.address}]" if ":" in self.address else self.address
        netloc = f"{literal}:{self.port}"
        query = f"?{parts.query}" if parts.query else ""
        return f"{parts.scheme}://{netloc}{parts.path or '/'}{query}"


def is_forbidden_address(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address in METADATA_ADDRESSES
        # Carrier-grade NAT (100.64.0.0/10) is not "private" to ipaddress, nor public.
        or (isinstance(address, ipaddress.IPv4Address) and not address.is_global)
    )


def parse_url(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of an http(s) URL, or a 422 naming ``url``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"url: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("url: must be an http or https URL")
    if not parts.hostname:
        raise UnsafeUrl("url: has no host")
    if parts.username or parts.password:
        raise UnsafeUrl("url: must not carry credentials")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except OSError as exc:
        raise UnsafeUrl(f"url: the host {host!r} does not resolve ({exc})") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeUrl(f"url: the host {host!r} does not resolve")
    return addresses


async def check_url(url: str, *, allow_private: bool) -> Target:
    """Resolve and vet ``url``; raises :class:`UnsafeUrl` (a 422 on ``url``) if refused."""
    scheme, host, port = parse_url(url)
    addresses = await resolve(host, port)
    if not allow_private:
        for address in addresses:
            if is_forbidden_address(address):
                raise UnsafeUrl(
                    f"url: {host} resolves to {address}, a loopback, private, link-local or "
                    "metadata address; webhooks go to public addresses only"
                )
    return Target(url=url, scheme=scheme, host=host, port=port, address=str(addresses[0]))
