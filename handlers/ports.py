"""What handlers need from the outside world, as plain data and a Protocol.

``bot/engine.py`` implements :class:`Engine` with the docker SDK; tests may
implement it with fakes. Nothing here imports Docker or Slack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator, Mapping, Protocol, Sequence


@dataclass(frozen=True)
class ImageSummary:
    """One entry of ``GET /images/json``."""

    id: str  # "sha256:<64 hex>"
    repo_tags: tuple[str, ...] = ()
    repo_digests: tuple[str, ...] = ()
    created: int = 0  # epoch seconds
    size: int = 0  # bytes
    containers: int = -1
    labels: Mapping[str, str] = field(default_factory=dict)
    parent_id: str = ""


@dataclass(frozen=True)
class ContainerRef:
    id: str
    name: str
    state: str  # running, exited, created, paused, ...
    image: str  # what the container was created from (as given)
    image_id: str


@dataclass(frozen=True)
class PullEvent:
    """One decoded event of the engine's pull stream."""

    status: str = ""
    id: str = ""  # layer id (12 hex) or the tag for the header line
    current: int = 0
    total: int = 0
    error: str = ""  # set when the stream reported an error (errorDetail)


@dataclass(frozen=True)
class RemoveResult:
    untagged: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()


@dataclass(frozen=True)
class PruneResult:
    untagged: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    space_reclaimed: int = 0


@dataclass(frozen=True)
class SearchResult:
    name: str
    description: str = ""
    star_count: int = 0
    is_official: bool = False
    is_automated: bool = False


Filters = Mapping[str, Sequence[str]]


class Engine(Protocol):
    """A Docker Engine on one host. Every method may raise a
    :class:`handlers.errors.EngineError` subclass; none blocks the event loop."""

    @property
    def host(self) -> str: ...

    async def list_images(self, *, all: bool = False, filters: Filters | None = None) -> list[ImageSummary]: ...

    async def inspect_image(self, ref: str) -> dict: ...

    def pull(self, repository: str, tag: str) -> AsyncIterator[PullEvent]: ...

    async def remove_image(self, ref: str, *, force: bool = False, noprune: bool = False) -> RemoveResult: ...

    async def prune_images(self, *, all: bool = False, filters: Filters | None = None) -> PruneResult: ...

    async def search(self, term: str, *, limit: int = 25, filters: Filters | None = None) -> list[SearchResult]: ...

    async def info(self) -> dict: ...

    async def version(self) -> dict: ...

    async def containers_using(self, image_id: str) -> list[ContainerRef]: ...

    async def images_in_use(self) -> frozenset[str]:
        """Full IDs of the images any container, running or not, was made from."""
        ...
