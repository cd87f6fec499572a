"""Tests for actorflow.serialization: tagged JSON, flow references and stored errors."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import functools
import json
import math
import pathlib
import pickle
import threading
import uuid
from typing import Any

import pytest

from actorflow.errors import FlowNotFound, SerializationError
from actorflow.serialization import (
    BY_VALUE,
    ErrorInfo,
    JSONSerializer,
    Serializer,
    describe_unserializable,
    dump_error,
    error_info,
    flow_reference,
    load_error,
    load_flow,
)

S = JSONSerializer()


def roundtrip(value: Any) -> Any:
    text = S.dumps(value)
    assert isinstance(text, str)
    json.loads(text)  # always valid JSON
    return S.loads(text)


# --- module-level types used by the tests ---------------------------------------------


class Color(enum.Enum):
    RED = 1
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Perm(enum.Flag):
    R = 4
    W = 2


@dataclasses.dataclass
class Point:
    x: Any
    y: Any = None


@dataclasses.dataclass(frozen=True)
class Frozen:
    name: str
    tags: tuple[str, ...]
    size: int = dataclasses.field(init=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", len(self.tags))


@dataclasses.dataclass
class WithInitVar:
    a: int
    scale: dataclasses.InitVar[int]

    def __post_init__(self, scale: int) -> None:
        self.a *= scale


class Plain:
    """An ordinary class instance: needs the pickle fallback."""

    def __init__(self, v: Any) -> None:
        self.v = v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plain) and other.v == self.v


class Holder:
    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)


class BoomError(Exception):
    pass


class TwoArgError(Exception):
    """Pickles, but cannot be unpickled: __init__ needs two arguments."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")


def module_flow(x: int) -> int:
    return x + 1


