"""Frozen records: the part of `dataclasses` the package uses, at a fraction of its start-up cost.

The headline command's budget is 1.5× a bare interpreter start (issue #20). `dataclasses`
imports `inspect` (about 12 ms here) and compiles six methods per class with `exec` (about
1 ms a class; the headline path defines 32), which alone came to 1.4× `python -c pass`. A
`@frozen` record compiles only its `__init__`, once it has made COMPILE_AFTER instances (most
records a command imports are made a few times or never); equality, hashing, ordering and
`repr` share one implementation over the field tuple. Semantics follow `dataclasses` for what
is used here: field order and defaults (`field(default=..., default_factory=...)`), inheritance, `ClassVar`
annotations skipped, `__post_init__`, frozen instances, `eq=False` (identity), `order=True`,
methods a class defines itself kept, `replace`, `fields` and `asdict`. The light `NamedTuple`
does the same for `collections.namedtuple`'s `__new__`.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter, itemgetter

# `typing` costs a tenth of a bare interpreter's start, and typing.NamedTuple compiles every
# field's annotation once more; the modules on the estimate path import these names from here
# instead: the real ones for the type checker (which reads any TYPE_CHECKING as true), light
# stand-ins at run time. PEP 781 proposes TYPE_CHECKING as a built-in for this reason.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NamedTuple, TypeVar, overload

    from typing_extensions import dataclass_transform

    T = TypeVar("T")
else:
    def dataclass_transform(**_: object) -> Callable[[Any], Any]:
        return lambda decorated: decorated

    class _NamedTupleMeta(type):
        """`class X(NamedTuple)` as typing reads it: fields from the annotations in order,
        defaults from the class attributes, the class's own methods and docstring kept."""

        def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, Any]) -> type:
            if not bases:
                return super().__new__(mcs, name, bases, ns)
            names = tuple(ns.get("__annotations__", {}))
            made = _tuple_type(name, names, {n: ns[n] for n in names if n in ns},
                               ns["__module__"])
            made.__annotations__ = ns.get("__annotations__", {})
            for key, value in ns.items():
                if key not in names and key not in _TUPLE_OWN:
                    setattr(made, key, value)
            return made

    _TUPLE_OWN = frozenset({"__annotations__", "__module__", "__qualname__", "__slots__",
                            "__dict__", "__weakref__"})
    NamedTuple = _NamedTupleMeta("NamedTuple", (), {})

    def _tuple_type(name: str, names: tuple[str, ...], defaults: dict[str, Any],
                    module: str) -> type:
        """What collections.namedtuple makes, but its __new__ is compiled (as namedtuple does
        for every class, a third of a millisecond each) only once COMPILE_AFTER instances
        have been made through a generic one, as @frozen records do with __init__."""
        shown = ", ".join(f"{n}=%r" for n in names)
        ns: dict[str, Any] = {
            "__slots__": (), "__doc__": f"{name}({', '.join(names)})", "__module__": module,
            "_fields": names, "_field_defaults": defaults, "__match_args__": names,
            "__new__": _first_new(names, defaults),
            "_make": classmethod(_make), "_replace": _replace, "_asdict": _asdict,
            "__getnewargs__": lambda self: tuple(self),
            "__repr__": lambda self: f"{self.__class__.__name__}({shown % tuple(self)})"}
        for i, n in enumerate(names):
            ns[n] = _field_getter(i, f"Alias for field number {i}")
        return type(name, (tuple,), ns)

    try:  # the C descriptor namedtuple's fields use; a property where it is missing
        from _collections import _tuplegetter as _field_getter
    except ImportError:  # pragma: no cover
        def _field_getter(index: int, doc: str) -> Any:
            return property(itemgetter(index), doc=doc)

    def _first_new(names: tuple[str, ...], defaults: dict[str, Any]) -> Any:
        made = 0

        def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
            nonlocal made
            made += 1
            if made >= COMPILE_AFTER:
                params = ", ".join(f"{n}=_d[{n!r}]" if n in defaults else n for n in names)
                compiled = eval(f"lambda _cls, {params}: _new(_cls, ({', '.join(names)},))",
                                {"_d": defaults, "_new": tuple.__new__})
                type.__setattr__(cls, "__new__", staticmethod(compiled))
                return compiled(cls, *args, **kwargs)
            if len(args) > len(names):
                raise TypeError(f"__new__() takes {len(names) + 1} positional arguments but "
                                f"{len(args) + 1} were given")
            values = list(args)
            for n in names[len(args):]:
                if n in kwargs:
                    values.append(kwargs.pop(n))
                elif n in defaults:
                    values.append(defaults[n])
                else:
                    raise TypeError(f"__new__() missing 1 required positional argument: {n!r}")
            for n in kwargs:
                why = "multiple values for" if n in names else "an unexpected keyword"
                raise TypeError(f"__new__() got {why} argument {n!r}")
            return tuple.__new__(cls, values)
        return staticmethod(__new__)

    def _make(cls: type, iterable: Any) -> Any:
        made = tuple.__new__(cls, iterable)
        if len(made) != len(cls._fields):  # type: ignore[attr-defined]
            raise TypeError(f"Expected {len(cls._fields)} arguments, got {len(made)}")  # type: ignore[attr-defined]
        return made

    def _replace(self: Any, /, **changes: Any) -> Any:
        made = self._make(map(changes.pop, self._fields, self))
        if changes:
            raise ValueError(f"Got unexpected field names: {list(changes)!r}")
        return made

    def _asdict(self: Any) -> dict[str, Any]:
        return dict(zip(self._fields, self, strict=True))


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a frozen record."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Field:
    __slots__ = ("default", "default_factory", "name", "type")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot give both default and default_factory")
        self.name = ""
        self.type: Any = None
        self.default = default
        self.default_factory = default_factory

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, type={self.type!r}, default={self.default!r})"


