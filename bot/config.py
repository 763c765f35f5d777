"""Settings from the environment and ``.env`` (python-dotenv).

Every problem found is reported as one plain line; :func:`load_settings`
raises :class:`ConfigError` carrying all of them at once, so a person fixes
their ``.env`` in one go instead of one traceback at a time.
"""

from __future__ import annotations

import os
import re
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from bot.connection import DEFAULT_UNIX_HOST, ConnectionProblem, EngineTarget, resolve
from bot.credentials import RegistryLogin, docker_config_problems, parse_registry_logins
from bot.registry_lane import DEFAULT_PER_PERSON, DEFAULT_PER_REGISTRY
from handlers.records import record

if TYPE_CHECKING:
    from bot.hosts_config import HostsSettings

DEFAULT_DOCKER_HOST = DEFAULT_UNIX_HOST
# the variables that name several hosts (bot/hosts_config.py, read only when one is set)
HOSTS_VARIABLES = ("DOCKHAND_HOSTS", "DOCKHAND_HOSTS_FILE", "DOCKHAND_DEFAULT_HOST")


class ConfigError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@record
class Settings:
    docker_host: str = DEFAULT_DOCKER_HOST
    # where the engine is and how to reach it (bot/connection.py): DOCKER_HOST + TLS, or a context
    engine_target: EngineTarget | None = None
    engine_timeout: float = 60.0
    pull_stall_timeout: float = 120.0  # a pull that receives nothing for this long ends
    # fair shares of the registry lane (bot/registry_lane.py): pulls and searches in flight at once
    per_person_registry_calls: int = DEFAULT_PER_PERSON  # for one person
    per_registry_calls: int = DEFAULT_PER_REGISTRY  # to one registry
    # credentials for private registries: DOCKHAND_REGISTRY_<NAME>_* (passwords never in repr)
    registry_logins: tuple[RegistryLogin, ...] = ()
    docker_config: str = ""  # $DOCKER_CONFIG (a directory); "" = ~/.docker
    host_label: str = ""
    # many hosts (bot/hosts_config.py): DOCKHAND_HOSTS / DOCKHAND_HOSTS_FILE; None = the one engine above
    hosts: HostsSettings | None = None
    search_index: str = ""
    slack_bot_token: str = ""
    slack_signing_secret: str = ""
    slack_app_token: str = ""
    slack_api_url: str = ""
    http_host: str = "0.0.0.0"
    http_port: int = 3000
    admins: frozenset[str] = field(default_factory=frozenset)
    operators: frozenset[str] = field(default_factory=frozenset)
    viewers: frozenset[str] = field(default_factory=frozenset)  # empty: everyone may read
    approvers: frozenset[str] = field(default_factory=frozenset)  # non-empty: two-person rule
    channels: frozenset[str] = field(default_factory=frozenset)  # non-empty: only these channels
    state_dir: str = ""  # "" = default_state_dir()
    confirm_ttl: float = 600.0
    audit_channel: str = ""
    reply_visibility: str = "ephemeral"  # or "in_channel"
    native_tables: bool = True  # lists as Slack data_table blocks (False: code blocks, as the CLI prints them)
    log_level: str = "INFO"
    log_format: str = "text"  # or "json": one JSON object a line, for log shippers
    # the HTTP front door (bot/slack/front_door.py)
    http_read_timeout: float = 5.0  # seconds to receive a whole request (headers and body)
    http_max_connections: int = 256  # open connections at once (clamped below the file limit)
    # Socket Mode's own small listener for /healthz, /readyz and /metrics; port 0 = off
    status_host: str = "127.0.0.1"
    status_port: int = 3001
    # `docker run` smoke tests: time limit (s), memory (bytes), CPUs, processes
    run_timeout: float = 30.0
    run_memory: int = 256 * 1024 * 1024
    run_cpus: float = 1.0
    run_pids: int = 128

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_bot_token)

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)

    @property
    def target(self) -> EngineTarget:
        """The engine to manage: as resolved from the environment, else ``docker_host`` alone."""
        if self.engine_target is not None:
            return self.engine_target
        return EngineTarget(self.docker_host, source="DOCKER_HOST", explicit=False)

    @property
    def target_label(self) -> str:
        return self.host_label or self.docker_host

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir) if self.state_dir else default_state_dir()

    @property
    def audit_log_path(self) -> Path:
        return self.state_path / "audit.jsonl"

    def run_limits(self):
        from handlers.ports import RunLimits

        return RunLimits(memory=self.run_memory, cpus=self.run_cpus, pids=self.run_pids, timeout=self.run_timeout)

    def policy(self, host=None):
        """The access policy; for a named ``host`` (a HostSetting), its own
        grants replace the global ones key by key, and its ``remove_role``."""
        from handlers.access import ROLE_BY_NAME, Policy, Role

        grants = dict(host.grants) if host is not None else {}
        remove = ROLE_BY_NAME[host.remove_role] if host is not None and host.remove_role else Role.ADMIN
        return Policy(admins=grants.get("admins", self.admins), operators=grants.get("operators", self.operators),
                      viewers=grants.get("viewers", self.viewers), approvers=grants.get("approvers", self.approvers),
                      channels=self.channels, remove_role=remove)


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/dockhand``, else ``~/.local/state/dockhand``."""
    base = os.environ.get("XDG_STATE_HOME", "").strip()
    return Path(base) / "dockhand" if base else Path.home() / ".local" / "state" / "dockhand"


def _grants(env: Mapping[str, str], name: str, problems: list[str]) -> frozenset[str]:
    from handlers.access import parse_grants

    ids, bad = parse_grants(env.get(name, ""))
    problems.extend(f"{name}: {b}" for b in bad)
    return ids


def load_dotenv_file(path: str | os.PathLike | None = None) -> None:
    """Load ``.env`` (never overriding the real environment). Without a file
    to read, python-dotenv is not even imported (a one-shot command's start-up).
    A file named on purpose (``--env-file``) must exist: ConfigError if not."""
    if path is not None and not os.path.exists(path):
        raise ConfigError([f"--env-file {os.fspath(path)!r}: no such file"])
    path = path or Path.cwd() / ".env"
    if not os.path.exists(path):
        return  # what load_dotenv does with a missing ./.env: nothing
    from dotenv import load_dotenv

    load_dotenv(dotenv_path=path, override=False)


_RAM = re.compile(r"(\d+(?:\.\d+)?) ?([kmgt]?)i?b?", re.IGNORECASE)
MIN_RUN_MEMORY = 6 * 1024 * 1024  # the engine's own minimum memory limit


def _ram(env: Mapping[str, str], name: str, default: int, problems: list[str]) -> int:
    """A memory size as `docker run -m` reads it (go-units RAMInBytes: 256m, 1g, 512MiB, bytes)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    m = _RAM.fullmatch(raw)
    if not m:
        problems.append(f"{name}={raw!r} is not a memory size (e.g. {name}=256m or 1g)")
        return default
    value = int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2).lower() or " "))
    if value < MIN_RUN_MEMORY:
        problems.append(f"{name}={raw!r} is below the engine's minimum of 6m")
        return default
    return value


