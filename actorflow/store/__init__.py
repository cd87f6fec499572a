"""Stores: where a journal keeps its rows, behind one interface.

The :class:`Journal <actorflow.journal.Journal>` actor does group commit, replies,
after-commit work and notifications; everything it reads and writes goes through a
:class:`Store`, with plain values in and out (no actor messages, futures or refs). The
registry and :func:`actorflow.inspect` read through one too.

Implementations:

- :class:`~actorflow.store.sqlite.SQLiteStore`: one SQLite file (the default);
- :class:`~actorflow.store.memory.MemoryStore`: dicts in memory (tests, and the reference
  the others are checked against).

Every implementation passes the same contract tests (``tests/store_contract.py``).

Writes are made inside :meth:`Store.begin` / :meth:`Store.commit` (or
:meth:`Store.rollback`); :meth:`Store.savepoint` and friends undo one operation of a
group. The writes of runs this runtime executes are *fenced*: a store is made with the
runtime's id (``runtime``) and refuses to change a run another runtime has taken over.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypedDict, TypeVar

__all__ = [
    "RUN_INSERT_COLUMNS",
    "ErrorKind",
    "Feed",
    "RunRow",
    "StepRow",
    "Store",
    "WaitAnswer",
    "take_within_caps",
    "walk_tree",
]


class RunRow(TypedDict, total=False):
    """A run as stored (the ``runs`` table). Payload columns hold signed text."""

    id: str
    flow: str
    flow_ref: str
    flow_blob: bytes | None
    codec: str
    args: Any
    kwargs: Any
    state: str
    result: Any
    error: str | None
    progress: Any
    metadata: Any
    parent_id: str | None
    idempotency_key: str | None
    attempt: int
    flow_retries: int
    recoveries: int
    cancel_requested: int
    owner: str | None
    timeout: float | None
    deadline: str | None
    detached: int
    waiting_for: str | None
    wake_at: str | None
    wait_seq: int | None
    wait_kind: str | None
    queue: str | None
    priority: int
    created_at: str
    started_at: str | None
    completed_at: str | None
    updated_at: str | None


RUN_INSERT_COLUMNS = (
    "id", "flow", "flow_ref", "flow_blob", "codec", "args", "kwargs", "state", "metadata",
    "parent_id", "idempotency_key", "attempt", "cancel_requested", "owner", "timeout", "deadline",
    "detached", "queue", "priority", "created_at", "started_at", "updated_at",
)  # fmt: skip
"""The columns a new run's row gives (the others start empty)."""


class StepRow(TypedDict, total=False):
    """One checkpointed call of a run (the ``steps`` table)."""

    run_id: str
    seq: int
    name: str
    state: str
    result: Any
    error: str | None
    attempts: int
    started_at: str | None
    completed_at: str | None
    retry_at: str | None


class Feed(TypedDict):
    """What other processes committed since the last look (the change feed)."""

    ended: list[str]
    cancelled: list[str]
    events: list[tuple[str, str, int]]
    chunks: list[tuple[str, str, int]]


_C = TypeVar("_C")
_R = TypeVar("_R")


def take_within_caps(
    candidates: Sequence[_C],
    queue_of: Callable[[_C], str | None],
    free: int,
    queue_limits: Mapping[str, int],
    busy: dict[str, int],
    take: Callable[[_C], _R | None],
) -> list[_R]:
    """Claim candidates in order for ``free`` slots, keeping each capped queue within its limit.

    ``busy`` (runs counted against each capped queue) is updated as runs are taken; ``take``
    claims one candidate in the store and returns its row, or None if another runtime got it.
    """
    taken: list[_R] = []
    for candidate in candidates:
        if len(taken) >= free:
            break
        queue = queue_of(candidate)
        cap = queue_limits.get(queue) if queue else None
        if cap is not None and queue is not None and busy[queue] >= cap:
            continue
        row = take(candidate)
        if row is None:
            continue
        taken.append(row)
        if cap is not None and queue is not None:
            busy[queue] += 1
    return taken


def walk_tree(root: RunRow | None, children: Callable[[str], list[RunRow]]) -> list[tuple[int, RunRow]]:
    """A run and its descendants as ``(depth, row)``, depth first; ``children(id)`` gives a
    run's children in creation order (each store reads them its own way)."""
    out: list[tuple[int, RunRow]] = []

    def walk(row: RunRow, depth: int) -> None:
        out.append((depth, row))
        for child in children(row["id"]):
            walk(child, depth + 1)

    if root is not None:
        walk(root, 0)
    return out


