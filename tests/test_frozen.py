"""vramest.frozen behaves as the standard library's frozen dataclasses for what the package uses:
the oracle is `dataclasses` itself, on the same class bodies."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vramest.frozen import FrozenInstanceError, asdict, field, field_names, fields, frozen, replace

values = st.one_of(st.integers(), st.text(max_size=5), st.none(), st.tuples(st.integers()))


def _pair(order: bool = False) -> tuple[type, type]:
    def body() -> dict[str, object]:
        return {"__annotations__": {"a": "int", "b": "str", "c": "tuple", "K": "ClassVar[int]"},
                "b": "x", "K": 7}

    std_c = dataclasses.field(default=())
    ours = frozen(order=order)(type("Ours", (), {**body(), "c": field(default=())}))
    std = dataclasses.dataclass(frozen=True, order=order)(type("Ours", (), {**body(), "c": std_c}))
    return ours, std


@given(values, values, values, values)
def test_equality_hash_repr_and_replace_match_dataclasses(a1, b1, a2, b2):
    ours, std = _pair()
    x, y = ours(a1, b1), ours(a2, b2)
    sx, sy = std(a1, b1), std(a2, b2)
    assert (x == y) == (sx == sy)
    assert repr(x) == repr(sx)
    if isinstance(a1, (int, str, type(None), tuple)):
        assert hash(x) == hash(sx)
    assert replace(x, a=a2) == ours(a2, b1)
    assert repr(replace(x, b=b2)) == repr(dataclasses.replace(sx, b=b2))
    assert [f.name for f in fields(x)] == [f.name for f in dataclasses.fields(sx)] == ["a", "b", "c"]
    assert ours.K == std.K == 7  # a ClassVar is not a field


@given(st.tuples(st.integers(), st.integers()), st.tuples(st.integers(), st.integers()))
def test_ordering_matches_dataclasses(p, q):
    ours, std = _pair(order=True)
    for op in ("__lt__", "__le__", "__gt__", "__ge__"):
        assert getattr(ours(p), op)(ours(q)) == getattr(std(p), op)(std(q))


def test_frozen_and_identity_records():
    @frozen
    class Point:
        x: int
        y: int = 0

    p = Point(1)
    with pytest.raises(FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):  # as dataclasses' FrozenInstanceError
        del p.y  # type: ignore[misc]
    assert p == Point(1, 0) and hash(p) == hash(Point(1, 0)) and p != (1, 0)
    assert copy.deepcopy(p) == p and copy.copy(p) == p

    @frozen(eq=False)
    class Handle:
        name: str

    assert Handle("a") != Handle("a") and len({Handle("a"), Handle("a")}) == 2


def test_defaults_factories_inheritance_and_post_init():
    seen = []

    @frozen
    class Base:
        a: int
        tags: dict = field(default_factory=dict)

    @frozen
    class Child(Base):
        b: int = 2
        NAME: ClassVar[str] = "child"

        def __post_init__(self) -> None:
            seen.append(self.b)

    c1, c2 = Child(1), Child(1)
    assert c1.tags == {} and c1.tags is not c2.tags  # a new dict for each instance
    assert [f.name for f in fields(Child)] == ["a", "tags", "b"] and seen == [2, 2]
    assert field_names(c1) == {"a", "tags", "b"}
    assert asdict(Child(1, {"k": (Base(3),)}, 4)) == {"a": 1, "tags": {"k": ({"a": 3, "tags": {}},)},
                                                       "b": 4}
    with pytest.raises(TypeError, match="follows default"):
        @frozen
        class Wrong:
            a: int = 1
            b: int  # type: ignore[misc]


def test_a_class_keeps_the_methods_it_defines():
    @frozen
    class Named:
        name: str

        def __repr__(self) -> str:
            return f"<{self.name}>"

        def __hash__(self) -> int:
            return 42

    assert repr(Named("x")) == "<x>" and hash(Named("x")) == 42
    with pytest.raises(TypeError, match="not a record"):
        fields(object())


_TUPLE_SOURCE = """
class Req(NamedTuple):
    \"\"\"A request.\"\"\"

    a: int
    b: str | None = None
    c: tuple[int, ...] = ()

    def twice(self) -> int:
        return 2 * self.a

    @property
    def doubled(self) -> int:
        return self.twice()
