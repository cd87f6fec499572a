"""Runtime: the object a service creates; it owns the actors and is the entry point for callers."""

from __future__ import annotations

import atexit
import datetime as _dt
import logging
import os
import threading
import time as _time
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar

import pykka

from . import _run_context, journal, signing
from . import messages as m
from ._future import Reply
from ._ids import new_ulid
from ._time import iso, now_iso
from .clock import Clock, SystemClock
from .codec import Codec
from .durations import parse_duration
from .errors import ActorflowError, JournalError, RunNotFound, RuntimeClosed, TamperedRecord
from .flows import check_arguments
from .handle import RunHandle
from .registry import Registry
from .serialization import JSONSerializer, Serializer
from .states import State, parse_state
from .status import (
    RunList,
    RunStatus,
    RunTree,
    StepList,
    check_listing,
    result_from_row,
    status_from_row,
    steps_from_rows,
)
from .store import sqlite as sqlite_store
from .supervisor import Settings, Supervisor

__all__ = ["Runtime", "check_timeout"]


log = logging.getLogger("actorflow")

P = ParamSpec("P")
R = TypeVar("R")


def _check_id(run_id: object) -> None:
    if not isinstance(run_id, str):
        raise TypeError(f"a run id is a str, not {type(run_id).__name__}")


def _check_int(name: str, value: object, minimum: int, hint: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}{' ' + hint if hint else ''}, not {value!r}")


def _check_seconds(name: str, value: object, *, positive: bool = False) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if value != value or value < 0 or value > _MAX_SECONDS or (positive and value == 0):
        raise ValueError(
            f"{name} must be a finite number of seconds {'> 0' if positive else '>= 0'} (at most 100 years), not {value!r}"
        )
    return float(value)


_MAX_SECONDS = 100 * 366 * 86400.0


def check_timeout(timeout: object) -> float | None:
    """Check a ``timeout=`` argument of a wait: None, or finite seconds >= 0.

    Raises:
        TypeError: not a number.
        ValueError: negative, infinite or NaN.
    """
    if timeout is None:
        return None
    return _check_seconds("timeout", timeout)


# runtimes not shut down yet: released at interpreter exit (see _release_at_exit)
_OPEN: weakref.WeakSet[Runtime] = weakref.WeakSet()


def _release_at_exit() -> None:
    """Shut down the runtimes a program left open when it exits (no wait for their runs).

    Their unfinished runs are released at once, and their rows in the ``runtimes`` table
    removed, so that the next runtime on the journal takes the runs without waiting.
    """
    for rt in list(_OPEN):
        try:
            rt.shutdown(timeout=0)
        except Exception:
            log.debug("could not shut %r down at exit", rt, exc_info=True)


atexit.register(_release_at_exit)


