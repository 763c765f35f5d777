"""An in-memory Engine for unit tests of the handlers (the real one is tested
against the private dockerd in tests/integration)."""

from __future__ import annotations

from handlers.errors import ImageNotFound
from handlers.ports import ContainerRef, ImageSummary, PullEvent, SearchResult


class FakeEngine:
    host = "unix:///fake/docker.sock"

    def __init__(self, images=(), results=(), containers=(), fail=None):
        self.images = list(images)
        self.results = list(results)
        self.containers = list(containers)
        self.fail = fail
        self.calls = []

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
                return {"Id": img.id, "RepoTags": list(img.repo_tags)}
        raise ImageNotFound(f"No such image: {ref}")

    async def pull(self, repository, tag):
        self.calls.append(("pull", repository, tag))
        self._maybe_fail()
        yield PullEvent(status=f"Pulling from {repository.split('/', 1)[-1]}", id=tag)
        yield PullEvent(status="Downloading", id="aaaaaaaaaaaa", current=5, total=10)
        yield PullEvent(status="Pull complete", id="aaaaaaaaaaaa")
        yield PullEvent(status="Digest: sha256:" + "1" * 64)
        yield PullEvent(status=f"Status: Downloaded newer image for {repository}:{tag}")

    async def search(self, term, *, limit=25, filters=None):
        self.calls.append(("search", term, limit, filters))
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

    async def remove_image(self, ref, *, force=False, noprune=False):  # pragma: no cover - never called yet
        raise AssertionError("handlers must not remove anything before confirmations exist")

    async def prune_images(self, *, all=False, filters=None):  # pragma: no cover
        raise AssertionError("handlers must not prune anything before confirmations exist")

    async def close(self):
        pass


def image(ident: str, tags=(), digests=(), created=0, size=0):
    return ImageSummary(id="sha256:" + ident * (64 // len(ident)), repo_tags=tuple(tags), repo_digests=tuple(digests),
                        created=created, size=size)


def result(name, stars=0, official=False, description=""):
    return SearchResult(name=name, description=description, star_count=stars, is_official=official)


def container(cid, image_id, state="exited", name="c"):
    return ContainerRef(id=cid, name=name, state=state, image="x", image_id=image_id)
