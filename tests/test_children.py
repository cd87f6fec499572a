"""Child runs: fan-out and fan-in, await_result, sequences, finalizers, cascading cancellation."""

from __future__ import annotations

import random
import signal
import threading
from pathlib import Path

import pytest

import actorflow
from tests import flows
from tests.flows import arrived, gate
from tests.helpers import committed_steps, cut_off, run_child


def test_fan_out_and_fan_in(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.fan_out, list(range(10)))
    assert run.result(timeout=30) == sum(x * x for x in range(10))
    children = rt.list_runs(parent=run.id)
    assert len(children) == 10
    assert {c.id for c in children} == {f"{run.id}.{i}" for i in range(1, 11)}
    assert all(c.parent_id == run.id and c.state is actorflow.State.COMPLETED for c in children)
    tree = run.tree()
    assert [d for d, _ in tree] == [0] + [1] * 10
    assert tree[0][1].id == run.id
    assert f"  {run.id}.1 " in repr(tree)
    names = [s.name for s in run.steps()]
    assert names == ["start:square"] * 10 + ["actorflow.gather"]


def test_gathering_children_that_have_ended_leaves_the_registry_holding_nothing(rt: actorflow.Runtime) -> None:
    # a long-lived runtime must not keep a trace of every wait it has answered
    parents = [rt.start(flows.gather_when_told, [1, 2, 3], f"late-gather-{i}") for i in range(3)]
    for i, parent in enumerate(parents):
        assert arrived(f"late-gather-{i}").wait(10)
        for child in rt.list_runs(parent=parent.id):
            rt.wait(child.id, timeout=10)  # the children end before their parent gathers them
        gate(f"late-gather-{i}").set()
    assert [rt.result(p.id, timeout=10) for p in parents] == [14, 14, 14]
    assert rt.registry.proxy().watched.get() == set()


def test_first_failure_raises_in_the_parent_with_the_child_id(rt: actorflow.Runtime) -> None:
    value = rt.start(flows.fan_out_with_failure, 5, 3, False).result(timeout=30)
    assert value["cause"] == "child 3 failed"
    assert value["failed"] == value["ids"][3]


def test_return_exceptions_settles_all(rt: actorflow.Runtime) -> None:
    value = rt.start(flows.fan_out_with_failure, 4, 1, True).result(timeout=30)
    assert value == [0, "RunFailed", 2, 3]


def test_wait_first(rt: actorflow.Runtime) -> None:
    assert rt.start(flows.first_of_two).result(timeout=30) == [True, 3, "slow"]


def test_await_result(rt: actorflow.Runtime) -> None:
    assert rt.start(flows.one_by_one, [1, 2, 3]).result(timeout=30) == [1, 4, 9]
    assert rt.start(flows.awaits_a_failure).result(timeout=30) == "caught Boom: child 3 failed"
    with pytest.raises(actorflow.ActorflowError, match="only be called inside a flow"):
        flows.compute(2)


def test_sequence(rt: actorflow.Runtime) -> None:
    assert rt.start(flows.pipeline, 2, 3).result(timeout=30) == 60
    with pytest.raises(ValueError):
        actorflow.sequence()
    failing = actorflow.sequence(flows.add, flows.fail_if)
    with pytest.raises(TypeError):
        actorflow.sequence(flows.add, 42)  # type: ignore[arg-type]
    with pytest.raises(actorflow.RunFailed):
        rt.start(failing, 1, 1).result(timeout=30)  # fail_if(2) needs a second argument


def test_parent_flow_finalizer_gets_every_outcome(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.upload, "file.txt")
    assert run.result(timeout=30) == {
        "path": "file.txt",
        "size": 100,
        "children": [(True, 3), (False, "RunFailed"), (True, 42)],
    }
    assert len(rt.list_runs(parent=run.id)) == 3


def test_cancelling_a_run_cancels_its_whole_tree(rt: actorflow.Runtime) -> None:
    root = rt.start(flows.tree_node, 2, "leaf")
    for name in ("leaf.0.0", "leaf.0.1", "leaf.1.0", "leaf.1.1"):
        assert arrived(name).wait(30)
    tree = root.tree()
    assert len(tree) == 7 and [d for d, _ in tree] == [0, 1, 2, 2, 1, 2, 2]
    assert root.cancel() is True
    for _, status in tree:
        assert rt.wait(status.id, timeout=30).state is actorflow.State.CANCELLED
    assert root.cancel() is False


