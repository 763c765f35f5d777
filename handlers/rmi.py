"""``docker rmi`` / ``docker image rm``: plan the removal, then ask.

The planner resolves every argument against one reading of the engine and
predicts, with the daemon's own rules (``handlers/plans.py``), what each
argument will untag and delete; ``handlers/operations.py`` stores the plan
and asks for a confirmation before anything is removed.

The tutorial's ``docker rmi -f $(docker images -q)`` is taken as what it
means: the IDs ``docker images -q`` (with the flags written inside) lists,
each once, then a plan for removing them.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from .argv import DESTRUCTIVE, CommandSpec, Flag
from .base import Call
from .errors import UsageError
from .images import listed_rows

if TYPE_CHECKING:
    from . import plans


async def plan(call: Call) -> plans.Plan:
    from . import plans  # loaded by the commands that plan: a one-shot command's start-up

    args = list(call.args)
    note = ""
    if call.substitution is not None:
        _, rows, id_col = await listed_rows(call.engine, call.substitution)
        ids = [row[id_col] for row in rows]
        unique = list(dict.fromkeys(ids))
        note = f"$({call.substitution.line}) lists {len(unique)} image ID(s)"
        if len(unique) < len(ids):
            note += f" ({len(ids) - len(unique)} repeated: an image with several tags is listed once per tag)"
        args += unique
        if not args:
            raise UsageError(f'"docker rmi" requires at least 1 argument: $({call.substitution.line}) lists no image',
                             "Nothing to remove. `docker images` shows what there is.")
    plans.check_count(len(args))
    model = await plans.read_model(call.engine)
    result = plans.plan_rmi(model, args, force=call.opts["force"], noprune=call.opts["no_prune"],
                            command=call.parsed.line, note=note)
    return dataclasses.replace(result, model=model)


_FLAGS = (Flag("force", "f", help="Force removal of the image"),
          Flag("no-prune", help="Do not delete untagged parents"),
          Flag("platform", kind="list", metavar="stringSlice",
               help="Remove only the given platform variant", unsupported="Remove whole images only."))
_ALIASES = ("docker image rm", "docker image remove", "docker rmi")
SPECS = tuple(
    CommandSpec(path, use, "Remove one or more images", None, _FLAGS, min_args=1, aliases=_ALIASES,
                effect=DESTRUCTIVE, planner=plan,
                examples=("docker rmi hello-world", "docker rmi -f fce289e99eb9", "docker rmi -f $(docker images -q)"))
    for path, use in ((("rmi",), "rmi [OPTIONS] IMAGE [IMAGE...]"),
                      (("image", "rm"), "rm [OPTIONS] IMAGE [IMAGE...]"),
                      (("image", "remove"), "remove [OPTIONS] IMAGE [IMAGE...]"))
)
