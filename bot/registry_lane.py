"""The registry lane: registry calls (pulls, searches) bounded in total and
shared fairly between people and between registries.

Registry calls can last minutes (a pull from a slow registry), so the engine
adapter bounds how many run at once (its worker threads but two, so local
calls never queue behind a registry). That bound alone is first come, first
served: one person's twelve slow pulls took every slot, and another person's
``search ubuntu`` waited 159 s behind them.

A :class:`RegistryLane` keeps the total bound and adds two things:

* **Caps.** One person (``owner``) may hold at most ``per_person`` slots, one
  registry at most ``per_registry``. A running registry call cannot be
  interrupted, so the only way to answer the *next* person in seconds is to
  keep slots free for them *before* they ask: with the defaults (6 slots, 3
  per person, 4 per registry) one busy person always leaves 3 slots to the
  others, and one slow registry always leaves 2 to the other registries.
  A fair queue alone could not do it: it only orders who goes *next*, and
  "next" can be minutes away when every slot is held by a slow call.
  The price: one person alone gets 3 calls at once rather than 6; the engine
  downloads three layers per pull at a time anyway, so a bigger share mostly
  shares the same bandwidth.
* **A fair queue.** When a slot frees, it goes to the waiting call whose
  person holds the fewest slots (ties: the person served longest ago, i.e.
  round-robin between people), then, among that person's calls, to the one
  whose registry holds the fewest slots (ties: served longest ago), then
  first come, first served. A person with two calls waiting is not served
  twice before one who has one, nor one registry twice before another.

Calls without an owner (``""``: benchmarks, internal callers) share one
person's share between them.

The lane is pure asyncio (no threads, no Docker), bound to one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

DEFAULT_PER_PERSON = 3  # DOCKHAND_PER_PERSON_REGISTRY_CALLS
DEFAULT_PER_REGISTRY = 4  # DOCKHAND_PER_REGISTRY_CALLS


@dataclass(eq=False)
class _Ticket:
    owner: str
    registry: str
    seq: int
    future: asyncio.Future = field(repr=False)
    granted: bool = False


class RegistryLane:
    """``slots`` registry calls at once, at most ``per_person`` for one owner
    and ``per_registry`` for one registry (each cap at most ``slots``)."""

    def __init__(self, slots: int, *, per_person: int = DEFAULT_PER_PERSON,
                 per_registry: int = DEFAULT_PER_REGISTRY):
        if slots < 1 or per_person < 1 or per_registry < 1:
            raise ValueError("the registry lane needs at least one slot, per person and per registry")
        self.slots = slots
        self.per_person = min(per_person, slots)
        self.per_registry = min(per_registry, slots)
        self._waiting: list[_Ticket] = []
        self._by_owner: dict[str, int] = {}
        self._by_registry: dict[str, int] = {}
        self._served: dict[str, int] = {}  # owner, and registry -> tick of its last slot (round-robin)
        self._reg_served: dict[str, int] = {}
        self._ticks = itertools.count()
        self._seq = itertools.count()
        self.in_flight = 0
        self.peak = 0  # the most calls ever in flight at once

    def __repr__(self) -> str:
        return (f"RegistryLane({self.in_flight}/{self.slots} in flight, {len(self._waiting)} waiting, "
                f"per person {self.per_person}, per registry {self.per_registry})")

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def held_by(self, owner: str) -> int:
        return self._by_owner.get(owner, 0)

    def held_at(self, registry: str) -> int:
        return self._by_registry.get(registry, 0)

    @contextlib.asynccontextmanager
    async def slot(self, owner: str, registry: str) -> AsyncIterator[None]:
        """Hold one slot for ``owner``'s call to ``registry`` while the block runs."""
        ticket = await self._acquire(owner or "", registry or "")
        try:
            yield
        finally:
            self._release(ticket)

    async def _acquire(self, owner: str, registry: str) -> _Ticket:
        ticket = _Ticket(owner, registry, next(self._seq), asyncio.get_running_loop().create_future())
        self._waiting.append(ticket)
        self._grant()
        if not ticket.granted:
            try:
                await ticket.future
            except asyncio.CancelledError:
                if ticket.granted:  # granted, then cancelled before it could run: give it back
                    self._release(ticket)
                else:
                    self._waiting.remove(ticket)
                raise
        return ticket

    def _fits(self, t: _Ticket) -> bool:
        return (self._by_owner.get(t.owner, 0) < self.per_person
                and self._by_registry.get(t.registry, 0) < self.per_registry)

    def _order(self, t: _Ticket) -> tuple[int, int, int, int, int]:
        return (self._by_owner.get(t.owner, 0), self._served.get(t.owner, -1),
                self._by_registry.get(t.registry, 0), self._reg_served.get(t.registry, -1), t.seq)

    def _grant(self) -> None:
        """Hand free slots to waiting calls, fairest first, while any fits."""
        while self.in_flight < self.slots:
            fitting = [t for t in self._waiting if not t.future.done() and self._fits(t)]
            if not fitting:
                return
            t = min(fitting, key=self._order)
            self._waiting.remove(t)
            t.granted = True
            self._by_owner[t.owner] = self._by_owner.get(t.owner, 0) + 1
            self._by_registry[t.registry] = self._by_registry.get(t.registry, 0) + 1
            self._served[t.owner] = self._reg_served[t.registry] = next(self._ticks)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            t.future.set_result(None)

    def _release(self, t: _Ticket) -> None:
        if not t.granted:
            return
        t.granted = False
        self.in_flight -= 1
        for counts, key in ((self._by_owner, t.owner), (self._by_registry, t.registry)):
            counts[key] -= 1
            if not counts[key]:
                del counts[key]
        # nothing left to be fair about: forget them
        if t.owner not in self._by_owner and not any(w.owner == t.owner for w in self._waiting):
            self._served.pop(t.owner, None)
        if t.registry not in self._by_registry and not any(w.registry == t.registry for w in self._waiting):
            self._reg_served.pop(t.registry, None)
        self._grant()
