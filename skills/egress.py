"""Where outbound HTTP may go: public hosts, plus the internal ones an operator allow-lists.

An HTTP tool's URL comes from a skill spec, and its arguments from a model that reads
untrusted text. Without a guard a skill (or a prompt injection steering one) could reach the
cloud metadata server, an admin port on localhost or anything on the private network, and
take the spec's credentials along. The rule here:

* a host whose every address is **public** may be called;
* an address that is loopback, link-local (169.254.0.0/16 with the metadata server, fe80::/10),
  private (RFC 1918, fc00::/7), carrier-grade NAT (100.64.0.0/10), multicast, unspecified,
  reserved or otherwise not globally routable is refused, also when it hides inside an IPv6
  address (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible, 6to4 ``2002::/16``, NAT64
  ``64:ff9b::/96``); so are names that always mean this machine or the metadata server
  (``localhost``, ``metadata.google.internal``…) whatever they resolve to;
* unless an **allow-list entry** (``SWITCHBOARD_HTTP_ALLOWED_HOSTS``) names the host or the
  address. Entries: ``crm.internal`` (exactly that name), ``*.corp.example`` (any subdomain,
  not the domain itself), ``10.20.0.7`` or ``[fd00::7]`` (one address), ``10.20.0.0/16``
  (a network), each optionally with ``:port`` to allow that port only.

Checking a name and then letting the HTTP client resolve it again would leave a window for
DNS rebinding (first answer public, second internal). :class:`EgressTransport` closes it:
its network backend resolves once, checks every address it got, and connects to a checked
address. The URL, the ``Host`` header and TLS (SNI and certificate verification) still use
the host name, so HTTPS works as usual. Proxies from the environment are not used: a proxy
would resolve the name itself, after the check.

Exceptions::

    EgressDenied   the policy refuses a host or address (deliberately not an httpx error,
                   so it passes through httpx unchanged and callers can tell it apart)
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpcore
import httpx

__all__ = [
    "AllowEntry",
    "EgressDenied",
    "EgressNetworkBackend",
    "EgressPolicy",
    "EgressTransport",
    "Resolver",
    "egress_client",
    "host_matches",
    "internal_reason",
    "parse_allow_entry",
    "system_resolver",
]

log = logging.getLogger(f"switchboard.{__name__}")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""Resolves ``(host, port)`` to IP address strings; injectable for tests."""

#: Names that mean this machine or a cloud metadata service, whatever DNS says.
_RESERVED_NAMES: Final = frozenset(
    {"localhost", "metadata", "metadata.google.internal", "metadata.goog", "instance-data"}
)
_CGNAT: Final = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64: Final = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")
_HOST_RE: Final = re.compile(
    r"(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*"
)


class EgressDenied(Exception):
    """The egress policy refuses ``host``; ``reason`` is for logs, not for the model."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"egress to {host} refused: {reason}")


# --------------------------------------------------------------------------- addresses


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in net for net in _NAT64) or (
        address in _IPV4_COMPATIBLE and int(address) > 1  # not :: or ::1
    ):
        return ipaddress.IPv4Address(address.packed[-4:])
    return None


def internal_reason(address: IPAddress) -> str | None:
    """Why ``address`` is internal (``"loopback"``, ``"link-local"``…), or None if public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = internal_reason(embedded)
            return f"{inner} IPv4 {embedded} inside IPv6" if inner else None
    checks: tuple[tuple[bool, str], ...] = (
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT, "carrier-grade NAT"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (isinstance(address, ipaddress.IPv6Address) and address.is_site_local, "site-local"),
        (not address.is_global, "not globally routable"),
    )
    return next((reason for hit, reason in checks if hit), None)


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


# --------------------------------------------------------------------------- allow-list


@dataclass(frozen=True, slots=True)
class AllowEntry:
    """One allow-list entry: a host name, a ``*.suffix``, or an address/network; ``port``
    None allows every port."""

    text: str
    name: str | None = None
    suffix: str | None = None  # ".corp.example" for "*.corp.example"
    network: IPNetwork | None = None
    port: int | None = None

    def _port_ok(self, port: int) -> bool:
        return self.port is None or self.port == port

    def matches_name(self, host: str, port: int) -> bool:
        host = _normal_host(host)
        if not self._port_ok(port):
            return False
        if self.name is not None:
            return host == self.name
        if self.suffix is not None:
            return host.endswith(self.suffix) and len(host) > len(self.suffix)
        return False

    def matches_address(self, address: IPAddress, port: int) -> bool:
        return self.network is not None and self._port_ok(port) and address in self.network


