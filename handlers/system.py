"""``docker version``, ``docker --version``, ``docker info`` and ``docker help``."""

from __future__ import annotations

from .argv import CommandSpec, Flag
from .base import Call
from .replies import Action, Preformatted
from .units import bytes_size

FORMAT_FLAG = Flag("format", "f", "str", "Format output using a custom template", metavar="string",
                   unsupported="Dockhand prints the CLI's default layout.")


async def version(call: Call):
    v = await call.engine.version()
    c = call.services.client_info
    lines = ["Client: Dockhand",
             f" Version:           {c.get('version', '')}",
             f" API version:       {v.get('ApiVersion', '')}" + (" (negotiated)" if v.get("ApiVersion") else ""),
             f" Python version:    {c.get('python', '')}",
             f" Docker SDK:        {c.get('sdk', '')}",
             f" OS/Arch:           {c.get('os_arch', '')}",
             f" Context:           {call.services.host_label or call.engine.host}",
             "",
             f"Server: {v.get('Platform', {}).get('Name', '') or 'Docker Engine'}".rstrip()]
    components = v.get("Components") or [{"Name": "Engine", "Version": v.get("Version", ""), "Details": {}}]
    for comp in components:
        name = comp.get("Name", "")
        details = comp.get("Details") or {}
        lines.append(f" {name}:")
        lines.append(f"  Version:          {comp.get('Version', '')}")
        if name == "Engine":
            lines += [f"  API version:      {v.get('ApiVersion', '')} (minimum version {v.get('MinAPIVersion', '')})",
                      f"  Go version:       {v.get('GoVersion', '')}",
                      f"  Git commit:       {v.get('GitCommit', '')}",
                      f"  Built:            {v.get('BuildTime', '')}",
                      f"  OS/Arch:          {v.get('Os', '')}/{v.get('Arch', '')}",
                      f"  Experimental:     {str(bool(v.get('Experimental'))).lower()}"]
        else:
            for key, value in details.items():
                lines.append(f"  {key + ':':<17} {value}")
    return call.reply(Preformatted("\n".join(lines)),
                      summary=f"Docker Engine {v.get('Version', '?')} on {call.services.host_label or call.engine.host}")


async def short_version(call: Call):
    v = await call.engine.version()
    line = f"Docker version {v.get('Version', 'unknown')}, build {v.get('GitCommit', 'unknown')}"
    return call.reply(Preformatted(line), summary=line)


def _yes_no(value) -> str:
    return str(bool(value)).lower()


