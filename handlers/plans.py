"""What a removal or a prune will do, predicted from one look at the engine.

Docker has no dry run (moby #30623), and a prune can take more than what a
person looked at (docker/cli #3014). Dockhand therefore reads the engine's
state once (every image with its references and parent, every container,
every image's unique size) into a :class:`Model`, and runs the daemon's own
removal rules on that model: the rules of moby's
``daemon/images/image_delete.go`` (``ImageDelete``, ``imageDeleteHelper``,
``checkImageDeleteConflict``, ``isSingleReference``) and of
``image_prune.go`` (candidates, filters, one ``ImageDelete`` per reference).
The result is a :class:`Plan`: per argument, what it resolved to, every
reference untagged, every image deleted, the containers in the way, the
bytes freed, or the engine's refusal in the engine's words. A plan carries a
fingerprint; the confirm step re-plans and acts only when the fingerprint is
the same, and then only through the :class:`Step` s the plan lists.

Nothing here talks to the engine except :func:`read_model` (through the
Engine port, a constant number of calls whatever the number of arguments).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from . import refs
from .errors import DockhandError, UsageError
from .ports import ContainerRef, Engine, ImageSummary
from .units import human_size, truncate_id
from .records import record

# One command may name at most this many images (rmi arguments, or the IDs
# `$(docker images -q)` lists): the plan, the confirmation and the result
# must stay readable and the work per request bounded.
MAX_IMAGES = 300


def check_count(n: int) -> None:
    if n > MAX_IMAGES:
        raise UsageError(f"{n} images named: one command may remove at most {MAX_IMAGES}",
                         "Split the removal into several commands, or use `docker image prune -a` "
                         "for every unused image.")


# --------------------------------------------------------------------------
# the engine's state


@dataclass
class Image:
    id: str  # sha256:<64 hex>
    refs: list[str]  # full normalised references: tags (name:tag) and digests (name@sha256:…)
    parent: str = ""
    created: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    size: int = 0
    unique: int = 0  # what deleting this image alone frees (`docker system df -v` UNIQUE SIZE)


@dataclass
class Container:
    id: str
    name: str
    image_id: str
    state: str

    @property
    def running(self) -> bool:
        # the daemon's IsRunning(): a paused or restarting container is still running
        return self.state in ("running", "paused", "restarting")


def _full(ref: str) -> refs.Reference | None:
    try:
        return refs.parse_normalized(ref)
    except DockhandError:
        return None


class Model:
    """The daemon's image and container state, mutable by the simulation."""

    def __init__(self, images: Iterable[Image], containers: Iterable[Container]):
        self.images: dict[str, Image] = {img.id: img for img in images}
        self.containers: list[Container] = list(containers)

    @classmethod
    def from_engine_data(cls, images: Iterable[ImageSummary], containers: Iterable[ContainerRef],
                         unique_sizes: Mapping[str, int] | None = None) -> "Model":
        unique_sizes = unique_sizes or {}
        model_images = []
        for s in images:
            full_refs = []
            for text in list(s.repo_tags) + list(s.repo_digests):
                if text in ("<none>:<none>", "<none>@<none>"):
                    continue
                ref = _full(text)
                if ref is not None:
                    full_refs.append(str(ref))
            model_images.append(Image(id=s.id, refs=sorted(set(full_refs)), parent=s.parent_id or "",
                                      created=s.created, labels=dict(s.labels or {}), size=s.size,
                                      unique=unique_sizes.get(s.id, s.size)))
        return cls(model_images, [Container(c.id, c.name, c.image_id, c.state) for c in containers])

    def copy(self) -> "Model":
        return Model([Image(i.id, list(i.refs), i.parent, i.created, dict(i.labels), i.size, i.unique)
                      for i in self.images.values()],
                     [Container(c.id, c.name, c.image_id, c.state) for c in self.containers])

    # -- the reference store and image store, as the daemon sees them

    def references(self, image_id: str) -> list[str]:
        """Sorted as the daemon's reference store returns them (lexically)."""
        return sorted(self.images[image_id].refs)

    def children(self, image_id: str) -> list[str]:
        return [i.id for i in self.images.values() if i.parent == image_id]

    def image_for_ref(self, ref: str) -> str | None:
        for img in self.images.values():
            if ref in img.refs:
                return img.id
        return None

    def users(self, image_id: str) -> list[Container]:
        return [c for c in self.containers if c.image_id == image_id]