def test_when_a_parent_ends_its_children_are_cancelled_unless_detached(rt: actorflow.Runtime) -> None:
    attached, detached = rt.start(flows.parent_leaves_children).result(timeout=30)
    assert rt.wait(attached, timeout=30).state is actorflow.State.CANCELLED
    assert rt.status(detached).detached and rt.status(detached).state is not actorflow.State.CANCELLED
    gate("detached").set()
    assert rt.result(detached, timeout=30) == "survived"


def test_a_waiting_parent_passivates_and_resumes(db_path: str) -> None:
    with actorflow.Runtime(db_path, concurrency=1) as rt:
        parent = rt.start(flows.waits_for_held, "passivated-child")
        assert arrived("passivated-child").wait(30)  # only runs once the parent gave up the one slot
        status = parent.status()
        assert status.state is actorflow.State.WAITING
        assert status.waiting_for == {"wait": 2, "mode": "all", "runs": [f"{parent.id}.1"], "count": 1}
        assert "waiting_for" in repr(status)
        gate("passivated-child").set()
        assert parent.result(timeout=30) == "child done"
        assert parent.status().attempt == 2  # resumed by replay


def test_no_starvation_with_a_small_concurrency_limit(db_path: str) -> None:
    with actorflow.Runtime(db_path, concurrency=4) as rt:
        parents = [rt.start(flows.parent_of_many, 10) for _ in range(20)]
        assert [p.result(timeout=60) for p in parents] == [sum(range(1, 11))] * 20
        assert len(rt.list_runs(limit=1000)) == 20 * 11


def test_gather_timeout_leaves_the_children_running(rt: actorflow.Runtime) -> None:
    assert rt.start(flows.waits_with_timeout).result(timeout=30) == "timed out, then late"


def test_a_waiting_parent_resumes_after_a_restart(db_path: str) -> None:
    parent_id = cut_off(db_path, flows.waits_for_held, "restart-child", "restart-child", concurrency=1)
    gate("restart-child").set()
    with actorflow.Runtime(db_path) as rt:
        assert rt.result(parent_id, timeout=30) == "child done"
        assert len(rt.list_runs(parent=parent_id)) == 1  # the replay found the child, did not start another


def test_sigkill_during_fan_out_duplicates_nothing(tmp_path: Path) -> None:
    db_path = str(tmp_path / "fan.db")
    log = tmp_path / "fan.log"
    n = 30
    code = f"""
        import sys, actorflow
        from tests import flows
        with actorflow.Runtime({db_path!r}, concurrency=4, max_recoveries=1000) as rt:
            if "first" in sys.argv:
                rt.start(flows.crash_fan_out.options(idempotency_key="fan"), {str(log)!r}, {n})
                print("started", flush=True)
            for s in rt.list_runs(parent=None, limit=1000):
                if s.parent_id is None:
                    print("result", rt.result(s.id, timeout=120), flush=True)
    """
    rng = random.Random()
    committed_at_kill: list[tuple[int, set[str]]] = []
    for attempt in range(3):
        child = run_child(code.replace('"first" in sys.argv', "True") if attempt == 0 else code)
        assert child.stdout is not None
        ticks = rng.randint(5, 20)
        for line in child.stdout:
            ticks -= line.startswith("tick")
            if ticks <= 0 or line.startswith("result"):
                break
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        lines = log.read_text().splitlines() if log.exists() else []
        done = committed_steps(db_path)
        committed_at_kill.append((len(lines), done))
    final = run_child(code)
    out, err = final.communicate(timeout=120)
    assert f"result {sum(range(n)) + 1000 * n}" in out, err
    entries = [line.split()[0] for line in log.read_text().splitlines()]
    for offset, done in committed_at_kill:
        assert [e for e in entries[offset:] if e in done] == []
    with actorflow.inspect(db_path) as view:
        [parent] = [s for s in view.list_runs(limit=1000) if s.parent_id is None]
        children = view.list_runs(parent=parent.id, limit=1000)
        assert len(children) == n and len({c.id for c in children}) == n
        assert all(c.state is actorflow.State.COMPLETED for c in children)
        assert sorted(view.result(c.id) for c in children) == sorted(i + 1000 for i in range(n))


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


def test_resuming_from_waits_does_not_use_up_flow_retries(db_path: str) -> None:
    with actorflow.Runtime(db_path, concurrency=1) as rt:  # one slot: the parent passivates at each wait
        run = rt.start(flows.fails_after_a_wait, "after-wait")
        assert run.result(timeout=30) == "retried"
