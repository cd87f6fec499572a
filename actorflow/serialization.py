"""Turning values, flows and exceptions into text the journal can store, and back.

The journal is an SQLite file that a person may open in the ``sqlite3`` shell, so the
default :class:`JSONSerializer` writes *tagged JSON*: plain JSON values (``None``,
booleans, ints, floats, strings, lists and dicts with string keys) are written as
themselves, and every other supported value is written as a dict with a single key
that starts with ``"$"`` -- for example ``{"$tuple":[1,2]}`` or
``{"$datetime":"2024-05-01T12:00:00+00:00"}``. Values that have no readable form
fall back to :mod:`cloudpickle`, stored as ``{"$pickle":"<base64>"}``.

The module also stores *flows* (the functions a run executes) either by reference
(``"module:qualname"``) or by value (a cloudpickle blob), and records exceptions as
an :class:`ErrorInfo` plus, when possible, a pickle of the exception itself.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as _dt
import decimal
import enum
import hashlib
import importlib
import inspect
import json
import linecache
import math
import os
import pathlib
import pickle
import sys
import threading
import traceback as _traceback
import types
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

import cloudpickle  # type: ignore[import-untyped]  # cloudpickle ships no type hints

from actorflow.errors import FlowNotFound, SerializationError

__all__ = [
    "BY_VALUE",
    "ErrorInfo",
    "JSONSerializer",
    "Opaque",
    "Serializer",
    "Unverified",
    "describe_unserializable",
    "dump_error",
    "error_info",
    "flow_reference",
    "load_error",
    "load_flow",
    "loads_unverified",
]

#: The reference :func:`flow_reference` returns for a flow stored by value.
BY_VALUE = "<by-value>"

_ADVICE = "pass a plain value, or make the object picklable"

# Ints wider than this are written as {"$int": "<hex>"}: Python refuses to convert very
# long ints to decimal text (sys.set_int_max_str_digits, at least 640 digits).
_MAX_PLAIN_INT_BITS = 2000

_PATH_CLASSES: dict[str, type[pathlib.PurePath]] = {
    cls.__name__: cls
    for cls in (
        pathlib.PurePosixPath,
        pathlib.PureWindowsPath,
        pathlib.PosixPath,
        pathlib.WindowsPath,
    )
}


@runtime_checkable
class Serializer(Protocol):
    """Pluggable value serializer (``Runtime(serializer=...)``).

    A serializer turns the arguments and return values of runs into text or bytes that
    the journal stores, and back. ``loads(dumps(value))`` must give back an equal value.

    Attributes:
        name: a short name recorded in the journal next to each value, so a journal is
            always read back with the serializer that wrote it.
    """

    name: str

    def dumps(self, value: Any) -> str | bytes:
        """Serialize ``value``.

        Args:
            value: the value to store.

        Returns:
            The serialized form.

        Raises:
            SerializationError: if the value cannot be serialized.
        """
        ...

    def loads(self, data: str | bytes) -> Any:
        """Rebuild a value from what :meth:`dumps` returned.

        Args:
            data: the serialized form.

        Returns:
            The rebuilt value.

        Raises:
            SerializationError: if the data cannot be decoded.
        """
        ...


# ---------------------------------------------------------------------------------------
# Helpers shared by encoding and decoding
# ---------------------------------------------------------------------------------------


def _type_name(obj: Any) -> str:
    """Return the short name of ``obj``'s type, as Python's own messages spell it."""
    return type(obj).__name__


def _short_repr(obj: Any, limit: int = 60) -> str:
    """Return ``repr(obj)`` cut to ``limit`` characters, never raising."""
    try:
        text = repr(obj)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        text = f"<{_type_name(obj)} object>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _describe_exception(exc: BaseException) -> str:
    """Return ``"TypeError: message"`` for ``exc``, never raising."""
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the error
        message = "<unprintable message>"
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


def _is_utf8(text: str) -> bool:
    """Tell whether ``text`` can be encoded as UTF-8 (it has no lone surrogates)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _resolve(module: str, qualname: str) -> Any:
    """Import ``module`` and walk the dotted ``qualname`` inside it.

    Raises:
        ImportError: if the module cannot be imported.
        AttributeError: if a part of the qualname does not exist.
    """
    # import_module, not sys.modules.get: a module another thread is still importing is
    # in sys.modules half-initialized; import_module waits for it
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _class_reference(cls: type) -> str | None:
    """Return ``"module:qualname"`` for a class that another process can import.

    Returns:
        The reference, or None for classes defined in ``__main__`` or in a function
        body, and for classes that importing their reference does not give back.
    """
    module = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    if module == "__main__" or "<locals>" in qualname:
        return None
    try:
        found = _resolve(module, qualname)
    except Exception:  # noqa: BLE001 - anything that fails to import is "not importable"
        return None
    if found is not cls:
        return None
    return f"{module}:{qualname}"


def _split_reference(ref: str) -> tuple[str, str]:
    """Split ``"module:qualname"`` into its two parts.

    Raises:
        ValueError: if ``ref`` is not of that form.
    """
    module, sep, qualname = ref.partition(":")
    if not sep or not module or not qualname:
        raise ValueError(f"{ref!r} is not of the form 'module:qualname'")
    return module, qualname


# Whether calling a dataclass with its init fields as keywords rebuilds it; cached per
# class because inspect.signature is comparatively slow.
_DATACLASS_REBUILDABLE: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


