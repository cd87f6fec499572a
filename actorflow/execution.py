"""The execution actor: one per run, it executes the flow and checkpoints each transition.

The supervisor spawns an :class:`Execution` for a committed run. The actor first claims
the run in the journal (``pending``/``running`` → ``running``, attempt + 1): the claim is
the fence that keeps a run that was cancelled or finished meanwhile from executing. It
then calls the flow with a :class:`~actorflow.Context`, sends each checkpoint to the
journal, and ends by sending the terminal state (the journal reports it to the registry
after the commit, and the registry resolves the waiters). Last it tells the supervisor
that it has ended, and stops.
"""

from __future__ import annotations

import logging
from typing import Any

import pykka

from . import messages as m
from ._future import Reply
from ._actor import Actor
from ._pool import WorkerPool
from .context import Abandoned, Context, RunControl, _reset_current, _set_current
from .errors import Cancelled, SerializationError
from .journal import now_iso, parse_ts
from .serialization import Serializer, describe_unserializable, dump_error, load_flow

log = logging.getLogger("actorflow")

_WAIT_SLICE = 0.25  # how often a blocked execution looks at its abandon flag


class Execution(Actor):
    """Executes one run, then stops.

    Args:
        row: the run's committed row.
        journal: the journal actor.
        supervisor: the supervisor actor (told when this actor ends).
        serializer: the runtime's serializer.
        control: the flags shared with the supervisor (cancel, abandon).
        owner: the incarnation id of the runtime, recorded as the run's owner.
        pool: the worker threads the actor's loop runs on.
        inserted: for a run admitted as it was started, the future of its insert: the
            actor waits for the commit before doing anything. None for a committed run.
    """

    def __init__(
        self,
        row: m.Row,
        journal: pykka.ActorRef[Any],
        supervisor: pykka.ActorRef[Any],
        serializer: Serializer,
        control: RunControl,
        owner: str,
        pool: WorkerPool,
        inserted: pykka.Future[Any] | None = None,
    ) -> None:
        super().__init__()
        self._pool = pool
        self._inserted = inserted
        self.row = row
        self.run_id: str = row["id"]
        self.journal = journal
        self.supervisor = supervisor
        self.serializer = serializer
        self.control = control
        self.owner = owner

    def _start_actor_loop(self) -> None:
        # pykka's extension point for actor types: run the loop on a pool thread.
        self._pool.submit(self._actor_loop)

    def on_start(self) -> None:
        """Do the whole run, then report and stop."""
        try:
            self._execute()
        except Abandoned:
            log.debug("run %s abandoned at shutdown; it resumes at the next open", self.run_id)
        except Exception:
            log.exception("run %s: the execution actor failed", self.run_id)
        finally:
            try:
                self.supervisor.tell(m.RunEnded(self.run_id))
            except pykka.ActorDeadError:
                pass
            self.stop()

    # -- talking to the journal -------------------------------------------------------

    def send(self, message: Any) -> None:
        """Tell the journal ``message``; a stopped journal means the runtime is closing."""
        try:
            self.journal.tell(message)
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

    def checkpoint(self) -> None:
        """Stop here if the runtime abandoned the run or the run was cancelled."""
        if self.control.abandon.is_set():
            raise Abandoned
        if self.control.cancel.is_set():
            raise Cancelled(f"run {self.run_id} was cancelled")

    def save_progress(self, value: Any) -> None:
        """Checkpoint, then store ``value`` as the run's progress."""
        self.checkpoint()
        try:
            data = self.serializer.dumps(value)
        except SerializationError as exc:
            raise SerializationError(f"ctx.progress() value cannot be serialized: {exc}") from exc
        self.send(m.SaveProgress(self.run_id, data, now_iso()))

    def finish(self, state: str, *, result: Any = None, error: str | None = None) -> None:
        """Send the terminal state of the run."""
        self.send(m.FinishRun(self.run_id, state, now_iso(), result=result, error=error))

    # -- the run ----------------------------------------------------------------------

    def _execute(self) -> None:
        if self.control.abandon.is_set():
            return
        if self._inserted is not None:
            # admitted at start: the row was inserted as running; wait for its commit
            try:
                run_id = self.await_(self._inserted)
            except Exception:  # the caller of start() gets the error; nothing was written
                return
            if run_id != self.run_id:  # an idempotent repeat: the run exists already
                return
            row = self.row
        else:
            claim: Reply[Any] = Reply()
            self.send(m.ClaimRun(self.run_id, self.owner, now_iso(), reply_to=claim))
            row = self.await_(claim)
            if row is None:  # finished (for instance cancelled while pending) before it could start
                return
        if row["cancel_requested"]:
            self.control.cancel.set()
            self.finish("cancelled")
            return
        try:
            fn = load_flow(row["flow_ref"], row["flow_blob"])
            args = self.serializer.loads(row["args"])
            kwargs = self.serializer.loads(row["kwargs"])
            metadata = self.serializer.loads(row["metadata"]) if row["metadata"] is not None else {}
        except Exception as exc:
            self.finish("failed", error=dump_error(exc))
            return
        ctx = Context(
            self,
            run_id=self.run_id,
            flow=row["flow"],
            attempt=row["attempt"],
            started_at=parse_ts(row["started_at"]),  # type: ignore[arg-type]
            parent_id=row["parent_id"],
            metadata=metadata,
        )
        token = _set_current(ctx)
        try:
            value = fn(ctx, *args, **kwargs)
        except Abandoned:
            raise
        except Cancelled:
            self.finish("cancelled")
            return
        except BaseException as exc:  # noqa: BLE001 - even SystemExit in a flow is its outcome
            self.finish("failed", error=dump_error(exc))
            return
        finally:
            _reset_current(token)
        try:
            data = self.serializer.dumps(value)
        except Exception as exc:
            culprit = describe_unserializable(self.serializer, [("return value", value)]) or exc
            error = SerializationError(f"the flow's return value cannot be serialized: {culprit}")
            self.finish("failed", error=dump_error(error))
            return
        self.finish("completed", result=data)
