#!/usr/bin/env python3
"""Dockhand's private test stack (stdlib only; runs with any python3 >= 3.8).

    python3 tests/stack/stack.py up        # start everything, seed images (idempotent)
    python3 tests/stack/stack.py seed      # (re)create missing seed images only
    python3 tests/stack/stack.py status    # what runs; exit 1 when something is missing
    python3 tests/stack/stack.py env       # shell exports: eval "$(python3 tests/stack/stack.py env)"
    python3 tests/stack/stack.py down      # stop what this stack started (keeps its data)
    python3 tests/stack/stack.py purge     # stop it and delete its state dir (also: down --purge)

Parts, all private to the state dir: $DOCKHAND_STACK_DIR, or by default
/tmp/dockhand-stack-<hash of this checkout's path>, so two checkouts never share,
reset or stop each other's engine:
  * a dockerd with its own data-root, exec-root (so its own containerd), pidfile,
    unix socket and config file; no bridge, no iptables; proxies pointed at a dead
    port so nothing can reach Docker Hub; labelled org.dockhand.engine=sample so
    Dockhand can tell (from `docker info`) that it talks to this sample engine;
  * Debian's docker-registry on 127.0.0.1:<port>, filesystem storage, deletes enabled;
    it is also the engine's Docker Hub mirror (`registry-mirrors`), holding the
    tutorial's images (hello-world, ubuntu:22.04/latest, ubuntu:16.04, busybox) built
    offline, so `docker pull hello-world` works with no internet; anything else
    not on the mirror fails at once on the dead proxy;
  * tests/stack/fake_index.py, a fake Docker Hub search index on 127.0.0.1:<port>;
  * seed images built offline from busybox-static and pushed to the registry.

Only processes recorded in this stack's own pidfiles (and whose command line names
this state dir) are ever stopped; the system daemon's socket is never used.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import http.client
import io
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import time
import traceback
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_INDEX = os.path.join(HERE, "fake_index.py")
INDEX_DATA = os.path.join(HERE, "index_data.json")
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
STATE_VERSION = 1
SAMPLE_LABEL_KEY = "org.dockhand.engine"
SAMPLE_LABEL = f"{SAMPLE_LABEL_KEY}=sample"  # the bot reads it from `docker info` (Labels)
MIRROR_LABEL_KEY = "org.dockhand.mirror"  # ...and this one: the images the Docker Hub mirror serves


def default_dir(root: str = REPO_ROOT) -> str:
    """/tmp/dockhand-stack-<10 hex of this checkout's real path>: one stack per checkout."""
    digest = hashlib.sha256(os.path.realpath(root).encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"/tmp/dockhand-stack-{digest}"


DEFAULT_DIR = default_dir()
LEGACY_DIR = "/tmp/dockhand-stack"  # the one default every checkout shared before

DEAD_PROXY = "http://127.0.0.1:9"
NO_PROXY = "localhost,127.0.0.1"
SEED_CONTAINER = "dockhand-seed-user"
SEED_LABEL = "org.dockhand.seed=labelled"
BIG_LAYER_BYTES = 11 * 1024 * 1024  # two of these + busybox: ~24 MB, 3 layers
FIXED_MTIME = 1700000000
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)

DOCKERD_START_TIMEOUT = 60.0
DOCKERD_STOP_TIMEOUT = 20.0
SERVICE_START_TIMEOUT = 20.0


class StackError(Exception):
    """A failure worth one friendly line (plus the log file to look at)."""

    def __init__(self, message: str, log: str | None = None):
        super().__init__(message)
        self.log = log

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{msg} (see {self.log})" if self.log else msg


