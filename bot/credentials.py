"""Registry credentials, found the way the Docker CLI finds them.

A pull sends the engine the credentials for the reference's registry in the
``X-Registry-Auth`` header (base64url JSON of an AuthConfig:
``username``/``password``/``serveraddress``, or an ``identitytoken``). They
come from, in this order:

1. Dockhand's own settings, for a bot that runs without a docker config::

       DOCKHAND_REGISTRY_<NAME>_HOST=registry.example.com:5000   (docker.io for Docker Hub)
       DOCKHAND_REGISTRY_<NAME>_USERNAME=bot
       DOCKHAND_REGISTRY_<NAME>_PASSWORD=...        or  _PASSWORD_FILE=/run/secrets/registry

   ``<NAME>`` is any label (letters, digits, underscores); a password file is
   read again at every pull, so a rotated secret needs no restart.
2. The Docker CLI's configuration, ``$DOCKER_CONFIG/config.json`` (default
   ``~/.docker/config.json``), read again at every pull as ``docker pull``
   reads it: ``credHelpers[registry]`` names a helper for one registry, else
   ``credsStore`` one for all; a helper is the program
   ``docker-credential-<name>``, run as ``docker-credential-<name> get`` with
   the server address on stdin, answering ``{"Username", "Secret"}`` (a
   ``Username`` of ``<token>`` makes the secret an identity token) or "credentials
   not found". Without a helper, ``auths[registry].auth`` (base64
   ``user:password``), matched exactly or by host name as the CLI does.

Docker Hub's key is its index name ``https://index.docker.io/v1/`` (what
``docker login`` writes); other registries are keyed by ``host[:port]``.

Credentials are never shown: :class:`Secret` hides its value from ``str`` and
``repr``, a :class:`RegistryAuth` hides its AuthConfig, and
:meth:`RegistryAuth.scrub` takes every form of the secret (plain, base64,
the header) out of any text a registry or the engine sends back.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import signal
import subprocess
import urllib.parse
from dataclasses import field
from pathlib import Path
from typing import Mapping, Sequence

from handlers.records import record

__all__ = [
    "DOCKER_HUB", "DOCKER_HUB_INDEX", "HELPER_TIMEOUT", "CredentialStore", "CredentialsError",
    "RegistryAuth", "RegistryLogin", "Secret", "docker_config_path", "docker_config_problems",
    "normalize_registry", "parse_registry_logins", "registry_of",
]

log = logging.getLogger("dockhand.credentials")

DOCKER_HUB = "docker.io"
DOCKER_HUB_INDEX = "https://index.docker.io/v1/"
_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
HELPER_TIMEOUT = 10.0  # seconds a credential helper may take to answer `get`
TOKEN_USERNAME = "<token>"
ENV_PREFIX = "DOCKHAND_REGISTRY_"
_FIELDS = ("_PASSWORD_FILE", "_PASSWORD", "_USERNAME", "_HOST")  # longest first
_NAME_RE = re.compile(r"[A-Z0-9][A-Z0-9_]*")
_HOST_RE = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
                      r"|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")


class CredentialsError(Exception):
    """A credential source that is configured but does not work (one line, no secret)."""


class Secret:
    """A string that never shows itself: ``str()`` and ``repr()`` are ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"


# --------------------------------------------------------------------------
# registries


def convert_to_hostname(address: str) -> str:
    """The CLI's ConvertToHostname: ``https://host:5000/v1/`` -> ``host:5000``."""
    for scheme in ("http://", "https://"):
        if address.startswith(scheme):
            address = address[len(scheme):]
            break
    return address.split("/", 1)[0]


def normalize_registry(address: str) -> str:
    """``host[:port]`` in lower case; every name of Docker Hub is ``docker.io``."""
    host = convert_to_hostname(address.strip()).lower()
    return DOCKER_HUB if host in _HUB_NAMES else host


