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