def _dataclass_rebuildable(cls: type) -> bool:
    """Tell whether ``cls(**init_fields)`` accepts exactly the dataclass's init fields.

    It does not for classes with ``InitVar`` pseudo-fields or a hand-written
    ``__init__`` of another shape; those are pickled instead.
    """
    try:
        return _DATACLASS_REBUILDABLE[cls]
    except (KeyError, TypeError):
        pass
    result = False
    try:
        init_names = {f.name for f in dataclasses.fields(cls) if f.init}
        init = getattr(cls, "__init__")  # noqa: B009 - mypy objects to cls.__init__
        params = list(inspect.signature(init).parameters.values())[1:]
        result = all(
            p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params
        ) and {p.name for p in params} == init_names
    except Exception:  # noqa: BLE001 - an odd class is simply pickled
        result = False
    try:
        _DATACLASS_REBUILDABLE[cls] = result
    except TypeError:
        pass
    return result


# ---------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------


class _ValueSerializationError(SerializationError):
    """A value held an object that cannot be serialized; knows where and what it was.

    Attributes:
        path: where the object sits inside the value, e.g. ``"[2]['conn']"`` (empty for
            the value itself).
        type_name: the name of the offending object's type.
        detail: the pickling error, as ``"TypeError: message"``.
    """

    def __init__(self, path: str, type_name: str, detail: str) -> None:
        where = f" at {path}" if path else ""
        super().__init__(
            f"cannot serialize value{where}: object of type {type_name!r} cannot be "
            f"pickled ({detail}); {_ADVICE}"
        )
        self.path = path
        self.type_name = type_name
        self.detail = detail


class _Cycle(Exception):
    """Raised when encoding meets a container that is already being encoded."""

    def __init__(self, target: int) -> None:
        super().__init__(target)
        self.target = target


def _children(obj: Any, path: str) -> list[tuple[str, Any]]:
    """List the parts of ``obj`` worth trying when hunting an unpicklable object."""
    kind = type(obj)
    if isinstance(obj, (list, tuple)):
        return [(f"{path}[{i}]", item) for i, item in enumerate(obj)]
    if isinstance(obj, dict):
        pairs: list[tuple[str, Any]] = []
        for key, val in obj.items():
            pairs.append((f"{path}<key {_short_repr(key)}>", key))
            pairs.append((f"{path}[{_short_repr(key)}]", val))
        return pairs
    if isinstance(obj, (set, frozenset)):
        return [(f"{path}{{{_short_repr(item)}}}", item) for item in obj]
    if isinstance(obj, (type, types.ModuleType, types.FunctionType)):
        return []
    pairs = []
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            if hasattr(obj, f.name):
                pairs.append((f"{path}.{f.name}", getattr(obj, f.name)))
        return pairs
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, dict):
        pairs.extend((f"{path}.{name}", val) for name, val in attrs.items())
    for klass in kind.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        for name in slots:
            if isinstance(name, str) and name not in ("__dict__", "__weakref__"):
                if hasattr(obj, name):
                    pairs.append((f"{path}.{name}", getattr(obj, name)))
    return pairs


def _locate_unpicklable(
    obj: Any, path: str, error: BaseException
) -> tuple[str, Any, BaseException]:
    """Find the innermost part of ``obj`` that cannot be pickled.

    Args:
        obj: an object whose pickling failed.
        path: where ``obj`` sits in the value being serialized.
        error: the exception pickling ``obj`` raised.

    Returns:
        ``(path, object, error)`` for the deepest part found that fails to pickle on
        its own, or the arguments themselves when no single part is to blame.
    """
    budget = 2000
    for _depth in range(64):
        try:
            children = _children(obj, path)
        except Exception:  # noqa: BLE001 - best effort only
            break
        for child_path, child in children:
            budget -= 1
            if budget < 0:
                return path, obj, error
            try:
                cloudpickle.dumps(child)
            except Exception as child_error:  # noqa: BLE001 - pickling raises all sorts: this part is the culprit
                path, obj, error = child_path, child, child_error
                break
        else:
            break
    return path, obj, error


