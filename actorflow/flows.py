"""Flows: the functions a runtime executes, and the per-run options given at start."""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from .errors import InvalidInput
from .retry import NO_RETRY, Retry, as_retry
from .steps import Step

__all__ = [
    "Flow",
    "check_arguments",
    "flow",
    "flow_name",
    "flow_retry",
    "flow_timeout",
    "run_options",
]


_OPTION_NAMES = ("metadata", "idempotency_key")


P = ParamSpec("P")
R = TypeVar("R")


class Flow(Generic[P, R]):
    """A function registered with :func:`flow`; its first parameter is the run context.

    Calling a ``Flow`` object calls the function directly (handy in unit tests with a
    context of your own); :meth:`actorflow.Runtime.start` runs it durably. A ``Flow`` is
    generic in the function's parameters after ``ctx`` and its return type, so a type
    checker sees ``rt.start(greet, 1, 2, 3)`` as an error and ``result()`` as the flow's
    return type.

    Attributes:
        fn: the decorated function.
        name: the flow's name, shown in statuses and used by ``list_runs(flow=...)``.
        retries: the flow's retry policy (default: none). A retry runs the flow again
            from its start; completed steps are replayed from their checkpoints.
        timeout: seconds from the run's first start after which it ends ``timed_out``.
        validate: checks the arguments of every start (see :func:`flow`), or None.
        run_options: the per-run options set with :meth:`options`.
    """

    def __init__(
        self,
        fn: Callable[Concatenate[Any, P], R],
        *,
        name: str | None = None,
        retries: Retry | int | None = None,
        timeout: float | None = None,
        run_options: Mapping[str, Any] | None = None,
        validate: Callable[..., Any] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@actorflow.flow needs a function, not {fn!r}")
        if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0):
            raise ValueError(f"timeout must be a number of seconds > 0, not {timeout!r}")
        if validate is not None and not callable(validate):
            raise TypeError(f"validate must be a callable or a pydantic model class, not {validate!r}")
        self.fn = fn
        self.validate = validate
        self.name = name or getattr(fn, "__qualname__", None) or repr(fn)
        self.retries = as_retry(retries, NO_RETRY)
        self.timeout = float(timeout) if timeout is not None else None
        self.run_options: dict[str, Any] = dict(run_options or {})
        functools.update_wrapper(self, fn)

    def __call__(self, ctx: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(ctx, *args, **kwargs)

    def options(
        self,
        *,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        detached: bool | None = None,
        queue: str | None = None,
        priority: int | None = None,
    ) -> Flow[P, R]:
        """Return this flow with options for the runs started from it.

        Options are kept apart from the flow's own arguments, so a flow may have a
        parameter called ``metadata`` without a clash::

            rt.start(charge.options(idempotency_key=f"order-{order_id}"), order_id)

        Args:
            metadata: a dict stored with the run and shown in its status.
            idempotency_key: a second start with the same key returns the existing run
                instead of starting another.
            detached: for a child run (``ctx.start``): it outlives its parent instead of
                being cancelled when the parent ends or is cancelled.
            queue: a named queue (``Runtime(queues={"emails": 5})``): at most that many of
                its runs run at once, across every process on the journal.
            priority: among waiting runs, higher ones are claimed first (default 0).

        Returns:
            A new :class:`Flow`; this one is unchanged.
        """
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
        if idempotency_key is not None and not isinstance(idempotency_key, str):
            raise TypeError(f"idempotency_key must be a str, not {type(idempotency_key).__name__}")
        options = dict(self.run_options)
        if metadata is not None:
            options["metadata"] = dict(metadata)
        if idempotency_key is not None:
            options["idempotency_key"] = idempotency_key
        if detached is not None:
            options["detached"] = bool(detached)
        if queue is not None:
            if not isinstance(queue, str) or not queue:
                raise TypeError(f"queue must be a non-empty str, not {queue!r}")
            options["queue"] = queue
        if priority is not None:
            if not isinstance(priority, int) or isinstance(priority, bool):
                raise TypeError(f"priority must be an int, not {priority!r}")
            options["priority"] = priority
        return Flow(self.fn, name=self.name, retries=self.retries, timeout=self.timeout, run_options=options,
                    validate=self.validate)  # fmt: skip

    def __repr__(self) -> str:
        extra = f" {self.run_options}" if self.run_options else ""
        return f"<Flow {self.name}{extra}>"


@overload
def flow(fn: Callable[Concatenate[Any, P], R], /) -> Flow[P, R]: ...
@overload
def flow(
    *,
    name: str | None = None,
    retries: Retry | int | None = None,
    timeout: float | None = None,
    validate: Callable[..., Any] | None = None,
) -> Callable[[Callable[Concatenate[Any, P], R]], Flow[P, R]]: ...
def flow(
    fn: Callable[Concatenate[Any, P], R] | None = None,
    /,
    *,
    name: str | None = None,
    retries: Retry | int | None = None,
    timeout: float | None = None,
    validate: Callable[..., Any] | None = None,
) -> Flow[P, R] | Callable[[Callable[Concatenate[Any, P], R]], Flow[P, R]]:
    """Register a function as a flow: ``@actorflow.flow`` or ``@actorflow.flow(name=..., retries=..., timeout=...)``.

    The function's first parameter is the run context (:class:`actorflow.Context`).
    Every start binds its arguments to the function's signature before anything is
    written: a wrong count or an unknown keyword raises ``TypeError`` at the call.

    Args:
        fn: the function (when used without parentheses).
        name: the flow's name; defaults to the function's qualified name.
        retries: a :class:`~actorflow.Retry` or an int of retries after the first try;
            flows do not retry by default.
        timeout: seconds from the run's first start until it ends as ``timed_out``.
        validate: checks the arguments of every start, in the caller's thread, before
            anything is written. A callable is called with the flow's arguments (without
            ``ctx``) and raises to refuse them. A pydantic model class, whose fields are
            the flow's parameters, validates and converts them (``"5"`` becomes ``5`` for
            an ``int`` field). A refused start raises :class:`~actorflow.InvalidInput`.

    Returns:
        A :class:`Flow`, or a decorator that makes one.
    """
    if fn is not None:
        return Flow(fn, name=name, retries=retries, timeout=timeout, validate=validate)
    return lambda f: Flow(f, name=name, retries=retries, timeout=timeout, validate=validate)


class _Shape:
    """A flow's signature, and what a start's arguments must look like to fit it without
    :meth:`inspect.Signature.bind` (which is slow for a hot path): for the usual flow whose
    parameters after ``ctx`` are plain positional-or-keyword ones."""

    __slots__ = ("names", "required", "sig", "simple")

    def __init__(self, sig: inspect.Signature | None) -> None:
        self.sig = sig
        params = list(sig.parameters.values())[1:] if sig is not None else []
        self.simple = sig is not None and all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
        self.names = tuple(p.name for p in params)
        self.required = sum(1 for p in params if p.default is p.empty)

    def fits(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
        """True if the arguments surely fit (False: ask ``bind``, which says why not, or that they do)."""
        names = self.names
        if not self.simple or len(args) > len(names):
            return False
        if not kwargs:
            return len(args) >= self.required
        rest = names[len(args) :]
        if not all(k in rest for k in kwargs):
            return False
        required = names[: self.required]
        return all(i < len(args) or n in kwargs for i, n in enumerate(required))


_SHAPES: weakref.WeakKeyDictionary[Any, _Shape] = weakref.WeakKeyDictionary()


def _shape(fn: Callable[..., Any]) -> _Shape:
    try:
        return _SHAPES[fn]
    except (KeyError, TypeError):
        pass
    target = fn.fn if isinstance(fn, Flow) else fn
    try:
        sig: inspect.Signature | None = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin or a C callable: nothing to check against
        sig = None
    if sig is not None and not sig.parameters:
        raise TypeError(f"{flow_name(fn)} takes no parameters, but a flow's first parameter is the run context (ctx)")
    shape = _Shape(sig)
    try:
        _SHAPES[fn] = shape
    except TypeError:
        pass
    return shape


def check_arguments(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Bind a start's arguments to the flow's signature and validate them, before anything is written.

    Returns:
        The arguments to store: as given, or as converted by the flow's pydantic model.

    Raises:
        TypeError: ``fn`` is not a flow (a step, say), or the arguments do not fit its
            signature (wrong count, unknown or missing keyword).
        InvalidInput: the flow's validator refused them.
    """
    if isinstance(fn, Step):
        raise TypeError(
            f"{fn.name!r} is a step, not a flow: steps are called from inside a flow; start a flow "
            "(@actorflow.flow) that calls it"
        )
    if not callable(fn):
        raise TypeError(f"a run needs a flow (a function taking ctx first), not {fn!r}")
    shape = _shape(fn)
    sig = shape.sig
    validate = fn.validate if isinstance(fn, Flow) else None
    if sig is None or (validate is None and shape.fits(args, kwargs)):
        return tuple(args), dict(kwargs)
    try:
        bound = sig.bind(None, *args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{flow_name(fn)}() got arguments that do not fit its signature {sig}: {exc}") from None
    if validate is None:
        return tuple(args), dict(kwargs)
    ctx_name = next(iter(sig.parameters))
    given = {k: v for k, v in bound.arguments.items() if k != ctx_name}
    model_validate = getattr(validate, "model_validate", None) if isinstance(validate, type) else None
    if model_validate is not None and callable(model_validate):
        try:
            model = model_validate(given)
        except Exception as exc:  # pydantic's ValidationError, or a validator's own error
            raise InvalidInput(f"{flow_name(fn)}: the arguments were refused by {validate.__name__}: {exc}", flow=flow_name(fn)) from exc
        fields = getattr(type(model), "model_fields", {})
        for name in given:
            if name in fields:
                bound.arguments[name] = getattr(model, name)
        return tuple(bound.args[1:]), dict(bound.kwargs)
    try:
        validate(*args, **kwargs)
    except Exception as exc:
        raise InvalidInput(f"{flow_name(fn)}: the arguments were refused: {type(exc).__name__}: {exc}", flow=flow_name(fn)) from exc
    return tuple(args), dict(kwargs)


def flow_name(fn: Callable[..., Any]) -> str:
    """The name under which runs of ``fn`` are listed."""
    name = getattr(fn, "name", None)
    if isinstance(name, str) and isinstance(fn, Flow):
        return name
    return getattr(fn, "__qualname__", None) or repr(fn)


def flow_timeout(fn: Callable[..., Any]) -> float | None:
    """The flow-level timeout of ``fn`` in seconds, or None."""
    return fn.timeout if isinstance(fn, Flow) else None


def flow_retry(fn: Callable[..., Any]) -> Retry:
    """The flow-level retry policy of ``fn`` (none for a plain function)."""
    return fn.retries if isinstance(fn, Flow) else NO_RETRY


def run_options(fn: Callable[..., Any]) -> dict[str, Any]:
    """The per-run options attached to ``fn`` with :meth:`Flow.options` (empty for a plain function)."""
    return dict(fn.run_options) if isinstance(fn, Flow) else {}
