"""What a run looks like from outside: its state, its status record, and tables for the REPL."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._time import parse
from .errors import CorruptRecord, JournalError, RunCancelled, RunFailed, RunTimedOut, SerializerMismatch, TamperedRecord
from .serialization import ErrorInfo
from .signing import METADATA, PROGRESS, RESULT, STEP_ERROR
from .states import TERMINAL_NAMES, TERMINAL_STATES, UNFINISHED_NAMES, State, parse_state

if TYPE_CHECKING:
    from .codec import Codec

__all__ = [
    "RunList",
    "RunStatus",
    "RunTree",
    "State",
    "StepList",
    "StepStatus",
    "TERMINAL_NAMES",
    "TERMINAL_STATES",
    "UNFINISHED_NAMES",
    "check_listing",
    "damage_info",
    "format_table",
    "parse_state",
    "parse_ts",
    "result_from_row",
    "status_from_row",
    "status_table",
    "steps_from_rows",
]



parse_ts = parse
"""Parse a journal timestamp back into a timezone-aware UTC datetime (see :mod:`actorflow._time`)."""


def check_listing(state: object, limit: object) -> tuple[str | None, int]:
    """Check the ``state`` and ``limit`` of a listing (``list_runs``).

    Raises:
        TypeError: ``limit`` is not an int, or ``state`` not a str.
        ValueError: ``limit`` is negative, or ``state`` names no state.
    """
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise TypeError(f"limit must be an int, not {limit!r}")
    if limit < 0 or limit > 2**62:
        raise ValueError(f"limit must be >= 0 (and below 2**62), not {limit!r}")
    return (parse_state(state).value if state is not None else None), limit





@dataclass(frozen=True)
class RunStatus:
    """A snapshot of one run, as committed in the journal.

    Attributes:
        id: the run id.
        flow: the flow's name.
        state: the run's :class:`State`.
        result: the return value once ``completed``, else None.
        error: type, message and traceback text once ``failed``/``timed_out``, else None.
        created_at: when ``start`` committed the run (timezone-aware UTC).
        started_at: when the current attempt started executing, or None.
        completed_at: when the run reached its terminal state, or None.
        progress: the latest value passed to ``ctx.progress``, or None.
        parent_id: the id of the run that started this one, or None.
        attempt: how many times execution of the run has started (0 while pending).
        metadata: the dict given at start (``flow.options(metadata=...)``).
        cancel_requested: True once a cancellation was asked for and accepted.
        waiting_for: for a ``waiting`` run, what it waits for (``{"mode", "runs", "count"}``).
        wake_at: for a ``waiting`` run, when it wakes anyway (its wait's timeout), or None.
        detached: a child run that outlives its parent.
    """

    id: str
    flow: str
    state: State
    result: Any = None
    error: ErrorInfo | None = None
    created_at: _dt.datetime | None = None
    started_at: _dt.datetime | None = None
    completed_at: _dt.datetime | None = None
    progress: Any = None
    parent_id: str | None = None
    attempt: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False
    waiting_for: dict[str, Any] | None = None
    wake_at: _dt.datetime | None = None
    detached: bool = False

    @property
    def done(self) -> bool:
        """True when the run is in a terminal state."""
        return self.state in TERMINAL_STATES

    def __repr__(self) -> str:
        rows = [
            ("id", self.id),
            ("flow", self.flow),
            ("state", self.state.value),
            ("attempt", str(self.attempt)),
            ("created_at", _fmt_time(self.created_at)),
            ("started_at", _fmt_time(self.started_at)),
            ("completed_at", _fmt_time(self.completed_at)),
        ]
        if self.parent_id:
            rows.append(("parent_id", self.parent_id))
        if self.metadata:
            rows.append(("metadata", _short(self.metadata, 60)))
        if self.progress is not None:
            rows.append(("progress", _short(self.progress, 60)))
        if self.state is State.COMPLETED:
            rows.append(("result", _short(self.result, 60)))
        if self.error is not None:
            rows.append(("error", _short(str(self.error), 60)))
        if self.waiting_for is not None:
            rows.append(("waiting_for", _short(self.waiting_for, 60)))
        if self.wake_at is not None:
            rows.append(("wake_at", _fmt_time(self.wake_at)))
        width = max(len(k) for k, _ in rows)
        return "RunStatus\n" + "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def _fmt_time(value: _dt.datetime | None) -> str:
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _short(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Return ``rows`` as a plain-text table with ``headers``, columns padded to fit."""
    body = [list(r) for r in rows]
    widths = [len(h) for h in headers]
    for row in body:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in body]
    return "\n".join(lines)


