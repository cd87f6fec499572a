"""The journal actor: the single writer of a journal; it commits writes in groups.

Writers send it messages (:mod:`actorflow.messages`) and it applies them to its
:class:`~actorflow.store.Store` in groups: each write is queued, and while more messages wait
in the actor's inbox it keeps collecting; the write that finds the inbox empty commits the
whole group as one transaction. So every write that arrives while a commit is under way goes
into the next transaction, and a lone write is committed at once. Only after the commit does
it answer the writers' futures and report the changes to the registry, so nothing is visible
outside before it is durable.

Everything about where the rows live (SQL, files, locks) is the store's: this module keeps
group commit, replies, after-commit work and notifications.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import pykka

from . import messages as m
from ._actor import Actor
from ._actor import tell as tell_actor
from ._time import now_iso
from .codec import Codec
from .errors import ActorflowError, JournalError, RunFinished
from .signing import ARGS, event_kind
from .states import TERMINAL_NAMES, StepKind
from .store import ErrorKind, Store, WaitAnswer
from .store.sqlite import host_identity, process_alive

__all__ = ["Journal"]

log = logging.getLogger("actorflow")


_FAIL_FAST = (m.InsertRun, m.RequestCancel, m.InsertEvent)
_WRITE_THEN_CHECK = frozenset({m.TakeEvent})  # may raise after writing: needs a savepoint

# what an applied write leaves to do after the commit: (result for reply_to, change for the
# registry or None, (actor, message) to tell or None)
_Outcome = tuple[Any, "tuple[str, m.Row] | list[tuple[str, m.Row]] | None", "tuple[pykka.ActorRef[Any], Any] | None"]


class _OpFailed(Exception):
    """An operation of a group failed with an unexpected store error (the group is redone carefully)."""


class Journal(Actor):
    """The single writer of the journal; commits writes in groups.

    Args:
        store: where the rows live (this actor becomes its only writer); it fences the
            writes of the runs it executes on its ``runtime`` id.
        registry: the registry actor, told of the committed ends of the runs it watches.
        watched: the registry's set of the runs it waits for: a run's end is told to the
            registry only if its id is in it (None: every end is told).
        codec: signs an event's payload once its run and id are known, and re-signs it
            for the step that takes it; every other payload arrives signed by the actor
            that wrote it.
    """

    def __init__(
        self,
        store: Store,
        registry: pykka.ActorRef[Any],
        watched: set[str] | None,
        codec: Codec,
    ) -> None:
        super().__init__()
        self._store = store
        self._codec = codec
        self._watched = watched
        self._owner = store.runtime
        self._host = host_identity()
        self._registry = registry
        self._pending: list[Any] = []
        self._flush_scheduled = False
        self._failures = 0
        # futures resolved once this group commits: (future, value) ("admitted", "done")
        self._after_commit: list[tuple[Any, Any]] = []
        self._slots = 0  # how many runs this runtime executes at once (recorded with its lease)
        self._handlers: dict[type, Callable[[Any], _Outcome]] = {
            m.InsertRun: self._insert_run,
            m.ClaimRun: self._claim_run,
            m.SaveProgress: self._save_progress,
            m.FinishRun: self._finish_run,
            m.RequestCancel: self._request_cancel,
            m.StepStarted: self._step_started,
            m.StepAttemptFailed: self._step_attempt_failed,
            m.SaveStep: self._save_step,
            m.RetryRun: self._retry_run,
            m.ReleaseRun: self._release_run,
            m.SetWaiting: self._set_waiting,
            m.InsertEvent: self._insert_event,
            m.TakeEvent: self._take_event,
            m.RegisterHook: self._register_hook,
            m.WriteChunk: self._write_chunk,
            m.Purge: self._purge,
            m.RegisterRuntime: self._register_runtime,
            m.RenewLease: self._renew_lease,
            m.ClaimOrphans: self._claim_orphans,
            m.ReleaseAll: self._release_all,
            m.Requeue: self._requeue,
            m.Sleep: self._sleep,
        }

    def on_stop(self) -> None:
        """Commit what is still queued, then close the store."""
        if self._pending:
            self._flush()
        self._store.close()

    def handle(self, message: Any) -> Any:
        """Queue a write (and schedule a flush), flush, or answer a read."""
        if isinstance(message, m.Flush):
            self._flush_scheduled = False
            self._flush()
            return None
        if isinstance(message, m.ClaimOrphans) and not self._claim_needed_safely(message):
            # the common case: nothing to take over or claim; answer without a write transaction
            if message.notify is not None:
                try:
                    message.notify.tell(m.Claimed(()))
                except pykka.ActorDeadError:  # the supervisor stopped meanwhile (shutting down)
                    pass
            if self._pending and self.actor_inbox.empty():
                self._flush()  # writes queued before it still go out now
            return None
        if type(message) in self._handlers:
            self._pending.append(message)
            # group commit: while more messages wait in the inbox, keep collecting; the
            # write that finds the inbox empty commits the whole group
            if self.actor_inbox.empty():
                self._flush()
            return None
        return super().handle(message)

    # -- group commit ------------------------------------------------------------------

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        store = self._store
        try:
            outcomes = self._apply_batch(batch, careful=False)
        except _OpFailed:
            # an operation hit an unexpected store error: redo the group with a savepoint
            # around each operation, so that only the failing one is rolled back
            self._after_commit.clear()
            try:
                outcomes = self._apply_batch(batch, careful=True)
            except Exception as exc:
                if store.classify(exc) is None:
                    raise
                self._batch_failed(batch, exc)
                return
        except Exception as exc:
            if store.classify(exc) is None:
                raise
            self._batch_failed(batch, exc)
            return
        self._failures = 0
        after, self._after_commit = self._after_commit, []
        changes = []
        for msg, outcome, failure in outcomes:
            reply_to = getattr(msg, "reply_to", None)
            try:
                if failure is not None:
                    if isinstance(msg, m.InsertRun) and msg.admitted is not None:
                        msg.admitted.set(False)  # not created: its execution actor just ends
                    if isinstance(msg, m.ClaimOrphans) and msg.notify is not None:
                        msg.notify.tell(m.Claimed(()))  # the supervisor waits for an answer to claim again
                    if reply_to is not None:
                        reply_to.set_exception(exc_info=(type(failure), failure, failure.__traceback__))
                    continue
                assert outcome is not None
                result, change, tell = outcome
                if reply_to is not None:
                    reply_to.set(result)
                if change is not None:
                    if isinstance(change, list):
                        changes.extend(change)
                    else:
                        changes.append(change)
                if tell is not None:
                    tell_actor(tell[0], tell[1])
            except Exception:  # a dead listener (shutting down) must not cost the others their answers
                log.debug("journal: could not deliver the outcome of %r", msg, exc_info=True)
        # after the replies (the callers of start() wait on those): admissions, which start
        # the runs' execution loops, and the final rows of runs whose handles wait
        for future, value in after:
            try:
                future.set(value)
            except Exception:
                log.exception("journal: could not resolve %r", future)
        # the registry acts on the ends of runs it waits for (it resolves their waiters):
        # telling it of anything else would wake its thread for nothing
        watched = self._watched
        ends = tuple(
            (run_id, change)
            for run_id, change in changes
            if change.get("state") in TERMINAL_NAMES and (watched is None or run_id in watched)
        )
        if ends:
            try:
                tell_actor(self._registry, m.Committed(ends))
            except pykka.ActorDeadError:
                pass

    def _apply_batch(self, batch: list[Any], *, careful: bool) -> list[tuple[Any, _Outcome | None, BaseException | None]]:
        """Apply every write of ``batch`` in one transaction and commit it.

        An operation that raises an :class:`ActorflowError` has written nothing (each
        checks before it writes), so it fails alone. An unexpected store error raises
        :class:`_OpFailed` unless ``careful``, in which case each operation runs inside a
        savepoint and only the failing one is undone. An error about the store itself
        (busy, the file) fails the whole group.
        """
        store = self._store
        handlers = self._handlers
        outcomes: list[tuple[Any, _Outcome | None, BaseException | None]] = []
        store.begin()
        try:
            after = self._after_commit
            for msg in batch:
                if careful:
                    store.savepoint()
                mark = len(after)  # what a failed operation queued for after the commit is dropped
                try:
                    outcome = handlers[type(msg)](msg)
                except ActorflowError as exc:
                    if type(msg) in _WRITE_THEN_CHECK and not careful:
                        raise _OpFailed from exc  # it may have written before it failed: redo carefully
                    del after[mark:]
                    if careful:
                        store.rollback_savepoint()
                    outcomes.append((msg, None, exc))
                    continue
                except Exception as exc:
                    kind = store.classify(exc)
                    if kind in (ErrorKind.BUSY, ErrorKind.FILE):
                        raise  # about the store, not the operation: the whole group fails
                    if not careful:
                        raise _OpFailed from exc
                    del after[mark:]
                    store.rollback_savepoint()
                    log.exception("journal write %r failed", msg)
                    outcomes.append((msg, None, JournalError(f"the journal could not store {type(msg).__name__}: {exc}")))
                    continue
                if careful:
                    store.release_savepoint()
                outcomes.append((msg, outcome, None))
            store.commit()
        except BaseException:
            store.rollback()
            raise
        return outcomes

    def _batch_failed(self, batch: list[Any], exc: BaseException) -> None:
        """Retry a group that met a lock; fail the waiting writes on other errors (or after long)."""
        store = self._store
        busy = store.classify(exc) is ErrorKind.BUSY
        error = JournalError(store.describe(exc))
        self._after_commit.clear()
        if busy and self._failures < 3:
            # other processes write too: the busy timeout ran out once; try the group again
            # (a few times) before anyone sees "locked"
            self._failures += 1
            log.info("journal: %s; retrying %d writes", error, len(batch))
            self._pending = batch + self._pending
            self._flush()
            return
        for msg in batch:
            if isinstance(msg, m.InsertRun) and msg.admitted is not None:
                msg.admitted.set_exception(exc_info=(JournalError, error, None))
        self._failures += 1
        keep = []
        for msg in batch:
            reply_to = getattr(msg, "reply_to", None)
            if isinstance(msg, _FAIL_FAST) and reply_to is not None:
                reply_to.set_exception(exc_info=(JournalError, error, None))
            else:
                keep.append(msg)
        if not keep:
            return
        if self._failures > 20 and not busy:
            # not a lock that another process will release: fail the writes that wait for an
            # answer (their senders report it); keep the others, which nothing else records
            for msg in [k for k in keep if getattr(k, "reply_to", None) is not None]:
                msg.reply_to.set_exception(exc_info=(JournalError, error, None))
            keep = [k for k in keep if getattr(k, "reply_to", None) is None]
            log.error("journal: %s; keeps retrying %d writes", error, len(keep))
        log.warning("journal: commit failed (%s); retrying %d writes", error, len(keep))
        time.sleep(min(1.0, 0.05 * self._failures))
        self._pending = keep + self._pending
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.actor_ref.tell(m.Flush())

    # -- the writes --------------------------------------------------------------------

    def _insert_run(self, msg: m.InsertRun) -> _Outcome:
        row = msg.row
        store = self._store
        existing = store.insert_run(row)  # type: ignore[arg-type]  # a row with extra "_" keys
        if existing is not None:  # same id (a replayed child start) or same idempotency key
            if existing != row["id"]:
                # answered by another run's key: that key must be the one its start signed
                found = store.get_run(existing)
                if found is not None:
                    self._codec.unseal(found.get("args"), existing, ARGS, 0, Codec.run_input(found))
            if msg.admitted is not None:
                self._after_commit.append((msg.admitted, False))
            return existing, None, None
        if msg.admitted is not None:
            self._after_commit.append((msg.admitted, True))
        tell = (msg.notify, m.RunCommitted(row)) if msg.notify is not None else None
        return row["id"], (row["id"], row), tell

    def _claim_run(self, msg: m.ClaimRun) -> _Outcome:
        claimed = self._store.claim_run(msg.run_id, msg.at, msg.deadline)
        if claimed is None:
            return None, None, None
        row, _ = claimed
        change = {"state": "running", "attempt": row["attempt"], "started_at": msg.at, "owner": self._owner,
                  "recoveries": row["recoveries"], "deadline": row["deadline"], "waiting_for": None,
                  "wake_at": None}  # fmt: skip
        return claimed, (msg.run_id, change), None

    def _step_started(self, msg: m.StepStarted) -> _Outcome:
        saved = self._store.put_step(msg.run_id, msg.seq, msg.name, "running", attempts=msg.attempt, started_at=msg.at,
                                     retry_at=msg.wake_at)  # fmt: skip
        return saved, None, None

    def _step_attempt_failed(self, msg: m.StepAttemptFailed) -> _Outcome:
        store = self._store
        if store.save_step({"run_id": msg.run_id, "seq": msg.seq, "name": msg.name, "state": "retrying", "error": msg.error,
                            "attempts": msg.attempt, "retry_at": msg.retry_at}):  # fmt: skip
            detail = {"seq": msg.seq, "step": msg.name, "attempt": msg.attempt, "error": msg.summary,
                      "retry_in": msg.retry_in, "retry_at": msg.retry_at}  # fmt: skip
            store.add_history(msg.run_id, msg.at, "step_retry", json.dumps(detail))
        return None, None, None

    def _save_step(self, msg: m.SaveStep) -> _Outcome:
        store = self._store
        saved = store.put_step(msg.run_id, msg.seq, msg.name, msg.state, msg.result, msg.error, msg.attempts, msg.started_at,
                               msg.at)  # fmt: skip
        if saved and msg.state == "failed":
            store.add_history(msg.run_id, msg.at, "step_failed", json.dumps({"seq": msg.seq, "step": msg.name, "attempts": msg.attempts}))
        return saved, None, None

    def _retry_run(self, msg: m.RetryRun) -> _Outcome:
        attempt = self._store.retry_run(msg.run_id, msg.at, msg.summary, msg.delay)
        if attempt is None:
            return None, None, None
        return attempt, (msg.run_id, {"attempt": attempt}), None

    def _release_run(self, msg: m.ReleaseRun) -> _Outcome:
        self._store.release_run(msg.run_id, msg.owner)
        return None, None, None

    def _save_progress(self, msg: m.SaveProgress) -> _Outcome:
        if not self._store.save_progress(msg.run_id, msg.progress, msg.at):
            return None, None, None
        return None, (msg.run_id, {"progress": msg.progress}), None

    def _finish_run(self, msg: m.FinishRun) -> _Outcome:
        final = self._store.finish_run(msg.run_id, msg.state, msg.at, msg.result, msg.error)
        if final is None:
            return False, None, None
        if msg.done is not None:  # the handle start() returned waits on it (after the commit)
            self._after_commit.append((msg.done, final))
        change = final  # the whole row: the registry hands it to the run's waiters without reading it
        if msg.cascade is None:
            return True, (msg.run_id, change), None  # type: ignore[return-value]  # a RunRow is a dict
        # a parent that ends takes its unfinished (not detached) children with it
        changes, tell = self._cancel_children(msg.run_id, msg.at, msg.cascade)
        return True, [(msg.run_id, change), *changes], tell  # type: ignore[list-item]  # a RunRow is a dict

    def _cancel_children(self, parent_id: str, at: str, notify: pykka.ActorRef[Any] | None) -> tuple[list[tuple[str, m.Row]], Any]:
        """Cancel the unfinished, not detached descendants of ``parent_id``."""
        rows = self._store.cancel_children(parent_id, at)
        changes: list[tuple[str, m.Row]] = []
        executing, ended = [], []
        for run_id, state in rows:
            if state == "cancelled":
                changes.append((run_id, {"state": "cancelled", "cancel_requested": 1, "completed_at": at}))
                ended.append(run_id)
            else:
                changes.append((run_id, {"cancel_requested": 1}))
                executing.append(run_id)
        tell = (notify, m.RunsCancelled(tuple(executing), tuple(ended))) if notify is not None and rows else None
        return changes, tell

    def _sleep(self, msg: m.Sleep) -> _Outcome:
        if not self._store.save_step({"run_id": msg.run_id, "seq": msg.seq, "name": StepKind.SLEEP, "state": "running",
                                      "attempts": 1, "started_at": msg.at, "retry_at": msg.wake_at}):  # fmt: skip
            return (WaitAnswer.GONE, 0), None, None
        return self._set_waiting(m.SetWaiting(msg.run_id, msg.waiting_for, msg.wake_at, msg.at, None, msg.seq, msg.kind))

    def _set_waiting(self, msg: m.SetWaiting) -> _Outcome:
        answer, watermark = self._store.set_waiting(msg.run_id, msg.waiting_for, msg.wake_at, msg.at, msg.topic, msg.wait, msg.kind)
        if answer is not WaitAnswer.WAITING:
            return (answer, 0), None, None
        change = {"state": "waiting", "waiting_for": msg.waiting_for, "wake_at": msg.wake_at}
        return (answer, watermark), (msg.run_id, change), None

    def _request_cancel(self, msg: m.RequestCancel) -> _Outcome:
        row = self._store.request_cancel(msg.run_id, msg.at)
        if row is None:  # finished, or its cancellation was asked for before: this call changes nothing
            return False, None, None
        changes, tell = self._cancel_children(msg.run_id, msg.at, msg.notify)
        ended: tuple[str, ...] = ()
        if row["state"] == "cancelled":
            changes.insert(0, (msg.run_id, row))  # type: ignore[arg-type]  # a RunRow is a dict
            ended = (msg.run_id,)
        else:
            changes.insert(0, (msg.run_id, {"cancel_requested": 1}))
        if msg.notify is not None:  # tell the supervisor about this run too
            previous = tell[1] if tell is not None else m.RunsCancelled((), ())
            executing = previous.executing + (() if ended else (msg.run_id,))
            tell = (msg.notify, m.RunsCancelled(executing, previous.ended + ended))
        return True, changes, tell

    # -- events, hooks, streams --------------------------------------------------------

    def _insert_event(self, msg: m.InsertEvent) -> _Outcome:
        store = self._store
        run_id = store.event_target(msg.run_id, msg.hook)  # signed here: a hook's run is found here
        kind, seal = event_kind(msg.topic), self._codec.seal
        event_id = store.insert_event(run_id, msg.topic, lambda eid: seal(msg.payload, run_id, kind, eid), msg.at)
        tell = (msg.notify, m.EventArrived(run_id, msg.topic, event_id)) if msg.notify is not None else None
        return event_id, None, tell

    def _take_event(self, msg: m.TakeEvent) -> _Outcome:
        store = self._store
        taken = store.take_event(msg.run_id, msg.topic, msg.seq, msg.at)
        if taken is None:
            return None, None, None
        event_id, payload = taken
        # checked against the event's own id (a copied row does not verify), then signed
        # again for the step that takes it; both raise after the take: undone with it
        kind = event_kind(msg.topic)
        text = self._codec.unseal(payload, msg.run_id, kind, event_id)
        result = self._codec.seal(text, msg.run_id, kind, msg.seq)
        if not store.save_step({"run_id": msg.run_id, "seq": msg.seq, "name": msg.name, "state": "completed",
                                "result": result, "attempts": 1, "completed_at": msg.at}):  # fmt: skip
            raise RunFinished(msg.run_id, "finished")
        return (result,), None, None

    def _register_hook(self, msg: m.RegisterHook) -> _Outcome:
        self._store.register_hook(msg.run_id, msg.token, msg.seq, msg.at, msg.result)
        return True, None, None

    def _write_chunk(self, msg: m.WriteChunk) -> _Outcome:
        index = self._store.write_chunk(msg.run_id, msg.namespace, msg.seq, msg.data, msg.close, msg.at, msg.result)
        if index is None:
            return None, None, None
        tell = (msg.notify, m.ChunkWritten(msg.run_id, msg.namespace, index)) if msg.notify is not None else None
        return index, None, tell

    # -- retention ---------------------------------------------------------------------

    def _purge(self, msg: m.Purge) -> _Outcome:
        return self._store.purge(msg.states, msg.before), None, None

    # -- ownership: leases, takeover, release -----------------------------------------------

    def _register_runtime(self, msg: m.RegisterRuntime) -> _Outcome:
        self._slots = msg.slots
        self._store.register_runtime(os.getpid(), self._host, msg.at, msg.now, msg.lease_until, msg.slots)
        return True, None, None

    def _renew_lease(self, msg: m.RenewLease) -> _Outcome:
        """Extend this runtime's lease; answers False if it had expired (its runs may be taken)."""
        if self._store.renew_lease(msg.now, msg.lease_until):
            return True, None, None
        # expired (paused, or too slow): take part again, as a fresh lease
        self._register_runtime(m.RegisterRuntime(msg.now, msg.lease_until, now_iso(), self._slots))
        return False, None, (msg.notify, m.LeaseLost()) if msg.notify is not None else None

    def _claim_needed_safely(self, msg: m.ClaimOrphans) -> bool:
        try:
            return self._store.claim_needed(msg.now, msg.free, self._host, process_alive)
        except Exception as exc:  # let the claim itself try (and answer, whatever happens)
            if self._store.classify(exc) is None:
                raise
            return True

    def _claim_orphans(self, msg: m.ClaimOrphans) -> _Outcome:
        """Take over runs whose runtime is gone, and claim pending runs for free slots."""
        claimed = self._store.claim(msg.now, msg.at, msg.free, msg.takeover_limit, msg.queue_limits, self._host, process_alive)
        tell = (msg.notify, m.Claimed(tuple(dict(row) for row in claimed))) if msg.notify is not None else None
        return len(claimed), None, tell

    def _requeue(self, msg: m.Requeue) -> _Outcome:
        """A waiting run of a named queue (woken, or taken over) waits for a slot again, as ``pending``."""
        if self._store.requeue(msg.run_id, now_iso()):
            return True, (msg.run_id, {"state": "pending"}), None
        return False, None, None

    def _release_all(self, msg: m.ReleaseAll) -> _Outcome:
        """At shutdown: give up every unfinished run this runtime holds, and its lease."""
        return self._store.release_all(msg.keep_lease), None, None