# --------------------------------------------------------------------------
# the daemon's rules


class EngineRefusal(Exception):
    """What the daemon would answer instead of removing (its words)."""

    def __init__(self, message: str, conflict: bool = True):
        super().__init__(message)
        self.message = message
        self.conflict = conflict


@dataclass
class Records:
    untagged: list[str] = field(default_factory=list)  # familiar strings, as the engine reports them
    deleted: list[str] = field(default_factory=list)  # image IDs


def _familiar(full: str) -> str:
    ref = _full(full)
    return ref.familiar() if ref is not None else full


def _is_single_reference(refs_: list[str]) -> bool:
    """moby's isSingleReference: all references in one repository and at most one tag."""
    if len(refs_) <= 1:
        return len(refs_) == 1
    single = None
    canonical_names = set()
    for r in refs_:
        parsed = _full(r)
        name = parsed.name if parsed else r
        if parsed is not None and parsed.is_canonical:
            canonical_names.add(name)
        elif single is None:
            single = name
        else:
            return False
    if single is None:
        first = _full(refs_[0])
        single = first.name if first else refs_[0]
    return len(canonical_names) == 1 and single in canonical_names


def _conflict(model: Model, image_id: str, *, hard: bool, soft_refs: bool, soft_stopped: bool
              ) -> tuple[str, bool, bool] | None:
    """checkImageDeleteConflict: (message, hard, used) of the first conflict, or None."""
    if hard and model.children(image_id):
        return "image has dependent child images", True, False
    if hard:
        for c in model.users(image_id):
            if c.running:
                return f"image is being used by running container {truncate_id(c.id)}", True, True
    if soft_refs and model.images[image_id].refs:
        return "image is referenced in multiple repositories", False, False
    if soft_stopped:
        for c in model.users(image_id):
            if not c.running:
                return f"image is being used by stopped container {truncate_id(c.id)}", False, True
    return None


def _conflict_error(image_id: str, found: tuple[str, bool, bool]) -> EngineRefusal:
    message, hard, _ = found
    force = "cannot be forced" if hard else "must be forced"
    return EngineRefusal(f"conflict: unable to delete {truncate_id(image_id)} ({force}) - {message}")


def _is_dangling(model: Model, image_id: str) -> bool:
    return not (model.images[image_id].refs or model.children(image_id))


def _delete_helper(model: Model, image_id: str, rec: Records, *, force: bool, prune: bool, quiet: bool) -> None:
    found = _conflict(model, image_id, hard=True, soft_refs=not force, soft_stopped=not force)
    if found is not None:
        if quiet and (not _is_dangling(model, image_id) or found[2]):
            return
        raise _conflict_error(image_id, found)
    img = model.images[image_id]
    for r in sorted(img.refs):
        rec.untagged.append(_familiar(r))
    img.refs.clear()
    parent = img.parent
    del model.images[image_id]
    rec.deleted.append(image_id)
    if prune and parent and parent in model.images:
        _delete_helper(model, parent, rec, force=False, prune=True, quiet=True)


def _store_key(parsed: refs.Reference) -> str:
    """The reference store's key for a reference: a digest wins over a tag
    (favorDigest: ``name:tag@digest`` is stored and looked up as
    ``name@digest``), and a bare name means ``:latest``."""
    return str(parsed.docker_ref())


def get_image(model: Model, ref_or_id: str) -> str:
    """The daemon's GetImage: a full ID, else a reference, else an ID prefix."""
    hex_part = ref_or_id[7:] if ref_or_id.startswith("sha256:") else ref_or_id
    if len(hex_part) == 64 and all(c in "0123456789abcdef" for c in hex_part):
        image_id = "sha256:" + hex_part
        if image_id in model.images:
            return image_id
        raise EngineRefusal(f"No such image: {image_id}", conflict=False)
    try:
        parsed = refs.parse_normalized(ref_or_id)
    except DockhandError as exc:
        raise EngineRefusal(exc.message, conflict=False) from None
    found = model.image_for_ref(_store_key(parsed))
    if found is not None:
        return found
    if len(hex_part) >= refs.MIN_ID_PREFIX_LEN and all(c in "0123456789abcdef" for c in hex_part):
        matches = [i for i in model.images if i[7:].startswith(hex_part)]
        if len(matches) == 1:
            return matches[0]
    raise EngineRefusal(f"No such image: {parsed.with_default_tag().familiar()}", conflict=False)