def status_table(statuses: Iterable[RunStatus]) -> str:
    """Return a table of run statuses, one line each: id, flow, state, times, and outcome."""
    rows = []
    for s in statuses:
        if s.error is not None:
            outcome = _short(str(s.error), 40)
        elif s.state is State.COMPLETED:
            outcome = _short(s.result, 40)
        elif s.progress is not None:
            outcome = "progress " + _short(s.progress, 31)
        else:
            outcome = ""
        rows.append(
            (s.id, s.flow, s.state.value, str(s.attempt), _fmt_time(s.created_at), _fmt_time(s.completed_at), outcome)
        )
    return format_table(("id", "flow", "state", "attempt", "created_at", "completed_at", "result/error"), rows)


class RunList(list[RunStatus]):
    """A list of :class:`RunStatus` that prints as a table in the REPL."""

    def __repr__(self) -> str:
        if not self:
            return "RunList (no runs)"
        return status_table(self)


@dataclass(frozen=True)
class StepStatus:
    """One checkpointed call of a run, as ``run.steps()`` lists it.

    Attributes:
        seq: its position in the run's calls (1-based).
        name: the step's name (``actorflow.now`` and friends for ``ctx.now()``...).
        state: ``running``, ``retrying``, ``completed`` or ``failed``.
        attempts: how many attempts it has taken so far.
        started_at: when its latest attempt started.
        completed_at: when it completed or finally failed.
        error: the latest attempt's error (kept after a later success), or None.
        retry_at: when a ``retrying`` step tries again.
    """

    seq: int
    name: str
    state: str
    attempts: int
    started_at: _dt.datetime | None
    completed_at: _dt.datetime | None
    error: ErrorInfo | None
    retry_at: _dt.datetime | None = None


class StepList(list[StepStatus]):
    """A list of :class:`StepStatus` that prints as a table in the REPL."""

    def __repr__(self) -> str:
        if not self:
            return "StepList (no steps)"
        rows = [
            (str(s.seq), s.name, s.state, str(s.attempts), _fmt_time(s.started_at), _fmt_time(s.completed_at),
             _short(str(s.error), 50) if s.error else "")  # fmt: skip
            for s in self
        ]
        return format_table(("seq", "step", "state", "attempts", "started_at", "completed_at", "last error"), rows)


def steps_from_rows(run_id: str, rows: Iterable[Mapping[str, Any]], codec: Codec) -> StepList:
    """Build a :class:`StepList` from ``steps`` rows.

    Raises:
        CorruptRecord: a row cannot be decoded (:class:`~actorflow.TamperedRecord`: its
            error does not verify).
    """
    out = StepList()
    for row in rows:
        try:
            seq = int(row["seq"])
            error = codec.load_error(row["error"], run_id, STEP_ERROR, seq, row["name"])[0] if row.get("error") else None
            out.append(
                StepStatus(
                    seq=seq,
                    name=row["name"],
                    state=row["state"],
                    attempts=int(row["attempts"] or 0),
                    started_at=parse_ts(row.get("started_at")),
                    completed_at=parse_ts(row.get("completed_at")),
                    error=error,
                    retry_at=parse_ts(row.get("retry_at")),
                )
            )
        except CorruptRecord:
            raise
        except Exception as exc:
            raise CorruptRecord(run_id, "steps", str(exc)) from exc
    return out


def damage_info(exc: BaseException) -> ErrorInfo:
    """The :class:`ErrorInfo` a listing shows for a run whose row cannot be read."""
    return ErrorInfo(type=f"actorflow.{type(exc).__name__}", message=str(exc), traceback="")


