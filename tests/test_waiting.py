"""Waiting without holding a thread: durable sleep, events, hooks, streams, passivation, time control."""

from __future__ import annotations

import datetime as dt
import signal
import threading

import pytest

import actorflow
from actorflow.durations import parse_duration
from actorflow.messages import StartRun
from actorflow import testing
from tests import flows
from tests.conftest import actorflow_threads
from tests.flows import arrived, gate
from tests.helpers import run_child

DAY = 86400


def wait_for_state(
    rt: actorflow.Runtime, run_id: str, state: actorflow.State, waiting_for: str | None = None
) -> actorflow.RunStatus:
    """Wait until the run is in ``state`` (and waits for ``waiting_for``, if given): actorflow.testing's helper."""
    return testing.wait_for_state(rt.get_run(run_id), state, 20.0, waiting_for=waiting_for)


def test_durations_parse() -> None:
    assert [parse_duration(v) for v in (90, "90s", "10m", "2h", "1d", "1h 30m", dt.timedelta(minutes=2))] == [
        90, 90, 600, 7200, DAY, 5400, 120,
    ]  # fmt: skip
    for bad in ("-1s", "soon", "", "10 minutes", -1, float("nan")):
        with pytest.raises(ValueError):
            parse_duration(bad)
    with pytest.raises(TypeError):
        parse_duration([1])  # type: ignore[arg-type]


def test_a_day_long_sleep_finishes_when_a_manual_clock_moves(db_path: str) -> None:
    clock = actorflow.ManualClock()
    start = clock.time()
    with actorflow.Runtime(db_path, clock=clock) as rt:
        run = rt.start(flows.sleeper, "1d")
        status = wait_for_state(rt, run.id, actorflow.State.WAITING, "sleep_until")
        assert status.wake_at == dt.datetime.fromtimestamp(start + DAY, dt.UTC)
        assert status.waiting_for is not None and "sleep_until" in status.waiting_for
        clock.advance("23h")
        with pytest.raises(TimeoutError):
            run.result(timeout=0.2)
        clock.advance("1h")
        assert run.result(timeout=10) == "awake"
        assert rt.start(flows.clock_now).result(timeout=10) == dt.datetime.fromtimestamp(clock.time(), dt.UTC)


def test_sleep_accepts_durations_and_datetimes_and_refuses_bad_ones(db_path: str) -> None:
    clock = actorflow.ManualClock()
    with actorflow.Runtime(db_path, clock=clock) as rt:
        until = dt.datetime.fromtimestamp(clock.time() + 60, dt.UTC)
        runs = [rt.start(flows.sleeper, v) for v in (0, dt.timedelta(seconds=30), until)]
        for r in runs[1:]:
            wait_for_state(rt, r.id, actorflow.State.WAITING, "sleep_until")
        clock.advance(60)
        assert [r.result(timeout=10) for r in runs] == ["awake"] * 3
        for bad in (-5, "whenever", dt.datetime(2030, 1, 1)):
            with pytest.raises(actorflow.RunFailed) as info:
                rt.start(flows.sleeper, bad).result(timeout=10)
            assert isinstance(info.value.__cause__, ValueError)


def test_cancelling_a_sleeping_run_ends_it_at_once(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.sleeper, "1h")
    wait_for_state(rt, run.id, actorflow.State.WAITING)
    assert run.cancel() is True
    assert run.status().state is actorflow.State.CANCELLED
    with pytest.raises(actorflow.RunCancelled):
        run.result(timeout=5)


def test_sleep_keeps_its_committed_wake_time_across_a_sigkill(db_path: str) -> None:
    code = f"""
        import threading, actorflow
        from tests import flows
        rt = actorflow.Runtime({db_path!r})
        run = rt.start(flows.sleeper, "10s")
        while rt.status(run.id).state is not actorflow.State.WAITING:
            threading.Event().wait(0.01)
        print(run.id, rt.status(run.id).wake_at.timestamp(), flush=True)
        threading.Event().wait()
    """
    child = run_child(code)
    assert child.stdout is not None
    run_id, wake = child.stdout.readline().split()
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    with actorflow.inspect(db_path) as view:
        before = view.status(run_id)
    assert before.wake_at is not None and before.wake_at.timestamp() == pytest.approx(float(wake))
    assert before.wake_at.timestamp() - before.created_at.timestamp() == pytest.approx(10, abs=0.5)
    clock = actorflow.ManualClock()  # the reopening process moves time by hand
    with actorflow.Runtime(db_path, clock=clock) as rt:
        after = rt.status(run_id)
        assert after.state is actorflow.State.WAITING and after.wake_at == before.wake_at  # re-armed, not restarted
        clock.advance(max(0.0, float(wake) - clock.time()) + 0.001)
        assert rt.result(run_id, timeout=10) == "awake"
        assert rt.status(run_id).attempt == 2


