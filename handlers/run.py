"""``docker run IMAGE [COMMAND] [ARG...]``: the tutorial's ``docker run
hello-world``, as a smoke test of an image.

The image is pulled first when it is missing (through ``handlers/pull.py``,
with the same progress), then run once as ``docker run --rm`` would, in a
sandbox: no network, a read-only root filesystem (a small ``/tmp`` is
writable), no capabilities, memory, CPU and process limits and a time limit
(``Engine.run_limits``, from the DOCKHAND_RUN_* settings). The reply is the
exit code and the last lines of output; output is untrusted text, shown as
data, never as formatting. The container is always removed.

Only the flags that keep it a smoke test are taken (``--rm``, ``--read-only``:
always on anyway; ``--entrypoint``, ``--pull``, ``-q``); every other flag of
the CLI's ``docker run`` is refused with why. It is a WRITE command that needs
the admin role (``CommandSpec.role``), run and audited as an operation like a
pull (``handlers/operations.run_write``).
"""

from __future__ import annotations

import dataclasses
import re

from . import pull, refs
from .argv import WRITE, CommandSpec, Flag, Parsed, parse_flags, quote_line
from .base import Call
from .errors import EngineError, ImageNotFound, UsageError
from .ports import RunLimits, RunResult
from .replies import ErrorPart, Notice, Preformatted, Progress, Reply, Status
from .units import bytes_size, truncate_id

OUTPUT_LINES = 50  # the last lines of output a reply shows ...
OUTPUT_BYTES = 8 * 1024  # ... and at most this many bytes of them
PULL_POLICIES = ("always", "missing", "never")

# ANSI escape sequences (colours, cursor moves, OSC titles and links), then any
# other control or invisible formatting character: output is shown as data.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")

# Why the other flags of `docker run` are refused (the hint of each refusal).
_NETWORK = ("A smoke test has no network at all (network mode none): there is nothing to publish, "
            "connect, name or resolve.")
_HOST = ("A smoke test gets nothing of the host: no volumes, mounts, devices, privileges, capabilities, "
         "runtimes or shared namespaces.")
_LIMITS = ("A smoke test's limits are Dockhand's settings, the same for everyone: DOCKHAND_RUN_MEMORY, "
           "DOCKHAND_RUN_CPUS, DOCKHAND_RUN_PIDS and DOCKHAND_RUN_TIMEOUT.")
_LIFE = ("A smoke test runs in the foreground until it exits or reaches its time limit, then it is removed: "
         "there is nothing to attach, detach, name, restart, log elsewhere or health-check.")
_ENV = ("A smoke test runs with the image's own environment: the command line is posted in the channel and "
        "kept in the audit log, so it is no place for values, and `-e NAME` would hand Dockhand's own "
        "environment to the container.")
_AS_SHIPPED = "A smoke test runs the image as it ships: its own user, groups, working directory and labels."


def _no(long: str, reason: str, short: str = "", kind: str = "str", help: str = "", metavar: str = "") -> Flag:
    return Flag(long, short, kind=kind, help=help, metavar=metavar or {"list": "list", "str": "string"}.get(kind, ""),
                unsupported=reason)


