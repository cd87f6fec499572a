"""The core runtime: start, status, wait, cancel, list, options, shutdown."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import pytest

import actorflow
from tests import flows
from tests.conftest import actorflow_threads
from tests.flows import Boom, Order, arrived, gate


def rows_in(path: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM runs").fetchone()[0]


def test_start_returns_a_committed_run_with_a_sortable_id(rt: actorflow.Runtime) -> None:
    first = rt.start(flows.hold, "committed")
    second = rt.start(flows.add, 1, 2)
    assert first.id.startswith("run_") and second.id.startswith("run_")
    assert first.id < second.id
    # committed: another connection sees the row at once, while the flow is still held
    with sqlite3.connect(rt.path) as conn:
        state = conn.execute("SELECT state FROM runs WHERE id=?", (first.id,)).fetchone()[0]
    assert state in ("pending", "running")
    gate("committed").set()
    assert first.result(timeout=10) is None
    assert second.result(timeout=10) == 3


def test_status_has_every_field(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.greet, "ada")
    assert run.result(timeout=10) == "hello ada"
    status = run.status()
    assert status.id == run.id
    assert status.flow == "greet"
    assert status.state is actorflow.State.COMPLETED
    assert status.result == "hello ada"
    assert status.error is None
    assert status.progress == {"stage": "greeting"}
    assert status.parent_id is None
    assert status.attempt == 1
    assert status.metadata == {}
    for stamp in (status.created_at, status.started_at, status.completed_at):
        assert isinstance(stamp, dt.datetime) and stamp.utcoffset() == dt.timedelta(0)
    assert status.created_at <= status.started_at <= status.completed_at
    assert rt.status(run.id) == status


def test_status_while_running_shows_progress_and_state(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.hold, "progress")
    assert arrived("progress").wait(10)
    assert run.status().state is actorflow.State.RUNNING
    assert run.status().started_at is not None
    gate("progress").set()
    run.wait(timeout=10)


def test_failed_run_raises_run_failed_with_the_original_cause(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.fail, "no stock")
    with pytest.raises(actorflow.RunFailed) as info:
        run.result(timeout=10)
    err = info.value
    assert err.run_id == run.id
    assert isinstance(err.__cause__, Boom) and str(err.__cause__) == "no stock"
    assert err.error.type == "tests.flows.Boom"
    assert err.error.message == "no stock"
    assert "raise Boom(message)" in err.error.traceback
    status = run.status()
    assert status.state is actorflow.State.FAILED
    assert status.error == err.error


def test_failure_whose_exception_cannot_be_rebuilt_still_reports_type_message_traceback(rt: actorflow.Runtime) -> None:
    def flow(ctx: actorflow.Context) -> None:
        class Local(Exception):
            def __init__(self, a: int, b: int) -> None:
                super().__init__(f"{a}/{b}")

        raise Local(1, 2)

    run = rt.start(flow)
    with pytest.raises(actorflow.RunFailed) as info:
        run.result(timeout=10)
    assert info.value.error.message == "1/2"
    assert "Local" in info.value.error.type
    assert "raise Local(1, 2)" in info.value.error.traceback


def test_wait_returns_the_final_status_without_raising(rt: actorflow.Runtime) -> None:
    status = rt.start(flows.fail, "x").wait(timeout=10)
    assert status.state is actorflow.State.FAILED
    assert status.done


def test_result_timeout_raises_builtin_timeout_error_and_leaves_the_run_alone(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.hold, "slow", 42)
    with pytest.raises(TimeoutError):
        run.result(timeout=0.05)
    with pytest.raises(TimeoutError):
        run.wait(timeout=0)
    assert run.status().state is actorflow.State.RUNNING
    gate("slow").set()
    assert run.result(timeout=10) == 42


def test_twenty_threads_waiting_on_one_run_all_get_the_result(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.hold, "many-waiters", "done")
    results: list[object] = []
    lock = threading.Lock()

    def waiter() -> None:
        value = rt.get_run(run.id).result(timeout=20)
        with lock:
            results.append(value)

    threads = [threading.Thread(target=waiter) for _ in range(20)]
    for t in threads:
        t.start()
    gate("many-waiters").set()
    for t in threads:
        t.join(20)
    assert results == ["done"] * 20


def test_two_hundred_runs_from_eight_threads(rt: actorflow.Runtime) -> None:
    handles: dict[tuple[int, int], actorflow.RunHandle] = {}
    lock = threading.Lock()

    def starter(t: int) -> None:
        for i in range(25):
            h = rt.start(flows.add, t * 1000, i)
            with lock:
                handles[(t, i)] = h

    threads = [threading.Thread(target=starter, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(handles) == 200
    assert len({h.id for h in handles.values()}) == 200
    for (t, i), h in handles.items():
        assert h.result(timeout=30) == t * 1000 + i


def test_cancel_a_pending_run_takes_effect_at_once(db_path: str) -> None:
    with actorflow.Runtime(db_path, concurrency=1) as rt:
        blocker = rt.start(flows.hold, "blocker")
        assert arrived("blocker").wait(10)
        queued = rt.start(flows.record, str(Path(db_path).with_suffix(".log")), "ran")
        assert queued.status().state is actorflow.State.PENDING
        assert queued.cancel() is True
        assert queued.status().state is actorflow.State.CANCELLED
        with pytest.raises(actorflow.RunCancelled) as info:
            queued.result(timeout=10)
        assert info.value.run_id == queued.id
        gate("blocker").set()
        blocker.result(timeout=10)
        assert queued.cancel() is False
    assert not Path(db_path).with_suffix(".log").exists(), "a cancelled pending run must never execute"


def test_cancel_a_running_run_at_its_next_cancellation_point(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.loop_until_cancelled, "cancel-me")
    assert arrived("cancel-me").wait(10)
    assert run.cancel() is True
    with pytest.raises(actorflow.RunCancelled):
        run.result(timeout=10)
    status = run.status()
    assert status.state is actorflow.State.CANCELLED and status.cancel_requested
    assert status.completed_at is not None


def test_the_old_name_of_the_cancellation_check_still_works_and_warns(rt: actorflow.Runtime) -> None:
    # ctx.checkpoint() was renamed ctx.check_cancelled(): "checkpoint" names a saved step result only
    assert rt.start(flows.old_cancellation_check).result(timeout=10) == [
        "DeprecationWarning: ctx.checkpoint() is renamed ctx.check_cancelled()"
    ]


def test_the_runtime_id_is_the_owner_of_its_runs_and_its_old_name_warns(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.hold, "owned", "value")
    assert arrived("owned").wait(10)
    assert rt.id.startswith("rt_")
    with closing(sqlite3.connect(rt.path)) as conn:
        assert conn.execute("SELECT owner FROM runs WHERE id = ?", (run.id,)).fetchone() == (rt.id,)
    with pytest.warns(DeprecationWarning, match="renamed Runtime.id"):
        assert rt.incarnation == rt.id
    gate("owned").set()
    assert run.result(timeout=10) == "value"


def test_cancel_requested_before_the_flow_returns_ends_the_run_cancelled(rt: actorflow.Runtime) -> None:
    # the flow reaches no cancellation point after the request, yet the accepted cancel wins
    run = rt.start(flows.hold, "late-cancel", "value")
    assert arrived("late-cancel").wait(10)
    assert run.cancel() is True
    gate("late-cancel").set()
    assert run.wait(timeout=10).state is actorflow.State.CANCELLED


def test_the_started_handle_answers_from_the_committed_end_like_a_query(rt: actorflow.Runtime) -> None:
    # the handle start() returns is told of the end this runtime commits; what it answers
    # must be exactly what a query by id answers, for every way a run can end
    ok = rt.start(flows.add, 2, 3)
    failed = rt.start(flows.fail, "no")
    cancelled = rt.start(flows.hold, "done-cancel", "value")
    assert arrived("done-cancel").wait(10)
    assert cancelled.cancel() is True
    gate("done-cancel").set()
    for handle in (ok, failed, cancelled):
        by_id = rt.wait(handle.id, timeout=10)
        assert handle._done is not None and handle._done.done, "the end was committed by this runtime"
        assert handle.wait(timeout=10) == by_id
    assert ok.result() == 5 == rt.result(ok.id)
    with pytest.raises(actorflow.RunFailed, match="no"):
        failed.result()
    with pytest.raises(actorflow.RunCancelled):
        cancelled.result()
    # a handle made from an id asks; it knows nothing of this runtime's commits
    assert rt.get_run(ok.id).result(timeout=10) == 5


def test_the_started_handle_falls_back_to_a_query_when_the_end_is_not_its_own(db_path: str) -> None:
    # a run cancelled while pending ends without an execution: the handle must still see it
    with actorflow.Runtime(db_path, concurrency=1) as rt:
        blocker = rt.start(flows.hold, "done-blocker")
        assert arrived("done-blocker").wait(10)
        queued = rt.start(flows.add, 1, 1)
        assert queued.cancel() is True
        with pytest.raises(actorflow.RunCancelled):
            queued.result(timeout=10)
        assert queued._done is not None and not queued._done.done
        gate("done-blocker").set()
        blocker.result(timeout=10)
    with actorflow.Runtime(db_path) as again:
        assert again.get_run(queued.id).wait(timeout=10).state is actorflow.State.CANCELLED
    with pytest.raises(actorflow.RuntimeClosed):
        blocker.result()  # calls after shutdown are refused, even when the answer is known


def test_a_slot_freed_by_a_run_end_is_used_at_once_without_the_periodic_tick(db_path: str) -> None:
    # ticks 30 s apart: only the way an end reaches the supervisor can start these runs
    with actorflow.Runtime(db_path, concurrency=1, poll_interval=30, lease=60) as rt:
        # a run queued for the slot starts as soon as the run holding it ends
        holder = rt.start(flows.hold, "slot-holder", "first")
        assert arrived("slot-holder").wait(10)
        queued = rt.start(flows.add, 2, 2)
        pressure = rt.supervisor.proxy().pressure.get()
        while pressure.queued == 0:  # until the supervisor holds it for the slot (each look: a message)
            rt.supervisor.ask(actorflow.messages.Wake("nobody", 0))
        gate("slot-holder").set()  # from here on, nothing but the run's end tells the supervisor
        assert holder.result(timeout=10) == "first"
        assert queued.result(timeout=10) == 4
        # and a run started after another has ended finds the slot free
        for i in range(20):
            assert rt.start(flows.add, i, 1).result(timeout=10) == i + 1


def test_cancel_a_finished_run_is_a_no_op(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.add, 2, 2)
    assert run.result(timeout=10) == 4
    assert run.cancel() is False
    assert rt.cancel(run.id) is False
    status = run.status()
    assert status.state is actorflow.State.COMPLETED and status.result == 4


def test_flow_sees_ctx_cancelled(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.watch_cancelled, "sees")
    assert arrived("sees").wait(10)
    run.cancel()
    assert run.wait(timeout=10).state is actorflow.State.CANCELLED
    assert arrived("sees-seen").is_set()


def test_unknown_run_id(rt: actorflow.Runtime) -> None:
    with pytest.raises(actorflow.RunNotFound) as info:
        rt.get_run("run_nope")
    assert isinstance(info.value, KeyError)
    assert "run_nope" in str(info.value)
    with pytest.raises(actorflow.RunNotFound):
        rt.status("run_nope")
    with pytest.raises(actorflow.RunNotFound):
        rt.cancel("run_nope")
    with pytest.raises(actorflow.RunNotFound):
        rt.result("run_nope", timeout=5)


def test_get_run_gives_a_handle_for_an_id_from_elsewhere(rt: actorflow.Runtime) -> None:
    run_id = rt.start(flows.add, 5, 6).id
    handle = rt.get_run(run_id)
    assert handle.id == run_id
    assert handle.result(timeout=10) == 11


def test_list_runs_filters_and_orders_newest_first(rt: actorflow.Runtime) -> None:
    done = [rt.start(flows.add, i, i) for i in range(3)]
    failed = rt.start(flows.fail, "x")
    for h in done:
        h.result(timeout=10)
    failed.wait(timeout=10)
    all_runs = rt.list_runs()
    assert [s.id for s in all_runs] == [failed.id] + [h.id for h in reversed(done)]
    assert [s.id for s in rt.list_runs(state="failed")] == [failed.id]
    assert [s.id for s in rt.list_runs(state=actorflow.State.COMPLETED, limit=2)] == [done[2].id, done[1].id]
    assert len(rt.list_runs(flow="add")) == 3
    assert len(rt.list_runs(flow=flows.fail)) == 1
    assert rt.list_runs(parent="run_nobody") == []
    with pytest.raises(ValueError):
        rt.list_runs(state="sleeping")


def test_idempotency_key_returns_the_existing_run(rt: actorflow.Runtime, tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    keyed = flows.record.options(idempotency_key="order-7")
    first = rt.start(keyed, log, 1)
    second = rt.start(keyed, log, 2)
    assert first.id == second.id
    assert second.result(timeout=10) == 1
    assert Path(log).read_text().count(first.id) == 1
    assert len(rt.list_runs()) == 1


def test_metadata_option_does_not_collide_with_a_flow_argument(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.with_metadata.options(metadata={"user": "ada"}), metadata="the argument")
    assert run.result(timeout=10) == {"arg": "the argument", "ctx": {"user": "ada"}}
    assert run.status().metadata == {"user": "ada"}
    assert flows.with_metadata.run_options == {}, "options() must not change the flow"
    with pytest.raises(TypeError):
        flows.with_metadata.options(metadata=["not", "a", "dict"])  # type: ignore[arg-type]


def test_arguments_and_results_are_passed_by_value_with_extended_types(rt: actorflow.Runtime) -> None:
    order = Order(7, ("tea", "cake"))
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    args = (order, (1, 2), {3, 4}, b"\x00\x01", when, Decimal("1.10"), Path("/tmp/x"))
    value = rt.start(flows.echo, *args, key=frozenset({"k"})).result(timeout=10)
    assert value == {"args": args, "kwargs": {"key": frozenset({"k"})}}
    assert isinstance(value["args"][0], Order) and isinstance(value["args"][1], tuple)


def test_unserializable_argument_is_refused_by_name_and_nothing_is_written(rt: actorflow.Runtime) -> None:
    before = rows_in(rt.path)
    with pytest.raises(actorflow.SerializationError) as info:
        rt.start(flows.echo, 1, conn=threading.Lock())
    assert info.value.argument == "kwargs['conn']"
    assert "kwargs['conn']" in str(info.value)
    with pytest.raises(actorflow.SerializationError) as info:
        rt.start(flows.echo, [1, threading.Lock()])
    assert info.value.argument == "args[0]"
    assert rows_in(rt.path) == before


def test_unserializable_return_value_fails_the_run_clearly(rt: actorflow.Runtime) -> None:
    run = rt.start(lambda ctx: threading.Lock())
    with pytest.raises(actorflow.RunFailed) as info:
        run.result(timeout=10)
    assert info.value.error.type == "actorflow.errors.SerializationError"
    assert "return value" in info.value.error.message


def test_lambdas_and_closures_run_by_value(rt: actorflow.Runtime) -> None:
    factor = 3

    def closure(ctx: actorflow.Context, x: int) -> int:
        return x * factor

    assert rt.start(closure, 5).result(timeout=10) == 15
    assert rt.start(lambda ctx: "lambda").result(timeout=10) == "lambda"


def test_current_run_is_the_context(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.current)
    assert run.result(timeout=10) == [True, run.id, "current", 1]
    with pytest.raises(actorflow.ActorflowError):
        actorflow.current_run()


def test_events_table_records_each_transition(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.add, 1, 1)
    run.result(timeout=10)
    with actorflow.inspect(rt.path) as view:
        table = view.events(run.id)
    with sqlite3.connect(rt.path) as conn:
        kinds = [k for (k,) in conn.execute("SELECT kind FROM history WHERE run_id=? ORDER BY seq", (run.id,))]
    assert kinds == ["created", "started", "completed"]
    assert "completed" in table


def test_bad_arguments_to_the_api_get_clear_errors(rt: actorflow.Runtime) -> None:
    with pytest.raises(TypeError):
        rt.start("not a flow")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rt.status(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        rt.start(flows.add, 1, 2).result(timeout=-1)
    with pytest.raises(ValueError):
        actorflow.Runtime(rt.path + "2", concurrency=-1)


def test_repl_views_print_as_tables(rt: actorflow.Runtime) -> None:
    ok = rt.start(flows.add, 1, 2)
    bad = rt.start(flows.fail, "boom")
    ok.result(timeout=10)
    bad.wait(timeout=10)
    text = repr(rt)
    assert rt.path in text and "completed 1" in text and "failed 1" in text
    table = repr(rt.list_runs())
    assert ok.id in table and bad.id in table and "completed" in table and "Boom: boom" in table
    assert table.splitlines()[0].split()[:3] == ["id", "flow", "state"]
    assert ok.id in repr(ok) and "completed" in repr(ok)
    assert "state" in repr(ok.status()) and "3" in repr(ok.status())
    assert repr(rt.list_runs(state="waiting")) == "RunList (no runs)"


def test_shutdown_stops_new_starts_and_leaves_no_thread(db_path: str) -> None:
    rt = actorflow.Runtime(db_path)
    run = rt.start(flows.add, 1, 1)
    assert run.result(timeout=10) == 2
    rt.shutdown()
    rt.shutdown()  # a second call does nothing
    with pytest.raises(actorflow.RuntimeClosed):
        rt.start(flows.add, 1, 1)
    with pytest.raises(actorflow.RuntimeClosed):
        run.status()
    assert "shut down" in repr(rt)
    for t in actorflow_threads():
        t.join(5)
    assert actorflow_threads() == []


def test_shutdown_waits_for_running_runs(db_path: str) -> None:
    rt = actorflow.Runtime(db_path)
    run = rt.start(flows.hold, "finish-in-shutdown", "finished")
    assert arrived("finish-in-shutdown").wait(10)
    opener = threading.Timer(0.05, gate("finish-in-shutdown").set)
    opener.start()
    rt.shutdown(timeout=10)
    opener.join()
    with actorflow.inspect(db_path) as view:
        assert view.result(run.id) == "finished"


def test_waiters_are_released_when_the_runtime_shuts_down(db_path: str) -> None:
    rt = actorflow.Runtime(db_path)
    run = rt.start(flows.loop_until_cancelled, "abandoned-waiter")
    assert arrived("abandoned-waiter").wait(10)
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            run.result()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    rt.shutdown(timeout=0.05)
    t.join(10)
    assert len(errors) == 1 and isinstance(errors[0], actorflow.RuntimeClosed)
    with actorflow.inspect(db_path) as view:
        assert view.status(run.id).state is actorflow.State.RUNNING  # left for the next open


def test_cancel_during_a_flow_retry_backoff_ends_the_run(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.retries_slowly, "backoff")
    assert arrived("backoff").wait(10)
    assert run.cancel() is True
    with pytest.raises(actorflow.RunCancelled):
        run.result(timeout=10)


def test_cancelling_twice_answers_false_the_second_time(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.loop_until_cancelled, "twice")
    assert arrived("twice").wait(10)
    assert run.cancel() is True
    assert run.cancel() is False
    assert run.wait(timeout=10).state is actorflow.State.CANCELLED