def _positive(env: Mapping[str, str], name: str, default, problems: list[str], kind=float, unit: str = ""):
    """A number above 0 (``unit``: what it counts, for the messages), or ``default`` and a problem."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    what = f"number{' of ' + unit if unit else ''}"
    try:
        value = kind(raw)
    except ValueError:
        problems.append(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}{what} (e.g. {name}={default:g})")
        return default
    if value <= 0:
        problems.append(f"{name}={raw!r} must be more than 0{' ' + unit if unit else ''}")
        return default
    return value


def _float(env: Mapping[str, str], name: str, default: float, problems: list[str]) -> float:
    return _positive(env, name, default, problems, float, "seconds")


def _tcp_port(env, name: str, default: int, problems: list[str], *, off: bool = False) -> int:
    """The TCP port a setting names (its default when unset); with ``off``,
    the word ``off`` is 0 (no listener). A bad value is a problem, one line."""
    raw = env.get(name, "").strip().lower() or str(default)
    if off and raw == "off":
        return 0
    if raw.isascii() and raw.isdigit() and 0 < int(raw) < 65536:
        return int(raw)
    problems.append(f"{name}={raw!r} is not a TCP port (1-65535)" + (" or 'off'" if off else ""))
    return default


def load_settings(env: Mapping[str, str] | None = None, *, slack: bool | None = None) -> Settings:
    """Read settings from ``env`` (default: ``os.environ``).

    ``slack=True`` also checks what the Slack front end needs;
    ``slack=None`` checks it only when ``SLACK_BOT_TOKEN`` is set.
    """
    env = os.environ if env is None else env
    problems: list[str] = []

    # The engine, as the docker CLI finds it: DOCKER_HOST (+ DOCKER_TLS_VERIFY, DOCKER_CERT_PATH),
    # DOCKER_CONTEXT, the config's currentContext, the default socket (bot/connection.py).
    engine_target: EngineTarget | None = None
    try:
        engine_target = resolve(env)
        problems.extend(engine_target.problems())
    except ConnectionProblem as exc:
        problems.append(str(exc))
    docker_host = engine_target.url if engine_target else (env.get("DOCKER_HOST", "").strip() or DEFAULT_DOCKER_HOST)

    http_port = _tcp_port(env, "PORT", 3000, problems)

    visibility = env.get("DOCKHAND_REPLY_VISIBILITY", "").strip().lower() or "ephemeral"
    if visibility not in ("ephemeral", "in_channel"):
        problems.append(f"DOCKHAND_REPLY_VISIBILITY={visibility!r} must be 'ephemeral' or 'in_channel'")
        visibility = "ephemeral"

    native_raw = env.get("DOCKHAND_NATIVE_TABLES", "").strip().lower() or "1"
    native_tables = native_raw in ("1", "true", "yes", "on")
    if native_raw not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        problems.append(f"DOCKHAND_NATIVE_TABLES={native_raw!r} must be 1 (lists as Slack tables) "
                        "or 0 (code blocks, as the CLI prints them)")
        native_tables = True

    log_level = env.get("DOCKHAND_LOG_LEVEL", "").strip().upper() or "INFO"
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.append(f"DOCKHAND_LOG_LEVEL={log_level!r} must be DEBUG, INFO, WARNING or ERROR")
        log_level = "INFO"

    log_format = env.get("DOCKHAND_LOG_FORMAT", "").strip().lower() or "text"
    if log_format not in ("text", "json"):
        problems.append(f"DOCKHAND_LOG_FORMAT={log_format!r} must be 'text' or 'json'")
        log_format = "text"

    status_port = _tcp_port(env, "DOCKHAND_STATUS_PORT", 3001, problems, off=True)

    admins = _grants(env, "DOCKHAND_ADMINS", problems)
    channels = frozenset(c.strip() for c in env.get("DOCKHAND_CHANNELS", "").split(",") if c.strip())
    for c in channels:
        if not (c[:1] in "CGD" and c.isalnum() and c.upper() == c):
            problems.append(f"DOCKHAND_CHANNELS: {c!r} is not a Slack channel ID (C…, G… or D…)")
    audit_channel = env.get("DOCKHAND_AUDIT_CHANNEL", "").strip()
    if audit_channel and not (audit_channel[:1] in "CG" and audit_channel.isalnum()):
        problems.append(f"DOCKHAND_AUDIT_CHANNEL={audit_channel!r} is not a Slack channel ID (C… or G…)")

    # Private registries: DOCKHAND_REGISTRY_<NAME>_{HOST,USERNAME,PASSWORD|PASSWORD_FILE},
    # then the Docker CLI's $DOCKER_CONFIG/config.json (auths, credHelpers, credsStore).
    # Problems name the variable or the file, never a password.
    hosts = None  # many hosts: named engines, groups, channel defaults
    if any(env.get(name, "").strip() for name in HOSTS_VARIABLES):
        from bot.hosts_config import load_hosts

        hosts = load_hosts(env, problems)

    registry_logins, login_problems = parse_registry_logins(env)
    problems.extend(login_problems)
    docker_config = env.get("DOCKER_CONFIG", "").strip()
    problems.extend(docker_config_problems(docker_config, path=env.get("PATH")))

    settings = Settings(
        docker_host=docker_host,
        engine_target=engine_target,
        engine_timeout=_float(env, "DOCKHAND_ENGINE_TIMEOUT", 60.0, problems),
        pull_stall_timeout=_float(env, "DOCKHAND_PULL_STALL_TIMEOUT", 120.0, problems),
        per_person_registry_calls=_positive(env, "DOCKHAND_PER_PERSON_REGISTRY_CALLS", DEFAULT_PER_PERSON,
                                            problems, kind=int),
        per_registry_calls=_positive(env, "DOCKHAND_PER_REGISTRY_CALLS", DEFAULT_PER_REGISTRY, problems, kind=int),
        registry_logins=registry_logins,
        docker_config=docker_config,
        host_label=env.get("DOCKHAND_HOST_LABEL", "").strip(),
        hosts=hosts,
        search_index=env.get("DOCKHAND_SEARCH_INDEX", "").strip().rstrip("/"),
        slack_bot_token=env.get("SLACK_BOT_TOKEN", "").strip(),
        slack_signing_secret=env.get("SLACK_SIGNING_SECRET", "").strip(),
        slack_app_token=env.get("SLACK_APP_TOKEN", "").strip(),
        slack_api_url=env.get("SLACK_API_URL", "").strip(),
        http_host=env.get("HOST", "").strip() or "0.0.0.0",
        http_port=http_port,
        admins=admins,
        operators=_grants(env, "DOCKHAND_OPERATORS", problems),
        viewers=_grants(env, "DOCKHAND_VIEWERS", problems),
        approvers=_grants(env, "DOCKHAND_APPROVERS", problems),
        channels=channels,
        state_dir=env.get("DOCKHAND_STATE_DIR", "").strip(),
        confirm_ttl=_float(env, "DOCKHAND_CONFIRM_TTL", 600.0, problems),
        audit_channel=audit_channel,
        reply_visibility=visibility,
        native_tables=native_tables,
        log_level=log_level,
        log_format=log_format,
        http_read_timeout=_float(env, "DOCKHAND_HTTP_READ_TIMEOUT", 5.0, problems),
        http_max_connections=_positive(env, "DOCKHAND_HTTP_MAX_CONNECTIONS", 256, problems, kind=int,
                                       unit="connections"),
        status_host=env.get("DOCKHAND_STATUS_HOST", "").strip() or "127.0.0.1",
        status_port=status_port,
        run_timeout=_float(env, "DOCKHAND_RUN_TIMEOUT", 30.0, problems),
        run_memory=_ram(env, "DOCKHAND_RUN_MEMORY", 256 * 1024 * 1024, problems),
        run_cpus=_positive(env, "DOCKHAND_RUN_CPUS", 1.0, problems),
        run_pids=_positive(env, "DOCKHAND_RUN_PIDS", 128, problems, kind=int),
    )
    if slack or (slack is None and settings.slack_enabled):
        problems.extend(slack_problems(settings))
    if problems:
        raise ConfigError(problems)
    return settings


def slack_problems(s: Settings) -> list[str]:
    problems = []
    if not s.slack_bot_token:
        problems.append("SLACK_BOT_TOKEN is missing: copy the Bot User OAuth Token (xoxb-...) from your Slack app's 'OAuth & Permissions' page")
    elif not s.slack_bot_token.startswith("xoxb-"):
        problems.append("SLACK_BOT_TOKEN must be a bot token starting with xoxb- (not a user xoxp- or app-level xapp- token)")
    if s.slack_app_token and not s.slack_app_token.startswith("xapp-"):
        problems.append("SLACK_APP_TOKEN must be an app-level token starting with xapp- (Basic Information > App-Level Tokens, scope connections:write)")
    if not s.socket_mode and not s.slack_signing_secret:
        problems.append("SLACK_SIGNING_SECRET is missing: HTTP mode verifies every request with it (Basic Information > Signing Secret); or set SLACK_APP_TOKEN for Socket Mode")
    if s.slack_api_url and not s.slack_api_url.startswith(("http://", "https://")):
        problems.append(f"SLACK_API_URL={s.slack_api_url!r} must be an http(s) URL ending in /api/")
    return problems