FLAGS: tuple[Flag, ...] = (
    # taken
    Flag("rm", help="Automatically remove the container when it exits (always: Dockhand removes every run)"),
    Flag("read-only", help="Mount the container's root filesystem as read only (always)"),
    Flag("entrypoint", kind="str", metavar="string", help="Overwrite the default ENTRYPOINT of the image"),
    Flag("pull", kind="str", metavar="string", default="missing",
         help='Pull image before running ("always", "missing", "never")'),
    Flag("quiet", "q", help="Suppress the pull output"),
    # refused, with why
    _no("add-host", _NETWORK, kind="list", help="Add a custom host-to-IP mapping (host:ip)"),
    _no("annotation", _HOST, kind="list", help="Add an annotation to the container (passed through to the OCI runtime)"),
    _no("attach", _LIFE, "a", kind="list", help="Attach to STDIN, STDOUT or STDERR"),
    _no("blkio-weight", _LIMITS, help="Block IO (relative weight), between 10 and 1000, or 0 to disable",
        metavar="uint16"),
    _no("blkio-weight-device", _LIMITS, kind="list", help="Block IO weight (relative device weight)"),
    _no("cap-add", _HOST, kind="list", help="Add Linux capabilities"),
    _no("cap-drop", _HOST + " Every capability is dropped already.", kind="list", help="Drop Linux capabilities"),
    _no("cgroup-parent", _HOST, help="Optional parent cgroup for the container"),
    _no("cgroupns", _HOST, help="Cgroup namespace to use (host|private)"),
    _no("cidfile", _HOST, help="Write the container ID to the file"),
    _no("cpu-count", _LIMITS, help="CPU count (Windows only)", metavar="int"),
    _no("cpu-percent", _LIMITS, help="CPU percent (Windows only)", metavar="int"),
    _no("cpu-period", _LIMITS, help="Limit CPU CFS (Completely Fair Scheduler) period", metavar="int"),
    _no("cpu-quota", _LIMITS, help="Limit CPU CFS (Completely Fair Scheduler) quota", metavar="int"),
    _no("cpu-rt-period", _LIMITS, help="Limit CPU real-time period in microseconds", metavar="int"),
    _no("cpu-rt-runtime", _LIMITS, help="Limit CPU real-time runtime in microseconds", metavar="int"),
    _no("cpu-shares", _LIMITS, "c", help="CPU shares (relative weight)", metavar="int"),
    _no("cpus", _LIMITS, help="Number of CPUs", metavar="decimal"),
    _no("cpuset-cpus", _LIMITS, help="CPUs in which to allow execution (0-3, 0,1)"),
    _no("cpuset-mems", _LIMITS, help="MEMs in which to allow execution (0-3, 0,1)"),
    _no("detach", _LIFE, "d", kind="bool", help="Run container in background and print container ID"),
    _no("detach-keys", _LIFE, help="Override the key sequence for detaching a container"),
    _no("device", _HOST, kind="list", help="Add a host device to the container"),
    _no("device-cgroup-rule", _HOST, kind="list", help="Add a rule to the cgroup allowed devices list"),
    _no("device-read-bps", _LIMITS, kind="list", help="Limit read rate (bytes per second) from a device"),
    _no("device-read-iops", _LIMITS, kind="list", help="Limit read rate (IO per second) from a device"),
    _no("device-write-bps", _LIMITS, kind="list", help="Limit write rate (bytes per second) to a device"),
    _no("device-write-iops", _LIMITS, kind="list", help="Limit write rate (IO per second) to a device"),
    _no("disable-content-trust", "Content trust is not configurable from chat.", kind="bool",
        help="Skip image verification (default true)"),
    _no("dns", _NETWORK, kind="list", help="Set custom DNS servers"),
    _no("dns-option", _NETWORK, kind="list", help="Set DNS options"),
    _no("dns-search", _NETWORK, kind="list", help="Set custom DNS search domains"),
    _no("domainname", _NETWORK, help="Container NIS domain name"),
    _no("env", _ENV, "e", kind="list", help="Set environment variables"),
    _no("env-file", _ENV, kind="list", help="Read in a file of environment variables"),
    _no("expose", _NETWORK, kind="list", help="Expose a port or a range of ports"),
    _no("gpus", _HOST, help="GPU devices to add to the container ('all' to pass all GPUs)", metavar="gpu-request"),
    _no("group-add", _AS_SHIPPED, kind="list", help="Add additional groups to join"),
    _no("health-cmd", _LIFE, help="Command to run to check health"),
    _no("health-interval", _LIFE, help="Time between running the check (ms|s|m|h)", metavar="duration"),
    _no("health-retries", _LIFE, help="Consecutive failures needed to report unhealthy", metavar="int"),
    _no("health-start-interval", _LIFE, help="Time between running the check during the start period (ms|s|m|h)",
        metavar="duration"),
    _no("health-start-period", _LIFE, help="Start period for the container to initialize before starting "
        "health-retries countdown (ms|s|m|h)", metavar="duration"),
    _no("health-timeout", _LIFE, help="Maximum time to allow one check to run (ms|s|m|h)", metavar="duration"),
    # -h is --help in Dockhand, as everywhere else; the CLI's -h of run is --hostname
    _no("hostname", _NETWORK, help="Container host name"),
    _no("init", _LIFE, kind="bool", help="Run an init inside the container that forwards signals and reaps processes"),
    _no("interactive", _LIFE + " Chat has no terminal to keep open.", "i", kind="bool",
        help="Keep STDIN open even if not attached"),
    _no("io-maxbandwidth", _LIMITS, help="Maximum IO bandwidth limit for the system drive (Windows only)",
        metavar="bytes"),
    _no("io-maxiops", _LIMITS, help="Maximum IOps limit for the system drive (Windows only)", metavar="uint"),
    _no("ip", _NETWORK, help="IPv4 address (e.g., 172.30.100.104)"),
    _no("ip6", _NETWORK, help="IPv6 address (e.g., 2001:db8::33)"),
    _no("ipc", _HOST, help="IPC mode to use"),
    _no("isolation", _HOST, help="Container isolation technology"),
    _no("kernel-memory", _LIMITS, help="Kernel memory limit", metavar="bytes"),
    _no("label", _AS_SHIPPED, "l", kind="list", help="Set meta data on a container"),
    _no("label-file", _AS_SHIPPED, kind="list", help="Read in a line delimited file of labels"),
    _no("link", _NETWORK, kind="list", help="Add link to another container"),
    _no("link-local-ip", _NETWORK, kind="list", help="Container IPv4/IPv6 link-local addresses"),
    _no("log-driver", _LIFE, help="Logging driver for the container"),
    _no("log-opt", _LIFE, kind="list", help="Log driver options"),
    _no("mac-address", _NETWORK, help="Container MAC address (e.g., 92:d0:c6:0a:29:33)"),
    _no("memory", _LIMITS, "m", help="Memory limit", metavar="bytes"),
    _no("memory-reservation", _LIMITS, help="Memory soft limit", metavar="bytes"),
    _no("memory-swap", _LIMITS, help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap",
        metavar="bytes"),
    _no("memory-swappiness", _LIMITS, help="Tune container memory swappiness (0 to 100)", metavar="int"),
    _no("mount", _HOST, kind="list", help="Attach a filesystem mount to the container", metavar="mount"),
    _no("name", _LIFE + " Dockhand names it dockhand-run-….", help="Assign a name to the container"),
    _no("network", _NETWORK, help="Connect a container to a network", metavar="network"),
    _no("network-alias", _NETWORK, kind="list", help="Add network-scoped alias for the container"),
    _no("no-healthcheck", _LIFE, kind="bool", help="Disable any container-specified HEALTHCHECK"),
    _no("oom-kill-disable", _LIMITS, kind="bool", help="Disable OOM Killer"),
    _no("oom-score-adj", _LIMITS, help="Tune host's OOM preferences (-1000 to 1000)", metavar="int"),
    _no("pid", _HOST, help="PID namespace to use"),
    _no("pids-limit", _LIMITS, help="Tune container pids limit (set -1 for unlimited)", metavar="int"),
    _no("platform", "Dockhand runs images for the host's own platform.",
        help="Set platform if server is multi-platform capable"),
    _no("privileged", _HOST, kind="bool", help="Give extended privileges to this container"),
    _no("publish", _NETWORK, "p", kind="list", help="Publish a container's port(s) to the host"),
    _no("publish-all", _NETWORK, "P", kind="bool", help="Publish all exposed ports to random ports"),
    _no("restart", _LIFE, help="Restart policy to apply when a container exits"),
    _no("runtime", _HOST, help="Runtime to use for this container"),
    _no("security-opt", _HOST, kind="list", help="Security Options"),
    _no("shm-size", _LIMITS, help="Size of /dev/shm", metavar="bytes"),
    _no("sig-proxy", _LIFE, kind="bool", help="Proxy received signals to the process (default true)"),
    _no("stop-signal", _LIFE, help="Signal to stop the container"),
    _no("stop-timeout", _LIFE, help="Timeout (in seconds) to stop a container", metavar="int"),
    _no("storage-opt", _HOST, kind="list", help="Storage driver options for the container"),
    _no("sysctl", _HOST, kind="list", help="Sysctl options", metavar="map"),
    _no("tmpfs", _HOST + " A small /tmp is writable already.", kind="list", help="Mount a tmpfs directory"),
    _no("tty", _LIFE + " Chat has no terminal.", "t", kind="bool", help="Allocate a pseudo-TTY"),
    _no("ulimit", _LIMITS, kind="list", help="Ulimit options", metavar="ulimit"),
    _no("use-api-socket", _HOST, kind="bool", help="Bind mount Docker API socket and required auth"),
    _no("user", _AS_SHIPPED, "u", help="Username or UID (format: <name|uid>[:<group|gid>])"),
    _no("userns", _HOST, help="User namespace to use"),
    _no("uts", _HOST, help="UTS namespace to use"),
    _no("volume", _HOST, "v", kind="list", help="Bind mount a volume"),
    _no("volume-driver", _HOST, help="Optional volume driver for the container"),
    _no("volumes-from", _HOST, kind="list", help="Mount volumes from the specified container(s)"),
    _no("workdir", _AS_SHIPPED, "w", help="Working directory inside the container"),
)