class _Encoder:
    """Turns one value into a JSON-compatible structure (one instance per ``dumps``)."""

    def __init__(self) -> None:
        self._active: set[int] = set()

    def encode(self, value: Any, path: str) -> Any:
        """Return the tagged-JSON structure for ``value`` found at ``path``."""
        kind = type(value)
        # Plain JSON values first: they are by far the most common.
        if value is None or kind is bool:
            return value
        if kind is int:
            if value.bit_length() > _MAX_PLAIN_INT_BITS:
                return {"$int": format(value, "x")}
            return value
        if kind is float:
            if math.isfinite(value):
                return value
            return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
        if kind is str:
            return value if _is_utf8(value) else self._pickle(value, path)
        if kind in (list, tuple, dict, set, frozenset):
            return self._container(value, path)
        if kind is bytes:
            return {"$bytes": base64.b64encode(value).decode("ascii")}
        if kind is _dt.datetime:
            if value.fold == 0 and (value.tzinfo is None or type(value.tzinfo) is _dt.timezone):
                return {"$datetime": value.isoformat()}
            return self._pickle(value, path)
        if kind is _dt.date:
            return {"$date": value.isoformat()}
        if kind is _dt.time:
            if value.fold == 0 and (value.tzinfo is None or type(value.tzinfo) is _dt.timezone):
                return {"$time": value.isoformat()}
            return self._pickle(value, path)
        if kind is _dt.timedelta:
            return {"$timedelta": [value.days, value.seconds, value.microseconds]}
        if kind is decimal.Decimal:
            return {"$decimal": str(value)}
        if kind is uuid.UUID:
            return {"$uuid": str(value)}
        if kind in _PATH_CLASSES.values():
            return {"$path": [kind.__name__, str(value)]}
        if isinstance(value, enum.Enum):
            return self._enum(value, path)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self._dataclass(value, path)
        if _is_pydantic_model(value):
            return self._model(value, path)
        return self._pickle(value, path)

    def _model(self, value: Any, path: str) -> Any:
        """Encode a pydantic model instance as JSON tagged with its class, or pickle it."""
        ref = _class_reference(type(value))
        if ref is None:
            return self._pickle(value, path)
        try:
            fields = value.model_dump(mode="json")
        except Exception:  # noqa: BLE001 - a model with a field JSON cannot hold is pickled
            return self._pickle(value, path)
        return {"$model": [ref, fields]}

    def _container(self, value: Any, path: str) -> Any:
        """Encode a list, tuple, dict, set or frozenset, pickling it if it is cyclic."""
        ident = id(value)
        if ident in self._active:
            raise _Cycle(ident)
        self._active.add(ident)
        try:
            return self._container_items(value, path)
        except _Cycle as cycle:
            if cycle.target != ident:
                raise
            return self._pickle(value, path)
        finally:
            self._active.discard(ident)

    def _container_items(self, value: Any, path: str) -> Any:
        """Encode the items of a container (see :meth:`_container`)."""
        kind = type(value)
        if kind is list:
            return [self.encode(item, f"{path}[{i}]") for i, item in enumerate(value)]
        if kind is tuple:
            return {"$tuple": [self.encode(item, f"{path}[{i}]") for i, item in enumerate(value)]}
        if kind is dict:
            plain_keys = all(type(k) is str and _is_utf8(k) for k in value)
            looks_like_tag = len(value) == 1 and str(next(iter(value))).startswith("$")
            if plain_keys and not looks_like_tag:
                return {k: self.encode(v, f"{path}[{k!r}]") for k, v in value.items()}
            return {
                "$dict": [
                    [
                        self.encode(k, f"{path}<key {_short_repr(k)}>"),
                        self.encode(v, f"{path}[{_short_repr(k)}]"),
                    ]
                    for k, v in value.items()
                ]
            }
        tag = "$set" if kind is set else "$frozenset"
        return {tag: [self.encode(item, f"{path}{{{_short_repr(item)}}}") for item in value]}

    def _enum(self, value: enum.Enum, path: str) -> Any:
        """Encode an enum member by class reference and member name, or pickle it."""
        cls = type(value)
        ref = _class_reference(cls)
        name = value.name
        if ref is None or not isinstance(name, str) or cls.__members__.get(name) is not value:
            return self._pickle(value, path)
        return {"$enum": [ref, name]}

    def _dataclass(self, value: Any, path: str) -> Any:
        """Encode a dataclass instance by class reference and fields, or pickle it."""
        cls = type(value)
        ref = _class_reference(cls)
        if ref is None or not _dataclass_rebuildable(cls):
            return self._pickle(value, path)
        fields = dataclasses.fields(value)
        names = {f.name for f in fields}
        extra = getattr(value, "__dict__", None)
        if isinstance(extra, dict) and not set(extra) <= names:
            return self._pickle(value, path)  # attributes beyond the fields would be lost
        ident = id(value)
        if ident in self._active:
            raise _Cycle(ident)
        self._active.add(ident)
        try:
            encoded: dict[str, Any] = {}
            for f in fields:
                try:
                    field_value = getattr(value, f.name)
                except AttributeError:
                    return self._pickle(value, path)
                encoded[f.name] = self.encode(field_value, f"{path}.{f.name}")
            return {"$dataclass": [ref, encoded]}
        except _Cycle as cycle:
            if cycle.target != ident:
                raise
            return self._pickle(value, path)
        finally:
            self._active.discard(ident)

    def _pickle(self, value: Any, path: str) -> Any:
        """Encode ``value`` as ``{"$pickle": ...}``, or raise naming where it failed."""
        try:
            blob = cloudpickle.dumps(value)
        except Exception as error:  # noqa: BLE001 - pickling raises all sorts
            where, culprit, cause = _locate_unpicklable(value, path, error)
            raise _ValueSerializationError(
                where, _type_name(culprit), _describe_exception(cause)
            ) from cause
        return {"$pickle": base64.b64encode(blob).decode("ascii")}


