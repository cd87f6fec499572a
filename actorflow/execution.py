"""The execution actor: one per run, it executes the flow and checkpoints each transition.

The supervisor spawns an :class:`Execution` for a run. A run started with a free slot
was inserted as ``running`` already, and the actor's loop starts only once that insert
is committed (see :class:`~actorflow._future.Admission`);
any other run is first claimed in the journal (``pending``/``running`` → ``running``,
attempt + 1), which also loads its checkpoints. The claim is the fence that keeps a run
that was cancelled or finished meanwhile from executing.

The actor then calls the flow. Each step call is numbered in call order (``seq``); if
the journal holds a checkpoint at that number the step is replayed (its saved result is
returned, or its saved failure raised, after checking the name), otherwise it executes,
with retries and timeout, and its outcome is committed before the flow moves on. Last the
actor sends the terminal state (the journal reports it to the registry after commit, and
the registry resolves the waiters), tells the supervisor it has ended, and stops.
"""

from __future__ import annotations

import contextvars
import datetime as _dt
import itertools
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from . import _run_context
from . import messages as m
from ._actor import Actor, tell
from ._future import Admission, Reply
from ._ids import child_run_id
from ._pool import WorkerPool
from ._signals import Abandoned, Ended, Passivate
from ._time import epoch, iso, now_iso, parse
from .codec import Codec
from .context import Context, RunControl
from .durations import parse_duration, wake_time
from .errors import (
    ActorflowError,
    Cancelled,
    FatalError,
    NonDeterminismError,
    RunNotFound,
    RuntimeClosed,
    RunTimedOut,
    SerializationError,
    StepFailed,
    StepTimeout,
    TamperedRecord,
)
from .flows import check_arguments, flow_name, flow_retry
from .registry import condition_met
from .serialization import error_info
from .signing import CHUNK, METADATA, PROGRESS, RESULT, STEP, STEP_ERROR, chunk_place, event_kind
from .states import TERMINAL_NAMES, StepKind
from .steps import Step, StepInfo
from .store import WaitAnswer
from .timers import EARLY
from .waits import Wait, WaitKind

__all__ = ["Execution", "Links"]


log = logging.getLogger("actorflow")

_WAIT_SLICE = 0.25  # how often a blocked execution looks at its abandon flag
_IMMUTABLE = frozenset({int, str, float, bool, type(None), bytes})
_step_threads = itertools.count(1)


@dataclass(frozen=True)
class Links:
    """What every execution of a runtime shares: the actors it talks to and the runtime's settings.

    Attributes:
        journal: the journal actor.
        supervisor: the supervisor actor (told when an execution ends).
        registry: the registry actor (asked to tell when awaited runs end).
        codec: the runtime's codec (serializer and key).
        runtime: the runtime's id, recorded as the owner of the runs it executes.
        pool: the worker threads the executions' loops run on.
        max_recoveries: a run recovered more often than this fails instead of executing.
        pressure: the supervisor's count of runs queued for a slot (see ``supervisor.Pressure``).
        passivate_after: seconds a wait may hold the thread before the run passivates.
        clock: where wake-up times are read.
    """

    journal: pykka.ActorRef[Any]
    supervisor: pykka.ActorRef[Any]
    registry: pykka.ActorRef[Any]
    codec: Codec
    runtime: str
    pool: WorkerPool
    max_recoveries: int
    pressure: Any
    passivate_after: float
    clock: Any