def _is_id_prefix(image_id: str, given: str) -> bool:
    return image_id.startswith(given) or image_id[7:].startswith(given)


def image_delete(model: Model, image_ref: str, *, force: bool, prune: bool) -> Records:
    """moby's ImageDelete on the model; raises EngineRefusal with the daemon's words.

    Mutates ``model`` as the daemon would mutate its stores (also when it
    raises after a partial untag, as the daemon does)."""
    rec = Records()
    image_id = get_image(model, image_ref)
    img = model.images[image_id]
    removed_repository_ref = False
    if not _is_id_prefix(image_id, image_ref):
        if not force and _is_single_reference(img.refs):
            users = model.users(image_id)
            if users:
                raise EngineRefusal(
                    f'conflict: unable to remove repository reference "{image_ref}" (must force) - container '
                    f"{truncate_id(users[0].id)} is using its referenced image {truncate_id(image_id)}")
        parsed = refs.parse_normalized(image_ref).with_default_tag()
        key = _store_key(parsed)  # name:tag@digest removes name@digest, reported with its tag
        if key in img.refs:
            img.refs.remove(key)
        rec.untagged.append(parsed.familiar())
        if not parsed.is_canonical:
            same_repo_tag = any(not (_full(r) and _full(r).is_canonical) and (_full(r).name if _full(r) else r)
                                == parsed.name for r in img.refs)
            if not same_repo_tag:
                for r in sorted(img.refs):
                    p = _full(r)
                    if p is not None and p.is_canonical and p.name == parsed.name:
                        img.refs.remove(r)
                        rec.untagged.append(p.familiar())
        if img.refs:
            return rec
        removed_repository_ref = True
    else:
        if _is_single_reference(img.refs):
            found = _conflict(model, image_id, hard=True, soft_refs=False, soft_stopped=not force)
            if found is not None:
                raise _conflict_error(image_id, found)
            for r in sorted(img.refs):
                rec.untagged.append(_familiar(r))
            img.refs.clear()
    try:
        _delete_helper(model, image_id, rec, force=force, prune=prune, quiet=removed_repository_ref)
    except EngineRefusal:
        raise
    return rec


def held_by_containers(model: Model) -> frozenset[str]:
    """Images whose layers a container's filesystem keeps on disk: the image
    of every container and all its ancestors. ``rmi -f`` can delete such an
    image (a stopped container's), but the layer store releases no layer while
    the container's read-write layer sits on top of the chain."""
    held: set[str] = set()
    for c in model.containers:
        cur = c.image_id
        while cur and cur not in held and cur in model.images:
            held.add(cur)
            cur = model.images[cur].parent
    return frozenset(held)


def freed_bytes(model: Model, deleted: Iterable[str], held: frozenset[str] | None = None) -> int:
    """Bytes the layer store frees when the images ``deleted`` go (the prune's
    SpaceReclaimed: the DiffSize of every layer released), from the model as read.

    An image releases the layers it adds on top of its parent (its Size less
    its parent's: both are whole-chain sizes), since its children are gone by
    the time it is deleted. An image without children is capped at its UNIQUE
    SIZE: less when one of its layers is shared with an unrelated image that
    stays. An image a container holds frees nothing."""
    if held is None:
        held = held_by_containers(model)
    total = 0
    for image_id in deleted:
        img = model.images.get(image_id)
        if img is None or image_id in held:
            continue
        parent = model.images.get(img.parent)
        own = max(img.size - parent.size, 0) if parent is not None else img.size
        if not model.children(image_id):
            own = min(own, img.unique)
        total += own
    return total


# --------------------------------------------------------------------------
# plans


@record
class Step:
    """One call the confirm step makes: ``remove_image(ref, force, noprune)``.

    ``ref`` is what the engine is sent: the full image ID when the person named
    an ID, the full normalised reference when they named an image by name."""

    ref: str
    force: bool = False
    noprune: bool = False
    tolerate_conflict: bool = False  # prune: a conflict skips the image, as the daemon's prune does