def field(*, default: Any = MISSING, default_factory: Callable[[], Any] | Any = MISSING) -> Any:
    """A field's default, or a factory called for each new instance (lists, dicts)."""
    return Field(default, default_factory)


_CLASSVAR = ("ClassVar", "typing.ClassVar")


def _is_classvar(annotation: object) -> bool:
    if isinstance(annotation, str):  # `from __future__ import annotations` keeps them as text
        return annotation.startswith(_CLASSVAR)
    return getattr(annotation, "__origin__", None) is not None and \
        repr(annotation).startswith("typing.ClassVar")


def _collect(cls: type) -> tuple[Field, ...]:
    found: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for inherited in base.__dict__.get("__record_fields__", ()):
            found[inherited.name] = inherited
    # the class's own annotations only (inspect.get_annotations would import inspect)
    own = cls.__dict__
    for name, annotation in own.get("__annotations__", {}).items():
        if annotation.__class__ is str:  # `from __future__ import annotations`: the common case
            if annotation.startswith(_CLASSVAR):
                continue
        elif _is_classvar(annotation):
            continue
        value = own.get(name, MISSING)
        if value.__class__ is Field:  # the class attribute is the default, as in dataclasses
            made = value
            if made.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, made.default)
        else:
            made = Field(value)
        made.name = name
        made.type = annotation
        found[name] = made
    seen_default = False
    for f in found.values():
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        if seen_default and not has_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")
        seen_default = seen_default or has_default
    return tuple(found.values())


