"""The terminal front end, driven as a person drives it."""

from __future__ import annotations

import os

from tests.integration.shell_helpers import dockhand, dockhand_env


def test_one_shot_forms_and_exit_statuses(stack):
    for line in ("/images", "docker images", "images", "/docker images", "docker image list"):
        r = dockhand("shell", "-c", line, stack=stack)
        assert r.returncode == 0 and r.stdout.startswith("REPOSITORY"), (line, r.stderr)
    missing = dockhand("shell", "-c", f"rmi {stack.registry}/dockhand/nothere:1", stack=stack)
    assert missing.returncode == 1
    assert f"No such image: {stack.registry}/dockhand/nothere:1" in missing.stderr
    usage = dockhand("shell", "-c", "images --bogus", stack=stack)
    assert usage.returncode == 2 and "unknown flag: --bogus" in usage.stderr and "Traceback" not in usage.stderr


def test_pull_through_the_shell(stack, make_image):
    img = make_image(push=True)
    stack.docker("rmi", img.ref)
    r = dockhand("shell", "-c", f"docker pull {img.ref}", stack=stack)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"{img.tag}: Pulling from {img.repo.split('/', 1)[1]}"
    assert lines[-1] == img.ref and any(line.startswith("Status: Downloaded newer image for") for line in lines)
    assert stack.docker("image", "inspect", img.ref).returncode == 0
    again = dockhand("shell", "-c", f"pull -q {img.ref}", stack=stack)
    assert again.stdout.strip() == img.ref
    missing = dockhand("shell", "-c", f"pull {img.repo}:no-such-tag", stack=stack)
    assert missing.returncode == 1 and "manifest" in missing.stderr and "not found" in missing.stderr


def test_rmi_without_a_terminal_shows_the_plan_and_removes_only_with_yes(stack, make_image):
    img = make_image(extra_tags=["2"])
    r = dockhand("shell", "-c", f"rmi {img.ref}", stack=stack)
    assert r.returncode == 1 and "untag" in r.stdout and "no terminal to ask on" in r.stderr
    assert "--yes" in r.stderr and stack.docker("image", "inspect", img.ref).returncode == 0
    used = dockhand("shell", "-c", f"rmi {stack.registry}/dockhand/used", stack=stack)
    assert used.returncode == 1 and "unable to remove repository reference" in used.stderr
    assert "must force" in used.stderr
    done = dockhand("shell", "--yes", "-c", f"rmi {img.ref} {img.repo}:2", stack=stack)
    assert done.returncode == 0, done.stderr
    assert f"Untagged: {img.ref}" in done.stdout and f"Deleted: {img.id}" in done.stdout
    assert stack.docker("image", "inspect", img.id, check=False).returncode != 0
    audit = dockhand("audit", "verify", stack=stack)
    assert audit.returncode == 0 and "the hash chain verifies" in audit.stdout
    shown = dockhand("shell", "-c", "docker audit 3", stack=stack)
    assert shown.returncode == 0 and "done" in shown.stdout and img.repo.split("/")[-1] in shown.stdout


def test_rmi_asks_y_or_n_on_a_terminal(stack, make_image):
    import pty
    import subprocess
    import time as _time

    from tests.integration.shell_helpers import DOCKHAND, dockhand_env

    img = make_image()
    for answer, gone in (("n", False), ("y", True)):
        master, slave = pty.openpty()
        proc = subprocess.Popen([DOCKHAND, "shell", "-c", f"rmi {img.ref}"], stdin=slave, stdout=slave,
                                stderr=slave, env=dockhand_env(stack, TERM="dumb"), close_fds=True)
        os.close(slave)
        buf = b""
        deadline = _time.monotonic() + 30
        while b"[y/N]" not in buf and _time.monotonic() < deadline:
            try:
                buf += os.read(master, 4096)
            except OSError:
                break
        assert b"[y/N]" in buf, buf
        os.write(master, answer.encode() + b"\n")
        assert proc.wait(30) == 0
        os.close(master)
        assert (stack.docker("image", "inspect", img.id, check=False).returncode != 0) is gone


def test_interactive_shell_reads_lines_until_exit(stack):
    script = "help\n/images -q\nbogus\n\nversion\nexit\nimages\n"
    r = dockhand("shell", stack=stack, input=script)
    assert r.returncode == 0, r.stderr
    assert "Dockhand shell on" in r.stdout
    assert "Run 'docker COMMAND --help'" in r.stdout
    assert "docker: unknown command: docker bogus" in r.stderr
    assert "Server: " in r.stdout
    assert r.stdout.count("REPOSITORY") == 0  # the line after `exit` never ran


def test_plain_dockhand_without_slack_tokens_opens_the_shell(stack):
    r = dockhand(stack=stack, input="images\n")
    assert "Dockhand shell on" in r.stdout and "REPOSITORY" in r.stdout


