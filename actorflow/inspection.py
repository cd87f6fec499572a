"""A read-only view of a journal that another process owns: ``actorflow.inspect(path)``."""

from __future__ import annotations

import threading
from typing import Any

from . import journal
from .errors import RunNotFound
from .serialization import JSONSerializer, Serializer
from .status import RunList, RunStatus, RunTree, State, StepList, format_table, result_from_row, status_from_row, steps_from_rows


class JournalView:
    """Reads a journal without starting actors or taking the write lock.

    Safe to use while a live runtime in another process writes the file: WAL mode lets
    readers see every committed transaction without blocking the writer.

    Args:
        path: the journal file; it must exist.
        serializer: the serializer the owning runtime uses (default: tagged JSON).

    Raises:
        JournalError: the file does not exist or is not an actorflow journal.
    """

    def __init__(self, path: str, *, serializer: Serializer | None = None) -> None:
        self.path = str(path)
        self.serializer: Serializer = serializer if serializer is not None else JSONSerializer()
        self._conn = journal.connect_reader(self.path, read_only=True)
        self._lock = threading.Lock()

    def _row(self, run_id: str) -> dict[str, Any]:
        with self._lock:
            row = journal.get_row(self._conn, run_id)
        if row is None:
            raise RunNotFound(run_id)
        return row

    def status(self, run_id: str) -> RunStatus:
        """The committed status of a run.

        Raises:
            RunNotFound: no such run.
        """
        return status_from_row(self._row(run_id), self.serializer)

    def result(self, run_id: str) -> Any:
        """The result of a finished run (this view does not wait).

        Raises:
            RunNotFound: no such run.
            RunFailed / RunCancelled / RunTimedOut: how the run ended.
            LookupError: the run has not finished yet (this view does not wait).
        """
        return result_from_row(self._row(run_id), self.serializer)

    def tree(self, run_id: str) -> RunTree:
        """A run and its descendants with their states (see :meth:`actorflow.Runtime.tree`)."""
        self._row(run_id)
        with self._lock:
            rows = journal.tree_rows(self._conn, run_id)
        return RunTree((depth, status_from_row(row, self.serializer)) for depth, row in rows)

    def list_runs(
        self, state: str | State | None = None, flow: str | None = None, parent: str | None = None, limit: int = 100
    ) -> RunList:
        """Statuses of runs, newest first (same filters as :meth:`actorflow.Runtime.list_runs`)."""
        with self._lock:
            rows = journal.list_rows(
                self._conn, state=State(state).value if state is not None else None, flow=flow, parent_id=parent, limit=limit
            )
        return RunList(status_from_row(r, self.serializer) for r in rows)

    def steps(self, run_id: str) -> StepList:
        """The checkpointed calls of a run (see :meth:`actorflow.RunHandle.steps`)."""
        self._row(run_id)
        with self._lock:
            rows = journal.step_rows(self._conn, run_id)
        return steps_from_rows(run_id, rows)

    def counts(self) -> dict[str, int]:
        """Number of runs in each state."""
        with self._lock:
            return journal.count_by_state(self._conn)

    def events(self, run_id: str) -> str:
        """The state transitions of a run, as a table."""
        self._row(run_id)
        with self._lock:
            rows = journal.events_of(self._conn, run_id)
        return format_table(("at", "event", "detail"), [(a, k, d or "") for a, k, d in rows])

    def close(self) -> None:
        """Close the read connection."""
        self._conn.close()

    def __enter__(self) -> JournalView:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        counts = self.counts()
        text = ", ".join(f"{s.value} {counts[s.value]}" for s in State if counts.get(s.value))
        return f"<JournalView {self.path!r} (read-only): {text or 'no runs'}>"


def inspect(path: str, *, serializer: Serializer | None = None) -> JournalView:
    """Open a read-only view of the journal at ``path`` (see :class:`JournalView`)."""
    return JournalView(path, serializer=serializer)