def _is_pydantic_model(value: Any) -> bool:
    """True for an instance of a pydantic ``BaseModel`` (pydantic is never imported here)."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(value, pydantic.BaseModel)


# ---------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------


class _DecodeError(Exception):
    """Internal: the stored data is malformed; the message says how."""


def _b64(payload: Any, tag: str) -> bytes:
    """Decode a base64 payload of ``tag``."""
    if not isinstance(payload, str):
        raise _DecodeError(f"{tag} expects a base64 string, got {_type_name(payload)}")
    try:
        return base64.b64decode(payload.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as error:
        raise _DecodeError(f"{tag} holds invalid base64 ({error})") from error


def _text(payload: Any, tag: str) -> str:
    """Check that the payload of ``tag`` is a string and return it."""
    if not isinstance(payload, str):
        raise _DecodeError(f"{tag} expects a string, got {_type_name(payload)}")
    return payload


def _items(payload: Any, tag: str) -> list[Any]:
    """Check that the payload of ``tag`` is a list and return it."""
    if not isinstance(payload, list):
        raise _DecodeError(f"{tag} expects a list, got {_type_name(payload)}")
    return payload


def _import_class(ref: Any, tag: str) -> Any:
    """Import the class named by a ``"module:qualname"`` reference stored under ``tag``."""
    ref = _text(ref, f"{tag} class reference")
    try:
        module, qualname = _split_reference(ref)
        return _resolve(module, qualname)
    except Exception as error:
        raise _DecodeError(
            f"{tag}: class {ref!r} cannot be imported ({_describe_exception(error)}); "
            "its module must be importable by the process that reads the value"
        ) from error


_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class _Decoder:
    """Turns a parsed tagged-JSON structure back into the value it describes."""

    def decode(self, obj: Any) -> Any:
        """Return the value ``obj`` (parsed JSON) describes."""
        if isinstance(obj, list):
            return [self.decode(item) for item in obj]
        if isinstance(obj, dict):
            if len(obj) == 1:
                (key, payload), = obj.items()
                if key.startswith("$"):
                    return self._tag(key, payload)
            return {key: self.decode(val) for key, val in obj.items()}
        return obj

    def _tag(self, tag: str, payload: Any) -> Any:
        """Decode the tagged object ``{tag: payload}``."""
        handler = self._HANDLERS.get(tag)
        if handler is None:
            raise _DecodeError(f"unknown tag {tag!r}")
        try:
            return handler(self, payload)
        except (_DecodeError, RecursionError):
            raise
        except Exception as error:
            raise _DecodeError(
                f"{tag} holds an invalid value ({_describe_exception(error)})"
            ) from error

    def _tuple(self, payload: Any) -> Any:
        return tuple(self.decode(item) for item in _items(payload, "$tuple"))

    def _set(self, payload: Any) -> Any:
        return {self.decode(item) for item in _items(payload, "$set")}

    def _frozenset(self, payload: Any) -> Any:
        return frozenset(self.decode(item) for item in _items(payload, "$frozenset"))

    def _dict(self, payload: Any) -> Any:
        result: dict[Any, Any] = {}
        for pair in _items(payload, "$dict"):
            if not isinstance(pair, list) or len(pair) != 2:
                raise _DecodeError("$dict expects a list of [key, value] pairs")
            result[self.decode(pair[0])] = self.decode(pair[1])
        return result

    def _bytes(self, payload: Any) -> Any:
        return _b64(payload, "$bytes")

    def _float(self, payload: Any) -> Any:
        text = _text(payload, "$float")
        if text not in _FLOATS:
            raise _DecodeError(f"$float expects 'nan', 'inf' or '-inf', got {text!r}")
        return _FLOATS[text]

    def _int(self, payload: Any) -> Any:
        return int(_text(payload, "$int"), 16)

    def _datetime(self, payload: Any) -> Any:
        return _dt.datetime.fromisoformat(_text(payload, "$datetime"))

    def _date(self, payload: Any) -> Any:
        return _dt.date.fromisoformat(_text(payload, "$date"))

    def _time(self, payload: Any) -> Any:
        return _dt.time.fromisoformat(_text(payload, "$time"))

    def _timedelta(self, payload: Any) -> Any:
        parts = _items(payload, "$timedelta")
        if len(parts) != 3 or not all(type(p) is int for p in parts):
            raise _DecodeError("$timedelta expects [days, seconds, microseconds]")
        return _dt.timedelta(days=parts[0], seconds=parts[1], microseconds=parts[2])

    def _decimal(self, payload: Any) -> Any:
        return decimal.Decimal(_text(payload, "$decimal"))

    def _uuid(self, payload: Any) -> Any:
        return uuid.UUID(_text(payload, "$uuid"))

    def _path(self, payload: Any) -> Any:
        if isinstance(payload, str):
            return pathlib.Path(payload)
        parts = _items(payload, "$path")
        if len(parts) != 2 or not all(isinstance(p, str) for p in parts):
            raise _DecodeError("$path expects [class name, path]")
        cls = _PATH_CLASSES.get(parts[0])
        if cls is None:
            raise _DecodeError(f"$path: unknown path class {parts[0]!r}")
        return cls(parts[1])

    def _enum(self, payload: Any) -> Any:
        parts = _items(payload, "$enum")
        if len(parts) != 2:
            raise _DecodeError("$enum expects ['module:Qualname', member name]")
        cls = _import_class(parts[0], "$enum")
        if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
            raise _DecodeError(f"$enum: {parts[0]!r} is not an Enum class")
        name = _text(parts[1], "$enum member name")
        member = cls.__members__.get(name)
        if member is None:
            raise _DecodeError(f"$enum: {parts[0]!r} has no member {name!r}")
        return member

    def _dataclass(self, payload: Any) -> Any:
        parts = _items(payload, "$dataclass")
        if len(parts) != 2 or not isinstance(parts[1], dict):
            raise _DecodeError("$dataclass expects ['module:Qualname', {field: value}]")
        cls = _import_class(parts[0], "$dataclass")
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise _DecodeError(f"$dataclass: {parts[0]!r} is not a dataclass")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(parts[1]) - set(fields)
        if unknown:
            raise _DecodeError(
                f"$dataclass: {parts[0]!r} has no field(s) {sorted(unknown)!r}; "
                "the class changed since the value was stored"
            )
        values = {name: self.decode(val) for name, val in parts[1].items()}
        init = {name: val for name, val in values.items() if fields[name].init}
        instance = cls(**init)
        for name, val in values.items():
            if not fields[name].init:
                object.__setattr__(instance, name, val)
        return instance

    def _pickle(self, payload: Any) -> Any:
        blob = _b64(payload, "$pickle")
        try:
            return pickle.loads(blob)
        except Exception as error:
            raise _DecodeError(
                f"$pickle cannot be unpickled ({_describe_exception(error)}); the classes "
                "it refers to must be importable by the process that reads the value"
            ) from error

    def _model(self, payload: Any) -> Any:
        parts = _items(payload, "$model")
        if len(parts) != 2 or not isinstance(parts[1], dict):
            raise _DecodeError("$model expects ['module:Qualname', {field: value}]")
        cls = _import_class(parts[0], "$model")
        if not callable(getattr(cls, "model_validate", None)):
            raise _DecodeError(f"$model: {parts[0]!r} is not a pydantic model class")
        return cls.model_validate(parts[1])

    _HANDLERS: dict[str, Callable[[_Decoder, Any], Any]] = {
        "$tuple": _tuple,
        "$set": _set,
        "$frozenset": _frozenset,
        "$dict": _dict,
        "$bytes": _bytes,
        "$float": _float,
        "$int": _int,
        "$datetime": _datetime,
        "$date": _date,
        "$time": _time,
        "$timedelta": _timedelta,
        "$decimal": _decimal,
        "$uuid": _uuid,
        "$path": _path,
        "$enum": _enum,
        "$dataclass": _dataclass,
        "$pickle": _pickle,
        "$model": _model,
    }


class Opaque:
    """A stored value that a view without the journal's key shows without decoding it.

    Decoding it would mean unpickling or importing what the journal names, which a
    journal that anyone may have edited must not make a process do.

    Attributes:
        kind: what it is: ``"pickle"``, ``"enum"``, ``"dataclass"``, ``"model"`` or
            ``"value"`` (a value of a serializer other than the default).
        detail: the class reference it names, or its size.
    """

    __slots__ = ("detail", "kind")

    def __init__(self, kind: str, detail: str = "") -> None:
        self.kind = kind
        self.detail = detail

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and (other.kind, other.detail) == (self.kind, self.detail)

    def __hash__(self) -> int:
        return hash((self.kind, self.detail))

    def __repr__(self) -> str:
        return f"<opaque {self.kind}{' ' + self.detail if self.detail else ''}>"


class Unverified:
    """A value read from the journal without its key: shown, but its signature was not checked.

    Attributes:
        value: the decoded value; every pickled, enum, dataclass or model part of it is an
            :class:`Opaque` placeholder.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unverified) and other.value == self.value

    def __hash__(self) -> int:
        return hash(("unverified", repr(self.value)))

    def __repr__(self) -> str:
        return f"Unverified({self.value!r})"


