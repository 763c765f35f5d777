"""Many hosts in settings: named engines, a default, channel defaults, groups.

Two forms, which may be combined (a name in both is a problem):

* ``DOCKHAND_HOSTS=prod=ssh://ops@prod-1,staging=unix:///run/staging.sock``:
  ``name=URL`` pairs separated by commas, for the common case. A URL is
  ``unix://``, ``tcp://``, ``ssh://`` or ``context:NAME`` (a docker context).
* ``DOCKHAND_HOSTS_FILE=/etc/dockhand/hosts.toml`` for what a pair cannot say:
  TLS per host, a timeout per host, roles per host, groups, channel defaults::

      default = "staging"          # the host a command without @name goes to
      timeout = 10                 # seconds each host has in a fan-out (default)

      [hosts.prod]
      url = "tcp://10.0.0.5:2376"
      cert_path = "/etc/dockhand/prod"   # ca.pem, cert.pem, key.pem (as DOCKER_CERT_PATH)
      tls_verify = true                  # as DOCKER_TLS_VERIFY (default: true with cert_path)
      timeout = 5
      approvers = ["U0APPROVER"]         # roles per host replace the global ones
      remove_role = "admin"              # who may remove here ("operator" on staging)

      [groups]
      web = ["prod", "staging"]

      [channels]
      C0PRODOPS = "prod"                 # a Slack channel ID -> its default host (or group)
      "#staging-ops" = "staging"         # or its name (a renamed channel loses it: IDs are safer)

``DOCKHAND_DEFAULT_HOST`` names the default host too (it wins over the file).
With neither form set, the engine is the one ``DOCKER_HOST`` (or a context)
names, as before: a single unnamed target. Every problem is one line.
"""

from __future__ import annotations

import re
from dataclasses import field
from pathlib import Path
from typing import Mapping

from bot.connection import ConnectionProblem, EngineTarget, target_for
from handlers.records import record

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")
RESERVED = frozenset({"all"})
CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,79}")
DEFAULT_HOST_TIMEOUT = 10.0
ROLE_KEYS = ("admins", "operators", "viewers", "approvers")
HOST_KEYS = frozenset({"url", "cert_path", "tls_verify", "timeout", "remove_role", *ROLE_KEYS})
FILE_KEYS = frozenset({"default", "timeout", "hosts", "groups", "channels"})


@record
class HostSetting:
    """One named engine: how to reach it and what differs there."""

    name: str
    target: EngineTarget
    timeout: float = DEFAULT_HOST_TIMEOUT  # a fan-out waits this long for this host
    # roles here, replacing the global ones for the keys given (None: the global grant)
    grants: Mapping[str, frozenset[str]] = field(default_factory=dict)
    remove_role: str = ""  # "" = the global rule (admin); "operator" lets operators remove here


@record
class HostsSettings:
    hosts: tuple[HostSetting, ...]  # in the settings' order: fan-out sections come in it
    default: str
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    channels: Mapping[str, str] = field(default_factory=dict)  # channel ID -> host or group name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hosts)


def _check_name(name: str, where: str, problems: list[str]) -> bool:
    if not NAME.fullmatch(name):
        problems.append(f"{where}: {name[:60]!r} is not a host name (lower-case letters, digits, '.', '_', '-'; "
                        "at most 40, starting with a letter or digit)")
        return False
    if name in RESERVED:
        problems.append(f"{where}: {name!r} is reserved (@all means every host)")
        return False
    return True


def _target(name: str, url: str, where: str, env: Mapping[str, str], problems: list[str], *,
            cert_path: str = "", tls_verify: bool | None = None) -> EngineTarget | None:
    if not url.strip():
        problems.append(f"{where}: host {name!r} has no URL (unix://, tcp://, ssh:// or context:NAME)")
        return None
    try:
        target = target_for(name, url, env=env, cert_path=cert_path, tls_verify=tls_verify)
    except ConnectionProblem as exc:
        problems.append(f"{where}: {exc}")
        return None
    if cert_path and target.scheme != "tcp":
        problems.append(f"{where}: host {name!r} has cert_path but {target.url.split('://')[0]}:// takes no TLS "
                        "files (only tcp:// does)")
    problems.extend(f"{where}: {p}" for p in target.problems())
    return target