def validate(parsed: Parsed) -> None:
    """What can be refused before anything is announced: the image argument
    and the pull policy (the CLI's words)."""
    refs.parse_image_arg(parsed.args[0])
    policy = parsed.opts.get("pull")
    if policy not in PULL_POLICIES:
        raise UsageError(f"invalid pull option: '{str(policy)[:40]}': must be one of \"always\", \"missing\" or "
                         "\"never\"", "See 'docker run --help'.")


async def run(call: Call) -> Reply:
    arg = call.args[0]
    target = refs.parse_image_arg(arg)
    ref = target.docker_ref() if isinstance(target, refs.Reference) else (
        target.reference.docker_ref() if target.reference is not None else None)
    shown = ref.familiar() if isinstance(target, refs.Reference) else arg
    policy = call.opts["pull"]
    quiet = call.opts["quiet"]
    limits: RunLimits = call.engine.run_limits
    meta = {"reference": str(ref) if isinstance(target, refs.Reference) else arg}
    parts: list = []

    image_id = ""
    if policy != "always" or ref is None:
        image_id = await _local_image(call, str(ref) if isinstance(target, refs.Reference) else str(target))
    if not image_id:
        if ref is None or policy == "never":
            return _not_found(call, shown, arg, policy)
        pulled = await _pull(call, ref)
        if not pulled.ok:
            return Reply(call.parsed.line, (Preformatted(f"Unable to find image '{shown}' locally"),) + pulled.parts,
                         status=Status.FAILED, summary=pulled.summary, meta=dict(pulled.meta))
        meta["digest"] = pulled.meta.get("digest", "")
        image_id = pulled.meta.get("image_id") or await _local_image(call, str(ref))
        if not quiet:
            lines = "\n".join(p.text for p in pulled.parts if isinstance(p, Preformatted)).split("\n")
            if lines and lines[-1] == str(ref):  # pull's last line; `docker run` does not print it
                lines.pop()
            text = "\n".join(lines)
            parts.append(Preformatted(f"Unable to find image '{shown}' locally\n{text}".rstrip("\n")))

    if call.emit:
        await call.emit(call.reply(Progress(f"Running {shown}", status=f"in a sandbox: {_sandbox(limits)}")))
    entry = call.opts["entrypoint"]
    result = await call.engine.run_container(image_id or str(ref), call.args[1:],
                                             entrypoint=None if entry is None else [entry], limits=limits,
                                             tail_lines=OUTPUT_LINES, tail_bytes=OUTPUT_BYTES)
    reply = _outcome(call, shown, result, limits, parts)
    reply.meta.update(meta, image_id=result.image_id or image_id, exit_code=result.exit_code,
                      timed_out=result.timed_out, container=result.container)
    return reply