class _SafeDecoder(_Decoder):
    """Decodes tagged JSON without unpickling or importing anything: those parts become :class:`Opaque`."""

    def _opaque_pickle(self, payload: Any) -> Any:
        return Opaque("pickle", f"{len(payload) * 3 // 4} bytes" if isinstance(payload, str) else "")

    def _opaque_ref(self, tag: str) -> Callable[[_Decoder, Any], Any]:
        def handler(_self: _Decoder, payload: Any) -> Any:
            ref = payload[0] if isinstance(payload, list) and payload and isinstance(payload[0], str) else ""
            return Opaque(tag[1:], ref)

        return handler

    def _tag(self, tag: str, payload: Any) -> Any:
        if tag == "$pickle":
            return self._opaque_pickle(payload)
        if tag in ("$enum", "$dataclass", "$model"):
            return self._opaque_ref(tag)(self, payload)
        return super()._tag(tag, payload)


def loads_unverified(serializer: Serializer, data: str | bytes) -> Any:
    """Decode a stored value whose signature could not be checked, as an :class:`Unverified`.

    Nothing is unpickled or imported: with the default serializer the plain JSON parts are
    shown and the rest are :class:`Opaque` placeholders; the value of any other serializer
    is one placeholder.

    Raises:
        SerializationError: the text is not valid tagged JSON.
    """
    if not isinstance(serializer, JSONSerializer) or not isinstance(data, str):
        return Unverified(Opaque("value", f"{len(data)} bytes of {getattr(serializer, 'name', '?')}"))
    try:
        return Unverified(_SafeDecoder().decode(_DECODE(data)))
    except (_DecodeError, ValueError, RecursionError) as error:
        raise SerializationError(f"cannot deserialize stored value: {error}") from error


