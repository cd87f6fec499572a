"""The journal: the SQLite file that holds everything that must survive a crash.

One :class:`Journal` actor owns the only write connection. Writers send it messages
(:mod:`actorflow.messages`) and it commits them in groups: each write is queued, and
while more messages wait in the actor's inbox it keeps collecting; the write that finds
the inbox empty commits the whole group as one transaction. So every write that arrives
while a commit is under way goes into the next transaction, and a lone write is
committed at once.
Only after the commit does it answer the writers' futures and report the changes to the
registry, so nothing is visible outside before it is durable.

Readers (the registry, :func:`actorflow.inspect`) use connections of their own; the file
is in WAL mode, so they never block the writer. Tables, readable with the ``sqlite3`` shell:

``runs``
    one row per run: flow, arguments, state, result or error, progress, timestamps.
``events``
    an append-only log of every state transition of every run, and of every failed
    attempt of a step.
``messages``
    events sent to runs (``rt.send``, ``rt.resume_hook``) and which call took each.
``hooks``
    hook tokens and the runs holding them.
``chunks``
    the streams runs write (``ctx.write``), in order per run and namespace.
``runtimes``
    every runtime that has opened the journal: its process, host and lease. A run's
    ``owner`` is the runtime executing it; it holds the run while its lease is renewed.
``steps``
    one row per checkpointed call of a run (steps, ``ctx.now()``...): name, state,
    result or error, attempts. Replay matches calls to these rows by ``seq``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import operator
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pykka
import sqlite_utils

from . import messages as m
from ._actor import Actor
from ._actor import tell as tell_actor
from .errors import ActorflowError, HookConflict, HookNotFound, JournalError, RunFinished, RunNotFound
from .signing import event_kind
from .status import TERMINAL_NAMES, UNFINISHED_NAMES
from .status import parse_ts as parse_ts  # re-exported: the journal's timestamps

__all__ = [
    "Checkpointer",
    "Journal",
    "SCHEMA_VERSION",
    "check_folder",
    "check_path",
    "check_writable",
    "chunk_rows",
    "connect",
    "connect_reader",
    "count_by_state",
    "create_file",
    "events_of",
    "fetch_all",
    "fetch_one",
    "get_row",
    "host_identity",
    "list_rows",
    "now_iso",
    "recorded_key_check",
    "step_rows",
    "tree_rows",
]

log = logging.getLogger("actorflow")

SCHEMA_VERSION = 2
_UNFINISHED_SQL = "(" + ",".join(f"'{s}'" for s in sorted(UNFINISHED_NAMES)) + ")"
_TERMINAL_SQL = "(" + ",".join(f"'{s}'" for s in sorted(TERMINAL_NAMES)) + ")"


# ---------------------------------------------------------------------------- time


def now_iso() -> str:
    """The current UTC time as the fixed-width ISO text stored in the journal."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")




# ---------------------------------------------------------------------------- opening


def _describe(path: str, exc: BaseException) -> str:
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        return (
            f"the journal {path!r} is read-only ({text}); give this process write access to "
            "the file and its folder, or open it with actorflow.inspect() to read it"
        )
    if "locked" in text or "busy" in text:
        return (
            f"the journal {path!r} is locked by another connection ({text}); wait for it "
            "to finish, or raise busy_timeout"
        )
    return f"cannot use the journal {path!r}: {text}"


def check_path(path: object) -> str:
    """Check a journal path given by a user and return it as a str.

    Raises:
        TypeError: it is not a str or a path.
        JournalError: it names no file a journal can be (empty, ``:memory:``, a folder).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"a journal is a file path (str or pathlib.Path), not {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError("a journal path must be text, not bytes")
    if text.strip() == "":
        raise JournalError("the journal path is empty: give a file name, such as 'actorflow.db'")
    if text == ":memory:" or text.startswith("file::memory:"):
        raise JournalError(
            "a journal must be a file: an in-memory SQLite database would lose every run at exit and cannot be "
            "shared with readers; use a file (a temporary folder is fine for tests)"
        )
    if os.path.isdir(text):
        raise JournalError(f"the journal path {text!r} is a folder; give a file name inside it, such as {os.path.join(text, 'actorflow.db')!r}")
    return text


def create_file(path: str, file_mode: int) -> None:
    """Create an empty journal file with ``file_mode`` (whatever the umask) if it does not exist.

    SQLite creates the ``-wal`` and ``-shm`` files with the mode of the database file.

    Raises:
        JournalError: the file cannot be created (the folder is read-only or missing).
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, file_mode)
    except FileExistsError:
        return
    except OSError as exc:
        raise JournalError(
            f"cannot create the journal {path!r} ({exc.strerror or exc}); give this process write access to the folder"
        ) from exc
    try:
        os.fchmod(fd, file_mode)
    finally:
        os.close(fd)


def connect(
    path: str, *, busy_timeout: float, durability: str = "normal", key_check: str | None = None, file_mode: int = 0o600
) -> sqlite3.Connection:
    """Open the write connection, create the schema if needed, and check the file is writable.

    Args:
        path: the SQLite file; created (with ``file_mode``) if missing.
        busy_timeout: seconds to wait for another connection's lock before failing.
        durability: ``"normal"`` (WAL, synchronous=NORMAL: a commit survives a crash of
            the process) or ``"full"`` (synchronous=FULL: it also survives power loss).
        key_check: the fingerprint of the key this runtime signs with
            (:func:`actorflow.signing.key_check`): recorded in a new journal, compared
            with the one recorded in an existing journal.
        file_mode: the permission bits of a new journal file.

    Raises:
        JournalError: the file cannot be opened, is not a journal, was written by another
            version or with another key, is read-only or locked.
    """
    if durability not in ("normal", "full"):
        raise ValueError(f"durability must be 'normal' or 'full', not {durability!r}")
    check_folder(path)
    check_writable(path)
    create_file(path, file_mode)
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise JournalError(_describe(path, exc)) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        _check_kind(conn, path)  # before WAL mode: another application's file is left as it was
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise JournalError(
                f"the journal {path!r} cannot be put in WAL mode (it is in {mode!r} mode); "
                "is it on a network file system?"
            )
        conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
        give_up = time.monotonic() + busy_timeout
        pause = 0.005
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")  # proves the file is writable and not locked
                try:
                    _create_schema(conn, path, key_check)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                break
            except sqlite3.OperationalError as exc:
                # SQLite can answer "busy" at once, without waiting, while another process
                # opens or closes the WAL: retry within the busy timeout
                if not _is_busy(exc) or time.monotonic() >= give_up:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.1)
    except JournalError:
        conn.close()
        raise
    except sqlite3.DatabaseError as exc:
        conn.close()
        if "not a database" in str(exc) or "malformed" in str(exc):
            raise JournalError(f"{path!r} is not an actorflow journal (not a SQLite database)") from exc
        raise JournalError(_describe(path, exc)) from exc
    return conn


