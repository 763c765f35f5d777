"""Slash commands: ``/docker``, ``/images``, ``/search``, ``/pull``, ``/rmi``.

Each listener acks at once (an empty ack: nothing is shown until the reply,
and Slack's 3-second clock stops whatever the engine does), then runs the
command line ``"<verb> <text>"`` through the shared :class:`SlackRuntime`.
"""

from __future__ import annotations

from bot.config import Settings
from handlers.context import Services

from handlers.argv import READ

from .runtime import SlackRuntime, body_key, command_kind, normalize_text

# slash command -> the first word of the command line it stands for
SLASH_COMMANDS = {
    "/docker": "docker",
    "/images": "images",
    "/search": "search",
    "/pull": "pull",
    "/rmi": "rmi",
}


def command_line(verb: str, text: str) -> str:
    return f"{verb} {normalize_text(text)}".strip()


def register(app, services: Services, settings: Settings, *, runtime: SlackRuntime | None = None,
             dispatch=None) -> SlackRuntime:
    runtime = runtime or SlackRuntime(settings, services, dispatch)
    for slash, verb in SLASH_COMMANDS.items():
        app.command(slash)(_listener(runtime, verb))
    return runtime


def _listener(runtime: SlackRuntime, verb: str):
    async def on_slash_command(ack, command: dict, client, request) -> None:
        await ack()
        respond = runtime.responder(command.get("response_url"))
        async with runtime.job(respond):
            line = command_line(verb, command.get("text", ""))
            key = "cmd:" + (command.get("trigger_id") or body_key(command))
            # a command that changes the host is remembered in the store: never twice, even after a restart
            if not await runtime.first_delivery(key, request.headers, durable=command_kind(line) != READ):
                return
            channel = command.get("channel_id", "")
            forms = getattr(runtime, "pull_forms", None)
            if verb == "pull" and line == "pull" and forms is not None:
                # `/pull` alone opens the pull form (bot/slack/modals.py): at once, while the
                # trigger_id is good (3 s). `/docker pull` alone stays the CLI's usage error.
                await forms.open(client, command.get("trigger_id", ""), user_id=command.get("user_id", ""),
                                 user_name=command.get("user_name", ""), channel=channel,
                                 channel_name=str(command.get("channel_name", ""))[:80], respond=respond)
                return
            actor = await runtime.actor(command.get("user_id", ""), command.get("user_name", ""), channel,
                                        str(command.get("channel_name", "")))
            await runtime.run(line, actor, channel=channel, respond=respond, client=client)

    on_slash_command.__name__ = f"on_{verb}_command"
    on_slash_command.__qualname__ = on_slash_command.__name__
    return on_slash_command
