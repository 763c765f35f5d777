"""Value records: frozen dataclasses compared, hashed and shown by their fields.

Reply parts, port types, settings and targets are frozen dataclasses. For
each one, ``@dataclass(frozen=True)`` compiles six methods when its module is
imported (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
``__setattr__``, ``__delattr__``): about 1 ms a class on these machines,
which made the ~40 classes a one-shot ``dockhand shell -c`` loads a fifth of
its start-up. :func:`record` makes the same frozen dataclass (``fields``,
``replace``, ``asdict``, ``__match_args__`` and the generated ``__init__``
are dataclasses' own) and gives it ``__eq__``, ``__hash__`` and ``__repr__``
written once here, with dataclasses' meaning:

- equal when ``other`` is of the very same class and the fields with
  ``compare=True`` are equal, in order (else ``NotImplemented``);
- hashed by the fields ``hash=`` selects, by default the compared ones;
- shown as ``Name(field=value, ...)`` with the fields ``repr=True`` selects.

A method the class defines itself is kept, as dataclasses keep it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def _values(names: tuple[str, ...]) -> Callable[[Any], tuple]:
    """A function giving an object's values of ``names`` as a tuple (compared
    as dataclasses compare them: tuples, so ``x is y`` counts as equal)."""
    return lambda obj: tuple(getattr(obj, n) for n in names)


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    key = self.__class__.__record_compare__
    return key(self) == key(other)


def _hash(self: Any) -> int:
    return hash(self.__class__.__record_hash__(self))


def _repr(self: Any) -> str:
    shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__class__.__record_repr__)
    return f"{self.__class__.__qualname__}({shown})"


def record(cls: type[T] | None = None, /, **options: Any) -> Any:
    """``@record`` or ``@record(kw_only=True, ...)``: a frozen dataclass with
    the shared ``__eq__``/``__hash__``/``__repr__`` above."""

    def make(c: type[T]) -> type[T]:
        own = set(c.__dict__)
        out = dataclass(frozen=True, eq=False, repr=False, **options)(c)
        every = fields(out)
        out.__record_compare__ = _values(tuple(f.name for f in every if f.compare))
        out.__record_hash__ = _values(tuple(f.name for f in every if (f.compare if f.hash is None else f.hash)))
        out.__record_repr__ = tuple(f.name for f in every if f.repr)
        for name, method in (("__eq__", _eq), ("__hash__", _hash), ("__repr__", _repr)):
            if name not in own:
                setattr(out, name, method)
        return out

    return make if cls is None else make(cls)

