"""Which configured Slack user groups a person belongs to.

Roles may be granted to user groups (``S…`` IDs in DOCKHAND_ADMINS and the
other role settings). Slack answers ``usergroups.users.list`` with a group's
members (scope ``usergroups:read``); the answers are cached for
:data:`TTL` seconds, so a command costs no Web API call most of the time,
and a failed look-up grants nothing (the person keeps their own grants).
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("dockhand.slack")

TTL = 300.0  # seconds a group's member list is trusted


class GroupDirectory:
    def __init__(self, client, groups: frozenset[str], *, ttl: float = TTL, clock=time.monotonic):
        self.client, self.groups, self.ttl, self.clock = client, groups, ttl, clock
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = asyncio.Lock()

    async def groups_of(self, user_id: str) -> frozenset[str]:
        if not self.groups or not user_id:
            return frozenset()
        found = set()
        for group in sorted(self.groups):
            if user_id in await self._members_of(group):
                found.add(group)
        return frozenset(found)

    async def _members_of(self, group: str) -> frozenset[str]:
        now = self.clock()
        cached = self._members.get(group)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        async with self._lock:
            cached = self._members.get(group)
            if cached is not None and now - cached[0] < self.ttl:
                return cached[1]
            try:
                resp = await self.client.usergroups_users_list(usergroup=group)
                members = frozenset(str(u) for u in resp.get("users") or ())
            except Exception as exc:  # noqa: BLE001 - Slack down or scope missing: grant nothing
                from .posting import _slack_error

                error = _slack_error(exc)
                log.warning("cannot list the members of user group %s (%s): its role grants nothing for now",
                            group, error)
                members = cached[1] if cached is not None else frozenset()
                self._members[group] = (now - self.ttl + 30, members)  # try again in 30 s
                return members
            self._members[group] = (now, members)
            return members
