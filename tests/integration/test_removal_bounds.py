"""Bounded work per command, on the real engine: however many images a
removal names, its plan reads the engine a constant number of times."""

from __future__ import annotations

import uuid

from bot.config import Settings
from bot.wiring import build_services, close_services
from handlers.dispatch import dispatch
from handlers.context import Actor
from handlers.replies import Status

SHELL = Actor("root", "root", via="shell")


async def test_rmi_of_250_id_prefixes_makes_a_constant_number_of_engine_calls(stack, make_image, tmp_path):
    imgs = [make_image(labels={"dockhand.bounds": uuid.uuid4().hex[:6]}) for _ in range(3)]
    services = build_services(Settings(docker_host=stack.docker_host, state_dir=str(tmp_path)))
    calls = []
    real_run = services.engine._run

    async def counting_run(operation, fn, **kw):
        calls.append(operation)
        return await real_run(operation, fn, **kw)

    services.engine._run = counting_run
    try:
        await dispatch("version", SHELL, services)  # learn the engine version first
        calls.clear()
        prefixes = [i.id[7:11] for i in imgs] + [f"{n:04x}" for n in range(0xf000, 0xf000 + 247)]
        reply = await dispatch("rmi " + " ".join(prefixes), SHELL, services)
        assert reply.status is Status.OK and reply.confirmation is not None
        assert len(reply.parts[0].rows) == 250
        assert sorted(calls) == sorted(["image list", "container list", "system df"]), calls
        too_many = await dispatch("rmi " + " ".join(f"{n:04x}" for n in range(301)), SHELL, services)
        assert too_many.status is Status.USAGE and "at most 300" in too_many.parts[0].message
        assert sorted(calls) == sorted(["image list", "container list", "system df"])  # nothing more asked
    finally:
        await close_services(services)
