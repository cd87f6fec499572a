"""The supervisor actor: starts runs, spawns their execution actors, limits concurrency.

It receives :class:`~actorflow.messages.StartRun` from ``Runtime.start`` or from any
other actor of the service, turns it into a row (serializing the arguments: a value that
cannot be stored is refused here, with the argument named, and nothing is written), and
hands the row to the journal. With a free slot the run is inserted as running and its
:class:`~actorflow.execution.Execution` actor spawned at once (its loop starts when the
insert is committed); otherwise it is inserted pending and queued here (or, in a named
queue, left for a claim). Every ``poll_interval`` a tick renews the runtime's lease, has the registry read
what other processes committed, and claims runs from the journal
(:class:`~actorflow.messages.ClaimOrphans`): those of runtimes that are gone, including a
previous process on the same file (that is recovery at open), and pending ones for free
slots. It also keeps the passivated runs and wakes them (timers, events, children).
"""

from __future__ import annotations

import collections
import enum
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pykka

from . import messages as m
from . import signing
from ._actor import Actor, tell
from ._future import Admission, Reply
from ._ids import new_run_id
from ._pool import WorkerPool
from ._time import epoch, iso, now_iso
from .clock import Clock, SystemClock
from .codec import Codec
from .context import RunControl
from .errors import RuntimeClosed, RunTimedOut, SerializationError
from .execution import Execution, Links
from .flows import check_arguments, flow_name, flow_timeout, run_options
from .serialization import describe_unserializable, flow_reference
from .steps import FlowThread
from .timers import Timers
from .waits import WaitKind

__all__ = ["LocalRun", "Phase", "Pressure", "Settings", "Supervisor"]


log = logging.getLogger("actorflow")


class Pressure:
    """What the supervisor shares with its executions (thread-safe).

    Attributes:
        queued: how many runs wait for a slot; an execution that waits gives its slot up at
            once while any do.
        ended: ids of runs whose execution has ended, appended by the executions. The
            supervisor reads them before each message it handles (and at each tick), so
            that a run's end does not have to wake its thread.
        prompt: True while the supervisor must hear of an end at once (runs wait for a
            slot or may be claimed, it is shutting down, or its lease was lost): an
            execution that ends then also tells it :class:`~actorflow.messages.RunEnded`.
    """

    __slots__ = ("ended", "prompt", "queued")

    def __init__(self) -> None:
        self.queued = 0
        self.ended: collections.deque[str] = collections.deque()
        self.prompt = False


class Phase(enum.Enum):
    """Where a run this runtime holds stands, here."""

    READY = "ready"
    """Admitted, waiting for a slot (see ``Supervisor._ready``)."""
    EXECUTING = "executing"
    """Its execution actor runs."""
    WAITING = "waiting"
    """Passivated: kept until its wait is met (a timer, an event, other runs' ends)."""
    GONE = "gone"
    """No longer held here (a record being dropped)."""


@dataclass(eq=False, slots=True)
class LocalRun:
    """What the supervisor keeps about one run it holds: one record per run.

    Attributes:
        id: the run's id.
        phase: where it stands here.
        row: ``READY``: the row its execution starts from.
        control: ``EXECUTING``: the flags shared with its execution.
        wait: ``WAITING``: the number of the call that waits.
        topic: ``WAITING``: the event topic that wakes it, if any.
        queue: ``WAITING``: its named queue, if any (it resumes through it).
        gone: ``EXECUTING``: it ended (cancelled) while it was giving up its actor.
        abandoned: ``EXECUTING``: this runtime lost its lease; release the run once it stops.
        poked: ``EXECUTING``: the id of the newest event that arrived for it.
        woken: ``EXECUTING``: the number of its wait that was met while it still executed.
    """

    id: str
    phase: Phase
    row: m.Row | None = None
    control: RunControl | None = None
    wait: int = 0
    topic: str | None = None
    queue: str | None = None
    gone: bool = False
    abandoned: bool = False
    poked: int = 0
    woken: int | None = None


