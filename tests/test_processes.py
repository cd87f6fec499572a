"""Several processes on one journal: shared work, takeover, fencing, cross-process calls, queues."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import actorflow
from tests import flows
from tests.helpers import ROOT, _children, committed_steps
from tests.test_waiting import wait_for_state

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX signals")


def start_worker(journal: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """Start a worker process; return it and its runtime id once it is ready."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.worker", journal, *extra],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _children.append(child)
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.startswith("ready "), child.stderr.read() if child.stderr else line
    return child, line.split()[1]


def stop_worker(child: subprocess.Popen[str]) -> str:
    """Close the worker's stdin (it shuts down gracefully); return its stderr."""
    _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    return err


def wait_for_ticks(child: subprocess.Popen[str], n: int) -> None:
    """Read the worker's output until its steps have printed ``n`` ticks."""
    assert child.stdout is not None
    seen = 0
    while seen < n:
        line = child.stdout.readline()
        assert line, "the worker ended"
        seen += line.count("tick")


def owners(journal: str) -> dict[str, str]:
    with sqlite3.connect(journal) as conn:
        return dict(conn.execute("SELECT id, owner FROM runs"))


def test_three_processes_share_600_runs_exactly_once(tmp_path: Path) -> None:
    journal, log = str(tmp_path / "shared.db"), str(tmp_path / "steps.log")
    with actorflow.Runtime(journal, concurrency=0) as client:  # starts runs, executes none
        workers = [start_worker(journal) for _ in range(3)]
        runs = [client.start(flows.two_logged_steps, log, i) for i in range(600)]
        assert [r.result(timeout=120) for r in runs] == [i + 1000 + i for i in range(600)]
        errors = [stop_worker(w) for w, _ in workers]
    lines = Path(log).read_text().split("\n")[:-1]
    step_ids = [line.split()[0] for line in lines]
    assert len(step_ids) == 1200 and len(set(step_ids)) == 1200, "every step executed exactly once in all"
    by_owner = owners(journal)
    assert set(by_owner.values()) <= {rid for _, rid in workers}
    assert len(set(by_owner.values())) >= 2, "the work was shared"
    assert not any("locked" in e for e in errors), errors


def test_a_killed_process_s_runs_finish_in_the_others(tmp_path: Path) -> None:
    journal, log = str(tmp_path / "kill.db"), str(tmp_path / "steps.log")
    with actorflow.Runtime(journal, concurrency=0) as client:
        (victim, victim_id), *others = [start_worker(journal, "--lease", "2") for _ in range(3)]
        runs = [client.start(flows.five_logged_steps, log, i) for i in range(60)]
        wait_for_ticks(victim, 10)  # let the victim get going
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)  # reaped: the others see its process is gone at their next poll
        done_at_kill = committed_steps(journal)
        offset = len(Path(log).read_text().splitlines())
        assert [r.result(timeout=120) for r in runs] == [sum(i * 10 + k for k in range(5)) for i in range(60)]
        for w, _ in others:
            stop_worker(w)
    after = [line.split()[0] for line in Path(log).read_text().splitlines()[offset:]]
    assert [s for s in after if s in done_at_kill] == [], "a committed step ran again"
    with sqlite3.connect(journal) as conn:
        taken = {r for (r,) in conn.execute("SELECT run_id FROM history WHERE kind='taken_over'")}
    assert taken, "the victim held runs when it was killed: another process took them over"
    final = owners(journal)
    assert all(final[r] != victim_id for r in taken), "the runs taken over were finished by the others"


def test_a_paused_process_loses_its_runs_and_its_writes_are_refused(tmp_path: Path) -> None:
    journal, log = str(tmp_path / "stale.db"), str(tmp_path / "steps.log")
    with actorflow.Runtime(journal, concurrency=0) as client:
        # one run at a time, so that the pause lands in a step body, not inside a commit (a
        # process paused while it holds SQLite's write lock blocks every writer until it resumes)
        stale, stale_id = start_worker(journal, "--lease", "1", "--poll", "0.05", "--concurrency", "1")
        runs = [client.start(flows.five_logged_steps, log, i) for i in range(20)]
        assert stale.stdout is not None
        wait_for_ticks(stale, 5)
        stale.send_signal(signal.SIGSTOP)
        done_at_stop = committed_steps(journal)
        offset = len(Path(log).read_text().splitlines())
        taker, taker_id = start_worker(journal, "--lease", "1", "--poll", "0.05")
        # the taker takes the paused runtime's runs once its 1 s lease has run out
        taken = threading.Event()
        for _ in range(600):
            with sqlite3.connect(journal) as conn:
                if conn.execute("SELECT count(*) FROM history WHERE kind='taken_over'").fetchone()[0]:
                    taken.set()
                    break
            taken.wait(0.01)
        assert taken.is_set(), "the paused runtime's runs were never taken over"
        stale.send_signal(signal.SIGCONT)
        assert [r.result(timeout=120) for r in runs] == [sum(i * 10 + k for k in range(5)) for i in range(20)]
        # the resumed runtime finds at its next renewal that its lease is gone, and takes part
        # again with a fresh one (its row, deleted by the taker, comes back): then stop it
        back = threading.Event()
        for _ in range(1000):
            with sqlite3.connect(journal) as conn:
                if conn.execute("SELECT 1 FROM runtimes WHERE id=?", (stale_id,)).fetchone():
                    back.set()
                    break
            back.wait(0.01)
        assert back.is_set(), "the resumed runtime never found out that it had lost its lease"
        stale_err = stop_worker(stale)
        stop_worker(taker)
    assert "lost its lease" in stale_err
    after = [line.split()[0] for line in Path(log).read_text().splitlines()[offset:]]
    assert [s for s in after if s in done_at_stop] == [], "a step committed before the pause ran again"
    assert all(o == taker_id for o in owners(journal).values() if o != stale_id)