async def info(call: Call):
    i = await call.engine.info()
    lines = ["Client: Dockhand",
             f" Version:    {call.services.client_info.get('version', '')}",
             f" Context:    {call.services.host_label or call.engine.host}",
             "",
             "Server:",
             f" Containers: {i.get('Containers', 0)}",
             f"  Running: {i.get('ContainersRunning', 0)}",
             f"  Paused: {i.get('ContainersPaused', 0)}",
             f"  Stopped: {i.get('ContainersStopped', 0)}",
             f" Images: {i.get('Images', 0)}",
             f" Server Version: {i.get('ServerVersion', '')}",
             f" Storage Driver: {i.get('Driver', '')}"]
    for pair in i.get("DriverStatus") or []:
        if len(pair) == 2:
            lines.append(f"  {pair[0]}: {pair[1]}")
    lines += [f" Logging Driver: {i.get('LoggingDriver', '')}",
              f" Cgroup Driver: {i.get('CgroupDriver', '')}",
              f" Cgroup Version: {i.get('CgroupVersion', '')}"]
    swarm = (i.get("Swarm") or {}).get("LocalNodeState", "")
    if swarm:
        lines.append(f" Swarm: {swarm}")
    runtimes = " ".join(sorted((i.get("Runtimes") or {}).keys()))
    if runtimes:
        lines.append(f" Runtimes: {runtimes}")
    lines += [f" Default Runtime: {i.get('DefaultRuntime', '')}",
              f" Kernel Version: {i.get('KernelVersion', '')}",
              f" Operating System: {i.get('OperatingSystem', '')}",
              f" OSType: {i.get('OSType', '')}",
              f" Architecture: {i.get('Architecture', '')}",
              f" CPUs: {i.get('NCPU', 0)}",
              f" Total Memory: {bytes_size(i.get('MemTotal', 0))}",
              f" Name: {i.get('Name', '')}",
              f" ID: {i.get('ID', '')}",
              f" Docker Root Dir: {i.get('DockerRootDir', '')}",
              f" Debug Mode: {_yes_no(i.get('Debug'))}"]
    for key, label in (("HttpProxy", "HTTP Proxy"), ("HttpsProxy", "HTTPS Proxy"), ("NoProxy", "No Proxy")):
        if i.get(key):
            lines.append(f" {label}: {i[key]}")
    lines.append(f" Experimental: {_yes_no(i.get('ExperimentalBuild'))}")
    reg = i.get("RegistryConfig") or {}
    insecure = list(reg.get("InsecureRegistryCIDRs") or []) + sorted(
        name for name, conf in (reg.get("IndexConfigs") or {}).items() if not conf.get("Secure", True))
    if insecure:
        lines.append(" Insecure Registries:")
        lines += [f"  {r}" for r in insecure]
    if reg.get("Mirrors"):
        lines.append(" Registry Mirrors:")
        lines += [f"  {m}" for m in reg["Mirrors"]]
    lines.append(f" Live Restore Enabled: {_yes_no(i.get('LiveRestoreEnabled'))}")
    warnings = i.get("Warnings") or []
    if warnings:
        lines.append("")
        lines += list(warnings)
    return call.reply(Preformatted("\n".join(lines)),
                      summary=(f"{i.get('Containers', 0)} containers ({i.get('ContainersRunning', 0)} running), "
                               f"{i.get('Images', 0)} images on {i.get('Name', '') or call.engine.host}"))


HELP_ACTIONS = (Action("images", "docker images"), Action("images -a", "docker images -a"),
                Action("info", "docker info"), Action("version", "docker version"),
                Action("search help", "docker search --help"), Action("pull help", "docker pull --help"))


def top_help(table) -> str:
    management = [("image", "Manage images"), ("system", "Manage Docker")]
    commands = sorted({spec.path[0]: spec.short for spec in table if len(spec.path) == 1}.items())
    out = ["", "Usage:  docker [OPTIONS] COMMAND", "",
           "Dockhand speaks the Docker CLI's image commands, on the engine it is connected to.", "",
           "Options:", "  -v, --version   Print version information and quit", "",
           "Management Commands:"]
    out += [f"  {name:<11} {text}" for name, text in management]
    out += ["", "Commands:"]
    out += [f"  {name:<11} {text}" for name, text in commands]
    out += ["", "Run 'docker COMMAND --help' for more information on a command."]
    return "\n".join(out) + "\n"


async def help_command(call: Call):
    from .commands import MANAGEMENT, find_command, management_help, table

    if call.args:
        from .argv import command_help

        words = [w for w in call.args if w]
        spec, _ = find_command(words)
        if spec is None:
            if words[0] in MANAGEMENT:
                return call.reply(Preformatted(management_help(words[0])), summary=f"docker {words[0]} --help")
            from .commands import unknown_command

            raise unknown_command(words)
        return call.reply(Preformatted(command_help(spec)), summary=f"usage of {spec.command_path}")
    return call.reply(Preformatted(top_help(table())), summary="Dockhand commands", actions=HELP_ACTIONS)


SPECS = (
    CommandSpec(("version",), "version [OPTIONS]", "Show the Docker version information", version,
                (FORMAT_FLAG,), max_args=0),
    CommandSpec(("info",), "info [OPTIONS]", "Display system-wide information", info, (FORMAT_FLAG,), max_args=0,
                aliases=("docker system info", "docker info")),
    CommandSpec(("system", "info"), "info [OPTIONS]", "Display system-wide information", info, (FORMAT_FLAG,),
                max_args=0, aliases=("docker system info", "docker info")),
    CommandSpec(("help",), "help [COMMAND]", "Help about any command", help_command, (), max_args=2),
)