class Execution(Actor):
    """Executes one run, then stops.

    Args:
        row: the run's row (committed, or being inserted: see ``inserted``).
        links: what the runtime's executions share (see :class:`Links`).
        control: the flags shared with the supervisor (cancel, abandon, timeout).
        inserted: for a run admitted as it was started, the future resolved once its
            insert is committed (True) or found to repeat an existing run (False); the
            actor waits for it before doing anything. None for a committed run.
    """

    def __init__(self, row: m.Row, links: Links, control: RunControl, inserted: pykka.Future[Any] | None = None) -> None:
        super().__init__()
        clock = links.clock
        self.clock = clock
        self.manual_clock = hasattr(clock, "advance")
        self.registry = links.registry
        self.pressure = links.pressure
        self.passivate_after = links.passivate_after
        self.has_children = False
        self.passivated: Passivate | None = None
        self._pool = links.pool
        self._inserted = inserted
        self.row = row
        self.run_id: str = row["id"]
        self.journal = links.journal
        self.supervisor = links.supervisor
        self.codec = links.codec
        self.control = control
        self.owner = links.runtime
        self.max_recoveries = links.max_recoveries
        self.checkpoints: dict[int, m.Row] = {}
        self.seq = 0
        self.diverged: NonDeterminismError | None = None
        self.attempt = 0
        self.flow_retries = 0
        self.queue: str | None = row.get("queue")
        # the future of the handle start() returned, resolved with the final row (see StartRun.done)
        self.done: pykka.Future[Any] | None = row.get("_done")
        self.thread = 0  # the thread the flow runs in (checkpointed calls come from it only)
        self.ended = False  # the execution has stopped

    def _start_actor_loop(self) -> None:
        # pykka's extension point for actor types: run the loop on a pool thread; for a run
        # being inserted, once the journal has answered (its thread wakes once, to work)
        if isinstance(self._inserted, Admission):
            self._inserted.then(self._submit_loop)
        else:
            self._pool.submit(self._actor_loop)

    def _submit_loop(self) -> None:
        try:
            self._pool.submit(self._actor_loop)
        except RuntimeError:  # the pool is shut down (the runtime is closing): a thread of its own
            threading.Thread(target=self._actor_loop, name=f"Execution-{self.run_id}", daemon=True).start()

    def on_start(self) -> None:
        """Do the whole run, then report and stop."""
        try:
            self._execute()
        except Abandoned:
            log.debug("run %s abandoned at shutdown; it resumes at the next open", self.run_id)
        except Ended:
            log.debug("run %s was ended from outside (timed out)", self.run_id)
        except Exception:
            log.exception("run %s: the execution actor failed", self.run_id)
        finally:
            self.ended = True
            p = self.passivated
            try:
                if p is not None:
                    self.supervisor.tell(m.Passivated(self.run_id, p.wait, p.wake_at, p.topic, self.queue, p.watermark or 0))
                else:
                    # the supervisor reads its ends when it next handles a message; it is
                    # woken only when it is waiting for one (see supervisor.Pressure)
                    self.pressure.ended.append(self.run_id)
                    if self.pressure.prompt:
                        self.supervisor.tell(m.RunEnded(self.run_id))
            except pykka.ActorDeadError:
                pass
            self.stop()

    # -- talking to the journal -------------------------------------------------------

    def send(self, message: Any) -> None:
        """Tell the journal ``message``; a stopped journal means the runtime is closing."""
        try:
            tell(self.journal, message)
        except pykka.ActorDeadError:
            raise Abandoned from None

    def await_(self, future: pykka.Future[Any]) -> Any:
        """Wait for a journal answer, giving up if the runtime abandons this run."""
        while True:
            try:
                return future.get(timeout=_WAIT_SLICE)
            except pykka.Timeout:
                if self.control.abandon.is_set():
                    raise Abandoned from None

    def call(self, message_type: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Send ``message_type(*args, **kwargs, reply_to=...)`` to the journal and wait for its answer."""
        reply: Reply[Any] = Reply()
        self.send(message_type(*args, **kwargs, reply_to=reply))
        return self.await_(reply)

    def ask(self, make: Callable[[Reply[Any]], Any]) -> Any:
        """Send the message ``make(reply)`` and wait for the journal's answer."""
        reply: Reply[Any] = Reply()
        self.send(make(reply))
        return self.await_(reply)

    def check_interrupt(self) -> None:
        """Stop here if the run was cancelled, timed out, or abandoned by the runtime."""
        control = self.control
        if control.interrupt.is_set():
            if control.abandon.is_set():
                raise Abandoned
            if control.timed_out.is_set():
                raise Ended
            if control.cancel.is_set():
                raise Cancelled(f"run {self.run_id} was cancelled")

    def pause(self, seconds: float) -> None:
        """Wait ``seconds`` (of the runtime's clock) in this thread, ending early (by raising) if interrupted."""
        self._wait_in_thread(self.clock.time() + seconds)

    def _wait_in_thread(self, wake_at: float) -> None:
        while True:
            self.check_interrupt()
            remaining = wake_at - self.clock.time()
            if remaining <= EARLY:
                return
            self.control.interrupt.wait(min(remaining, _WAIT_SLICE / 10 if self.manual_clock else _WAIT_SLICE))

    def wait_until(self, seq: int, wake_at: float, waiting_for: dict[str, Any]) -> None:
        """Wait until ``wake_at`` (committed already by the caller): in this thread if it is
        soon, else by giving up the actor (the supervisor's timer resumes the run)."""
        if self._passivates(wake_at):
            raise Passivate(seq, wake_at, waiting_for)
        self._wait_in_thread(wake_at)

    def _passivates(self, wake_at: float) -> bool:
        """Whether a wait until ``wake_at`` gives up the thread (False: due, or soon enough to wait here)."""
        remaining = wake_at - self.clock.time()
        if remaining <= EARLY:
            return False
        return remaining > self.passivate_after or self.manual_clock or self.pressure.queued > 0

    # -- other runs -------------------------------------------------------------------

    def get_run(self, run_id: str) -> m.Row:
        """The current row of a run (from the registry), for display.

        Raises:
            RunNotFound: no such run.
        """
        row: Any = self.registry.ask(m.GetRun(run_id))
        if row is None:
            raise RunNotFound(run_id)
        return row  # type: ignore[no-any-return]  # an actor's answer is untyped

    def cancel_run(self, run_id: str) -> bool:
        """Cancel a run through the supervisor; True if this call cancelled it."""
        return bool(self.supervisor.ask(m.CancelRun(run_id)))

    # -- durable sleep, events, hooks, streams ---------------------------------------

    def sleep(self, duration: Any) -> None:
        """``ctx.sleep``: the wake-up time is committed first, so a restart keeps it."""
        self.wait(Wait.sleep(wake_time(duration, self.clock.time())))

    def wait_event(self, topic: str, timeout: float | _dt.timedelta | str | None) -> Any:
        """``ctx.wait_event``: the next payload on ``topic``, or None once ``timeout`` has passed."""
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"an event topic is a non-empty str, not {topic!r}")
        timeout_s = parse_duration(timeout) if timeout is not None else None
        deadline = self.clock.time() + timeout_s if timeout_s is not None else None
        return self.wait(Wait.event(topic, deadline, timeout_s))

    # -- the one wait -----------------------------------------------------------------

    def wait(self, w: Wait) -> Any:
        """Wait durably, for any kind of :class:`~actorflow.waits.Wait`; its outcome.

        The wait is numbered and replayed like a step: a replay returns the outcome that
        was checkpointed. Its start is committed with its deadline, so a restart keeps
        the deadline. It waits in this thread while that is short; a longer wait gives the
        thread up (the run passivates, shown ``waiting``) and the supervisor resumes the
        run by replay when the wait is met (a timer, an event, the runs' ends).

        Returns:
            A sleep: None. An event: its payload, or None on timeout. Runs: the final
            rows of the runs that decide the wait.

        Raises:
            TimeoutError: a wait for runs passed its deadline first.
        """
        seq, saved = self._next(w.step)
        if saved is not None and saved["state"] == "completed":
            return self._waited(w, seq, saved["result"])
        if saved is not None:  # resumed: the deadline committed when it began holds
            committed = epoch(saved.get("retry_at"))
            if committed is not None or w.kind is not WaitKind.SLEEP:
                w = w.with_deadline(committed)
        elif w.kind is WaitKind.SLEEP and self._passivates(w.deadline):  # type: ignore[arg-type]  # a sleep has one
            self._begin_long_sleep(w, seq)  # raises: the run passivates at once
        else:
            wake_at = iso(w.deadline) if w.deadline is not None else None
            self.call(m.StepStarted, self.run_id, seq, w.step, 1, now_iso(), wake_at=wake_at)
        reply: Reply[Any] | None = None
        if w.kind is WaitKind.RUNS:  # the registry answers (and wakes the run) once they settle
            reply = Reply()
            self.registry.tell(m.AwaitRuns(self.run_id, seq, w.run_ids, w.mode, reply, self.supervisor))
        began = time.monotonic()
        waited = False
        look = True  # an event wait looks for its event at first, then each time it is poked
        while True:
            if w.kind is WaitKind.EVENT and look:
                self.control.poke.clear()
                taken = self.call(m.TakeEvent, self.run_id, w.topic, seq, w.step, now_iso())
                if taken is not None:  # recorded by the journal as it took it
                    self.checkpoints[seq] = {"name": w.step, "state": "completed", "result": taken[0]}
                    return self._waited(w, seq, taken[0])
                look = False
            if reply is not None and reply.done:
                return self._end_wait(w, seq, self._runs_decision(w, reply.get()))
            self.check_interrupt()
            if w.deadline is not None and self.clock.time() >= w.deadline - EARLY:
                return self._end_wait(w, seq, self._expired(w))
            if (w.kind is not WaitKind.RUNS or waited) and self._gives_up_thread(w, began):
                look = self._passivate(w, seq)  # raises, unless the event it waits for has just come
                continue
            remaining = _WAIT_SLICE if w.deadline is None else max(0.0, w.deadline - self.clock.time())
            slice_ = min(remaining, _WAIT_SLICE / 10 if self.manual_clock or w.kind is not WaitKind.SLEEP else _WAIT_SLICE)
            if w.kind is WaitKind.EVENT:
                look = self.control.poke.wait(slice_)
            elif reply is not None:
                waited = True  # a wait for runs gives them one slice before it may give the thread up
                try:
                    reply.get(timeout=slice_)
                except pykka.Timeout:
                    pass
            else:
                self.control.interrupt.wait(slice_)

    def _begin_long_sleep(self, w: Wait, seq: int) -> None:
        """A long sleep: commit its wake-up time and the run's waiting state in one round trip, and passivate."""
        assert w.deadline is not None
        wait = Passivate(seq, w.deadline, w.shown(), kind=w.kind.value)
        answer = self.call(m.Sleep, self.run_id, seq, now_iso(), iso(w.deadline), json.dumps(wait.waiting_for), w.kind.value)
        if answer[0] is WaitAnswer.WAITING:
            wait.watermark = answer[1]
            raise wait
        if answer[0] is WaitAnswer.CANCEL_REQUESTED:
            raise Cancelled(f"run {self.run_id} was cancelled")
        raise Ended  # the run has ended meanwhile

    def _gives_up_thread(self, w: Wait, began: float) -> bool:
        """Whether a wait stops holding the flow's thread now: a sleep that is not soon, any
        other after ``passivate_after``, and every wait while runs are queued for a slot."""
        if w.kind is WaitKind.SLEEP:
            return self._passivates(w.deadline)  # type: ignore[arg-type]  # a sleep has one
        return self.pressure.queued > 0 or time.monotonic() - began >= self.passivate_after

    def _passivate(self, w: Wait, seq: int) -> bool:
        """Give the actor up; True if instead an awaited event has just come (look again).

        An event wait commits its ``waiting`` state here (with its topic, so an event that
        comes meanwhile is not missed); the others are committed as the flow unwinds.
        """
        wait = Passivate(seq, w.deadline, w.shown(), topic=w.topic, kind=w.kind.value)
        if w.kind is not WaitKind.EVENT:
            raise wait
        status, watermark = self._set_waiting(wait)
        if status is WaitAnswer.WAITING:
            wait.watermark = watermark
            raise wait
        if status is WaitAnswer.EVENT_READY:  # it came meanwhile: take it now
            return True
        if status is WaitAnswer.CANCEL_REQUESTED:
            raise Cancelled(f"run {self.run_id} was cancelled")
        raise Ended  # the run has ended meanwhile

    def _expired(self, w: Wait) -> Any:
        """The outcome of a wait whose deadline has passed: a sleep is over, an event wait
        returns None, a wait for runs times out (unless they have all settled by now)."""
        if w.kind is WaitKind.RUNS:
            now: Any = self.registry.ask(m.GetRuns(w.run_ids))
            ended = {i: r for i, r in dict(now).items() if r["state"] in TERMINAL_NAMES}
            if condition_met(w.mode, w.run_ids, ended):
                return self._runs_decision(w, ended)
            return {"timed_out": True}
        return None

    def _runs_decision(self, w: Wait, settled: dict[str, m.Row]) -> dict[str, Any]:
        """The checkpointed decision of a wait for runs: which runs decide it."""
        return {"ids": self._decide(w.run_ids, w.mode, settled)}

    def _end_wait(self, w: Wait, seq: int, outcome: Any) -> Any:
        """Record a wait's outcome (the one helper that records a wait's step), then return what it means."""
        data = self._wait_data(w, seq, outcome)
        self.send(m.SaveStep(self.run_id, seq, w.step, "completed", 1, now_iso(), result=data))
        self.checkpoints[seq] = {"name": w.step, "state": "completed", "result": data}
        return self._waited(w, seq, data)

    def _wait_data(self, w: Wait, seq: int, outcome: Any) -> Any:
        """A wait's outcome, serialized and signed (an event's as events are; the others as steps)."""
        if w.kind is WaitKind.EVENT:
            assert w.topic is not None
            return self.codec.dumps(outcome, self.run_id, event_kind(w.topic), seq)
        return self._step_data(outcome, seq, w.step)

    def _waited(self, w: Wait, seq: int, data: Any) -> Any:
        """What a wait's recorded outcome means for the flow (checked, then decoded)."""
        if w.kind is WaitKind.EVENT:
            assert w.topic is not None
            return self.codec.loads(data, self.run_id, event_kind(w.topic), seq, required=True)
        outcome = self.codec.loads(data, self.run_id, STEP, seq, w.step, required=True)
        if w.kind is WaitKind.SLEEP:
            return None
        if outcome.get("timed_out"):
            raise TimeoutError(f"{w.step[10:]}() in run {self.run_id} timed out after {w.timeout}s")
        rows: Any = self.registry.ask(m.GetRuns(tuple(outcome["ids"])))
        return dict(rows)

    def hook(self, token: str | None) -> str:
        """``ctx.hook``: register (or, on replay, find) this run's hook token."""
        seq, saved = self._next(StepKind.HOOK)
        if saved is not None and saved["state"] == "completed":
            return str(self._step_value(saved, seq))
        if token is not None and (not isinstance(token, str) or not token):
            raise ValueError(f"a hook token is a non-empty str, not {token!r}")
        chosen = token or secrets.token_urlsafe(16)
        data = self._step_data(chosen, seq, StepKind.HOOK)
        self.ask(lambda reply: m.RegisterHook(self.run_id, chosen, seq, now_iso(), data, reply_to=reply))
        self.checkpoints[seq] = {"name": StepKind.HOOK, "state": "completed", "result": data}
        return chosen

    def write(self, chunk: Any, namespace: str | None, close: bool = False) -> None:
        """``ctx.write`` / ``ctx.close_stream``: append to the run's stream (nothing on replay)."""
        seq, saved = self._next(StepKind.WRITE)
        if saved is not None:
            self._step_value(saved, seq)  # checked: a forged row must not drop a chunk
            return
        namespace = namespace or ""
        try:
            data = self.codec.dumps(None if close else chunk, self.run_id, CHUNK, seq, chunk_place(namespace, close))
        except SerializationError as exc:
            raise SerializationError(f"ctx.write() chunk cannot be serialized: {exc}", argument="chunk") from exc
        done = self._step_data(None, seq, StepKind.WRITE)
        self.send(m.WriteChunk(self.run_id, namespace, seq, data, now_iso(), close, done, notify=self.registry))
        self.checkpoints[seq] = {"name": StepKind.WRITE, "state": "completed", "result": done}

    def save_progress(self, value: Any) -> None:
        """Checkpoint, then store ``value`` as the run's progress."""
        self.check_interrupt()
        try:
            data = self.codec.dumps(value, self.run_id, PROGRESS)
        except SerializationError as exc:
            raise SerializationError(f"ctx.progress() value cannot be serialized: {exc}") from exc
        self.send(m.SaveProgress(self.run_id, data, now_iso()))

    def _error(self, exc: BaseException) -> str:
        """The run's error, recorded and signed."""
        return self.codec.dump_error(exc, self.run_id)

    def finish(self, state: str, *, result: Any = None, error: str | None = None) -> None:
        """Send the terminal state of the run (which cancels its unfinished children, if it started any)."""
        cascade = self.supervisor if self.has_children else None
        self.send(m.FinishRun(self.run_id, state, now_iso(), result=result, error=error, cascade=cascade, done=self.done))

    # -- replay -----------------------------------------------------------------------

    def _step_data(self, value: Any, seq: int, name: str) -> Any:
        """A step's result, serialized and signed for its run, position and name."""
        return self.codec.dumps(value, self.run_id, STEP, seq, name)

    def _step_value(self, saved: m.Row, seq: int) -> Any:
        """A completed step's checked result (a forged or emptied row raises TamperedRecord)."""
        return self.codec.loads(saved.get("result"), self.run_id, STEP, seq, saved["name"], required=True)

    def _set_waiting(self, wait: Passivate) -> tuple[WaitAnswer, int]:
        """Commit the run's ``waiting`` state for ``wait``; answers ``(what happened, watermark)``."""
        waiting_for = json.dumps(wait.waiting_for)
        wake = iso(wait.wake_at) if wait.wake_at else None
        answer = self.call(m.SetWaiting, self.run_id, waiting_for, wake, now_iso(), wait.topic, wait.wait, wait.kind)
        return answer[0], answer[1]

    def _next(self, name: str) -> tuple[int, m.Row | None]:
        """Number the next checkpointed call and find its checkpoint, checking the name."""
        if _run_context.step.get() is not None:
            raise ActorflowError(
                f"{name.split(':')[0].replace('actorflow.', 'ctx.')}() was called inside a step; waits, child "
                "runs, hooks and stream writes belong to the flow's own code: call it from the flow"
            )
        if threading.get_ident() != self.thread:
            raise ActorflowError(
                f"{name.split(':')[0].replace('actorflow.', 'ctx.')} was called in run {self.run_id} from another thread "
                "than its flow's (the run context was copied into it): checkpointed calls are numbered in the order "
                "the flow makes them, which other threads would make unpredictable. Make them from the flow's own "
                "thread; run parallel work as child runs (ctx.start, then ctx.gather)"
            )
        self.check_interrupt()
        self.seq += 1
        saved = self.checkpoints.get(self.seq)
        if saved is not None and saved["name"] != name:
            self.diverged = NonDeterminismError(self.run_id, self.seq, saved["name"], name)
            raise self.diverged
        return self.seq, saved

    def _replay_failure(self, saved: m.Row, seq: int) -> BaseException:
        if saved.get("error") is None:
            raise TamperedRecord(self.run_id, f"step.error {seq}", "a failed step without its error")
        info, exc = self.codec.load_error(saved["error"], self.run_id, STEP_ERROR, seq, saved["name"])
        if exc is not None:
            return exc
        return StepFailed(f"step {saved['name']!r} failed: {info}", error=info)

    def run_value(self, name: str, produce: Callable[[], Any]) -> Any:
        """A checkpointed value (``ctx.now()``, ``ctx.random()``, ``ctx.uuid()``); plain inside a step body."""
        if _run_context.step.get() is not None:
            return produce()
        seq, saved = self._next(name)
        if saved is not None and saved["state"] == "completed":
            return self._step_value(saved, seq)
        value = produce()
        data = self._step_data(value, seq, name)
        at = now_iso()
        self.checkpoints[seq] = {"name": name, "state": "completed", "result": data}
        self.send(m.SaveStep(self.run_id, seq, name, "completed", 1, at, result=data, started_at=at))
        return value

    # -- child runs and waits ---------------------------------------------------------

    def start_child(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """Start (or, on replay, find) the child run at this position; returns its id once committed."""
        name = StepKind.child(flow_name(fn))
        args, kwargs = check_arguments(fn, args, kwargs)  # a bad call raises here, in the flow
        seq, saved = self._next(name)
        self.has_children = True
        if saved is not None and saved["state"] == "completed":
            return str(self._step_value(saved, seq))
        # the child's id is derived from this position: a replay finds the same run
        child_id = child_run_id(self.run_id, seq)
        reply: Reply[Any] = Reply()
        try:
            self.supervisor.tell(m.StartRun(fn, tuple(args), kwargs, parent_id=self.run_id, run_id=child_id, reply_to=reply,
                                            checked=True))  # fmt: skip
        except pykka.ActorDeadError:
            raise Abandoned from None
        try:
            run_id = str(self.await_(reply))
        except RuntimeClosed:
            raise Abandoned from None  # shutting down: the run resumes here at the next open
        at = now_iso()
        data = self._step_data(run_id, seq, name)
        self.send(m.SaveStep(self.run_id, seq, name, "completed", 1, at, result=data, started_at=at))
        self.checkpoints[seq] = {"name": name, "state": "completed", "result": data}
        return run_id

    def wait_runs(self, run_ids: tuple[str, ...], mode: str, timeout: float | None, name: str) -> dict[str, m.Row]:
        """Wait (durably) until ``run_ids`` settle per ``mode``; returns the final rows that decide.

        The decision (which runs settled, or that the timeout passed) is checkpointed, so a
        replay takes the same one (see :meth:`wait`).

        Raises:
            TimeoutError: ``timeout`` passed first (the runs are not affected).
        """
        timeout_s = parse_duration(timeout) if timeout is not None else None
        deadline = self.clock.time() + timeout_s if timeout_s is not None else None
        rows: dict[str, m.Row] = self.wait(Wait.runs(name, run_ids, mode, deadline, timeout_s))
        return rows

    @staticmethod
    def _decide(run_ids: tuple[str, ...], mode: str, settled: dict[str, m.Row]) -> list[str]:
        """Which settled runs decide the wait: all of them, the first failure, or the first to end."""
        order = {run_id: i for i, run_id in enumerate(run_ids)}

        def earliest(ids: list[str]) -> str:
            return min(ids, key=lambda i: (settled[i].get("completed_at") or "", order[i]))

        if mode == "first":
            return [earliest(list(settled))]
        if mode == "all_or_failure":
            failed = [i for i, row in settled.items() if row["state"] != "completed"]
            if failed:
                return [earliest(failed)]
        return list(dict.fromkeys(run_ids))

    # -- steps ------------------------------------------------------------------------

    def run_step(self, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Execute (or replay) one step call of the flow."""
        seq, saved = self._next(step.name)
        attempt = 1
        if saved is not None:
            if saved["state"] == "completed":
                return self._step_value(saved, seq)
            if saved["state"] == "failed":
                raise self._replay_failure(saved, seq)
            # in flight when the process stopped: run it again, as the next attempt
            attempt = int(saved["attempts"] or 0) + 1
            retry_at = epoch(saved.get("retry_at"))
            if saved["state"] == "retrying" and retry_at is not None:
                self.wait_until(seq, retry_at, {"retry": step.name, "until": iso(retry_at)})
        policy = step.retries
        while True:
            self.check_interrupt()
            started = now_iso()
            info = StepInfo(
                step_id=f"{self.run_id}:{seq}",
                name=step.name,
                seq=seq,
                attempt=attempt,
                started_at=parse(started),  # type: ignore[arg-type]  # the journal's timestamps are never NULL here
                run_id=self.run_id,
                _stop=threading.Event() if step.timeout is not None else None,
                _run_cancel=self.control.interrupt,
            )
            # committed before the body runs, so that a crash in the body makes the next
            # execution's attempt a higher one (at-least-once, counted)
            if not self.call(m.StepStarted, self.run_id, seq, step.name, attempt, started):
                raise Ended  # the run ended meanwhile (its flow timed out): nothing more to do
            try:
                value = self._call(step, info, args, kwargs)
                try:
                    plain = self.codec.serializer.dumps(value)
                except Exception as exc:
                    raise FatalError(f"step {step.name!r} returned a value that cannot be serialized: {exc}") from exc
            except (Abandoned, Ended):
                raise
            except BaseException as exc:
                if isinstance(exc, Cancelled) or self.control.interrupt.is_set():
                    self.check_interrupt()  # the run was cancelled/abandoned meanwhile
                final = isinstance(exc, FatalError) or attempt >= policy.max_attempts
                if not final:
                    try:
                        delay = policy.delay(attempt, exc, now=self.clock.time())
                    except (TypeError, ValueError) as bad:  # a RetryableError with a bad retry_after
                        log.warning("step %s: %s; using the retry policy's delay", step.name, bad)
                        delay = policy.delay(attempt)
                    summary = str(error_info(exc))
                    at = now_iso()
                    retry_at = self.clock.time() + delay
                    error_text = self.codec.dump_error(exc, self.run_id, STEP_ERROR, seq, step.name)
                    self.call(m.StepAttemptFailed, self.run_id, seq, step.name, attempt, error_text, summary, round(delay, 6),
                              iso(retry_at), at)  # fmt: skip
                    self.wait_until(seq, retry_at, {"retry": step.name, "until": iso(retry_at)})
                    attempt += 1
                    continue
                error = self.codec.dump_error(exc, self.run_id, STEP_ERROR, seq, step.name)
                self.send(m.SaveStep(self.run_id, seq, step.name, "failed", attempt, now_iso(), error=error, started_at=started))
                self.checkpoints[seq] = {"name": step.name, "state": "failed", "error": error}
                raise
            # Not waited for: the journal commits in order, so this checkpoint is durable
            # before anything after it can act outside the process (the next step's start
            # is waited for, the end of the run is committed after it, a child starts only
            # once committed).
            data = self.codec.seal(plain, self.run_id, STEP, seq, step.name)
            self.send(m.SaveStep(self.run_id, seq, step.name, "completed", attempt, now_iso(), result=data, started_at=started))
            self.checkpoints[seq] = {"name": step.name, "state": "completed", "result": data}
            self.check_interrupt()
            if type(value) in _IMMUTABLE:  # already a copy in effect: skip the decode
                return value
            return self.codec.serializer.loads(plain)  # pass by value: the flow gets its own copy

    def _call(self, step: Step, info: StepInfo, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Call the step's function once, as the step ``info`` (in another thread if it has a timeout)."""
        if step.timeout is None:
            token = _run_context.step.set(info)
            try:
                return step.fn(*args, **kwargs)
            finally:
                _run_context.step.reset(token)
        outcome: list[Any] = []
        done = threading.Event()
        context = contextvars.copy_context()

        def body() -> None:
            _run_context.step.set(info)
            try:
                outcome.append((True, step.fn(*args, **kwargs)))
            except BaseException as exc:  # noqa: BLE001 - carried back to the flow's thread
                outcome.append((False, exc))
            finally:
                done.set()

        thread = threading.Thread(
            target=context.run, args=(body,), name=f"actorflow-step-{next(_step_threads)}", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + step.timeout
        while not done.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                assert info._stop is not None
                info._stop.set()  # current_step().cancelled turns True for the body still running
                raise StepTimeout(
                    f"step {step.name!r} (attempt {info.attempt}) did not return within {step.timeout}s; "
                    "its body goes on in the background until it returns, and its result is discarded"
                )
            done.wait(min(remaining, _WAIT_SLICE))
            if self.control.interrupt.is_set():
                assert info._stop is not None
                info._stop.set()
                self.check_interrupt()
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    # -- the run ----------------------------------------------------------------------

    def _execute(self) -> None:
        self.thread = threading.get_ident()
        if self.control.abandon.is_set():
            return
        if self._inserted is not None:
            # admitted at start: the row was inserted as running; wait for its commit
            try:
                created = self.await_(self._inserted)
            except Exception:  # noqa: BLE001 - the caller of start() gets the error; nothing was written
                return
            if not created:  # a repeated id or idempotency key: the run exists already
                return
            row = self.row
        else:
            timeout = self.row.get("timeout")
            deadline = iso(self.clock.time() + timeout) if timeout else None
            claimed = self.ask(lambda reply: m.ClaimRun(self.run_id, self.owner, now_iso(), deadline, reply_to=reply))
            if claimed is None:  # finished (for instance cancelled while pending) before it could start
                return
            row, steps = claimed
            self.checkpoints = {s["seq"]: s for s in steps}
            # a run that started children before must cancel them however it ends now
            self.has_children = any(StepKind.is_child(s["name"]) for s in steps)
        if row.get("deadline"):
            due = epoch(row["deadline"])
            assert due is not None
            if self.clock.time() >= due - EARLY:  # it passed while no runtime had the run
                late = RunTimedOut(f"run {self.run_id} exceeded its flow timeout", run_id=self.run_id)
                self.finish("timed_out", error=self._error(late))
                return
            self.supervisor.tell(m.WatchDeadline(self.run_id, due))
        if row["cancel_requested"]:
            self.control.set(self.control.cancel)
            self.finish("cancelled")
            return
        if int(row.get("recoveries") or 0) > self.max_recoveries:
            error = ActorflowError(
                f"run {self.run_id} was recovered {row['recoveries']} times (more than max_recoveries="
                f"{self.max_recoveries}): it may be crashing its process; it is failed instead of run again"
            )
            self.finish("failed", error=self._error(error))
            return
        try:
            codec, run_id = self.codec, self.run_id
            # the arguments first: their signature covers the flow's reference, so nothing the
            # file names is imported before it is known to be the one that was started
            args, kwargs = codec.loads_arguments(row, run_id)
            metadata = codec.loads(row["metadata"], run_id, METADATA) if row["metadata"] is not None else {}
            fn = codec.load_flow(row["flow_ref"], row["flow_blob"], run_id)
        except Exception as exc:  # noqa: BLE001 - whatever stops the run's inputs from loading is its failure
            self.finish("failed", error=self._error(exc))
            return
        self.queue = row.get("queue")
        self.attempt = int(row["attempt"])
        # the flow's retry policy counts its own retries (not resumes after waits or crashes)
        self.flow_retries = int(row.get("flow_retries") or 0)
        ctx = Context(
            self,
            run_id=self.run_id,
            flow=row["flow"],
            attempt=self.attempt,
            started_at=parse(row["started_at"]),  # type: ignore[arg-type]  # the journal's timestamps are never NULL here
            parent_id=row["parent_id"],
            metadata=metadata,
        )
        policy = flow_retry(fn)
        token = _run_context.run.set(ctx)
        try:
            while True:
                self.seq = 0
                try:
                    value = fn(ctx, *args, **kwargs)
                except Passivate as wait:
                    # give up the actor; the supervisor resumes the run when its wait is met
                    if wait.watermark is not None:  # its waiting state is committed already
                        self.passivated = wait
                        return
                    status, wait.watermark = self._set_waiting(wait)
                    if status is WaitAnswer.WAITING:
                        self.passivated = wait
                    elif status is WaitAnswer.CANCEL_REQUESTED:  # a cancel landed just before: honour it now
                        self.finish("cancelled")
                    return  # else the run ended meanwhile (timed out, cancelled): nothing to do
                except (Abandoned, Ended):
                    raise
                except BaseException as exc:  # noqa: BLE001 - even SystemExit in a flow is its outcome
                    if self.diverged is not None:
                        self.finish("failed", error=self._error(self.diverged))
                        return
                    if self.control.abandon.is_set():
                        raise Abandoned from None
                    if self.control.timed_out.is_set():
                        raise Ended from None
                    if isinstance(exc, Cancelled) or self.control.cancel.is_set():
                        self.finish("cancelled")
                        return
                    if not isinstance(exc, FatalError) and self.flow_retries + 1 < policy.max_attempts:
                        delay = policy.delay(self.flow_retries + 1)
                        summary = str(error_info(exc))
                        try:
                            self.pause(delay)
                            attempt = self.call(m.RetryRun, self.run_id, summary, round(delay, 6), now_iso())
                        except Cancelled:
                            self.finish("cancelled")
                            return
                        except ActorflowError as journal_error:
                            self.finish("failed", error=self._error(journal_error))
                            return
                        if attempt is None:
                            raise Ended from None
                        self.attempt = ctx.attempt = attempt
                        self.flow_retries += 1
                        self.checkpoints = {k: v for k, v in self.checkpoints.items() if v["state"] == "completed"}
                        continue
                    self.finish("failed", error=self._error(exc))
                    return
                break
        finally:
            _run_context.run.reset(token)
        if self.diverged is not None:  # the flow swallowed the error: the run still fails with it
            self.finish("failed", error=self._error(self.diverged))
            return
        try:
            data = self.codec.dumps(value, self.run_id, RESULT)
        except Exception as exc:  # noqa: BLE001 - a custom serializer may raise anything
            error = SerializationError(f"the flow's return value cannot be serialized: {exc}")
            self.finish("failed", error=self._error(error))
            return
        self.finish("completed", result=data)
