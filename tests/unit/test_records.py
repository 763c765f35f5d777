"""handlers/records.py: @record against @dataclass(frozen=True), the behaviour it stands for."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import pytest

from handlers.records import record


def pair(**opts):
    """The same class twice: a frozen dataclass, and a record."""

    def body(ns):
        ns["__annotations__"] = {"name": "str", "tags": "tuple", "size": "float", "secret": "str", "note": "str"}
        ns["tags"] = ()
        ns["size"] = 0.0
        ns["secret"] = field(default="", repr=False)
        ns["note"] = field(default="", compare=False)

    import types

    plain = dataclass(frozen=True)(types.new_class("Thing", (), {}, body))
    rec = record(types.new_class("Thing", (), {}, body))
    return plain, rec


VALUES = [
    dict(name="a"),
    dict(name="a", tags=("x", "y"), size=1.5),
    dict(name="a", tags=("x",), secret="hunter2"),
    dict(name="a", note="differs only in a field that is not compared"),
    dict(name="b", size=math.nan),
]


@pytest.mark.parametrize("left", VALUES)
@pytest.mark.parametrize("right", VALUES)
def test_equality_and_hashing_match_dataclasses(left, right):
    plain, rec = pair()
    assert (plain(**left) == plain(**right)) == (rec(**left) == rec(**right))
    assert (plain(**left) != plain(**right)) == (rec(**left) != rec(**right))
    if plain(**left) == plain(**right):
        assert hash(rec(**left)) == hash(rec(**right))
    assert hash(rec(**left)) == hash(plain(**left))  # the same tuple of the same fields


def test_the_same_object_with_a_nan_equals_itself_as_in_a_tuple():
    plain, rec = pair()
    p, r = plain(name="n", size=math.nan), rec(name="n", size=math.nan)
    assert (p == p) is True and (r == r) is True
    assert (p == plain(name="n", size=math.nan)) == (r == rec(name="n", size=math.nan))


def test_repr_matches_dataclasses_and_hides_what_repr_false_hides():
    plain, rec = pair()
    assert repr(rec(name="a", tags=("x",), secret="hunter2")) == repr(plain(name="a", tags=("x",), secret="hunter2"))
    assert "hunter2" not in repr(rec(name="a", secret="hunter2"))


def test_another_class_with_the_same_fields_is_never_equal():
    plain, rec = pair()
    _, other = pair()
    assert rec(name="a") != other(name="a")
    assert rec(name="a").__eq__(plain(name="a")) is NotImplemented


def test_it_stays_a_frozen_dataclass():
    _, rec = pair()
    r = rec(name="a", tags=("x",))
    assert dataclasses.is_dataclass(r)
    assert [f.name for f in dataclasses.fields(r)] == ["name", "tags", "size", "secret", "note"]
    for name in ("name", "size", "note", "not_a_field"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(r, name, "b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        del r.name  # type: ignore[misc]
    assert r.name == "a" and not hasattr(r, "not_a_field")
    assert dataclasses.replace(r, size=2.0) == rec(name="a", tags=("x",), size=2.0)
    assert dataclasses.asdict(r)["tags"] == ("x",)
    match r:
        case rec(name, tags):  # __match_args__
            assert (name, tags) == ("a", ("x",))
    assert {r, rec(name="a", tags=("x",))} == {r}


def test_post_init_may_set_a_derived_field_the_way_frozen_dataclasses_do():
    @record
    class Sized:
        text: str
        length: int = field(init=False, default=0)

        def __post_init__(self) -> None:
            object.__setattr__(self, "length", len(self.text))

    s = Sized("abc")
    assert s.length == 3 and s == Sized("abc") and repr(s).endswith("Sized(text='abc', length=3)")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.length = 4  # type: ignore[misc]


def test_a_subclass_made_a_record_too_is_frozen_with_its_own_fields():
    @record
    class Base:
        a: int

    @record
    class Child(Base):
        b: int = 0

    c = Child(1, 2)
    assert (c.a, c.b) == (1, 2) and c != Base(1) and repr(c).endswith("Child(a=1, b=2)")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.b = 3  # type: ignore[misc]


def test_methods_the_class_defines_are_kept_and_options_pass_through():
    @record(kw_only=True)
    class Login:
        user: str
        password: str

        def __repr__(self) -> str:
            return f"Login({self.user}, password hidden)"

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Login) and other.user == self.user

        def __hash__(self) -> int:
            return hash(self.user)

    a, b = Login(user="u", password="1"), Login(user="u", password="2")
    assert repr(a) == "Login(u, password hidden)"
    assert a == b and hash(a) == hash(b)
    with pytest.raises(TypeError):
        Login("u", "1")  # kw_only reached dataclass
