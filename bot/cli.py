"""The ``dockhand`` command.

    dockhand                  Slack when SLACK_BOT_TOKEN is set, else the shell
    dockhand shell [-c CMD]   the terminal front end (interactive, or one command)
    dockhand slack            the Slack front end (HTTP, or Socket Mode with SLACK_APP_TOKEN)
    dockhand --version

Exit statuses: 0 ok, 1 the command failed, 2 usage or configuration error.
"""

from __future__ import annotations

import gc
import sys

# Nothing heavy at module level: entry() turns the cyclic garbage collector off
# before Dockhand loads (see _loaded), so every import happens inside functions.


def entry() -> None:
    """The ``dockhand`` command: :func:`main`, then exit without tearing the
    interpreter down. By then main has closed what it opened (the store, the
    audit log, the engine's connections and threads); the module teardown
    that remains costs a one-shot command about 30 ms and does nothing.

    While Dockhand loads (imports, settings, services, the front end), the
    cyclic garbage collector is off: the tens of thousands of objects that
    loading makes are all kept, and collecting passes over them cost a
    one-shot command ~8 ms. :func:`_loaded` freezes them and turns it on
    again before any command runs."""
    gc.disable()
    import logging
    import os

    try:
        status = main()
    except KeyboardInterrupt:
        status = 130
    except SystemExit as exc:  # argparse's --help, --version and usage errors
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`dockhand ... | head`)
            pass
    os._exit(status)


def _loaded() -> None:
    """Dockhand is loaded: what loading made moves to the collector's
    permanent generation (``gc.freeze``), and collection is turned on again
    when :func:`entry` had turned it off."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def main(argv: list[str] | None = None) -> int:
    import asyncio

    from bot.cli_args import command_value_first, parser
    from bot.config import ConfigError, load_dotenv_file, load_settings

    args = parser().parse_args(command_value_first(sys.argv[1:] if argv is None else argv))
    mode = args.mode
    try:
        load_dotenv_file(args.env_file)
        settings = load_settings(slack={"slack": True, "shell": False, "audit": False}.get(mode))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"dockhand: {problem}", file=sys.stderr)
        return 2
    from bot import logs

    logs.setup(settings, stream=sys.stderr)  # text or JSON lines, secrets redacted
    from bot.engine_check import quiet_sdk_logs

    quiet_sdk_logs(settings.log_level)  # the transport libraries' own failure logs (paramiko)
    if mode is None:
        mode = "slack" if settings.slack_enabled else "shell"

    if mode == "audit":
        _loaded()
        return _audit(args, settings)

    from bot.wiring import build_services, close_services

    try:
        services = build_services(settings)
    except OSError as exc:
        print(f"dockhand: cannot use the state directory {settings.state_path} ({exc.strerror or exc}): "
              "set DOCKHAND_STATE_DIR to a writable directory", file=sys.stderr)
        return 2
    if settings.hosts is not None:
        # many hosts: each is asked once; one that does not answer is named, never stops the others
        for line in asyncio.run(_reach_hosts(services)):
            print(f"dockhand: warning: {line}", file=sys.stderr)
    target = settings.target
    if settings.hosts is None and target.tls is not None and not target.tls.verify:
        print(f"dockhand: warning: TLS to {target.url} does not verify the engine's certificate "
              f"({target.tls.origin}); set DOCKER_TLS_VERIFY=1 to verify it", file=sys.stderr)
    # DOCKER_HOST or a context names the engine: it must answer before anything is served. The
    # question leaves now, and the front end loads while the engine answers.
    checking = target.explicit and settings.hosts is None
    asked = services.engine.ask_ping() if checking else None
    one_shot = args.__dict__.get("command") is not None
    if one_shot and settings.hosts is None:
        services.engine.prefetch_info()  # the context line's question, while the engine is idle
    if mode == "slack":
        from bot.slack.app import serve
    elif one_shot:
        from bot.shell import run_once
    else:
        from bot.shell import interactive
    if checking:
        problem = asyncio.run(_reach(services, target, settings.engine_timeout, asked))
        if problem:
            print(f"dockhand: {problem}", file=sys.stderr)
            return 1
    _loaded()
    if mode == "slack":
        return _leave(services, serve(settings, services))
    if one_shot:
        async def once() -> int:
            try:
                return await run_once(services, args.command, yes=args.yes)
            finally:
                await close_services(services)

        return _leave(services, asyncio.run(once()))
    return _leave(services, interactive(services, yes=bool(getattr(args, "yes", False))))


def _leave(services, code: int) -> int:
    """Many hosts: a frozen host's engine call blocks in a worker thread until
    the engine timeout (docker-py cannot interrupt it). Its answer is no longer
    wanted: :func:`entry` ends the process without joining that thread (the
    store and audit log are closed, every audit record was written durably
    when it happened); this says so in the log."""
    import logging

    from bot.wiring import stuck_hosts

    stuck = stuck_hosts(services)
    if stuck:
        logging.getLogger("dockhand").info("not waiting for %s: a call to it is still blocked", ", ".join(stuck))
    return code


async def _reach_hosts(services) -> list[str]:
    """Every named host asked for its version at once, within its own timeout:
    a line for each that did not answer (or whose TLS is not verified)."""
    import asyncio

    from bot.engine_check import reach

    fleet = services.fleet

    async def one(name: str) -> str | None:
        here = fleet.services(name)
        target = here.engine.target
        try:
            problem = await asyncio.wait_for(reach(here.engine, target, fleet.timeout(name)), fleet.timeout(name))
        except asyncio.TimeoutError:
            problem = f"No Docker Engine answered at {target.describe()}: nothing came back within " \
                      f"{fleet.timeout(name):g} s"
        if problem:
            return f"host {name}: {problem}; the other hosts are served"
        if target.tls is not None and not target.tls.verify:
            return f"host {name}: TLS to {target.url} does not verify the engine's certificate"
        return None

    lines = await asyncio.gather(*(one(n) for n in fleet.names))
    return [line for line in lines if line]


async def _reach(services, target, timeout: float, asked) -> str | None:
    """The start-up check (``asked``: its question, already sent); when it
    fails, what was opened is closed again."""
    from bot.engine_check import reach
    from bot.wiring import close_services

    problem = await reach(services.engine, target, timeout, asked)
    if problem:
        await close_services(services)
    return problem


def _audit(args, settings) -> int:
    """``dockhand audit verify|show``: exit 0 when the chain verifies, 1 when not."""
    from pathlib import Path

    from bot.audit_log import AuditLog, format_records, verify

    path = Path(args.file) if args.file else settings.audit_log_path
    if args.action == "show":
        if not path.exists():
            print(f"dockhand: no audit log at {path}", file=sys.stderr)
            return 1
        print(format_records(AuditLog(path).tail_sync(max(1, min(args.n, 10_000)))))
        return 0
    result = verify(path)
    if result.ok:
        print(f"audit log {path}: {result.records} record(s), the hash chain verifies")
        return 0
    where = f" (line {result.bad_line})" if result.bad_line else ""
    print(f"audit log {path}: NOT VALID{where}: {result.reason}", file=sys.stderr)
    return 1