def _normal_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _parse_port(text: str, entry: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{entry!r}: {text!r} is not a port (1-65535)")
    return int(text)


def parse_allow_entry(text: str) -> AllowEntry:
    """Parse ``crm.internal``, ``*.corp.example``, ``10.0.0.7``, ``10.0.0.0/8``, ``[fd00::1]``,
    each optionally with ``:port``; ValueError naming the entry when it is none of these."""
    entry = _normal_host(text)
    port: int | None = None
    if entry.startswith("["):
        inside, _, rest = entry[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected [address] or [address]:port")
            port = _parse_port(rest[1:], text)
        address = _ip(inside)
        if not isinstance(address, ipaddress.IPv6Address):
            raise ValueError(f"{text!r}: brackets are for IPv6 addresses")
        return AllowEntry(text=text, network=ipaddress.ip_network(address), port=port)
    try:
        return AllowEntry(text=text, network=ipaddress.ip_network(entry, strict=False))
    except ValueError:
        pass
    if entry.count(":") == 1:
        entry, _, port_text = entry.partition(":")
        port = _parse_port(port_text, text)
        try:
            return AllowEntry(text=text, network=ipaddress.ip_network(entry), port=port)
        except ValueError:
            pass
    if not entry or not _HOST_RE.fullmatch(entry):
        raise ValueError(
            f"{text!r} is not a host (crm.internal, *.corp.example), an address or a network "
            "(10.0.0.0/8), optionally with :port"
        )
    if entry.startswith("*."):
        return AllowEntry(text=text, suffix=entry[1:], port=port)
    return AllowEntry(text=text, name=entry, port=port)


@functools.lru_cache(maxsize=64)
def _parse_entries(entries: tuple[str, ...]) -> tuple[AllowEntry, ...]:
    return tuple(parse_allow_entry(entry) for entry in entries)


def host_matches(host: str, allowed: Iterable[str], port: int | None = None) -> bool:
    """Whether an allow-list names ``host`` (exactly, or as a subdomain of ``*.suffix``).

    Only names are compared here: an empty list matches nothing. Addresses and networks in
    the list are matched against resolved addresses by :meth:`EgressPolicy.addresses`.
    """
    entries = _parse_entries(tuple(allowed))
    return any(e.matches_name(host, port if port is not None else (e.port or 0)) for e in entries)


# --------------------------------------------------------------------------- policy


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (``getaddrinfo``), addresses in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """The allow-list and the resolver; :meth:`addresses` is the one decision."""

    allowed: tuple[AllowEntry, ...] = ()
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def from_entries(
        cls, entries: Iterable[str], *, resolver: Resolver | None = None
    ) -> EgressPolicy:
        """A policy from allow-list strings (see :func:`parse_allow_entry`)."""
        return cls(allowed=_parse_entries(tuple(entries)), resolver=resolver or system_resolver)

    def name_allowed(self, host: str, port: int) -> bool:
        """True when an entry names ``host`` itself: its addresses are then not checked."""
        return any(entry.matches_name(host, port) for entry in self.allowed)

    def _address_allowed(self, address: IPAddress, port: int) -> str | None:
        if any(entry.matches_address(address, port) for entry in self.allowed):
            return None
        return internal_reason(address)

    async def check(self, host: str, port: int) -> None:
        """Refuse ``host:port`` before anything is sent (:class:`EgressDenied`); a name an
        entry allows is not even resolved here - the transport resolves it to connect."""
        if _ip(host) is None and self.name_allowed(_normal_host(host), port):
            return
        await self.addresses(host, port)

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for ``host:port``, every one of them checked.

        Raises :class:`EgressDenied` when the name or any address it resolves to is
        internal and not allow-listed (one internal answer is enough: a name that mixes
        public and internal answers is not one to trust), and ``OSError`` when the name
        does not resolve.
        """
        literal = _ip(host)
        if literal is not None:
            reason = self._address_allowed(literal, port)
            if reason is not None:
                raise EgressDenied(host, f"{literal} is {reason}")
            return [str(literal)]
        name = _normal_host(host)
        trusted = self.name_allowed(name, port)
        if not trusted and (name in _RESERVED_NAMES or name.endswith(".localhost")):
            raise EgressDenied(host, "a name reserved for this machine or a metadata service")
        resolved = [str(a) for a in await self.resolver(name, port)]
        if not resolved:
            raise OSError(f"{host} resolved to no address")
        checked: list[str] = []
        for text in resolved:
            address = _ip(text)
            if address is None:
                raise EgressDenied(host, f"the resolver answered {text!r}, not an address")
            if not trusted:
                reason = self._address_allowed(address, port)
                if reason is not None:
                    raise EgressDenied(host, f"resolves to {address}, which is {reason}")
            checked.append(str(address))
        return checked


# --------------------------------------------------------------------------- transport


class EgressNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the policy in ``connect_tcp``: resolve once, check
    every address, connect to a checked one (TLS then starts with the original host name)."""

    def __init__(
        self, policy: EgressPolicy, *, backend: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self._policy = policy
        self._backend = backend or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._policy.addresses(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:  # socket.gaierror and friends: the name does not resolve
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._backend.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressDenied(path, "Unix sockets are not an egress route")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


_DEFAULT_LIMITS: Final = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class EgressTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` whose connections go through :class:`EgressNetworkBackend`.

    No proxy support on purpose (see the module docstring); everything else - TLS
    verification, keep-alive pooling, HTTP/1.1 - is httpx's own.
    """

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        verify: bool | str = True,
        limits: httpx.Limits = _DEFAULT_LIMITS,
        backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        super().__init__(verify=verify, limits=limits, trust_env=False)
        # The parent built a pool with httpcore's default backend; replace it with one
        # whose connections are checked. Same options as the parent uses.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=EgressNetworkBackend(policy, backend=backend),
        )


def egress_client(
    policy: EgressPolicy, *, backend: httpcore.AsyncNetworkBackend | None = None, **kwargs: Any
) -> httpx.AsyncClient:
    """The shared client for HTTP tools: egress-checked, redirects never followed.

    ``backend`` is the network backend that makes the checked connections (httpcore's
    AnyIO backend by default).
    """
    kwargs.setdefault("follow_redirects", False)
    return httpx.AsyncClient(transport=EgressTransport(policy, backend=backend), **kwargs)