def say(msg: str) -> None:
    sys.stderr.write(f"stack: {msg}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- paths


class Paths:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        j = lambda *a: os.path.join(self.root, *a)  # noqa: E731
        self.state = j("state.json")
        self.lock = j("lock")
        self.socket = j("docker.sock")
        self.docker_host = "unix://" + self.socket
        self.data_root = j("data")
        self.exec_root = j("exec")
        self.dockerd_pid = j("dockerd.pid")
        self.dockerd_log = j("dockerd.log")
        self.daemon_json = j("daemon.json")
        self.containerd_pid = os.path.join(self.exec_root, "containerd", "containerd.pid")
        self.containerd_toml = os.path.join(self.exec_root, "containerd", "containerd.toml")
        self.containerd_sock = os.path.join(self.exec_root, "containerd", "containerd.sock")
        self.docker_config = j("docker-config")
        self.registry_dir = j("registry")
        self.registry_config = j("registry", "config.yml")
        self.registry_storage = j("registry", "storage")
        self.registry_pid = j("registry.pid")
        self.registry_log = j("registry.log")
        self.index_pid = j("index.pid")
        self.index_log = j("index.log")
        self.index_port_file = j("index.port")
        self.apt_log = j("apt.log")
        self.work = j("work")


def stack_dir() -> str:
    return os.environ.get("DOCKHAND_STACK_DIR") or DEFAULT_DIR


# --------------------------------------------------------------------------- state


def load_state(p: Paths) -> dict:
    try:
        with open(p.state, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}


def save_state(p: Paths, st: dict) -> None:
    st["version"] = STATE_VERSION
    st["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    tmp = p.state + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(st, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, p.state)


@contextlib.contextmanager
def locked(p: Paths):
    os.makedirs(p.root, exist_ok=True)
    fd = os.open(p.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another stack.py holding {p.lock} ...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- processes


def proc_state(pid: int | None) -> str | None:
    if not pid or pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("utf-8", "replace")
        return data[data.rindex(")") + 2]
    except (OSError, ValueError, IndexError):
        return None


def proc_alive(pid: int | None) -> bool:
    """Running and not a zombie (PID 1 here reaps orphans only every ~1.5 s)."""
    return proc_state(pid) not in (None, "Z", "X", "x")


def proc_cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def proc_ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("utf-8", "replace")
        return int(data[data.rindex(")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def owned(pid: int | None, marker: str) -> bool:
    """Alive AND its command line names our marker (guards against pid reuse)."""
    return bool(pid) and proc_alive(pid) and marker in proc_cmdline(pid)


def read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def write_pid(path: str, pid: int) -> None:
    with open(path, "w") as f:
        f.write(f"{pid}\n")


def reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap(pid)
        if not proc_alive(pid):
            return True
        time.sleep(0.05)
    reap(pid)
    return not proc_alive(pid)


def stop_pid(pid: int | None, marker: str, name: str, timeout: float = 10.0) -> bool:
    """SIGTERM then SIGKILL a process we own. Returns True when something was stopped."""
    if not owned(pid, marker):
        return False
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not wait_gone(pid, timeout):
        say(f"{name} (pid {pid}) ignored SIGTERM for {timeout:.0f}s; sending SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_gone(pid, 5.0)
    return True


def all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def last_log_line(path: str) -> str:
    """The last meaningful line of a log file (for one-line error messages)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        line = line.strip()
        if line and not line.startswith("==="):
            return line if len(line) <= 300 else line[:300] + "..."
    return ""


def exited_error(name: str, proc: subprocess.Popen, log: str, what: str = "while starting") -> StackError:
    last = last_log_line(log)
    return StackError(f"{name} exited with code {proc.returncode} {what}" + (f": {last}" if last else ""), log)


def find_procs(marker: str, hint: str) -> list[int]:
    """Live processes whose command line names marker and whose argv mentions hint
    (finds our own processes when a pidfile got lost)."""
    found = []
    for pid in all_pids():
        if pid == os.getpid():
            continue
        cmd = proc_cmdline(pid)
        argv0 = os.path.basename(cmd.split(" ", 1)[0])
        if marker in cmd and hint in argv0 and proc_alive(pid):
            found.append(pid)
    return found


def start_process(argv: list[str], log_path: str, env: dict, cwd: str, header: str) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} stack.py: {header}\n".encode())
        log.write(("=== " + " ".join(shlex.quote(a) for a in argv) + "\n").encode())
        log.flush()
        try:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,  # setsid: outlives this script and its shell
                close_fds=True,
            )
        except OSError as e:
            raise StackError(f"cannot start {argv[0]}: {e}", log_path) from None


def clean_env() -> dict:
    env = dict(os.environ)
    for k in list(env):
        if k.upper() in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "FTP_PROXY"):
            env.pop(k)
        if k.startswith("DOCKER_") or k in ("CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE"):
            env.pop(k)
    path = env.get("PATH", "")
    for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if d not in path.split(":"):
            path = f"{path}:{d}" if path else d
    env["PATH"] = path
    return env


def safety_env() -> dict:
    env = clean_env()
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[k] = DEAD_PROXY
    env["NO_PROXY"] = env["no_proxy"] = NO_PROXY
    return env


# --------------------------------------------------------------------------- ports / http


def port_free(port: int) -> bool:
    if not port:
        return False
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port(preferred: int | None = None, avoid: tuple = ()) -> int:
    if preferred and preferred not in avoid and port_free(preferred):
        return preferred
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in avoid:
            return port
    raise StackError("cannot find a free port on 127.0.0.1")


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def http_request(url: str, method: str = "GET", headers: dict | None = None, timeout: float = 5.0):
    """Returns (status, headers, body bytes); (None, None, error text) when unreachable."""
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with _OPENER.open(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        return None, None, str(e).encode()


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def engine(p: Paths, method: str, url: str, timeout: float = 10.0):
    """Engine API over the private socket. Returns (status, parsed JSON or text)."""
    conn = UnixHTTPConnection(p.socket, timeout=timeout)
    try:
        conn.request(method, url)
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    ctype = r.getheader("Content-Type", "")
    if "json" in ctype and body:
        return r.status, json.loads(body)
    return r.status, body.decode("utf-8", "replace")


def engine_ping(p: Paths, timeout: float = 2.0) -> bool:
    try:
        status, body = engine(p, "GET", "/_ping", timeout=timeout)
        return status == 200 and str(body).strip() == "OK"
    except (OSError, http.client.HTTPException, ValueError):
        return False


# --------------------------------------------------------------------------- packages


def elf_is_static(path: str) -> bool:
    """True for an ELF executable without a PT_INTERP program header."""
    try:
        with open(path, "rb") as f:
            hdr = f.read(64)
            if hdr[:4] != b"\x7fELF" or hdr[4] != 2:  # 64-bit only
                return False
            endian = "<" if hdr[5] == 1 else ">"
            phoff = struct.unpack_from(endian + "Q", hdr, 0x20)[0]
            phentsize, phnum = struct.unpack_from(endian + "HH", hdr, 0x36)
            for i in range(phnum):
                f.seek(phoff + i * phentsize)
                (ptype,) = struct.unpack(endian + "I", f.read(4))
                if ptype == 3:  # PT_INTERP
                    return False
            return True
    except (OSError, struct.error, IndexError):
        return False


def find_busybox() -> str | None:
    for cand in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(cand) and elf_is_static(cand):
            return cand
    return None


def docker_cli() -> str | None:
    return shutil.which("docker") or (os.path.exists("/usr/bin/docker") and "/usr/bin/docker") or None


def which_any(name: str) -> str | None:
    return shutil.which(name, path=clean_env()["PATH"])


def missing_packages() -> list[str]:
    missing = []
    if not (which_any("dockerd") and which_any("containerd") and which_any("runc") and docker_cli()):
        missing.append("docker.io")
    if not which_any("docker-registry"):
        missing.append("docker-registry")
    if not find_busybox():
        missing.append("busybox-static")
    return missing


def ensure_packages(p: Paths) -> None:
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise StackError(f"missing Debian packages {' '.join(missing)} and not root: install them first")
    if not shutil.which("apt-get"):
        raise StackError(f"missing packages {' '.join(missing)} and no apt-get on this machine")
    os.makedirs(p.root, exist_ok=True)
    env = clean_env()  # no dead proxy here: apt must reach the package mirror
    for k, v in os.environ.items():  # ...but keep the machine's own proxy settings
        if k.lower().endswith("_proxy"):
            env[k] = v
    env["DEBIAN_FRONTEND"] = "noninteractive"
    lock_wait = ["-o", "DPkg::Lock::Timeout=300"]
    t0 = time.monotonic()
    say(f"installing {' '.join(missing)} (log: {p.apt_log}) ...")
    with open(p.apt_log, "ab") as log:
        for argv in (
            ["apt-get", *lock_wait, "update"],
            ["apt-get", *lock_wait, "install", "-y", *missing],
        ):
            log.write(("\n=== " + " ".join(argv) + "\n").encode())
            log.flush()
            rc = subprocess.call(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
            if rc != 0:
                raise StackError(f"`{' '.join(argv)}` failed with exit code {rc}", p.apt_log)
    still = missing_packages()
    if still:
        raise StackError(f"packages still missing after apt-get install: {' '.join(still)}", p.apt_log)
    say(f"packages installed in {time.monotonic() - t0:.1f}s")


# --------------------------------------------------------------------------- mounts


def mounts_under(root: str) -> list[str]:
    out = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 5:
                    continue
                mp = fields[4].encode().decode("unicode_escape")  # \040 etc.
                if mp == root or mp.startswith(root + "/"):
                    out.append(mp)
    except OSError:
        pass
    return sorted(set(out), key=len, reverse=True)


def umount_leftovers(p: Paths) -> None:
    for mp in mounts_under(p.root):
        say(f"unmounting leftover {mp}")
        subprocess.call(["umount", "-l", mp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --------------------------------------------------------------------------- dockerd


def dockerd_pid(p: Paths) -> int | None:
    pid = read_pid(p.dockerd_pid)
    if owned(pid, p.dockerd_pid):
        return pid
    found = find_procs("--pidfile " + p.dockerd_pid, "dockerd")  # pidfile lost?
    return found[0] if found else None


def containerd_pid(p: Paths) -> int | None:
    pid = read_pid(p.containerd_pid)
    return pid if owned(pid, p.containerd_toml) else None


def kill_engine_leftovers(p: Paths) -> None:
    """After dockerd is gone: its containerd, shims, container processes, mounts, pidfiles."""
    cpid = read_pid(p.containerd_pid)
    if cpid and owned(cpid, p.containerd_toml):
        say(f"stopping leftover containerd (pid {cpid})")
        stop_pid(cpid, p.containerd_toml, "containerd", timeout=5.0)
    # Any other containerd started with our config (pid file lost).
    shims = []
    for pid in all_pids():
        cmd = proc_cmdline(pid)
        if not cmd or not proc_alive(pid):
            continue
        if p.containerd_toml in cmd and cmd.split()[0].endswith("containerd"):
            stop_pid(pid, p.containerd_toml, "containerd", timeout=5.0)
        elif "containerd-shim" in cmd.split()[0] and p.containerd_sock in cmd:
            shims.append(pid)
    if shims:
        children = [pid for pid in all_pids() if proc_ppid(pid) in shims]
        for pid in children + shims:
            say(f"killing leftover container process/shim pid {pid}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in children + shims:
            wait_gone(pid, 3.0)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(p.containerd_pid)
    umount_leftovers(p)
    for f in (p.dockerd_pid, p.socket):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f)


def daemon_config(registry: str) -> str:
    """dockerd's config file: the local registry as its Docker Hub mirror, and the
    label that says this is Dockhand's sample engine (both reloadable with SIGHUP)."""
    mirror = ",".join(n.split("/", 1)[1] for n in mirror_refs())
    labels = [SAMPLE_LABEL, f"{MIRROR_LABEL_KEY}={mirror}"]
    return json.dumps({"registry-mirrors": [f"http://{registry}"], "labels": labels}, indent=2) + "\n"


def daemon_config_is(p: Paths, registry: str) -> bool:
    try:
        with open(p.daemon_json) as f:
            return f.read() == daemon_config(registry)
    except OSError:
        return False


def engine_mirrors(p: Paths) -> list:
    status, info = engine(p, "GET", "/info")
    if status != 200 or not isinstance(info, dict):
        return []
    return list((info.get("RegistryConfig") or {}).get("Mirrors") or [])


def reload_daemon_config(p: Paths, pid: int, registry: str) -> None:
    """The registry moved to another port: point the running dockerd's mirror at it."""
    with open(p.daemon_json, "w") as f:
        f.write(daemon_config(registry))
    os.kill(pid, signal.SIGHUP)
    want = f"http://{registry}/"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if want in engine_mirrors(p):
            say(f"dockerd reloaded its config: Docker Hub mirror {registry}, labels")
            return
        time.sleep(0.1)
    raise StackError(f"dockerd did not take its new Docker Hub mirror {registry} (SIGHUP)", p.dockerd_log)


def start_dockerd(p: Paths, registry: str | None = None, extra_args: tuple[str, ...] = ()) -> int:
    """Start (or find running) the private dockerd of ``p``. ``registry``: the
    sample engine's Docker Hub mirror (and its label); None: a plain private
    engine with an empty config. ``extra_args`` adds listeners (e.g.
    ``--host tcp://127.0.0.1:PORT --tlsverify ...``, tests/integration/remote_engines.py)."""
    pid = dockerd_pid(p)
    if pid:
        # Running (or maybe still starting: give it a moment before replacing it).
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc_alive(pid):
            if engine_ping(p):
                if registry is not None and (f"http://{registry}/" not in engine_mirrors(p)
                                             or not daemon_config_is(p, registry)):
                    reload_daemon_config(p, pid, registry)
                return pid
            time.sleep(0.2)
        say(f"dockerd pid {pid} does not answer on {p.socket}; restarting it")
        stop_dockerd(p)
    dockerd = which_any("dockerd")
    if not dockerd:
        raise StackError("dockerd not found (package docker.io)")
    kill_engine_leftovers(p)
    for d in (p.data_root, p.exec_root):
        os.makedirs(d, mode=0o711, exist_ok=True)
    with open(p.daemon_json, "w") as f:
        f.write(daemon_config(registry) if registry is not None else "{}\n")
    argv = [
        dockerd,
        "--data-root", p.data_root,
        "--exec-root", p.exec_root,
        "--pidfile", p.dockerd_pid,
        "--host", p.docker_host,
        "--config-file", p.daemon_json,
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--insecure-registry", "127.0.0.0/8",
        *extra_args,
    ]  # fmt: skip
    t0 = time.monotonic()
    proc = start_process(argv, p.dockerd_log, safety_env(), p.root, "starting dockerd")
    deadline = t0 + DOCKERD_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise exited_error("dockerd", proc, p.dockerd_log)
        if engine_ping(p, timeout=1.0):
            say(f"dockerd up (pid {proc.pid}) in {time.monotonic() - t0:.1f}s")
            return proc.pid
        time.sleep(0.1)
    stop_pid(proc.pid, p.dockerd_pid, "dockerd", timeout=5.0)
    kill_engine_leftovers(p)
    raise StackError(f"dockerd did not answer on {p.socket} within {DOCKERD_START_TIMEOUT:.0f}s", p.dockerd_log)


def stop_dockerd(p: Paths) -> bool:
    pid = dockerd_pid(p)
    stopped = False
    if pid:
        stopped = stop_pid(pid, p.dockerd_pid, "dockerd", timeout=DOCKERD_STOP_TIMEOUT)
    kill_engine_leftovers(p)
    return stopped


# --------------------------------------------------------------------------- registry


REGISTRY_CONFIG = """\
# Written by tests/stack/stack.py: private registry for Dockhand's tests.
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: false
"""


def registry_ready(addr: str) -> bool:
    status, _, body = http_request(f"http://{addr}/v2/", timeout=2.0)
    return status == 200 and body.strip() == b"{}"


def start_registry(p: Paths, st: dict) -> tuple[int, str]:
    pid = read_pid(p.registry_pid)
    addr = st.get("registry")
    if owned(pid, p.registry_config) and addr:
        if registry_ready(addr):
            return pid, addr
        stop_pid(pid, p.registry_config, "registry")
    else:
        for other in find_procs(p.registry_config, "registry"):  # pidfile lost?
            stop_pid(other, p.registry_config, "registry")
    exe = which_any("docker-registry")
    if not exe:
        raise StackError("docker-registry not found (package docker-registry)")
    os.makedirs(p.registry_storage, exist_ok=True)
    preferred = int(addr.rsplit(":", 1)[1]) if addr else None
    last_err = ""
    for attempt in range(3):
        port = free_port(preferred if attempt == 0 else None)
        addr = f"127.0.0.1:{port}"
        with open(p.registry_config, "w") as f:
            f.write(REGISTRY_CONFIG.format(storage=p.registry_storage, port=port))
        t0 = time.monotonic()
        proc = start_process([exe, "serve", p.registry_config], p.registry_log, safety_env(), p.root,
                             f"starting registry on {addr}")  # fmt: skip
        write_pid(p.registry_pid, proc.pid)
        while time.monotonic() - t0 < SERVICE_START_TIMEOUT:
            if proc.poll() is not None:
                last_err = str(exited_error("registry", proc, p.registry_log, f"while starting on {addr}")).rsplit(" (see ", 1)[0]
                break
            if registry_ready(addr):
                say(f"registry up on {addr} (pid {proc.pid}) in {time.monotonic() - t0:.1f}s")
                return proc.pid, addr
            time.sleep(0.05)
        else:
            stop_pid(proc.pid, p.registry_config, "registry")
            raise StackError(f"registry did not answer GET http://{addr}/v2/ within {SERVICE_START_TIMEOUT:.0f}s",
                             p.registry_log)  # fmt: skip
    raise StackError(last_err or "registry failed to start", p.registry_log)


# --------------------------------------------------------------------------- fake index


def index_ready(addr: str) -> bool:
    status, _, _ = http_request(f"http://{addr}/v1/_ping", timeout=2.0)
    return status == 200


def index_fingerprint() -> str:
    h = hashlib.sha256()
    for f in (FAKE_INDEX, INDEX_DATA):
        with open(f, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()[:16]


def start_index(p: Paths, st: dict) -> tuple[int, str]:
    pid = read_pid(p.index_pid)
    addr = st.get("index")
    fingerprint = index_fingerprint()
    if owned(pid, p.index_port_file) and addr:
        if index_ready(addr) and st.get("index_fingerprint") == fingerprint:
            return pid, addr
        if st.get("index_fingerprint") != fingerprint:
            say("fake_index.py or index_data.json changed: restarting the fake index")
        stop_pid(pid, p.index_port_file, "fake index")
    else:
        for other in find_procs(p.index_port_file, "python"):  # pidfile lost?
            stop_pid(other, p.index_port_file, "fake index")
    preferred = int(addr.rsplit(":", 1)[1]) if addr else None
    port = preferred if preferred and port_free(preferred) else 0
    with contextlib.suppress(FileNotFoundError):
        os.unlink(p.index_port_file)
    argv = [sys.executable, "-u", FAKE_INDEX, "--host", "127.0.0.1", "--port", str(port),
            "--data", INDEX_DATA, "--port-file", p.index_port_file]  # fmt: skip
    t0 = time.monotonic()
    proc = start_process(argv, p.index_log, safety_env(), p.root, "starting fake index")
    write_pid(p.index_pid, proc.pid)
    while time.monotonic() - t0 < SERVICE_START_TIMEOUT:
        if proc.poll() is not None:
            raise exited_error("fake index", proc, p.index_log)
        port_txt = ""
        with contextlib.suppress(OSError):
            with open(p.index_port_file) as f:
                port_txt = f.read().strip()
        if port_txt:
            addr = f"127.0.0.1:{port_txt}"
            if index_ready(addr):
                st["index_fingerprint"] = fingerprint
                say(f"fake index up on {addr} (pid {proc.pid}) in {time.monotonic() - t0:.1f}s")
                return proc.pid, addr
        time.sleep(0.05)
    stop_pid(proc.pid, p.index_port_file, "fake index")
    raise StackError(f"fake index did not start within {SERVICE_START_TIMEOUT:.0f}s", p.index_log)


# --------------------------------------------------------------------------- docker CLI


def cli_env(p: Paths) -> dict:
    env = clean_env()
    env["DOCKER_HOST"] = p.docker_host
    env["DOCKER_CONFIG"] = p.docker_config
    env["DOCKER_CLI_HINTS"] = "false"
    return env


def docker(p: Paths, *args: str, input: bytes | None = None, check: bool = True,
           timeout: float = 300) -> subprocess.CompletedProcess:  # fmt: skip
    cli = docker_cli()
    if not cli:
        raise StackError("docker CLI not found (package docker.io)")
    os.makedirs(p.docker_config, exist_ok=True)
    argv = [cli, "-H", p.docker_host, *args]
    try:
        r = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=cli_env(p), timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise StackError(f"`docker {' '.join(args[:3])}` timed out after {timeout:.0f}s", p.dockerd_log) from None
    if check and r.returncode != 0:
        err = (r.stderr or r.stdout or b"").decode("utf-8", "replace").strip().splitlines()
        last = err[-1] if err else f"exit code {r.returncode}"
        raise StackError(f"`docker {' '.join(args[:4])}` failed: {last}", p.dockerd_log)
    return r


# --------------------------------------------------------------------------- image building

_BUSYBOX_CACHE: dict = {}
BUSYBOX_APPLETS = [
    "sh", "ash", "ls", "cat", "echo", "true", "false", "sleep", "env", "id", "ps", "wc", "head",
    "tail", "du", "df", "hostname", "mkdir", "rm", "cp", "mv", "touch", "grep", "sed", "date", "uname",
]  # fmt: skip


def _tar_add(tf: tarfile.TarFile, name: str, *, data: bytes | None = None, kind: str = "file",
             mode: int = 0o644, target: str = "") -> None:  # fmt: skip
    ti = tarfile.TarInfo(name)
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    ti.mtime = FIXED_MTIME
    ti.mode = mode
    if kind == "dir":
        ti.type = tarfile.DIRTYPE
        tf.addfile(ti)
    elif kind == "symlink":
        ti.type = tarfile.SYMTYPE
        ti.linkname = target
        ti.mode = 0o777
        tf.addfile(ti)
    else:
        data = data or b""
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))


def busybox_bytes() -> bytes:
    if "bin" not in _BUSYBOX_CACHE:
        path = find_busybox()
        if not path:
            raise StackError("no static /bin/busybox (package busybox-static)")
        with open(path, "rb") as f:
            _BUSYBOX_CACHE["bin"] = f.read()
    return _BUSYBOX_CACHE["bin"]


def rootfs_tar(extra_files: dict | None = None, with_busybox: bool = True) -> bytes:
    """A tiny rootfs as tar bytes: /bin/busybox + applet symlinks + extra files {path: bytes}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        dirs = set()
        if with_busybox:
            for d in ("bin", "etc", "root", "tmp", "var"):
                _tar_add(tf, d, kind="dir", mode=0o1777 if d == "tmp" else 0o755)
                dirs.add(d)
            _tar_add(tf, "bin/busybox", data=busybox_bytes(), mode=0o755)
            for applet in BUSYBOX_APPLETS:
                _tar_add(tf, f"bin/{applet}", kind="symlink", target="busybox")
            _tar_add(tf, "etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
            _tar_add(tf, "etc/group", data=b"root:x:0:\nnogroup:x:65534:\n")
        for path, data in sorted((extra_files or {}).items()):
            path = path.lstrip("/")
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    _tar_add(tf, d, kind="dir", mode=0o755)
                    dirs.add(d)
            if isinstance(data, str):
                data = data.encode()
            _tar_add(tf, path, data=data, mode=0o644)
    return buf.getvalue()


def import_image(p: Paths, ref: str | None, extra_files: dict, changes: list[str] | None = None) -> str:
    """`tar | docker import -c CMD... - ref`; returns the image ID (sha256:...)."""
    args = ["import"]
    for c in ['CMD ["/bin/sh"]', *(changes or [])]:
        args += ["-c", c]
    args.append("-")
    if ref:
        args.append(ref)
    r = docker(p, *args, input=rootfs_tar(extra_files))
    out = r.stdout.decode().strip().splitlines()
    return out[-1].strip() if out else ""


def docker_arch() -> str:
    m = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
            "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}.get(m, m)  # fmt: skip


def load_layered_image(p: Paths, ref: str, layers: list[tuple[bytes, str]], cmd=("/bin/sh",),
                       labels: dict | None = None) -> str:  # fmt: skip
    """Hand-build a `docker save` archive (one tar per layer) and `docker load` it.

    layers: [(layer tar bytes, created_by text)]. No builder, no intermediate images.
    """
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t, _ in layers]
    created = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
    config = {
        "architecture": docker_arch(),
        "os": "linux",
        "created": created,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": list(cmd),
            "Labels": labels or None,
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": created, "created_by": why} for _, why in layers],
    }
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_names = [f"{d[7:]}/layer.tar" for d in diff_ids]
    manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": layer_names}]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        _tar_add(tf, config_name, data=config_bytes)
        for (data, _), name in zip(layers, layer_names):
            _tar_add(tf, name.split("/")[0], kind="dir", mode=0o755)
            _tar_add(tf, name, data=data)
        _tar_add(tf, "manifest.json", data=json.dumps(manifest).encode())
    docker(p, "load", "-q", input=buf.getvalue())
    return "sha256:" + hashlib.sha256(config_bytes).hexdigest()


# --------------------------------------------------------------------------- seeds


def seed_names(registry: str) -> dict:
    r = f"{registry}/dockhand"
    return {
        "hello_world": f"{r}/hello-world:latest",
        "busybox_135": f"{r}/busybox:1.35",
        "busybox_136": f"{r}/busybox:1.36",
        "busybox_latest": f"{r}/busybox:latest",
        "labelled": f"{r}/labelled:latest",
        "used": f"{r}/used:latest",
        "big": f"{r}/big:latest",
        "pullme_latest": f"{r}/pullme:latest",
        "pullme_v2": f"{r}/pullme:v2",
    }


LOCAL_SEEDS = ("hello_world", "busybox_135", "busybox_136", "busybox_latest", "labelled", "used", "big")
REGISTRY_ONLY = ("pullme_latest", "pullme_v2")


def split_ref(ref: str) -> tuple[str, str, str]:
    """'127.0.0.1:5000/dockhand/busybox:1.36' -> (registry, 'dockhand/busybox', '1.36')."""
    registry, rest = ref.split("/", 1)
    repo, _, tag = rest.rpartition(":")
    return registry, repo, tag


def registry_digest(ref: str) -> str | None:
    registry, repo, tag = split_ref(ref)
    status, headers, _ = http_request(f"http://{registry}/v2/{repo}/manifests/{tag}", method="HEAD",
                                      headers={"Accept": MANIFEST_ACCEPT})  # fmt: skip
    if status == 200 and headers is not None:
        return headers.get("Docker-Content-Digest")
    return None


def inspect_image(p: Paths, ref: str) -> dict | None:
    status, body = engine(p, "GET", f"/images/{urllib.request.quote(ref, safe='/:@')}/json")
    return body if status == 200 and isinstance(body, dict) else None


def container_info(p: Paths, name: str) -> dict | None:
    status, body = engine(p, "GET", f"/containers/{name}/json")
    return body if status == 200 and isinstance(body, dict) else None


def pushed(p: Paths, ref: str, info: dict | None) -> str | None:
    """The registry digest when `ref` is in the registry and the local image knows it."""
    digest = registry_digest(ref)
    if not digest or not info:
        return None
    _, repo, _ = split_ref(ref)
    registry = ref.split("/", 1)[0]
    return digest if f"{registry}/{repo}@{digest}" in (info.get("RepoDigests") or []) else None


def push(p: Paths, ref: str) -> str:
    docker(p, "push", ref)
    digest = registry_digest(ref)
    if not digest:
        raise StackError(f"pushed {ref} but the registry does not list it", p.registry_log)
    return digest


def rmi(p: Paths, *refs: str, force: bool = False) -> None:
    if refs:
        docker(p, "rmi", *(["-f"] if force else []), *refs, check=False)


def purge_old_registry_seeds(p: Paths, old_registry: str, st: dict) -> None:
    """Seeds named after a previous registry port: drop them (keeps image lists tidy)."""
    say(f"registry moved from {old_registry} to {st['registry']}: removing old seeds")
    docker(p, "rm", "-f", SEED_CONTAINER, check=False)
    status, images = engine(p, "GET", "/images/json")
    old = []
    for img in images if status == 200 else []:
        for t in img.get("RepoTags") or []:
            if t.startswith(f"{old_registry}/dockhand/"):
                old.append(t)
    rmi(p, *old, force=True)
    if st.get("dangling_id"):
        rmi(p, st["dangling_id"], force=True)


def ensure_seeds(p: Paths, st: dict) -> dict:
    """Create what is missing; returns the seeds section of the state."""
    reg = st["registry"]
    names = seed_names(reg)
    prev = st.get("seeds") or {}
    if st.get("seeded_registry") and st["seeded_registry"] != reg:
        purge_old_registry_seeds(p, st["seeded_registry"], st)
        prev = {}
    made = []
    ids: dict = {}

    def ensure(key: str, build) -> dict:
        ref = names[key]
        info = inspect_image(p, ref)
        if info is None:
            build(ref)
            made.append(ref)
            info = inspect_image(p, ref)
            if info is None:
                raise StackError(f"built {ref} but the engine does not know it", p.dockerd_log)
        ids[key] = info["Id"]
        return info

    def ensure_pushed(key: str, info: dict) -> str:
        ref = names[key]
        digest = pushed(p, ref, info)
        if not digest:
            digest = push(p, ref)
            made.append(f"push {ref}")
        return digest

    def distinct(key: str):
        return lambda ref: import_image(p, ref, {"etc/dockhand-seed": f"{key} {os.urandom(8).hex()}\n"})

    infos = {}
    infos["hello_world"] = ensure(
        "hello_world",
        lambda ref: import_image(p, ref, {"hello.txt": "Hello from Dockhand!\n"}, ['CMD ["/bin/cat", "/hello.txt"]']),
    )
    # busybox 1.35 / 1.36 distinct; latest = same image as 1.36.
    i135 = ensure("busybox_135", lambda ref: import_image(p, ref, {"etc/dockhand-version": "busybox 1.35\n"}))
    i136 = ensure("busybox_136", lambda ref: import_image(p, ref, {"etc/dockhand-version": "busybox 1.36\n"}))
    if i135["Id"] == i136["Id"]:  # someone retagged: rebuild 1.36
        rmi(p, names["busybox_136"])
        i136 = ensure("busybox_136", lambda ref: import_image(p, ref, {"etc/dockhand-version": "busybox 1.36\n"}))
    latest = inspect_image(p, names["busybox_latest"])
    if latest is None or latest["Id"] != i136["Id"]:
        docker(p, "tag", names["busybox_136"], names["busybox_latest"])
        made.append(names["busybox_latest"])
        latest = inspect_image(p, names["busybox_latest"])
    ids["busybox_latest"] = latest["Id"]
    infos.update(busybox_135=i135, busybox_136=i136, busybox_latest=latest)

    infos["labelled"] = ensure(
        "labelled",
        lambda ref: import_image(p, ref, {"etc/dockhand-seed": "labelled\n"}, [f"LABEL {SEED_LABEL}"]),
    )
    if ((infos["labelled"].get("Config") or {}).get("Labels") or {}).get("org.dockhand.seed") != "labelled":
        rmi(p, names["labelled"], force=True)
        infos["labelled"] = ensure(
            "labelled",
            lambda ref: import_image(p, ref, {"etc/dockhand-seed": "labelled\n"}, [f"LABEL {SEED_LABEL}"]),
        )
    infos["used"] = ensure("used", distinct("used"))

    def build_big(ref: str) -> None:
        base = rootfs_tar({"etc/dockhand-seed": "big\n"})
        layer_a = rootfs_tar({"data/a.bin": os.urandom(BIG_LAYER_BYTES)}, with_busybox=False)
        layer_b = rootfs_tar({"data/b.bin": os.urandom(BIG_LAYER_BYTES)}, with_busybox=False)
        load_layered_image(p, ref, [
            (base, "busybox rootfs (stack.py seed)"),
            (layer_a, "COPY a.bin /data/a.bin  # 11 MiB random"),
            (layer_b, "COPY b.bin /data/b.bin  # 11 MiB random"),
        ])  # fmt: skip

    infos["big"] = ensure("big", build_big)

    digests = {}
    for key in LOCAL_SEEDS:
        if key == "busybox_latest":
            continue
        digests[key] = ensure_pushed(key, inspect_image(p, names[key]) or infos[key])
    latest = inspect_image(p, names["busybox_latest"])
    digests["busybox_latest"] = ensure_pushed("busybox_latest", latest)

    # The stopped container that uses dockhand/used.
    c = container_info(p, SEED_CONTAINER)
    if c is not None and c.get("Image") != ids["used"]:
        docker(p, "rm", "-f", SEED_CONTAINER)
        c = None
    if c is None:
        docker(p, "create", "--name", SEED_CONTAINER, "--network", "none",
               "--label", "org.dockhand.seed=container", names["used"], "/bin/true")  # fmt: skip
        made.append(f"container {SEED_CONTAINER}")
        c = container_info(p, SEED_CONTAINER)
    elif (c.get("State") or {}).get("Running"):
        docker(p, "stop", "-t", "1", SEED_CONTAINER)
        c = container_info(p, SEED_CONTAINER)

    # Dangling image: an untagged import. Keep the one we made if it is still there.
    dangling = st.get("dangling_id") if st.get("seeded_registry") == reg else None
    dinfo = inspect_image(p, dangling) if dangling else None
    if dinfo is None or [t for t in (dinfo.get("RepoTags") or []) if t != "<none>:<none>"]:
        dangling = import_image(p, None, {"etc/dockhand-seed": f"dangling {os.urandom(8).hex()}\n"})
        made.append(f"dangling {dangling[:19]}")

    # Registry-only repos: present in the registry, absent locally.
    for key in REGISTRY_ONLY:
        ref = names[key]
        digest = registry_digest(ref)
        if not digest:
            if inspect_image(p, ref) is None:
                extra = {"etc/dockhand-seed": f"{key}\n", "data/payload.bin": os.urandom(3 * 1024 * 1024)}
                import_image(p, ref, extra)
            digest = push(p, ref)
            made.append(f"push {ref}")
        digests[key] = digest
    local_pullme = [names[k] for k in REGISTRY_ONLY if inspect_image(p, names[k]) is not None]
    if local_pullme:
        rmi(p, *local_pullme)
        left = [r for r in local_pullme if inspect_image(p, r) is not None]
        if left:  # e.g. a test left a container using it: warn, do not break everyone's `up`
            say(f"warning: could not remove local {', '.join(left)} (in use by a container?)")

    seeds = {}
    for key, ref in names.items():
        entry = {"ref": ref, "digest": digests.get(key)}
        if key in ids:
            entry["id"] = ids[key]
        seeds[key] = entry
    st["seeds"] = seeds
    st["seed_images"] = [names[k] for k in LOCAL_SEEDS]
    st["registry_only_images"] = [names[k] for k in REGISTRY_ONLY]
    st["seed_containers"] = [SEED_CONTAINER]
    st["seed_container"] = {"name": SEED_CONTAINER, "id": c["Id"] if c else None, "image": names["used"]}
    st["dangling_id"] = dangling
    st["seed_label"] = SEED_LABEL
    st["seeded_registry"] = reg
    if made:
        say(f"seeded {len(made)} item(s): " + ", ".join(m.replace(reg + "/", "R/") for m in made))
    return seeds


# The tutorial's images, served by the local registry as the engine's Docker Hub
# mirror: `docker pull hello-world` on the sample engine pulls library/hello-world
# from it. Built offline from busybox; each says in its files that it is a sample.
HELLO_TEXT = """\
Hello from Docker!  (Dockhand's sample hello-world)
This message shows that your installation appears to be working correctly.

This is NOT Docker Hub's hello-world: it is a sample image that Dockhand's
private test stack built offline (busybox inside) and serves from its local
registry, the sample engine's Docker Hub mirror. To produce this message:
 1. A client (Dockhand, or the docker CLI) asked the sample Docker Engine
    to run "hello-world".
 2. The engine pulled "hello-world" from its Docker Hub mirror, the stack's
    local registry (no internet was used).
 3. The engine created a container from that image, which printed this
    message.

On your own hosts, Dockhand manages the images of the engine at DOCKER_HOST.
"""
MIRROR_IMAGES = {  # repository:tag on the mirror -> (files, CMD)
    "library/hello-world:latest": ({"hello": HELLO_TEXT}, '["/bin/cat", "/hello"]'),
    "library/ubuntu:22.04": ({"etc/os-release": 'NAME="Ubuntu"\nVERSION_ID="22.04"\n'
                              'PRETTY_NAME="Ubuntu 22.04 (Dockhand sample image: busybox inside)"\n'}, '["/bin/sh"]'),
    "library/ubuntu:16.04": ({"etc/os-release": 'NAME="Ubuntu"\nVERSION_ID="16.04"\n'
                              'PRETTY_NAME="Ubuntu 16.04 (Dockhand sample image: busybox inside)"\n'}, '["/bin/sh"]'),
    "library/busybox:latest": ({"etc/dockhand-sample": "busybox (Dockhand sample image)\n"}, '["/bin/sh"]'),
}
MIRROR_ALIASES = {"library/ubuntu:latest": "library/ubuntu:22.04"}  # same manifest, like Docker Hub's tags


def mirror_refs() -> list[str]:
    return [*MIRROR_IMAGES, *MIRROR_ALIASES]


def ensure_mirror(p: Paths, st: dict) -> None:
    """Push whatever tutorial image the mirror lacks; keep none of them tagged locally
    under the registry's name (a pull names them as Docker Hub's: hello-world:latest)."""
    reg = st["registry"]
    made = []
    fingerprint = hashlib.sha256(json.dumps([MIRROR_IMAGES, MIRROR_ALIASES], sort_keys=True).encode()).hexdigest()[:16]
    rebuild = (st.get("mirror") or {}).get("fingerprint") != fingerprint  # their content changed: push anew
    for name in mirror_refs():
        ref = f"{reg}/{name}"
        if registry_digest(ref) and not rebuild:
            continue
        source = MIRROR_ALIASES.get(name)
        if source:
            src = f"{reg}/{source}"
            if inspect_image(p, src) is None:
                docker(p, "pull", src)
            docker(p, "tag", src, ref)
        else:
            files, cmd = MIRROR_IMAGES[name]
            stamp = {"etc/dockhand-mirror-image": f"{name} {os.urandom(8).hex()}\n"}
            import_image(p, ref, {**files, **stamp}, [f"CMD {cmd}"])
        push(p, ref)
        made.append(name)
    local = [f"{reg}/{name}" for name in mirror_refs() if inspect_image(p, f"{reg}/{name}") is not None]
    rmi(p, *local)
    st["mirror"] = {"registry": reg, "images": [n.split("/", 1)[1] for n in mirror_refs()], "fingerprint": fingerprint}
    if made:
        say(f"Docker Hub mirror: pushed {', '.join(n.split('/', 1)[1] for n in made)}")


def mirror_problems(st: dict) -> list[str]:
    reg = st.get("registry")
    return [f"not on the mirror {name}" for name in mirror_refs() if not reg or not registry_digest(f"{reg}/{name}")]


def seed_problems(p: Paths, st: dict) -> list[str]:
    """Read-only check used by `status`."""
    reg = st.get("registry")
    if not reg:
        return ["no registry recorded"]
    names = seed_names(reg)
    problems = []
    for key in LOCAL_SEEDS:
        info = inspect_image(p, names[key])
        if info is None:
            problems.append(f"missing {names[key]}")
        elif not pushed(p, names[key], info):
            problems.append(f"not pushed {names[key]}")
    for key in REGISTRY_ONLY:
        if not registry_digest(names[key]):
            problems.append(f"not in registry {names[key]}")
        if inspect_image(p, names[key]) is not None:
            problems.append(f"present locally {names[key]}")
    c = container_info(p, SEED_CONTAINER)
    if c is None:
        problems.append(f"missing container {SEED_CONTAINER}")
    if not st.get("dangling_id") or inspect_image(p, st["dangling_id"]) is None:
        problems.append("missing dangling image")
    return problems


# --------------------------------------------------------------------------- commands


def check_dir(p: Paths) -> None:
    longest = os.path.join(p.exec_root, "containerd", "containerd.sock.ttrpc")
    if len(longest) > 100:
        raise StackError(f"state dir {p.root} is too long for unix sockets; set DOCKHAND_STACK_DIR to a short path")


def cmd_up(p: Paths, args) -> int:
    t0 = time.monotonic()
    check_dir(p)
    ensure_packages(p)
    if not docker_cli():
        raise StackError("docker CLI not found")
    with locked(p):
        st = load_state(p)
        st.update(state_dir=p.root, docker_host=p.docker_host, docker_socket=p.socket,
                  docker_config=p.docker_config, docker_cli=docker_cli())  # fmt: skip
        os.makedirs(p.docker_config, exist_ok=True)
        pid_r, reg = start_registry(p, st)  # first: dockerd's Docker Hub mirror
        pid_d = start_dockerd(p, reg)
        pid_i, idx = start_index(p, st)
        st.update(registry=reg, registry_url=f"http://{reg}", index=idx, index_url=f"http://{idx}")
        status, ver = engine(p, "GET", "/version")
        if status == 200:
            st["engine"] = {"version": ver.get("Version"), "api_version": ver.get("ApiVersion")}
        st["pids"] = {"dockerd": pid_d, "containerd": containerd_pid(p), "registry": pid_r, "index": pid_i}
        st["logs"] = {"dockerd": p.dockerd_log, "registry": p.registry_log, "index": p.index_log}
        st["running"] = True
        save_state(p, st)
        if not args.no_seed:
            ensure_mirror(p, st)
            save_state(p, st)
        if not (args.no_seed or args.mirror_only):
            ensure_seeds(p, st)
            save_state(p, st)
    say(f"stack up in {time.monotonic() - t0:.1f}s: {p.docker_host}, registry {st['registry']}, index {st['index']}")
    legacy = Paths(LEGACY_DIR)
    if p.root != legacy.root and os.path.exists(legacy.state) and dockerd_pid(legacy):
        say(f"note: the stack all checkouts used to share still runs in {LEGACY_DIR}; stop and delete it "
            f"with: DOCKHAND_STACK_DIR={LEGACY_DIR} python3 {os.path.relpath(__file__)} purge")
    if not args.no_env_hint:
        print(f'# eval "$(python3 {os.path.relpath(__file__)} env)"')
    return 0


def cmd_seed(p: Paths, args) -> int:
    if not os.path.exists(p.state):
        raise StackError(f"no stack state in {p.root}: run `stack.py up` first")
    with locked(p):
        st = load_state(p)
        if not (dockerd_pid(p) and engine_ping(p)) or not st.get("registry") or not registry_ready(st["registry"]):
            raise StackError("stack is not running: run `stack.py up` first")
        t0 = time.monotonic()
        ensure_mirror(p, st)
        ensure_seeds(p, st)
        save_state(p, st)
    say(f"seeds ok in {time.monotonic() - t0:.1f}s")
    return 0


def cmd_down(p: Paths, args) -> int:
    if not os.path.isdir(p.root):
        say(f"nothing to stop ({p.root} does not exist)")
        return 0
    with locked(p):
        st = load_state(p)
        stopped = []
        for name, pidfile, marker, hint in (
            ("fake index", p.index_pid, p.index_port_file, "python"),
            ("registry", p.registry_pid, p.registry_config, "registry"),
        ):
            pids = {read_pid(pidfile), *find_procs(marker, hint)}
            if any([stop_pid(pid, marker, name) for pid in pids if pid]):
                stopped.append(name)
        if stop_dockerd(p):
            stopped.append("dockerd")
        for f in (p.index_pid, p.registry_pid):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f)
        if st:
            st["running"] = False
            st["pids"] = {}
            save_state(p, st)
        if args.purge:
            left = mounts_under(p.root)
            if left:
                raise StackError(f"cannot purge {p.root}: still mounted: {left[0]}")
            shutil.rmtree(p.root, ignore_errors=True)
            if os.path.exists(p.root):
                shutil.rmtree(p.root)  # raise the real error
    say(("stopped " + ", ".join(stopped)) if stopped else "nothing was running")
    if args.purge:
        say(f"removed {p.root}")
    else:
        say(f"left on disk: {p.root} ({human_bytes(disk_usage(p.root))}: the engine's images and containers, "
            f"the registry's data, logs); `stack.py up` starts it again as it was, "
            f"`python3 {os.path.relpath(__file__)} purge` deletes it")
    return 0


def cmd_purge(p: Paths, args) -> int:
    args.purge = True
    return cmd_down(p, args)


def disk_usage(root: str) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: None):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def human_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def cmd_env(p: Paths, args) -> int:
    st = load_state(p)
    if not st.get("registry"):
        raise StackError(f"no stack state in {p.root}: run `stack.py up` first")
    if not (dockerd_pid(p) and engine_ping(p)):
        say("warning: the private dockerd is not running (run `stack.py up`)")
    exports = [
        ("DOCKER_HOST", p.docker_host),
        ("DOCKER_CONFIG", p.docker_config),
        ("DOCKHAND_TEST_REGISTRY", st["registry"]),
        ("DOCKHAND_TEST_INDEX", st["index"]),
        ("DOCKHAND_STACK_DIR", p.root),
    ]
    for k, v in exports:
        print(f"export {k}={shlex.quote(v)}")
    return 0


def cmd_status(p: Paths, args) -> int:
    st = load_state(p)
    ok = True
    out = {"state_dir": p.root}
    pid = dockerd_pid(p)
    if pid and engine_ping(p):
        _, ver = engine(p, "GET", "/version")
        out["dockerd"] = f"running pid {pid} on {p.docker_host} (Engine {ver.get('Version')}, API {ver.get('ApiVersion')})"
    else:
        ok = False
        out["dockerd"] = f"NOT running (pid {pid}, not answering)" if pid else "not running"
    cpid = containerd_pid(p)
    out["containerd"] = f"running pid {cpid}" if cpid else "not running"
    rpid = read_pid(p.registry_pid)
    if owned(rpid, p.registry_config) and st.get("registry") and registry_ready(st["registry"]):
        out["registry"] = f"running pid {rpid} on {st['registry']}"
    else:
        ok = False
        out["registry"] = "not running"
    ipid = read_pid(p.index_pid)
    if owned(ipid, p.index_port_file) and st.get("index") and index_ready(st["index"]):
        out["index"] = f"running pid {ipid} on {st['index']}"
    else:
        ok = False
        out["index"] = "not running"
    if ok:
        problems = mirror_problems(st) + seed_problems(p, st)
        out["seeds"] = "ok" if not problems else "; ".join(problems)
        ok = not problems
    else:
        out["seeds"] = "unknown (stack not fully running)"
    if args.json:
        out["ok"] = ok
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k + ':':12} {v}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="stack.py", description="Dockhand's private test stack")
    ap.add_argument("--dir", help=f"state dir (default $DOCKHAND_STACK_DIR or {DEFAULT_DIR})")
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start dockerd, registry, fake index; seed images")
    up.add_argument("--no-seed", action="store_true", help="do not create seed images (nor the mirror's)")
    up.add_argument("--mirror-only", action="store_true",
                    help="seed only the Docker Hub mirror's tutorial images (hello-world, ubuntu, busybox)")
    up.add_argument("--no-env-hint", action="store_true",
                    help="do not print the `eval \"$(stack.py env)\"` line (the caller already evals it)")
    down = sub.add_parser("down", help="stop what this stack started (its state dir stays)")
    down.add_argument("--purge", action="store_true", help="also delete the state dir (images, registry data)")
    sub.add_parser("purge", help="stop the stack and delete its state dir (same as down --purge)")
    sub.add_parser("env", help="print shell exports")
    status = sub.add_parser("status", help="show what runs")
    status.add_argument("--json", action="store_true")
    sub.add_parser("seed", help="create missing seed images")
    args = ap.parse_args(argv)
    with contextlib.suppress(AttributeError, ValueError):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `stack.py status | head` exits quietly
    p = Paths(args.dir or stack_dir())
    handler = {"up": cmd_up, "down": cmd_down, "purge": cmd_purge, "env": cmd_env, "status": cmd_status,
               "seed": cmd_seed}[args.cmd]
    try:
        return handler(p, args)
    except StackError as e:
        sys.stderr.write(f"stack.py {args.cmd}: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"stack.py {args.cmd}: interrupted\n")
        return 130
    except Exception as e:  # noqa: BLE001 - one friendly line; details on demand
        if os.environ.get("DOCKHAND_STACK_DEBUG"):
            traceback.print_exc()
        where = f" (logs in {p.root}; DOCKHAND_STACK_DEBUG=1 for a traceback)"
        sys.stderr.write(f"stack.py {args.cmd}: unexpected error: {type(e).__name__}: {e}{where}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
