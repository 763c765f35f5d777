"""`search REGISTRY/TERM` against registries without a v1 search endpoint
(distribution's registry): Dockhand lists the v2 catalog and tag lists
instead, with the registry's credentials, and says so. Through the shell,
as a user runs it."""

from __future__ import annotations

import uuid

from tests.integration.shell_helpers import dockhand, dockhand_env, table
from tests.integration.test_private_registry import (PASSWORD, USER, auth_registry,  # noqa: F401
                                                     private_image, secret_forms)

NOTICE = "has no search endpoint, so Dockhand listed its catalog instead"


def test_search_lists_the_stack_registry_catalog_with_tags(stack, make_image):
    name = f"cat-{uuid.uuid4().hex[:10]}"
    make_image(f"{name}-web", "1.0", extra_tags=["latest"], push=True)
    make_image(f"{name}-db", "2.1", push=True)
    r = dockhand("shell", "-c", f"search {stack.registry}/{name}", stack=stack)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert NOTICE in r.stdout
    lines = [line for line in r.stdout.splitlines() if line.startswith(("NAME", stack.registry + "/"))]
    header, rows = table("\n".join(lines))
    assert header == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"]
    assert sorted(rows) == [[f"{stack.registry}/dockhand-test/{name}-db", "tags: 2.1", "0", ""],
                            [f"{stack.registry}/dockhand-test/{name}-web", "tags: 1.0, latest", "0", ""]]
    # --limit, and a filter nothing in a catalog can meet
    one = dockhand("shell", "-c", f"search --limit 1 {stack.registry}/{name}", stack=stack)
    assert one.returncode == 0 and one.stdout.count(f"{stack.registry}/dockhand-test/{name}") == 1
    official = dockhand("shell", "-c", f"search -f is-official=true {stack.registry}/{name}", stack=stack)
    assert official.returncode == 0 and f"dockhand-test/{name}" not in official.stdout and "is-official=true matches none" in official.stdout


def test_a_result_pulls_from_that_registry(stack, make_image):
    name = f"cat-{uuid.uuid4().hex[:10]}"
    img = make_image(name, "latest", push=True)
    stack.docker("rmi", img.ref)
    r = dockhand("shell", "-c", f"search {stack.registry}/{name}", stack=stack)
    assert f"{stack.registry}/dockhand-test/{name}" in r.stdout
    pulled = dockhand("shell", "-c", f"pull {stack.registry}/dockhand-test/{name}", stack=stack)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert stack.docker("image", "inspect", img.ref, check=False).returncode == 0


def test_htpasswd_registry_with_and_without_credentials(stack, auth_registry, private_image):  # noqa: F811
    ref = private_image()
    repo = ref.split("/", 1)[1].rsplit(":", 1)[0]  # private/app-<hex>
    term = f"{auth_registry.address}/{repo.split('/')[1]}"
    creds = dockhand_env(stack, DOCKHAND_REGISTRY_PRIV_HOST=auth_registry.address,
                         DOCKHAND_REGISTRY_PRIV_USERNAME=USER, DOCKHAND_REGISTRY_PRIV_PASSWORD=PASSWORD)
    ok = dockhand("shell", "-c", f"search {term}", env=creds)
    out = ok.stdout + ok.stderr
    assert ok.returncode == 0, out
    assert NOTICE in out and f"{auth_registry.address}/{repo}" in out and "tags: v1" in out
    # the CLI's own login (config.json written by `docker login`) works too
    cli = dockhand("shell", "-c", f"search {term}", env=dockhand_env(stack, DOCKER_CONFIG=auth_registry.cli_config))
    assert cli.returncode == 0 and f"{auth_registry.address}/{repo}" in cli.stdout, cli.stdout + cli.stderr

    none = dockhand("shell", "-c", f"search {term}", stack=stack)
    wrong = dockhand("shell", "-c", f"search {term}",
                     env=dict(creds, DOCKHAND_REGISTRY_PRIV_PASSWORD="Wrong-" + uuid.uuid4().hex))
    for r in (none, wrong):
        out = r.stdout + r.stderr
        assert r.returncode != 0, out
        assert "Traceback" not in out
        assert "has no search endpoint, and its catalog could not be listed" in out
        assert "refused" in out and repo not in out
    assert "DOCKHAND_REGISTRY_" in none.stdout + none.stderr  # where credentials come from
    for r in (ok, cli, none, wrong):
        for secret in secret_forms():
            assert secret not in r.stdout + r.stderr