class FlowWrapper:
    """Something like a @flow decorator's result: a callable object wrapping a function."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.__module__ = fn.__module__
        self.__qualname__ = fn.__qualname__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


@FlowWrapper
def wrapped_flow(x: int) -> int:
    return x * 2


def _decorator(fn: Any) -> Any:
    @functools.wraps(fn)
    def inner(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return inner


@_decorator
def functools_wrapped_flow(x: int) -> int:
    return x - 1


lambda_flow = lambda x: x * 3  # noqa: E731


# --- plain JSON ---------------------------------------------------------------------


def test_plain_values_are_stored_as_plain_json() -> None:
    value = {"a": [1, 2.5, None, True, "x"], "ü": {"nested": []}}
    text = S.dumps(value)
    assert text == '{"a":[1,2.5,null,true,"x"],"ü":{"nested":[]}}'
    assert S.loads(text) == value
    assert S.dumps([1, "two"]) == '[1,"two"]'
    assert S.dumps("héllo") == '"héllo"'
    assert S.dumps(None) == "null"


def test_serializer_protocol_and_name() -> None:
    assert S.name == "json"
    assert isinstance(S, Serializer)


@pytest.mark.parametrize(
    "value",
    [None, True, False, 0, -7, 2**64 + 1, -(2**70), 1.5, -0.0, "", "text", [], {}],
)
def test_plain_scalars_round_trip(value: Any) -> None:
    out = roundtrip(value)
    assert out == value
    assert type(out) is type(value)


def test_big_ints_are_plain_json_and_huge_ints_round_trip() -> None:
    assert S.dumps(2**100) == str(2**100)
    huge = 7**20000  # too long for int->str conversion
    assert roundtrip(huge) == huge
    assert roundtrip(-huge) == -huge


def test_bytes_loads_accepts_utf8_bytes() -> None:
    assert S.loads('{"é":[1]}'.encode()) == {"é": [1]}


# --- tagged values ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        (),
        {1, 2, 3},
        frozenset({"a", "b"}),
        b"\x00\xffbytes",
        dt.date(2024, 2, 29),
        dt.time(12, 30, 1, 5),
        dt.time(1, 2, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
        dt.timedelta(days=-3, seconds=5, microseconds=7),
        decimal.Decimal("1.10"),
        decimal.Decimal("-0"),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        pathlib.PurePosixPath("/a/b"),
        pathlib.PureWindowsPath("C:/x/y"),
        pathlib.Path("/tmp/some where"),
        Color.RED,
        Color.GREEN,
        Level.HIGH,
        Point(1, [2, (3, 4)]),
        {1: "a", 2: "b"},
        {(1, 2): "tuple key", None: 0},
        bytearray(b"xyz"),
        Plain(3),
    ],
)
def test_tagged_values_round_trip(value: Any) -> None:
    out = roundtrip(value)
    assert out == value
    assert type(out) is type(value)


def test_tag_shapes_are_readable() -> None:
    assert S.dumps((1, 2)) == '{"$tuple":[1,2]}'
    assert S.dumps(b"hi") == '{"$bytes":"aGk="}'
    assert S.dumps(decimal.Decimal("1.10")) == '{"$decimal":"1.10"}'
    assert S.dumps(dt.timedelta(1, 2, 3)) == '{"$timedelta":[1,2,3]}'
    assert S.dumps(pathlib.PurePosixPath("/a")) == '{"$path":["PurePosixPath","/a"]}'
    assert S.dumps(Color.RED) == f'{{"$enum":["{__name__}:Color","RED"]}}'
    assert S.dumps(Point(1, 2)) == f'{{"$dataclass":["{__name__}:Point",{{"x":1,"y":2}}]}}'
    assert S.dumps({1: 2}) == '{"$dict":[[1,2]]}'
    assert S.dumps(Plain(1)).startswith('{"$pickle":"')


def test_tuple_and_list_stay_distinct_when_nested() -> None:
    value = [(1, [2, (3,)]), {"k": ((), [])}, Point(x=(1, 2), y=[(3, {4})])]
    out = roundtrip(value)
    assert out == value
    assert type(out[0]) is tuple and type(out[0][1]) is list and type(out[0][1][1]) is tuple
    assert type(out[1]["k"]) is tuple and type(out[1]["k"][1]) is list
    assert type(out[2].x) is tuple and type(out[2].y[0]) is tuple
    assert type(out[2].y[0][1]) is set


def test_deep_mixed_nesting_round_trips() -> None:
    value = {
        "when": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "items": [Point(1, {"p": pathlib.Path("/x")}), Frozen("f", ("a", "b"))],
        "ids": frozenset({uuid.UUID(int=5)}),
        5: [Color.GREEN, {b"k": decimal.Decimal("2.5")}],
    }
    assert roundtrip(value) == value


def test_dicts_that_look_like_tags_are_escaped() -> None:
    values: list[dict[str, Any]] = [
        {"$tuple": [1, 2]},
        {"$pickle": "AAAA"},
        {"$": 1},
        {"$unknown": {"$set": []}},
    ]
    for value in values:
        text = S.dumps(value)
        assert json.loads(text) != value  # not written as-is
        out = S.loads(text)
        assert out == value and type(out) is dict
    # several keys cannot be a tag, so they stay plain
    assert S.dumps({"$a": 1, "b": 2}) == '{"$a":1,"b":2}'
    assert S.loads('{"$a":1,"b":2}') == {"$a": 1, "b": 2}
    nested = [{"$tuple": (1,)}]
    assert roundtrip(nested) == nested


def test_non_finite_floats() -> None:
    assert S.dumps(math.inf) == '{"$float":"inf"}'
    assert S.dumps([-math.inf]) == '[{"$float":"-inf"}]'
    out = roundtrip({"x": math.nan})
    assert math.isnan(out["x"])
    assert roundtrip(math.inf) == math.inf and roundtrip(-math.inf) == -math.inf


def test_datetimes_keep_their_timezone() -> None:
    naive = dt.datetime(2024, 5, 1, 12, 0, 0, 123456)
    aware_utc = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    aware_offset = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-7)))
    assert roundtrip(naive).tzinfo is None
    assert roundtrip(naive) == naive
    out = roundtrip(aware_utc)
    assert out == aware_utc and out.utcoffset() == dt.timedelta(0)
    out = roundtrip(aware_offset)
    assert out == aware_offset and out.utcoffset() == dt.timedelta(hours=-7)
    assert S.dumps(aware_utc) == '{"$datetime":"2024-05-01T12:00:00+00:00"}'


def test_zoneinfo_datetime_round_trips_with_its_zone() -> None:
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        zone = zoneinfo.ZoneInfo("Europe/Paris")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no tz database")
    value = dt.datetime(2024, 7, 1, 9, tzinfo=zone)
    out = roundtrip(value)
    assert out == value and out.tzinfo == zone


def test_frozen_dataclass_with_init_false_field() -> None:
    value = Frozen("n", ("a", "b", "c"))
    object.__setattr__(value, "size", 99)  # the stored value wins over __post_init__
    out = roundtrip(value)
    assert out.name == "n" and out.tags == ("a", "b", "c") and out.size == 99
    assert '"size":99' in S.dumps(value)


def test_dataclass_with_initvar_falls_back_to_pickle() -> None:
    value = WithInitVar(2, 5)
    assert '"$pickle"' in S.dumps(value)
    assert roundtrip(value) == value


def test_flag_combination_round_trips() -> None:
    assert roundtrip(Perm.R | Perm.W) == Perm.R | Perm.W
    assert roundtrip(Perm.R) is Perm.R


def test_local_enum_and_dataclass_fall_back_to_pickle() -> None:
    @dataclasses.dataclass
    class LocalPoint:
        x: int

    class LocalEnum(enum.Enum):
        A = 1

    for value in (LocalPoint(1), LocalEnum.A):
        text = S.dumps(value)
        assert json.loads(text).keys() == {"$pickle"}
        out = S.loads(text)
        assert type(out).__qualname__ == type(value).__qualname__


def test_pickle_fallback_for_objects_and_functions() -> None:
    out = roundtrip([Plain({"deep": (1, 2)}), module_flow, ValueError("x")])
    assert out[0] == Plain({"deep": (1, 2)})
    assert out[1] is module_flow
    assert isinstance(out[2], ValueError) and out[2].args == ("x",)
    doubled = roundtrip(lambda v: v * 2)
    assert doubled(4) == 8


def test_self_referencing_list_is_pickled() -> None:
    value: list[Any] = [1]
    value.append(value)
    out = roundtrip({"loop": value})
    assert out["loop"][0] == 1 and out["loop"][1] is out["loop"]


def test_shared_subvalues_are_not_a_cycle() -> None:
    shared = [1, 2]
    value = [shared, shared, (shared,)]
    assert S.dumps(value) == '[[1,2],[1,2],{"$tuple":[[1,2]]}]'


def test_string_with_lone_surrogate_round_trips() -> None:
    value = {"s": "a\udc80b", "\udc81": 1}
    text = S.dumps(value)
    text.encode("utf-8")  # storable in SQLite
    assert S.loads(text) == value


# --- unserializable values ----------------------------------------------------------


def test_unserializable_value_names_type_and_path() -> None:
    lock = threading.Lock()
    with pytest.raises(SerializationError) as info:
        S.dumps([1, 2, {"conn": lock}])
    message = str(info.value)
    assert "[2]['conn']" in message
    assert "'lock'" in message
    assert "pass a plain value, or make the object picklable" in message
    assert info.value.__cause__ is not None


def test_unserializable_value_inside_an_object_is_located() -> None:
    with pytest.raises(SerializationError) as info:
        S.dumps({"h": Holder(ok=1, inner=Holder(lock=threading.Lock()))})
    assert "['h'].inner.lock" in str(info.value)
    assert "'lock'" in str(info.value)


@pytest.mark.parametrize("make", [lambda: (x for x in range(3)), threading.RLock])
def test_other_unserializable_values(make: Any) -> None:
    value = make()
    with pytest.raises(SerializationError) as info:
        S.dumps((value,))
    assert "at [0]:" in str(info.value)
    assert repr(type(value).__name__) in str(info.value)


def test_open_file_is_unserializable(tmp_path: pathlib.Path) -> None:
    with open(tmp_path / "f.txt", "w", encoding="utf-8") as handle:
        with pytest.raises(SerializationError, match=r"at \['file'\]: object of type 'TextIOWrapper'"):
            S.dumps({"file": handle})


def test_unserializable_at_top_level_and_in_dataclass() -> None:
    with pytest.raises(SerializationError, match="cannot serialize value: object of type 'lock'"):
        S.dumps(threading.Lock())
    with pytest.raises(SerializationError, match=r"at \.y\[1\]"):
        S.dumps(Point(1, [0, threading.Lock()]))


def test_describe_unserializable_names_the_argument() -> None:
    lock = threading.Lock()
    error = describe_unserializable(
        S, [("args[0]", 1), ("args[1]", [1, 2]), ("kwargs['conn']", {"c": lock})]
    )
    assert isinstance(error, SerializationError)
    assert error.argument == "kwargs['conn']"
    message = str(error)
    assert message.startswith("argument kwargs['conn'] cannot be serialized")
    assert "kwargs['conn']['c']" in message and "'lock'" in message
    assert describe_unserializable(S, [("args[0]", 1), ("kwargs['x']", (2,))]) is None
    assert describe_unserializable(S, []) is None


def test_describe_unserializable_with_a_custom_serializer() -> None:
    class Picky:
        name = "picky"

        def dumps(self, value: Any) -> str:
            if isinstance(value, float):
                raise ValueError("no floats")
            return repr(value)

        def loads(self, data: str | bytes) -> Any:
            return data

    error = describe_unserializable(Picky(), [("args[0]", 1), ("args[1]", 1.5)])
    assert error is not None and error.argument == "args[1]"
    assert "argument args[1] cannot be serialized: ValueError: no floats" == str(error)


# --- malformed input ----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        "not json",
        "",
        b"\xff\xfe",
        '{"$nope":1}',
        '{"$bytes":"!!not base64!!"}',
        '{"$bytes":5}',
        '{"$tuple":5}',
        '{"$pickle":"AAAA"}',
        '{"$pickle":"bm90IGEgcGlja2xl"}',
        '{"$enum":["no_such_module_xyz:Color","RED"]}',
        f'{{"$enum":["{__name__}:Color","PURPLE"]}}',
        f'{{"$enum":["{__name__}:NoSuchClass","RED"]}}',
        '{"$enum":"nocolon"}',
        '{"$dataclass":["no_such_module_xyz:P",{}]}',
        f'{{"$dataclass":["{__name__}:Point",{{"x":1,"zzz":2}}]}}',
        f'{{"$dataclass":["{__name__}:Point",{{}}]}}',
        f'{{"$dataclass":["{__name__}:Color",{{}}]}}',
        '{"$dict":[[[1],2]]}',
        '{"$dict":[1]}',
        '{"$datetime":"yesterday"}',
        '{"$timedelta":[1,2]}',
        '{"$decimal":"abc"}',
        '{"$uuid":"xyz"}',
        '{"$float":"big"}',
        '{"$path":["NoPath","/x"]}',
        '[1, {"$set":[[1]]}]',
    ],
)
def test_malformed_data_raises_serialization_error(data: str | bytes) -> None:
    with pytest.raises(SerializationError, match="cannot deserialize stored value"):
        S.loads(data)


def test_malformed_messages_are_clear() -> None:
    with pytest.raises(SerializationError, match="unknown tag '\\$nope'"):
        S.loads('{"$nope":1}')
    with pytest.raises(SerializationError, match="no_such_module_xyz:Color.*importable"):
        S.loads('{"$enum":["no_such_module_xyz:Color","RED"]}')


# --- flows --------------------------------------------------------------------------


def test_flow_reference_for_module_level_function() -> None:
    ref, blob = flow_reference(module_flow)
    assert (ref, blob) == (f"{__name__}:module_flow", None)
    assert load_flow(ref, None) is module_flow


def test_flow_reference_for_wrappers() -> None:
    assert flow_reference(wrapped_flow) == (f"{__name__}:wrapped_flow", None)
    # the bare function inside the wrapper is found through the module attribute
    assert flow_reference(wrapped_flow.fn) == (f"{__name__}:wrapped_flow", None)
    assert load_flow(f"{__name__}:wrapped_flow", None) is wrapped_flow
    assert flow_reference(functools_wrapped_flow) == (f"{__name__}:functools_wrapped_flow", None)
    ref, _ = flow_reference(functools_wrapped_flow.__wrapped__)
    assert ref == f"{__name__}:functools_wrapped_flow"


def test_flow_reference_for_methods() -> None:
    ref, blob = flow_reference(FlowWrapper.__call__)
    assert (ref, blob) == (f"{__name__}:FlowWrapper.__call__", None)
    assert load_flow(ref, None) is FlowWrapper.__call__


def test_flow_reference_for_lambda_and_closure_is_by_value() -> None:
    for fn in (lambda_flow, lambda x: x * 3):
        ref, blob = flow_reference(fn)
        assert ref == BY_VALUE == "<by-value>" and isinstance(blob, bytes)
        assert load_flow(ref, blob)(2) == 6

    offset = 10

    def closure(x: int) -> int:
        return x + offset

    ref, blob = flow_reference(closure)
    assert ref == BY_VALUE and blob is not None
    assert load_flow(ref, blob)(1) == 11


def test_flow_reference_unpicklable_closure_raises() -> None:
    lock = threading.Lock()

    def holds_lock() -> bool:
        return lock.locked()

    with pytest.raises(SerializationError, match="holds_lock"):
        flow_reference(holds_lock)


def test_flow_reference_when_module_attribute_is_something_else() -> None:
    def impostor(x: int) -> int:
        return x

    impostor.__qualname__ = "module_flow"  # the name exists but is another function
    ref, blob = flow_reference(impostor)
    assert ref == BY_VALUE and blob is not None


@pytest.mark.parametrize(
    "ref",
    [
        "no_such_module_xyz:flow",
        f"{__name__}:no_such_function",
        f"{__name__}:FlowWrapper.missing",
        "missing_colon",
        f"{__name__}:BY_VALUE",
    ],
)
def test_load_flow_failures_raise_flow_not_found(ref: str) -> None:
    with pytest.raises(FlowNotFound) as info:
        load_flow(ref, None)
    assert repr(ref) in str(info.value)


def test_load_flow_unknown_module_message() -> None:
    with pytest.raises(FlowNotFound, match="must be importable by the process that opens"):
        load_flow("no_such_module_xyz:flow", None)


def test_load_flow_bad_blob() -> None:
    with pytest.raises(FlowNotFound):
        load_flow(BY_VALUE, b"garbage")


# --- errors -------------------------------------------------------------------------


def _raise(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001
        return caught


def test_error_info_for_builtin_and_custom_exceptions() -> None:
    info = error_info(_raise(ValueError("boom")))
    assert info == ErrorInfo(type="ValueError", message="boom", traceback=info.traceback)
    assert str(info) == "ValueError: boom"
    assert "_raise" in info.traceback and "ValueError: boom" in info.traceback
    custom = error_info(BoomError())
    assert custom.type == f"{__name__}.BoomError"
    assert str(custom) == f"{__name__}.BoomError"


def test_error_round_trip_with_custom_exception() -> None:
    exc = _raise(BoomError("it broke", 42))
    text = dump_error(exc)
    data = json.loads(text)
    assert set(data) == {"type", "message", "traceback", "pickle"}
    assert isinstance(data["pickle"], str)
    info, rebuilt = load_error(text)
    assert info.type == f"{__name__}.BoomError"
    assert info.message == "('it broke', 42)"
    assert "raise exc" in info.traceback
    assert isinstance(rebuilt, BoomError) and rebuilt.args == ("it broke", 42)


def test_error_round_trip_with_unpicklable_exception() -> None:
    exc = ValueError("holds a lock")
    exc.lock = threading.Lock()  # type: ignore[attr-defined]
    text = dump_error(_raise(exc))
    assert json.loads(text)["pickle"] is None
    info, rebuilt = load_error(text)
    assert str(info) == "ValueError: holds a lock"
    assert rebuilt is None


def test_error_that_pickles_but_cannot_unpickle() -> None:
    text = dump_error(_raise(TwoArgError("a", "b")))
    info, rebuilt = load_error(text)
    assert info.message == "a/b" and rebuilt is None


def test_dump_error_survives_a_broken_str() -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    info, _ = load_error(dump_error(Weird()))
    assert info.type.endswith("Weird") and "unprintable" in info.message


def test_load_error_ignores_undecodable_pickle() -> None:
    text = json.dumps({"type": "X", "message": "m", "traceback": "t", "pickle": "AAAA"})
    assert load_error(text) == (ErrorInfo("X", "m", "t"), None)
    text = json.dumps({"type": "X", "message": "m", "traceback": "t", "pickle": "@@"})
    assert load_error(text)[1] is None
    blob = pickle.dumps(["not an exception"])
    import base64

    text = json.dumps(
        {"type": "X", "message": "m", "traceback": "t", "pickle": base64.b64encode(blob).decode()}
    )
    assert load_error(text)[1] is None


@pytest.mark.parametrize(
    "text",
    ["nope", "[]", '{"type":"X","message":"m"}', '{"type":1,"message":"m","traceback":"t"}'],
)
def test_load_error_malformed(text: str) -> None:
    with pytest.raises(SerializationError, match="cannot read stored error"):
        load_error(text)
