"""Which registries the engine talks to without verified TLS, as it decides.

Docker Engine treats a registry as *insecure* when its ``--insecure-registry``
settings say so; for such a registry it tries HTTPS without checking the
certificate, then plain HTTP. Every other registry is HTTPS with a verified
certificate only. The engine shows its settings in ``GET /info``
(``docker info``) as ``RegistryConfig``:

* ``IndexConfigs``: ``{name: {"Name", "Secure", "Official", "Mirrors"}}``,
  one entry per registry named in ``--insecure-registry host[:port]`` (with
  ``Secure: false``) and ``docker.io`` (always secure);
* ``InsecureRegistryCIDRs``: the CIDR entries of ``--insecure-registry``,
  always with ``127.0.0.0/8`` (the engine adds loopback itself).

The decision is moby's ``isSecureIndex`` (``registry/config.go``): an
``IndexConfigs`` entry for exactly the registry's ``host[:port]`` decides;
otherwise the host (an IP address, or a name resolved to its addresses) is
insecure when one of its addresses is in one of the CIDRs. A name that does
not resolve is secure. Names are resolved where Dockhand runs, which is the
engine's host when Dockhand talks to a local socket (the usual set-up).

:class:`EngineRegistrySecurity` asks the engine once and keeps its answer
for :data:`TTL` seconds (the settings change only when the daemon reloads
its configuration). While the engine cannot be asked, the engine's own
defaults apply (only ``127.0.0.0/8`` insecure), and it is asked again after
:data:`RETRY` seconds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
import urllib.parse
from dataclasses import field
from typing import Awaitable, Callable, Mapping

from handlers.records import record

__all__ = ["DEFAULT_CONFIG", "EngineRegistrySecurity", "RegistrySecurityConfig", "split_host"]

log = logging.getLogger("dockhand.registry")

TTL = 300.0  # seconds the engine's registry settings are kept
RETRY = 15.0  # seconds before asking again an engine that did not answer
RESOLVE_TIMEOUT = 5.0  # seconds to resolve a registry's host name
HUB = "docker.io"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def split_host(registry: str) -> str:
    """``host[:port]`` (``[v6]:port`` too) -> host."""
    return urllib.parse.urlsplit(f"//{registry}").hostname or ""


@record
class RegistrySecurityConfig:
    """The engine's ``RegistryConfig``, as far as security goes."""

    cidrs: tuple[Network, ...] = ()
    indexes: Mapping[str, bool] = field(default_factory=dict)  # lower-case name -> secure
    from_engine: bool = False

    @classmethod
    def from_info(cls, info: object) -> "RegistrySecurityConfig":
        """From the engine's ``GET /info`` answer; entries that do not parse are skipped."""
        rc = info.get("RegistryConfig") if isinstance(info, dict) else None
        if not isinstance(rc, dict):
            return DEFAULT_CONFIG
        cidrs: list[Network] = []
        for text in rc.get("InsecureRegistryCIDRs") or []:
            try:
                cidrs.append(ipaddress.ip_network(str(text), strict=False))
            except ValueError:
                log.warning("engine RegistryConfig: ignoring an insecure-registry CIDR that does not parse")
        indexes: dict[str, bool] = {}
        for name, entry in (rc.get("IndexConfigs") or {}).items() if isinstance(rc.get("IndexConfigs"), dict) else ():
            if isinstance(name, str) and isinstance(entry, dict) and isinstance(entry.get("Secure"), bool):
                indexes[name.lower()] = entry["Secure"]
        return cls(tuple(cidrs), indexes, from_engine=True)

    def configured(self, registry: str) -> bool | None:
        """Secure per an ``IndexConfigs`` entry for exactly this name; None when there is none."""
        name = registry.lower()
        if name in ("index.docker.io", "registry-1.docker.io"):
            name = HUB
        return self.indexes.get(name)

    def insecure_addresses(self, addresses) -> bool:
        for addr in addresses:
            try:
                ip = ipaddress.ip_address(addr)
            except ValueError:
                continue
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            if any(ip.version == net.version and ip in net for net in self.cidrs):
                return True
        return False


DEFAULT_CONFIG = RegistrySecurityConfig((ipaddress.ip_network("127.0.0.0/8"),), {HUB: True})


async def resolve(host: str, timeout: float = RESOLVE_TIMEOUT) -> list[str]:
    """The host's addresses (an IP address is itself); [] when it does not resolve."""
    if not host:
        return []
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout)
    except (OSError, asyncio.TimeoutError, UnicodeError):
        return []
    return list(dict.fromkeys(info[4][0].split("%", 1)[0] for info in infos))


async def is_insecure(config: RegistrySecurityConfig, registry: str, *, resolver=resolve) -> bool:
    """moby's ``!isSecureIndex(config, registry)``."""
    secure = config.configured(registry)
    if secure is not None:
        return not secure
    if not config.cidrs:
        return False
    return config.insecure_addresses(await resolver(split_host(registry)))


class EngineRegistrySecurity:
    """``await security.insecure("host:port")``, decided on the engine's own settings."""

    def __init__(self, info: Callable[[], Awaitable[dict]] | None, *, ttl: float = TTL, retry: float = RETRY,
                 clock: Callable[[], float] = time.monotonic, resolver=resolve):
        self._info = info
        self._ttl = float(ttl)
        self._retry = float(retry)
        self._clock = clock
        self._resolver = resolver
        self._config: RegistrySecurityConfig | None = None
        self._until = 0.0
        self._lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    def __repr__(self) -> str:
        return f"EngineRegistrySecurity(config={self._config!r})"

    async def config(self) -> RegistrySecurityConfig:
        if self._config is not None and self._clock() < self._until:
            return self._config
        if self._info is None:
            self._config, self._until = DEFAULT_CONFIG, float("inf")
            return DEFAULT_CONFIG
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())
        async with self._lock[1]:  # one `GET /info` for everyone waiting
            if self._config is not None and self._clock() < self._until:
                return self._config
            try:
                info = await self._info()
            except Exception as exc:  # noqa: BLE001 - any failure: the engine's defaults, for a while
                log.warning("cannot read the engine's insecure-registry settings (%s); "
                            "treating only 127.0.0.0/8 as insecure for now", type(exc).__name__)
                self._config, self._until = DEFAULT_CONFIG, self._clock() + self._retry
                return DEFAULT_CONFIG
            self._config, self._until = RegistrySecurityConfig.from_info(info), self._clock() + self._ttl
            return self._config

    async def insecure(self, registry: str) -> bool:
        return await is_insecure(await self.config(), registry, resolver=self._resolver)