def test_engine_down_says_which_host_and_how_to_fix(tmp_path):
    """DOCKER_HOST names the engine: when it does not answer, start-up says so in one
    line and exits 1, before any prompt (the issue's "it says so and exits non-zero")."""
    host = f"unix://{tmp_path}/no-engine.sock"
    env = dockhand_env(None, DOCKER_HOST=host)
    expected = f"dockhand: No Docker Engine answered at {host} (DOCKER_HOST): No such file or directory\n"
    r = dockhand("shell", "-c", "images", env=env)
    assert r.returncode == 1 and r.stderr == expected and r.stdout == ""
    for typed in ("info\n", "info\nexit\n"):
        inter = dockhand("shell", env=env, input=typed)
        assert inter.returncode == 1 and inter.stderr == expected and "Dockhand shell on" not in inter.stdout


def test_bad_configuration_is_one_line_per_problem(tmp_path):
    env = dockhand_env(None, DOCKER_HOST="/var/run/nothing.sock", DOCKHAND_ENGINE_TIMEOUT="soon")
    r = dockhand("shell", "-c", "images", env=env)
    assert r.returncode == 2
    assert r.stderr.count("dockhand: ") == 2 and "Traceback" not in r.stderr


def test_settings_come_from_dotenv(stack, tmp_path):
    (tmp_path / ".env").write_text(f"DOCKER_HOST={stack.docker_host}\nDOCKHAND_HOST_LABEL=dotenv-host\n")
    env = dockhand_env(None)
    env.pop("DOCKER_HOST", None)
    r = dockhand("shell", "-c", "version", env=env, cwd=tmp_path)
    assert r.returncode == 0 and "Context:           dotenv-host" in r.stdout
    assert os.path.exists(tmp_path / ".env")


def test_image_prune_shows_the_plan_and_removes_nothing_without_yes(stack, make_image):
    unused = make_image()
    r = dockhand("shell", "-c", "docker image prune -a", stack=stack)
    assert r.returncode == 1 and "no terminal to ask on" in r.stderr, r.stderr
    assert unused.id[7:19] in r.stdout and stack.seeds["used"]["id"][7:19] not in r.stdout
    assert stack.docker("image", "inspect", unused.ref).returncode == 0
    none = dockhand("shell", "-c", "docker rmi -f $(docker images -q -f label=dockhand.none=nothing)", stack=stack)
    assert none.returncode == 2 and "lists no image" in none.stderr
    bad = dockhand("shell", "-c", "docker image prune --filter until=12345678901234567890123", stack=stack)
    assert bad.returncode == 2 and "until" in bad.stderr


def test_pull_honours_platform_as_the_cli_does(stack, make_image):
    img = make_image(push=True)
    stack.docker("rmi", img.ref)
    arch = stack.docker("version", "-f", "{{.Server.Arch}}").stdout.strip()
    other = "s390x" if arch != "s390x" else "amd64"
    # the oracle: this engine pulls a single-platform image anyway and warns
    cli = stack.docker("pull", "--platform", f"linux/{other}", img.ref)
    warning = next(line for line in cli.stdout.splitlines() if line.startswith("WARNING:"))
    assert f"wanted linux/{other}" in warning
    stack.docker("rmi", img.ref)
    ours = dockhand("shell", "-c", f"pull --platform linux/{other} {img.ref}", stack=stack)
    assert ours.returncode == cli.returncode == 0, ours.stderr
    assert warning in ours.stdout.splitlines()
    right = dockhand("shell", "-c", f"pull --platform linux/{arch} {img.ref}", stack=stack)
    assert right.returncode == 0 and "WARNING" not in right.stdout, right.stdout
    bad = dockhand("shell", "-c", f"pull --platform 'Linux AMD64' {img.ref}", stack=stack)
    assert bad.returncode == 2 and "invalid platform" in bad.stderr


def test_pull_all_tags_lists_them_and_asks_first(stack, make_image):
    img = make_image(extra_tags=["2"], push=True)
    stack.docker("rmi", "-f", img.id)
    plan = dockhand("shell", "-c", f"pull -a {img.repo}", stack=stack)
    assert plan.returncode == 1 and "no terminal to ask on" in plan.stderr
    assert "This will pull 2 tags" in plan.stdout and "latest" in plan.stdout
    assert stack.docker("image", "inspect", img.ref, check=False).returncode != 0  # nothing pulled yet
    done = dockhand("shell", "--yes", "-c", f"docker pull --all-tags {img.repo}", stack=stack)
    assert done.returncode == 0, done.stderr
    assert "Pulled 2 of 2 tags" in done.stdout
    for ref in (img.ref, f"{img.repo}:2"):
        assert stack.docker("image", "inspect", ref).returncode == 0
    tagged = dockhand("shell", "-c", f"pull -a {img.ref}", stack=stack)
    assert tagged.returncode == 2 and "tag can't be used with --all-tags/-a" in tagged.stderr


def test_dash_c_takes_a_command_that_starts_with_a_dash_and_exit_is_a_success(stack):
    for line in ("--version", "-v"):
        r = dockhand("shell", "-c", line, stack=stack)
        assert r.returncode == 0 and r.stdout.startswith("Docker version "), (line, r.stderr)
    refused_then_exit = dockhand("shell", stack=stack, input="bogus\nexit\n")
    assert refused_then_exit.returncode == 0 and "unknown command" in refused_then_exit.stderr
    refused_then_eof = dockhand("shell", stack=stack, input="bogus\n")
    assert refused_then_eof.returncode == 2  # the last command's status, as a shell script's