def status_from_row(row: Mapping[str, Any], codec: Codec, *, strict: bool = True) -> RunStatus:
    """Build a :class:`RunStatus` from a ``runs`` row, checking and decoding its stored values.

    Args:
        row: the row.
        codec: the runtime's (or view's) codec.
        strict: raise for a value that cannot be read; False (listings) shows the run
            with that value None and the reason as its ``error`` (a run whose state
            cannot be read is shown ``failed``), so one damaged row does not hide the others.

    Raises:
        CorruptRecord: a column cannot be decoded (the row was edited or damaged);
            :class:`~actorflow.TamperedRecord` when its signature does not verify, or a
            value its state needs (a completed run's result, a failed run's error) is missing.
    """
    try:
        return _status(row, codec)
    except Exception:  # noqa: BLE001 - a damaged row: read again field by field, to say which or show the rest
        return _careful_status(row, codec, strict=strict)


def _status(row: Mapping[str, Any], codec: Codec) -> RunStatus:
    """The status of a row that reads cleanly (the hot path: every ``result()`` comes here)."""
    run_id = row["id"]
    if row.get("codec") is not None and row["codec"] != codec.name:
        raise SerializerMismatch(run_id, row["codec"], codec.name)
    try:
        state = State(row["state"])
    except (KeyError, ValueError):
        raise CorruptRecord(run_id, "state", f"unknown state {row.get('state')!r}") from None
    loads = codec.loads
    error = _error_of(row, codec, run_id, required=state in (State.FAILED, State.TIMED_OUT))
    metadata = loads(row["metadata"], run_id, METADATA) if row.get("metadata") is not None else None
    result = loads(row.get("result"), run_id, RESULT, required=True) if state is State.COMPLETED else None
    progress = loads(row["progress"], run_id, PROGRESS) if row.get("progress") is not None else None
    waiting_for = json.loads(row["waiting_for"]) if row.get("waiting_for") is not None else None
    times = [parse_ts(row.get(c)) for c in ("created_at", "started_at", "completed_at", "wake_at")]
    return _assemble(row, run_id, state, result, error, times, progress, int(row.get("attempt") or 0), metadata, waiting_for)


def _assemble(row: Mapping[str, Any], run_id: str, state: State, result: Any, error: ErrorInfo | None,
              times: Sequence[_dt.datetime | None], progress: Any, attempt: int, metadata: Any, waiting_for: Any) -> RunStatus:  # fmt: skip
    """A :class:`RunStatus` from a row's decoded values (``times``: created, started, completed, wake-up)."""
    return RunStatus(
        id=run_id,
        flow=str(row.get("flow") or "?"),
        state=state,
        result=result,
        error=error,
        created_at=times[0],
        started_at=times[1],
        completed_at=times[2],
        progress=progress,
        parent_id=row.get("parent_id"),
        attempt=attempt,
        metadata=metadata if isinstance(metadata, dict) else {},
        cancel_requested=bool(row.get("cancel_requested")),
        waiting_for=waiting_for if isinstance(waiting_for, dict) else None,
        wake_at=times[3],
        detached=bool(row.get("detached")),
    )