class ErrorKind(enum.Enum):
    """How a store error affects a group of writes."""

    BUSY = "busy"
    """Another connection holds a lock: retry the whole group later."""
    FILE = "file"
    """About the file, not one statement (read-only, disk full, I/O): the whole group fails."""
    STATEMENT = "statement"
    """About one operation: undo it alone and go on with the others."""


class WaitAnswer(enum.Enum):
    """What :meth:`Store.set_waiting` did."""

    WAITING = "waiting"
    """The run is ``waiting`` now."""
    EVENT_READY = "event_ready"
    """An event it waits for came meanwhile: the run takes it instead of waiting."""
    CANCEL_REQUESTED = "cancel_requested"
    """Its cancellation was accepted meanwhile: it ends now."""
    GONE = "gone"
    """It has ended, or another runtime holds it."""


class Store(Protocol):
    """The operations a journal needs from where it keeps its rows.

    Times are ISO 8601 UTC text (``at``) or epoch seconds (``now``, leases), as the
    caller gives them. Every write is made inside ``begin()`` ... ``commit()``.
    """

    runtime: str | None
    """The id of the runtime this store writes for: the fence of the runs it executes."""

    # -- transactions ------------------------------------------------------------------

    def begin(self) -> None:
        """Begin a write transaction (taking the write lock)."""

    def commit(self) -> None:
        """Commit the transaction."""

    def rollback(self) -> None:
        """Undo the transaction, if one is open."""

    def savepoint(self) -> None:
        """Mark a point inside the transaction that :meth:`rollback_savepoint` returns to."""

    def release_savepoint(self) -> None:
        """Forget the last savepoint (keeping what was written since)."""

    def rollback_savepoint(self) -> None:
        """Undo what was written since the last savepoint, and forget it."""

    def classify(self, error: BaseException) -> ErrorKind | None:
        """How an error raised by this store affects a group (None: not a store error)."""

    def describe(self, error: BaseException) -> str:
        """A message for a store error: which case it is and what to do."""

    def close(self) -> None:
        """Release the store's resources."""

    # -- runs --------------------------------------------------------------------------

    def insert_run(self, row: RunRow) -> str | None:
        """Insert a run (with its ``created`` event, and ``started`` if inserted running).

        Returns:
            None if inserted; else the id of the run that has this id or idempotency key.
        """

    def claim_run(self, run_id: str, at: str, deadline: str | None) -> tuple[RunRow, list[StepRow]] | None:
        """Start a pending or resumed run for this runtime (attempt + 1); None if it has ended or another holds it."""

    def finish_run(self, run_id: str, state: str, at: str, result: Any, error: str | None) -> RunRow | None:
        """End a run this runtime holds; a cancel accepted before makes a completed or failed end ``cancelled``.

        Returns:
            The final row, or None if the run had ended or another runtime holds it.
        """

    def retry_run(self, run_id: str, at: str, summary: str, delay: float) -> int | None:
        """Count a flow retry (its failed calls are forgotten); the new attempt, or None."""

    def release_run(self, run_id: str, runtime: str) -> None:
        """Give up a run ``runtime`` holds (it has not ended)."""

    def save_progress(self, run_id: str, progress: Any, at: str) -> bool:
        """Store a run's progress; False if it has ended or another runtime holds it."""

    def request_cancel(self, run_id: str, at: str) -> RunRow | None:
        """Accept a cancellation: a pending or waiting run ends ``cancelled`` at once.

        Returns:
            The run's row after the change, or None if it had ended or was being cancelled.

        Raises:
            RunNotFound: no such run.
        """

    def cancel_children(self, parent_id: str, at: str) -> list[tuple[str, str]]:
        """Cancel the unfinished, not detached descendants of a run; ``(run id, state after)`` of each."""

    def set_waiting(self, run_id: str, waiting_for: str, wake_at: str | None, at: str, topic: str | None,
                    wait: int | None = None, kind: str | None = None) -> tuple[WaitAnswer, int]:  # fmt: skip
        """Make a running run ``waiting``; the answer, and the id of the newest event sent to it.

        ``wait`` (the waiting call's number) and ``kind`` (of wait) are recorded with it: a
        runtime that takes the run over resumes it by them.
        """

    def requeue(self, run_id: str, at: str) -> bool:
        """Make a waiting run of a named queue ``pending`` again (it waits for a slot)."""

    # -- steps -------------------------------------------------------------------------

    def save_step(self, step: StepRow) -> bool:
        """Insert or update a step of a run this runtime holds; False if it does not hold it.

        An error recorded before is kept when the update brings none; so is the first start.
        """

    def put_step(self, run_id: str, seq: int, name: str, state: str, result: Any = None, error: str | None = None,
                 attempts: int = 0, started_at: str | None = None, completed_at: str | None = None,
                 retry_at: str | None = None) -> bool:  # fmt: skip
        """:meth:`save_step` with the columns as arguments."""

    def add_history(self, run_id: str, at: str, kind: str, detail: str | None = None) -> None:
        """Append to a run's history (the ``events`` table)."""

    # -- events, hooks, streams --------------------------------------------------------

    def event_target(self, run_id: str | None, hook: str | None) -> str:
        """The unfinished run an event goes to (by id, or by hook token).

        Raises:
            HookNotFound / RunNotFound / RunFinished: there is none.
        """

    def insert_event(self, run_id: str, topic: str, payload: Any, at: str) -> int:
        """Queue an event for a run; its id (ids grow, and are never reused).

        ``payload`` is a callable given the new event's id, which returns the payload to
        store (signed with that id, so that a copied row does not verify).
        """

    def take_event(self, run_id: str, topic: str, seq: int, at: str) -> tuple[int, Any] | None:
        """Mark the oldest queued event of ``topic`` as taken by step ``seq``; ``(event id, payload)``, or None."""

    def register_hook(self, run_id: str, token: str, seq: int, at: str, result: Any) -> None:
        """Give a run this runtime holds a hook token, checkpointed as step ``seq``.

        Raises:
            RunFinished: it has ended or another holds it.
            HookConflict: another unfinished run holds the token.
        """

    def write_chunk(self, run_id: str, namespace: str, seq: int, data: Any, close: bool, at: str, result: Any = None) -> int | None:
        """Append to a run's stream (checkpointed as step ``seq`` with ``result``); the chunk's index, or None."""

    # -- retention ---------------------------------------------------------------------

    def purge(self, states: Sequence[str], before: str) -> int:
        """Delete finished runs of ``states`` that ended before ``before``, with their descendants and records."""

    # -- runtimes and leases -----------------------------------------------------------

    def register_runtime(self, pid: int, host: str, at: str, now: float, lease_until: float, slots: int = 0) -> None:
        """Record this runtime, its lease and how many runs it executes at once."""

    def executors(self, now: float, besides: str) -> int:
        """How many live runtimes other than ``besides`` execute runs (have slots)."""

    def renew_lease(self, now: float, lease_until: float) -> bool:
        """Extend this runtime's lease; False if it had expired (it is recorded anew)."""

    def dead_runtimes(self, now: float, host: str, alive: Any) -> list[str]:
        """Runtimes whose lease expired, or whose process on ``host`` is gone (``alive(pid)`` is False)."""

    def claim_needed(self, now: float, free: int, host: str, alive: Any) -> bool:
        """Whether a claim may find anything (read only)."""

    def claim(self, now: float, at: str, free: int, takeover_limit: int, queue_limits: Mapping[str, int], host: str,
              alive: Any) -> list[RunRow]:  # fmt: skip
        """Take over the runs of dead runtimes, and claim pending runs for ``free`` slots; the claimed rows."""

    def release_all(self, keep_lease: bool) -> int:
        """Give up every unfinished run this runtime holds (and its lease, unless kept); how many."""

    # -- reads -------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRow | None:
        """A run's row."""

    def list_runs(self, *, state: str | None = None, flow: str | None = None, parent_id: str | None = None,
                  limit: int = 100) -> list[RunRow]:  # fmt: skip
        """Runs matching the filters, newest first."""

    def count_by_state(self) -> dict[str, int]:
        """Number of runs in each state."""

    def tree(self, run_id: str) -> list[tuple[int, RunRow]]:
        """A run and its descendants as ``(depth, row)``, depth first, children by creation."""

    def steps(self, run_id: str) -> list[StepRow]:
        """A run's steps, in call order."""

    def chunks(self, run_id: str, namespace: str, start: int, limit: int) -> list[tuple[int, Any, int, int]]:
        """``(index, data, closed, seq)`` of a stream's chunks from ``start``, in order."""

    def history(self, run_id: str) -> list[tuple[str, str, str | None]]:
        """The ``(at, kind, detail)`` entries of a run's history, oldest first."""

    def key_check(self) -> str | None:
        """The fingerprint of the key the journal is signed with, if recorded."""

    def feed_marks(self) -> tuple[int, int, int]:
        """Where the change feed stands now (history, events, chunks)."""

    def feed_since(self, marks: tuple[int, int, int]) -> tuple[Feed, tuple[int, int, int]]:
        """What was committed after ``marks``, and the new marks."""
