"""The contract every store passes (huey's ``StorageTests`` is the model).

A store's test module subclasses :class:`StoreContract` and gives it a ``stores`` fixture: a
function ``stores(runtime)`` that returns a store on one shared journal writing for that
runtime (or for none). The tests use plain values only, as the journal actor does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from actorflow.errors import HookConflict, HookNotFound, RunFinished, RunNotFound
from actorflow.store import Store, WaitAnswer

Stores = Callable[[str | None], Store]
T0 = "2026-01-01T00:00:00.000000+00:00"


def at(second: int) -> str:
    """A journal timestamp ``second`` seconds after T0."""
    return f"2026-01-01T00:{second // 60:02d}:{second % 60:02d}.000000+00:00"


def run_row(run_id: str, *, state: str = "pending", created: int = 0, **extra: Any) -> dict[str, Any]:
    """A row as the supervisor makes it."""
    row: dict[str, Any] = {
        "id": run_id, "flow": "f", "flow_ref": "m:f", "flow_blob": None, "codec": "json", "args": "[1]", "kwargs": "{}",
        "state": state, "metadata": None, "parent_id": None, "idempotency_key": None, "attempt": 0,
        "cancel_requested": 0, "owner": None, "timeout": None, "deadline": None, "detached": 0, "queue": None,
        "priority": 0, "created_at": at(created), "started_at": None, "updated_at": at(created),
    }  # fmt: skip
    row.update(extra)
    if state == "running" and row["owner"] is None:
        raise ValueError("a run inserted running needs its owner")
    return row


def write(store: Store, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a committed transaction of ``store`` and return what it returned."""
    store.begin()
    try:
        result = fn()
    except BaseException:
        store.rollback()
        raise
    store.commit()
    return result


def alive(pid: int) -> bool:
    return pid != 999_999  # the "dead" process of the tests