async def _local_image(call: Call, name: str) -> str:
    """The ID of the image ``name`` on the host, "" when there is none."""
    try:
        return (await call.engine.inspect_image(name)).get("Id", "") or ""
    except ImageNotFound:
        return ""


async def _pull(call: Call, ref: refs.Reference) -> Reply:
    """``docker pull REF`` through the pull command itself: same progress,
    same final lines, same errors."""
    words = [ref.familiar()]
    spec = next(s for s in pull.SPECS if s.path == ("pull",))
    parsed = parse_flags(spec, words, "docker pull " + quote_line(words))
    emit = None
    if call.emit is not None:
        async def emit(interim: Reply) -> None:  # progress, under the run's own command line
            await call.emit(dataclasses.replace(interim, command=call.parsed.line))
    try:
        return await spec.run(Call(parsed, call.actor, call.services, emit))
    except EngineError as exc:
        return Reply(parsed.line, (ErrorPart(exc.message, exc.hint),), status=Status.FAILED,
                     summary=exc.message.splitlines()[0] if exc.message else "the pull failed")


def _not_found(call: Call, shown: str, arg: str, policy: str) -> Reply:
    if policy == "never":
        hint = f"--pull never runs only what is on the host: pull it first with `docker pull {shown}`."
    else:
        hint = "An image ID cannot be pulled: check it with `docker images`, or run the image by its name."
    message = f"Error response from daemon: No such image: {arg}"
    return Reply(call.parsed.line, (Preformatted(f"Unable to find image '{shown}' locally"), ErrorPart(message, hint)),
                 status=Status.FAILED, summary=f"No such image: {arg}"[:200])


