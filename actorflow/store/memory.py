"""The memory store: a journal held in dicts, for tests and as the reference of a store's behaviour.

Nothing survives the process. It passes the same contract tests as the SQLite store
(``tests/store_contract.py``); where the two could differ, the SQLite store's SQL is the
model and this module says in words what it does.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import HookConflict, HookNotFound, RunFinished, RunNotFound
from ..states import CANCELLED_AT_ONCE, TERMINAL_NAMES, UNFINISHED_NAMES, StepKind
from . import RUN_INSERT_COLUMNS, ErrorKind, Feed, RunRow, StepRow, WaitAnswer, take_within_caps, walk_tree

__all__ = ["MemoryError_", "MemoryStore"]

_RUN_DEFAULTS: dict[str, Any] = {
    "flow_blob": None, "result": None, "error": None, "progress": None, "metadata": None, "parent_id": None,
    "idempotency_key": None, "attempt": 0, "flow_retries": 0, "recoveries": 0, "cancel_requested": 0, "owner": None,
    "timeout": None, "deadline": None, "detached": 0, "waiting_for": None, "wake_at": None, "wait_seq": None, "wait_kind": None, "queue": None,
    "priority": 0, "started_at": None, "completed_at": None, "updated_at": None,
}  # fmt: skip
_STEP_DEFAULTS: dict[str, Any] = {
    "result": None, "error": None, "attempts": 0, "started_at": None, "completed_at": None, "retry_at": None,
}  # fmt: skip


class MemoryError_(Exception):  # noqa: N801 - named after the store, not the builtin MemoryError
    """An error of the memory store itself (used by tests to stand for a failing statement)."""


class _Tables:
    """Everything a journal holds."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.steps: dict[tuple[str, int], dict[str, Any]] = {}
        self.history: list[tuple[int, str, str, str, str | None]] = []  # (seq, run_id, at, kind, detail)
        self.history_seq = 0
        self.messages: dict[int, dict[str, Any]] = {}
        self.message_seq = 0
        self.hooks: dict[str, dict[str, Any]] = {}
        self.chunks: dict[int, dict[str, Any]] = {}
        self.chunk_seq = 0
        self.runtimes: dict[str, dict[str, Any]] = {}
        self.meta: dict[str, str] = {}


