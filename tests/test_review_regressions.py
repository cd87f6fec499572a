"""Regressions for defects found in review: races between cancel, passivation, shutdown and timers."""

from __future__ import annotations

import threading

import pytest

import actorflow
from actorflow.messages import StartRun
from tests import flows
from tests.flows import arrived, gate
from tests.test_waiting import wait_for_state


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


def test_a_wait_whose_runs_ended_is_not_a_timeout(rt: actorflow.Runtime) -> None:
    assert rt.start(flows.gather_done_child_with_zero_timeout).result(timeout=10) == [5]


def test_a_child_started_during_shutdown_waits_for_the_next_open(db_path: str) -> None:
    rt = actorflow.Runtime(db_path)
    run = rt.start(flows.starts_child_late, "late-child")
    assert arrived("late-child").wait(10)
    opener = threading.Timer(0.1, gate("late-child").set)
    opener.start()
    rt.shutdown(timeout=1)
    opener.join()
    with actorflow.inspect(db_path) as view:
        assert view.status(run.id).state is not actorflow.State.FAILED
    with actorflow.Runtime(db_path) as rt2:
        assert rt2.result(run.id, timeout=10) == 42


def test_a_repeated_start_of_a_waiting_run_does_not_lose_its_wake_up(db_path: str) -> None:
    clock = actorflow.ManualClock()
    with actorflow.Runtime(db_path, clock=clock) as rt:
        run_id = rt.supervisor.ask(StartRun(flows.sleeper, args=("1h",), run_id="run_sleepy"))
        wait_for_state(rt, run_id, actorflow.State.WAITING, "sleep_until")
        assert rt.supervisor.ask(StartRun(flows.sleeper, args=("1h",), run_id="run_sleepy")) == run_id
        clock.advance("1h")
        assert rt.result(run_id, timeout=10) == "awake"


def test_a_flow_timeout_holds_for_a_run_sleeping_across_a_restart(db_path: str) -> None:
    clock = actorflow.ManualClock()
    with actorflow.Runtime(db_path, clock=clock) as rt:
        run = rt.start(flows.sleeps_past_its_timeout)
        wait_for_state(rt, run.id, actorflow.State.WAITING, "sleep_until")
    with actorflow.Runtime(db_path, clock=clock) as rt:
        clock.advance(3)
        with pytest.raises(actorflow.RunTimedOut):
            rt.result(run.id, timeout=10)


def test_waits_inside_a_step_are_refused_clearly(rt: actorflow.Runtime) -> None:
    with pytest.raises(actorflow.RunFailed) as info:
        rt.start(flows.wait_in_step).result(timeout=10)
    assert "ctx.sleep() was called inside a step" in str(info.value)


def test_resuming_from_waits_does_not_use_up_flow_retries(db_path: str) -> None:
    with actorflow.Runtime(db_path, concurrency=1) as rt:  # one slot: the parent passivates at each wait
        run = rt.start(flows.fails_after_a_wait, "after-wait")
        assert run.result(timeout=30) == "retried"


def test_an_event_taken_while_running_does_not_wake_the_run_again_later(db_path: str) -> None:
    with actorflow.Runtime(db_path, passivate_after=0.05) as rt:
        run = rt.start(flows.collect_events, "news", 2)
        run.send("news", "first")  # taken by the running flow
        wait_for_state(rt, run.id, actorflow.State.WAITING)
        with actorflow.inspect(db_path) as view:
            kinds = [line.split()[1] for line in view.events(run.id).splitlines()[2:]]
        assert kinds.count("started") == 1, kinds  # not woken for an event it had taken already
        run.send("news", "second")
        assert run.result(timeout=10) == ["first", "second"]