def _sandbox(limits: RunLimits) -> str:
    return (f"no network, read-only root filesystem, {bytes_size(limits.memory)} memory, {limits.cpus:g} CPU, "
            f"{limits.pids} processes, {limits.timeout:g} s")


def _outcome(call: Call, shown: str, result: RunResult, limits: RunLimits, parts: list) -> Reply:
    output = printable(result.output_tail)
    output, cut = bounded(output, OUTPUT_LINES, OUTPUT_BYTES)
    if output.strip():
        if result.truncated or cut:
            parts.append(Notice(f"The last {len(output.splitlines())} lines of its output "
                                f"(at most {OUTPUT_LINES} lines, {OUTPUT_BYTES // 1024} kB):"))
        parts.append(Preformatted(output))
    else:
        parts.append(Notice("It printed nothing."))
    code = result.exit_code
    status = Status.OK
    if result.timed_out:
        status = Status.FAILED
        summary = f"killed at its time limit ({limits.timeout:g} s): exit code {code}"
        parts.append(ErrorPart(
            f"The container was still running after {limits.timeout:g} s, its time limit: it was killed and removed.",
            f"A smoke test must end by itself within DOCKHAND_RUN_TIMEOUT ({limits.timeout:g} s): run a command "
            f"that ends, e.g. `docker run {shown} --version`."))
    elif result.oom_killed:
        status = Status.FAILED
        summary = f"out of memory: exit code {code}"
        parts.append(ErrorPart(f"The container ran out of memory ({bytes_size(limits.memory)}) and was killed: "
                               f"exit code {code}.", "DOCKHAND_RUN_MEMORY sets the memory limit of a smoke test."))
    elif code != 0:
        status = Status.FAILED
        summary = f"exit code {code}"
        parts.append(ErrorPart(f"The container exited with code {code}.",
                               "In the sandbox there is no network and only /tmp is writable; the last lines "
                               "of its output are above."))
    else:
        summary = "exit code 0"
        parts.append(Notice("Exit code 0."))
    ran = f"Ran {truncate_id(result.image_id)}" if result.image_id else "Ran"
    removed = "the container was removed" if result.removed else "the container could NOT be removed"
    parts.append(Notice(f"{ran} for {result.duration:.1f} s in a sandbox ({_sandbox(limits)}); {removed}."))
    if not result.removed:
        status = Status.FAILED
        summary += "; the container could not be removed"
        parts.append(ErrorPart(f"The container {result.container} could not be removed: {result.cleanup_error}",
                               f"Remove it on the host: `docker rm -f {result.container}`."))
    return call.reply(*parts, summary=summary, status=status)


def printable(text: str) -> str:
    """Untrusted output as plain lines: no escape sequences, control or
    invisible formatting characters (tabs and newlines stay)."""
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    return _INVISIBLE.sub("", _ESCAPES.sub("", text))


def bounded(text: str, lines: int, limit: int) -> tuple[str, bool]:
    """The last ``lines`` lines of ``text`` within ``limit`` bytes (UTF-8);
    and whether anything was cut."""
    rows = text.rstrip("\n").split("\n")
    cut = len(rows) > lines
    rows = rows[-lines:]
    while len(rows) > 1 and len("\n".join(rows).encode("utf-8")) > limit:
        rows.pop(0)
        cut = True
    out = "\n".join(rows)
    if len(out.encode("utf-8")) > limit:  # one line longer than the limit: its end
        out = out.encode("utf-8")[-limit:].decode("utf-8", "ignore")
        cut = True
    return out, cut


SPECS = (
    CommandSpec(("run",), "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
                "Smoke-test an image: run it once in a sandbox, then remove it", run, FLAGS,
                min_args=1, effect=WRITE, role="admin", interspersed=False, validate=validate,
                examples=("docker run hello-world", "docker run busybox echo hello",
                          "docker run --entrypoint /bin/sh busybox -c 'ls /'")),
)