@dataclass(frozen=True)
class Settings:
    """How a runtime's supervisor and executions behave (from ``Runtime(...)``'s options).

    Attributes:
        concurrency: how many runs may execute at once; more wait as ``pending``. 0 makes
            a client: it starts, inspects and signals runs, and other runtimes execute them.
        runtime: this runtime's id: the owner of the runs it holds.
        answer_timeout: how long an ``ask`` without ``reply_to`` waits for the journal.
        max_recoveries: a run recovered more often than this fails instead of executing.
        passivate_after: seconds a run may wait while holding its thread before it gives
            up its actor (at once when other runs are queued for a slot).
        clock: where wake-up times are read (a :class:`~actorflow.ManualClock` in tests).
        retention: if set, finished runs older than this many seconds are purged
            periodically (every tenth of it, between 1 s and 5 min).
        lease: seconds this runtime holds its runs without renewing (it renews every third).
        poll_interval: seconds between looks at the journal for other processes' changes
            and for runs to take over or claim.
        queues: the most runs of each named queue running at once, across processes.
        recover: take over and resume unfinished runs whose runtime is gone.
    """

    concurrency: int
    runtime: str
    answer_timeout: float = 30.0
    max_recoveries: int = 10
    passivate_after: float = 1.0
    clock: Clock = field(default_factory=SystemClock)
    retention: float | None = None
    lease: float = 10.0
    poll_interval: float = 0.25
    queues: Mapping[str, int] = field(default_factory=dict)
    recover: bool = True


