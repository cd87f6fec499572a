"""The registry actor: the live state of runs, status queries, and the waiters.

The registry answers status queries from its own read connection to the journal (the
journal is the truth: with several processes on one file, a run may be executed by
another one), and keeps the waiters: futures of callers (``run.result()``), of parent
runs that wait for other runs, and of stream readers. The journal tells it of the end of
every run it waits for (its ``watched`` set) as this process commits it, so a local run's
end resolves its waiters at once. Changes
other processes commit are read from the journal's append-only tables (``events``,
``messages``, ``chunks``) every ``poll_interval`` (:class:`~actorflow.messages.Poll`):
that bounded interval is the delay with which a result, an event or a cancel crosses
from one process to another.
"""

from __future__ import annotations

from typing import Any

import pykka

from . import messages as m
from ._actor import Actor
from .errors import RunNotFound, RuntimeClosed
from .states import TERMINAL_NAMES
from .store.sqlite import SQLiteStore, connect_reader

__all__ = ["Registry", "condition_met"]


_TERMINAL = TERMINAL_NAMES


def condition_met(mode: str, run_ids: tuple[str, ...], settled: dict[str, m.Row]) -> bool:
    """Whether a wait for ``run_ids`` in ``mode`` is over, given the runs that have ``settled``."""
    if mode == "first":
        return bool(settled)
    if mode == "all_or_failure" and any(r["state"] != "completed" for r in settled.values()):
        return True
    return len(settled) == len(set(run_ids))


class _Await:
    """A run waiting for other runs: the request and the final rows of those ended so far."""

    __slots__ = ("message", "settled")

    def __init__(self, message: m.AwaitRuns) -> None:
        self.message = message
        self.settled: dict[str, m.Row] = {}


