"""Durable steps: checkpoints, replay, retries, timeouts, recovery after crashes."""

from __future__ import annotations

import datetime as dt
import json
import random
import signal
import sqlite3
import uuid
from pathlib import Path

import pytest

import actorflow
from tests import flows
from tests.flows import arrived, calls, gate
from tests.helpers import committed_steps, cut_off, run_child, stored_text


def test_a_step_outside_a_run_is_a_plain_call() -> None:
    assert flows.double(4) == 8
    with pytest.raises(actorflow.ActorflowError):
        actorflow.current_step()


def test_step_results_are_checkpointed_in_order(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.two_steps, 5)
    assert run.result(timeout=10) == 11
    steps = run.steps()
    assert [(s.seq, s.name, s.state, s.attempts) for s in steps] == [
        (1, "double", "completed", 1),
        (2, "plus_one", "completed", 1),
    ]
    assert all(s.completed_at is not None and s.error is None for s in steps)
    assert "double" in repr(steps) and "plus_one" in repr(steps)


def test_replay_after_a_restart_returns_saved_results_without_running_steps_again(db_path: str) -> None:
    calls.clear()
    run_id = cut_off(db_path, flows.two_steps, "between-steps", 5, "between-steps")  # between the two steps
    assert calls == {"double": 1}
    gate("between-steps").set()
    with actorflow.Runtime(db_path) as rt:
        assert rt.result(run_id, timeout=10) == 11
        assert rt.status(run_id).attempt == 2
    assert calls == {"double": 1, "plus_one": 1}, "the completed step must not run again"


def test_ctx_now_random_uuid_are_replayed(db_path: str) -> None:
    run_id = cut_off(db_path, flows.deterministic_values, "values", "values")
    with actorflow.inspect(db_path) as view:
        saved = [s.name for s in view.steps(run_id)]
    assert saved == ["actorflow.now", "actorflow.random", "actorflow.uuid"]
    gate("values").set()
    with sqlite3.connect(db_path) as conn:
        first = [r for (r,) in conn.execute("SELECT result FROM steps WHERE run_id=? ORDER BY seq", (run_id,))]
    with actorflow.Runtime(db_path) as rt:
        now, rnd, uid = rt.result(run_id, timeout=10)
    assert isinstance(now, dt.datetime) and now.tzinfo is not None
    assert isinstance(rnd, float) and isinstance(uid, uuid.UUID)
    assert [now, rnd, uid] == [actorflow.JSONSerializer().loads(stored_text(v)) for v in first]


def test_non_determinism_is_detected_and_fails_the_run(db_path: str) -> None:
    run_id = cut_off(db_path, flows.branches_on_attempt, "diverge", "diverge")
    gate("diverge").set()
    with actorflow.Runtime(db_path) as rt:
        with pytest.raises(actorflow.RunFailed) as info:
            rt.result(run_id, timeout=10)
    cause = info.value.__cause__
    assert isinstance(cause, actorflow.NonDeterminismError)
    assert (cause.run_id, cause.position, cause.expected, cause.actual) == (run_id, 1, "double", "plus_one")
    assert "replay diverged at call 1" in info.value.error.message


def test_retries_record_each_attempt_and_its_error(rt: actorflow.Runtime) -> None:
    calls.clear()
    flows.step_meta.clear()
    run = rt.start(flows.uses_flaky, "flaky-a", 2)
    assert run.result(timeout=10) == "ok after 3"
    [step] = run.steps()
    assert (step.state, step.attempts) == ("completed", 3)
    assert step.error is not None and step.error.message == "flaky failure 2"
    with actorflow.inspect(rt.path) as view:
        events = view.events(run.id)
    with sqlite3.connect(rt.path) as conn:
        details = [json.loads(d) for (d,) in conn.execute(
            "SELECT detail FROM history WHERE run_id=? AND kind='step_retry' ORDER BY seq", (run.id,))]  # fmt: skip
    assert [(d["attempt"], d["error"], d["retry_in"]) for d in details] == [
        (1, "ConnectionError: flaky failure 1", 0.001),
        (2, "ConnectionError: flaky failure 2", 0.002),
    ]
    assert "step_retry" in events
    # the step id is stable across attempts; the attempt number grows
    assert len({m.step_id for m in flows.step_meta}) == 1
    assert [m.attempt for m in flows.step_meta] == [1, 2, 3]
    assert flows.step_meta[0].step_id == f"{run.id}:1" and flows.step_meta[0].name == "flaky"


def test_retries_give_up_after_max_attempts_counting_the_first_try(rt: actorflow.Runtime) -> None:
    calls.clear()
    run = rt.start(flows.uses_flaky, "flaky-b", 10)
    with pytest.raises(actorflow.RunFailed) as info:
        run.result(timeout=10)
    assert calls["flaky-b"] == 4  # max_attempts=4 in all
    assert isinstance(info.value.__cause__, ConnectionError)
    [step] = run.steps()
    assert (step.state, step.attempts) == ("failed", 4)


