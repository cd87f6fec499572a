"""The SQLite store: a journal in one SQLite file (WAL mode), and every SQL statement actorflow runs.

Tables, readable with the ``sqlite3`` shell:

``runs``
    one row per run: flow, arguments, state, result or error, progress, timestamps.
``history``
    an append-only log of every state transition of every run, and of every failed
    attempt of a step.
``events``
    the events sent to runs (``rt.send``, ``rt.resume_hook``) and which call took each.
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
``meta``
    the schema version and the fingerprint of the key the journal is signed with.
"""

from __future__ import annotations

import json
import logging
import operator
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import sqlite_utils

from ..errors import HookConflict, HookNotFound, JournalError, RunFinished, RunNotFound
from ..states import CANCELLED_AT_ONCE, TERMINAL_NAMES, UNFINISHED_NAMES, State, StepKind, sql_in
from . import RUN_INSERT_COLUMNS, ErrorKind, Feed, RunRow, StepRow, WaitAnswer, take_within_caps, walk_tree

__all__ = [
    "SCHEMA_VERSION",
    "Checkpointer",
    "SQLiteStore",
    "check_folder",
    "check_path",
    "check_writable",
    "connect",
    "connect_reader",
    "create_file",
    "fetch_all",
    "fetch_one",
    "host_identity",
    "process_alive",
    "recorded_key_check",
]

log = logging.getLogger("actorflow")

SCHEMA_VERSION = 2
_UNFINISHED_SQL = sql_in(UNFINISHED_NAMES)
_TERMINAL_SQL = sql_in(TERMINAL_NAMES)
_AT_ONCE_SQL = sql_in(CANCELLED_AT_ONCE)  # the rule: these are cancelled at once (see states.TRANSITIONS)
_HELD_SQL = sql_in((State.RUNNING, State.WAITING))  # states in which a run belongs to a runtime


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
    # schema 2 as first shipped called the history "events" and the sent events "messages"
    names = set(db.table_names())
    if "messages" in names and "history" not in names:
        conn.execute("ALTER TABLE events RENAME TO history")
        conn.execute("ALTER TABLE messages RENAME TO events")
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
            "wait_seq": int,
            "wait_kind": str,
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
        {"id": str, "pid": int, "host": str, "started_at": str, "heartbeat_at": float, "lease_until": float, "slots": int},
        pk="id",
        if_not_exists=True,
    )
    # columns added after schema 2 first shipped: a journal made before gets them
    for table, column, kind in (("runtimes", "slots", "INTEGER"), ("runs", "wait_seq", "INTEGER"), ("runs", "wait_kind", "TEXT")):
        if column not in {c.name for c in db.table(table).columns}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    # the change feed's tables: an id is never reused after a purge (other processes read
    # them from the last id they have seen). history, written with every run's start and end,
    # does without AUTOINCREMENT (which writes its counter's page at each insert): a purge
    # keeps its newest row, so a new id is always above every id seen
    conn.execute(
        "CREATE TABLE IF NOT EXISTS history (seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, "
        "at TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT)"
    )
    db.table("history").create_index(["run_id"], if_not_exists=True)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, "
        "topic TEXT NOT NULL, payload TEXT, sent_at TEXT NOT NULL, taken_seq INTEGER, taken_at TEXT)"
    )
    db.table("events").create_index(["run_id", "topic", "taken_seq"], if_not_exists=True)
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


