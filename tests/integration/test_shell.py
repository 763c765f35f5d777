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


def test_rmi_plan_removes_nothing(stack):
    ref = f"{stack.registry}/dockhand/busybox:1.36"
    r = dockhand("shell", "-c", f"rmi {ref}", stack=stack)
    assert r.returncode == 1 and "nothing was removed" in r.stdout and "untag" in r.stdout
    used = dockhand("shell", "-c", f"rmi {stack.registry}/dockhand/used", stack=stack)
    assert "refused: container" in used.stdout
    assert stack.docker("image", "inspect", ref).returncode == 0


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
    host = f"unix://{tmp_path}/no-engine.sock"
    env = dockhand_env(None, DOCKER_HOST=host)
    r = dockhand("shell", "-c", "images", env=env)
    assert r.returncode == 1
    assert host in r.stderr and "DOCKER_HOST" in r.stderr and "Traceback" not in r.stderr
    inter = dockhand("shell", env=env, input="info\nexit\n")
    assert inter.returncode == 1 and inter.stderr.count(host) >= 2


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


def test_image_prune_shows_the_plan_and_removes_nothing(stack, make_image):
    unused = make_image()
    r = dockhand("shell", "-c", "docker image prune -a", stack=stack)
    assert r.returncode == 1 and "nothing was removed" in r.stdout, r.stderr
    assert unused.id[7:19] in r.stdout and stack.seeds["used"]["id"][7:19] not in r.stdout
    assert stack.docker("image", "inspect", unused.ref).returncode == 0
    dangling = dockhand("shell", "-c", "docker image prune", stack=stack)
    assert "would be removed" in dangling.stdout or "nothing to prune" in dangling.stdout