@record
class PlanItem:
    """What one argument (or one prune candidate) will do."""

    arg: str  # as typed (or the candidate's short ID)
    image_id: str = ""  # what it resolved to ("" when it resolves to nothing)
    untagged: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()  # "name (state)" of every container using the image
    freed: int = 0  # bytes: the unique size of every image deleted
    refusal: str = ""  # the engine's answer when it will refuse, in its words
    steps: tuple[Step, ...] = ()

    @property
    def acts(self) -> bool:
        return bool(self.steps) and not self.refusal

    def summary(self) -> str:
        if self.refusal:
            return "refused: " + self.refusal
        parts = []
        if self.untagged:
            parts.append("untag " + ", ".join(self.untagged))
        if self.deleted:
            parts.append("delete " + ", ".join(truncate_id(d) for d in self.deleted))
        return "; ".join(parts) or "nothing"

    def to_json(self) -> dict:
        return {"arg": self.arg, "image_id": self.image_id, "untagged": list(self.untagged),
                "deleted": list(self.deleted), "containers": list(self.containers), "freed": self.freed,
                "refusal": self.refusal}


@record
class Plan:
    kind: str  # "rmi" | "prune"
    command: str
    items: tuple[PlanItem, ...]
    force: bool = False
    noprune: bool = False
    note: str = ""  # e.g. how $(docker images -q) was expanded
    # the engine state the plan was made from (the confirm step checks the
    # engine's answers against it); not part of what the plan decides
    model: "Model | None" = field(default=None, compare=False, repr=False)

    @property
    def acting(self) -> tuple[PlanItem, ...]:
        return tuple(i for i in self.items if i.acts)

    @property
    def untagged(self) -> list[str]:
        return [r for i in self.acting for r in i.untagged]

    @property
    def deleted(self) -> list[str]:
        return [d for i in self.acting for d in i.deleted]

    @property
    def freed(self) -> int:
        return sum(i.freed for i in self.acting)

    @property
    def refused(self) -> tuple[PlanItem, ...]:
        return tuple(i for i in self.items if i.refusal)

    def fingerprint(self) -> str:
        """Digest of everything the plan decides (not of sizes, which are shown only)."""
        # Items are compared as a set: the same outcomes listed in another
        # order (the engine lists images created in one second in any order)
        # are the same plan.
        items = sorted(json.dumps([i.arg, i.image_id, sorted(i.untagged), sorted(i.deleted), sorted(i.containers),
                                   i.refusal, [[s.ref, s.force, s.noprune, s.tolerate_conflict] for s in i.steps]])
                       for i in self.items)
        body = [self.kind, self.force, self.noprune, items]
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]

    def to_json(self) -> dict:
        return {"kind": self.kind, "items": [i.to_json() for i in self.items], "force": self.force,
                "noprune": self.noprune, "untagged": len(self.untagged), "deleted": len(self.deleted),
                "freed": self.freed, "note": self.note}

    def headline(self) -> str:
        n_untag, n_del = len(self.untagged), len(self.deleted)
        if not self.acting:
            return "Nothing will be removed."
        what = []
        if n_untag:
            what.append(f"untag {n_untag} reference{'s' if n_untag != 1 else ''}")
        if n_del:
            what.append(f"delete {n_del} image{'s' if n_del != 1 else ''} ({human_size(self.freed)} freed)")
        return "This will " + " and ".join(what) + "."


def _containers_of(model: Model, image_id: str) -> tuple[str, ...]:
    return tuple(f"{c.name or truncate_id(c.id)} ({c.state})" for c in model.users(image_id))