class Registry(Actor):
    """Holds live run state and resolves waiters when runs end.

    Args:
        path: the journal file (the registry opens its own read connection).
        busy_timeout: seconds a read waits for a lock.
        watched: the set this actor keeps of the runs it waits for (shared, read-only,
            with the journal, which tells of a run's end only if its id is in it).
    """

    def __init__(self, path: str, busy_timeout: float, watched: set[str] | None = None) -> None:
        super().__init__()
        # the ids of runs whose end something here waits for; the journal reads it after
        # each commit and tells this actor of an end only if the run is in it (an id is
        # added before the run's row is read, so an end committed after that read is seen)
        self.watched: set[str] = watched if watched is not None else set()
        self._path = path
        self._busy_timeout = busy_timeout
        self._store: SQLiteStore | None = None  # opened in the actor's own thread
        self._marks = (0, 0, 0)  # where the change feed stands (see _poll)
        self._waiters: dict[str, list[pykka.Future[Any]]] = {}
        # runs waiting for other runs (a run waits for one thing at a time): waiter → _Await,
        # and awaited run → the waiters
        self._awaits: dict[str, _Await] = {}
        self._awaited_by: dict[str, set[str]] = {}
        # stream readers waiting for a chunk: run id → [(namespace, start, future)]
        self._readers: dict[str, list[tuple[str, int, pykka.Future[Any]]]] = {}

    def on_start(self) -> None:
        """Open the read connection in the actor's own thread; start the change feed at the present."""
        self._store = SQLiteStore(connect_reader(self._path, busy_timeout=self._busy_timeout), path=self._path)
        self._marks = self._store.feed_marks()

    def on_stop(self) -> None:
        """Fail the waiters left (the runtime is closing) and close the connection."""
        for readers in self._readers.values():
            for _, _, future in readers:
                future.set_exception(exc_info=(RuntimeClosed, RuntimeClosed("the runtime shut down"), None))
        self._readers.clear()
        for run_id, futures in self._waiters.items():
            error = RuntimeClosed(
                f"the runtime shut down before run {run_id!r} finished; the run stays in the "
                "journal and resumes when the journal is opened again"
            )
            for future in futures:
                future.set_exception(exc_info=(RuntimeClosed, error, None))
        self._waiters.clear()
        if self._store is not None:
            self._store.close()

    @property
    def store(self) -> SQLiteStore:
        """The read store (opened when the actor starts)."""
        assert self._store is not None
        return self._store

    def _row(self, run_id: str) -> m.Row | None:
        return self.store.get_run(run_id)  # type: ignore[return-value]  # a RunRow is a dict

    def handle(self, message: Any) -> Any:
        """Apply committed changes, register waiters, answer queries: one handler per message."""
        store = self.store
        match message:
            case m.Committed():
                self._apply(message.changes)
            case m.Watch():
                self._watch(message)
            case m.Unwatch():
                self._unwatch(message)
            case m.AwaitRuns():
                self._await(message)
            case m.Poll():
                self._polled(message)
            case m.ChunkWritten():
                self._chunk_written(message.run_id, message.namespace, message.index)
            case m.WatchChunks():
                self._watch_chunks(message)
            case m.UnwatchChunks():
                self._unwatch_chunks(message)
            case m.GetRun():
                return self._row(message.run_id)
            case m.GetRuns():
                return {run_id: row for run_id in message.run_ids if (row := self._row(run_id)) is not None}
            case m.GetTree():
                return store.tree(message.run_id)
            case m.GetChunks():
                return self._chunks(message)
            case m.GetSteps():
                return store.steps(message.run_id)
            case m.ListRuns():
                return store.list_runs(state=message.state, flow=message.flow, parent_id=message.parent_id, limit=message.limit)
            case m.CountExecutors():
                return store.executors(message.now, message.besides)
            case m.CountByState():
                return store.count_by_state()
            case _:
                return super().handle(message)
        return None

    def _unwatch(self, message: m.Unwatch) -> None:
        """A caller stopped waiting for a run (its wait timed out)."""
        futures = self._waiters.get(message.run_id)
        if futures is not None and message.future in futures:
            futures.remove(message.future)
            if not futures:
                del self._waiters[message.run_id]
                self._unwatch_if_idle(message.run_id)

    def _polled(self, message: m.Poll) -> None:
        """Read the change feed; tell the supervisor what it must act on."""
        changes = self._poll()
        if changes is not None and message.notify is not None:
            try:
                message.notify.tell(changes)
            except pykka.ActorDeadError:  # the supervisor stopped first, at shutdown
                pass

    def _chunks(self, message: m.GetChunks) -> tuple[list[tuple[int, Any, int, int]], bool]:
        """A stream's chunks from an index, and whether the run has ended."""
        # the row first: a run seen finished has every chunk committed, so the chunks
        # read next are complete (the other order could miss the last ones)
        row = self._row(message.run_id)
        if row is None:
            raise RunNotFound(message.run_id)
        chunks = self.store.chunks(message.run_id, message.namespace, message.start, message.limit)
        return chunks, row["state"] in _TERMINAL

    def _unwatch_chunks(self, message: m.UnwatchChunks) -> None:
        """A stream reader gave up waiting."""
        readers = [r for r in self._readers.get(message.run_id, ()) if r[2] is not message.future]
        if readers:
            self._readers[message.run_id] = readers
        else:
            self._readers.pop(message.run_id, None)
            self._unwatch_if_idle(message.run_id)

    def _apply(self, changes: tuple[tuple[str, m.Row], ...]) -> None:
        """Committed changes: resolve what waits on runs that have ended."""
        for run_id, change in changes:
            if change.get("state") in _TERMINAL:
                self._ended(run_id, change if "id" in change else None)

    def _ended(self, run_id: str, row: m.Row | None = None) -> None:
        """The run is in a terminal state (committed here or by another process).

        ``row`` is its final row when the journal sent it whole; otherwise it is read.
        """
        watched = run_id in self._waiters or run_id in self._awaited_by or run_id in self._readers
        self._forget(run_id)  # a waiter that ended waits no more
        if not watched:
            return
        if row is None:
            row = self._row(run_id)
        if row is None:  # purged before its end was read here: its waiters hear so
            self._purged(run_id)
            return
        if row["state"] not in _TERMINAL:
            return
        for future in self._waiters.pop(run_id, ()):
            future.set(dict(row))
        for waiter in self._awaited_by.pop(run_id, ()):
            waiting = self._awaits.get(waiter)
            if waiting is not None:
                waiting.settled[run_id] = dict(row)
                self._check(waiter, waiting)
        for _, _, future in self._readers.pop(run_id, ()):
            future.set(None)  # its stream has ended
        self._unwatch_if_idle(run_id)

    def _purged(self, run_id: str) -> None:
        """Fail what waits for a run that no longer exists (a stream just ends)."""
        error = RunNotFound(run_id)
        for future in self._waiters.pop(run_id, ()):
            future.set_exception(exc_info=(RunNotFound, error, None))
        for waiter in self._awaited_by.pop(run_id, ()):
            waiting = self._awaits.get(waiter)
            if waiting is not None:
                self._forget(waiter)
                waiting.message.reply_to.set_exception(exc_info=(RunNotFound, error, None))
        for _, _, future in self._readers.pop(run_id, ()):
            future.set(None)
        self._unwatch_if_idle(run_id)

    def _poll(self) -> m.ExternalChanges | None:
        """Read what was committed since the last poll (by any process), and resolve what it settles.

        Changes this process committed are seen again here; handling them twice is harmless.
        """
        feed, self._marks = self.store.feed_since(self._marks)
        ended, cancelled, events = feed["ended"], feed["cancelled"], feed["events"]
        for run_id in ended:
            self._ended(run_id)
        for run_id, namespace, idx in feed["chunks"]:
            self._chunk_written(run_id, namespace, idx)
        if cancelled or ended or events:
            return m.ExternalChanges(tuple(cancelled), tuple(ended), tuple(events))
        return None

    def _await(self, message: m.AwaitRuns) -> None:
        key = message.waiter
        self._forget(key)
        waiting = _Await(message)
        self.watched.add(key)  # its own end drops the wait
        self.watched.update(message.run_ids)
        for run_id in message.run_ids:
            row = self._row(run_id)
            if row is None:
                error = RunNotFound(run_id)
                message.reply_to.set_exception(exc_info=(RunNotFound, error, None))
                for other in (key, *message.run_ids):
                    self._unwatch_if_idle(other)
                return
            if row["state"] in _TERMINAL:
                waiting.settled[run_id] = row
        self._awaits[key] = waiting
        for run_id in message.run_ids:
            if run_id not in waiting.settled:
                self._awaited_by.setdefault(run_id, set()).add(key)
            else:
                self._unwatch_if_idle(run_id)  # ended already: nothing to hear of it
        self._check(key, waiting)

    def _check(self, key: str, waiting: _Await) -> None:
        """Resolve the wait ``key`` and wake its run if its condition is met."""
        msg = waiting.message
        settled = waiting.settled
        if not condition_met(msg.mode, msg.run_ids, settled):
            return
        self._forget(key)
        msg.reply_to.set(dict(settled))
        try:
            msg.notify.tell(m.Wake(msg.waiter, msg.wait))
        except pykka.ActorDeadError:
            pass

    def _forget(self, key: str) -> None:
        waiting = self._awaits.pop(key, None)
        if waiting is None:
            return
        for run_id in waiting.message.run_ids:
            keys = self._awaited_by.get(run_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._awaited_by[run_id]
            self._unwatch_if_idle(run_id)
        self._unwatch_if_idle(key)

    def _chunk_written(self, run_id: str, namespace: str, index: int) -> None:
        readers = self._readers.get(run_id)
        if not readers:
            return
        keep = []
        for ns, start, future in readers:
            if ns == namespace and index >= start:
                future.set(None)
            else:
                keep.append((ns, start, future))
        if keep:
            self._readers[run_id] = keep
        else:
            del self._readers[run_id]
            self._unwatch_if_idle(run_id)

    def _watch_chunks(self, message: m.WatchChunks) -> None:
        self.watched.add(message.run_id)
        row = self._row(message.run_id)
        if row is None:
            error = RunNotFound(message.run_id)
            message.future.set_exception(exc_info=(RunNotFound, error, None))
            self._unwatch_if_idle(message.run_id)
            return
        ready = self.store.chunks(message.run_id, message.namespace, message.start, 1)
        if ready or row["state"] in _TERMINAL:
            message.future.set(None)
        else:
            self._readers.setdefault(message.run_id, []).append((message.namespace, message.start, message.future))
        self._unwatch_if_idle(message.run_id)

    def _watch(self, message: m.Watch) -> None:
        self.watched.add(message.run_id)  # before the read: an end committed after it is told
        row = self._row(message.run_id)
        if row is None:
            error = RunNotFound(message.run_id)
            message.future.set_exception(exc_info=(RunNotFound, error, None))
        elif row["state"] in _TERMINAL:
            message.future.set(row)
        else:
            self._waiters.setdefault(message.run_id, []).append(message.future)
        self._unwatch_if_idle(message.run_id)

    def _unwatch_if_idle(self, run_id: str) -> None:
        """Drop ``run_id`` from :attr:`watched` once nothing here waits for it."""
        if not (run_id in self._waiters or run_id in self._awaited_by or run_id in self._readers or run_id in self._awaits):
            self.watched.discard(run_id)
