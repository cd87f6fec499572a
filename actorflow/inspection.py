"""A read-only view of a journal that another process owns: ``actorflow.inspect(path)``."""

from __future__ import annotations

import threading
from typing import Any

from . import signing
from .codec import Codec
from .errors import JournalError, RunNotFound
from .serialization import JSONSerializer, Serializer
from .states import State
from .status import (
    RunList,
    RunStatus,
    RunTree,
    StepList,
    check_listing,
    format_table,
    result_from_row,
    status_from_row,
    steps_from_rows,
)
from .store import RunRow
from .store.sqlite import SQLiteStore, check_path, connect_reader

__all__ = ["JournalView", "inspect"]



class JournalView:
    """Reads a journal without starting actors or taking the write lock.

    Safe to use while a live runtime in another process writes the file: WAL mode lets
    readers see every committed transaction without blocking the writer.

    Values are checked against the journal's key (``secret``, else ``$ACTORFLOW_SECRET``,
    else the key file ``<path>.key`` if this process can read it). Without a key the view
    still reads the journal but never unpickles or imports anything it names: plain JSON
    values are shown as :class:`~actorflow.Unverified`, pickled ones as
    :class:`~actorflow.Opaque` placeholders, errors without their exception.

    Args:
        path: the journal file; it must exist.
        serializer: the serializer the owning runtime uses (default: tagged JSON).
        secret: the journal's key, if it is not in ``$ACTORFLOW_SECRET`` or the key file.

    Attributes:
        verified: True if the view has the journal's key (and checks every value).

    Raises:
        JournalError: the file does not exist, is not an actorflow journal, or ``secret``
            is not the key it was signed with.
    """

    def __init__(self, path: str, *, serializer: Serializer | None = None, secret: str | bytes | None = None) -> None:
        self.path = check_path(path)
        if serializer is not None and not isinstance(serializer, Serializer):
            raise TypeError(f"serializer must have a name and dumps()/loads() methods, not {serializer!r}")
        self.serializer: Serializer = serializer if serializer is not None else JSONSerializer()
        self._store = SQLiteStore(connect_reader(self.path, read_only=True), path=self.path)
        self._lock = threading.Lock()
        self._closed = False
        try:
            key = signing.resolve_key(self.path, secret, create=False)
            if key is not None:
                recorded = self._store.key_check()
                if recorded is not None and recorded != signing.key_check(key):
                    raise JournalError(
                        f"the journal {self.path!r} is signed with another key than the one given to inspect()"
                    )
        except BaseException:
            self._store.close()
            raise
        self.codec = Codec(self.serializer, signing.Signer(key))
        self.verified = key is not None

    def _read(self) -> SQLiteStore:
        if self._closed:
            raise JournalError(f"this view of {self.path!r} was closed; open another with actorflow.inspect()")
        return self._store

    def _row(self, run_id: str) -> RunRow:
        with self._lock:
            row = self._read().get_run(run_id)
        if row is None:
            raise RunNotFound(run_id)
        return row

    def status(self, run_id: str) -> RunStatus:
        """The committed status of a run.

        Raises:
            RunNotFound: no such run.
        """
        return status_from_row(self._row(run_id), self.codec)

    def result(self, run_id: str) -> Any:
        """The result of a finished run (this view does not wait).

        Raises:
            RunNotFound: no such run.
            RunFailed / RunCancelled / RunTimedOut: how the run ended.
            LookupError: the run has not finished yet (this view does not wait).
        """
        return result_from_row(self._row(run_id), self.codec)

    def tree(self, run_id: str) -> RunTree:
        """A run and its descendants with their states (see :meth:`actorflow.Runtime.tree`)."""
        self._row(run_id)
        with self._lock:
            rows = self._read().tree(run_id)
        return RunTree((depth, status_from_row(row, self.codec, strict=False)) for depth, row in rows)

    def list_runs(
        self, state: str | State | None = None, flow: str | None = None, parent: str | None = None, limit: int = 100
    ) -> RunList:
        """Statuses of runs, newest first (same filters as :meth:`actorflow.Runtime.list_runs`).

        A run whose row does not verify is listed with the reason as its error.
        """
        state_name, limit = check_listing(state, limit)
        with self._lock:
            rows = self._read().list_runs(state=state_name, flow=flow, parent_id=parent, limit=limit)
        return RunList(status_from_row(r, self.codec, strict=False) for r in rows)

    def steps(self, run_id: str) -> StepList:
        """The checkpointed calls of a run (see :meth:`actorflow.RunHandle.steps`)."""
        self._row(run_id)
        with self._lock:
            rows = self._read().steps(run_id)
        return steps_from_rows(run_id, rows, self.codec)

    def counts(self) -> dict[str, int]:
        """Number of runs in each state."""
        with self._lock:
            return self._read().count_by_state()

    def history(self, run_id: str) -> str:
        """The run's history (state transitions, failed step attempts, flow retries), as a table."""
        self._row(run_id)
        with self._lock:
            rows = self._read().history(run_id)
        return format_table(("at", "event", "detail"), [(a, k, d or "") for a, k, d in rows])

    def events(self, run_id: str) -> str:
        """The same as :meth:`history` (its earlier name)."""
        return self.history(run_id)

    def close(self) -> None:
        """Close the read connection; the view answers no more calls (calling it again does nothing)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._store.close()

    def __enter__(self) -> JournalView:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._closed:
            return f"<JournalView {self.path!r} (closed)>"
        counts = self.counts()
        text = ", ".join(f"{s.value} {counts[s.value]}" for s in State if counts.get(s.value))
        return f"<JournalView {self.path!r} (read-only): {text or 'no runs'}>"


def inspect(path: str, *, serializer: Serializer | None = None, secret: str | bytes | None = None) -> JournalView:
    """Open a read-only view of the journal at ``path`` (see :class:`JournalView`)."""
    return JournalView(path, serializer=serializer, secret=secret)