def plan_rmi(model: Model, args: list[str], *, force: bool, noprune: bool, command: str, note: str = "") -> Plan:
    """Simulate ``docker rmi [-f] [--no-prune] ARGS…`` argument by argument,
    on one model, as the CLI sends one request per argument in order."""
    check_count(len(args))
    sim = model.copy()
    held = held_by_containers(model)
    items = []
    for arg in args:
        try:
            target = refs.parse_image_arg(arg)
        except DockhandError as exc:
            items.append(PlanItem(arg=arg, refusal=exc.message))
            continue
        if isinstance(target, refs.ImageId):
            # An abbreviated ID is also a name: the daemon tries the name first.
            name = target.reference
            if name is not None and sim.image_for_ref(_store_key(name)) is not None:
                sent = str(name.with_default_tag())
            else:
                sent = target.digest if target.full else arg  # as the CLI sends it ("sha256:" kept)
        else:
            sent = str(target.with_default_tag())
        try:
            image_id = get_image(sim, sent)
        except EngineRefusal as exc:
            items.append(PlanItem(arg=arg, refusal=exc.message))
            continue
        # The daemon decides "by ID" on what it was sent (isImageIDPrefix), even
        # when the text also named the image: a name that is the image's own
        # ID prefix removes by ID.
        if not isinstance(target, refs.Reference) and _is_id_prefix(image_id, arg):
            sent = image_id  # act on exactly this image, whatever prefix was typed
        containers = _containers_of(sim, image_id)
        try:
            rec = image_delete(sim, sent, force=force, prune=not noprune)
        except EngineRefusal as exc:
            # the daemon quotes the reference it was sent; show it as typed
            message = exc.message.replace(f'"{sent}"', f'"{arg}"')
            items.append(PlanItem(arg=arg, image_id=image_id, containers=containers, refusal=message))
            continue
        items.append(PlanItem(arg=arg, image_id=image_id, untagged=tuple(rec.untagged), deleted=tuple(rec.deleted),
                              containers=containers, freed=freed_bytes(model, rec.deleted, held),
                              steps=(Step(sent, force, noprune),)))
    return Plan("rmi", command, tuple(items), force=force, noprune=noprune, note=note)


def prune_candidates(model: Model, *, dangling_only: bool, until: float | None,
                     label_match) -> list[str]:
    """image_prune.go's candidate selection ("top images"), oldest first."""
    out = []
    for img in model.images.values():
        if dangling_only and model.children(img.id):
            continue  # imageStore.Heads(): images without children
        if not img.refs and model.children(img.id):
            continue  # an untagged intermediate image goes with its last child
        if until is not None and img.created > until:
            continue
        if not label_match(img.labels):
            continue
        out.append(img.id)
    return sorted(out, key=lambda i: (model.images[i].created, i))


def plan_prune(model: Model, *, all: bool, until: float | None, label_match, command: str) -> Plan:
    """Simulate ``docker image prune [-a]`` with its filters, one candidate at a time.

    Each candidate becomes one item whose steps are the daemon's own calls:
    ``ImageDelete(ref, force=false, prune=true)`` per reference of an image
    (only untagged ones without ``-a``), or by ID when it has no reference;
    a conflict skips the call, as the daemon's prune skips it."""
    sim = model.copy()
    held = held_by_containers(model)
    dangling_only = not all
    items = []
    for image_id in prune_candidates(model, dangling_only=dangling_only, until=until, label_match=label_match):
        if image_id not in sim.images:
            continue  # deleted as a parent of an earlier candidate
        containers = _containers_of(sim, image_id)
        img_refs = sim.references(image_id)
        if img_refs:
            has_tag = any((_full(r) is not None and _full(r).is_tagged) for r in img_refs)
            if dangling_only and has_tag:
                continue
            sent = img_refs
        else:
            sent = [image_id]
        rec = Records()
        steps = []
        for ref in sent:
            try:
                got = image_delete(sim, ref, force=False, prune=True)
            except EngineRefusal:
                continue
            rec.untagged += got.untagged
            rec.deleted += got.deleted
            steps.append(Step(ref, False, False, tolerate_conflict=True))
        if not steps:
            continue
        items.append(PlanItem(arg=truncate_id(image_id), image_id=image_id, untagged=tuple(rec.untagged),
                              deleted=tuple(rec.deleted), containers=containers,
                              freed=freed_bytes(model, rec.deleted, held), steps=tuple(steps)))
    if len(items) > MAX_IMAGES:
        raise UsageError(f"the prune would remove {len(items)} images: one command may remove at most {MAX_IMAGES}",
                         "Narrow it with --filter until=… or --filter label=…, and prune in several steps.")
    return Plan("prune", command, tuple(items))


# --------------------------------------------------------------------------
# reading the engine


async def read_model(engine: Engine) -> Model:
    """The engine's state in a constant number of calls: every image (with
    intermediate ones), every container, and the unique sizes."""
    images, containers, usage = await asyncio.gather(engine.list_images(all=True), engine.list_containers(),
                                                     engine.disk_usage(), return_exceptions=True)
    for got in (images, containers):
        if isinstance(got, BaseException):
            raise got
    if isinstance(usage, DockhandError):
        usage = None  # sizes are shown, never decided on: the plan stands without them
    elif isinstance(usage, BaseException):
        raise usage
    model = Model.from_engine_data(images, containers, usage.unique if usage else {})
    return model
