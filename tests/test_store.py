"""The store contract (tests/store_contract.py) on every store: SQLite and memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from actorflow.store import Store
from actorflow.store.memory import MemoryStore
from actorflow.store.sqlite import SQLiteStore, connect
from tests.store_contract import StoreContract, Stores


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def stores(self, tmp_path: Path) -> Iterator[Stores]:
        path = str(tmp_path / "journal.db")
        made: list[SQLiteStore] = []

        def make(runtime: str | None) -> Store:
            store = SQLiteStore(connect(path, busy_timeout=5.0), runtime, path)
            made.append(store)
            return store

        yield make
        for store in made:
            store.close()


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def stores(self) -> Stores:
        first = MemoryStore()
        return lambda runtime: first.sharing(runtime)


def test_sqlite_errors_are_classified_by_their_result_codes(tmp_path: Path) -> None:
    import sqlite3

    from actorflow.store import ErrorKind

    path = str(tmp_path / "x.db")
    holder = sqlite3.connect(path, isolation_level=None, timeout=0.01)
    other = sqlite3.connect(path, isolation_level=None, timeout=0.01)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    store = SQLiteStore(other, "rt", path)
    with pytest.raises(sqlite3.OperationalError) as busy:
        other.execute("BEGIN IMMEDIATE")
    assert store.classify(busy.value) is ErrorKind.BUSY
    holder.execute("ROLLBACK")
    with pytest.raises(sqlite3.OperationalError) as statement:
        other.execute("INSERT INTO nope VALUES (1)")
    assert store.classify(statement.value) is ErrorKind.STATEMENT
    reader = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as readonly:
        reader.execute("INSERT INTO t VALUES (1)")
    assert store.classify(readonly.value) is ErrorKind.FILE
    assert store.classify(ValueError("not a store error")) is None
    for conn in (holder, other, reader):
        conn.close()


def test_a_journal_from_before_the_slots_column_gets_it(tmp_path: Path) -> None:
    import sqlite3

    path = str(tmp_path / "old.db")
    connect(path, busy_timeout=5.0).close()
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE runtimes DROP COLUMN slots")
    store = SQLiteStore(connect(path, busy_timeout=5.0), "rt_a", path)
    store.begin()
    store.register_runtime(1, "h", "2026-01-01T00:00:00.000000+00:00", 1.0, 100.0, 4)
    store.commit()
    assert store.executors(2.0, "rt_other") == 1
    store.close()


def test_a_journal_with_the_tables_first_named_events_and_messages_is_renamed_at_open(tmp_path: Path) -> None:
    import sqlite3

    path = str(tmp_path / "old-names.db")
    connect(path, busy_timeout=5.0).close()
    with sqlite3.connect(path) as conn:  # as schema 2 first shipped: events = history, messages = sent events
        conn.execute("ALTER TABLE events RENAME TO messages")
        conn.execute("ALTER TABLE history RENAME TO events")
        conn.execute("INSERT INTO events (run_id, at, kind, detail) VALUES ('r', 'at', 'created', NULL)")
    store = SQLiteStore(connect(path, busy_timeout=5.0), "rt_a", path)
    assert store.history("r") == [("at", "created", None)]
    assert {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")} >= {"history", "events"}
    store.close()