def test_retry_delays_follow_the_policy() -> None:
    policy = actorflow.Retry(max_attempts=6, initial=0.5, multiplier=2, max_interval=3, jitter=0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.schedule() == [0.5, 1.0, 2.0, 3.0, 3.0]
    jittered = actorflow.Retry(initial=10, jitter=0.1)
    rng = random.Random(1)
    delays = [jittered.delay(1, rng=rng) for _ in range(50)]
    assert all(9 <= d <= 11 for d in delays) and len(set(delays)) > 1
    assert actorflow.Retry().max_attempts == 3
    after = actorflow.RetryableError("slow down", retry_after=dt.timedelta(seconds=7))
    assert policy.delay(1, after) == 7
    at = actorflow.RetryableError("later", retry_after=dt.datetime.fromtimestamp(1000 + 42, dt.UTC))
    assert policy.delay(1, at, now=1000) == pytest.approx(42)
    with pytest.raises(ValueError):
        actorflow.Retry(max_attempts=0)
    with pytest.raises(TypeError):
        actorflow.step(len, retries="3")  # type: ignore[arg-type]
    assert actorflow.step(len, retries=2).retries.max_attempts == 3


def test_fatal_error_is_never_retried(rt: actorflow.Runtime) -> None:
    calls.clear()
    run = rt.start(flows.uses_fatal, "fatal")
    with pytest.raises(actorflow.RunFailed) as info:
        run.result(timeout=10)
    assert calls["fatal"] == 1
    assert isinstance(info.value.__cause__, actorflow.FatalError)


def test_retryable_error_retry_after_overrides_the_delay(rt: actorflow.Runtime) -> None:
    calls.clear()
    run = rt.start(flows.uses_retry_after, "after")
    assert run.result(timeout=10) == "second try"  # the policy's 30 s would time the test out
    with sqlite3.connect(rt.path) as conn:
        (detail,) = conn.execute("SELECT detail FROM history WHERE run_id=? AND kind='step_retry'", (run.id,)).fetchone()
    assert json.loads(detail)["retry_in"] == 0.01


def test_step_timeout_fails_the_attempt_and_retries(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.uses_slow_step, "slow")
    assert run.result(timeout=10) == "fast enough"
    [step] = run.steps()
    assert step.attempts == 2 and step.error is not None and step.error.type == "actorflow.errors.StepTimeout"
    gate("slow").set()  # the abandoned first attempt sees that it was cancelled
    assert arrived("slow-saw-cancelled").wait(10)


def test_flow_timeout_ends_the_run_as_timed_out(rt: actorflow.Runtime) -> None:
    calls.clear()
    run = rt.start(flows.flow_with_timeout, "flow-timeout")
    assert arrived("flow-timeout").wait(10)
    with pytest.raises(actorflow.RunTimedOut) as info:
        run.result(timeout=10)  # ends although the flow is still blocked
    assert info.value.run_id == run.id
    assert run.status().state is actorflow.State.TIMED_OUT
    gate("flow-timeout").set()
    assert run.wait(timeout=10).state is actorflow.State.TIMED_OUT  # terminal: never changes
    assert rt.steps(run.id) == []  # the step after the timeout was refused


def test_flow_retry_replays_completed_steps(rt: actorflow.Runtime) -> None:
    calls.clear()
    run = rt.start(flows.retried_flow, "flow-retry")
    assert run.result(timeout=10) == "42 on attempt 3"
    assert calls["double"] == 1 and calls["flow-retry"] == 3
    assert run.status().attempt == 3
    with sqlite3.connect(rt.path) as conn:
        kinds = [k for (k,) in conn.execute("SELECT kind FROM history WHERE run_id=? ORDER BY seq", (run.id,))]
    assert kinds.count("retry") == 2


def test_a_flow_can_catch_a_step_failure_and_go_on(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.catches_step_failure, "caught")
    assert run.result(timeout=10) == "handled: card declined"
    assert [s.state for s in run.steps()] == ["failed"]


def test_ctx_step_and_nested_steps(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.untyped_steps)
    assert run.result(timeout=10) == [3, 3]
    assert [s.name for s in run.steps()] == ["len", "total"]
    nested = rt.start(flows.nested_steps)
    assert nested.result(timeout=10) == 11
    assert [s.name for s in nested.steps()] == ["outer_step"]


def test_cancellation_takes_effect_at_the_next_step(rt: actorflow.Runtime) -> None:
    calls.clear()
    run = rt.start(flows.cancel_between_steps, "cancel-step")
    assert arrived("cancel-step").wait(10)
    assert run.cancel() is True
    gate("cancel-step").set()
    assert run.wait(timeout=10).state is actorflow.State.CANCELLED
    assert "plus_one" not in calls
    assert [s.name for s in run.steps()] == ["double"]


def test_a_run_that_keeps_crashing_its_process_fails_after_max_recoveries(db_path: str) -> None:
    code = f"""
        import sys, actorflow
        from tests import flows
        with actorflow.Runtime({db_path!r}, max_recoveries=2) as rt:
            if sys.argv[1:] == ["first"]:
                rt.start(flows.crashes_its_process)
            for s in rt.list_runs():
                try:
                    rt.result(s.id, timeout=30)
                except actorflow.RunFailed as exc:
                    print("failed:", exc.error.message)
    """
    exits = []
    for n in range(4):
        child = run_child(code.replace("sys.argv[1:]", '["first"]' if n == 0 else "[]"))
        out, err = child.communicate(timeout=60)
        exits.append(child.returncode)
    assert exits == [-9, -9, -9, 0], err
    assert "was recovered 3 times (more than max_recoveries=2)" in out
    with actorflow.inspect(db_path) as view:
        [status] = view.list_runs()
        assert status.state is actorflow.State.FAILED and status.attempt == 4


def test_sigkill_at_random_moments_never_repeats_a_committed_step(tmp_path: Path) -> None:
    db_path = str(tmp_path / "crash.db")
    log = tmp_path / "side-effects.log"
    runs = 50
    # a client starts every run (nothing executes there), then seven processes execute them,
    # six of them killed with SIGKILL at a random step
    starter = f"""
        import actorflow
        from tests import flows
        with actorflow.Runtime({db_path!r}, concurrency=0) as rt:
            for i in range({runs}):
                rt.start(flows.five_logged_steps.options(idempotency_key=f"crash-{{i}}"), {str(log)!r}, i)
        print("started all", flush=True)
    """
    out, err = run_child(starter).communicate(timeout=60)
    assert "started all" in out, err
    code = f"""
        import actorflow
        with actorflow.Runtime({db_path!r}, concurrency=8, max_recoveries=1000) as rt:
            for s in rt.list_runs(limit=1000):
                rt.result(s.id, timeout=120)
        print("all done", flush=True)
    """
    rng = random.Random()
    committed_at_kill: list[tuple[int, set[str]]] = []
    kills = 0
    for n in range(7):
        child = run_child(code, env={"ACTORFLOW_TEST_STEP_SECONDS": "0.02"})
        assert child.stdout is not None
        ticks = rng.randint(1, 12)
        finished = False
        for line in child.stdout:
            if line.startswith("all done"):
                finished = True
                break
            ticks -= line.startswith("tick")
            if ticks <= 0:
                break
        if finished or n == 6:  # the seventh process runs to the end
            child.wait(120)
            break
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        kills += 1
        lines = log.read_text().splitlines() if log.exists() else []
        done = committed_steps(db_path)
        committed_at_kill.append((len(lines), done))
    if not finished:  # the last child was allowed to run to the end
        out, err = child.communicate(timeout=120)
        assert "all done" in out, err
    assert kills >= 5, "the workload finished before it could be killed five times"

    entries = [line.split() for line in log.read_text().splitlines()]
    for offset, done in committed_at_kill:
        repeated = [step_id for step_id, _ in entries[offset:] if step_id in done]
        assert repeated == [], f"steps re-executed after their checkpoint was committed: {repeated[:5]}"
    seen: dict[str, list[int]] = {}
    for step_id, attempt in entries:
        seen.setdefault(step_id, []).append(int(attempt))
    assert all(a == sorted(a) and len(set(a)) == len(a) for a in seen.values()), "a re-run step has a higher attempt"
    with actorflow.inspect(db_path) as view:
        statuses = view.list_runs(limit=1000)
        assert len(statuses) == runs
        results = sorted(view.result(s.id) for s in statuses)
    assert results == sorted(sum(i * 10 + k for k in range(5)) for i in range(runs))
    assert len(seen) == runs * 5


def test_ctx_calls_inside_a_step_body_are_plain(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.flow_calling_ctx_in_step)
    assert run.result(timeout=10) == 4
    assert [s.name for s in run.steps()] == ["step_using_ctx"]


def test_a_deadline_that_passed_while_no_runtime_was_open_times_the_run_out(db_path: str) -> None:
    run_id = cut_off(db_path, flows.short_deadline, "deadline-closed", "deadline-closed")
    gate("deadline-closed").set()  # the flow would now finish at once
    clock = actorflow.ManualClock()
    clock.advance(120)
    with actorflow.Runtime(db_path, clock=clock) as rt:
        with pytest.raises(actorflow.RunTimedOut):
            rt.result(run_id, timeout=10)


def test_waits_inside_a_step_are_refused_clearly(rt: actorflow.Runtime) -> None:
    with pytest.raises(actorflow.RunFailed) as info:
        rt.start(flows.wait_in_step).result(timeout=10)
    assert "ctx.sleep() was called inside a step" in str(info.value)
