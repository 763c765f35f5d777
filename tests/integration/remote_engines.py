"""Engines reached the ways teams reach them, for tests: a SECOND private
dockerd listening on TCP 127.0.0.1 with mutual TLS (certificates made here
with openssl), and a private sshd on 127.0.0.1 whose `docker system
dial-stdio` reaches a private engine's socket (never /var/run/docker.sock).

Both are started with the stack's own helpers (tests/stack/stack.py):
setsid, the dead-proxy safety net, their own data/exec roots and pid files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import importlib.util
import sys


def _stack_module():
    """tests/stack/stack.py, the same module object tests/conftest.py loads."""
    name = "dockhand_test_stack"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "stack" / "stack.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


stackmod = _stack_module()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}-key.pem", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=dockhand test {name}",
             cwd=d)


def _signed(d: Path, name: str, ca: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(ext)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
             "-CAcreateserial", "-out", f"{name}-cert.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


@dataclass
class Certs:
    root: Path
    server: Path  # ca.pem, server-cert.pem, server-key.pem
    good: Path  # DOCKER_CERT_PATH: ca.pem, cert.pem, key.pem
    wrong_ca: Path  # the right client certificate, but another CA
    no_cert: Path  # ca.pem only: no client certificate
    stranger: Path  # a client certificate from another CA


def make_certs(root: Path) -> Certs:
    """A CA, a server certificate for 127.0.0.1, a client certificate; a second
    CA and a client certificate signed by it."""
    root.mkdir(parents=True, exist_ok=True)
    _ca(root, "ca")
    _ca(root, "other-ca")
    _signed(root, "server", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _signed(root, "client", "ca", "extendedKeyUsage=clientAuth\n")
    _signed(root, "stranger", "other-ca", "extendedKeyUsage=clientAuth\n")

    def cert_dir(name: str, ca: str, cert: str | None) -> Path:
        d = root / name
        d.mkdir()
        shutil.copy(root / f"{ca}.pem", d / "ca.pem")
        if cert:
            shutil.copy(root / f"{cert}-cert.pem", d / "cert.pem")
            shutil.copy(root / f"{cert}-key.pem", d / "key.pem")
            os.chmod(d / "key.pem", 0o600)
        return d

    server = root / "server"
    server.mkdir()
    for f in ("ca.pem", "server-cert.pem", "server-key.pem"):
        shutil.copy(root / f, server / f)
    return Certs(root, server, cert_dir("good", "ca", "client"), cert_dir("wrong-ca", "other-ca", "client"),
                 cert_dir("no-cert", "ca", None), cert_dir("stranger", "ca", "stranger"))


@dataclass
class TLSEngine:
    paths: stackmod.Paths
    url: str  # tcp://127.0.0.1:PORT
    certs: Certs

    def env(self, cert_dir: Path | None = None) -> dict:
        """DOCKER_* as the docker CLI reads them for this engine."""
        return {"DOCKER_HOST": self.url, "DOCKER_TLS_VERIFY": "1",
                "DOCKER_CERT_PATH": str(cert_dir or self.certs.good)}

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """The real docker CLI on this engine, over TCP with TLS."""
        env = stackmod.clean_env()
        env.update(self.env(), DOCKER_CONFIG=str(self.certs.root / "cli-config"))
        return subprocess.run([stackmod.docker_cli() or "docker", *args], capture_output=True, text=True,
                              env=env, timeout=120, check=check)


def start_tls_engine(root: Path) -> TLSEngine:
    """A second private dockerd (own data-root, exec-root, pidfile, unix socket)
    that also listens on tcp://127.0.0.1:<free port> with --tlsverify."""
    certs = make_certs(root / "certs")
    paths = stackmod.Paths(str(root / "engine"))
    os.makedirs(paths.root, exist_ok=True)
    port = stackmod.free_port()
    s = certs.server
    try:
        stackmod.start_dockerd(paths, extra_args=("--tlsverify", "--tlscacert", str(s / "ca.pem"),
                                                  "--tlscert", str(s / "server-cert.pem"),
                                                  "--tlskey", str(s / "server-key.pem"),
                                                  "--host", f"tcp://127.0.0.1:{port}"))
    except BaseException:
        stackmod.stop_dockerd(paths)  # a dockerd that failed may leave its data-root mounted
        raise
    return TLSEngine(paths, f"tcp://127.0.0.1:{port}", certs)


def stop_tls_engine(engine: TLSEngine) -> None:
    stackmod.stop_dockerd(engine.paths)


# --------------------------------------------------------------------------
# sshd


@dataclass
class SSHServer:
    root: Path
    port: int
    pid: int
    home: Path  # a HOME whose ~/.ssh has the client key, known_hosts and config
    user: str
    client_key: Path

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def env(self) -> dict:
        return {"HOME": str(self.home), "DOCKER_HOST": self.url}


SSHD_CONFIG = """\
# Written by tests/integration/remote_engines.py: a private sshd for Dockhand's tests.
ListenAddress 127.0.0.1
Port {port}
HostKey {root}/host_key
PidFile {root}/sshd.pid
AuthorizedKeysFile {root}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
AllowUsers {user}
PermitUserEnvironment no
X11Forwarding no
AllowTcpForwarding no
Subsystem sftp none
SetEnv DOCKER_HOST={docker_host}
LogLevel VERBOSE
"""


def sshd_binary() -> str | None:
    for candidate in ("/usr/sbin/sshd", shutil.which("sshd")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def start_sshd(root: Path, docker_host: str) -> SSHServer:
    """sshd on 127.0.0.1:<free port> taking one generated key; its sessions get
    ``DOCKER_HOST=docker_host`` (a private engine's socket)."""
    sshd = sshd_binary()
    if sshd is None:
        raise RuntimeError("sshd not found (Debian package openssh-server: scripts/setup --engine)")
    import getpass

    user = getpass.getuser()
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "host_key")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "client_key")], check=True)
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    port = stackmod.free_port()
    (root / "sshd_config").write_text(SSHD_CONFIG.format(port=port, root=root, user=user, docker_host=docker_host))
    with contextlib.suppress(OSError):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
    check = subprocess.run([sshd, "-t", "-f", str(root / "sshd_config")], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"sshd -t: {check.stderr.strip()}")
    proc = stackmod.start_process([sshd, "-D", "-e", "-f", str(root / "sshd_config")], str(root / "sshd.log"),
                                  stackmod.safety_env(), str(root), "starting sshd")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {(root / 'sshd.log').read_text()[-2000:]}")
        if not stackmod.port_free(port):
            break
        time.sleep(0.05)
    home = root / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    host_pub = (root / "host_key.pub").read_text().split()
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (home / ".ssh" / "config").write_text(f"Host 127.0.0.1\n  IdentityFile {root / 'client_key'}\n"
                                          "  IdentitiesOnly yes\n")
    os.chmod(home / ".ssh" / "config", 0o600)
    return SSHServer(root, port, proc.pid, home, user, root / "client_key")


def stop_sshd(server: SSHServer) -> None:
    stackmod.stop_pid(server.pid, str(server.root / "sshd_config"), "sshd", timeout=5.0)


def temp_root(prefix: str) -> Path:
    # short: unix socket paths (containerd's, under the exec root) must stay under 108 bytes
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