def _check_kind(conn: sqlite3.Connection, path: str, *, creating: bool = False) -> None:
    """Refuse a SQLite file that is not an actorflow journal of this version (an empty one is made one).

    With ``creating`` (inside the transaction that creates the schema) a journal whose
    tables are still being made is accepted.
    """
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return
    if "meta" not in tables or ("runs" not in tables and not creating):
        raise JournalError(
            f"{path!r} is not an actorflow journal: it is a SQLite database of another application "
            f"(tables: {', '.join(sorted(tables)[:8])}); it was left as it was: give actorflow a file of its own"
        )
    version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if version is None:
        raise JournalError(f"{path!r} is not an actorflow journal (it has no schema version)")
    if version[0] == "1":
        raise JournalError(
            f"the journal {path!r} was written by actorflow 0.1 (schema 1), whose stored values are not signed; this "
            f"version reads only signed journals (schema {SCHEMA_VERSION}) and does not sign old values after the fact "
            "(anyone could have edited them). Let its runs finish with actorflow 0.1, then start a new journal; "
            "see docs/guides/security.md"
        )
    if not version[0].isdigit() or int(version[0]) > SCHEMA_VERSION:
        raise JournalError(
            f"the journal {path!r} was written by a newer actorflow (schema {version[0]}); "
            f"this one reads schema {SCHEMA_VERSION}: upgrade actorflow"
        )


def recorded_key_check(path: str) -> str | None:
    """The key fingerprint recorded in an existing journal; None for a new or empty file.

    Raises:
        JournalError: the file is not an actorflow journal of this version.
    """
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    try:
        conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise JournalError(_describe(path, exc)) from exc
    try:
        _check_kind(conn, path)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            return None
        row = conn.execute("SELECT value FROM meta WHERE key='key_check'").fetchone()
        return row[0] if row else None
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc) or "malformed" in str(exc):
            raise JournalError(f"{path!r} is not an actorflow journal (not a SQLite database)") from exc
        raise JournalError(_describe(path, exc)) from exc
    finally:
        conn.close()


def check_writable(path: str) -> None:
    """Raise :class:`JournalError` if this process may not write an existing journal (before SQLite makes -wal/-shm files)."""
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        raise JournalError(
            f"the journal {path!r} is read-only for this process; give it write access to the file and its folder, "
            "or open it with actorflow.inspect() to read it"
        )


def check_folder(path: str) -> None:
    """Raise :class:`JournalError` if the journal's folder is missing or cannot be reached."""
    parent = Path(path).resolve().parent
    try:
        if not parent.is_dir():
            raise JournalError(f"cannot create the journal {path!r}: the folder {str(parent)!r} does not exist")
    except OSError as exc:
        raise JournalError(f"cannot reach the journal {path!r}: {exc}; check the folder's permissions") from exc


def _create_schema(conn: sqlite3.Connection, path: str, key_check: str | None) -> None:
    db = sqlite_utils.Database(conn)
    if "meta" not in db.table_names():
        db.table("meta").create({"key": str, "value": str}, pk="key")
        db.table("meta").insert({"key": "schema_version", "value": str(SCHEMA_VERSION)})
    _check_kind(conn, path, creating=True)  # again, inside the write transaction: another process may have made it
    if key_check is not None:
        recorded = conn.execute("SELECT value FROM meta WHERE key='key_check'").fetchone()
        if recorded is None:
            conn.execute("INSERT INTO meta (key, value) VALUES ('key_check', ?)", (key_check,))
        elif recorded[0] != key_check:
            raise JournalError(
                f"the journal {path!r} is signed with another key than this runtime's; open it with the key it was "
                f"created with (Runtime(secret=...), $ACTORFLOW_SECRET, or its key file {path + '.key'!r})"
            )
    db.table("runs").create(
        {
            "id": str,
            "flow": str,
            "flow_ref": str,
            "flow_blob": bytes,
            "codec": str,
            "args": str,
            "kwargs": str,
            "state": str,
            "result": str,
            "error": str,
            "progress": str,
            "metadata": str,
            "parent_id": str,
            "idempotency_key": str,
            "attempt": int,
            "flow_retries": int,
            "recoveries": int,
            "cancel_requested": int,
            "owner": str,
            "timeout": float,
            "deadline": str,
            "detached": int,
            "waiting_for": str,
            "wake_at": str,
            "queue": str,
            "priority": int,
            "created_at": str,
            "started_at": str,
            "completed_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"flow", "flow_ref", "codec", "state", "attempt", "flow_retries", "recoveries", "cancel_requested", "created_at"},
        defaults={"attempt": 0, "flow_retries": 0, "recoveries": 0, "cancel_requested": 0, "detached": 0, "priority": 0},
        if_not_exists=True,
    )
    # partial indexes: most runs have neither key nor parent, and an index without their
    # entries costs nothing when they are written
    conn.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS idx_runs_idempotency_key ON runs (idempotency_key) "
        "WHERE idempotency_key IS NOT NULL"
    )
    db.table("runs").create_index(["state"], if_not_exists=True)
    conn.execute("CREATE INDEX IF NOT EXISTS idx_runs_parent_id ON runs (parent_id) WHERE parent_id IS NOT NULL")
    # no index on flow: listing by flow reads the table as listing without a filter does,
    # and every start would write a page of it

    db.table("runtimes").create(
        {"id": str, "pid": int, "host": str, "started_at": str, "heartbeat_at": float, "lease_until": float},
        pk="id",
        if_not_exists=True,
    )
    # the change feed's tables: an id is never reused after a purge (other processes read
    # them from the last id they have seen). events, written with every run's start and end,
    # does without AUTOINCREMENT (which writes its counter's page at each insert): a purge
    # keeps its newest row, so a new id is always above every id seen
    conn.execute(
        "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, "
        "at TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT)"
    )
    db.table("events").create_index(["run_id"], if_not_exists=True)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, "
        "topic TEXT NOT NULL, payload TEXT, sent_at TEXT NOT NULL, taken_seq INTEGER, taken_at TEXT)"
    )
    db.table("messages").create_index(["run_id", "topic", "taken_seq"], if_not_exists=True)
    db.table("hooks").create({"token": str, "run_id": str, "created_at": str}, pk="token", not_null={"run_id"}, if_not_exists=True)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, "
        "namespace TEXT NOT NULL, idx INTEGER NOT NULL, seq INTEGER NOT NULL, data TEXT, "
        "closed INTEGER NOT NULL DEFAULT 0, at TEXT NOT NULL)"
    )
    db.table("chunks").create_index(["run_id", "namespace", "idx"], unique=True, if_not_exists=True)
    db.table("chunks").create_index(["run_id", "seq"], unique=True, if_not_exists=True)
    # WITHOUT ROWID: the table is its primary key's B-tree, so a checkpoint writes one page
    # where a rowid table and its key's index would write two
    conn.execute(
        "CREATE TABLE IF NOT EXISTS steps (run_id TEXT NOT NULL, seq INTEGER NOT NULL, name TEXT NOT NULL, "
        "state TEXT NOT NULL, result TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0, started_at TEXT, "
        "completed_at TEXT, retry_at TEXT, PRIMARY KEY (run_id, seq)) WITHOUT ROWID"
    )


