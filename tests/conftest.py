"""Fixtures: a runtime on a fresh journal per test, stopped (and checked) after it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import actorflow
from actorflow.testing import no_leftover_actors
from tests.helpers import kill_children


def actorflow_threads() -> list[threading.Thread]:
    """Threads actorflow started that are still alive."""
    names = ("Registry-", "Journal-", "Supervisor-", "Execution-", "actorflow-")
    return [t for t in threading.enumerate() if t.name.startswith(names)]


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "journal.db")


@pytest.fixture
def rt(db_path: str) -> Iterator[actorflow.Runtime]:
    runtime = actorflow.Runtime(db_path)
    try:
        yield runtime
    finally:
        runtime.shutdown(timeout=5)


@pytest.fixture(autouse=True)
def _no_actor_left() -> Iterator[None]:
    from tests import flows

    flows.gates.clear()  # every test starts with closed gates and zeroed counters
    flows.reached.clear()
    flows.calls.clear()
    try:
        with no_leftover_actors():
            yield
    finally:
        kill_children()
