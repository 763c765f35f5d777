"""Composition root: turns Settings into the Services the handlers use."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import bot
from bot.config import Settings
from handlers.context import Services


class _ClientInfo(Mapping):
    """:func:`client_info`, read the first time `docker version` asks for it:
    finding the SDK's version costs a one-shot command more than most commands."""

    def __init__(self) -> None:
        self._info: dict | None = None

    def _get(self) -> dict:
        if self._info is None:
            self._info = client_info()
        return self._info

    def __getitem__(self, key):
        return self._get()[key]

    def __iter__(self):
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def client_info() -> dict:
    """Dockhand's side of `docker version`. The SDK's version comes from its
    installed metadata, without importing docker-py."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    try:
        sdk = f"docker-py {version('docker')}"
    except PackageNotFoundError:  # pragma: no cover - a dependency of the package
        sdk = "docker-py"
    return {"version": bot.__version__, "python": platform.python_version(), "sdk": sdk,
            "os_arch": f"{platform.system().lower()}/{platform.machine()}"}


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc), "" when unknown:
    with the pid it names one process even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def runner_id() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def runner_alive(runner: str) -> bool:
    """Is the process that ``runner`` names still running? Only this host's
    processes can be checked; one on another host is taken as alive (its own
    restart recovers it)."""
    host, _, rest = runner.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname():
        return True
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    return bool(started) and _start_time(pid) == started


class _Catalog:
    """The registry client (``bot/registry.py``: catalog and tag lists over
    HTTP), made on first use: most commands list no registry, and a one-shot
    command would pay for loading it (and its token and insecure-registry
    modules) at every start. Implements ``handlers.ports.RegistryCatalog``."""

    def __init__(self, make) -> None:
        self._make = make
        self._client = None

    def _get(self):
        if self._client is None:
            self._client = self._make()
        return self._client

    async def catalog(self, registry: str, **options) -> list[str]:
        return await self._get().catalog(registry, **options)

    async def tags(self, registry: str, repository: str, **options) -> list[str]:
        return await self._get().tags(registry, repository, **options)


def build_services(settings: Settings, metrics=None) -> Services:
    """The engine adapter, the state store (SQLite) and the audit log
    (hash-chained JSON Lines) in the state directory, and the access policy.

    ``metrics``: the app's :class:`bot.metrics.Metrics`, where the engine
    counts its calls (``engine.metrics``); None (the shell) counts nothing."""
    from bot.audit_log import AuditLog
    from bot.credentials import CredentialStore
    from bot.engine import DockerEngine
    from bot.store import SqliteStore

    credentials = CredentialStore(settings.registry_logins, docker_config=settings.docker_config)
    store, audit = SqliteStore.open(settings.state_path), AuditLog(settings.audit_log_path)
    info = _ClientInfo()

    def one(target, label: str, policy) -> Services:
        engine = DockerEngine(target, timeout=settings.engine_timeout,
                              stall_timeout=settings.pull_stall_timeout, credentials=credentials,
                              per_person=settings.per_person_registry_calls,
                              per_registry=settings.per_registry_calls, label=label, metrics=metrics)
        engine.run_limits = settings.run_limits()  # `docker run` smoke tests on this host

        def registry_client():
            from bot.insecure_registries import EngineRegistrySecurity
            from bot.registry import RegistryClient

            # HTTP only where the engine's --insecure-registry settings (docker info) allow it
            return RegistryClient(credentials, lane=engine.registry_slot, security=EngineRegistrySecurity(engine.info))

        return Services(engine=engine, host_label=label, search_index=settings.search_index,
                        catalog=_Catalog(registry_client),
                        client_info=info, store=store, audit=audit, policy=policy,
                        confirm_ttl=settings.confirm_ttl, runner=runner_id(), runner_alive=runner_alive)

    hosts = settings.hosts
    if hosts is None:  # one engine, unnamed: DOCKER_HOST, a context or the default socket
        return one(settings.target, settings.host_label, settings.policy())
    return build_fleet(hosts, lambda h: one(h.target, h.name, settings.policy(h)))


def build_fleet(hosts, make) -> Services:
    """Many hosts: one Services per named host (its own engine adapter, thread
    pool and policy; the store and audit log shared), all holding the same
    :class:`handlers.fleet.Fleet`. The default host's Services is returned:
    front ends hold it, and dispatch picks the host each command names."""
    from handlers.fleet import Fleet

    targets = {h.name: make(h) for h in hosts.hosts}
    fleet = Fleet(targets, hosts.default, dict(hosts.groups), dict(hosts.channels),
                  {h.name: h.timeout for h in hosts.hosts})
    for services in targets.values():
        services.fleet = fleet
    return targets[hosts.default]


async def close_services(services: Services) -> None:
    """Close what build_services opened (every host's engine, then the store)."""
    engines = ([s.engine for s in services.fleet.targets.values()] if services.fleet is not None
               else [services.engine])
    try:
        for engine in engines:
            try:
                # many hosts: a frozen host's calls are not waited for (stuck_hosts says which remain)
                await (engine.close(wait=False) if services.fleet is not None else engine.close())
            except Exception:  # one host's adapter failing to close must not keep the others open
                import logging

                logging.getLogger("dockhand.wiring").exception("closing the engine of %s", engine.host)
    finally:
        if services.store is not None:
            await services.store.close()


def stuck_hosts(services: Services) -> list[str]:
    """Hosts whose engine still holds a call in a worker thread (a frozen
    engine): the process need not wait for them to end (bot/cli.py)."""
    if services.fleet is None:
        return []
    return [name for name, s in services.fleet.targets.items() if getattr(s.engine, "busy", 0)]
