"""Composition root: turns Settings into the Services the handlers use."""

from __future__ import annotations

import platform

import bot
from bot.config import Settings
from handlers.context import Services


def client_info() -> dict:
    import docker

    return {"version": bot.__version__, "python": platform.python_version(),
            "sdk": f"docker-py {docker.__version__}",
            "os_arch": f"{platform.system().lower()}/{platform.machine()}"}


def build_services(settings: Settings) -> Services:
    """The engine adapter, the state store (SQLite) and the audit log
    (hash-chained JSON Lines) in the state directory, and the access policy."""
    from bot.audit_log import AuditLog
    from bot.engine import DockerEngine
    from bot.store import SqliteStore

    engine = DockerEngine(settings.docker_host, timeout=settings.engine_timeout)
    state = settings.state_path
    return Services(engine=engine, host_label=settings.host_label, search_index=settings.search_index,
                    client_info=client_info(), store=SqliteStore.open(state),
                    audit=AuditLog(settings.audit_log_path), policy=settings.policy(),
                    confirm_ttl=settings.confirm_ttl)


async def close_services(services: Services) -> None:
    """Close what build_services opened (engine, then the store)."""
    try:
        await services.engine.close()
    finally:
        if services.store is not None:
            await services.store.close()