class StoreContract:
    """Behaviour every :class:`~actorflow.store.Store` must have."""

    # -- runs --------------------------------------------------------------------------

    def test_a_run_is_inserted_once_and_found_again(self, stores: Stores) -> None:
        a = stores("rt_a")
        assert write(a, lambda: a.insert_run(run_row("r1", idempotency_key="k"))) is None
        assert write(a, lambda: a.insert_run(run_row("r1"))) == "r1"  # the same id: the existing run
        assert write(a, lambda: a.insert_run(run_row("r2", idempotency_key="k"))) == "r1"  # the same key
        row = a.get_run("r1")
        assert row is not None and row["state"] == "pending" and row["attempt"] == 0 and row["owner"] is None
        assert a.get_run("r2") is None
        assert [kind for _, kind, _ in a.history("r1")] == ["created"]

    def test_a_new_run_keeps_only_the_columns_a_start_gives(self, stores: Stores) -> None:
        a = stores("rt_a")
        write(a, lambda: a.insert_run(run_row("r1", recoveries=5, progress="p", completed_at=at(1))))  # type: ignore[arg-type]
        row = a.get_run("r1")
        assert row is not None and row["recoveries"] == 0 and row["progress"] is None and row["completed_at"] is None

    def test_a_run_admitted_at_once_is_created_and_started(self, stores: Stores) -> None:
        a = stores("rt_a")
        write(a, lambda: a.insert_run(run_row("r1", state="running", owner="rt_a", attempt=1)))
        assert [kind for _, kind, _ in a.history("r1")] == ["created", "started"]

    def test_claims_and_ends_are_fenced_on_the_runtime_that_holds_the_run(self, stores: Stores) -> None:
        a, b = stores("rt_a"), stores("rt_b")
        write(a, lambda: a.insert_run(run_row("r1")))
        claimed = write(a, lambda: a.claim_run("r1", at(1), at(100)))
        assert claimed is not None and claimed[0]["state"] == "running" and claimed[0]["attempt"] == 1
        assert claimed[0]["owner"] == "rt_a" and claimed[0]["deadline"] == at(100) and claimed[1] == []
        assert write(b, lambda: b.claim_run("r1", at(2), None)) is None
        assert write(b, lambda: b.finish_run("r1", "completed", at(3), '"x"', None)) is None
        assert not write(b, lambda: b.save_progress("r1", "p", at(3)))
        assert write(a, lambda: a.save_progress("r1", "p", at(3)))
        final = write(a, lambda: a.finish_run("r1", "completed", at(4), '"done"', None))
        assert final is not None and final["state"] == "completed" and final["result"] == '"done"'
        assert final["completed_at"] == at(4) and final["progress"] == "p"
        assert write(a, lambda: a.finish_run("r1", "failed", at(5), None, "e")) is None  # terminal states never change
        assert a.get_run("r1")["state"] == "completed"  # type: ignore[index]

    def test_a_cancel_accepted_before_the_end_wins(self, stores: Stores) -> None:
        a = stores("rt_a")
        write(a, lambda: a.insert_run(run_row("r1", state="running", owner="rt_a", attempt=1)))
        row = write(a, lambda: a.request_cancel("r1", at(1)))
        assert row is not None and row["state"] == "running" and row["cancel_requested"] == 1
        assert write(a, lambda: a.request_cancel("r1", at(2))) is None  # asked before: nothing changes
        final = write(a, lambda: a.finish_run("r1", "completed", at(3), '"x"', None))
        assert final is not None and final["state"] == "cancelled" and final["result"] is None

    def test_pending_and_waiting_runs_are_cancelled_at_once(self, stores: Stores) -> None:
        a = stores("rt_a")
        write(a, lambda: a.insert_run(run_row("r1")))
        row = write(a, lambda: a.request_cancel("r1", at(1)))
        assert row is not None and row["state"] == "cancelled" and row["completed_at"] == at(1)
        with pytest.raises(RunNotFound):
            write(a, lambda: a.request_cancel("nope", at(1)))
        assert [k for _, k, _ in a.history("r1")] == ["created", "cancel_requested", "cancelled"]

    def test_cancelling_children_spares_detached_subtrees(self, stores: Stores) -> None:
        a = stores("rt_a")
        rows = [run_row("p", state="running", owner="rt_a"), run_row("c1", parent_id="p", created=1),
                run_row("c2", parent_id="p", created=2, state="running", owner="rt_a"),
                run_row("g1", parent_id="c1", created=3), run_row("d", parent_id="p", detached=1, created=4),
                run_row("dg", parent_id="d", created=5)]  # fmt: skip
        for row in rows:
            write(a, lambda row=row: a.insert_run(row))
        cancelled = dict(write(a, lambda: a.cancel_children("p", at(9))))
        assert cancelled == {"c1": "cancelled", "c2": "running", "g1": "cancelled"}
        assert a.get_run("c2")["cancel_requested"] == 1  # type: ignore[index]
        assert a.get_run("d")["state"] == a.get_run("dg")["state"] == "pending"  # type: ignore[index]

    def test_a_flow_retry_forgets_the_steps_that_did_not_complete(self, stores: Stores) -> None:
        a = stores("rt_a")
        write(a, lambda: a.insert_run(run_row("r1", state="running", owner="rt_a", attempt=1)))
        write(a, lambda: a.save_step({"run_id": "r1", "seq": 1, "name": "s", "state": "completed", "result": "1", "attempts": 1}))
        write(a, lambda: a.save_step({"run_id": "r1", "seq": 2, "name": "t", "state": "failed", "error": "e", "attempts": 3}))
        assert write(a, lambda: a.retry_run("r1", at(1), "boom", 0.5)) == 2
        assert [s["seq"] for s in a.steps("r1")] == [1]
        assert a.get_run("r1")["flow_retries"] == 1  # type: ignore[index]
        (detail,) = [d for _, kind, d in a.history("r1") if kind == "retry"]
        assert json.loads(detail or "{}") == {"attempt": 2, "error": "boom", "delay": 0.5}

    def test_steps_are_fenced_and_keep_their_last_error(self, stores: Stores) -> None:
        a, b = stores("rt_a"), stores("rt_b")
        write(a, lambda: a.insert_run(run_row("r1", state="running", owner="rt_a", attempt=1)))
        step = {"run_id": "r1", "seq": 1, "name": "s", "state": "retrying", "error": "e1", "attempts": 1, "started_at": at(1)}
        assert not write(b, lambda: b.save_step(step))  # type: ignore[arg-type]
        assert write(a, lambda: a.save_step(step))  # type: ignore[arg-type]
        write(a, lambda: a.save_step({"run_id": "r1", "seq": 1, "name": "s", "state": "completed", "result": "7",
                                      "attempts": 2, "completed_at": at(2)}))  # fmt: skip
        (saved,) = a.steps("r1")
        assert (saved["state"], saved["result"], saved["error"], saved["attempts"]) == ("completed", "7", "e1", 2)
        assert saved["started_at"] == at(1)

    def test_waiting(self, stores: Stores) -> None:
        a = stores("rt_a")
        write(a, lambda: a.insert_run(run_row("r1", state="running", owner="rt_a", attempt=1)))
        write(a, lambda: a.insert_event("r1", "news", lambda eid: f"p{eid}", at(1)))
        assert write(a, lambda: a.set_waiting("r1", '{"event":"news"}', None, at(2), "news"))[0] is WaitAnswer.EVENT_READY
        answer, watermark = write(a, lambda: a.set_waiting("r1", '{"sleep":1}', at(60), at(2), None, 3, "sleep"))
        assert answer is WaitAnswer.WAITING and watermark >= 1
        row = a.get_run("r1")
        assert row is not None and row["state"] == "waiting" and row["wake_at"] == at(60)
        assert (row["wait_seq"], row["wait_kind"]) == (3, "sleep")  # how a runtime taking it over resumes it
        assert write(a, lambda: a.set_waiting("r1", "{}", None, at(3), None))[0] is WaitAnswer.GONE  # not running
        write(a, lambda: a.insert_run(run_row("r2", state="running", owner="rt_a", attempt=1)))
        write(a, lambda: a.request_cancel("r2", at(4)))
        assert write(a, lambda: a.set_waiting("r2", "{}", None, at(5), None))[0] is WaitAnswer.CANCEL_REQUESTED

    def test_a_waiting_run_of_a_queue_goes_back_to_pending(self, stores: Stores) -> None:
        a = stores("rt_a")
        write(a, lambda: a.insert_run(run_row("r1", state="running", owner="rt_a", queue="q")))
        write(a, lambda: a.set_waiting("r1", "{}", None, at(1), None))
        assert write(a, lambda: a.requeue("r1", at(2)))
        row = a.get_run("r1")
        assert row is not None and row["state"] == "pending" and row["owner"] is None
        assert not write(a, lambda: a.requeue("r1", at(3)))

    # -- events, hooks, streams --------------------------------------------------------

    def test_events_are_queued_in_order_and_taken_once(self, stores: Stores) -> None:
        a = stores("rt_a")
        write(a, lambda: a.insert_run(run_row("r1", state="running", owner="rt_a")))
        ids = [write(a, lambda p=p: a.insert_event("r1", "t", lambda eid, p=p: f"{p}@{eid}", at(1))) for p in ("x", "y")]
        assert ids[0] < ids[1]
        assert write(a, lambda: a.take_event("r1", "other", 1, at(2))) is None
        assert write(a, lambda: a.take_event("r1", "t", 1, at(2))) == (ids[0], f"x@{ids[0]}")
        assert write(a, lambda: a.take_event("r1", "t", 2, at(2))) == (ids[1], f"y@{ids[1]}")
        assert write(a, lambda: a.take_event("r1", "t", 3, at(2))) is None

    def test_events_go_only_to_unfinished_runs_and_held_hooks(self, stores: Stores) -> None:
        a = stores("rt_a")
        write(a, lambda: a.insert_run(run_row("r1", state="running", owner="rt_a")))
        write(a, lambda: a.insert_run(run_row("r2", state="running", owner="rt_a")))
        write(a, lambda: a.register_hook("r1", "tok", 1, at(1), "s"))
        assert a.event_target(None, "tok") == "r1"
        assert a.event_target("r2", None) == "r2"
        with pytest.raises(HookConflict):
            write(a, lambda: a.register_hook("r2", "tok", 1, at(1), "s"))
        with pytest.raises(HookNotFound):
            a.event_target(None, "nope")
        with pytest.raises(RunNotFound):
            a.event_target("nope", None)
        write(a, lambda: a.finish_run("r1", "completed", at(2), "1", None))
        with pytest.raises(RunFinished):
            a.event_target("r1", None)
        with pytest.raises(HookNotFound):  # its run has ended: the token is free
            a.event_target(None, "tok")
        write(a, lambda: a.register_hook("r2", "tok", 1, at(3), "s"))
        assert a.event_target(None, "tok") == "r2"

    def test_streams_number_their_chunks_per_namespace_once_per_call(self, stores: Stores) -> None:
        a, b = stores("rt_a"), stores("rt_b")
        write(a, lambda: a.insert_run(run_row("r1", state="running", owner="rt_a")))
        assert write(a, lambda: a.write_chunk("r1", "", 1, "d1", False, at(1), "s")) == 0
        assert write(a, lambda: a.write_chunk("r1", "logs", 2, "l1", False, at(1), "s")) == 0
        assert write(a, lambda: a.write_chunk("r1", "", 3, "d2", False, at(1), "s")) == 1
        assert write(a, lambda: a.write_chunk("r1", "", 3, "again", False, at(1), "s")) is None  # a replay
        assert write(b, lambda: b.write_chunk("r1", "", 4, "d3", False, at(1), "s")) is None  # fenced
        assert write(a, lambda: a.write_chunk("r1", "", 5, None, True, at(1), "s")) == 2
        assert a.chunks("r1", "", 0, 10) == [(0, "d1", 0, 1), (1, "d2", 0, 3), (2, None, 1, 5)]
        assert a.chunks("r1", "", 1, 1) == [(1, "d2", 0, 3)]
        assert [s["name"] for s in a.steps("r1")] == ["actorflow.write"] * 4

    # -- retention ---------------------------------------------------------------------

    def test_purge_takes_finished_trees_and_nothing_unfinished(self, stores: Stores) -> None:
        a = stores("rt_a")
        for row in (run_row("old", state="running", owner="rt_a"), run_row("kid", parent_id="old", state="running", owner="rt_a"),
                    run_row("live", parent_id="old", created=1), run_row("new", state="running", owner="rt_a")):  # fmt: skip
            write(a, lambda row=row: a.insert_run(row))
        write(a, lambda: a.finish_run("kid", "completed", at(1), "1", None))
        write(a, lambda: a.finish_run("old", "failed", at(2), None, "e"))
        write(a, lambda: a.finish_run("new", "completed", at(50), "1", None))
        assert write(a, lambda: a.purge(("completed",), at(60))) == 1  # "new"; "old" failed, not asked for
        assert write(a, lambda: a.purge(("failed", "completed"), at(10))) == 2  # "old" and "kid"; "live" is unfinished
        assert {r["id"] for r in a.list_runs()} == {"live"}
        assert write(a, lambda: a.purge(("running",), at(99))) == 0
        write(a, lambda: a.insert_run(run_row("no-end", state="completed", created=3)))  # ended, but no end time
        assert write(a, lambda: a.purge(("completed",), at(99))) == 0

    # -- runtimes, leases, claims -----------------------------------------------------

    def test_leases_expire_and_dead_runtimes_are_seen(self, stores: Stores) -> None:
        a, b, c = stores("rt_a"), stores("rt_b"), stores("rt_c")
        write(a, lambda: a.register_runtime(1, "h", at(0), 100.0, 110.0, 4))
        write(b, lambda: b.register_runtime(2, "h", at(0), 100.0, 110.0, 0))
        write(c, lambda: c.register_runtime(999_999, "h", at(0), 100.0, 110.0, 4))
        assert write(a, lambda: a.renew_lease(105.0, 120.0))
        assert not write(b, lambda: b.renew_lease(111.0, 130.0))  # expired
        assert sorted(a.dead_runtimes(106.0, "h", alive)) == ["rt_c"]  # its process is gone
        assert sorted(a.dead_runtimes(115.0, "other-host", alive)) == ["rt_b", "rt_c"]
        assert a.executors(106.0, "rt_b") == 2 and a.executors(106.0, "rt_a") == 1
        assert a.executors(200.0, "rt_a") == 0  # every lease has run out

    def test_claims_take_over_dead_runtimes_and_fill_free_slots_within_queue_limits(self, stores: Stores) -> None:
        a, dead = stores("rt_a"), stores("rt_dead")
        write(a, lambda: a.register_runtime(1, "h", at(0), 100.0, 200.0, 4))
        write(dead, lambda: dead.register_runtime(2, "h", at(0), 100.0, 101.0, 4))
        write(dead, lambda: dead.insert_run(run_row("crashed", state="running", owner="rt_dead")))
        for i, (queue, priority) in enumerate(((None, 0), ("q", 0), ("q", 0), (None, 5))):
            write(a, lambda i=i, queue=queue, priority=priority: a.insert_run(
                run_row(f"p{i}", created=10 + i, queue=queue, priority=priority)))  # fmt: skip
        assert a.claim_needed(150.0, 0, "h", alive)
        claimed = write(a, lambda: a.claim(150.0, at(20), 3, 10, {"q": 1}, "h", alive))
        ids = [r["id"] for r in claimed]
        assert ids[0] == "crashed" and claimed[0]["recoveries"] == 1
        assert ids[1:] == ["p3", "p0", "p1"]  # priority first, then creation; one of queue q
        assert all(r["owner"] == "rt_a" for r in claimed)
        assert a.get_run("p2")["owner"] is None  # type: ignore[index]  # its queue is full
        assert "taken_over" in [k for _, k, _ in a.history("crashed")]
        assert write(a, lambda: a.release_all(True)) == 4
        assert all(r["owner"] is None for r in a.list_runs())

    # -- reads and the change feed -----------------------------------------------------

    def test_listings_filter_order_and_limit(self, stores: Stores) -> None:
        a = stores("rt_a")
        for i in range(4):
            write(a, lambda i=i: a.insert_run(run_row(f"r{i}", created=i, parent_id="r0" if i in (2, 3) else None)))
        write(a, lambda: a.request_cancel("r1", at(9)))
        assert [r["id"] for r in a.list_runs()] == ["r3", "r2", "r1", "r0"]
        assert [r["id"] for r in a.list_runs(limit=2)] == ["r3", "r2"]
        assert [r["id"] for r in a.list_runs(state="cancelled")] == ["r1"]
        assert [r["id"] for r in a.list_runs(parent_id="r0")] == ["r3", "r2"]
        assert a.count_by_state() == {"pending": 3, "cancelled": 1}
        assert [(d, r["id"]) for d, r in a.tree("r0")] == [(0, "r0"), (1, "r2"), (1, "r3")]
        assert a.tree("nope") == []

    def test_the_change_feed_tells_what_was_committed_since(self, stores: Stores) -> None:
        a, reader = stores("rt_a"), stores(None)
        marks = reader.feed_marks()
        write(a, lambda: a.insert_run(run_row("r1", state="running", owner="rt_a")))
        write(a, lambda: a.insert_run(run_row("r2", state="running", owner="rt_a")))
        write(a, lambda: a.insert_event("r2", "t", lambda eid: "p", at(1)))
        write(a, lambda: a.write_chunk("r2", "ns", 1, "c", False, at(1), "s"))
        write(a, lambda: a.request_cancel("r2", at(2)))
        write(a, lambda: a.finish_run("r1", "completed", at(3), "1", None))
        feed, marks = reader.feed_since(marks)
        assert feed["ended"] == ["r1"] and feed["cancelled"] == ["r2"]
        assert [(r, t) for r, t, _ in feed["events"]] == [("r2", "t")] and feed["chunks"] == [("r2", "ns", 0)]
        assert reader.feed_since(marks)[0] == {"ended": [], "cancelled": [], "events": [], "chunks": []}

    # -- transactions ------------------------------------------------------------------

    def test_a_rollback_undoes_the_transaction_and_a_savepoint_one_operation(self, stores: Stores) -> None:
        a = stores("rt_a")
        a.begin()
        a.insert_run(run_row("gone"))
        a.rollback()
        assert a.get_run("gone") is None
        a.begin()
        a.insert_run(run_row("kept"))
        a.savepoint()
        a.insert_run(run_row("undone", created=1))
        a.rollback_savepoint()
        a.savepoint()
        a.insert_run(run_row("also kept", created=2))
        a.release_savepoint()
        a.commit()
        assert {r["id"] for r in a.list_runs()} == {"kept", "also kept"}