def _careful_status(row: Mapping[str, Any], codec: Codec, *, strict: bool = False) -> RunStatus:
    """The status of a damaged row, read field by field: what cannot be read is None, the first reason its error."""
    run_id = str(row.get("id", "?"))
    damage: list[JournalError] = []

    def read(column: str, decode: Callable[[], Any], default: Any = None) -> Any:
        try:
            return decode()
        except CorruptRecord as exc:
            if strict:
                raise
            damage.append(exc)
        except Exception as exc:
            error = CorruptRecord(run_id, column, f"{type(exc).__name__}: {exc}")
            if strict:
                raise error from exc
            damage.append(error)
        return default

    if row.get("codec") is not None and row["codec"] != codec.name:
        mismatch = SerializerMismatch(run_id, row["codec"], codec.name)
        if strict:
            raise mismatch
        damage.append(mismatch)

    def state_of() -> State:
        try:
            return State(row["state"])
        except (KeyError, ValueError):
            raise CorruptRecord(run_id, "state", f"unknown state {row.get('state')!r}") from None

    state = read("state", state_of, State.FAILED)
    ended_badly = state in (State.FAILED, State.TIMED_OUT)
    error = read("error", lambda: _error_of(row, codec, run_id, required=ended_badly and not damage))
    created, started, completed = (_read_time(read, row, column) for column in ("created_at", "started_at", "completed_at"))
    metadata = read("metadata", lambda: codec.loads(row.get("metadata"), run_id, METADATA))
    result = None
    if state is State.COMPLETED:
        result = read("result", lambda: codec.loads(row.get("result"), run_id, RESULT, required=True))
    progress = read("progress", lambda: codec.loads(row.get("progress"), run_id, PROGRESS))
    attempt = read("attempt", lambda: int(row.get("attempt") or 0), 0)
    waiting_for = read("waiting_for", lambda: _decode(run_id, "waiting_for", row.get("waiting_for"), json.loads))
    wake_at = read("wake_at", lambda: parse_ts(row.get("wake_at")))
    if damage:
        error = damage_info(damage[0])
    return _assemble(row, run_id, state, result, error, (created, started, completed, wake_at), progress, attempt, metadata,
                     waiting_for)  # fmt: skip


def _read_time(read: Callable[..., Any], row: Mapping[str, Any], column: str) -> _dt.datetime | None:
    value: _dt.datetime | None = read(column, lambda: parse_ts(row.get(column)))
    return value


def _error_of(row: Mapping[str, Any], codec: Codec, run_id: str, *, required: bool) -> ErrorInfo | None:
    """A run's recorded error; a failed or timed-out run without one has been tampered with."""
    if row.get("error") is None:
        if required and codec.verifies:
            raise TamperedRecord(run_id, "error", "a failed run without its error")
        return None
    return codec.load_error(row["error"], run_id)[0]


def _decode(run_id: str, column: str, data: Any, decode: Callable[[Any], Any]) -> Any:
    """``decode(data)`` (None stays None); a value that cannot be decoded is a :class:`CorruptRecord`."""
    if data is None:
        return None
    try:
        return decode(data)
    except Exception as exc:
        raise CorruptRecord(run_id, column, str(exc)) from exc


def result_from_row(row: Mapping[str, Any], codec: Codec) -> Any:
    """The value of a finished run's row, or raise how it ended.

    Raises:
        RunFailed: the flow raised (its exception as ``__cause__`` when it can be rebuilt).
        RunCancelled: the run was cancelled.
        RunTimedOut: the run exceeded its flow timeout.
        TamperedRecord: its result or error does not verify.
        LookupError: the run has not finished.
    """
    status = status_from_row(row, codec)
    run_id = status.id
    if status.state is State.COMPLETED:
        return status.result
    if status.state is State.CANCELLED:
        raise RunCancelled(f"run {run_id} ({status.flow}) was cancelled", run_id=run_id)
    if status.state is State.TIMED_OUT:
        raise RunTimedOut(f"run {run_id} ({status.flow}) exceeded its flow timeout", run_id=run_id)
    if status.state is State.FAILED:
        cause = codec.load_error(row["error"], run_id)[1] if row.get("error") else None
        raise RunFailed(f"run {run_id} ({status.flow}) failed: {status.error}", run_id=run_id, error=status.error) from cause
    raise LookupError(f"run {run_id} has not finished (it is {status.state.value})")


class RunTree(list[tuple[int, RunStatus]]):
    """A run and its descendants as ``(depth, status)``, depth first; prints as an indented table."""

    def __repr__(self) -> str:
        if not self:
            return "RunTree (no runs)"
        rows = []
        for depth, s in self:
            if s.state is State.COMPLETED:
                outcome = _short(s.result, 30)
            elif s.error is not None:
                outcome = _short(str(s.error), 30)
            else:
                outcome = ""
            rows.append(("  " * depth + s.id, s.flow, s.state.value, outcome))
        return format_table(("run", "flow", "state", "result/error"), rows)