def test_result_send_and_cancel_across_processes(tmp_path: Path) -> None:
    journal = str(tmp_path / "cross.db")
    with actorflow.Runtime(journal, concurrency=0, poll_interval=0.05) as client:
        worker, worker_id = start_worker(journal)
        done = client.start(flows.add, 20, 22)
        assert done.result(timeout=30) == 42
        assert owners(journal)[done.id] == worker_id
        waiting = client.start(flows.collect_events, "go", 1)
        wait_for_state(client, waiting.id, actorflow.State.WAITING)
        waiting.send("go", "from the client")
        assert waiting.result(timeout=30) == ["from the client"]
        looping = client.start(flows.loop_until_cancelled, "cross-cancel")
        wait_for_state(client, looping.id, actorflow.State.RUNNING)
        assert looping.cancel() is True
        with pytest.raises(actorflow.RunCancelled):
            looping.result(timeout=30)
        streamed = client.start(flows.writes_then_closes)
        assert list(streamed.stream(timeout=30)) == [1]
        stop_worker(worker)


def test_a_named_queue_limit_holds_across_processes(tmp_path: Path) -> None:
    journal, log = str(tmp_path / "queue.db"), str(tmp_path / "queue.log")
    queues = json.dumps({"narrow": 2})
    with actorflow.Runtime(journal, concurrency=0, queues={"narrow": 2}) as client:
        workers = [start_worker(journal, "--queues", queues) for _ in range(2)]
        narrow = flows.queued_work.options(queue="narrow")
        runs = [client.start(narrow, log, i) for i in range(10)]
        assert [r.result(timeout=60) for r in runs] == list(range(10))
        for w, _ in workers:
            stop_worker(w)
    events = sorted((float(ts), kind) for kind, _, ts in (line.split() for line in Path(log).read_text().splitlines()))
    running = peak = 0
    for _, kind in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak <= 2


def test_priorities_order_the_claims(db_path: str, tmp_path: Path) -> None:
    log = str(tmp_path / "order.log")
    with actorflow.Runtime(db_path, concurrency=1, queues={"one": 1}) as rt:
        low = [rt.start(flows.queued_work.options(queue="one", priority=0), log, i) for i in range(4)]
        high = rt.start(flows.queued_work.options(queue="one", priority=10), log, 99)
        for r in [*low, high]:
            r.result(timeout=30)
    starts = [int(line.split()[1]) for line in Path(log).read_text().splitlines() if line.startswith("start")]
    assert starts.index(99) <= 1, starts  # only a run already claimed can go before it


def test_options_are_checked(db_path: str) -> None:
    with pytest.raises(ValueError):
        actorflow.Runtime(db_path, lease=1, poll_interval=1)
    with pytest.raises(ValueError):
        actorflow.Runtime(db_path, queues={"q": 0})
    with pytest.raises(TypeError):
        flows.add.options(queue="")
    with pytest.raises(TypeError):
        flows.add.options(priority="high")  # type: ignore[arg-type]
    assert isinstance(Any, object)


def test_runs_resuming_from_a_wait_respect_their_queue_limit(db_path: str, tmp_path: Path) -> None:
    log = str(tmp_path / "spans.log")
    with actorflow.Runtime(db_path, queues={"one": 1}, passivate_after=0.05, poll_interval=0.05) as rt:
        runs = [rt.start(flows.step_sleep_step.options(queue="one"), log, i) for i in range(4)]
        assert [r.result(timeout=60) for r in runs] == [0, 1, 2, 3]
    events = sorted((float(ts), kind) for kind, _, ts in (line.split() for line in Path(log).read_text().splitlines()))
    running = peak = 0
    for _, kind in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak == 1
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM history WHERE kind='requeued'").fetchone()[0] >= 1


def test_a_lone_runtime_that_lost_its_lease_finishes_its_runs(tmp_path: Path) -> None:
    journal, log = str(tmp_path / "alone.db"), str(tmp_path / "steps.log")
    with actorflow.Runtime(journal, concurrency=0) as client:
        worker, _ = start_worker(journal, "--lease", "1", "--poll", "0.05", "--concurrency", "1")
        run = client.start(flows.five_logged_steps, log, 7)
        wait_for_ticks(worker, 1)
        worker.send_signal(signal.SIGSTOP)
        threading.Event().wait(1.5)  # the pause must outlast the 1 s lease: that is the scenario
        worker.send_signal(signal.SIGCONT)
        assert run.result(timeout=60) == sum(70 + k for k in range(5))
        assert "lost its lease" in stop_worker(worker)


def test_a_full_queue_does_not_hold_up_other_runs(tmp_path: Path) -> None:
    journal, log = str(tmp_path / "hol.db"), str(tmp_path / "q.log")
    with actorflow.Runtime(journal, concurrency=0) as client:  # every run goes through claims
        worker, _ = start_worker(journal, "--queues", json.dumps({"slow": 1}))
        queued = [client.start(flows.queued_work.options(queue="slow"), log, i) for i in range(30)]
        plain = client.start(flows.add, 1, 1)
        assert plain.result(timeout=30) == 2
        finished_before = sum(1 for r in queued if r.status().done)
        assert finished_before < 10, "the plain run waited behind the full queue"
        for r in queued:
            r.result(timeout=60)
        stop_worker(worker)
