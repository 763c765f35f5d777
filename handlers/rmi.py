"""``docker rmi`` / ``docker image rm``: show what removal would do.

Removal itself is destructive and arrives with confirmations, roles and the
audit trail; until then the command resolves every image, shows the plan
(what would be untagged or deleted, which containers are in the way) and
removes nothing.
"""

from __future__ import annotations

from . import refs
from .argv import CommandSpec, Flag
from .base import Call
from .errors import ImageNotFound
from .ports import Engine
from .replies import Notice, Status, Table
from .units import truncate_id

NOT_ENABLED = ("Removal is not enabled in Dockhand yet: nothing was removed. "
               "It arrives with confirmations, roles and the audit trail.")


async def resolve_image(engine: Engine, arg: str) -> tuple[dict, str]:
    """Find the image ``arg`` names, as the daemon does: a reference first
    (``ubuntu`` means ``ubuntu:latest``), then an image ID or a unique ID prefix.
    Returns the inspect data and how the argument was understood."""
    target = refs.parse_image_arg(arg)
    if isinstance(target, refs.ImageId) and target.full:
        return await engine.inspect_image(str(target)), target.short
    ref = target if isinstance(target, refs.Reference) else target.reference
    if ref is not None:
        ref = ref.with_default_tag()
        try:
            return await engine.inspect_image(str(ref)), ref.familiar()
        except ImageNotFound:
            if isinstance(target, refs.Reference):
                raise ImageNotFound(f"No such image: {ref.familiar()}") from None
    ids = [img.id for img in await engine.list_images(all=True)]
    full = refs.resolve_id_prefix(target.value, ids)
    if not full:
        raise ImageNotFound(f"No such image: {arg}")
    return await engine.inspect_image(full), truncate_id(full)


async def rmi(call: Call):
    force = call.opts["force"]
    rows = []
    for arg in call.args:
        image, shown = await resolve_image(call.engine, arg)
        image_id = image.get("Id", "")
        tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
        users = await call.engine.containers_using(image_id)
        by_id = shown == truncate_id(image_id)
        repos = {t.rsplit(":", 1)[0] for t in tags}
        if by_id and len(repos) > 1 and not force:
            outcome = "refused: image is referenced in multiple repositories (must be forced)"
        elif not by_id and len(tags) > 1:
            outcome = f"untag {shown} (the image keeps {len(tags) - 1} other tag(s))"
        elif users and not force:
            outcome = f"refused: container {truncate_id(users[0].id)} is using it (must force)"
        elif any(u.state == "running" for u in users):
            outcome = "refused: a running container uses it (cannot be forced)"
        else:
            outcome = f"untag {len(tags)} tag(s) and delete image {truncate_id(image_id)}" if tags else \
                f"delete image {truncate_id(image_id)}"
        using = ", ".join(f"{u.name} ({u.state})" for u in users) or "-"
        rows.append((arg, truncate_id(image_id), using, outcome))
    return call.reply(Table(("IMAGE", "IMAGE ID", "CONTAINERS", "WOULD"), tuple(rows)), Notice(NOT_ENABLED),
                      status=Status.FAILED, summary=f"removal not enabled: {len(rows)} image(s) resolved, nothing removed")


_FLAGS = (Flag("force", "f", help="Force removal of the image"),
          Flag("no-prune", help="Do not delete untagged parents"),
          Flag("platform", kind="list", metavar="stringSlice",
               help="Remove only the given platform variant", unsupported="Remove whole images only."))
_ALIASES = ("docker image rm", "docker image remove", "docker rmi")
SPECS = tuple(
    CommandSpec(path, use, "Remove one or more images", rmi, _FLAGS, min_args=1, aliases=_ALIASES, read_only=False,
                examples=("docker rmi hello-world", "docker rmi -f fce289e99eb9"))
    for path, use in ((("rmi",), "rmi [OPTIONS] IMAGE [IMAGE...]"),
                      (("image", "rm"), "rm [OPTIONS] IMAGE [IMAGE...]"),
                      (("image", "remove"), "remove [OPTIONS] IMAGE [IMAGE...]"))
)
