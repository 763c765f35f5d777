"""Value records: frozen dataclasses compared, hashed and shown by their fields.

Reply parts, port types, settings and targets are frozen dataclasses. For
each one, ``@dataclass(frozen=True)`` compiles six methods when its module is
imported (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
``__setattr__``, ``__delattr__``): about 1 ms a class on these machines,
which made the ~40 classes a one-shot ``dockhand shell -c`` loads a fifth of
its start-up. :func:`record` makes a dataclass (``fields``, ``replace``,
``asdict``, ``__match_args__`` and the generated ``__init__`` are
dataclasses' own) and gives it the other five methods, written once here,
with frozen dataclasses' meaning:

- equal when ``other`` is of the very same class and the fields with
  ``compare=True`` are equal, in order (else ``NotImplemented``);
- hashed by the fields ``hash=`` selects, by default the compared ones;
- shown as ``Name(field=value, ...)`` with the fields ``repr=True`` selects;
- frozen: each field is set once, by ``__init__``; setting it again, setting
  any other attribute, or deleting one raises ``FrozenInstanceError``.
  (``__dataclass_params__.frozen`` is False: dataclasses did not make these
  two methods. A frozen ``@dataclass`` cannot inherit from a record.)

A method the class defines itself is kept, as dataclasses keep it.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass, fields
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


def _setattr(self: Any, name: str, value: Any) -> None:
    if name in self.__dict__ or name not in self.__class__.__record_fields__:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")
    object.__setattr__(self, name, value)  # __init__ setting the field for the first time


def _delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _repr(self: Any) -> str:
    shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__class__.__record_repr__)
    return f"{self.__class__.__qualname__}({shown})"


def record(cls: type[T] | None = None, /, **options: Any) -> Any:
    """``@record`` or ``@record(kw_only=True, ...)``: a frozen dataclass with
    the shared ``__eq__``/``__hash__``/``__repr__`` above."""

    def make(c: type[T]) -> type[T]:
        own = set(c.__dict__)
        out = dataclass(eq=False, repr=False, **options)(c)
        every = fields(out)
        out.__record_fields__ = frozenset(f.name for f in every)
        out.__record_compare__ = _values(tuple(f.name for f in every if f.compare))
        out.__record_hash__ = _values(tuple(f.name for f in every if (f.compare if f.hash is None else f.hash)))
        out.__record_repr__ = tuple(f.name for f in every if f.repr)
        for name, method in (("__eq__", _eq), ("__hash__", _hash), ("__repr__", _repr),
                             ("__setattr__", _setattr), ("__delattr__", _delattr)):
            if name not in own:
                setattr(out, name, method)
        return out

    return make if cls is None else make(cls)