def _from_env(raw: str, env: Mapping[str, str], problems: list[str]) -> list[HostSetting]:
    out: list[HostSetting] = []
    for item in (x.strip() for x in raw.split(",")):
        if not item:
            continue
        name, sep, url = item.partition("=")
        name = name.strip()
        if not sep:
            problems.append(f"DOCKHAND_HOSTS: {item[:80]!r} is not name=URL (e.g. prod=ssh://ops@prod-1)")
            continue
        if not _check_name(name, "DOCKHAND_HOSTS", problems):
            continue
        target = _target(name, url.strip(), "DOCKHAND_HOSTS", env, problems)
        if target is not None:
            out.append(HostSetting(name, target))
    return out


def _seconds(value, where: str, problems: list[str], default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        problems.append(f"{where} must be a number of seconds above 0, not {value!r}"[:200])
        return default
    return float(value)


def _ids(value, where: str, problems: list[str]) -> frozenset[str] | None:
    from handlers.access import parse_grants

    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{where} must be a list of Slack IDs, e.g. [\"U0123\", \"S0456\"]")
        return None
    ids, bad = parse_grants(",".join(value))
    problems.extend(f"{where}: {b}" for b in bad)
    return ids


def _from_file(path: str, env: Mapping[str, str], problems: list[str]) -> tuple[list[HostSetting], dict]:
    import tomllib

    where = f"DOCKHAND_HOSTS_FILE {path}"
    try:
        with open(Path(path).expanduser(), "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        problems.append(f"{where} does not exist")
        return [], {}
    except OSError as exc:
        problems.append(f"{where}: cannot read it ({exc.strerror or exc})")
        return [], {}
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{where} is not valid TOML ({exc})")
        return [], {}
    for key in sorted(set(data) - FILE_KEYS):
        problems.append(f"{where}: unknown key {key[:40]!r} (known: {', '.join(sorted(FILE_KEYS))})")
    default_timeout = _seconds(data.get("timeout"), f"{where}: timeout", problems, DEFAULT_HOST_TIMEOUT)
    hosts_table = data.get("hosts", {})
    out: list[HostSetting] = []
    if not isinstance(hosts_table, dict):
        problems.append(f"{where}: [hosts] must be a table of hosts ([hosts.prod] url = \"...\")")
        hosts_table = {}
    for name, spec in hosts_table.items():
        at = f"{where}: hosts.{name[:40]}"
        if not _check_name(name, f"{where}: [hosts]", problems):
            continue
        if not isinstance(spec, dict):
            problems.append(f"{at} must be a table (url = \"...\")")
            continue
        for key in sorted(set(spec) - HOST_KEYS):
            problems.append(f"{at}: unknown key {key[:40]!r} (known: {', '.join(sorted(HOST_KEYS))})")
        url, cert_path, verify = spec.get("url", ""), spec.get("cert_path", ""), spec.get("tls_verify")
        if not isinstance(url, str) or not isinstance(cert_path, str) or not (verify is None or isinstance(verify, bool)):
            problems.append(f"{at}: url and cert_path must be strings, tls_verify true or false")
            continue
        target = _target(name, url, at, env, problems, cert_path=cert_path, tls_verify=verify)
        grants = {}
        for key in ROLE_KEYS:
            if key in spec:
                ids = _ids(spec[key], f"{at}.{key}", problems)
                if ids is not None:
                    grants[key] = ids
        remove_role = spec.get("remove_role", "")
        if remove_role not in ("", "operator", "admin"):
            problems.append(f"{at}.remove_role must be \"operator\" or \"admin\", not {str(remove_role)[:40]!r}")
            remove_role = ""
        timeout = _seconds(spec.get("timeout"), f"{at}.timeout", problems, default_timeout)
        if target is not None:
            out.append(HostSetting(name, target, timeout, grants, remove_role))
    return out, data


def load_hosts(env: Mapping[str, str], problems: list[str]) -> HostsSettings | None:
    """The named hosts the environment configures, or None for the single
    unnamed target (neither DOCKHAND_HOSTS nor DOCKHAND_HOSTS_FILE set).
    Problems are appended, one line each."""
    raw = env.get("DOCKHAND_HOSTS", "").strip()
    path = env.get("DOCKHAND_HOSTS_FILE", "").strip()
    default_env = env.get("DOCKHAND_DEFAULT_HOST", "").strip()
    if not raw and not path:
        if default_env:
            problems.append("DOCKHAND_DEFAULT_HOST is set but no hosts are named: set DOCKHAND_HOSTS "
                            "(name=URL,...) or DOCKHAND_HOSTS_FILE")
        return None
    count = len(problems)
    hosts = _from_env(raw, env, problems) if raw else []
    data: dict = {}
    if path:
        from_file, data = _from_file(path, env, problems)
        seen = {h.name for h in hosts}
        for h in from_file:
            if h.name in seen:
                problems.append(f"host {h.name!r} is named both in DOCKHAND_HOSTS and in DOCKHAND_HOSTS_FILE: "
                                "name it once")
            else:
                hosts.append(h)
    names = [h.name for h in hosts]
    known = ", ".join(names) or "none"
    groups: dict[str, tuple[str, ...]] = {}
    raw_groups = data.get("groups", {})
    if not isinstance(raw_groups, dict):
        problems.append("DOCKHAND_HOSTS_FILE: [groups] must be a table (web = [\"prod-1\", \"prod-2\"])")
        raw_groups = {}
    for gname, members in raw_groups.items():
        if not _check_name(gname, "DOCKHAND_HOSTS_FILE: [groups]", problems):
            continue
        if gname in names:
            problems.append(f"DOCKHAND_HOSTS_FILE: group {gname!r} has the name of a host: names must be unique")
            continue
        if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
            problems.append(f"DOCKHAND_HOSTS_FILE: group {gname!r} must list host names, e.g. [\"prod-1\", \"prod-2\"]")
            continue
        unknown = [m for m in members if m not in names]
        if unknown:
            problems.append(f"DOCKHAND_HOSTS_FILE: group {gname!r} names unknown host(s) "
                            f"{', '.join(repr(m[:40]) for m in unknown)} (known: {known})")
            continue
        # the settings' order, each host once
        groups[gname] = tuple(n for n in names if n in members)
    channels: dict[str, str] = {}
    raw_channels = data.get("channels", {})
    if not isinstance(raw_channels, dict):
        problems.append("DOCKHAND_HOSTS_FILE: [channels] must be a table (C0123ABC = \"prod\")")
        raw_channels = {}
    for channel, name in raw_channels.items():
        if channel.startswith("#") and not CHANNEL_NAME.fullmatch(channel[1:]):
            problems.append(f"DOCKHAND_HOSTS_FILE: [channels] {channel[:40]!r} is not a Slack channel name "
                            "(#lower-case-letters-digits-_-)")
        elif not channel.startswith("#") and not (channel[:1] in "CGD" and channel.isalnum()
                                                  and channel.upper() == channel):
            problems.append(f"DOCKHAND_HOSTS_FILE: [channels] {channel[:40]!r} is not a Slack channel ID (C…, G… or D…) "
                            "or name (\"#prod-ops\")")
        elif not isinstance(name, str) or (name not in names and name not in groups):
            problems.append(f"DOCKHAND_HOSTS_FILE: channel {channel[:40]} names {str(name)[:40]!r}, which is no host or "
                            f"group (known: {known})")
        else:
            channels[channel] = name
    default = default_env or data.get("default", "")
    if not isinstance(default, str):
        problems.append("DOCKHAND_HOSTS_FILE: default must be a host name")
        default = ""
    if default and default not in names:
        what = "DOCKHAND_DEFAULT_HOST" if default_env else "DOCKHAND_HOSTS_FILE: default"
        problems.append(f"{what} names {default[:40]!r}, which is no host (known: {known})")
    if not hosts and len(problems) == count:
        problems.append("DOCKHAND_HOSTS/DOCKHAND_HOSTS_FILE name no host")
    if len(problems) > count:
        return None
    # no default named: the first host, as listed
    return HostsSettings(tuple(hosts), default or names[0], groups, channels)
