"""Every message the actors exchange, as frozen dataclasses, grouped by the actor that receives it.

Three of them are public: :class:`StartRun`, :class:`CancelRun` and :class:`SendEvent`
may be sent to ``rt.supervisor`` by any pykka actor or thread of a service::

    run_id = rt.supervisor.ask(StartRun(greet, args=("ada",)))   # returns once committed
    rt.supervisor.tell(StartRun(greet, args=("bob",)))          # fire-and-forget

Messages carrying a ``reply_to`` future are answered through it; without one, the
receiving actor answers the ``ask`` itself (and a ``tell`` gets no answer).
The rest are internal: they are listed here so that a reader can see, in one place,
everything that flows caller → supervisor → execution actor → journal → registry → caller.

Besides messages, five side channels carry what the hot paths must not wait for a message
for. Each is a plain object shared by two actors, named here once:

``supervisor.Pressure``
    shared by the supervisor and its executions: ``ended`` (the runs whose execution has
    ended, read by the supervisor before each message, so an end needs no message unless
    ``prompt``), ``queued`` (runs waiting for a slot: a waiting run gives its slot up at
    once while any do), ``prompt`` (the supervisor must hear of an end at once).
``Registry.watched``
    a set shared by the registry and the journal: the runs whose end something waits for.
    The journal tells the registry of an end (:class:`Committed`) only for those.
``StartRun.done``
    the future of the handle ``Runtime.start`` returns, resolved by the journal with the
    run's final row when it commits the run's end here: ``result()`` then asks nobody.
``_future.Admission``
    the future of a run admitted as it was started (:class:`InsertRun` ``admitted``): its
    ``then`` starts the run's execution loop once the insert is committed.
``context.RunControl``
    flags shared by the supervisor and a run's execution: cancel, abandon, timed out,
    shutting down, and the events that wake a waiting execution (``interrupt``, ``poke``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pykka

__all__ = ["CancelRun", "SendEvent", "StartRun"]


Row = dict[str, Any]
"""A ``runs`` row as a dict of column values, as the journal stores it."""

# --------------------------------------------------------------------------------------
# Supervisor (public)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartRun:
    """Start a run of ``flow`` with ``args``/``kwargs``.

    Sent with ``ask`` the answer is the run id, once the run is committed; sent with
    ``tell`` the run starts fire-and-forget (an error, such as an unserializable
    argument, is then logged and nothing is written).

    Attributes:
        flow: a flow (``@actorflow.flow``) or a plain function taking ``ctx`` first.
        args: positional arguments for the flow, after ``ctx``.
        kwargs: keyword arguments for the flow.
        metadata: a dict stored with the run and shown in its status.
        idempotency_key: if a run with this key exists, its id is returned instead of
            starting another run.
        parent_id: the id of the run that starts this one (set by ``ctx.start``).
        run_id: the id to give the run (derived for child runs); new if None.
        reply_to: a future resolved with the run id (or the error) once committed.
        detached: a child run that outlives its parent (not cancelled with it).
        done: a future resolved with the run's final row once this runtime commits the
            run's end (not if the run ends elsewhere: in another process, or while its
            execution is not the one started here). ``RunHandle.result`` reads it first.
        checked: the arguments were bound to the flow's signature and validated already
            (by ``Runtime.start`` or ``ctx.start``, in the caller's thread); False makes the
            supervisor do it.
    """

    flow: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] | None = None
    idempotency_key: str | None = None
    parent_id: str | None = None
    run_id: str | None = None
    reply_to: pykka.Future[Any] | None = None
    detached: bool | None = None
    done: pykka.Future[Any] | None = None
    checked: bool = False


@dataclass(frozen=True)
class CancelRun:
    """Cancel a run. The answer is True if this request cancelled it, False if it had finished.

    Attributes:
        run_id: the run to cancel.
        reply_to: a future resolved with the answer.
    """

    run_id: str
    reply_to: pykka.Future[Any] | None = None


@dataclass(frozen=True)
class SendEvent:
    """Deliver ``payload`` on ``topic`` to a run (durably); the answer is the event's id.

    Attributes:
        run_id: the run; None with ``hook`` set.
        topic: the topic ``ctx.wait_event`` waits on.
        payload: any serializable value.
        hook: a hook token (``rt.resume_hook``): the run holding it gets the payload.
        reply_to: resolved once the event is committed.
    """

    run_id: str | None
    topic: str
    payload: Any = None
    hook: str | None = None
    reply_to: pykka.Future[Any] | None = None


# --------------------------------------------------------------------------------------
# Supervisor (internal)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunCommitted:
    """Journal → supervisor: the run's row is committed; spawn its execution actor."""

    row: Row


@dataclass(frozen=True)
class RunEnded:
    """Execution actor → supervisor: wake up, a run's execution has ended.

    The end itself is handed over in ``supervisor.Pressure.ended`` (read before every
    message); this message is sent only while the supervisor waits for ends.
    """

    run_id: str


@dataclass(frozen=True)
class WatchDeadline:
    """Execution actor → supervisor: end the run as ``timed_out`` at ``at`` (epoch seconds) if it runs still."""

    run_id: str
    at: float


@dataclass(frozen=True)
class DeadlineReached:
    """Timer → supervisor: a run's flow timeout has passed."""

    run_id: str


@dataclass(frozen=True)
class RunsCancelled:
    """Journal → supervisor: cancellations committed; flag the executing runs, forget the waiting ones."""

    executing: tuple[str, ...]
    ended: tuple[str, ...]


@dataclass(frozen=True)
class Claimed:
    """Journal → supervisor: runs this runtime now holds (taken over, or pending ones claimed)."""

    rows: tuple[Row, ...]


@dataclass(frozen=True)
class LeaseLost:
    """Journal → supervisor: this runtime's lease had expired; its runs may have been taken over."""


@dataclass(frozen=True)
class Tick:
    """Timer → supervisor: renew the lease, look for runs to take over or claim."""


@dataclass(frozen=True)
class ExternalChanges:
    """Registry → supervisor: changes other processes committed to runs.

    Attributes:
        cancelled: runs whose cancellation was requested.
        ended: runs that reached a terminal state.
        events: ``(run id, topic)`` of events sent.
    """

    cancelled: tuple[str, ...] = ()
    ended: tuple[str, ...] = ()
    events: tuple[tuple[str, str, int], ...] = ()


@dataclass(frozen=True)
class Passivated:
    """Execution actor → supervisor: the run waits (its state is ``waiting``) and its actor has ended.

    Attributes:
        run_id: the run.
        wait: the number of the wait (its ``seq``), matched against :class:`Wake`.
        wake_at: epoch seconds at which to wake it anyway (a wait's timeout), or None.
    """

    run_id: str
    wait: int
    wake_at: float | None = None
    topic: str | None = None
    queue: str | None = None
    watermark: int = 0


@dataclass(frozen=True)
class EventArrived:
    """Journal → supervisor: an event for the run is committed; wake it if it waits for one."""

    run_id: str
    topic: str
    event_id: int = 0


@dataclass(frozen=True)
class Wake:
    """Registry or timer → supervisor: what the run waits for (wait number ``wait``) has happened."""

    run_id: str
    wait: int


@dataclass(frozen=True)
class Drain:
    """Runtime → supervisor: take no more runs; resolve ``reply_to`` when none is executing."""

    reply_to: pykka.Future[Any]


@dataclass(frozen=True)
class Abandon:
    """Runtime → supervisor: tell every execution actor still running to stop at its next cancellation point."""


# --------------------------------------------------------------------------------------
# Journal (internal): writes are committed in groups; ``reply_to`` is resolved after commit
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InsertRun:
    """Insert a new run row; answers its id (the existing run's id for a repeated id or idempotency key).

    ``admitted`` (for a run inserted as already running) is resolved with True if this
    insert created the run, False if the run existed already.
    """

    row: Row
    reply_to: pykka.Future[Any] | None = None
    notify: pykka.ActorRef[Any] | None = None
    admitted: pykka.Future[Any] | None = None


@dataclass(frozen=True)
class ClaimRun:
    """Mark a run ``running`` for a new attempt; answers ``(row, step rows)``, or None if it is finished.

    ``deadline`` is the flow timeout's end if this is the run's first start (an earlier
    deadline in the row is kept).
    """

    run_id: str
    owner: str
    at: str
    deadline: str | None = None
    reply_to: pykka.Future[Any] | None = None


@dataclass(frozen=True)
class StepStarted:
    """A step attempt begins (recorded so that a recovery knows it was in flight).

    Answers True, or False when the run has already ended (the step must not run).
    """

    run_id: str
    seq: int
    name: str
    attempt: int
    at: str
    wake_at: str | None = None
    reply_to: pykka.Future[Any] | None = None


@dataclass(frozen=True)
class Sleep:
    """A long ``ctx.sleep``: record its wake-up time (call ``seq``) and set the run waiting, in one go.

    Answers like :class:`SetWaiting`.
    """

    run_id: str
    seq: int
    at: str
    wake_at: str
    waiting_for: str
    kind: str = "sleep"
    reply_to: pykka.Future[Any] | None = None


@dataclass(frozen=True)
class StepAttemptFailed:
    """A step attempt failed and will be retried at ``retry_at``; recorded as a ``step_retry`` event."""

    run_id: str
    seq: int
    name: str
    attempt: int
    error: str
    summary: str
    retry_in: float
    retry_at: str
    at: str
    reply_to: pykka.Future[Any] | None = None


@dataclass(frozen=True)
class SaveStep:
    """Checkpoint a call's outcome (``completed`` with a result, or ``failed`` with an error).

    Refused (answers False) when the run has already ended.
    """

    run_id: str
    seq: int
    name: str
    state: str
    attempts: int
    at: str
    result: str | bytes | None = None
    error: str | None = None
    started_at: str | None = None
    reply_to: pykka.Future[Any] | None = None


@dataclass(frozen=True)
class RetryRun:
    """Start a new attempt of a whole flow (its retry policy): attempt + 1, failed calls forgotten."""

    run_id: str
    summary: str
    delay: float
    at: str
    reply_to: pykka.Future[Any] | None = None


@dataclass(frozen=True)
class ReleaseRun:
    """Clear the owner of a run the runtime gave up at shutdown (its next start is not a recovery)."""

    run_id: str
    owner: str


@dataclass(frozen=True)
class SaveProgress:
    """Store the latest progress value of a run."""

    run_id: str
    progress: str | bytes
    at: str


@dataclass(frozen=True)
class FinishRun:
    """Move a run to a terminal state, unless it is in one already.

    A run whose cancellation was requested ends ``cancelled`` whatever the flow returned.
    ``done``, if set, is resolved with the run's final row once the end is committed.
    """

    run_id: str
    state: str
    at: str
    result: str | bytes | None = None
    error: str | None = None
    reply_to: pykka.Future[Any] | None = None
    cascade: pykka.ActorRef[Any] | None = None
    """If set (the run started children), cancel the unfinished ones and tell this supervisor."""
    done: pykka.Future[Any] | None = None


@dataclass(frozen=True)
class RequestCancel:
    """Cancel a pending or waiting run at once, or record the request for an executing one.

    The run's unfinished, not detached descendants are cancelled with it. Answers
    True/False (False: the run had already finished); ``notify`` is told which runs
    were affected (:class:`RunsCancelled`).
    """

    run_id: str
    at: str
    reply_to: pykka.Future[Any] | None = None
    notify: pykka.ActorRef[Any] | None = None


@dataclass(frozen=True)
class SetWaiting:
    """The run gives up its execution actor until ``waiting_for`` is met (or ``wake_at``).

    Answers ``(answer, watermark)`` with a :class:`~actorflow.store.WaitAnswer`: ``WAITING``;
    ``EVENT_READY`` if the run waits for an event on ``topic`` and one is there already
    (nothing changes); ``CANCEL_REQUESTED`` if a cancel was accepted meanwhile (the run
    stays running, to end as cancelled); or ``GONE`` if the run has ended or another
    runtime holds it. ``watermark`` is the id of the run's newest event when it started waiting.
    """

    run_id: str
    waiting_for: str
    wake_at: str | None
    at: str
    topic: str | None = None
    wait: int | None = None
    kind: str | None = None
    reply_to: pykka.Future[Any] | None = None


@dataclass(frozen=True)
class InsertEvent:
    """Store an event for a run (or for the run holding ``hook``); answers its id.

    Raises RunNotFound / RunFinished / HookNotFound to the sender.
    """

    run_id: str | None
    topic: str
    payload: str | bytes
    at: str
    hook: str | None = None
    reply_to: pykka.Future[Any] | None = None
    notify: pykka.ActorRef[Any] | None = None


@dataclass(frozen=True)
class TakeEvent:
    """Consume the oldest unconsumed event of ``topic`` for the run and checkpoint it as call ``seq``.

    Answers the payload's stored data, or None when there is none yet. Taking and
    checkpointing are one transaction: an event is delivered exactly once.
    """

    run_id: str
    topic: str
    seq: int
    name: str
    at: str
    reply_to: pykka.Future[Any] | None = None


@dataclass(frozen=True)
class RegisterHook:
    """Give the run the hook ``token`` and checkpoint it as call ``seq`` (``result``: the token, signed); raises HookConflict."""

    run_id: str
    token: str
    seq: int
    at: str
    result: str | bytes
    reply_to: pykka.Future[Any] | None = None


@dataclass(frozen=True)
class WriteChunk:
    """Append a chunk to a run's stream (checkpointed as call ``seq``, so a replay writes nothing)."""

    run_id: str
    namespace: str
    seq: int
    data: str | bytes | None
    at: str
    close: bool = False
    result: str | bytes | None = None
    notify: pykka.ActorRef[Any] | None = None


@dataclass(frozen=True)
class Purge:
    """Delete finished runs (``states``) completed before ``before``, with their children and records.

    Unfinished runs are never deleted. Answers the number of runs deleted.
    """

    before: str
    states: tuple[str, ...]
    reply_to: pykka.Future[Any] | None = None


@dataclass(frozen=True)
class RegisterRuntime:
    """Record this runtime (process, host) and its first lease in the ``runtimes`` table."""

    now: float
    lease_until: float
    at: str
    slots: int = 0
    reply_to: pykka.Future[Any] | None = None


@dataclass(frozen=True)
class RenewLease:
    """Extend this runtime's lease; answers False if it had expired (its runs may have been taken over)."""

    now: float
    lease_until: float
    reply_to: pykka.Future[Any] | None = None
    notify: pykka.ActorRef[Any] | None = None


@dataclass(frozen=True)
class ClaimOrphans:
    """Take over the runs of runtimes that are gone, and claim up to ``free`` pending runs.

    ``notify`` is told :class:`Claimed` with the rows; the answer is how many.
    """

    now: float
    at: str
    free: int
    takeover_limit: int
    queue_limits: Mapping[str, int] = field(default_factory=dict)
    notify: pykka.ActorRef[Any] | None = None
    reply_to: pykka.Future[Any] | None = None


@dataclass(frozen=True)
class Requeue:
    """A waiting run of a named queue was woken: make it ``pending`` again, to be claimed within the limit."""

    run_id: str
    reply_to: pykka.Future[Any] | None = None


@dataclass(frozen=True)
class ReleaseAll:
    """Give up this runtime's unfinished runs for others (or itself) to take at once.

    At shutdown the lease goes too; after a lost lease (``keep_lease``) it is kept.
    """

    keep_lease: bool = False
    reply_to: pykka.Future[Any] | None = None


@dataclass(frozen=True)
class Flush:
    """Ask the journal to commit every write it holds now (it does so by itself when idle)."""


# --------------------------------------------------------------------------------------
# Registry (internal)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Committed:
    """Journal → registry: these changes to runs are committed (each a run id and the changed columns)."""

    changes: tuple[tuple[str, Row], ...]


@dataclass(frozen=True)
class Watch:
    """Resolve ``future`` with the run's final row once the run is in a terminal state."""

    run_id: str
    future: pykka.Future[Any]


@dataclass(frozen=True)
class Unwatch:
    """Forget a waiter that gave up (its timeout passed)."""

    run_id: str
    future: pykka.Future[Any]


@dataclass(frozen=True)
class GetRun:
    """Ask: the run's current row, or None if there is no such run."""

    run_id: str


@dataclass(frozen=True)
class AwaitRuns:
    """Execution actor → registry: resolve ``reply_to`` (and wake the waiter) once the runs settle.

    Attributes:
        waiter: the waiting run's id.
        wait: the number of the wait (its ``seq``).
        run_ids: the runs waited for.
        mode: ``"all"`` (every run ended), ``"all_or_failure"`` (every run ended, or one
            ended other than completed) or ``"first"`` (any run ended).
        reply_to: resolved with ``{run id: final row}`` of the runs ended so far.
        notify: told :class:`Wake` at the same moment (the supervisor), in case the
            waiter has given up its actor meanwhile.
    """

    waiter: str
    wait: int
    run_ids: tuple[str, ...]
    mode: str
    reply_to: pykka.Future[Any]
    notify: pykka.ActorRef[Any]


@dataclass(frozen=True)
class GetRuns:
    """Ask: ``{run id: row}`` for these ids (missing ids are left out)."""

    run_ids: tuple[str, ...]


@dataclass(frozen=True)
class GetTree:
    """Ask: ``[(depth, row), ...]`` of a run and its descendants, depth first."""

    run_id: str


@dataclass(frozen=True)
class ChunkWritten:
    """Journal → registry: a chunk is committed (wake the stream readers)."""

    run_id: str
    namespace: str
    index: int


@dataclass(frozen=True)
class UnwatchChunks:
    """Forget a stream reader that gave up (its timeout passed)."""

    run_id: str
    future: pykka.Future[Any]


@dataclass(frozen=True)
class Poll:
    """Timer → registry: read what other processes committed since the last poll; tell ``notify``."""

    notify: pykka.ActorRef[Any] | None = None


@dataclass(frozen=True)
class GetChunks:
    """Ask: ``(chunks, run_finished)``: chunks ``(index, data, closed)`` from ``start``, at most ``limit``."""

    run_id: str
    namespace: str
    start: int
    limit: int = 1000


@dataclass(frozen=True)
class WatchChunks:
    """Resolve ``future`` once the stream has a chunk at ``start`` or later, or the run has ended."""

    run_id: str
    namespace: str
    start: int
    future: pykka.Future[Any]


@dataclass(frozen=True)
class GetSteps:
    """Ask: the run's ``steps`` rows in call order."""

    run_id: str


@dataclass(frozen=True)
class ListRuns:
    """Ask: rows of runs matching the filters, newest first."""

    state: str | None = None
    flow: str | None = None
    parent_id: str | None = None
    limit: int = 100


@dataclass(frozen=True)
class CountExecutors:
    """Ask: how many live runtimes other than ``besides`` execute runs."""

    now: float
    besides: str


@dataclass(frozen=True)
class CountByState:
    """Ask: a dict of state → number of runs in the journal."""