class JSONSerializer:
    """The default serializer: tagged JSON that stays readable in the ``sqlite3`` shell.

    Plain JSON values are written as themselves, compactly and without escaping
    non-ASCII text; ``{"a":[1,2]}`` is stored as exactly that. Other values are
    written as a dict with a single ``"$"`` key:

    ========================  ==============================================
    value                     stored as
    ========================  ==============================================
    tuple / set / frozenset   ``{"$tuple":[...]}``, ``{"$set":[...]}``, ...
    bytes                     ``{"$bytes":"<base64>"}``
    datetime / date / time    ``{"$datetime":"<isoformat>"}`` (offset kept)
    timedelta                 ``{"$timedelta":[days,seconds,microseconds]}``
    Decimal / UUID            ``{"$decimal":"1.10"}``, ``{"$uuid":"..."}``
    pathlib paths             ``{"$path":["PosixPath","/tmp/x"]}``
    Enum member               ``{"$enum":["module:Qualname","NAME"]}``
    dataclass instance        ``{"$dataclass":["module:Qualname",{...}]}``
    pydantic model instance   ``{"$model":["module:Qualname",{...}]}``
    dict with non-str keys    ``{"$dict":[[key,value],...]}``
    nan / inf / -inf          ``{"$float":"nan"}``, ...
    anything else             ``{"$pickle":"<base64 cloudpickle>"}``
    ========================  ==============================================

    A user dict that itself has a single key starting with ``"$"`` is written as
    ``{"$dict":[...]}`` so that it cannot be mistaken for a tag. Enums and dataclasses
    defined in ``__main__`` or inside a function are pickled, as are self-referencing
    containers.

    Attributes:
        name: ``"json"``.
    """

    name = "json"

    def dumps(self, value: Any) -> str:
        """Serialize ``value`` to tagged JSON text.

        Args:
            value: the value to store; containers are walked recursively.

        Returns:
            Compact JSON text.

        Raises:
            SerializationError: if some part of the value cannot be pickled either; the
                message names its type and where it sits in the value, e.g.
                ``[2]['conn']``.
        """
        kind = type(value)
        if kind is int and -(2**63) < value < 2**63:
            return str(value)  # fast path: a JSON int is its decimal text
        if (kind is str and _is_utf8(value)) or kind is bool or value is None:
            return _ENCODE(value)  # fast path: plain JSON scalars
        if not value and (kind is list or kind is dict):
            return "[]" if kind is list else "{}"  # fast path: no arguments
        try:
            encoded = _Encoder().encode(value, "")
        except RecursionError:
            encoded = self._pickle_whole(value)
        return _ENCODE(encoded)

    @staticmethod
    def _pickle_whole(value: Any) -> Any:
        """Pickle a value too deeply nested to walk, as one ``$pickle`` tag."""
        try:
            return _Encoder()._pickle(value, "")
        except RecursionError as error:
            raise SerializationError(
                f"cannot serialize value of type {_type_name(value)!r}: it is nested too "
                f"deeply to store; {_ADVICE}"
            ) from error

    def loads(self, data: str | bytes) -> Any:
        """Rebuild a value from text written by :meth:`dumps`.

        Args:
            data: the JSON text, as ``str`` or UTF-8 ``bytes``.

        Returns:
            The rebuilt value.

        Raises:
            SerializationError: if the data is not valid JSON, uses an unknown tag, has
                a malformed payload, or names a class that cannot be imported.
        """
        if type(data) is str and data.isdigit() and (len(data) == 1 or data[0] != "0") and len(data) < 19:
            return int(data)  # fast path: a small non-negative JSON int
        try:
            text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
            if not isinstance(text, str):
                raise _DecodeError(f"expected str or bytes, got {_type_name(data)}")
            try:
                parsed = _DECODE(text)
            except ValueError as error:
                raise _DecodeError(f"invalid JSON ({error})") from error
            if "$" not in text:  # fast path: no tag anywhere, so plain JSON is the value
                return parsed
            return _Decoder().decode(parsed)
        except _DecodeError as error:
            raise SerializationError(f"cannot deserialize stored value: {error}") from error
        except UnicodeDecodeError as error:
            raise SerializationError(
                f"cannot deserialize stored value: not UTF-8 text ({error})"
            ) from error
        except RecursionError as error:
            raise SerializationError(
                "cannot deserialize stored value: it is nested too deeply"
            ) from error

    def __repr__(self) -> str:
        return "JSONSerializer()"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid in stored JSON")


# json.dumps/loads with options build a new encoder/decoder on every call: keep one of each
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_DECODE = json.JSONDecoder(parse_constant=_reject_constant).decode


def describe_unserializable(
    serializer: Serializer, names_and_values: Iterable[tuple[str, Any]]
) -> SerializationError | None:
    """Find the first argument that cannot be serialized on its own.

    Used after serializing a whole ``(args, kwargs)`` pair failed, to tell the caller
    which argument is to blame.

    Args:
        serializer: the serializer to try.
        names_and_values: ``(name, value)`` pairs such as ``("args[0]", 1)`` or
            ``("kwargs['conn']", lock)``, tried in order.

    Returns:
        A :class:`SerializationError` whose ``argument`` is the name of the first value
        that fails and whose message names it, or None if every value serializes.
    """
    for name, value in names_and_values:
        try:
            serializer.dumps(value)
        except _ValueSerializationError as error:
            where = f" (at {name}{error.path})" if error.path else ""
            return SerializationError(
                f"argument {name} cannot be serialized: object of type "
                f"{error.type_name!r}{where} cannot be pickled ({error.detail}); {_ADVICE}",
                argument=name,
            )
        except Exception as error:  # noqa: BLE001 - custom serializers raise anything
            return SerializationError(
                f"argument {name} cannot be serialized: {_describe_exception(error)}",
                argument=name,
            )
    return None


# ---------------------------------------------------------------------------------------
# Flows
# ---------------------------------------------------------------------------------------


def _unwrap_chain(obj: Any) -> list[Any]:
    """Return ``obj`` followed by what it wraps (``__wrapped__``, ``fn``, ``__func__``)."""
    chain = [obj]
    seen = {id(obj)}
    current = obj
    while len(chain) < 32:
        for attr in ("__wrapped__", "fn", "__func__"):
            try:
                inner = getattr(current, attr, None)
            except Exception:  # noqa: BLE001 - exotic descriptors
                inner = None
            if inner is not None and callable(inner) and id(inner) not in seen:
                break
        else:
            break
        chain.append(inner)
        seen.add(id(inner))
        current = inner
    return chain


def _same_function(a: Any, b: Any) -> bool:
    """Tell whether ``a`` and ``b`` are, or wrap, the same function."""
    ids = {id(x) for x in _unwrap_chain(a)}
    return any(id(x) in ids for x in _unwrap_chain(b))