def connect_reader(path: str, *, read_only: bool = False, busy_timeout: float = 5.0) -> sqlite3.Connection:
    """Open a connection for reading only.

    Args:
        path: the journal file.
        read_only: open with ``mode=ro`` (for a journal another process owns); the file
            must exist and be a journal. If this process cannot write next to the file
            (SQLite then cannot create the WAL's shared-memory file), the journal is
            opened as immutable: a snapshot, right for a file no process is writing.
        busy_timeout: seconds to wait for a lock.

    Raises:
        JournalError: the file does not exist or is not an actorflow journal.
    """
    if read_only and not os.path.exists(path):
        raise JournalError(f"no journal at {path!r}")
    attempts = [Path(path).resolve().as_uri() + "?mode=ro", Path(path).resolve().as_uri() + "?immutable=1"]
    if not read_only:
        attempts = [path]
    last: sqlite3.Error | None = None
    for target in attempts:
        try:
            conn = sqlite3.connect(target, uri=read_only, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            last = exc
            continue
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        conn.execute("PRAGMA query_only=1")
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            conn.close()
            last = exc
            if "readonly" in str(exc) or "unable to open" in str(exc):
                continue  # no shared-memory file can be made here: try as immutable
            raise JournalError(f"{path!r} is not an actorflow journal ({exc})") from exc
        if "runs" not in tables:
            conn.close()
            raise JournalError(f"{path!r} is not an actorflow journal (it has no runs table)")
        return conn
    raise JournalError(_describe(path, last or sqlite3.Error("cannot open")))


# ---------------------------------------------------------------------------- reading


def fetch_all(conn: sqlite3.Connection, sql: str, params: Iterable[Any] = ()) -> list[m.Row]:
    """Rows of a query (or of an ``UPDATE ... RETURNING``) as dicts of column values."""
    cur = conn.execute(sql, tuple(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def fetch_one(conn: sqlite3.Connection, sql: str, params: Iterable[Any] = ()) -> m.Row | None:
    """The first row of a query as a dict, or None."""
    rows = fetch_all(conn, sql, params)
    return rows[0] if rows else None


def get_row(conn: sqlite3.Connection, run_id: str) -> m.Row | None:
    """The ``runs`` row of ``run_id`` as a dict, or None."""
    return fetch_one(conn, "SELECT * FROM runs WHERE id=?", (run_id,))


def list_rows(
    conn: sqlite3.Connection,
    *,
    state: str | None = None,
    flow: str | None = None,
    parent_id: str | None = None,
    limit: int = 100,
) -> list[m.Row]:
    """Rows of runs matching the filters, newest first."""
    where: list[str] = []
    params: list[Any] = []
    if state is not None:
        where.append("state=?")
        params.append(state)
    if flow is not None:
        where.append("flow=?")
        params.append(flow)
    if parent_id is not None:
        where.append("parent_id=?")
        params.append(parent_id)
    sql = "SELECT * FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
    params.append(limit)
    return fetch_all(conn, sql, params)


def count_by_state(conn: sqlite3.Connection) -> dict[str, int]:
    """Number of runs in each state."""
    return {state: n for state, n in conn.execute("SELECT state, count(*) FROM runs GROUP BY state")}


def tree_rows(conn: sqlite3.Connection, run_id: str) -> list[tuple[int, m.Row]]:
    """A run and its descendants as ``(depth, row)``, depth first, children by creation."""
    root = get_row(conn, run_id)
    if root is None:
        return []
    out: list[tuple[int, m.Row]] = []

    def walk(row: m.Row, depth: int) -> None:
        out.append((depth, row))
        for child in fetch_all(conn, "SELECT * FROM runs WHERE parent_id=? ORDER BY created_at, id", (row["id"],)):
            walk(child, depth + 1)

    walk(root, 0)
    return out


def chunk_rows(conn: sqlite3.Connection, run_id: str, namespace: str, start: int, limit: int) -> list[tuple[int, Any, int, int]]:
    """``(index, data, closed, seq)`` of a stream's chunks from ``start``, in order (``seq``: the
    position of the ``ctx.write`` call, part of the chunk's signature)."""
    return [
        (r[0], r[1], r[2], r[3])
        for r in conn.execute(
            "SELECT idx, data, closed, seq FROM chunks WHERE run_id=? AND namespace=? AND idx>=? ORDER BY idx LIMIT ?",
            (run_id, namespace, start, limit),
        )
    ]


def step_rows(conn: sqlite3.Connection, run_id: str) -> list[m.Row]:
    """The ``steps`` rows of a run, in call order."""
    return fetch_all(conn, "SELECT * FROM steps WHERE run_id=? ORDER BY seq", (run_id,))


def events_of(conn: sqlite3.Connection, run_id: str) -> list[tuple[str, str, str | None]]:
    """The ``(at, kind, detail)`` transitions of a run, oldest first."""
    return [tuple(r) for r in conn.execute("SELECT at, kind, detail FROM events WHERE run_id=? ORDER BY seq", (run_id,))]


# ---------------------------------------------------------------------------- checkpoints


class Checkpointer:
    """Copies the WAL back into the database file on a thread of its own.

    SQLite's automatic checkpoint runs inside whichever commit crosses the threshold and
    makes that commit (and every start waiting on it) take milliseconds. The journal turns
    it off and instead wakes this thread every few commits; a PASSIVE checkpoint on a
    separate connection runs beside the writer (sqlite releases the GIL meanwhile).

    Args:
        path: the journal file.
    """

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="actorflow-checkpointer", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Ask for a checkpoint soon."""
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                break
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:  # a busy checkpoint is retried at the next request
                log.debug("checkpoint skipped: %s", exc)
        self._conn.close()

    def stop(self) -> None:
        """Stop the thread and close its connection."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=10)


# ---------------------------------------------------------------------------- the actor


class _OpFailed(Exception):
    """An operation of a group failed with an unexpected SQLite error (the group is redone carefully)."""


def _is_busy(exc: sqlite3.Error) -> bool:
    """True for SQLite's "database is locked" / "busy": another connection holds a lock."""
    text = str(exc)
    return "locked" in text or "busy" in text


def _is_operational(exc: sqlite3.Error) -> bool:
    """True for errors about the file (locked, read-only, full, I/O), not about one statement."""
    text = str(exc)
    return isinstance(exc, sqlite3.OperationalError) and any(
        word in text for word in ("locked", "busy", "readonly", "disk", "full", "I/O", "unable to open")
    )

_RUN_COLUMNS = (
    "id", "flow", "flow_ref", "flow_blob", "codec", "args", "kwargs", "state", "metadata",
    "parent_id", "idempotency_key", "attempt", "cancel_requested", "owner", "timeout", "deadline",
    "detached", "queue", "priority", "created_at", "started_at", "updated_at",
)  # fmt: skip
_INSERT_RUN = (
    f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join('?' * len(_RUN_COLUMNS))}) "
    "ON CONFLICT DO NOTHING"
)
_run_values = operator.itemgetter(*_RUN_COLUMNS)
_INSERT_EVENT = "INSERT INTO events (run_id, at, kind, detail) VALUES (?, ?, ?, ?)"
_INSERT_TWO_EVENTS = "INSERT INTO events (run_id, at, kind, detail) VALUES (?, ?, ?, ?), (?, ?, ?, ?)"
_FAIL_FAST = (m.InsertRun, m.RequestCancel, m.InsertEvent)
_WRITE_THEN_CHECK = frozenset({m.TakeEvent})  # may raise after writing: needs a savepoint

# what an applied write leaves to do after the commit: (result for reply_to, change for the
# registry or None, (actor, message) to tell or None)
_Outcome = tuple[Any, "tuple[str, m.Row] | list[tuple[str, m.Row]] | None", "tuple[pykka.ActorRef[Any], Any] | None"]


class Journal(Actor):
    """The single writer of the journal; commits writes in groups.

    Args:
        conn: the write connection from :func:`connect` (this actor becomes its only user).
        registry: the registry actor, told of the committed ends of the runs it watches.
        path: the file name, for error messages.
        owner: the incarnation id of the runtime: the writes of runs it executes are
            fenced on ``owner`` (refused once another runtime has taken the run over).
        watched: the registry's set of the runs it waits for: a run's end is told to the
            registry only if its id is in it (None: every end is told).
        seal: signs an event's payload once its run is known (``Codec.seal``); every
            other payload arrives signed by the actor that wrote it.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        registry: pykka.ActorRef[Any],
        path: str,
        owner: str,
        watched: set[str] | None = None,
        seal: Callable[[Any, str, str], Any] | None = None,
    ) -> None:
        super().__init__()
        self._seal = seal if seal is not None else (lambda value, run_id, kind: value)
        self._watched = watched
        self._owner = owner
        self._host = host_identity()
        self._conn = conn
        self._registry = registry
        self._path = path
        self._pending: list[Any] = []
        self._flush_scheduled = False
        self._failures = 0
        self._commits = 0
        self._checkpointer: Checkpointer | None = None
        # futures resolved once this group commits: (future, value) ("admitted", "done")
        self._after_commit: list[tuple[Any, Any]] = []
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

    def on_start(self) -> None:
        """Take over checkpointing from SQLite's automatic one."""
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = Checkpointer(self._path)

    def on_stop(self) -> None:
        """Commit what is still queued, checkpoint the WAL, then close the connection."""
        if self._pending:
            self._flush()
        if self._checkpointer is not None:
            self._checkpointer.stop()
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:  # a reader in another process holds the WAL: fine
            log.debug("final checkpoint skipped: %s", exc)
        self._conn.close()

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
        try:
            outcomes = self._apply_batch(batch, careful=False)
        except _OpFailed:
            # an operation hit an unexpected SQLite error: redo the group with a savepoint
            # around each operation, so that only the failing one is rolled back
            self._after_commit.clear()
            try:
                outcomes = self._apply_batch(batch, careful=True)
            except sqlite3.Error as exc:
                self._batch_failed(batch, exc)
                return
        except sqlite3.Error as exc:
            self._batch_failed(batch, exc)
            return
        self._failures = 0
        after, self._after_commit = self._after_commit, []
        self._commits += 1
        if self._commits % 64 == 0 and self._checkpointer is not None:
            self._checkpointer.request()
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
        checks before it writes), so it fails alone. An unexpected SQLite error raises
        :class:`_OpFailed` unless ``careful``, in which case each operation runs inside a
        savepoint and only the failing one is undone.
        """
        conn = self._conn
        handlers = self._handlers
        outcomes: list[tuple[Any, _Outcome | None, BaseException | None]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            after = self._after_commit
            for msg in batch:
                if careful:
                    conn.execute("SAVEPOINT op")
                mark = len(after)  # what a failed operation queued for after the commit is dropped
                try:
                    outcome = handlers[type(msg)](msg)
                except ActorflowError as exc:
                    if type(msg) in _WRITE_THEN_CHECK and not careful:
                        raise _OpFailed from exc  # it may have written before it failed: redo carefully
                    del after[mark:]
                    if careful:
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                    outcomes.append((msg, None, exc))
                    continue
                except Exception as exc:
                    if not careful:
                        if isinstance(exc, sqlite3.Error) and _is_operational(exc):
                            raise  # about the file, not the operation: the whole group fails
                        raise _OpFailed from exc
                    if isinstance(exc, sqlite3.Error) and _is_operational(exc):
                        raise
                    del after[mark:]
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    log.exception("journal write %r failed", msg)
                    outcomes.append((msg, None, JournalError(f"the journal could not store {type(msg).__name__}: {exc}")))
                    continue
                if careful:
                    conn.execute("RELEASE op")
                outcomes.append((msg, outcome, None))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes

    def _batch_failed(self, batch: list[Any], exc: sqlite3.Error) -> None:
        """Retry a group that met a lock; fail the waiting writes on other errors (or after long)."""
        error = JournalError(_describe(self._path, exc))
        self._after_commit.clear()
        if _is_busy(exc) and self._failures < 3:
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
        if self._failures > 20 and not _is_busy(exc):
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

    def _event(self, run_id: str, at: str, kind: str, detail: str | None = None) -> None:
        self._conn.execute(_INSERT_EVENT, (run_id, at, kind, detail))

    def _returning(self, sql: str, params: Iterable[Any]) -> m.Row | None:
        return fetch_one(self._conn, sql, params)

    def _insert_run(self, msg: m.InsertRun) -> _Outcome:
        row = msg.row
        cur = self._conn.execute(_INSERT_RUN, _run_values(row))
        if cur.rowcount == 0:  # same id (a replayed child start) or same idempotency key
            existing = self._conn.execute(
                "SELECT id FROM runs WHERE id=? OR idempotency_key=?", (row["id"], row["idempotency_key"])
            ).fetchone()
            if msg.admitted is not None:
                self._after_commit.append((msg.admitted, False))
            return existing[0], None, None
        if msg.admitted is not None:
            self._after_commit.append((msg.admitted, True))
        detail = row["parent_id"] and json.dumps({"parent_id": row["parent_id"]})
        if row["state"] == "running":  # admitted at once: created and started in one statement
            self._conn.execute(_INSERT_TWO_EVENTS, (row["id"], row["created_at"], "created", detail,
                                                    row["id"], row["created_at"], "started", '{"attempt":1}'))  # fmt: skip
        else:
            self._event(row["id"], row["created_at"], "created", detail)
        tell = (msg.notify, m.RunCommitted(row)) if msg.notify is not None else None
        return row["id"], (row["id"], row), tell

    def _claim_run(self, msg: m.ClaimRun) -> _Outcome:
        # the fence: a run another runtime holds is not claimed (recoveries are counted at takeover)
        row = self._returning(
            "UPDATE runs SET state='running', attempt=attempt+1, "
            "waiting_for=NULL, wake_at=NULL, "
            "started_at=?, owner=?, deadline=COALESCE(deadline, ?), updated_at=? "
            f"WHERE id=? AND state IN {_UNFINISHED_SQL} AND (owner IS NULL OR owner=?) RETURNING *",
            (msg.at, msg.owner, msg.deadline, msg.at, msg.run_id, msg.owner),
        )
        if row is None:
            return None, None, None
        self._event(msg.run_id, msg.at, "started", json.dumps({"attempt": row["attempt"], "recoveries": row["recoveries"]}))
        change = {"state": "running", "attempt": row["attempt"], "started_at": msg.at, "owner": msg.owner,
                  "recoveries": row["recoveries"], "deadline": row["deadline"], "waiting_for": None,
                  "wake_at": None}  # fmt: skip
        return (row, step_rows(self._conn, msg.run_id)), (msg.run_id, change), None

    _UPSERT_STEP = (
        "INSERT INTO steps (run_id, seq, name, state, result, error, attempts, started_at, completed_at, retry_at) "
        "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
        f"WHERE EXISTS (SELECT 1 FROM runs WHERE id=? AND state IN {_UNFINISHED_SQL} AND owner=?) "
        "ON CONFLICT (run_id, seq) DO UPDATE SET name=excluded.name, state=excluded.state, "
        "result=excluded.result, error=COALESCE(excluded.error, steps.error), attempts=excluded.attempts, "
        "started_at=COALESCE(excluded.started_at, steps.started_at), completed_at=excluded.completed_at, "
        "retry_at=excluded.retry_at"
    )

    def _upsert_step(self, run_id: str, seq: int, name: str, state: str, *, result: Any = None, error: str | None = None,
                     attempts: int, started_at: str | None = None, completed_at: str | None = None,
                     retry_at: str | None = None) -> bool:  # fmt: skip
        cur = self._conn.execute(
            self._UPSERT_STEP,
            (run_id, seq, name, state, result, error, attempts, started_at, completed_at, retry_at, run_id, self._owner),
        )
        return cur.rowcount > 0

    def _step_started(self, msg: m.StepStarted) -> _Outcome:
        saved = self._upsert_step(msg.run_id, msg.seq, msg.name, "running", attempts=msg.attempt, started_at=msg.at,
                                  retry_at=msg.wake_at)  # fmt: skip
        return saved, None, None

    def _step_attempt_failed(self, msg: m.StepAttemptFailed) -> _Outcome:
        if self._upsert_step(msg.run_id, msg.seq, msg.name, "retrying", error=msg.error, attempts=msg.attempt,
                             retry_at=msg.retry_at):  # fmt: skip
            detail = {"seq": msg.seq, "step": msg.name, "attempt": msg.attempt, "error": msg.summary,
                      "retry_in": msg.retry_in, "retry_at": msg.retry_at}  # fmt: skip
            self._event(msg.run_id, msg.at, "step_retry", json.dumps(detail))
        return None, None, None

    def _save_step(self, msg: m.SaveStep) -> _Outcome:
        saved = self._upsert_step(msg.run_id, msg.seq, msg.name, msg.state, result=msg.result, error=msg.error,
                                  attempts=msg.attempts, started_at=msg.started_at, completed_at=msg.at)  # fmt: skip
        if saved and msg.state == "failed":
            self._event(msg.run_id, msg.at, "step_failed", json.dumps({"seq": msg.seq, "step": msg.name, "attempts": msg.attempts}))
        return saved, None, None

    def _retry_run(self, msg: m.RetryRun) -> _Outcome:
        row = self._returning(
            f"UPDATE runs SET attempt=attempt+1, flow_retries=flow_retries+1, updated_at=? WHERE id=? "
            f"AND state IN {_UNFINISHED_SQL} AND owner=? RETURNING attempt",
            (msg.at, msg.run_id, self._owner),
        )
        if row is None:
            return None, None, None
        # the new attempt runs the failed calls again; completed ones are replayed
        self._conn.execute("DELETE FROM steps WHERE run_id=? AND state!='completed'", (msg.run_id,))
        self._event(msg.run_id, msg.at, "retry", json.dumps({"attempt": row["attempt"], "error": msg.summary, "delay": msg.delay}))
        return row["attempt"], (msg.run_id, {"attempt": row["attempt"]}), None

    def _release_run(self, msg: m.ReleaseRun) -> _Outcome:
        self._conn.execute(
            f"UPDATE runs SET owner=NULL WHERE id=? AND owner=? AND state IN {_UNFINISHED_SQL}", (msg.run_id, msg.owner)
        )
        return None, None, None

    def _save_progress(self, msg: m.SaveProgress) -> _Outcome:
        cur = self._conn.execute(
            f"UPDATE runs SET progress=?, updated_at=? WHERE id=? AND state IN {_UNFINISHED_SQL} AND owner=?",
            (msg.progress, msg.at, msg.run_id, self._owner),
        )
        if cur.rowcount == 0:
            return None, None, None
        return None, (msg.run_id, {"progress": msg.progress}), None

    def _finish_run(self, msg: m.FinishRun) -> _Outcome:
        overridable = msg.state in ("completed", "failed")
        final = fetch_one(
            self._conn,
            "UPDATE runs SET "
            "state = CASE WHEN cancel_requested=1 AND ? THEN 'cancelled' ELSE ? END, "
            "result = CASE WHEN cancel_requested=1 AND ? THEN NULL ELSE ? END, "
            "error = CASE WHEN cancel_requested=1 AND ? THEN NULL ELSE ? END, "
            f"completed_at=?, updated_at=? WHERE id=? AND state IN {_UNFINISHED_SQL} AND owner=? RETURNING *",
            (overridable, msg.state, overridable, msg.result, overridable, msg.error, msg.at, msg.at, msg.run_id,
             self._owner),  # fmt: skip
        )
        if final is None:
            return False, None, None
        if msg.done is not None:  # the handle start() returned waits on it (after the commit)
            self._after_commit.append((msg.done, final))
        self._event(msg.run_id, msg.at, final["state"])
        change = final  # the whole row: the registry hands it to the run's waiters without reading it
        if msg.cascade is None:
            return True, (msg.run_id, change), None
        # a parent that ends takes its unfinished (not detached) children with it
        changes, tell = self._cascade(msg.run_id, msg.at, msg.cascade)
        return True, [(msg.run_id, change), *changes], tell

    _CASCADE = (
        "UPDATE runs SET cancel_requested=1, updated_at=:at, "
        "state = CASE WHEN state IN ('pending','waiting') THEN 'cancelled' ELSE state END, "
        "completed_at = CASE WHEN state IN ('pending','waiting') THEN :at ELSE completed_at END "
        f"WHERE state IN {_UNFINISHED_SQL} AND id IN ("
        "WITH RECURSIVE sub(id) AS ("
        "SELECT id FROM runs WHERE parent_id=:parent AND detached=0 "
        "UNION ALL SELECT r.id FROM runs r JOIN sub ON r.parent_id=sub.id WHERE r.detached=0"
        ") SELECT id FROM sub) RETURNING id, state"
    )

    def _cascade(self, parent_id: str, at: str, notify: pykka.ActorRef[Any] | None) -> tuple[list[tuple[str, m.Row]], Any]:
        """Cancel the unfinished, not detached descendants of ``parent_id``."""
        rows = self._conn.execute(self._CASCADE, {"at": at, "parent": parent_id}).fetchall()
        changes: list[tuple[str, m.Row]] = []
        executing, ended = [], []
        for run_id, state in rows:
            self._event(run_id, at, "cancel_requested", json.dumps({"by": parent_id}))
            if state == "cancelled":
                self._event(run_id, at, "cancelled")
                changes.append((run_id, {"state": "cancelled", "cancel_requested": 1, "completed_at": at}))
                ended.append(run_id)
            else:
                changes.append((run_id, {"cancel_requested": 1}))
                executing.append(run_id)
        tell = (notify, m.RunsCancelled(tuple(executing), tuple(ended))) if notify is not None and rows else None
        return changes, tell

    def _sleep(self, msg: m.Sleep) -> _Outcome:
        if not self._upsert_step(msg.run_id, msg.seq, "actorflow.sleep", "running", attempts=1, started_at=msg.at,
                                 retry_at=msg.wake_at):  # fmt: skip
            return (None, 0), None, None
        return self._set_waiting(m.SetWaiting(msg.run_id, msg.waiting_for, msg.wake_at, msg.at))

    def _set_waiting(self, msg: m.SetWaiting) -> _Outcome:
        if msg.topic is not None and self._conn.execute(
            "SELECT 1 FROM messages WHERE run_id=? AND topic=? AND taken_seq IS NULL LIMIT 1", (msg.run_id, msg.topic)
        ).fetchone():
            return ("event_ready", 0), None, None  # it came meanwhile: the run takes it instead
        cur = self._conn.execute(
            "UPDATE runs SET state='waiting', waiting_for=?, wake_at=?, updated_at=? "
            "WHERE id=? AND state='running' AND cancel_requested=0 AND owner=?",
            (msg.waiting_for, msg.wake_at, msg.at, msg.run_id, self._owner),
        )
        if cur.rowcount == 0:
            row = self._conn.execute("SELECT state, cancel_requested, owner FROM runs WHERE id=?", (msg.run_id,)).fetchone()
            if row is not None and row[0] == "running" and row[1] and row[2] == self._owner:
                return ("cancel_requested", 0), None, None
            return (None, 0), None, None
        self._event(msg.run_id, msg.at, "waiting", msg.waiting_for)
        watermark = self._conn.execute("SELECT COALESCE(max(id), 0) FROM messages WHERE run_id=?", (msg.run_id,)).fetchone()[0]
        change = {"state": "waiting", "waiting_for": msg.waiting_for, "wake_at": msg.wake_at}
        return ("waiting", watermark), (msg.run_id, change), None

    def _request_cancel(self, msg: m.RequestCancel) -> _Outcome:
        row = self._returning(
            "UPDATE runs SET cancel_requested=1, updated_at=?, "
            "state = CASE WHEN state IN ('pending','waiting') THEN 'cancelled' ELSE state END, "
            "completed_at = CASE WHEN state IN ('pending','waiting') THEN ? ELSE completed_at END "
            f"WHERE id=? AND state IN {_UNFINISHED_SQL} AND cancel_requested=0 RETURNING *",
            (msg.at, msg.at, msg.run_id),
        )
        if row is None:  # finished, or its cancellation was asked for before: this call changes nothing
            exists = self._conn.execute("SELECT 1 FROM runs WHERE id=?", (msg.run_id,)).fetchone()
            if exists is None:
                raise RunNotFound(msg.run_id)
            return False, None, None
        self._event(msg.run_id, msg.at, "cancel_requested")
        changes, tell = self._cascade(msg.run_id, msg.at, msg.notify)
        ended: tuple[str, ...] = ()
        if row["state"] == "cancelled":
            self._event(msg.run_id, msg.at, "cancelled")
            changes.insert(0, (msg.run_id, row))
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
        run_id = msg.run_id
        if msg.hook is not None:
            found = self._conn.execute(
                f"SELECT h.run_id FROM hooks h JOIN runs r ON r.id=h.run_id WHERE h.token=? AND r.state IN {_UNFINISHED_SQL}",
                (msg.hook,),
            ).fetchone()
            if found is None:
                raise HookNotFound(msg.hook)
            run_id = found[0]
        assert run_id is not None
        state = self._conn.execute("SELECT state FROM runs WHERE id=?", (run_id,)).fetchone()
        if state is None:
            raise RunNotFound(run_id)
        if state[0] not in UNFINISHED_NAMES:
            raise RunFinished(run_id, state[0])
        payload = self._seal(msg.payload, run_id, event_kind(msg.topic))  # signed here: a hook's run is found here
        cur = self._conn.execute(
            "INSERT INTO messages (run_id, topic, payload, sent_at) VALUES (?, ?, ?, ?)", (run_id, msg.topic, payload, msg.at)
        )
        tell = (msg.notify, m.EventArrived(run_id, msg.topic, cur.lastrowid or 0)) if msg.notify is not None else None
        return cur.lastrowid, None, tell

    def _take_event(self, msg: m.TakeEvent) -> _Outcome:
        row = self._conn.execute(
            "UPDATE messages SET taken_seq=?, taken_at=? WHERE id=(SELECT id FROM messages "
            "WHERE run_id=? AND topic=? AND taken_seq IS NULL ORDER BY id LIMIT 1) RETURNING payload",
            (msg.seq, msg.at, msg.run_id, msg.topic),
        ).fetchone()
        if row is None:
            return None, None, None
        if not self._upsert_step(msg.run_id, msg.seq, msg.name, "completed", result=row[0], attempts=1, completed_at=msg.at):
            raise RunFinished(msg.run_id, "finished")  # rolls the take back with the group's savepoint
        return (row[0],), None, None

    def _register_hook(self, msg: m.RegisterHook) -> _Outcome:
        mine = self._conn.execute(
            f"SELECT 1 FROM runs WHERE id=? AND state IN {_UNFINISHED_SQL} AND owner=?", (msg.run_id, self._owner)
        ).fetchone()
        if mine is None:
            raise RunFinished(msg.run_id, "finished or taken over")
        holder = self._conn.execute(
            f"SELECT h.run_id FROM hooks h JOIN runs r ON r.id=h.run_id WHERE h.token=? AND r.state IN {_UNFINISHED_SQL}",
            (msg.token,),
        ).fetchone()
        if holder is not None and holder[0] != msg.run_id:
            raise HookConflict(msg.token, holder[0])
        self._conn.execute("INSERT OR REPLACE INTO hooks (token, run_id, created_at) VALUES (?, ?, ?)", (msg.token, msg.run_id, msg.at))
        self._upsert_step(msg.run_id, msg.seq, "actorflow.hook", "completed", result=msg.result, attempts=1, completed_at=msg.at)
        return True, None, None

    def _write_chunk(self, msg: m.WriteChunk) -> _Outcome:
        row = self._conn.execute(
            "INSERT INTO chunks (run_id, namespace, idx, seq, data, closed, at) "
            "SELECT ?, ?, COALESCE((SELECT max(idx) + 1 FROM chunks WHERE run_id=? AND namespace=?), 0), ?, ?, ?, ? "
            f"WHERE EXISTS (SELECT 1 FROM runs WHERE id=? AND state IN {_UNFINISHED_SQL} AND owner=?) "
            "ON CONFLICT DO NOTHING RETURNING idx",
            (msg.run_id, msg.namespace, msg.run_id, msg.namespace, msg.seq, msg.data, int(msg.close), msg.at, msg.run_id,
             self._owner),  # fmt: skip
        ).fetchone()
        if row is None:
            return None, None, None
        self._upsert_step(msg.run_id, msg.seq, "actorflow.write", "completed", attempts=1, completed_at=msg.at)
        tell = (msg.notify, m.ChunkWritten(msg.run_id, msg.namespace, row[0])) if msg.notify is not None else None
        return row[0], None, tell

    # -- retention ---------------------------------------------------------------------

    def _purge(self, msg: m.Purge) -> _Outcome:
        states = tuple(s for s in msg.states if s in ("completed", "failed", "cancelled", "timed_out"))
        if not states:
            return 0, None, None
        marks = ",".join("?" * len(states))
        conn = self._conn
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (id TEXT PRIMARY KEY)")
        conn.execute("DELETE FROM doomed")
        # top-level runs (no parent, or a parent already gone) that match, and their subtrees;
        # of those, only the finished ones: an unfinished run is never purged
        conn.execute(
            "INSERT INTO doomed (id) "
            "WITH RECURSIVE tree(id) AS ("
            f"SELECT id FROM runs WHERE state IN ({marks}) AND completed_at < ? "
            "AND (parent_id IS NULL OR parent_id NOT IN (SELECT id FROM runs)) "
            "UNION ALL SELECT r.id FROM runs r JOIN tree t ON r.parent_id = t.id"
            f") SELECT id FROM tree WHERE id IN (SELECT id FROM runs WHERE state IN {_TERMINAL_SQL})",
            (*states, msg.before),
        )
        for table in ("steps", "messages", "chunks", "hooks"):
            conn.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT id FROM doomed)")  # noqa: S608 - fixed names
        # the newest event stays (see the schema): ids go on from it
        conn.execute("DELETE FROM events WHERE run_id IN (SELECT id FROM doomed) AND seq < (SELECT max(seq) FROM events)")
        deleted = conn.execute("DELETE FROM runs WHERE id IN (SELECT id FROM doomed)").rowcount
        conn.execute("DELETE FROM doomed")
        return deleted, None, None

    # -- ownership: leases, takeover, release -----------------------------------------------

    def _register_runtime(self, msg: m.RegisterRuntime) -> _Outcome:
        self._conn.execute(
            "INSERT OR REPLACE INTO runtimes (id, pid, host, started_at, heartbeat_at, lease_until) VALUES (?, ?, ?, ?, ?, ?)",
            (self._owner, os.getpid(), self._host, msg.at, msg.now, msg.lease_until),
        )
        return True, None, None

    def _renew_lease(self, msg: m.RenewLease) -> _Outcome:
        """Extend this runtime's lease; answers False if it had expired (its runs may be taken)."""
        row = self._conn.execute(
            "UPDATE runtimes SET lease_until=?, heartbeat_at=? WHERE id=? AND lease_until>=? RETURNING 1",
            (msg.lease_until, msg.now, self._owner, msg.now),
        ).fetchone()
        if row is None:  # expired (paused, or too slow): take part again, as a fresh lease
            self._register_runtime(m.RegisterRuntime(msg.now, msg.lease_until, now_iso()))
            return False, None, (msg.notify, m.LeaseLost()) if msg.notify is not None else None
        return True, None, None

    def _dead_runtimes(self, now: float) -> list[str]:
        """Runtimes whose lease has expired, or whose process on this host is gone."""
        dead = []
        for rid, pid, host, lease_until in self._conn.execute("SELECT id, pid, host, lease_until FROM runtimes WHERE id!=?", (self._owner,)):
            if lease_until is None or lease_until < now:
                dead.append(rid)
            elif host == self._host and pid is not None and not _process_alive(int(pid)):
                dead.append(rid)
        return dead

    def _claim_needed_safely(self, msg: m.ClaimOrphans) -> bool:
        try:
            return self._claim_needed(msg)
        except sqlite3.Error:  # let the claim itself try (and answer, whatever happens)
            return True

    def _claim_needed(self, msg: m.ClaimOrphans) -> bool:
        """Whether a claim may find anything (read only: no lock taken).

        It may answer True for pending runs that all belong to full queues; the claim then
        finds nothing, at the cost of one small write transaction.
        """
        if self._dead_runtimes(msg.now):
            return True
        orphan = "(owner IS NULL OR owner NOT IN (SELECT id FROM runtimes))"
        if self._conn.execute(f"SELECT 1 FROM runs WHERE state IN ('running','waiting') AND {orphan} LIMIT 1").fetchone():
            return True
        return msg.free > 0 and self._conn.execute(f"SELECT 1 FROM runs WHERE state='pending' AND {orphan} LIMIT 1").fetchone() is not None

    def _claim_orphans(self, msg: m.ClaimOrphans) -> _Outcome:
        """Take over runs whose runtime is gone, and claim pending runs for free slots.

        Answers the claimed rows (owner = this runtime). A run that was ``running`` under a
        runtime that died counts as a recovery.
        """
        conn = self._conn
        dead = self._dead_runtimes(msg.now)
        if dead:
            conn.executemany("DELETE FROM runtimes WHERE id=?", [(d,) for d in dead])
        live = "(SELECT id FROM runtimes)"
        claimed = fetch_all(
            conn,
            "UPDATE runs SET recoveries = recoveries + (state='running' AND owner IS NOT NULL), owner=?, updated_at=? "
            f"WHERE id IN (SELECT id FROM runs WHERE state IN ('running','waiting') AND (owner IS NULL OR owner NOT IN {live}) "
            "ORDER BY created_at LIMIT ?) RETURNING *",
            (self._owner, msg.at, msg.takeover_limit),
        )
        if msg.free > 0:
            busy: dict[str, int] = {}
            for queue in msg.queue_limits:
                busy[queue] = conn.execute(
                    "SELECT count(*) FROM runs WHERE queue=? AND (state='running' OR (state='pending' AND owner IS NOT NULL "
                    f"AND owner IN {live}))",
                    (queue,),
                ).fetchone()[0]
            full = [q for q, cap in msg.queue_limits.items() if busy[q] >= cap]
            # runs of full queues are left out of the candidates, so they cannot crowd out others
            skip = f"AND (queue IS NULL OR queue NOT IN ({','.join('?' * len(full))})) " if full else ""
            candidates = conn.execute(
                f"SELECT id, queue FROM runs WHERE state='pending' AND (owner IS NULL OR owner NOT IN {live}) {skip}"
                "ORDER BY priority DESC, created_at LIMIT ?",
                (*full, msg.free * 4),
            ).fetchall()
            taken = 0
            for run_id, queue in candidates:
                if taken >= msg.free:
                    break
                cap = msg.queue_limits.get(queue) if queue else None
                if cap is not None and busy[queue] >= cap:
                    continue
                row = self._returning(
                    f"UPDATE runs SET owner=?, updated_at=? WHERE id=? AND state='pending' AND (owner IS NULL OR owner NOT IN {live}) "
                    "RETURNING *",
                    (self._owner, msg.at, run_id),
                )
                if row is not None:
                    claimed.append(row)
                    taken += 1
                    if cap is not None:
                        busy[queue] += 1
        for row in claimed:
            if row["state"] != "pending":
                self._event(row["id"], msg.at, "taken_over", json.dumps({"by": self._owner}))
        tell = (msg.notify, m.Claimed(tuple(claimed))) if msg.notify is not None else None
        return len(claimed), None, tell

    def _requeue(self, msg: m.Requeue) -> _Outcome:
        """A waiting run of a named queue (woken, or taken over) waits for a slot again, as ``pending``."""
        at = now_iso()
        cur = self._conn.execute(
            "UPDATE runs SET state='pending', owner=NULL, waiting_for=NULL, wake_at=NULL, updated_at=? "
            "WHERE id=? AND state='waiting' AND owner=?",
            (at, msg.run_id, self._owner),
        )
        if cur.rowcount:
            self._event(msg.run_id, at, "requeued")
            return True, (msg.run_id, {"state": "pending"}), None
        return False, None, None

    def _release_all(self, msg: m.ReleaseAll) -> _Outcome:
        """At shutdown: give up every unfinished run this runtime holds, and its lease."""
        released = self._conn.execute(
            f"UPDATE runs SET owner=NULL WHERE owner=? AND state IN {_UNFINISHED_SQL}", (self._owner,)
        ).rowcount
        if not msg.keep_lease:
            self._conn.execute("DELETE FROM runtimes WHERE id=?", (self._owner,))
        return released, None, None


def host_identity() -> str:
    """This machine and process-id namespace: pids are comparable only between equal identities.

    The hostname alone is not enough: containers of one pod share it but not their pid
    namespace, and a machine that rebooted reuses pids.
    """
    parts = [socket.gethostname()]
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            parts.append(f.read().strip())
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        pass
    return "|".join(parts)


def _process_alive(pid: int) -> bool:
    """True if a process with this id runs on this host (stopped counts; a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc here: trust kill(0)
    return state not in ("Z", "X")