class MemoryStore:
    """A journal in memory (see :class:`actorflow.store.Store` for the operations).

    Several ``MemoryStore`` objects made with :meth:`sharing` see the same tables, as
    several connections see one SQLite file: one per runtime (its fence) and readers.

    Args:
        runtime: the id of the runtime whose writes this store makes, or None.
    """

    def __init__(self, runtime: str | None = None, *, tables: _Tables | None = None, lock: threading.RLock | None = None) -> None:
        self.runtime = runtime
        self._t = tables if tables is not None else _Tables()
        self._lock = lock if lock is not None else threading.RLock()
        self._snapshots: list[_Tables] = []

    def sharing(self, runtime: str | None = None) -> MemoryStore:
        """Another store on the same tables, writing for ``runtime``."""
        return MemoryStore(runtime, tables=self._t, lock=self._lock)

    # -- transactions ------------------------------------------------------------------

    def begin(self) -> None:
        """Take the write lock and remember the tables as they are (a rollback restores them)."""
        self._lock.acquire()
        self._snapshots = [copy.deepcopy(self._t)]

    def _restore(self, snapshot: _Tables) -> None:
        self._t.__dict__.update(copy.deepcopy(snapshot).__dict__)

    def commit(self) -> None:
        """Keep what was written; release the write lock."""
        self._snapshots = []
        self._lock.release()

    def rollback(self) -> None:
        """Undo the transaction, if one is open."""
        if self._snapshots:
            self._restore(self._snapshots[0])
            self._snapshots = []
            self._lock.release()

    def savepoint(self) -> None:
        """Mark a point to return to."""
        self._snapshots.append(copy.deepcopy(self._t))

    def release_savepoint(self) -> None:
        """Keep what was written since the savepoint."""
        self._snapshots.pop()

    def rollback_savepoint(self) -> None:
        """Undo what was written since the savepoint."""
        self._restore(self._snapshots.pop())

    def classify(self, error: BaseException) -> ErrorKind | None:
        """STATEMENT for this store's own errors; None for anything else."""
        return ErrorKind.STATEMENT if isinstance(error, MemoryError_) else None

    def describe(self, error: BaseException) -> str:
        """A message for a store error."""
        return f"the memory journal failed: {error}"

    def close(self) -> None:
        """Nothing to release."""

    # -- helpers -----------------------------------------------------------------------

    def _held(self, run_id: str) -> dict[str, Any] | None:
        """The run, if it is unfinished and this runtime holds it (the fence)."""
        run = self._t.runs.get(run_id)
        if run is None or run["state"] not in UNFINISHED_NAMES or run["owner"] != self.runtime:
            return None
        return run

    def add_history(self, run_id: str, at: str, kind: str, detail: str | None = None) -> None:
        """Append to a run's history."""
        self._t.history_seq += 1
        self._t.history.append((self._t.history_seq, run_id, at, kind, detail))

    # -- runs --------------------------------------------------------------------------

    def insert_run(self, row: RunRow) -> str | None:
        """Insert a run; None, or the id of the run with this id or idempotency key."""
        t = self._t
        key = row.get("idempotency_key")
        if row["id"] in t.runs:
            return row["id"]
        if key is not None:
            for other in t.runs.values():
                if other["idempotency_key"] == key:
                    return str(other["id"])
        stored = {**_RUN_DEFAULTS, **{k: row[k] for k in RUN_INSERT_COLUMNS}}  # type: ignore[literal-required]  # the insert's columns
        t.runs[row["id"]] = stored
        detail = f'{{"parent_id": "{row["parent_id"]}"}}' if row.get("parent_id") else None
        self.add_history(row["id"], row["created_at"], "created", detail)
        if row["state"] == "running":
            self.add_history(row["id"], row["created_at"], "started", '{"attempt":1}')
        return None

    def claim_run(self, run_id: str, at: str, deadline: str | None) -> tuple[RunRow, list[StepRow]] | None:
        """Start a run for this runtime unless another holds it or it has ended."""
        run = self._t.runs.get(run_id)
        if run is None or run["state"] not in UNFINISHED_NAMES or run["owner"] not in (None, self.runtime):
            return None
        run.update(state="running", attempt=run["attempt"] + 1, waiting_for=None, wake_at=None, wait_seq=None, wait_kind=None,
                   started_at=at,
                   owner=self.runtime, deadline=run["deadline"] or deadline, updated_at=at)  # fmt: skip
        self.add_history(run_id, at, "started", f'{{"attempt": {run["attempt"]}, "recoveries": {run["recoveries"]}}}')
        return dict(run), self.steps(run_id)  # type: ignore[return-value]  # a copy of the stored dict is the row

    def finish_run(self, run_id: str, state: str, at: str, result: Any, error: str | None) -> RunRow | None:
        """End a run this runtime holds; a cancel accepted before wins over completed or failed."""
        run = self._held(run_id)
        if run is None:
            return None
        if run["cancel_requested"] and state in ("completed", "failed"):
            run.update(state="cancelled", result=None, error=None)
        else:
            run.update(state=state, result=result, error=error)
        run.update(completed_at=at, updated_at=at)
        self.add_history(run_id, at, run["state"])
        return dict(run)  # type: ignore[return-value]  # a copy of the stored dict is the row

    def retry_run(self, run_id: str, at: str, summary: str, delay: float) -> int | None:
        """Count a flow retry; its steps that did not complete are forgotten."""
        run = self._held(run_id)
        if run is None:
            return None
        run.update(attempt=run["attempt"] + 1, flow_retries=run["flow_retries"] + 1, updated_at=at)
        for key in [k for k, s in self._t.steps.items() if k[0] == run_id and s["state"] != "completed"]:
            del self._t.steps[key]
        self.add_history(run_id, at, "retry", json.dumps({"attempt": run["attempt"], "error": summary, "delay": delay}))
        return int(run["attempt"])

    def release_run(self, run_id: str, runtime: str) -> None:
        """Give up a run ``runtime`` holds."""
        run = self._t.runs.get(run_id)
        if run is not None and run["owner"] == runtime and run["state"] in UNFINISHED_NAMES:
            run["owner"] = None

    def save_progress(self, run_id: str, progress: Any, at: str) -> bool:
        """Store a run's progress."""
        run = self._held(run_id)
        if run is None:
            return False
        run.update(progress=progress, updated_at=at)
        return True

    def request_cancel(self, run_id: str, at: str) -> RunRow | None:
        """Accept a cancellation (pending and waiting runs end at once)."""
        run = self._t.runs.get(run_id)
        if run is None:
            raise RunNotFound(run_id)
        if run["state"] not in UNFINISHED_NAMES or run["cancel_requested"]:
            return None
        run.update(cancel_requested=1, updated_at=at)
        self.add_history(run_id, at, "cancel_requested")
        if run["state"] in CANCELLED_AT_ONCE:
            run.update(state="cancelled", completed_at=at)
            self.add_history(run_id, at, "cancelled")
        return dict(run)  # type: ignore[return-value]  # a copy of the stored dict is the row

    def cancel_children(self, parent_id: str, at: str) -> list[tuple[str, str]]:
        """Cancel the unfinished, not detached descendants of ``parent_id`` (a detached child shields its own)."""
        out: list[tuple[str, str]] = []
        todo = [parent_id]
        while todo:
            parent = todo.pop(0)
            for run in self._t.runs.values():
                if run["parent_id"] != parent or run["detached"]:
                    continue
                todo.append(run["id"])
                if run["state"] not in UNFINISHED_NAMES:
                    continue
                run.update(cancel_requested=1, updated_at=at)
                self.add_history(run["id"], at, "cancel_requested", f'{{"by": "{parent_id}"}}')
                if run["state"] in CANCELLED_AT_ONCE:
                    run.update(state="cancelled", completed_at=at)
                    self.add_history(run["id"], at, "cancelled")
                out.append((run["id"], run["state"]))
        return out

    def set_waiting(self, run_id: str, waiting_for: str, wake_at: str | None, at: str, topic: str | None,
                    wait: int | None = None, kind: str | None = None) -> tuple[WaitAnswer, int]:  # fmt: skip
        """Make a running run ``waiting`` (unless an event it waits for has come, or it was cancelled)."""
        t = self._t
        if topic is not None and any(
            e["run_id"] == run_id and e["topic"] == topic and e["taken_seq"] is None for e in t.messages.values()
        ):
            return WaitAnswer.EVENT_READY, 0
        run = t.runs.get(run_id)
        if run is None or run["state"] != "running" or run["owner"] != self.runtime:
            return WaitAnswer.GONE, 0
        if run["cancel_requested"]:
            return WaitAnswer.CANCEL_REQUESTED, 0
        run.update(state="waiting", waiting_for=waiting_for, wake_at=wake_at, wait_seq=wait, wait_kind=kind, updated_at=at)
        self.add_history(run_id, at, "waiting", waiting_for)
        return WaitAnswer.WAITING, max((i for i, e in t.messages.items() if e["run_id"] == run_id), default=0)

    def requeue(self, run_id: str, at: str) -> bool:
        """A waiting run of a named queue waits for a slot again, as ``pending``."""
        run = self._t.runs.get(run_id)
        if run is None or run["state"] != "waiting" or run["owner"] != self.runtime:
            return False
        run.update(state="pending", owner=None, waiting_for=None, wake_at=None, wait_seq=None, wait_kind=None, updated_at=at)
        self.add_history(run_id, at, "requeued")
        return True

    # -- steps -------------------------------------------------------------------------

    def put_step(self, run_id: str, seq: int, name: str, state: str, result: Any = None, error: str | None = None,
                 attempts: int = 0, started_at: str | None = None, completed_at: str | None = None,
                 retry_at: str | None = None) -> bool:  # fmt: skip
        """:meth:`save_step` with the columns as arguments."""
        return self.save_step({"run_id": run_id, "seq": seq, "name": name, "state": state, "result": result, "error": error,
                               "attempts": attempts, "started_at": started_at, "completed_at": completed_at,
                               "retry_at": retry_at})  # fmt: skip

    def save_step(self, step: StepRow) -> bool:
        """Insert or update a step of a run this runtime holds (an error, once recorded, is kept)."""
        if self._held(step["run_id"]) is None:
            return False
        key = (step["run_id"], step["seq"])
        old = self._t.steps.get(key)
        new = {**_STEP_DEFAULTS, **step}
        if old is not None:
            new["error"] = step.get("error") if step.get("error") is not None else old["error"]
            new["started_at"] = step.get("started_at") or old["started_at"]
        self._t.steps[key] = new
        return True

    # -- events, hooks, streams --------------------------------------------------------

    def event_target(self, run_id: str | None, hook: str | None) -> str:
        """The unfinished run an event goes to."""
        t = self._t
        if hook is not None:
            holder = t.hooks.get(hook)
            run = t.runs.get(holder["run_id"]) if holder else None
            if run is None or run["state"] not in UNFINISHED_NAMES:
                raise HookNotFound(hook)
            run_id = run["id"]
        assert run_id is not None
        run = t.runs.get(run_id)
        if run is None:
            raise RunNotFound(run_id)
        if run["state"] not in UNFINISHED_NAMES:
            raise RunFinished(run_id, run["state"])
        return run_id

    def insert_event(self, run_id: str, topic: str, payload: Callable[[int], Any], at: str) -> int:
        """Queue an event; ``payload(event_id)`` gives what is stored."""
        t = self._t
        t.message_seq += 1
        event_id = t.message_seq
        t.messages[event_id] = {"id": event_id, "run_id": run_id, "topic": topic, "payload": payload(event_id),
                                "sent_at": at, "taken_seq": None, "taken_at": None}  # fmt: skip
        return event_id

    def take_event(self, run_id: str, topic: str, seq: int, at: str) -> tuple[int, Any] | None:
        """Mark the oldest queued event of ``topic`` as taken by step ``seq``."""
        for event_id in sorted(self._t.messages):
            event = self._t.messages[event_id]
            if event["run_id"] == run_id and event["topic"] == topic and event["taken_seq"] is None:
                event.update(taken_seq=seq, taken_at=at)
                return event_id, event["payload"]
        return None

    def register_hook(self, run_id: str, token: str, seq: int, at: str, result: Any) -> None:
        """Give a run a hook token, checkpointed as step ``seq``."""
        t = self._t
        if self._held(run_id) is None:
            raise RunFinished(run_id, "finished or taken over")
        holder = t.hooks.get(token)
        if holder is not None and holder["run_id"] != run_id:
            other = t.runs.get(holder["run_id"])
            if other is not None and other["state"] in UNFINISHED_NAMES:
                raise HookConflict(token, holder["run_id"])
        t.hooks[token] = {"token": token, "run_id": run_id, "created_at": at}
        self.save_step({"run_id": run_id, "seq": seq, "name": StepKind.HOOK, "state": "completed", "result": result,
                        "attempts": 1, "completed_at": at})  # fmt: skip

    def write_chunk(self, run_id: str, namespace: str, seq: int, data: Any, close: bool, at: str, result: Any = None) -> int | None:
        """Append to a run's stream (once per ``seq``)."""
        t = self._t
        if self._held(run_id) is None:
            return None
        mine = [c for c in t.chunks.values() if c["run_id"] == run_id]
        if any(c["seq"] == seq for c in mine):
            return None
        index = 1 + max((c["idx"] for c in mine if c["namespace"] == namespace), default=-1)
        t.chunk_seq += 1
        t.chunks[t.chunk_seq] = {"id": t.chunk_seq, "run_id": run_id, "namespace": namespace, "idx": index, "seq": seq,
                                 "data": data, "closed": int(close), "at": at}  # fmt: skip
        self.save_step({"run_id": run_id, "seq": seq, "name": StepKind.WRITE, "state": "completed", "result": result,
                        "attempts": 1, "completed_at": at})  # fmt: skip
        return index

    # -- retention ---------------------------------------------------------------------

    def purge(self, states: Sequence[str], before: str) -> int:
        """Delete finished top-level runs of ``states`` ended before ``before``, with their finished descendants."""
        t = self._t
        wanted = {s for s in states if s in TERMINAL_NAMES}
        if not wanted:
            return 0
        roots = [r["id"] for r in t.runs.values() if r["state"] in wanted and r["completed_at"] is not None
                 and r["completed_at"] < before and (r["parent_id"] is None or r["parent_id"] not in t.runs)]  # fmt: skip
        doomed: set[str] = set()
        todo = list(roots)
        while todo:
            run_id = todo.pop()
            doomed.add(run_id)
            todo.extend(r["id"] for r in t.runs.values() if r["parent_id"] == run_id and r["id"] not in doomed)
        doomed = {d for d in doomed if t.runs[d]["state"] in TERMINAL_NAMES}
        t.steps = {k: v for k, v in t.steps.items() if k[0] not in doomed}
        t.messages = {k: v for k, v in t.messages.items() if v["run_id"] not in doomed}
        t.chunks = {k: v for k, v in t.chunks.items() if v["run_id"] not in doomed}
        t.hooks = {k: v for k, v in t.hooks.items() if v["run_id"] not in doomed}
        newest = t.history[-1] if t.history else None  # kept, as the SQLite store keeps it
        t.history = [h for h in t.history if h[1] not in doomed or h is newest]
        for run_id in doomed:
            del t.runs[run_id]
        return len(doomed)

    # -- runtimes and leases -----------------------------------------------------------

    def register_runtime(self, pid: int, host: str, at: str, now: float, lease_until: float, slots: int = 0) -> None:
        """Record this runtime, its lease and its slots."""
        assert self.runtime is not None
        self._t.runtimes[self.runtime] = {"id": self.runtime, "pid": pid, "host": host, "started_at": at,
                                          "heartbeat_at": now, "lease_until": lease_until, "slots": slots}  # fmt: skip

    def executors(self, now: float, besides: str) -> int:
        """How many live runtimes other than ``besides`` execute runs."""
        with self._lock:
            return sum(1 for r in self._t.runtimes.values()
                       if r["id"] != besides and (r["slots"] or 0) > 0 and r["lease_until"] is not None and r["lease_until"] >= now)  # fmt: skip

    def renew_lease(self, now: float, lease_until: float) -> bool:
        """Extend this runtime's lease; False if it had expired."""
        me = self._t.runtimes.get(self.runtime or "")
        if me is None or me["lease_until"] < now:
            return False
        me.update(lease_until=lease_until, heartbeat_at=now)
        return True

    def dead_runtimes(self, now: float, host: str, alive: Callable[[int], bool]) -> list[str]:
        """Runtimes whose lease expired, or whose process on ``host`` is gone."""
        return [
            r["id"] for r in self._t.runtimes.values()
            if r["id"] != self.runtime and (r["lease_until"] is None or r["lease_until"] < now
                                            or (r["host"] == host and r["pid"] is not None and not alive(int(r["pid"]))))
        ]  # fmt: skip

    def _orphan(self, run: dict[str, Any]) -> bool:
        return run["owner"] is None or run["owner"] not in self._t.runtimes

    def claim_needed(self, now: float, free: int, host: str, alive: Callable[[int], bool]) -> bool:
        """Whether a claim may find anything."""
        if self.dead_runtimes(now, host, alive):
            return True
        runs = self._t.runs.values()
        if any(r["state"] in ("running", "waiting") and self._orphan(r) for r in runs):
            return True
        return free > 0 and any(r["state"] == "pending" and self._orphan(r) for r in runs)

    def claim(self, now: float, at: str, free: int, takeover_limit: int, queue_limits: Mapping[str, int], host: str,
              alive: Callable[[int], bool]) -> list[RunRow]:  # fmt: skip
        """Take over the runs of dead runtimes, and claim pending runs for ``free`` slots (queues within their limits)."""
        t = self._t
        for dead in self.dead_runtimes(now, host, alive):
            del t.runtimes[dead]
        claimed: list[dict[str, Any]] = []
        orphans = sorted((r for r in t.runs.values() if r["state"] in ("running", "waiting") and self._orphan(r)),
                         key=lambda r: r["created_at"])[:takeover_limit]  # fmt: skip
        for run in orphans:
            if run["state"] == "running" and run["owner"] is not None:
                run["recoveries"] += 1
            run.update(owner=self.runtime, updated_at=at)
            claimed.append(run)
        if free > 0:
            busy = {q: sum(1 for r in t.runs.values() if r["queue"] == q and (r["state"] == "running" or (
                r["state"] == "pending" and r["owner"] is not None and r["owner"] in t.runtimes))) for q in queue_limits}  # fmt: skip
            full = {q for q, cap in queue_limits.items() if busy[q] >= cap}  # left out, as the SQLite store leaves them
            pending = sorted((r for r in t.runs.values() if r["state"] == "pending" and self._orphan(r) and r["queue"] not in full),
                             key=lambda r: (-r["priority"], r["created_at"]))[: free * 4]  # fmt: skip
            def take(run: dict[str, Any]) -> dict[str, Any]:
                run.update(owner=self.runtime, updated_at=at)
                return run

            claimed += take_within_caps(pending, lambda r: r["queue"], free, queue_limits, busy, take)
        for run in claimed:
            if run["state"] != "pending":
                self.add_history(run["id"], at, "taken_over", f'{{"by": "{self.runtime}"}}')
        return [dict(r) for r in claimed]  # type: ignore[misc]  # copies of the stored dicts are the rows

    def release_all(self, keep_lease: bool) -> int:
        """Give up every unfinished run this runtime holds, and its lease unless kept."""
        released = 0
        for run in self._t.runs.values():
            if run["owner"] == self.runtime and run["state"] in UNFINISHED_NAMES:
                run["owner"] = None
                released += 1
        if not keep_lease:
            self._t.runtimes.pop(self.runtime or "", None)
        return released

    # -- reads -------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRow | None:
        """A run's row."""
        with self._lock:
            run = self._t.runs.get(run_id)
            return dict(run) if run is not None else None  # type: ignore[return-value]  # a copy of the stored dict is the row

    def list_runs(self, *, state: str | None = None, flow: str | None = None, parent_id: str | None = None,
                  limit: int = 100) -> list[RunRow]:  # fmt: skip
        """Runs matching the filters, newest first."""
        with self._lock:
            runs = [r for r in self._t.runs.values() if (state is None or r["state"] == state)
                    and (flow is None or r["flow"] == flow) and (parent_id is None or r["parent_id"] == parent_id)]  # fmt: skip
            runs.sort(key=lambda r: (r["created_at"], r["id"]), reverse=True)
            return [dict(r) for r in runs[:limit]]  # type: ignore[misc]  # copies of the stored dicts are the rows

    def count_by_state(self) -> dict[str, int]:
        """Number of runs in each state."""
        with self._lock:
            counts: dict[str, int] = {}
            for run in self._t.runs.values():
                counts[run["state"]] = counts.get(run["state"], 0) + 1
            return counts

    def tree(self, run_id: str) -> list[tuple[int, RunRow]]:
        """A run and its descendants, depth first, children by creation."""

        def children(parent: str) -> list[RunRow]:
            found = sorted((r for r in self._t.runs.values() if r["parent_id"] == parent), key=lambda r: (r["created_at"], r["id"]))
            return [dict(r) for r in found]  # type: ignore[misc]  # copies of the stored dicts are the rows

        with self._lock:
            return walk_tree(self.get_run(run_id), children)

    def steps(self, run_id: str) -> list[StepRow]:
        """A run's steps, in call order."""
        with self._lock:
            return [dict(s) for k, s in sorted(self._t.steps.items()) if k[0] == run_id]  # type: ignore[misc]  # copies of the stored dicts are the rows

    def chunks(self, run_id: str, namespace: str, start: int, limit: int) -> list[tuple[int, Any, int, int]]:
        """``(index, data, closed, seq)`` of a stream's chunks from ``start``."""
        with self._lock:
            rows = sorted((c for c in self._t.chunks.values()
                           if c["run_id"] == run_id and c["namespace"] == namespace and c["idx"] >= start),
                          key=lambda c: c["idx"])[:limit]  # fmt: skip
            return [(c["idx"], c["data"], c["closed"], c["seq"]) for c in rows]

    def history(self, run_id: str) -> list[tuple[str, str, str | None]]:
        """The ``(at, kind, detail)`` entries of a run's history, oldest first."""
        with self._lock:
            return [(at, kind, detail) for _, rid, at, kind, detail in self._t.history if rid == run_id]

    def key_check(self) -> str | None:
        """The fingerprint of the journal's key, if recorded."""
        with self._lock:
            return self._t.meta.get("key_check")

    def feed_marks(self) -> tuple[int, int, int]:
        """Where the change feed stands now."""
        with self._lock:
            return self._t.history_seq, self._t.message_seq, self._t.chunk_seq

    def feed_since(self, marks: tuple[int, int, int]) -> tuple[Feed, tuple[int, int, int]]:
        """What was committed after ``marks``."""
        with self._lock:
            t = self._t
            feed: Feed = {"ended": [], "cancelled": [], "events": [], "chunks": []}
            for seq, run_id, _, kind, _ in t.history:
                if seq > marks[0]:
                    if kind in TERMINAL_NAMES:
                        feed["ended"].append(run_id)
                    elif kind == "cancel_requested":
                        feed["cancelled"].append(run_id)
            feed["events"] = [(e["run_id"], e["topic"], i) for i, e in sorted(t.messages.items()) if i > marks[1]]
            feed["chunks"] = [(c["run_id"], c["namespace"], c["idx"]) for i, c in sorted(t.chunks.items()) if i > marks[2]]
            return feed, (t.history_seq, t.message_seq, t.chunk_seq)
