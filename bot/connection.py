"""Where the Docker Engine is and how to reach it, resolved as the docker CLI does.

The docker CLI (docker/cli ``cli/command/cli.go``, ``cli/flags/options.go``,
``opts/hosts.go``, ``cli/context/docker/load.go``) picks its engine in this
order, and so does :func:`resolve`:

1. ``DOCKER_HOST`` (the "default" context): ``unix:///path``,
   ``tcp://host[:port]`` (port 2375 when left out; a bare ``host:port`` is
   TCP too) or ``ssh://[user@]host[:port]``. TLS comes from the environment:
   ``DOCKER_TLS_VERIFY`` (any non-empty value) turns TLS on and verifies the
   engine against ``ca.pem``; ``DOCKER_TLS`` turns TLS on without verifying;
   the files are ``ca.pem``, ``cert.pem`` and ``key.pem`` in
   ``DOCKER_CERT_PATH`` (default: the docker config directory). A missing
   ``cert.pem``/``key.pem`` pair means no client certificate, as for the CLI.
2. ``DOCKER_CONTEXT`` (``default`` means 1 with DOCKER_HOST unset).
3. ``currentContext`` of ``$DOCKER_CONFIG/config.json`` (default ``~/.docker``).
4. The default socket ``unix:///var/run/docker.sock`` (``tcp://localhost:2376``
   when TLS is asked for without a host).

A context is ``$DOCKER_CONFIG/contexts/meta/<sha256(name)>/meta.json``
(``Endpoints.docker.Host``, ``SkipTLSVerify``); its TLS files, when it has
any, are ``$DOCKER_CONFIG/contexts/tls/<sha256(name)>/docker/{ca,cert,key}.pem``.
A TCP context with no TLS files and no SkipTLSVerify speaks plain HTTP; without
``ca.pem`` it verifies against the system's CAs.

The result is a value, :class:`EngineTarget`, built the same way for one
engine from the environment or for a named one (:func:`target_for`): nothing
here is global. :meth:`EngineTarget.problems` checks its files and says what
is wrong in one line each, never showing a key.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import urllib.parse
from pathlib import Path
from typing import Callable, Mapping

from handlers.records import record

DEFAULT_SOCKET = "/var/run/docker.sock"
DEFAULT_UNIX_HOST = "unix://" + DEFAULT_SOCKET
DEFAULT_TCP_PORT = 2375
DEFAULT_TLS_HOST = "tcp://localhost:2376"
DEFAULT_CONTEXT = "default"

SOURCE_DEFAULT = "the default socket"


class ConnectionProblem(ValueError):
    """One line saying what is wrong with how to reach an engine."""


@record
class TLSFiles:
    """TLS towards a TCP engine. ``ca`` "" means the system's CAs; ``cert``
    and ``key`` "" mean no client certificate. ``origin`` says where they come
    from, for messages (``DOCKER_CERT_PATH=/etc/docker-certs``, ``context prod``)."""

    ca: str = ""
    cert: str = ""
    key: str = ""
    verify: bool = True
    origin: str = ""


@record
class EngineTarget:
    """One engine and how to reach it.

    ``url``: ``unix:///path``, ``tcp://host:port`` or ``ssh://[user@]host[:port]``
    (normalised as the CLI does); ``tls``: for ``tcp://`` only; ``source``: what
    chose it (``DOCKER_HOST``, ``DOCKER_CONTEXT=prod``, …); ``explicit``: the
    user asked for this engine, so start-up must reach it."""

    url: str
    tls: TLSFiles | None = None
    source: str = "DOCKER_HOST"
    explicit: bool = True

    @property
    def scheme(self) -> str:
        return self.url.partition("://")[0]

    @property
    def unix_path(self) -> str | None:
        return self.url[len("unix://"):] if self.scheme == "unix" else None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of a ``tcp://`` or ``ssh://`` target."""
        parts = urllib.parse.urlsplit(self.url)
        return parts.hostname or "localhost", parts.port or (22 if self.scheme == "ssh" else DEFAULT_TCP_PORT)

    def describe(self) -> str:
        """``tcp://127.0.0.1:2376 (DOCKER_HOST)``: for start-up lines and logs
        (never a certificate path: those appear only in problems)."""
        return f"{self.url} ({self.source})"

    @property
    def speaks_http(self) -> bool:
        """Can Dockhand open its own HTTP connection to it (unix, TCP, TLS)?
        ssh goes through docker-py's ssh support only."""
        return self.scheme in ("unix", "tcp")

    # -- checks ----------------------------------------------------------------

    def problems(self) -> list[str]:
        """What keeps this target from being used, one line each (files
        missing, unreadable, not PEM, a key that does not match or is
        encrypted). Never the content of a file."""
        tls = self.tls
        if tls is None or self.scheme != "tcp":
            return []
        out: list[str] = []
        for path in (tls.ca, tls.cert, tls.key):
            if path and not os.path.isfile(path):
                out.append(f"{tls.origin}: {path} does not exist")
            elif path and not os.access(path, os.R_OK):
                out.append(f"{tls.origin}: cannot read {path} (permission denied)")
        if out:
            return out
        if tls.key and _encrypted_key(tls.key):
            return [f"{tls.origin}: {tls.key} is an encrypted private key; the docker CLI refuses "
                    "those too: store it decrypted (openssl pkey -in key.pem -out key.pem)"]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if tls.ca:
            try:
                ctx.load_verify_locations(cafile=tls.ca)
            except (ssl.SSLError, ValueError) as exc:
                out.append(f"{tls.origin}: {tls.ca} is not a PEM CA certificate ({_ssl_reason(exc)})")
        if tls.cert and tls.key:
            try:
                ctx.load_cert_chain(tls.cert, tls.key, password=_no_password)
            except ssl.SSLError as exc:
                out.append(f"{tls.origin}: {tls.cert} and {tls.key} are not a certificate and its private key "
                           f"({_ssl_reason(exc)})")
        return out

    # -- clients -----------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context for Dockhand's own sockets (pulls, batched
        removals): the same CA, certificate and key docker-py is given."""
        tls = self.tls
        if tls is None or self.scheme != "tcp":
            return None
        ctx = ssl.create_default_context(cafile=tls.ca or None)
        if not tls.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if tls.cert and tls.key:
            ctx.load_cert_chain(tls.cert, tls.key, password=_no_password)
        return ctx

    def docker_py_kwargs(self) -> dict:
        """``docker.APIClient(**kwargs)`` for this target (base_url, tls;
        ssh through docker-py's paramiko support)."""
        kwargs: dict = {"base_url": self.url}
        if self.tls is not None and self.scheme == "tcp":
            from docker.tls import TLSConfig

            tls = self.tls
            kwargs["tls"] = TLSConfig(client_cert=(tls.cert, tls.key) if tls.cert else None,
                                      ca_cert=tls.ca or None,
                                      verify=(tls.ca or _system_cafile() or True) if tls.verify else False)
        if self.scheme == "ssh":
            kwargs["use_ssh_client"] = False  # paramiko: errors as exceptions, host keys checked
        return kwargs

    def probe_ssh(self, timeout: float) -> None:
        """Open and close a TCP connection to the ssh server within ``timeout``.

        docker-py's paramiko transport connects without a timeout, so a host
        that drops packets would hold a worker (and start-up) for the kernel's
        minutes; this bounds that. It reads ``~/.ssh/config`` as docker-py does
        (HostName, Port) and probes nothing when a ProxyCommand reaches the host."""
        parts = urllib.parse.urlsplit(self.url)
        host, port = parts.hostname or "", parts.port
        config = Path(os.path.expanduser("~/.ssh/config"))
        if config.is_file():
            import paramiko  # docker's [ssh] extra

            ssh_config = paramiko.SSHConfig()
            with open(config, encoding="utf-8", errors="replace") as f:
                ssh_config.parse(f)
            entry = ssh_config.lookup(host)
            if "proxycommand" in entry:
                return
            if "proxyjump" in entry:  # paramiko (and so docker-py) ignores it: it would connect directly
                raise paramiko.SSHException(
                    f"~/.ssh/config has ProxyJump for {host}, which the Docker SDK's ssh does not follow: "
                    f"use ProxyCommand ssh -W %h:%p {entry['proxyjump']} instead")
            host = entry.get("hostname", host)
            if port is None and "port" in entry:
                port = int(entry["port"])
        try:
            socket.create_connection((host, port or 22), timeout).close()
        except (socket.timeout, TimeoutError):
            raise
        except OSError as exc:  # worded as paramiko words it, so it reads "ssh: Connection refused"
            from paramiko.ssh_exception import NoValidConnectionsError

            raise NoValidConnectionsError({(host, port or 22): exc}) from exc

    def api_client(self, *, version: str, timeout: float, **extra):
        """A ``docker.APIClient`` for this target at a known API ``version``
        (no negotiation). With TLS, requests' environment is not trusted:
        ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` would replace the CA given
        (requests #3829) and an HTTP proxy would see the engine's traffic; the
        docker CLI's TLS transport uses neither."""
        import docker

        api = docker.APIClient(**self.docker_py_kwargs(), version=version, timeout=timeout, **extra)
        if self.tls is not None and self.scheme == "tcp":
            api.trust_env = False
        return api

    def connect(self, timeout: float, on_socket: Callable[[socket.socket], None] | None = None) -> socket.socket:
        """A connected socket to the engine (unix, TCP, or TLS over TCP).
        ``on_socket`` gets each socket as soon as it exists (the plain one,
        then the TLS one), so another thread can shut it down at any point."""
        hook = on_socket or (lambda s: None)
        path = self.unix_path
        if path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            hook(sock)
            sock.settimeout(timeout)
            sock.connect(path)
            return sock
        if self.scheme != "tcp":
            raise ConnectionProblem(f"Dockhand cannot open its own connection to {self.url}")
        host, port = self.address
        sock = socket.create_connection((host, port), timeout)
        hook(sock)
        ctx = self.ssl_context()
        if ctx is not None:
            sock = ctx.wrap_socket(sock, server_hostname=host)
            hook(sock)
        return sock


def _system_cafile() -> str:
    """The system's CA bundle (what the docker CLI and Dockhand's own sockets
    trust without a ca.pem), rather than requests' own copy of Mozilla's."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return candidate
    return ""


def _no_password() -> bytes:
    """Never prompt on the terminal for a key's pass phrase."""
    raise ssl.SSLError("the private key is encrypted")


def _encrypted_key(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return b"ENCRYPTED" in head


def _ssl_reason(exc: Exception) -> str:
    reason = (getattr(exc, "reason", None) or (exc.strerror if isinstance(getattr(exc, "strerror", None), str)
                                                else "") or str(exc))
    return str(reason).replace("_", " ").lower()


# --------------------------------------------------------------------------
# hosts, as the CLI parses them (opts/hosts.go)


def parse_host(value: str, *, what: str = "DOCKER_HOST", tls: bool = False) -> str:
    """The CLI's ``ParseHost``: ``""`` -> the default socket (``tcp://localhost:2376``
    with TLS), ``host:port`` -> ``tcp://host:port``, ``tcp://host`` -> port 2375,
    ``unix://`` -> the default socket. Raises :class:`ConnectionProblem`."""
    raw = value.strip()
    if not raw:
        return DEFAULT_TLS_HOST if tls else DEFAULT_UNIX_HOST
    shown = f"{what}={raw!r}"
    scheme, sep, rest = raw.partition("://")
    if not sep:
        if raw.startswith(("/", ".")):
            raise ConnectionProblem(f"{shown} has no scheme: use unix://{raw} for a socket, "
                                    "tcp://host:2376 or ssh://user@host")
        scheme, rest = "tcp", raw  # the CLI reads host:port as TCP
    scheme = scheme.lower()
    if scheme == "unix":
        if "://" in rest:
            raise ConnectionProblem(f"{shown} is not a unix socket address (unix:///path/docker.sock)")
        return "unix://" + (rest or DEFAULT_SOCKET)
    if scheme == "tcp":
        return _parse_tcp(rest, shown)
    if scheme == "ssh":
        return _parse_ssh(rest, shown)
    if scheme in ("http", "https"):
        raise ConnectionProblem(f"{shown}: the docker CLI does not take {scheme}://; use tcp://host:port"
                                f"{' with DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH' if scheme == 'https' else ''}")
    if scheme in ("fd", "npipe"):
        raise ConnectionProblem(f"{shown}: {scheme}:// is not a way to reach an engine from Linux; "
                                "use unix://, tcp:// or ssh://")
    raise ConnectionProblem(f"{shown} has an unknown scheme {scheme!r}: use unix://, tcp:// or ssh://")


def _parse_tcp(rest: str, shown: str) -> str:
    if not rest:
        return f"tcp://localhost:{DEFAULT_TCP_PORT}"
    if "://" in rest or any(c in rest for c in "?#@ "):
        raise ConnectionProblem(f"{shown} is not a TCP address (tcp://host:2376)")
    parts = urllib.parse.urlsplit("tcp://" + rest)
    try:
        port = parts.port
    except ValueError:
        raise ConnectionProblem(f"{shown} has an invalid port (1-65535)") from None
    if port == 0:
        raise ConnectionProblem(f"{shown} has an invalid port (1-65535)")
    if parts.path not in ("", "/"):
        raise ConnectionProblem(f"{shown}: Dockhand takes no path after the port (tcp://host:2376)")
    host = parts.hostname or "localhost"
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"tcp://{host}:{port or DEFAULT_TCP_PORT}"


def _parse_ssh(rest: str, shown: str) -> str:
    parts = urllib.parse.urlsplit("ssh://" + rest)
    try:
        port = parts.port
    except ValueError:
        raise ConnectionProblem(f"{shown} has an invalid port (1-65535)") from None
    if not parts.hostname:
        raise ConnectionProblem(f"{shown} names no host (ssh://user@host[:port])")
    if parts.password is not None:
        raise ConnectionProblem(f"{shown}: a password in the address is not supported; use a key "
                                "(ssh-agent, or IdentityFile in ~/.ssh/config)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConnectionProblem(f"{shown}: an ssh address takes no path (ssh://user@host[:port])")
    if port == 0:
        raise ConnectionProblem(f"{shown} has an invalid port (1-65535)")
    return "ssh://" + parts.netloc


# --------------------------------------------------------------------------
# resolution


def docker_config_dir(env: Mapping[str, str]) -> Path:
    configured = (env.get("DOCKER_CONFIG") or "").strip()
    return Path(configured).expanduser() if configured else Path(env.get("HOME") or Path.home()) / ".docker"


def context_id(name: str) -> str:
    """The store's directory name for a context: the SHA-256 of its name (docker/cli ``contextdirOf``)."""
    return hashlib.sha256(name.encode()).hexdigest()


def resolve(env: Mapping[str, str] | None = None) -> EngineTarget:
    """The engine the docker CLI would talk to with this environment.
    Raises :class:`ConnectionProblem` (one line) when it cannot be used."""
    env = os.environ if env is None else env
    config_dir = docker_config_dir(env)
    host = (env.get("DOCKER_HOST") or "").strip()
    if host:
        return _from_environment(env, host, "DOCKER_HOST", config_dir)
    name = (env.get("DOCKER_CONTEXT") or "").strip()
    source = f"DOCKER_CONTEXT={name}"
    if not name:
        name = current_context(config_dir)
        source = f"context {name} (currentContext of {config_dir / 'config.json'})"
    if name and name != DEFAULT_CONTEXT:
        return from_context(name, config_dir, source=source)
    chosen = "DOCKER_CONTEXT=default" if (env.get("DOCKER_CONTEXT") or "").strip() else SOURCE_DEFAULT
    return _from_environment(env, "", chosen, config_dir)


def current_context(config_dir: Path) -> str:
    """``currentContext`` of the docker config ("" when unset or unreadable:
    bot/credentials.py reports an unreadable config.json)."""
    try:
        data = json.loads((config_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    value = data.get("currentContext") if isinstance(data, dict) else None
    return value.strip() if isinstance(value, str) else ""


def _from_environment(env: Mapping[str, str], host: str, source: str, config_dir: Path) -> EngineTarget:
    verify = bool(env.get("DOCKER_TLS_VERIFY"))
    use_tls = verify or bool(env.get("DOCKER_TLS"))
    cert_env = (env.get("DOCKER_CERT_PATH") or "").strip()
    url = parse_host(host, tls=use_tls)
    explicit = source != SOURCE_DEFAULT or use_tls
    if url.startswith("tcp://") and use_tls:
        cert_dir = Path(cert_env).expanduser() if cert_env else config_dir
        flag = "DOCKER_TLS_VERIFY" if verify else "DOCKER_TLS"
        origin = f"DOCKER_CERT_PATH={cert_dir}" if cert_env else f"{flag} (certificates in {cert_dir})"
        return EngineTarget(url, tls=tls_from_directory(cert_dir, verify=verify, origin=origin, require_ca=True,
                                                        why=flag),
                            source=source, explicit=explicit)
    return EngineTarget(url, source=source, explicit=explicit)


def tls_from_directory(cert_dir: Path, *, verify: bool, origin: str, require_ca: bool, why: str = "") -> TLSFiles:
    """ca.pem, cert.pem and key.pem of ``cert_dir``, as the CLI takes them:
    a missing certificate and key mean no client certificate; one without the
    other, a missing ``ca.pem`` when it is required, or a missing directory
    is a :class:`ConnectionProblem`."""
    if not cert_dir.is_dir():
        raise ConnectionProblem(f"{origin}: {cert_dir} is not a directory (it should hold ca.pem, cert.pem "
                                "and key.pem)")
    ca, cert, key = (cert_dir / n for n in ("ca.pem", "cert.pem", "key.pem"))
    if require_ca and not ca.exists():
        raise ConnectionProblem(f"{why or origin} is set but {cert_dir} has no ca.pem: put the engine's CA "
                                "certificate there, or point DOCKER_CERT_PATH at the directory holding "
                                "ca.pem, cert.pem and key.pem")
    if cert.exists() != key.exists():
        have, missing = ("cert.pem", "key.pem") if cert.exists() else ("key.pem", "cert.pem")
        raise ConnectionProblem(f"{origin}: {cert_dir} has {have} but no {missing}: a client certificate "
                                "needs both")
    return TLSFiles(ca=str(ca) if ca.exists() else "", cert=str(cert) if cert.exists() else "",
                    key=str(key) if key.exists() else "", verify=verify, origin=origin)


def from_context(name: str, config_dir: Path, *, source: str = "") -> EngineTarget:
    """The docker endpoint of context ``name`` in the CLI's context store."""
    source = source or f"context {name}"
    ident = context_id(name)
    meta = config_dir / "contexts" / "meta" / ident / "meta.json"
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConnectionProblem(f"{source}: no context named {name!r} in {config_dir / 'contexts'} "
                                "(`docker context ls` lists them)") from None
    except OSError as exc:
        raise ConnectionProblem(f"{source}: cannot read {meta} ({exc.strerror or exc})") from None
    except ValueError:
        raise ConnectionProblem(f"{source}: {meta} is not valid JSON") from None
    endpoint = ((data.get("Endpoints") or {}).get("docker") if isinstance(data, dict) else None)
    if not isinstance(endpoint, dict):
        raise ConnectionProblem(f"{source}: context {name!r} has no docker endpoint")
    host = endpoint.get("Host") if isinstance(endpoint.get("Host"), str) else ""
    url = parse_host(host or "", what=f"context {name!r}: Host")
    skip_verify = bool(endpoint.get("SkipTLSVerify"))
    tls = None
    if url.startswith("tcp://"):
        tls_dir = config_dir / "contexts" / "tls" / ident / "docker"
        has_files = tls_dir.is_dir() and any((tls_dir / n).exists() for n in ("ca.pem", "cert.pem", "key.pem"))
        if has_files or skip_verify:
            tls = (tls_from_directory(tls_dir, verify=not skip_verify, origin=f"context {name}", require_ca=False)
                   if has_files else TLSFiles(verify=False, origin=f"context {name}"))
    return EngineTarget(url, tls=tls, source=source, explicit=True)


def target_for(name: str, spec: str, *, env: Mapping[str, str] | None = None,
               cert_path: str = "", tls_verify: bool | None = None) -> EngineTarget:
    """A named engine (for configurations with several hosts): ``spec`` is a
    ``unix://``, ``tcp://`` or ``ssh://`` address, or ``context:NAME`` for a
    docker context. A ``tcp://`` address uses TLS when ``cert_path`` is given
    (verified unless ``tls_verify`` is False)."""
    env = os.environ if env is None else env
    config_dir = docker_config_dir(env)
    spec = spec.strip()
    if spec.startswith("context:"):
        return from_context(spec[len("context:"):].strip(), config_dir, source=f"{name}: context")
    url = parse_host(spec, what=name)
    tls = None
    if cert_path and url.startswith("tcp://"):
        verify = True if tls_verify is None else tls_verify
        tls = tls_from_directory(Path(cert_path).expanduser(), verify=verify, origin=f"{name}: {cert_path}",
                                 require_ca=verify)
    return EngineTarget(url, tls=tls, source=name, explicit=True)


def from_url(url: str, *, source: str = "DOCKER_HOST") -> EngineTarget:
    """A target from an address alone (no TLS): what ``DockerEngine("unix:///…")`` means."""
    return EngineTarget(parse_host(url), source=source, explicit=True)