def fetch_all(conn: sqlite3.Connection, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
    """Rows of a query (or of an ``UPDATE ... RETURNING``) as dicts of column values."""
    cur = conn.execute(sql, tuple(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def fetch_one(conn: sqlite3.Connection, sql: str, params: Iterable[Any] = ()) -> dict[str, Any] | None:
    """The first row of a query as a dict, or None."""
    rows = fetch_all(conn, sql, params)
    return rows[0] if rows else None


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


def process_alive(pid: int) -> bool:
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


# ---------------------------------------------------------------------------- the store

_RUN_COLUMNS = RUN_INSERT_COLUMNS
_INSERT_RUN = (
    f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join('?' * len(_RUN_COLUMNS))}) "
    "ON CONFLICT DO NOTHING"
)
_run_values = operator.itemgetter(*_RUN_COLUMNS)
_INSERT_EVENT = "INSERT INTO history (run_id, at, kind, detail) VALUES (?, ?, ?, ?)"
_INSERT_TWO_EVENTS = "INSERT INTO history (run_id, at, kind, detail) VALUES (?, ?, ?, ?), (?, ?, ?, ?)"
_UPSERT_STEP = (
    "INSERT INTO steps (run_id, seq, name, state, result, error, attempts, started_at, completed_at, retry_at) "
    "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
    f"WHERE EXISTS (SELECT 1 FROM runs WHERE id=? AND state IN {_UNFINISHED_SQL} AND owner=?) "
    "ON CONFLICT (run_id, seq) DO UPDATE SET name=excluded.name, state=excluded.state, "
    "result=excluded.result, error=COALESCE(excluded.error, steps.error), attempts=excluded.attempts, "
    "started_at=COALESCE(excluded.started_at, steps.started_at), completed_at=excluded.completed_at, "
    "retry_at=excluded.retry_at"
)
_CANCEL_CHILDREN = (
    "UPDATE runs SET cancel_requested=1, updated_at=:at, "
    f"state = CASE WHEN state IN {_AT_ONCE_SQL} THEN 'cancelled' ELSE state END, "
    f"completed_at = CASE WHEN state IN {_AT_ONCE_SQL} THEN :at ELSE completed_at END "
    f"WHERE state IN {_UNFINISHED_SQL} AND id IN ("
    "WITH RECURSIVE sub(id) AS ("
    "SELECT id FROM runs WHERE parent_id=:parent AND detached=0 "
    "UNION ALL SELECT r.id FROM runs r JOIN sub ON r.parent_id=sub.id WHERE r.detached=0"
    ") SELECT id FROM sub) RETURNING id, state"
)


# SQLite's primary result codes: https://www.sqlite.org/rescode.html
_BUSY_CODES = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED: another connection holds a lock
# READONLY, IOERR, FULL, CANTOPEN: about the file, the whole group fails and is retried. A
# corrupt page (CORRUPT, NOTADB) fails the operation that met it, so that the others still commit
_FILE_CODES = frozenset({8, 10, 13, 14})


def _is_busy(exc: BaseException) -> bool:
    """True for SQLite's "database is locked" / "busy": another connection holds a lock."""
    text = str(exc)
    return "locked" in text or "busy" in text


class SQLiteStore:
    """A journal in a SQLite file (see :class:`actorflow.store.Store` for the operations).

    Args:
        conn: a connection from :func:`connect` (writes) or :func:`connect_reader` (reads only).
        runtime: the id of the runtime whose writes this store makes (its fence), or None
            for a store that only reads.
    """

    def __init__(self, conn: sqlite3.Connection, runtime: str | None = None, path: str = "") -> None:
        self.conn = conn
        self.runtime = runtime
        self.path = path
        self._commits = 0
        self._checkpointer: Checkpointer | None = None

    @classmethod
    def writer(cls, conn: sqlite3.Connection, path: str, runtime: str) -> SQLiteStore:
        """The store of a runtime's journal actor: it takes over checkpointing the WAL from SQLite.

        SQLite's automatic checkpoint runs inside whichever commit crosses the threshold and
        makes that commit (and every start waiting on it) take milliseconds; instead a
        :class:`Checkpointer` thread copies the WAL back every 64 commits.
        """
        store = cls(conn, runtime, path)
        conn.execute("PRAGMA wal_autocheckpoint=0")
        store._checkpointer = Checkpointer(path)
        return store

    # -- transactions ------------------------------------------------------------------

    def begin(self) -> None:
        """Begin a write transaction (``BEGIN IMMEDIATE``: the write lock at once)."""
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        """Commit (and, every 64 commits, have the WAL copied back to the file)."""
        self.conn.execute("COMMIT")
        self._commits += 1
        if self._commits % 64 == 0 and self._checkpointer is not None:
            self._checkpointer.request()

    def rollback(self) -> None:
        """Undo the open transaction, if any."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def savepoint(self) -> None:
        """Mark a point to return to."""
        self.conn.execute("SAVEPOINT op")

    def release_savepoint(self) -> None:
        """Keep what was written since the savepoint."""
        self.conn.execute("RELEASE op")

    def rollback_savepoint(self) -> None:
        """Undo what was written since the savepoint."""
        self.conn.execute("ROLLBACK TO op")
        self.conn.execute("RELEASE op")

    def classify(self, error: BaseException) -> ErrorKind | None:
        """BUSY for a lock, FILE for errors about the file, STATEMENT for other SQLite errors.

        By SQLite's result code (its primary code: the low byte of an extended one); by the
        message only where an error carries no code.
        """
        if not isinstance(error, sqlite3.Error):
            return None
        code = getattr(error, "sqlite_errorcode", None)
        if code is not None:
            primary = code & 0xFF
            if primary in _BUSY_CODES:
                return ErrorKind.BUSY
            if primary in _FILE_CODES:
                return ErrorKind.FILE
            return ErrorKind.STATEMENT
        if _is_busy(error):
            return ErrorKind.BUSY
        if isinstance(error, sqlite3.OperationalError) and any(
            word in str(error) for word in ("readonly", "disk", "full", "I/O", "unable to open")
        ):
            return ErrorKind.FILE
        return ErrorKind.STATEMENT

    def describe(self, error: BaseException) -> str:
        """A message for a store error: which case it is and what to do."""
        return _describe(self.path, error)

    def close(self) -> None:
        """Close the connection (a writer first checkpoints the WAL into the file)."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
            try:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # a reader in another process holds the WAL: fine
                log.debug("final checkpoint skipped: %s", exc)
        self.conn.close()

    def _one(self, sql: str, params: Iterable[Any]) -> dict[str, Any] | None:
        return fetch_one(self.conn, sql, params)

    # -- runs --------------------------------------------------------------------------

    def insert_run(self, row: RunRow) -> str | None:
        """Insert a run; None, or the id of the run with this id or idempotency key."""
        conn = self.conn
        cur = conn.execute(_INSERT_RUN, _run_values(row))
        if cur.rowcount == 0:  # same id (a replayed child start) or same idempotency key
            existing = conn.execute(
                "SELECT id FROM runs WHERE id=? OR idempotency_key=?", (row["id"], row["idempotency_key"])
            ).fetchone()
            return str(existing[0])
        detail = row["parent_id"] and json.dumps({"parent_id": row["parent_id"]})
        if row["state"] == "running":  # admitted at once: created and started in one statement
            conn.execute(_INSERT_TWO_EVENTS, (row["id"], row["created_at"], "created", detail,
                                              row["id"], row["created_at"], "started", '{"attempt":1}'))  # fmt: skip
        else:
            conn.execute(_INSERT_EVENT, (row["id"], row["created_at"], "created", detail))
        return None

    def claim_run(self, run_id: str, at: str, deadline: str | None) -> tuple[RunRow, list[StepRow]] | None:
        """Start a run for this runtime: the fence keeps a run another runtime holds."""
        row = self._one(
            "UPDATE runs SET state='running', attempt=attempt+1, "
            "waiting_for=NULL, wake_at=NULL, wait_seq=NULL, wait_kind=NULL, "
            "started_at=?, owner=?, deadline=COALESCE(deadline, ?), updated_at=? "
            f"WHERE id=? AND state IN {_UNFINISHED_SQL} AND (owner IS NULL OR owner=?) RETURNING *",
            (at, self.runtime, deadline, at, run_id, self.runtime),
        )
        if row is None:
            return None
        self.add_history(run_id, at, "started", json.dumps({"attempt": row["attempt"], "recoveries": row["recoveries"]}))
        return cast(RunRow, row), self.steps(run_id)

    def finish_run(self, run_id: str, state: str, at: str, result: Any, error: str | None) -> RunRow | None:
        """End a run this runtime holds; None if it had ended or is held by another."""
        overridable = state in ("completed", "failed")
        final = self._one(
            "UPDATE runs SET "
            "state = CASE WHEN cancel_requested=1 AND ? THEN 'cancelled' ELSE ? END, "
            "result = CASE WHEN cancel_requested=1 AND ? THEN NULL ELSE ? END, "
            "error = CASE WHEN cancel_requested=1 AND ? THEN NULL ELSE ? END, "
            f"completed_at=?, updated_at=? WHERE id=? AND state IN {_UNFINISHED_SQL} AND owner=? RETURNING *",
            (overridable, state, overridable, result, overridable, error, at, at, run_id, self.runtime),
        )
        if final is None:
            return None
        self.conn.execute(_INSERT_EVENT, (run_id, at, final["state"], None))
        return cast(RunRow, final)

    def retry_run(self, run_id: str, at: str, summary: str, delay: float) -> int | None:
        """Count a flow retry; the new attempt, or None."""
        row = self._one(
            f"UPDATE runs SET attempt=attempt+1, flow_retries=flow_retries+1, updated_at=? WHERE id=? "
            f"AND state IN {_UNFINISHED_SQL} AND owner=? RETURNING attempt",
            (at, run_id, self.runtime),
        )
        if row is None:
            return None
        # the new attempt runs the failed calls again; completed ones are replayed
        self.conn.execute("DELETE FROM steps WHERE run_id=? AND state!='completed'", (run_id,))
        self.add_history(run_id, at, "retry", json.dumps({"attempt": row["attempt"], "error": summary, "delay": delay}))
        return int(row["attempt"])

    def release_run(self, run_id: str, runtime: str) -> None:
        """Give up a run ``runtime`` holds."""
        self.conn.execute(f"UPDATE runs SET owner=NULL WHERE id=? AND owner=? AND state IN {_UNFINISHED_SQL}", (run_id, runtime))

    def save_progress(self, run_id: str, progress: Any, at: str) -> bool:
        """Store a run's progress."""
        cur = self.conn.execute(
            f"UPDATE runs SET progress=?, updated_at=? WHERE id=? AND state IN {_UNFINISHED_SQL} AND owner=?",
            (progress, at, run_id, self.runtime),
        )
        return cur.rowcount > 0

    def request_cancel(self, run_id: str, at: str) -> RunRow | None:
        """Accept a cancellation (pending and waiting runs end at once)."""
        row = self._one(
            "UPDATE runs SET cancel_requested=1, updated_at=?, "
            f"state = CASE WHEN state IN {_AT_ONCE_SQL} THEN 'cancelled' ELSE state END, "
            f"completed_at = CASE WHEN state IN {_AT_ONCE_SQL} THEN ? ELSE completed_at END "
            f"WHERE id=? AND state IN {_UNFINISHED_SQL} AND cancel_requested=0 RETURNING *",
            (at, at, run_id),
        )
        if row is None:  # finished, or its cancellation was asked for before
            if self.conn.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone() is None:
                raise RunNotFound(run_id)
            return None
        self.add_history(run_id, at, "cancel_requested")
        if row["state"] == "cancelled":
            self.add_history(run_id, at, "cancelled")
        return cast(RunRow, row)

    def cancel_children(self, parent_id: str, at: str) -> list[tuple[str, str]]:
        """Cancel the unfinished, not detached descendants of ``parent_id``."""
        rows = self.conn.execute(_CANCEL_CHILDREN, {"at": at, "parent": parent_id}).fetchall()
        for run_id, state in rows:
            self.add_history(run_id, at, "cancel_requested", json.dumps({"by": parent_id}))
            if state == "cancelled":
                self.add_history(run_id, at, "cancelled")
        return [(str(r), str(s)) for r, s in rows]

    def set_waiting(self, run_id: str, waiting_for: str, wake_at: str | None, at: str, topic: str | None,
                    wait: int | None = None, kind: str | None = None) -> tuple[WaitAnswer, int]:  # fmt: skip
        """Make a running run ``waiting``."""
        conn = self.conn
        if topic is not None and conn.execute(
            "SELECT 1 FROM events WHERE run_id=? AND topic=? AND taken_seq IS NULL LIMIT 1", (run_id, topic)
        ).fetchone():
            return WaitAnswer.EVENT_READY, 0  # it came meanwhile: the run takes it instead
        cur = conn.execute(
            "UPDATE runs SET state='waiting', waiting_for=?, wake_at=?, wait_seq=?, wait_kind=?, updated_at=? "
            "WHERE id=? AND state='running' AND cancel_requested=0 AND owner=?",
            (waiting_for, wake_at, wait, kind, at, run_id, self.runtime),
        )
        if cur.rowcount == 0:
            row = conn.execute("SELECT state, cancel_requested, owner FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is not None and row[0] == "running" and row[1] and row[2] == self.runtime:
                return WaitAnswer.CANCEL_REQUESTED, 0
            return WaitAnswer.GONE, 0
        self.add_history(run_id, at, "waiting", waiting_for)
        watermark = conn.execute("SELECT COALESCE(max(id), 0) FROM events WHERE run_id=?", (run_id,)).fetchone()[0]
        return WaitAnswer.WAITING, int(watermark)

    def requeue(self, run_id: str, at: str) -> bool:
        """A waiting run of a named queue waits for a slot again, as ``pending``."""
        cur = self.conn.execute(
            "UPDATE runs SET state='pending', owner=NULL, waiting_for=NULL, wake_at=NULL, wait_seq=NULL, wait_kind=NULL, "
            "updated_at=? "
            "WHERE id=? AND state='waiting' AND owner=?",
            (at, run_id, self.runtime),
        )
        if cur.rowcount:
            self.add_history(run_id, at, "requeued")
            return True
        return False

    # -- steps -------------------------------------------------------------------------

    def save_step(self, step: StepRow) -> bool:
        """Insert or update a step of a run this runtime holds."""
        return self.put_step(step["run_id"], step["seq"], step["name"], step["state"], step.get("result"), step.get("error"),
                             step.get("attempts", 0), step.get("started_at"), step.get("completed_at"), step.get("retry_at"))  # fmt: skip

    def put_step(self, run_id: str, seq: int, name: str, state: str, result: Any = None, error: str | None = None,
                 attempts: int = 0, started_at: str | None = None, completed_at: str | None = None,
                 retry_at: str | None = None) -> bool:  # fmt: skip
        """:meth:`save_step` with the columns as arguments (the journal's hot path: no dict to build)."""
        cur = self.conn.execute(
            _UPSERT_STEP,
            (run_id, seq, name, state, result, error, attempts, started_at, completed_at, retry_at, run_id, self.runtime),
        )
        return cur.rowcount > 0

    def add_history(self, run_id: str, at: str, kind: str, detail: str | None = None) -> None:
        """Append to a run's history."""
        self.conn.execute(_INSERT_EVENT, (run_id, at, kind, detail))

    # -- events, hooks, streams --------------------------------------------------------

    def event_target(self, run_id: str | None, hook: str | None) -> str:
        """The unfinished run an event goes to."""
        conn = self.conn
        if hook is not None:
            found = conn.execute(
                f"SELECT h.run_id FROM hooks h JOIN runs r ON r.id=h.run_id WHERE h.token=? AND r.state IN {_UNFINISHED_SQL}",
                (hook,),
            ).fetchone()
            if found is None:
                raise HookNotFound(hook)
            run_id = found[0]
        assert run_id is not None
        state = conn.execute("SELECT state FROM runs WHERE id=?", (run_id,)).fetchone()
        if state is None:
            raise RunNotFound(run_id)
        if state[0] not in UNFINISHED_NAMES:
            raise RunFinished(run_id, state[0])
        return run_id

    def insert_event(self, run_id: str, topic: str, payload: Callable[[int], Any], at: str) -> int:
        """Queue an event for a run; ``payload(event_id)`` gives the stored payload (signed with its id)."""
        cur = self.conn.execute(
            "INSERT INTO events (run_id, topic, payload, sent_at) VALUES (?, ?, NULL, ?)", (run_id, topic, at)
        )
        event_id = int(cur.lastrowid or 0)
        self.conn.execute("UPDATE events SET payload=? WHERE id=?", (payload(event_id), event_id))
        return event_id

    def take_event(self, run_id: str, topic: str, seq: int, at: str) -> tuple[int, Any] | None:
        """Mark the oldest queued event of ``topic`` as taken by step ``seq``; ``(event id, payload)`` or None."""
        row = self.conn.execute(
            "UPDATE events SET taken_seq=?, taken_at=? WHERE id=(SELECT id FROM events "
            "WHERE run_id=? AND topic=? AND taken_seq IS NULL ORDER BY id LIMIT 1) RETURNING id, payload",
            (seq, at, run_id, topic),
        ).fetchone()
        return None if row is None else (int(row[0]), row[1])

    def register_hook(self, run_id: str, token: str, seq: int, at: str, result: Any) -> None:
        """Give a run a hook token, checkpointed as step ``seq``."""
        conn = self.conn
        mine = conn.execute(
            f"SELECT 1 FROM runs WHERE id=? AND state IN {_UNFINISHED_SQL} AND owner=?", (run_id, self.runtime)
        ).fetchone()
        if mine is None:
            raise RunFinished(run_id, "finished or taken over")
        holder = conn.execute(
            f"SELECT h.run_id FROM hooks h JOIN runs r ON r.id=h.run_id WHERE h.token=? AND r.state IN {_UNFINISHED_SQL}",
            (token,),
        ).fetchone()
        if holder is not None and holder[0] != run_id:
            raise HookConflict(token, holder[0])
        conn.execute("INSERT OR REPLACE INTO hooks (token, run_id, created_at) VALUES (?, ?, ?)", (token, run_id, at))
        self.save_step({"run_id": run_id, "seq": seq, "name": StepKind.HOOK, "state": "completed", "result": result,
                        "attempts": 1, "completed_at": at})  # fmt: skip

    def write_chunk(self, run_id: str, namespace: str, seq: int, data: Any, close: bool, at: str, result: Any = None) -> int | None:
        """Append to a run's stream."""
        row = self.conn.execute(
            "INSERT INTO chunks (run_id, namespace, idx, seq, data, closed, at) "
            "SELECT ?, ?, COALESCE((SELECT max(idx) + 1 FROM chunks WHERE run_id=? AND namespace=?), 0), ?, ?, ?, ? "
            f"WHERE EXISTS (SELECT 1 FROM runs WHERE id=? AND state IN {_UNFINISHED_SQL} AND owner=?) "
            "ON CONFLICT DO NOTHING RETURNING idx",
            (run_id, namespace, run_id, namespace, seq, data, int(close), at, run_id, self.runtime),
        ).fetchone()
        if row is None:
            return None
        self.save_step({"run_id": run_id, "seq": seq, "name": StepKind.WRITE, "state": "completed", "result": result,
                        "attempts": 1, "completed_at": at})  # fmt: skip
        return int(row[0])

    # -- retention ---------------------------------------------------------------------

    def purge(self, states: Sequence[str], before: str) -> int:
        """Delete finished runs, their descendants and their records."""
        states = tuple(s for s in states if s in TERMINAL_NAMES)
        if not states:
            return 0
        marks = ",".join("?" * len(states))
        conn = self.conn
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
            (*states, before),
        )
        for table in ("steps", "events", "chunks", "hooks"):
            conn.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT id FROM doomed)")
        # the newest history entry stays (see the schema): ids go on from it
        conn.execute("DELETE FROM history WHERE run_id IN (SELECT id FROM doomed) AND seq < (SELECT max(seq) FROM history)")
        deleted = conn.execute("DELETE FROM runs WHERE id IN (SELECT id FROM doomed)").rowcount
        conn.execute("DELETE FROM doomed")
        return int(deleted)

    # -- runtimes and leases -----------------------------------------------------------

    def register_runtime(self, pid: int, host: str, at: str, now: float, lease_until: float, slots: int = 0) -> None:
        """Record this runtime, its lease and how many runs it executes at once."""
        self.conn.execute(
            "INSERT OR REPLACE INTO runtimes (id, pid, host, started_at, heartbeat_at, lease_until, slots) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (self.runtime, pid, host, at, now, lease_until, slots),
        )

    def executors(self, now: float, besides: str) -> int:
        """How many live runtimes other than ``besides`` execute runs (have slots)."""
        row = self.conn.execute(
            "SELECT count(*) FROM runtimes WHERE id!=? AND COALESCE(slots, 0) > 0 AND lease_until >= ?", (besides, now)
        ).fetchone()
        return int(row[0])

    def renew_lease(self, now: float, lease_until: float) -> bool:
        """Extend this runtime's lease; False if it had expired."""
        row = self.conn.execute(
            "UPDATE runtimes SET lease_until=?, heartbeat_at=? WHERE id=? AND lease_until>=? RETURNING 1",
            (lease_until, now, self.runtime, now),
        ).fetchone()
        return row is not None

    def dead_runtimes(self, now: float, host: str, alive: Callable[[int], bool]) -> list[str]:
        """Runtimes whose lease has expired, or whose process on this host is gone."""
        dead = []
        for rid, pid, rhost, lease_until in self.conn.execute(
            "SELECT id, pid, host, lease_until FROM runtimes WHERE id!=?", (self.runtime,)
        ):
            if lease_until is None or lease_until < now:
                dead.append(rid)
            elif rhost == host and pid is not None and not alive(int(pid)):
                dead.append(rid)
        return dead

    def claim_needed(self, now: float, free: int, host: str, alive: Callable[[int], bool]) -> bool:
        """Whether a claim may find anything (read only: no lock taken).

        It may answer True for pending runs that all belong to full queues; the claim then
        finds nothing, at the cost of one small write transaction.
        """
        if self.dead_runtimes(now, host, alive):
            return True
        orphan = "(owner IS NULL OR owner NOT IN (SELECT id FROM runtimes))"
        if self.conn.execute(f"SELECT 1 FROM runs WHERE state IN {_HELD_SQL} AND {orphan} LIMIT 1").fetchone():
            return True
        return free > 0 and self.conn.execute(f"SELECT 1 FROM runs WHERE state='pending' AND {orphan} LIMIT 1").fetchone() is not None

    def claim(self, now: float, at: str, free: int, takeover_limit: int, queue_limits: Mapping[str, int], host: str,
              alive: Callable[[int], bool]) -> list[RunRow]:  # fmt: skip
        """Take over runs whose runtime is gone, and claim pending runs for free slots.

        A run that was ``running`` under a runtime that died counts as a recovery.
        """
        conn = self.conn
        dead = self.dead_runtimes(now, host, alive)
        if dead:
            conn.executemany("DELETE FROM runtimes WHERE id=?", [(d,) for d in dead])
        live = "(SELECT id FROM runtimes)"
        claimed = fetch_all(
            conn,
            "UPDATE runs SET recoveries = recoveries + (state='running' AND owner IS NOT NULL), owner=?, updated_at=? "
            f"WHERE id IN (SELECT id FROM runs WHERE state IN {_HELD_SQL} AND (owner IS NULL OR owner NOT IN {live}) "
            "ORDER BY created_at LIMIT ?) RETURNING *",
            (self.runtime, at, takeover_limit),
        )
        if free > 0:
            busy: dict[str, int] = {}
            for queue in queue_limits:
                busy[queue] = conn.execute(
                    "SELECT count(*) FROM runs WHERE queue=? AND (state='running' OR (state='pending' AND owner IS NOT NULL "
                    f"AND owner IN {live}))",
                    (queue,),
                ).fetchone()[0]
            full = [q for q, cap in queue_limits.items() if busy[q] >= cap]
            # runs of full queues are left out of the candidates, so they cannot crowd out others
            skip = f"AND (queue IS NULL OR queue NOT IN ({','.join('?' * len(full))})) " if full else ""
            candidates = conn.execute(
                f"SELECT id, queue FROM runs WHERE state='pending' AND (owner IS NULL OR owner NOT IN {live}) {skip}"
                "ORDER BY priority DESC, created_at LIMIT ?",
                (*full, free * 4),
            ).fetchall()

            def take(candidate: tuple[str, str | None]) -> dict[str, Any] | None:
                return self._one(
                    f"UPDATE runs SET owner=?, updated_at=? WHERE id=? AND state='pending' AND (owner IS NULL OR owner NOT IN {live}) "
                    "RETURNING *",
                    (self.runtime, at, candidate[0]),
                )

            claimed += take_within_caps(candidates, lambda c: c[1], free, queue_limits, busy, take)
        for row in claimed:
            if row["state"] != "pending":
                self.add_history(row["id"], at, "taken_over", json.dumps({"by": self.runtime}))
        return cast(list[RunRow], claimed)

    def release_all(self, keep_lease: bool) -> int:
        """Give up every unfinished run this runtime holds, and its lease unless kept."""
        released = self.conn.execute(
            f"UPDATE runs SET owner=NULL WHERE owner=? AND state IN {_UNFINISHED_SQL}", (self.runtime,)
        ).rowcount
        if not keep_lease:
            self.conn.execute("DELETE FROM runtimes WHERE id=?", (self.runtime,))
        return int(released)

    # -- reads -------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRow | None:
        """A run's row."""
        return cast("RunRow | None", self._one("SELECT * FROM runs WHERE id=?", (run_id,)))

    def list_runs(self, *, state: str | None = None, flow: str | None = None, parent_id: str | None = None,
                  limit: int = 100) -> list[RunRow]:  # fmt: skip
        """Runs matching the filters, newest first."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("state", state), ("flow", flow), ("parent_id", parent_id)):
            if value is not None:
                where.append(f"{column}=?")
                params.append(value)
        sql = "SELECT * FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        params.append(limit)
        return cast(list[RunRow], fetch_all(self.conn, sql, params))

    def count_by_state(self) -> dict[str, int]:
        """Number of runs in each state."""
        return {state: n for state, n in self.conn.execute("SELECT state, count(*) FROM runs GROUP BY state")}

    def tree(self, run_id: str) -> list[tuple[int, RunRow]]:
        """A run and its descendants as ``(depth, row)``, depth first, children by creation."""
        sql = "SELECT * FROM runs WHERE parent_id=? ORDER BY created_at, id"
        return walk_tree(self.get_run(run_id), lambda parent: cast(list[RunRow], fetch_all(self.conn, sql, (parent,))))

    def steps(self, run_id: str) -> list[StepRow]:
        """A run's steps, in call order."""
        return cast(list[StepRow], fetch_all(self.conn, "SELECT * FROM steps WHERE run_id=? ORDER BY seq", (run_id,)))

    def chunks(self, run_id: str, namespace: str, start: int, limit: int) -> list[tuple[int, Any, int, int]]:
        """``(index, data, closed, seq)`` of a stream's chunks from ``start``, in order."""
        return [
            (r[0], r[1], r[2], r[3])
            for r in self.conn.execute(
                "SELECT idx, data, closed, seq FROM chunks WHERE run_id=? AND namespace=? AND idx>=? ORDER BY idx LIMIT ?",
                (run_id, namespace, start, limit),
            )
        ]

    def history(self, run_id: str) -> list[tuple[str, str, str | None]]:
        """The ``(at, kind, detail)`` entries of a run's history, oldest first."""
        return [(r[0], r[1], r[2]) for r in self.conn.execute("SELECT at, kind, detail FROM history WHERE run_id=? ORDER BY seq", (run_id,))]

    def key_check(self) -> str | None:
        """The fingerprint of the journal's key, if recorded."""
        row = self.conn.execute("SELECT value FROM meta WHERE key='key_check'").fetchone()
        return str(row[0]) if row else None

    def feed_marks(self) -> tuple[int, int, int]:
        """Where the change feed stands now."""
        conn = self.conn
        return (
            int(conn.execute("SELECT COALESCE(max(seq), 0) FROM history").fetchone()[0]),
            int(conn.execute("SELECT COALESCE(max(id), 0) FROM events").fetchone()[0]),
            int(conn.execute("SELECT COALESCE(max(id), 0) FROM chunks").fetchone()[0]),
        )

    def feed_since(self, marks: tuple[int, int, int]) -> tuple[Feed, tuple[int, int, int]]:
        """What was committed after ``marks`` (runs ended and cancelled, events sent, chunks written)."""
        conn = self.conn
        seen_event, seen_message, seen_chunk = marks
        feed: Feed = {"ended": [], "cancelled": [], "events": [], "chunks": []}
        last = conn.execute("SELECT COALESCE(max(seq), 0) FROM history").fetchone()[0]
        for run_id, kind in conn.execute(
            "SELECT run_id, kind FROM history WHERE seq > ? AND seq <= ? AND kind IN "
            f"({','.join(repr(k) for k in sorted(TERMINAL_NAMES))}, 'cancel_requested') ORDER BY seq",
            (seen_event, last),
        ).fetchall():
            (feed["ended"] if kind in TERMINAL_NAMES else feed["cancelled"]).append(run_id)
        for mid, run_id, topic in conn.execute(
            "SELECT id, run_id, topic FROM events WHERE id > ? ORDER BY id", (seen_message,)
        ).fetchall():
            seen_message = mid
            feed["events"].append((run_id, topic, mid))
        for rowid, run_id, namespace, idx in conn.execute(
            "SELECT id, run_id, namespace, idx FROM chunks WHERE id > ? ORDER BY id", (seen_chunk,)
        ).fetchall():
            seen_chunk = rowid
            feed["chunks"].append((run_id, namespace, idx))
        return feed, (int(last), int(seen_message), int(seen_chunk))
