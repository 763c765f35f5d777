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
    from bot.engine import DockerEngine

    engine = DockerEngine(settings.docker_host, timeout=settings.engine_timeout)
    return Services(engine=engine, host_label=settings.host_label, search_index=settings.search_index,
                    client_info=client_info())