"""


def _tuple_pair() -> tuple[Any, Any]:
    """The same class body under vramest.frozen's NamedTuple and typing's (the oracle)."""
    import typing

    from vramest import frozen as light

    made = []
    for named_tuple in (light.NamedTuple, typing.NamedTuple):
        namespace: dict[str, Any] = {"NamedTuple": named_tuple, "__name__": __name__}
        exec("from __future__ import annotations\n" + _TUPLE_SOURCE, namespace)
        made.append(namespace["Req"])
    return made[0], made[1]


@given(st.integers(), st.one_of(st.none(), st.text(max_size=5)), st.tuples(st.integers()))
def test_the_light_named_tuple_behaves_as_typing_s(a: int, b: str | None,
                                                   c: tuple[int, ...]) -> None:
    ours, std = _tuple_pair()
    x, y = ours(a, b, c), std(a, b, c)
    assert tuple(x) == tuple(y) and x == y and hash(x) == hash(y) and repr(x) == repr(y)
    assert ours._fields == std._fields and ours._field_defaults == std._field_defaults
    assert ours(a) == std(a) and ours(a=a, c=c) == std(a=a, c=c)
    assert x._replace(b="z") == y._replace(b="z") and x._asdict() == y._asdict()
    assert x.twice() == y.twice() == x.doubled and ours.__doc__ == std.__doc__ == "A request."
    # typing turns each annotation into a compiled ForwardRef: the cost the light one avoids
    assert ours.__module__ == std.__module__ and list(ours.__annotations__) == list(std.__annotations__)
    with pytest.raises(AttributeError):
        x.a = 1  # type: ignore[misc]


_CALLS = [((1,), {}), ((), {"a": 1}), ((1, "y"), {}), ((1,), {"c": (2,)}), ((), {"a": 1, "b": "z"}),
          ((), {}), ((1, "y", (), 4), {}), ((1,), {"a": 2}), ((1,), {"d": 3}), ((), {"b": "y"})]


@pytest.mark.parametrize("compile_after", [1, 10**9])
def test_generic_and_compiled_init_both_answer_as_dataclasses(
        monkeypatch: pytest.MonkeyPatch, compile_after: int) -> None:
    """A record's first instances are filled field by field, later ones by its compiled
    __init__: both make what dataclasses make, and refuse what it refuses."""
    from vramest import frozen as records

    monkeypatch.setattr(records, "COMPILE_AFTER", compile_after)
    for args, kwargs in _CALLS:
        ours, std = _pair()
        try:
            expected: object = repr(std(*args, **kwargs))
        except TypeError:
            expected = TypeError
        try:
            got: object = repr(ours(*args, **kwargs))
        except TypeError:
            got = TypeError
        assert got == expected, (args, kwargs)


@pytest.mark.parametrize("compile_after", [1, 10**9])
def test_generic_and_compiled_new_both_answer_as_typing_s(monkeypatch: pytest.MonkeyPatch,
                                                          compile_after: int) -> None:
    """A light NamedTuple's first instances come from a generic __new__, later ones from its
    compiled one: both make what typing.NamedTuple makes, and refuse what it refuses."""
    from vramest import frozen as records

    monkeypatch.setattr(records, "COMPILE_AFTER", compile_after)
    ours, std = _tuple_pair()
    for args, kwargs in _CALLS:
        try:
            expected: object = std(*args, **kwargs)
        except TypeError:
            with pytest.raises(TypeError):
                ours(*args, **kwargs)
            continue
        made = ours(*args, **kwargs)
        assert made == expected and repr(made) == repr(expected) and type(made) is ours
    assert ours._make([1, "y", ()]) == std._make([1, "y", ()])
    with pytest.raises(TypeError):
        ours._make([1])
    with pytest.raises(ValueError):
        ours(1)._replace(d=2)
    assert ours(1).a == 1 and ours.a.__doc__ == std.a.__doc__