class Runtime:
    """An actorflow runtime on one journal file.

    Creating it opens (or creates) the journal, starts the registry, journal and
    supervisor actors, and resumes every run a previous process left unfinished.
    Use it as a context manager, or call :meth:`shutdown`::

        with actorflow.Runtime("actorflow.db") as rt:
            run = rt.start(greet, "ada")
            print(run.result(timeout=10))

    Args:
        path: the SQLite file (created if missing).
        concurrency: how many runs execute at once; more wait as ``pending``. 0 makes a
            client runtime: it starts runs, reads them, sends events and cancels, while
            runtimes in other processes on the same file execute them.
        serializer: how values are stored; the default is tagged JSON with a cloudpickle
            fallback (:class:`~actorflow.serialization.JSONSerializer`).
        busy_timeout: seconds a write waits for another connection's lock before failing.
        durability: ``"normal"`` (a commit survives a crash of the process; the default)
            or ``"full"`` (it also survives a power cut; each commit costs an fsync).
        recover: resume the unfinished runs found in the journal (default True).
        max_recoveries: a run whose execution was cut off by a crash more often than this
            fails (with an error saying so) instead of being run again: it may be what
            crashes the process. A graceful shutdown does not count.
        passivate_after: seconds a run that waits (for child runs) keeps its thread before
            it gives up its execution actor and is resumed later by replay. A waiting run
            gives it up at once when other runs are queued for a slot.
        clock: where the runtime reads the time for wake-ups, timeouts and retry delays;
            pass a :class:`~actorflow.ManualClock` to move time by hand in tests.
        retention: keep finished runs this long (seconds, timedelta or ``"7d"``), then
            purge them automatically (see :meth:`purge`); None keeps them forever.
        lease: seconds this runtime holds the runs it executes without renewing its lease
            (it renews every third of it). Several runtimes (processes) may open one file;
            when one dies, the others take its runs over once its lease has expired, at
            once if it ran on this host and its process is gone. Shorter leases mean faster
            takeover after a hang, longer ones tolerate longer pauses (GC, swapping, SIGSTOP)
            without losing runs to another process. Default 10 s.
        poll_interval: seconds between looks at the journal for what other processes
            committed (results, events, cancellations) and for runs to take over or claim;
            the delay with which those cross processes. Default 0.25 s.
        queues: named queues and the most runs of each that may run at once, across all
            processes on the file (give every runtime the same map); a run joins one with
            ``flow.options(queue="emails", priority=5)``.
        secret: the key every stored value is signed with (str or bytes, at least 16
            bytes). Default: ``$ACTORFLOW_SECRET``, else the key file ``<path>.key`` that
            the first runtime on a new journal creates (mode 0600). See
            docs/guides/security.md.
        file_mode: the permission bits of a new journal file (its ``-wal`` and ``-shm``
            files take the same) and key file; default 0o600 (the owner only), whatever
            the umask. 0o660 shares a journal with the file's group.

    Attributes:
        path: the journal file.
        supervisor: the supervisor's pykka ``ActorRef`` (send it ``StartRun``/``CancelRun``).
        registry: the registry's pykka ``ActorRef``.
        id: the runtime id (``rt_`` and a ULID), unique to this opening of the journal; a
            run's ``owner`` column holds the id of the runtime executing it.

    Raises:
        TypeError: an option has the wrong type (``Runtime(123)``, ``concurrency=True``,
            a clock without ``time()``, a serializer without ``dumps``/``loads``).
        ValueError: an option is out of range (a negative count or number of seconds).
        JournalError: the file cannot be opened for writing (read-only, locked, a folder,
            ``:memory:``, another application's database, a journal of another version or
            signed with another key).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "actorflow.db",
        *,
        concurrency: int = 32,
        serializer: Serializer | None = None,
        busy_timeout: float = 5.0,
        durability: str = "normal",
        recover: bool = True,
        max_recoveries: int = 10,
        passivate_after: float = 1.0,
        clock: Clock | None = None,
        retention: float | _dt.timedelta | str | None = None,
        lease: float = 10.0,
        poll_interval: float = 0.25,
        queues: Mapping[str, int] | None = None,
        secret: str | bytes | None = None,
        file_mode: int = 0o600,
    ) -> None:
        self.path = sqlite_store.check_path(path)
        _check_int("concurrency", concurrency, 0, "(0: a client that executes nothing)")
        _check_int("max_recoveries", max_recoveries, 0)
        _check_seconds("busy_timeout", busy_timeout)
        _check_seconds("passivate_after", passivate_after)
        _check_seconds("lease", lease, positive=True)
        _check_seconds("poll_interval", poll_interval, positive=True)
        if durability not in ("normal", "full"):
            raise ValueError(f"durability must be 'normal' or 'full', not {durability!r}")
        if poll_interval * 2 > lease:
            raise ValueError(f"poll_interval ({poll_interval!r}) must be at most half the lease ({lease!r})")
        if queues is not None and not isinstance(queues, Mapping):
            raise TypeError(f"queues must be a dict of queue names to limits, not {type(queues).__name__}")
        for name, limit in (queues or {}).items():
            if not isinstance(name, str) or not name or not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise ValueError(f"queues maps queue names to limits >= 1, not {name!r}: {limit!r}")
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError(f"clock must have a time() method returning epoch seconds (a Clock), not {clock!r}")
        if serializer is not None and not isinstance(serializer, Serializer):
            raise TypeError(
                f"serializer must have a name and dumps()/loads() methods (an actorflow.Serializer), not {serializer!r}"
            )
        if not isinstance(file_mode, int) or isinstance(file_mode, bool) or not 0o600 <= file_mode <= 0o777 or file_mode & 0o600 != 0o600:
            raise ValueError(f"file_mode must give the owner read and write (0o600 to 0o777), not {file_mode!r}")
        retention_s = parse_duration(retention) if retention is not None else None
        self.serializer: Serializer = serializer if serializer is not None else JSONSerializer()
        self.id = "rt_" + new_ulid()
        self._closed = False
        self._lock = threading.Lock()
        sqlite_store.check_folder(self.path)
        sqlite_store.check_writable(self.path)
        # a new journal gets a key file; an existing one must come with its key
        signed = sqlite_store.recorded_key_check(self.path) is not None
        key = signing.resolve_key(self.path, secret, create=not signed, file_mode=file_mode)
        if key is None:
            raise JournalError(
                f"the journal {self.path!r} has no key file ({signing.key_path(self.path)!r} is missing or unreadable); "
                f"open it with the key it was created with: Runtime(secret=...) or ${signing.ENV_VAR}"
            )
        self.codec = Codec(self.serializer, signing.Signer(key))
        conn = sqlite_store.connect(
            self.path, busy_timeout=busy_timeout, durability=durability, key_check=signing.key_check(key), file_mode=file_mode
        )
        try:
            sqlite_store.connect_reader(self.path, busy_timeout=busy_timeout).close()
        except BaseException:
            conn.close()
            raise
        watched: set[str] = set()  # the runs the registry waits for (see Registry)
        self.registry: pykka.ActorRef[Any] = Registry.start(self.path, busy_timeout, watched)
        store = sqlite_store.SQLiteStore.writer(conn, self.path, self.id)
        self._journal: pykka.ActorRef[Any] = journal.Journal.start(store, self.registry, watched, self.codec)
        now = _time.time()
        self._journal.ask(m.RegisterRuntime(now, now + lease, now_iso(), concurrency))
        settings = Settings(
            concurrency=concurrency,
            runtime=self.id,
            answer_timeout=busy_timeout * 5 + 5.0,
            max_recoveries=max_recoveries,
            passivate_after=passivate_after,
            clock=clock if clock is not None else SystemClock(),
            retention=retention_s,
            lease=lease,
            poll_interval=poll_interval,
            queues=dict(queues or {}),
            recover=recover,
        )
        self.supervisor: pykka.ActorRef[Any] = Supervisor.start(settings, self._journal, self.registry, self.codec)
        self._concurrency = concurrency
        self._blocked = 0  # flows of this runtime blocked in a wait for another run
        _OPEN.add(self)

    # -- starting ---------------------------------------------------------------------

    @property
    def incarnation(self) -> str:
        """Deprecated name of :attr:`id` (warns with :class:`DeprecationWarning`)."""
        warnings.warn("Runtime.incarnation is renamed Runtime.id", DeprecationWarning, stacklevel=2)
        return self.id

    def start(self, flow: Callable[Concatenate[Any, P], R], /, *args: P.args, **kwargs: P.kwargs) -> RunHandle[R]:
        """Start a run of ``flow`` and return its handle once the run is committed.

        The flow executes in the background; the handle's id can be stored and used
        later, from any thread or after a restart. Per-run options (metadata,
        idempotency key) are set on the flow: ``rt.start(flow.options(...), *args)``.

        Args:
            flow: a flow (``@actorflow.flow``) or a plain function taking ``ctx`` first.
            *args: positional arguments for the flow (stored by value).
            **kwargs: keyword arguments for the flow (stored by value).

        Raises:
            TypeError: ``flow`` is not a flow (a step, say), or the arguments do not fit
                its signature (nothing is written).
            InvalidInput: the flow's validator refused the arguments (nothing is written).
            SerializationError: an argument cannot be stored (it is named; nothing is written).
            RuntimeClosed: the runtime was shut down.
            JournalError: the journal could not be written (nothing is written).
        """
        self._check_open()
        checked_args, checked_kwargs = check_arguments(flow, args, kwargs)
        future: Reply[Any] = Reply()
        done: Reply[Any] = Reply()
        try:
            self.supervisor.tell(m.StartRun(flow, checked_args, checked_kwargs, reply_to=future, done=done, checked=True))
        except pykka.ActorDeadError:
            raise RuntimeClosed("the runtime was shut down; create a new Runtime to start runs") from None
        return RunHandle(self, self._await(future, self.supervisor), done)

    # -- finding ----------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunHandle[Any]:
        """A handle for a run id that came from elsewhere.

        Raises:
            RunNotFound: there is no such run in this journal.
        """
        self._row(run_id)
        return RunHandle(self, run_id)

    def status(self, run_id: str) -> RunStatus:
        """The current status of a run.

        Raises:
            RunNotFound: there is no such run in this journal.
            CorruptRecord: the run's row cannot be decoded.
        """
        return status_from_row(self._row(run_id), self.codec)

    def list_runs(
        self,
        state: str | State | None = None,
        flow: str | Callable[..., Any] | None = None,
        parent: str | None = None,
        limit: int = 100,
    ) -> RunList:
        """Statuses of runs, newest first; prints as a table.

        Args:
            state: only runs in this state.
            flow: only runs of this flow (a name, or the flow itself).
            parent: only the children of this run id.
            limit: at most this many.
        """
        self._check_open()
        state, limit = check_listing(state, limit)
        if flow is not None and not isinstance(flow, str):
            from .flows import flow_name

            flow = flow_name(flow)
        rows = self._ask(self.registry, m.ListRuns(state=state, flow=flow, parent_id=parent, limit=limit))
        return RunList(status_from_row(r, self.codec, strict=False) for r in rows)

    def _row(self, run_id: str) -> m.Row:
        self._check_open()
        _check_id(run_id)
        row = self._ask(self.registry, m.GetRun(run_id))
        if row is None:
            raise RunNotFound(run_id)
        return row  # type: ignore[no-any-return]  # an actor's answer is untyped

    def steps(self, run_id: str) -> StepList:
        """The checkpointed calls of a run: name, state, attempts, times and last error of each.

        Raises:
            RunNotFound: there is no such run in this journal.
        """
        self._row(run_id)
        return steps_from_rows(run_id, self._ask(self.registry, m.GetSteps(run_id)), self.codec)

    # -- waiting ----------------------------------------------------------------------

    def wait(self, run_id: str, timeout: float | None = None) -> RunStatus:
        """Wait until a run ends and return its final status (see :meth:`RunHandle.wait`)."""
        return status_from_row(self._wait_row(run_id, timeout), self.codec)

    def result(self, run_id: str, timeout: float | None = None) -> Any:
        """Wait until a run ends and return its result (see :meth:`RunHandle.result`)."""
        return result_from_row(self._wait_row(run_id, timeout), self.codec)

    def tree(self, run_id: str) -> RunTree:
        """A run and its descendants (child runs, theirs...) with their states; prints as a tree.

        Raises:
            RunNotFound: there is no such run in this journal.
        """
        self._row(run_id)
        rows = self._ask(self.registry, m.GetTree(run_id))
        return RunTree((depth, status_from_row(row, self.codec, strict=False)) for depth, row in rows)

    def _wait_row(self, run_id: str, timeout: float | None, done: Reply[Any] | None = None) -> m.Row:
        """The final row of ``run_id``: from ``done`` (a handle's) if it is resolved, else from the registry."""
        self._check_open()
        timeout = check_timeout(timeout)
        if done is not None and done.done:  # its end was committed here: nothing to ask
            return done.get()  # type: ignore[no-any-return]  # an actor's answer is untyped
        _check_id(run_id)
        in_flow = self._in_own_flow()
        if in_flow:
            self._hold_slot_while_waiting(run_id)  # counted until the finally below
        future: Reply[Any] = Reply()
        try:
            self._tell(self.registry, m.Watch(run_id, future))
            return self._await(future, self.registry, timeout)  # type: ignore[no-any-return]  # an actor's answer is untyped
        except pykka.Timeout:
            try:
                self.registry.tell(m.Unwatch(run_id, future))
            except pykka.ActorDeadError:
                pass
            raise TimeoutError(f"run {run_id} did not finish within {timeout}s; it is still running") from None
        finally:
            if in_flow:
                with self._lock:
                    self._blocked -= 1

    def _in_own_flow(self) -> bool:
        """True when called from a flow this runtime executes."""
        ctx = _run_context.run.get()
        return ctx is not None and getattr(ctx._execution, "supervisor", None) == self.supervisor

    def _hold_slot_while_waiting(self, run_id: str) -> None:
        """Count a flow of this runtime that blocks on another run, or refuse a wait that could never end.

        A flow that blocks on another run's result holds its slot meanwhile; if every slot
        of this runtime is held by such waits and no other runtime on the journal executes
        runs, a run that has yet to execute never gets one. The caller uncounts it when
        the wait ends.

        Raises:
            ActorflowError: the awaited run is not executing and nothing would execute it.
        """
        ctx = _run_context.run.get()
        assert ctx is not None
        with self._lock:  # checked and counted at once: two flows cannot both take the last slot
            if self._blocked + 1 < self._concurrency:
                self._blocked += 1
                return
            state = self._row(run_id)["state"]
            if state in ("pending", "waiting") and not self._ask(self.registry, m.CountExecutors(_time.time(), self.id)):
                raise ActorflowError(
                    f"run {ctx.run_id} waits for run {run_id} ({state}) from inside its flow, holding one of this "
                    f"runtime's {self._concurrency} slot(s) while every other one is held the same way, and no other "
                    f"runtime on the journal executes runs: run {run_id} would never execute. From a flow, start the "
                    "run as a child (ctx.start) and wait with child.result(), ctx.gather() or ctx.wait_first(), which "
                    "give the slot up while they wait"
                )
            self._blocked += 1

    # -- events and streams -----------------------------------------------------------

    def send(self, run_id: str, topic: str, payload: Any = None) -> None:
        """Deliver an event to a run: its next ``ctx.wait_event(topic)`` returns ``payload``.

        Returns once the event is committed. Events wait in order until the run takes
        them; none is lost or delivered twice across crashes.

        Raises:
            RunNotFound: no such run.
            RunFinished: the run has finished.
            SerializationError: the payload cannot be stored.
        """
        self._check_open()
        _check_id(run_id)
        future: Reply[Any] = Reply()
        self._tell(self.supervisor, m.SendEvent(run_id, topic, payload, reply_to=future))
        self._await(future, self.supervisor)

    def resume_hook(self, token: str, payload: Any = None) -> None:
        """Deliver ``payload`` to the run holding the hook ``token`` (from ``ctx.hook()``).

        Raises:
            HookNotFound: no unfinished run holds the token.
            SerializationError: the payload cannot be stored.
        """
        self._check_open()
        if not isinstance(token, str):
            raise TypeError(f"a hook token is a str, not {type(token).__name__}")
        future: Reply[Any] = Reply()
        self._tell(self.supervisor, m.SendEvent(None, "hook:" + token, payload, hook=token, reply_to=future))
        self._await(future, self.supervisor)

    def stream(self, run_id: str, namespace: str | None = None, start: int = 0, timeout: float | None = None) -> Iterator[Any]:
        """Yield the chunks a run writes (``ctx.write``), live, from index ``start``.

        The iterator blocks until the next chunk is committed (no busy loop: it is woken
        at the commit in this process, or within ``poll_interval`` for a run another process
        executes) and ends
        when the run ends or closes the stream (``ctx.close_stream``). It can be resumed
        from any index, after a restart too.

        Args:
            run_id: the run.
            namespace: which of the run's streams (``ctx.write(..., namespace=...)``).
            start: the index of the first chunk to yield.
            timeout: seconds to wait for each next chunk; then :class:`TimeoutError`.

        Raises:
            RunNotFound: no such run.
        """
        self._check_open()
        _check_id(run_id)
        ns = namespace or ""
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            raise ValueError(f"start must be a chunk index (an int >= 0), not {start!r}")
        index = start
        last_seq = -1
        while True:
            chunks, finished = self._ask(self.registry, m.GetChunks(run_id, ns, index))
            for idx, data, closed, seq in chunks:
                # each chunk is checked for its run, position, stream and close mark, and
                # they must come in the order they were written
                value = self.codec.loads(data, run_id, signing.CHUNK, seq, signing.chunk_place(ns, bool(closed)), required=True)
                if seq <= last_seq:
                    raise TamperedRecord(run_id, f"chunk {seq}", "the stream's chunks are out of the order they were written in")
                last_seq = seq
                if closed:
                    return
                yield value
                index = idx + 1
            if chunks:
                continue
            if finished:
                return
            future: Reply[Any] = Reply()
            self._tell(self.registry, m.WatchChunks(run_id, ns, index, future))
            try:
                self._await(future, self.registry, timeout)
            except pykka.Timeout:
                self.registry.tell(m.UnwatchChunks(run_id, future))
                raise TimeoutError(f"no chunk from run {run_id} within {timeout}s") from None

    # -- cancelling -------------------------------------------------------------------

    def cancel(self, run_id: str) -> bool:
        """Cancel a run: at once if pending, at its next cancellation point if executing.

        Returns:
            True if this call cancelled the run, False if it had already finished
            (a finished run is never changed).

        Raises:
            RunNotFound: there is no such run in this journal.
        """
        self._check_open()
        _check_id(run_id)
        future: Reply[Any] = Reply()
        self._tell(self.supervisor, m.CancelRun(run_id, reply_to=future))
        return bool(self._await(future, self.supervisor))

    # -- retention --------------------------------------------------------------------

    def purge(
        self,
        older_than: float | _dt.timedelta | str = 0,
        states: Iterable[str | State] = ("completed", "failed", "cancelled", "timed_out"),
    ) -> int:
        """Delete finished runs that ended more than ``older_than`` ago, with everything recorded for them.

        A run's children (and theirs) go with it; its steps, events, stream chunks and
        hooks too. Unfinished runs are never purged. SQLite reuses the freed pages, so a
        journal purged regularly stops growing (it does not shrink on disk; ``VACUUM``
        with the sqlite3 shell does that while no runtime has it open).

        Args:
            older_than: seconds, a timedelta or text like ``"7d"``; 0 purges every finished run.
            states: which terminal states to purge (the default: all four); one state
                alone may be given as a str.

        Returns:
            The number of runs deleted.
        """
        self._check_open()
        seconds = parse_duration(older_than)
        if isinstance(states, (str, State)):
            states = (states,)
        if not isinstance(states, Iterable):
            raise TypeError(f"states must be a state or a list of states, not {states!r}")
        wanted = tuple(parse_state(s).value for s in states)
        for state in wanted:
            if not State(state).terminal:
                raise ValueError(f"only finished runs can be purged, not {state!r} ones")
        before = iso(_time.time() - seconds)
        future: Reply[Any] = Reply()
        self._tell(self._journal, m.Purge(before, wanted, reply_to=future))
        return int(self._await(future, self._journal))

    # -- lifecycle --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeClosed(f"the runtime on {self.path!r} was shut down; create a new Runtime to use the journal")

    def _tell(self, ref: pykka.ActorRef[Any], message: Any) -> None:
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            raise RuntimeClosed(f"the runtime on {self.path!r} was shut down") from None

    def _await(self, future: pykka.Future[Any], ref: pykka.ActorRef[Any], timeout: float | None = None) -> Any:
        """Wait for an answer to a message sent to ``ref``.

        Raises:
            RuntimeClosed: ``ref`` stopped meanwhile (the runtime shut down).
            pykka.Timeout: ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else _time.monotonic() + timeout
        while True:
            wait = 1.0 if deadline is None else min(1.0, max(0.0, deadline - _time.monotonic()))
            try:
                return future.get(timeout=wait)
            except pykka.Timeout:
                if not ref.is_alive():
                    raise RuntimeClosed(f"the runtime on {self.path!r} was shut down") from None
                if deadline is not None and _time.monotonic() >= deadline:
                    raise

    def _ask(self, ref: pykka.ActorRef[Any], message: Any) -> Any:
        try:
            return ref.ask(message)
        except pykka.ActorDeadError:
            raise RuntimeClosed(f"the runtime on {self.path!r} was shut down") from None

    def shutdown(self, timeout: float | None = 10.0) -> None:
        """Stop the runtime: no new starts, give executing runs ``timeout`` seconds, stop the actors.

        Runs that have not finished by then are told to stop at their next cancellation point
        and stay unfinished in the journal; the next runtime on the file resumes them.
        Calling it again does nothing.

        Args:
            timeout: seconds to let executing runs finish; None waits for all of them.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _OPEN.discard(self)
        drained: Reply[Any] = Reply()
        try:
            self.supervisor.tell(m.Drain(drained))
            try:
                drained.get(timeout=timeout)
            except pykka.Timeout:
                self.supervisor.tell(m.Abandon())
                try:  # flows stop at their next cancellation point; waits for journal answers give up
                    drained.get(timeout=2.0)
                except pykka.Timeout:
                    log.warning("some flows did not reach a cancellation point; their threads are left to end")
        finally:
            try:  # first: its ticks would renew the lease that is given up next
                self.supervisor.stop(block=True, timeout=30)
            except pykka.ActorDeadError:
                pass
            try:  # give up what this runtime holds: another one takes it at once, not after the lease
                self._journal.ask(m.ReleaseAll(), timeout=30)
            except Exception:
                log.warning("could not release this runtime's runs at shutdown", exc_info=True)
            for ref in (self._journal, self.registry):
                try:
                    ref.stop(block=True, timeout=30)
                except pykka.ActorDeadError:
                    pass

    def close(self) -> None:
        """Same as :meth:`shutdown` with its default timeout."""
        self.shutdown()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        if self._closed:
            return f"<Runtime {self.path!r} (shut down)>"
        try:
            counts = self._ask(self.registry, m.CountByState())
        except ActorflowError:
            counts = {}
        order = [s.value for s in State]
        text = ", ".join(f"{s} {counts[s]}" for s in order if counts.get(s))
        return f"<Runtime {self.path!r}: {text or 'no runs'}>"
