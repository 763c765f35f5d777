"""An in-memory Engine for unit tests of the handlers (the real one is tested
against the private dockerd in tests/integration)."""

from __future__ import annotations

from dataclasses import replace

from handlers.errors import Conflict, ImageNotFound
from handlers.ports import (ContainerRef, DiskUsage, ImageSummary, PullEvent, RemoveResult, RunLimits, RunResult,
                            SearchResult)
from handlers.refs import parse_normalized


def _full(text):
    return str(parse_normalized(text))


class FakeEngine:
    host = "unix:///fake/docker.sock"

    def __init__(self, images=(), results=(), containers=(), fail=None):
        self.images = list(images)
        self.results = list(results)
        self.containers = list(containers)
        self.fail = fail
        self.calls = []
        self.owners = []  # (method, owner): on whose behalf each pull and search ran

    def _maybe_fail(self):
        if self.fail:
            raise self.fail

    async def list_images(self, *, all=False, filters=None):
        self.calls.append(("list_images", all, filters))
        self._maybe_fail()
        return list(self.images)

    async def inspect_image(self, ref):
        self.calls.append(("inspect_image", ref))
        self._maybe_fail()
        from handlers.refs import parse_normalized

        for img in self.images:
            if ref == img.id or ref in (str(parse_normalized(t)) for t in img.repo_tags):
                return {"Id": img.id, "RepoTags": list(img.repo_tags), "RepoDigests": list(img.repo_digests)}
        raise ImageNotFound(f"No such image: {ref}")

    async def pull(self, repository, tag, *, owner="", platform=""):
        self.calls.append(("pull", repository, tag))
        self.owners.append(("pull", owner))
        self._maybe_fail()
        yield PullEvent(status=f"Pulling from {repository.split('/', 1)[-1]}", id=tag)
        yield PullEvent(status="Downloading", id="aaaaaaaaaaaa", current=5, total=10)
        yield PullEvent(status="Pull complete", id="aaaaaaaaaaaa")
        yield PullEvent(status="Digest: sha256:" + "1" * 64)
        yield PullEvent(status=f"Status: Downloaded newer image for {repository}:{tag}")

    async def search(self, term, *, limit=25, filters=None, owner=""):
        self.calls.append(("search", term, limit, filters))
        self.owners.append(("search", owner))
        self._maybe_fail()
        return self.results[:limit]

    async def info(self):
        self._maybe_fail()
        return {"Containers": 3, "ContainersRunning": 1, "ContainersPaused": 0, "ContainersStopped": 2,
                "Images": len(self.images), "ServerVersion": "20.10.24", "MemTotal": 2**30, "NCPU": 2}

    async def version(self):
        self._maybe_fail()
        return {"Version": "20.10.24", "GitCommit": "5d6db84", "ApiVersion": "1.41"}

    async def containers_using(self, image_id):
        return [c for c in self.containers if c.image_id == image_id]

    async def images_in_use(self):
        self.calls.append(("images_in_use",))
        return frozenset(c.image_id for c in self.containers)

    async def list_containers(self):
        self.calls.append(("list_containers",))
        self._maybe_fail()
        return list(self.containers)

    async def disk_usage(self):
        self.calls.append(("disk_usage",))
        return DiskUsage(layers_size=sum(i.size for i in self.images), unique={i.id: i.size for i in self.images})

    async def remove_image(self, ref, *, force=False, noprune=False):
        """Removes from the in-memory images by the daemon's rules (handlers.plans simulates them;
        tests/integration/test_removal_oracle.py checks those rules against a real engine)."""
        from handlers.plans import EngineRefusal, Model, image_delete

        self.calls.append(("remove_image", ref, force, noprune))
        model = Model.from_engine_data(self.images, self.containers)
        try:
            rec = image_delete(model, ref, force=force, prune=not noprune)
        except EngineRefusal as exc:
            if exc.conflict:
                raise Conflict("Error response from daemon: " + exc.message) from None
            raise ImageNotFound("Error response from daemon: " + exc.message) from None
        kept = {i.id: i for i in model.images.values()}
        self.images = [replace(img, repo_tags=tuple(t for t in img.repo_tags if _full(t) in kept[img.id].refs),
                               repo_digests=tuple(d for d in img.repo_digests if _full(d) in kept[img.id].refs))
                       for img in self.images if img.id in kept]
        return RemoveResult(untagged=tuple(rec.untagged), deleted=tuple(rec.deleted))

    async def remove_many(self, calls):
        out = []
        for ref, force, noprune in calls:
            try:
                out.append(await self.remove_image(ref, force=force, noprune=noprune))
            except (Conflict, ImageNotFound) as exc:
                out.append(exc)
        return out

    async def prune_images(self, *, all=False, filters=None):  # pragma: no cover
        raise AssertionError("Dockhand removes the planned images one by one; it never asks the engine to prune")

    run_limits = RunLimits()
    # what run_container answers (a RunResult, or an exception to raise)
    run_result = RunResult(exit_code=0, output_tail="Hello from Dockhand!\n", image_id="sha256:" + "e" * 64,
                           container="dockhand-run-fake", duration=0.1)

    async def run_container(self, image, command=(), *, entrypoint=None, limits, tail_lines=50, tail_bytes=8192):
        self.calls.append(("run_container", image, tuple(command), entrypoint, limits))
        self._maybe_fail()
        if isinstance(self.run_result, BaseException):
            raise self.run_result
        return self.run_result

    async def close(self):
        pass


def image(ident: str, tags=(), digests=(), created=0, size=0, parent="", labels=None):
    return ImageSummary(id="sha256:" + ident * (64 // len(ident)), repo_tags=tuple(tags), repo_digests=tuple(digests),
                        created=created, size=size, parent_id=parent, labels=labels or {})


def result(name, stars=0, official=False, description=""):
    return SearchResult(name=name, description=description, star_count=stars, is_official=official)


def container(cid, image_id, state="exited", name="c"):
    return ContainerRef(id=cid, name=name, state=state, image="x", image_id=image_id)