def registry_of(repository: str) -> str:
    """The registry a repository name lives on (distribution's splitDockerDomain):
    the first component when it looks like a host, else Docker Hub."""
    first, slash, _ = repository.partition("/")
    if slash and (first == "localhost" or "." in first or ":" in first or first.lower() != first):
        return normalize_registry(first)
    return DOCKER_HUB


def server_address(registry: str) -> str:
    """The key the CLI looks credentials up by: Docker Hub's index name, else the host."""
    return DOCKER_HUB_INDEX if registry == DOCKER_HUB else registry


def _login_target(registry: str) -> str:
    return "docker login" if registry == DOCKER_HUB else f"docker login {registry}"


# --------------------------------------------------------------------------
# Dockhand's own settings


@record
class RegistryLogin:
    """One registry's credentials from ``DOCKHAND_REGISTRY_<NAME>_*``."""

    name: str
    registry: str  # normalised host[:port]; docker.io for Docker Hub
    username: str
    password: Secret | None = field(default=None, repr=False)
    password_file: str = ""  # read at every pull when set

    @property
    def source(self) -> str:
        return f"the DOCKHAND_REGISTRY_{self.name}_* settings"

    def read_password(self) -> str:
        if self.password is not None:
            return self.password.reveal()
        try:
            text = Path(self.password_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise CredentialsError(f"cannot read DOCKHAND_REGISTRY_{self.name}_PASSWORD_FILE="
                                   f"{self.password_file} ({exc.strerror or type(exc).__name__})") from None
        except UnicodeDecodeError:
            raise CredentialsError(f"DOCKHAND_REGISTRY_{self.name}_PASSWORD_FILE={self.password_file} "
                                   "is not UTF-8 text") from None
        password = text.rstrip("\r\n")
        if not password:
            raise CredentialsError(f"DOCKHAND_REGISTRY_{self.name}_PASSWORD_FILE={self.password_file} is empty")
        return password


def parse_registry_logins(env: Mapping[str, str]) -> tuple[tuple[RegistryLogin, ...], list[str]]:
    """The ``DOCKHAND_REGISTRY_<NAME>_{HOST,USERNAME,PASSWORD,PASSWORD_FILE}``
    groups of ``env``, and one line per problem (never with a password in it).
    Other ``DOCKHAND_REGISTRY_*`` variables are not this module's."""
    groups: dict[str, dict[str, str]] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        rest = key[len(ENV_PREFIX):]
        for suffix in _FIELDS:
            if rest.endswith(suffix) and len(rest) > len(suffix):
                groups.setdefault(rest[:-len(suffix)], {})[suffix[1:]] = value
                break
    logins: list[RegistryLogin] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for name in sorted(groups):
        g = groups[name]
        prefix = f"{ENV_PREFIX}{name}"
        bad = False
        if not _NAME_RE.fullmatch(name):
            problems.append(f"{prefix}_*: the name {name!r} must be upper-case letters, digits and underscores")
            bad = True
        host_raw = g.get("HOST", "").strip()
        host = normalize_registry(host_raw) if host_raw else ""
        if not host_raw:
            problems.append(f"{prefix}_HOST is missing: the registry these credentials are for "
                            "(host[:port], or docker.io for Docker Hub)")
            bad = True
        elif not _HOST_RE.fullmatch(host):
            problems.append(f"{prefix}_HOST={host_raw!r} is not a registry host[:port] (e.g. registry.example.com:5000)")
            bad = True
        elif host in seen:
            problems.append(f"{prefix}_HOST: {host} already has credentials ({ENV_PREFIX}{seen[host]}_*)")
            bad = True
        username = g.get("USERNAME", "").strip()
        if not username:
            problems.append(f"{prefix}_USERNAME is missing")
            bad = True
        elif ":" in username:
            problems.append(f"{prefix}_USERNAME must not contain ':'")
            bad = True
        password = g.get("PASSWORD", "")
        password_file = g.get("PASSWORD_FILE", "").strip()
        if password and password_file:
            problems.append(f"{prefix}: set _PASSWORD or _PASSWORD_FILE, not both")
            bad = True
        elif not password and not password_file:
            problems.append(f"{prefix}_PASSWORD (or _PASSWORD_FILE, a file holding it) is missing")
            bad = True
        elif password_file:
            try:
                RegistryLogin(name, host, username, None, password_file).read_password()
            except CredentialsError as exc:
                problems.append(str(exc))
                bad = True
        if bad:
            continue
        seen[host] = name
        logins.append(RegistryLogin(name, host, username, Secret(password) if password else None, password_file))
    return tuple(logins), problems


# --------------------------------------------------------------------------
# the Docker CLI's configuration


def docker_config_path(docker_config: str | None = None) -> Path:
    """``config.json`` in ``docker_config`` (a directory, as $DOCKER_CONFIG is);
    ``None`` reads $DOCKER_CONFIG now; empty means ``~/.docker``."""
    if docker_config is None:
        docker_config = os.environ.get("DOCKER_CONFIG", "")
    base = Path(docker_config) if docker_config else Path.home() / ".docker"
    return base / "config.json"


def _load_config(path: Path) -> dict:
    """The parsed config file; ``{}`` when there is none. Raises
    :class:`CredentialsError` (one line, no secret) when it is unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CredentialsError(f"cannot read {path} ({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError:
        raise CredentialsError(f"{path} is not UTF-8 text") from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if hasattr(exc, "lineno") else ""
        raise CredentialsError(f"{path} is not valid JSON{where}") from None
    if not isinstance(data, dict):
        raise CredentialsError(f"{path} is not a JSON object")
    for key, kind in (("auths", dict), ("credHelpers", dict), ("credsStore", str)):
        if key in data and data[key] is not None and not isinstance(data[key], kind):
            raise CredentialsError(f"{path}: {key!r} must be a JSON {'object' if kind is dict else 'string'}")
    return data


def _decode_auth(path: Path, key: str, value: object) -> tuple[str, str]:
    """``auths[key].auth``: base64 of ``user:password``."""
    if not isinstance(value, str):
        raise CredentialsError(f"{path}: auths[{key!r}].auth is not a string")
    try:
        raw = base64.b64decode(value.strip() + "=" * (-len(value.strip()) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise CredentialsError(f"{path}: auths[{key!r}].auth is not base64 of user:password") from None
    user, colon, password = raw.partition(":")
    if not colon:
        raise CredentialsError(f"{path}: auths[{key!r}].auth is not base64 of user:password")
    return user, password


def docker_config_problems(docker_config: str | None = None, *, path: str | None = None) -> list[str]:
    """One line per problem of the Docker CLI's config file (start-up check):
    not JSON, an ``auth`` that does not decode, a helper that is not on PATH."""
    cfg_path = docker_config_path(docker_config)
    try:
        data = _load_config(cfg_path)
    except CredentialsError as exc:
        return [f"DOCKER_CONFIG: {exc}"]
    problems = []
    for key, entry in (data.get("auths") or {}).items():
        if isinstance(entry, dict) and entry.get("auth"):
            try:
                _decode_auth(cfg_path, key, entry["auth"])
            except CredentialsError as exc:
                problems.append(f"DOCKER_CONFIG: {exc}")
    helpers = [("credsStore", data["credsStore"])] if data.get("credsStore") else []
    helpers += [(f"credHelpers[{k!r}]", v) for k, v in (data.get("credHelpers") or {}).items()]
    for where, name in helpers:
        if not isinstance(name, str) or not name:
            problems.append(f"DOCKER_CONFIG: {cfg_path}: {where} must name a helper")
        elif _which(f"docker-credential-{name}", path) is None:
            problems.append(f"DOCKER_CONFIG: {cfg_path}: {where} names docker-credential-{name}, "
                            "which is not on PATH")
    return problems


# --------------------------------------------------------------------------
# what a pull sends


@record
class RegistryAuth:
    """The credentials found for one registry (or none), and where from.

    ``auth`` is the Engine API's AuthConfig; it never shows in ``repr``.
    ``problem`` says why a configured source gave nothing (a helper failed)."""

    registry: str
    server_address: str
    auth: Mapping[str, str] | None = field(default=None, repr=False)
    source: str = ""
    problem: str = ""
    config_path: str = ""

    def header(self) -> str:
        """The ``X-Registry-Auth`` value (base64url JSON, as the CLI encodes it); "" for none."""
        if not self.auth:
            return ""
        return base64.urlsafe_b64encode(json.dumps(dict(self.auth)).encode("utf-8")).decode("ascii")

    def secrets(self) -> tuple[str, ...]:
        """Every form in which the secret could come back in a text."""
        if not self.auth:
            return ()
        forms: list[str] = []
        user = self.auth.get("username", "")
        for key in ("password", "identitytoken", "registrytoken"):
            value = self.auth.get(key, "")
            if not value:
                continue
            forms += [value, urllib.parse.quote(value, safe=""), json.dumps(value)[1:-1]]
            if key == "password":
                pair = f"{user}:{value}".encode("utf-8")
                forms += [base64.b64encode(pair).decode("ascii"), base64.urlsafe_b64encode(pair).decode("ascii"),
                          base64.b64encode(pair).decode("ascii").rstrip("=")]
        forms.append(self.header())
        return tuple(sorted({f for f in forms if f}, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        """``text`` with every form of the secret replaced by ``***``."""
        if not text or not self.auth:
            return text
        for secret in self.secrets():
            text = text.replace(secret, "***")
        return text

    def unauthorized_hint(self) -> str:
        """What to do when the registry refused the pull, naming where
        credentials come from (and never what they are)."""
        settings = (f"DOCKHAND_REGISTRY_<NAME>_HOST={self.registry} with _USERNAME and _PASSWORD "
                    "(or _PASSWORD_FILE)")
        login = f"`{_login_target(self.registry)}` as the user Dockhand runs as ({self.config_path})"
        if self.source:
            return (f"The registry refused the credentials Dockhand sent for {self.registry} "
                    f"(from {self.source}): check them there, and that this account may pull "
                    "the repository; the repository may also not exist.")
        if self.problem:
            return (f"Dockhand could not get credentials for {self.registry}: {self.problem}. "
                    f"Fix that, or set {settings}.")
        return (f"Dockhand sent no credentials for {self.registry}: it has none for it. If the "
                f"repository is private, set {settings}, or run {login}; the repository may also not exist.")


class CredentialStore:
    """Finds the credentials for a registry at every pull (see the module doc)."""

    def __init__(self, logins: Sequence[RegistryLogin] = (), *, docker_config: str | None = None,
                 helper_timeout: float = HELPER_TIMEOUT, environ: Mapping[str, str] | None = None):
        self._logins = {login.registry: login for login in logins}
        self._docker_config = docker_config
        self._helper_timeout = float(helper_timeout)
        self._environ = environ

    def __repr__(self) -> str:
        names = ", ".join(f"{login.name}={login.registry}" for login in self._logins.values())
        return f"CredentialStore(logins=[{names}], config={str(self.config_path)!r})"

    @property
    def config_path(self) -> Path:
        return docker_config_path(self._docker_config)

    def lookup(self, repository: str) -> RegistryAuth:
        """The credentials for the registry ``repository`` (a normalised name) is on."""
        return self.lookup_registry(registry_of(repository))

    def lookup_registry(self, registry: str) -> RegistryAuth:
        registry = normalize_registry(registry)
        address = server_address(registry)
        cfg_path = self.config_path
        base = dict(registry=registry, server_address=address, config_path=str(cfg_path))
        login = self._logins.get(registry)
        if login is not None:
            try:
                password = login.read_password()
            except CredentialsError as exc:
                return RegistryAuth(**base, problem=str(exc))
            return RegistryAuth(**base, auth={"username": login.username, "password": password,
                                              "serveraddress": address}, source=login.source)
        try:
            data = _load_config(cfg_path)
            return self._from_config(cfg_path, data, registry, address, base)
        except CredentialsError as exc:
            return RegistryAuth(**base, problem=str(exc))

    def _from_config(self, cfg_path: Path, data: dict, registry: str, address: str, base: dict) -> RegistryAuth:
        helpers = data.get("credHelpers") or {}
        helper, where = "", ""
        for key in ([address, DOCKER_HUB, "index.docker.io"] if registry == DOCKER_HUB else [address]):
            if helpers.get(key):
                helper, where = helpers[key], f"credHelpers in {cfg_path}"
                break
        if not helper and data.get("credsStore"):
            helper, where = data["credsStore"], f"credsStore in {cfg_path}"
        if helper:
            auth = self._run_helper(str(helper), address)
            source = f"docker-credential-{helper} ({where})"
            return RegistryAuth(**base, auth=auth, source=source if auth else "")
        auths = data.get("auths") or {}
        entry, key = None, ""
        if isinstance(auths.get(address), dict):
            entry, key = auths[address], address
        else:
            for k, v in auths.items():
                if isinstance(v, dict) and normalize_registry(k) == registry:
                    entry, key = v, k
                    break
        if not entry:
            return RegistryAuth(**base)
        user, password = "", ""
        if entry.get("auth"):
            user, password = _decode_auth(cfg_path, key, entry["auth"])
        else:
            user, password = str(entry.get("username") or ""), str(entry.get("password") or "")
        auth = {"serveraddress": address}
        if entry.get("identitytoken"):
            auth.update({"username": user, "identitytoken": str(entry["identitytoken"])} if user
                        else {"identitytoken": str(entry["identitytoken"])})
        elif user or password:
            auth.update({"username": user, "password": password})
        else:
            return RegistryAuth(**base)
        return RegistryAuth(**base, auth=auth, source=f"auths[{key!r}] in {cfg_path}")

    def _run_helper(self, name: str, address: str) -> dict | None:
        """``docker-credential-<name> get``: the AuthConfig, or None when the
        helper has none for ``address``. Raises CredentialsError (no secret)."""
        program = f"docker-credential-{name}"
        env = dict(os.environ if self._environ is None else self._environ)
        exe = _which(program, env.get("PATH"))
        if exe is None:
            raise CredentialsError(f"{program} is not on PATH")
        try:
            proc = subprocess.Popen([exe, "get"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env, start_new_session=True)
        except OSError as exc:
            raise CredentialsError(f"cannot run {program} ({exc.strerror or type(exc).__name__})") from None
        try:
            out, err = proc.communicate(address.encode("utf-8"), timeout=self._helper_timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the helper and anything it started
            except OSError:
                proc.kill()
            try:
                proc.communicate(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            raise CredentialsError(f"{program} get did not answer within {self._helper_timeout:g} s") from None
        if proc.returncode != 0:
            said = (out or err or b"").decode("utf-8", "replace").strip()
            if "credentials not found" in said.lower():
                return None
            first = said.splitlines()[0][:200] if said else ""
            raise CredentialsError(f"{program} get failed (exit status {proc.returncode})"
                                   + (f": {first}" if first else ""))
        try:
            data = json.loads(out.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise CredentialsError(f"{program} get answered something that is not JSON") from None
        if not isinstance(data, dict):
            raise CredentialsError(f"{program} get answered something that is not a JSON object")
        user, secret = str(data.get("Username") or ""), str(data.get("Secret") or "")
        if not secret:
            return None
        if user == TOKEN_USERNAME:
            return {"identitytoken": secret, "serveraddress": address}
        return {"username": user, "password": secret, "serveraddress": address}


def _which(program: str, path: str | None) -> str | None:
    """``shutil.which``, imported when a credential helper is named (shutil
    brings bz2 and lzma with it: a start-up cost every command would pay)."""
    import shutil

    return shutil.which(program, path=path)
