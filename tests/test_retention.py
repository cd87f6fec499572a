"""Retention and shutdown: purging finished runs, the shutdown signal."""

from __future__ import annotations

import sqlite3
import threading

import pytest

import actorflow
from tests import flows
from tests.flows import arrived


def counts(path: str) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("runs", "steps", "history", "chunks")}


def test_purge_removes_finished_runs_with_their_children_and_nothing_else(rt: actorflow.Runtime) -> None:
    parent = rt.start(flows.fan_out, [1, 2, 3])
    assert parent.result(timeout=30) == 14
    failed = rt.start(flows.fail, "x")
    failed.wait(timeout=10)
    streamed = rt.start(flows.writes_then_closes)
    streamed.result(timeout=10)
    waiting = rt.start(flows.collect_events, "later", 1)
    assert rt.purge(older_than="1h") == 0  # nothing is that old
    assert rt.purge(states=["failed"]) == 1
    with pytest.raises(actorflow.RunNotFound):
        rt.status(failed.id)
    assert rt.purge() == 5  # the parent, its 3 children, the streaming run
    assert [s.id for s in rt.list_runs()] == [waiting.id]  # unfinished runs are never purged
    assert counts(rt.path) == {"runs": 1, "steps": 1, "history": 2, "chunks": 0}
    with pytest.raises(ValueError):
        rt.purge(states=["running"])
    waiting.send("later", "ok")
    assert waiting.result(timeout=10) == ["ok"]


def test_event_ids_go_on_after_a_purge_so_other_processes_miss_no_end(db_path: str) -> None:
    # other processes follow the events table from the last id they have seen: a purge that
    # emptied it must not let new events take ids already seen
    with actorflow.Runtime(db_path) as rt, actorflow.Runtime(db_path, concurrency=0) as client:
        first = rt.start(flows.add, 1, 1)
        assert client.get_run(first.id).result(timeout=10) == 2  # seen through the client's feed
        with sqlite3.connect(db_path) as conn:
            seen = conn.execute("SELECT max(seq) FROM history").fetchone()[0]
        assert rt.purge() == 1
        second = rt.start(flows.hold, "after-purge", "late")
        assert arrived("after-purge").wait(10)
        waiter = threading.Thread(target=lambda: results.append(client.get_run(second.id).result(timeout=10)))
        results: list[str] = []
        waiter.start()
        flows.gate("after-purge").set()
        waiter.join(timeout=15)
        assert results == ["late"]  # the client noticed the end through the feed
        with sqlite3.connect(db_path) as conn:
            ids = [r[0] for r in conn.execute("SELECT seq FROM history WHERE run_id=?", (second.id,))]
        assert ids and min(ids) > seen


def test_a_purged_journal_reuses_its_pages(db_path: str) -> None:
    with actorflow.Runtime(db_path) as rt:
        sizes = []
        for _ in range(4):
            for h in [rt.start(flows.two_steps, i) for i in range(300)]:
                h.result(timeout=30)
            assert rt.purge() == 300
            with sqlite3.connect(db_path) as conn:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                sizes.append(conn.execute("PRAGMA page_count").fetchone()[0])
    assert sizes[-1] <= sizes[1] * 1.1, sizes  # steady: freed pages are reused


def test_automatic_retention(db_path: str) -> None:
    with actorflow.Runtime(db_path, retention="1s") as rt:  # purged each second, once a second old
        run = rt.start(flows.add, 1, 2)
        assert run.result(timeout=10) == 3
        gone = threading.Event()
        for _ in range(500):  # the purge runs on the runtime's own timer: look until it has
            if not rt.list_runs():
                gone.set()
                break
            gone.wait(0.01)
        assert gone.is_set(), "the finished run was not purged after its retention"
    with pytest.raises(ValueError):
        actorflow.Runtime(db_path, retention="forever")


def test_flows_see_the_shutdown_signal(db_path: str) -> None:
    rt = actorflow.Runtime(db_path)
    run = rt.start(flows.notices_shutdown, "shutdown-signal")
    assert arrived("shutdown-signal").wait(10)
    rt.shutdown(timeout=10)
    with actorflow.inspect(db_path) as view:
        assert view.result(run.id) == "wrapped up for shutdown"