def _init_source(fields_: tuple[Field, ...], post_init: bool) -> tuple[str, dict[str, Any]]:
    params, body, names = ["self"], ["    d = self.__dict__"], {"MISSING": MISSING}
    for f in fields_:
        if f.default_factory is not MISSING:
            names[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=MISSING")
            body.append(f"    d[{f.name!r}] = _factory_{f.name}() if {f.name} is MISSING "
                        f"else {f.name}")
            continue
        if f.default is not MISSING:
            names[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        else:
            params.append(f.name)
        body.append(f"    d[{f.name!r}] = {f.name}")
    if post_init:
        body.append("    self.__post_init__()")
    return f"def __init__({', '.join(params)}):\n" + "\n".join(body) + "\n", names


# Instances a class makes through the generic __init__ before it compiles its own: a compile
# costs about as much as 50 generic fills (callgrind: at 16 the headline command compiled six
# records it then made fewer than 48 times, 5.6M of its 156M instructions), while a search
# makes the same records thousands of times, where the compiled one is about twice as fast.
COMPILE_AFTER = 48


def _first_init(cls: type) -> Callable[..., None]:
    """The `__init__` a record starts with: it fills the fields generically, and on its
    COMPILE_AFTER-th call compiles the class's own and puts it in its place."""
    made = 0
    by_name: _ByName | None = None

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal made, by_name
        made += 1
        fields_ = cls.__record_fields__  # type: ignore[attr-defined]
        if made < COMPILE_AFTER:
            if args:
                _fill(self, fields_, args, kwargs)
            else:
                by_name = by_name or _ByName(fields_)
                by_name.fill(self, kwargs)
            if hasattr(cls, "__post_init__"):
                self.__post_init__()
            return
        source, namespace = _init_source(fields_, hasattr(cls, "__post_init__"))
        exec(source, namespace)  # the source is built from the class's own field names
        init = namespace["__init__"]
        init.__qualname__ = f"{cls.__qualname__}.__init__"
        type.__setattr__(cls, "__init__", init)
        init(self, *args, **kwargs)
    return __init__


class _ByName:
    """A record's fields as a generic fill by keyword needs them: a call by keyword (nearly all
    of them) is a few dict and set operations instead of a loop over the fields."""

    def __init__(self, fields_: tuple[Field, ...]) -> None:
        self.order = {f.name: f.default for f in fields_}  # MISSING where none or a factory
        self.names = frozenset(self.order)
        self.required = frozenset(f.name for f in fields_ if f.default is MISSING
                                  and f.default_factory is MISSING)
        self.factories = tuple((f.name, f.default_factory) for f in fields_
                               if f.default_factory is not MISSING)
        self.fields = fields_

    def fill(self, obj: Any, kwargs: dict[str, Any]) -> None:
        if not self.required <= kwargs.keys() or not kwargs.keys() <= self.names:
            _fill(obj, self.fields, (), kwargs)  # raises the TypeError the compiled one would
            return
        d = obj.__dict__
        d.update(self.order)  # the fields in their order, then the values given
        d.update(kwargs)
        for name, factory in self.factories:
            if name not in kwargs:
                d[name] = factory()


def _fill(obj: Any, fields_: tuple[Field, ...], args: tuple[Any, ...],
          kwargs: dict[str, Any]) -> None:
    """What the compiled __init__ does, field by field, with the same TypeErrors."""
    if len(args) > len(fields_):
        raise TypeError(f"__init__() takes {len(fields_) + 1} positional arguments but "
                        f"{len(args) + 1} were given")
    d = obj.__dict__
    for f, value in zip(fields_, args, strict=False):  # fewer args: the rest by name
        if f.name in kwargs:
            raise TypeError(f"__init__() got multiple values for argument {f.name!r}")
        d[f.name] = value
    for f in fields_[len(args):]:
        value = kwargs.pop(f.name, MISSING)
        if value is MISSING:
            if f.default_factory is not MISSING:
                value = f.default_factory()
            elif f.default is not MISSING:
                value = f.default
            else:
                raise TypeError(f"__init__() missing 1 required positional argument: {f.name!r}")
        d[f.name] = value
    if kwargs:
        raise TypeError(f"__init__() got an unexpected keyword argument {next(iter(kwargs))!r}")


def _repr(self: Any) -> str:
    shown = ", ".join(f"{f.name}={self.__dict__[f.name]!r}" for f in self.__record_fields__)
    return f"{type(self).__qualname__}({shown})"


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return self.__record_values__(self) == other.__record_values__(other)


def _hash(self: Any) -> int:
    return hash(self.__record_values__(self))


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _compare(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Any]:
    def compare(self: Any, other: Any) -> Any:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return op(self.__record_values__(self), other.__record_values__(other))
    return compare


def _values_getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if len(names) == 1:  # attrgetter of one name returns the value, not a 1-tuple
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    if not names:
        return lambda obj: ()
    return attrgetter(*names)


def _process(cls: type[T], eq: bool, order: bool) -> type[T]:
    fields_ = _collect(cls)
    names = tuple(f.name for f in fields_)
    own = cls.__dict__
    methods: dict[str, Any] = {
        "__record_fields__": fields_,
        "__record_values__": staticmethod(_values_getter(names)),
        "__init__": _first_init(cls),
        "__match_args__": names,
    }
    if "__repr__" not in own:
        methods["__repr__"] = _repr
    if eq and "__eq__" not in own:
        methods["__eq__"] = _eq
    # a class that defines __eq__ gets __hash__ = None from Python itself: not its own choice
    explicit_hash = "__hash__" in own and not (own["__hash__"] is None and "__eq__" in own)
    if eq and not explicit_hash:
        methods["__hash__"] = _hash  # as dataclasses: frozen and compared by value
    if order:
        from operator import ge, gt, le, lt
        for name, op in (("__lt__", lt), ("__le__", le), ("__gt__", gt), ("__ge__", ge)):
            methods[name] = _compare(op)
    methods["__setattr__"] = _frozen_setattr
    methods["__delattr__"] = _frozen_delattr
    for name, value in methods.items():
        setattr(cls, name, value)
    return cls


if TYPE_CHECKING:
    @overload
    def frozen(cls: type[T], /) -> type[T]: ...

    @overload
    def frozen(*, eq: bool = True, order: bool = False) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(frozen_default=True, eq_default=True, field_specifiers=(field, Field))
def frozen(cls: type[T] | None = None, /, *, eq: bool = True, order: bool = False) -> Any:
    """Make `cls` a frozen record, compared and hashed by its fields (`eq=False`: by identity)."""
    if cls is None:
        return lambda c: _process(c, eq, order)
    return _process(cls, eq, order)


def is_frozen_record(obj: object) -> bool:
    return hasattr(obj, "__record_fields__")


def fields(obj: Any) -> tuple[Field, ...]:
    """The fields of a record (instance or class), in order."""
    try:
        return obj.__record_fields__
    except AttributeError:
        raise TypeError(f"{obj!r} is not a record") from None


def field_names(obj: Any) -> frozenset[str]:
    """The names of a record's fields (instance or class)."""
    return frozenset(f.name for f in fields(obj))


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of the record `obj` with the named fields changed."""
    for f in fields(obj):
        if f.name not in changes:
            changes[f.name] = obj.__dict__[f.name]
    return obj.__class__(**changes)


def asdict(obj: Any) -> Any:
    """A record as nested plain dicts, lists and tuples (records inside converted too)."""
    if is_frozen_record(obj) and not isinstance(obj, type):
        return {f.name: asdict(obj.__dict__[f.name]) for f in obj.__record_fields__}
    if isinstance(obj, dict):
        return {asdict(k): asdict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [asdict(v) for v in obj]
    if isinstance(obj, tuple):
        return type(obj)(*(asdict(v) for v in obj)) if hasattr(obj, "_fields") \
            else tuple(asdict(v) for v in obj)
    return obj