def _flow_name(fn: Any) -> str:
    """Return a readable name for a flow, for error messages."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if isinstance(qualname, str):
        return f"{module}:{qualname}" if isinstance(module, str) else qualname
    return _short_repr(fn)


def flow_reference(fn: Callable[..., Any]) -> tuple[str, bytes | None]:
    """Decide how to store a flow: by import reference when possible, else by value.

    Args:
        fn: the flow function, or a wrapper object that has ``__module__`` and
            ``__qualname__`` and exposes the function as ``__wrapped__``, ``fn`` or
            ``__func__``.

    Returns:
        ``("module:qualname", None)`` when importing the module and walking the qualname
        gives back ``fn`` (or something wrapping the same function), and
        ``("<by-value>", cloudpickle_blob)`` for lambdas, nested functions, closures and
        anything defined in ``__main__``.

    Raises:
        SerializationError: if the flow must be stored by value and cloudpickle cannot
            pickle it.
    """
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if (
        isinstance(module, str)
        and isinstance(qualname, str)
        and module != "__main__"
        and "<locals>" not in qualname
        and "<lambda>" not in qualname
    ):
        try:
            found = _resolve(module, qualname)
        except Exception:  # noqa: BLE001 - not importable: store it by value
            found = None
        if found is not None and _same_function(found, fn):
            return f"{module}:{qualname}", None
    try:
        places, sources = _code_places(fn)
        blob: bytes = cloudpickle.dumps((fn, places, sources))
    except Exception as error:
        raise SerializationError(
            f"flow {_flow_name(fn)} cannot be stored: it is not importable by name and "
            f"cloudpickle cannot pickle it ({_describe_exception(error)}); define the "
            "flow at module level in an importable module"
        ) from error
    _remember_original(blob, fn)
    return BY_VALUE, blob


# A flow stored by value runs, in the process that started it, as the original function
# (tracebacks, debuggers and inspect.getsource see its real file); other processes run the
# unpickled copy, whose code objects get their file names back (see _restore_places).
_ORIGINALS: OrderedDict[str, Callable[..., Any]] = OrderedDict()
_ORIGINALS_LOCK = threading.Lock()
_MAX_ORIGINALS = 1024
_MAX_SOURCE = 1 << 20  # bytes of source text stored with a flow, at most


def _remember_original(blob: bytes, fn: Callable[..., Any]) -> None:
    digest = hashlib.sha256(blob).hexdigest()
    with _ORIGINALS_LOCK:
        _ORIGINALS[digest] = fn
        _ORIGINALS.move_to_end(digest)
        while len(_ORIGINALS) > _MAX_ORIGINALS:
            _ORIGINALS.popitem(last=False)


def _functions_reachable(fn: Any, limit: int = 256) -> list[types.FunctionType]:
    """The plain functions a flow is made of: itself, what it wraps, and the functions
    (and steps, flows) it names as globals or closes over, transitively."""
    out: list[types.FunctionType] = []
    seen: set[int] = set()
    todo = [fn]
    while todo and len(out) < limit:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        todo.extend(x for x in _unwrap_chain(obj)[1:] if id(x) not in seen)
        if not isinstance(obj, types.FunctionType) or (out and _importable(obj)):
            continue  # an importable function is pickled by reference: its file is its own
        out.append(obj)
        names: set[str] = set()
        codes = [obj.__code__]
        while codes:
            code = codes.pop()
            names.update(code.co_names)
            codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
        glb = obj.__globals__
        todo.extend(glb[n] for n in names if n in glb and callable(glb[n]) and not isinstance(glb[n], type))
        for cell in obj.__closure__ or ():
            try:
                content = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if callable(content) and not isinstance(content, type):
                todo.append(content)
    return out


def _importable(func: types.FunctionType) -> bool:
    module, qualname = func.__module__, func.__qualname__
    if not isinstance(module, str) or module == "__main__" or "<locals>" in qualname or "<lambda>" in qualname:
        return False
    try:
        return _resolve(module, qualname) is func
    except Exception:  # noqa: BLE001 - anything that fails to import is "not importable"
        return False


def _code_key(code: types.CodeType) -> str:
    return f"{code.co_qualname}@{code.co_firstlineno}"


_PLACES: weakref.WeakKeyDictionary[Any, tuple[dict[str, str], dict[str, list[str]]]] = weakref.WeakKeyDictionary()


def _code_places(fn: Any) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Where the code of a flow stored by value lives: ``{qualname@line: file}`` and the files' lines."""
    try:
        return _PLACES[fn]
    except (KeyError, TypeError):
        pass
    found = _find_places(fn)
    try:
        _PLACES[fn] = found
    except TypeError:
        pass
    return found


def _find_places(fn: Any) -> tuple[dict[str, str], dict[str, list[str]]]:
    places: dict[str, str] = {}
    for func in _functions_reachable(fn):
        codes = [func.__code__]
        while codes:
            code = codes.pop()
            places[_code_key(code)] = code.co_filename
            codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    sources: dict[str, list[str]] = {}
    budget = _MAX_SOURCE
    for filename in sorted(set(places.values())):
        if filename.startswith("<"):
            continue
        lines = linecache.getlines(filename)
        size = sum(len(line) for line in lines)
        if lines and size <= budget:
            sources[filename] = lines
            budget -= size
    return places, sources