def test_events_sent_before_and_after_the_wait_arrive_in_order(rt: actorflow.Runtime) -> None:
    early = rt.start(flows.collect_after_gate, "early", 3)
    assert arrived("early").wait(10)
    for i in range(3):
        early.send("news", i)  # queued before the flow waits
    gate("early").set()
    assert early.result(timeout=10) == [0, 1, 2]
    late = rt.start(flows.collect_events, "news", 3)
    wait_for_state(rt, late.id, actorflow.State.WAITING)
    for i in range(3):
        rt.send(late.id, "news", {"n": i})
    rt.send(late.id, "other-topic", "ignored")
    assert late.result(timeout=10) == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_wait_event_timeout_returns_none(db_path: str) -> None:
    clock = actorflow.ManualClock()
    with actorflow.Runtime(db_path, clock=clock) as rt:
        run = rt.start(flows.approval, 1)
        wait_for_state(rt, run.id, actorflow.State.WAITING)
        clock.advance("1d")
        assert run.result(timeout=10) == "expired"
        answered = rt.start(flows.approval, 2)
        wait_for_state(rt, answered.id, actorflow.State.WAITING)
        answered.send("decision", {"answer": "yes"})
        wait_for_state(rt, answered.id, actorflow.State.WAITING, "sleep_until")  # now in its 10 min sleep
        clock.advance("10m")
        assert answered.result(timeout=10) == "yes"


def test_sending_to_unknown_or_finished_runs_and_bad_payloads(rt: actorflow.Runtime) -> None:
    with pytest.raises(actorflow.RunNotFound):
        rt.send("run_nope", "decision", 1)
    done = rt.start(flows.add, 1, 1)
    done.result(timeout=10)
    with pytest.raises(actorflow.RunFinished) as info:
        done.send("decision", 1)
    assert info.value.state == "completed"
    waiting = rt.start(flows.collect_events, "x", 1)
    with pytest.raises(actorflow.SerializationError) as err:
        waiting.send("x", threading.Lock())
    assert err.value.argument == "payload"
    waiting.send("x", "fine")
    assert waiting.result(timeout=10) == ["fine"]


def test_hooks_deliver_several_payloads_in_order_and_are_freed_at_the_end(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.hooked, "order-42-webhook", 2)
    assert next(run.stream(timeout=10)) == "order-42-webhook"
    conflict = rt.start(flows.hook_conflict, "order-42-webhook")
    assert conflict.result(timeout=10) == f"conflict with {run.id}"
    rt.resume_hook("order-42-webhook", {"paid": 1})
    rt.resume_hook("order-42-webhook", {"paid": 2})
    assert run.result(timeout=10) == ["order-42-webhook", [{"paid": 1}, {"paid": 2}]]
    with pytest.raises(actorflow.HookNotFound):
        rt.resume_hook("order-42-webhook", "too late")
    assert rt.start(flows.hook_conflict, "order-42-webhook").result(timeout=10) == "no conflict"
    random_token = rt.start(flows.hooked, None, 1)
    token = next(random_token.stream(timeout=10))
    assert isinstance(token, str) and len(token) >= 16
    rt.resume_hook(token, "x")
    assert random_token.result(timeout=10) == [token, ["x"]]


def test_stream_is_read_live_from_another_thread_and_resumes_from_an_index(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.writer, "stream", 4)
    seen: list[object] = []
    reader = threading.Thread(target=lambda: seen.extend(run.stream(timeout=10)))
    reader.start()
    assert arrived("stream").wait(10)
    assert rt.status(run.id).state is actorflow.State.RUNNING
    gate("stream").set()
    reader.join(10)
    assert seen == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}]
    assert list(run.stream(start=2)) == [{"i": 2}, {"i": 3}]
    assert list(run.stream(namespace="logs")) == ["other"]
    assert list(rt.start(flows.writes_then_closes).stream(timeout=10)) == [1]


def test_stream_survives_a_restart_without_duplicates(db_path: str) -> None:
    with actorflow.Runtime(db_path) as rt:
        run = rt.start(flows.writer, "stream-restart", 4)
        assert arrived("stream-restart").wait(10)
        stream = run.stream(timeout=10)
        assert [next(stream), next(stream)] == [{"i": 0}, {"i": 1}]
        rt.shutdown(timeout=0.05)
    gate("stream-restart").set()
    with actorflow.Runtime(db_path) as rt:
        assert list(rt.stream(run.id, start=1, timeout=10)) == [{"i": 1}, {"i": 2}, {"i": 3}]
        assert rt.result(run.id, timeout=10) == 4
        assert list(rt.stream(run.id)) == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}]


def test_stream_timeout_and_unknown_run(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.collect_events, "never", 1)
    with pytest.raises(TimeoutError):
        list(run.stream(timeout=0.05))
    with pytest.raises(actorflow.RunNotFound):
        list(rt.stream("run_nope"))
    run.cancel()


def test_retry_delays_and_flow_timeouts_follow_the_clock(db_path: str) -> None:
    clock = actorflow.ManualClock()
    with actorflow.Runtime(db_path, clock=clock) as rt:
        run = rt.start(flows.slow_retry, "hourly")
        status = wait_for_state(rt, run.id, actorflow.State.WAITING, "retry")
        assert status.waiting_for is not None and status.waiting_for["retry"] == "fails_once_an_hour"
        clock.advance("1h")
        assert run.result(timeout=10) == "second attempt"
        limited = rt.start(flows.hour_limit)
        wait_for_state(rt, limited.id, actorflow.State.WAITING, "sleep_until")
        clock.advance("1h")
        with pytest.raises(actorflow.RunTimedOut):
            limited.result(timeout=10)


def test_a_thousand_waiting_runs_hold_no_threads(db_path: str) -> None:
    with actorflow.Runtime(db_path) as rt:
        runs = [rt.start(flows.waits_for_event, i) for i in range(1000)]
        for r in runs:
            wait_for_state(rt, r.id, actorflow.State.WAITING)
        assert len(actorflow_threads()) <= 45  # 32 workers at most, plus the runtime's own
        for r in runs:
            r.send("go", 1000)
        assert [r.result(timeout=60) for r in runs] == [1000 + i for i in range(1000)]


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