class Supervisor(Actor):
    """Spawns and limits execution actors.

    Args:
        settings: how it behaves (see :class:`Settings`).
        journal: the journal actor.
        registry: the registry actor.
        codec: serializes and signs arguments, metadata and results.
    """

    def __init__(self, settings: Settings, journal: pykka.ActorRef[Any], registry: pykka.ActorRef[Any], codec: Codec) -> None:
        super().__init__()
        self._settings = settings
        concurrency = settings.concurrency
        self._recover_runs = settings.recover
        self._retention = settings.retention
        self._lease = settings.lease
        self._poll_interval = settings.poll_interval
        self._queues = dict(settings.queues)
        self._renew_at = 0.0
        self._claiming = False
        self._backlog = False  # the journal may hold pending runs this runtime could claim
        self._last_free = 0
        self._clock: Clock = settings.clock
        self._registry = registry
        self._timers = Timers(clock=self._clock.time)
        self._journal = journal
        self._codec = codec
        self._concurrency = concurrency
        self._owner = settings.runtime
        self._answer_timeout = settings.answer_timeout
        # one record per run this runtime holds, by id (see LocalRun), and the order of the
        # ready ones; counts kept beside them for the hot path
        self._runs: dict[str, LocalRun] = {}
        self._ready: collections.deque[str] = collections.deque()
        self._executing = 0
        self._abandoned = 0  # executing runs to release once they stop
        self.pressure = Pressure()
        self._closing = False
        self._drained: list[pykka.Future[Any]] = []
        self._pool = WorkerPool(concurrency, name="actorflow-run", thread_class=FlowThread)
        self._refs: dict[Any, tuple[str, bytes | None]] = {}  # flow → import reference

    def on_start(self) -> None:
        """Start the housekeeping ticks (the first at once: it recovers runs left unfinished)."""
        settings = self._settings
        self._links = Links(self._journal, self.actor_ref, self._registry, self._codec, settings.runtime, self._pool,
                            settings.max_recoveries, self.pressure, settings.passivate_after, self._clock)  # fmt: skip
        if self._retention is not None:
            self._schedule_purge()
        ref, timers, every = self.actor_ref, self._timers, self._poll_interval

        def tick() -> None:
            if ref.is_alive():
                ref.tell(m.Tick())
                timers.call_later_real(every, tick)

        timers.call_later_real(0, tick)

    def _tick(self) -> None:
        """Renew the lease; read other processes' changes; take over or claim runs."""
        now = time.time()  # leases are real time, whatever the runtime's clock
        if now >= self._renew_at:
            self._renew_at = now + self._lease / 3
            self._journal.tell(m.RenewLease(now, now + self._lease, notify=self.actor_ref))
        self._registry.tell(m.Poll(notify=self.actor_ref))
        self._claim()

    def _claim(self) -> None:
        """Ask the journal for runs of dead runtimes, and pending runs for the free slots."""
        if self._closing or self._claiming:
            return
        if not self._recover_runs or self._concurrency == 0:  # a client runtime executes nothing
            return
        free = max(0, self._concurrency - self._executing - len(self._ready))
        self._last_free = free
        self._claiming = True
        self._journal.tell(
            m.ClaimOrphans(time.time(), now_iso(), free, max(free, 16), self._queues, notify=self.actor_ref)
        )

    def _schedule_purge(self) -> None:
        assert self._retention is not None
        every = min(max(self._retention / 10, 1.0), 300.0)
        retention, journal, ref = self._retention, self._journal, self.actor_ref

        def purge() -> None:  # real time: ages are measured against the recorded completed_at
            journal.tell(m.Purge(iso(time.time() - retention), ("completed", "failed", "cancelled", "timed_out")))
            if ref.is_alive():
                self._timers.call_later_real(every, purge)

        self._timers.call_later_real(every, purge)

    def on_stop(self) -> None:
        """Stop the timers; let the worker threads go once their runs have stopped."""
        self._timers.stop()
        self._pool.shutdown(timeout=1.0)

    def handle(self, message: Any) -> Any:
        """Read the runs that have ended, then dispatch one message."""
        self._read_ends()
        try:
            return self._dispatch(message)
        finally:
            pressure = self.pressure
            pressure.prompt = bool(self._ready or self._backlog or self._closing or self._abandoned)
            if pressure.prompt:
                self._read_ends()  # one that ended just before prompt was set did not tell

    def _read_ends(self) -> None:
        """Take in the runs whose execution has ended (see :class:`Pressure`)."""
        ended = self.pressure.ended
        while ended:
            run_id = ended.popleft()
            try:
                self._ended(run_id)
            except Exception:  # not the fault of the message about to be handled
                log.exception("supervisor: taking in the end of run %s failed", run_id)

    def _ended(self, run_id: str) -> None:
        """A run's execution has ended: free its slot, and fill it."""
        run = self._runs.get(run_id)
        if run is not None and run.phase is Phase.EXECUTING:
            self._drop(run)
            self._release_if_abandoned(run)
        self._fill()
        if not self._ready and self._backlog:
            self._claim()  # a free slot, and the journal may hold pending runs: take one now

    def _dispatch(self, message: Any) -> Any:
        """One handler per message."""
        match message:
            case m.StartRun():
                return self._answer(message.reply_to, self._start, message)
            case m.CancelRun():
                return self._answer(message.reply_to, self._cancel, message)
            case m.SendEvent():
                return self._answer(message.reply_to, self._send_event, message)
            case m.RunCommitted():
                self._admit(message.row)
            case m.RunEnded():
                pass  # a wake-up: the end was read from Pressure.ended before this message
            case m.Passivated():
                self._passivated(message)
            case m.Wake():
                self._woke(message)
            case m.EventArrived():
                self._event_arrived(message)
            case m.RunsCancelled():
                self._runs_cancelled(message)
            case m.Tick():
                self._tick()
            case m.Claimed():
                self._claimed(message)
            case m.LeaseLost():
                self._lease_lost()
            case m.ExternalChanges():
                self._external(message)
            case m.Drain():
                self._drain(message)
            case m.Abandon():
                self._abandon()
            case m.WatchDeadline():
                ref, reached = self.actor_ref, m.DeadlineReached(message.run_id)
                self._timers.call_at(message.at, lambda: ref.tell(reached))
            case m.DeadlineReached():
                self._deadline(message.run_id)
            case _:
                return super().handle(message)
        return None

    def _passivated(self, message: m.Passivated) -> None:
        """A run gave up its execution actor to wait: keep it until its wait is met (or it was met meanwhile)."""
        run = self._runs.get(message.run_id)
        if run is not None and run.phase is Phase.EXECUTING:
            self._drop(run)
            if self._release_if_abandoned(run) or run.gone:  # gone: cancelled while it gave up its actor
                self._fill()
                return
        else:
            run = None
        # an event that came after the run started waiting (past its watermark) wakes it
        poked = message.topic is not None and run is not None and run.poked > message.watermark
        if (run is not None and run.woken == message.wait) or poked:  # met while it was giving up
            self._resume(message.run_id, message.queue)
        else:
            self._wait(message.run_id, message.wait, message.topic, message.wake_at, message.queue)
        self._fill()

    def _woke(self, message: m.Wake) -> None:
        """A run's wait was met (its timer, or the runs it waits for): resume it, or note it if it still executes."""
        run = self._runs.get(message.run_id)
        if run is None:
            return
        if run.phase is Phase.EXECUTING:
            run.woken = message.wait
        elif run.phase is Phase.WAITING and run.wait == message.wait:
            self._drop(run)
            self._resume(run.id, run.queue)

    def _event_arrived(self, message: m.EventArrived) -> None:
        """An event for a run was committed: wake the run if it waits for its topic."""
        run = self._runs.get(message.run_id)
        if run is None:
            return
        if run.phase is Phase.EXECUTING:
            assert run.control is not None
            run.poked = max(run.poked, message.event_id)
            run.control.poke.set()
        elif run.phase is Phase.WAITING and run.topic == message.topic:
            self._drop(run)
            self._resume(run.id, run.queue)

    def _runs_cancelled(self, message: m.RunsCancelled) -> None:
        """Cancellations the journal accepted: stop the runs executing here; forget the ended ones."""
        for run_id in message.executing:
            run = self._runs.get(run_id)
            if run is None:
                continue
            if run.phase is Phase.EXECUTING:
                assert run.control is not None
                run.control.set(run.control.cancel)
            elif run.phase is Phase.WAITING:  # passivated just before: resume it to end it
                self._drop(run)
                self._admit({"id": run_id})  # to end it: no queue slot needed
        for run_id in message.ended:
            run = self._runs.get(run_id)
            if run is not None and run.phase is Phase.WAITING:
                self._drop(run)
            elif run is not None and run.phase is Phase.EXECUTING:
                run.gone = True

    def _claimed(self, message: m.Claimed) -> None:
        """The answer to a claim: take on the runs it claimed."""
        self._claiming = False
        # a claim that found runs may have left more behind: claim again when a slot frees
        # (a claim made with no free slot says nothing about pending runs)
        if message.rows or self._last_free > 0:
            self._backlog = bool(message.rows)
        for row in message.rows:
            self._recover(row)
        if self._backlog and self._executing + len(self._ready) < self._concurrency:
            self._claim()  # slots freed while the claim was under way: claim for them now

    def _drain(self, message: m.Drain) -> None:
        """Shutting down: start nothing new; answer once every executing run has ended."""
        self._closing = True
        for control in self._controls():
            control.shutdown.set()  # ctx.shutting_down
        self._drained.append(message.reply_to)
        self._check_drained()

    def _abandon(self) -> None:
        """Shutting down without waiting longer: tell executing runs to stop, and give them up."""
        for run in self._executing_runs():
            assert run.control is not None
            run.control.set(run.control.abandon)
            # given up, not crashed: the next start of the run is not a recovery
            self._journal.tell(m.ReleaseRun(run.id, self._owner))

    def _answer(self, reply_to: pykka.Future[Any] | None, fn: Any, message: Any) -> Any:
        """Run ``fn`` with a reply future: the caller's, or one waited on here for an ``ask``."""
        future = reply_to if reply_to is not None else Reply()
        try:
            fn(message, future)
        except Exception as exc:
            if reply_to is None:
                raise
            reply_to.set_exception(exc_info=(type(exc), exc, exc.__traceback__))
            return None
        if reply_to is None:
            try:
                return future.get(timeout=self._answer_timeout)
            except pykka.Timeout:
                raise TimeoutError(f"the journal did not answer within {self._answer_timeout}s") from None
        return None

    # -- start ------------------------------------------------------------------------

    def _start(self, msg: m.StartRun, reply_to: pykka.Future[Any]) -> None:
        if self._closing and msg.parent_id is None:
            raise RuntimeClosed("the runtime is shutting down and starts no new runs")
        row = self._row(msg)
        known = row["id"] in self._runs
        if row["queue"] is not None:
            # a named queue: its limit holds across processes, so its runs are claimed from the journal
            self._journal.tell(m.InsertRun(row, reply_to=reply_to))
            self._backlog = True
            self._claim()
        elif self._executing < self._concurrency and not known and not self._closing:
            # a free slot: insert the run as already running and spawn its actor now; the
            # actor's loop starts once the journal has answered the insert
            row.update(state="running", attempt=1, started_at=row["created_at"], owner=self._owner)
            if row["timeout"]:
                row["deadline"] = iso(self._clock.time() + row["timeout"])
            admitted = Admission()
            tell(self._journal, m.InsertRun(row, reply_to=reply_to, admitted=admitted))
            self._spawn(row, inserted=admitted)
        else:
            # queued (no free slot, a repeated id of a run this supervisor holds, or a child
            # started while shutting down: it stays pending for the next open)
            self._journal.tell(m.InsertRun(row, reply_to=reply_to, notify=self.actor_ref))

    def _row(self, msg: m.StartRun) -> m.Row:
        fn = msg.flow
        if not callable(fn):
            raise TypeError(f"a run needs a flow (a function taking ctx first), not {fn!r}")
        options = run_options(fn)
        detached = msg.detached if msg.detached is not None else options.get("detached", False)
        queue = options.get("queue")
        priority = int(options.get("priority", 0))
        metadata = msg.metadata if msg.metadata is not None else options.get("metadata")
        key = msg.idempotency_key if msg.idempotency_key is not None else options.get("idempotency_key")
        if not msg.checked:
            args_t, kwargs_d = check_arguments(fn, msg.args, msg.kwargs)
        else:
            args_t, kwargs_d = tuple(msg.args), dict(msg.kwargs)
        try:
            ref, blob = self._refs[fn]
        except (KeyError, TypeError):
            ref, blob = flow_reference(fn)
            if blob is None and len(self._refs) < 4096:  # by import: the same for every run
                try:
                    self._refs[fn] = (ref, blob)
                except TypeError:  # an unhashable callable
                    pass
        run_id = msg.run_id or new_run_id()
        codec = self._codec
        try:
            meta = codec.dumps(dict(metadata), run_id, signing.METADATA) if metadata else None
        except Exception as exc:
            raise SerializationError(f"the run's metadata cannot be serialized: {exc}", argument="metadata") from exc
        at = now_iso()
        row: m.Row = {
            "id": run_id,
            "flow": flow_name(fn),
            "flow_ref": ref,
            "flow_blob": codec.seal(blob, run_id, signing.FLOW) if blob is not None else None,
            "codec": codec.name,
            "args": None,
            "kwargs": None,
            "state": "pending",
            "metadata": meta,
            "parent_id": msg.parent_id,
            "idempotency_key": key,
            "attempt": 0,
            "cancel_requested": 0,
            "owner": None,
            "started_at": None,
            "timeout": flow_timeout(fn),
            "deadline": None,
            "detached": 1 if detached else 0,
            "queue": queue,
            "priority": priority,
            "created_at": at,
            "updated_at": at,
            # not a column: the handle's future, carried with the row to the run's execution
            "_done": msg.done,
        }
        try:
            row["kwargs"] = codec.serializer.dumps(kwargs_d)
            row["args"] = codec.dumps_arguments(list(args_t), row, run_id)  # signed with the columns above
        except Exception as exc:
            named = [(f"args[{i}]", v) for i, v in enumerate(args_t)]
            named += [(f"kwargs[{k!r}]", v) for k, v in kwargs_d.items()]
            raise describe_unserializable(codec.serializer, named) or SerializationError(
                f"the arguments cannot be serialized: {exc}"
            ) from exc
        return row

    # -- other processes --------------------------------------------------------------

    def _lease_lost(self) -> None:
        """This runtime's lease expired (it was paused or starved): another may hold its runs now.

        Every run it executes stops at its next cancellation point (its writes are refused anyway
        if the run was taken over); what it still holds is released, and the next claims
        take back whatever nobody else took.
        """
        log.warning("runtime %s lost its lease: stopping its runs; they resume where another runtime takes them", self._owner)
        # a run still executing here is released only once its execution has ended (at its
        # next cancellation point): released earlier, this runtime could claim it back meanwhile
        for run in list(self._runs.values()):
            if run.phase is Phase.EXECUTING:
                assert run.control is not None
                run.control.set(run.control.abandon)
                if not run.abandoned:
                    run.abandoned = True
                    self._abandoned += 1
            else:  # waiting or ready here: given up now
                self._journal.tell(m.ReleaseRun(run.id, self._owner))  # fenced: no-op if taken
                self._drop(run)
        self._ready.clear()
        self._backlog = True

    def _release_if_abandoned(self, run: LocalRun) -> bool:
        """Release a run whose execution stopped after a lost lease; True if it was one."""
        if not run.abandoned:
            return False
        self._journal.tell(m.ReleaseRun(run.id, self._owner))
        self._backlog = True
        self._claim()
        return True

    def _external(self, changes: m.ExternalChanges) -> None:
        """Changes committed by any process (read by the registry's poll)."""
        for run_id in changes.cancelled:
            control = self._control(run_id)
            if control is not None:
                control.set(control.cancel)
        for run_id in changes.ended:
            run = self._runs.get(run_id)
            if run is not None and run.phase is Phase.WAITING:
                self._drop(run)
        for run_id, topic, event_id in changes.events:
            self.handle(m.EventArrived(run_id, topic, event_id))

    # -- waiting runs -----------------------------------------------------------------

    def _resume(self, run_id: str, queue: str | None) -> None:
        """A passivated run's wait is met: execute it again (replay).

        A run of a named queue goes back to ``pending`` in the journal, to be claimed
        within its queue's limit (a waiting run does not count against it; a resumed one
        does, in whichever process claims it).
        """
        if queue is None:
            self._admit({"id": run_id})
            return
        self._journal.tell(m.Requeue(run_id))
        self._backlog = True
        self._claim()

    def _wait(self, run_id: str, wait: int, topic: str | None, wake_at: float | None, queue: str | None = None) -> None:
        """Keep a passivated run until its wait is met (a Wake, an event on ``topic``, or ``wake_at``)."""
        self._runs[run_id] = LocalRun(run_id, Phase.WAITING, wait=wait, topic=topic, queue=queue)
        if wake_at is not None:
            ref, wake = self.actor_ref, m.Wake(run_id, wait)
            self._timers.call_at(wake_at, lambda: ref.tell(wake))

    def _recover(self, row: m.Row) -> None:
        """Take on a claimed run (pending, taken over, or found at open).

        A sleeping run gets its timers re-armed; a waiting run of a named queue goes back to
        ``pending`` to be claimed within its limit; any other run is executed (by replay).
        """
        if row["state"] == "waiting" and row.get("waiting_for") and not row.get("cancel_requested"):
            if row.get("deadline"):  # its flow timeout holds while it sleeps
                due = epoch(row["deadline"])
                assert due is not None
                ref, reached = self.actor_ref, m.DeadlineReached(row["id"])
                self._timers.call_at(due, lambda: ref.tell(reached))
            if row.get("wait_kind") == WaitKind.SLEEP.value and row.get("wait_seq") is not None and row.get("wake_at"):
                wake_at = epoch(row["wake_at"])
                assert wake_at is not None
                self._wait(row["id"], int(row["wait_seq"]), None, wake_at, row.get("queue"))
                return
            if row.get("queue") is not None:  # resumes through its queue's limit
                self._resume(row["id"], row["queue"])
                return
        self._admit(row)

    def _send_event(self, msg: m.SendEvent, reply_to: pykka.Future[Any]) -> None:
        try:
            payload = self._codec.serializer.dumps(msg.payload)  # signed by the journal, which knows the run
        except Exception as exc:
            raise SerializationError(f"the event's payload cannot be serialized: {exc}", argument="payload") from exc
        if not isinstance(msg.topic, str) or not msg.topic:
            raise ValueError(f"an event topic is a non-empty str, not {msg.topic!r}")
        self._journal.tell(m.InsertEvent(msg.run_id, msg.topic, payload, now_iso(), hook=msg.hook, reply_to=reply_to,
                                         notify=self.actor_ref))  # fmt: skip

    # -- timeouts ---------------------------------------------------------------------

    def _deadline(self, run_id: str) -> None:
        """A run's flow timeout passed: end it as ``timed_out`` now, whatever its flow is doing.

        The journal refuses later writes of the run (a terminal state never changes), and
        the flow, told through its control, stops at its next cancellation point.
        """
        run = self._runs.get(run_id)
        if run is not None and run.phase is Phase.EXECUTING:
            assert run.control is not None
            run.control.set(run.control.timed_out)
        elif run is not None and run.phase is Phase.WAITING:  # a passivated run times out without waking up
            self._drop(run)
        error = RunTimedOut(f"run {run_id} exceeded its flow timeout", run_id=run_id)
        # fenced in the journal: a run that has ended meanwhile is left as it is
        self._journal.tell(m.FinishRun(run_id, "timed_out", now_iso(), error=self._codec.dump_error(error, run_id),
                                       cascade=self.actor_ref))

    # -- cancel -----------------------------------------------------------------------

    def _cancel(self, msg: m.CancelRun, reply_to: pykka.Future[Any]) -> None:
        control = self._control(msg.run_id)
        if control is not None:  # lets the flow notice at once; the journal has the last word
            control.set(control.cancel)
        self._journal.tell(m.RequestCancel(msg.run_id, now_iso(), reply_to=reply_to, notify=self.actor_ref))

    # -- execution actors -------------------------------------------------------------

    def _admit(self, row: m.Row) -> None:
        if self._closing or self._control(row["id"]) is not None or self._concurrency == 0:
            return
        codec = self._codec.name
        if row.get("codec", codec) != codec:
            log.error(
                "run %s was stored with serializer %r but this runtime uses %r: left as it is; "
                "open the journal with the serializer it was written with to resume it",
                row["id"], row.get("codec"), codec,
            )  # fmt: skip
            return
        known = self._runs.get(row["id"])
        if self._executing < self._concurrency:
            if known is not None:
                self._drop(known)
            self._spawn(row)
        elif known is None or known.phase is not Phase.READY:
            if known is not None:
                self._drop(known)
            self._runs[row["id"]] = LocalRun(row["id"], Phase.READY, row=row)
            self._ready.append(row["id"])
            self.pressure.queued = len(self._ready)

    def _spawn(self, row: m.Row, inserted: pykka.Future[Any] | None = None) -> None:
        control = RunControl()
        self._runs[row["id"]] = LocalRun(row["id"], Phase.EXECUTING, control=control)
        self._executing += 1
        Execution.start(row, self._links, control, inserted)

    def _fill(self) -> None:
        """Spawn queued runs while there are free slots."""
        while self._ready and self._executing < self._concurrency and not self._closing:
            run = self._runs.pop(self._ready.popleft())
            assert run.row is not None
            self._spawn(run.row)
        self.pressure.queued = len(self._ready)
        self._check_drained()

    # -- the local runs ---------------------------------------------------------------

    def _control(self, run_id: str) -> RunControl | None:
        """The control of a run executing here, or None."""
        run = self._runs.get(run_id)
        return run.control if run is not None and run.phase is Phase.EXECUTING else None

    def _executing_runs(self) -> list[LocalRun]:
        """The runs executing here."""
        return [run for run in self._runs.values() if run.phase is Phase.EXECUTING]

    def _controls(self) -> list[RunControl]:
        """The controls of the runs executing here."""
        return [run.control for run in self._executing_runs() if run.control is not None]

    def _drop(self, run: LocalRun) -> None:
        """Forget a run (its execution ended, its wait was met, it was given up)."""
        if self._runs.get(run.id) is run:
            del self._runs[run.id]
        if run.phase is Phase.EXECUTING:
            self._executing -= 1
            if run.abandoned:
                self._abandoned -= 1
        elif run.phase is Phase.READY:
            try:
                self._ready.remove(run.id)
            except ValueError:  # taken off the line already
                pass
            self.pressure.queued = len(self._ready)
        run.phase = Phase.GONE

    def _check_drained(self) -> None:
        if self._closing and not self._executing:
            for future in self._drained:
                future.set(None)
            self._drained.clear()