def _with_places(code: types.CodeType, places: dict[str, str]) -> types.CodeType:
    consts = tuple(_with_places(c, places) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    filename = places.get(_code_key(code), code.co_filename)
    if filename == code.co_filename and consts == code.co_consts:
        return code
    return code.replace(co_filename=filename, co_consts=consts)


def _restore_places(fn: Any, places: dict[str, str], sources: dict[str, list[str]]) -> None:
    """Give an unpickled flow's code objects their file names back, and make the source
    known to :mod:`linecache` where the file is not on this machine (whatever name the
    cloudpickle version gave the code)."""
    for func in _functions_reachable(fn):
        func.__code__ = _with_places(func.__code__, places)
    for filename, lines in sources.items():
        if not os.path.exists(filename) and filename not in linecache.cache:
            linecache.cache[filename] = (sum(len(line) for line in lines), None, list(lines), filename)


def load_flow(ref: str, blob: bytes | None) -> Callable[..., Any]:
    """Load a flow stored by :func:`flow_reference`.

    Args:
        ref: ``"module:qualname"`` or ``"<by-value>"``.
        blob: the cloudpickle blob for a flow stored by value, else None.

    Returns:
        The flow (whatever object the reference names, e.g. a decorated wrapper).

    Raises:
        FlowNotFound: if the module cannot be imported, the qualname does not exist in
            it, the object is not callable, or the blob cannot be unpickled.
    """
    if blob is not None:
        with _ORIGINALS_LOCK:
            original = _ORIGINALS.get(hashlib.sha256(blob).hexdigest())
        if original is not None:
            return original
        try:
            loaded, places, sources = pickle.loads(blob)
        except Exception as error:
            raise FlowNotFound(
                f"flow {ref!r} was stored by value and cannot be unpickled "
                f"({_describe_exception(error)}); the modules it uses must be importable "
                "by the process that opens the journal"
            ) from error
        try:
            _restore_places(loaded, places, sources)
        except Exception:  # noqa: BLE001 - only tracebacks would be the worse for it
            pass
    else:
        try:
            module, qualname = _split_reference(ref)
            loaded = _resolve(module, qualname)
        except Exception as error:
            raise FlowNotFound(
                f"flow {ref!r} cannot be imported ({_describe_exception(error)}); the "
                "module must be importable by the process that opens the journal "
                "(check sys.path / PYTHONPATH and that the function was not renamed)"
            ) from error
    if not callable(loaded):
        raise FlowNotFound(
            f"flow {ref!r} names an object of type {_type_name(loaded)!r}, which is not "
            "callable; the module must define the flow function under that name"
        )
    result: Callable[..., Any] = loaded
    return result


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ErrorInfo:
    """What the journal records about an exception a run raised.

    Attributes:
        type: the exception class as ``"module.QualName"``; builtins are shown by name
            alone (``"ValueError"``).
        message: ``str(exc)``.
        traceback: the full formatted traceback text.
        verified: False when it was read without the journal's key (its signature was
            not checked).
    """

    type: str
    message: str
    traceback: str
    verified: bool = True

    def __str__(self) -> str:
        """Return ``"ValueError: boom"`` (just the type when the message is empty)."""
        text = f"{self.type}: {self.message}" if self.message else self.type
        return text if self.verified else text + " (unverified)"


def _exception_type_name(exc: BaseException) -> str:
    """Return ``"module.QualName"`` of ``exc``'s class, or the bare name for builtins."""
    cls = type(exc)
    module = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", cls.__name__)
    if not isinstance(module, str) or module == "builtins":
        return str(qualname)
    return f"{module}.{qualname}"


def error_info(exc: BaseException) -> ErrorInfo:
    """Describe an exception as an :class:`ErrorInfo`; never raises.

    Args:
        exc: the exception, ideally with its ``__traceback__``.

    Returns:
        Its type name, message and formatted traceback.
    """
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the error
        message = f"<unprintable {type(exc).__name__}>"
    try:
        text = "".join(_traceback.format_exception(exc))
    except Exception:  # noqa: BLE001 - a broken exception must not hide the error
        text = f"{_exception_type_name(exc)}: {message}\n"
    return ErrorInfo(type=_exception_type_name(exc), message=message, traceback=text)


def _pickle_exception(exc: BaseException) -> str | None:
    """Return base64 cloudpickle of ``exc`` if it round-trips, else None."""
    try:
        blob = cloudpickle.dumps(exc)
        pickle.loads(blob)  # exceptions with a custom __init__ often fail only here
    except Exception:  # noqa: BLE001 - pickling raises all sorts
        return None
    return base64.b64encode(blob).decode("ascii")


def _json_text(obj: Any) -> str:
    """Dump ``obj`` as compact JSON, escaping non-ASCII only when it is not valid UTF-8."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return text if _is_utf8(text) else json.dumps(obj, separators=(",", ":"))


def dump_error(exc: BaseException) -> str:
    """Serialize an exception for the journal; never raises.

    Args:
        exc: the exception a run raised.

    Returns:
        JSON text ``{"type":...,"message":...,"traceback":...,"pickle":...}``, where
        ``pickle`` is the base64 cloudpickle of the exception, or null when it cannot be
        pickled and unpickled again.
    """
    info = error_info(exc)
    return _json_text(
        {
            "type": info.type,
            "message": info.message,
            "traceback": info.traceback,
            "pickle": _pickle_exception(exc),
        }
    )


def load_error(text: str, *, rebuild: bool = True) -> tuple[ErrorInfo, BaseException | None]:
    """Read back what :func:`dump_error` wrote.

    Args:
        text: the JSON text.
        rebuild: unpickle the exception (only for text whose signature was checked).

    Returns:
        The :class:`ErrorInfo`, and the rebuilt exception or None when it was not
        pickled or cannot be unpickled in this process.

    Raises:
        SerializationError: if ``text`` is not valid JSON or lacks a required key.
    """
    try:
        data = json.loads(text)
    except (ValueError, TypeError, RecursionError) as error:
        raise SerializationError(f"cannot read stored error: invalid JSON ({error})") from error
    if not isinstance(data, dict):
        raise SerializationError(
            f"cannot read stored error: expected a JSON object, got {_type_name(data)}"
        )
    for key in ("type", "message", "traceback"):
        if not isinstance(data.get(key), str):
            raise SerializationError(
                f"cannot read stored error: key {key!r} is missing or not a string"
            )
    info = ErrorInfo(type=data["type"], message=data["message"], traceback=data["traceback"])
    exc: BaseException | None = None
    blob = data.get("pickle")
    if isinstance(blob, str) and rebuild:
        try:
            loaded = pickle.loads(base64.b64decode(blob.encode("ascii"), validate=True))
        except Exception:  # noqa: BLE001 - the text description is still available
            loaded = None
        if isinstance(loaded, BaseException):
            exc = loaded
    return info, exc
