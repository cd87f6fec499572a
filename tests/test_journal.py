"""The journal: reopening, crash recovery, locked/read-only/damaged files, read-only inspection."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import sqlite3
import tempfile
import threading
from pathlib import Path
from typing import Any

import pykka
import pytest

import actorflow
from actorflow.messages import CancelRun, StartRun
from tests import flows
from tests.flows import arrived, gate
from tests.helpers import cut_off, run_child


def test_reopening_after_a_normal_shutdown_shows_every_run(db_path: str) -> None:
    with actorflow.Runtime(db_path) as rt:
        ok = rt.start(flows.greet, "ada")
        bad = rt.start(flows.fail, "nope")
        ok.result(timeout=10)
        bad.wait(timeout=10)
    with actorflow.Runtime(db_path) as rt:
        assert rt.get_run(ok.id).result(timeout=10) == "hello ada"
        with pytest.raises(actorflow.RunFailed) as info:
            rt.get_run(bad.id).result(timeout=10)
        assert info.value.error.message == "nope"
        assert {s.id for s in rt.list_runs()} == {ok.id, bad.id}


def test_a_run_cut_off_by_shutdown_starts_again_at_the_next_open(db_path: str) -> None:
    run_id = cut_off(db_path, flows.loop_until_cancelled, "cut-off", "cut-off")
    gate("cut-off").set()
    with actorflow.Runtime(db_path) as rt:
        assert rt.get_run(run_id).result(timeout=10) == "not cancelled"
        assert rt.status(run_id).attempt == 2


def test_sigkill_loses_no_committed_run_and_unfinished_runs_resume(db_path: str) -> None:
    child = run_child(
        f"""
        import threading, actorflow
        from tests import flows
        rt = actorflow.Runtime({db_path!r}, concurrency=2)
        for i in range(3):
            h = rt.start(flows.add, i, 100)
            h.result(timeout=30)
            print("done", h.id, flush=True)
        for i in range(12):
            print("started", rt.start(flows.stuck_in_doomed_process, i).id, flush=True)
        print("ready", flush=True)
        threading.Event().wait()
        """,
        env={"ACTORFLOW_TEST_DOOMED": "1"},
    )
    done, started = [], []
    assert child.stdout is not None
    for line in child.stdout:
        kind, _, run_id = line.strip().partition(" ")
        if kind == "ready":
            break
        (done if kind == "done" else started).append(run_id)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert len(done) == 3 and len(started) == 12, child.stderr.read() if child.stderr else ""

    with actorflow.inspect(db_path) as view:  # what the killed process left
        states = {rid: view.status(rid).state for rid in started}
        assert sorted(s.value for s in states.values()) == ["pending"] * 10 + ["running"] * 2
    with actorflow.Runtime(db_path) as rt:
        for i, rid in enumerate(done):
            assert rt.get_run(rid).result(timeout=10) == i + 100
        for i, rid in enumerate(started):
            assert rt.get_run(rid).result(timeout=30) == i
            status = rt.status(rid)
            assert status.attempt == (2 if states[rid] is actorflow.State.RUNNING else 1)


def test_spawn_by_message_from_a_user_actor(rt: actorflow.Runtime) -> None:
    class OrderService(pykka.ThreadingActor):
        """A service actor that starts runs by messaging the supervisor."""

        def __init__(self, supervisor: pykka.ActorRef[Any]) -> None:
            super().__init__()
            self.supervisor = supervisor

        def on_receive(self, message: Any) -> Any:
            kind, value = message
            if kind == "ask":
                return self.supervisor.ask(StartRun(flows.add, args=(value, 1)))
            if kind == "tell":
                self.supervisor.tell(StartRun(flows.add, args=(value, 1), idempotency_key=f"told-{value}"))
                return None
            if kind == "bad":
                return self.supervisor.ask(StartRun(flows.echo, args=(threading.Lock(),)))
            if kind == "cancel":
                return self.supervisor.ask(CancelRun(value))
            return None

    service = OrderService.start(rt.supervisor)
    try:
        run_id = service.ask(("ask", 41))
        assert isinstance(run_id, str) and rt.get_run(run_id).result(timeout=10) == 42
        service.ask(("tell", 9))
        told = rt.start(flows.add.options(idempotency_key="told-9"), 0, 0)  # same key: the told run
        assert told.result(timeout=10) == 10
        with pytest.raises(actorflow.SerializationError):
            service.ask(("bad", None))
        assert service.ask(("cancel", run_id)) is False
        # a bad told message is logged; the supervisor carries on
        rt.supervisor.tell(StartRun(flows.echo, args=(threading.Lock(),)))
        assert rt.start(flows.add, 1, 1).result(timeout=10) == 2
    finally:
        service.stop()


def test_locked_database_gives_a_clear_error_and_loses_nothing(db_path: str) -> None:
    with actorflow.Runtime(db_path, busy_timeout=0.2) as rt:
        done = rt.start(flows.add, 1, 1)
        done.result(timeout=10)
        locker = sqlite3.connect(db_path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(actorflow.JournalError, match="locked"):
                rt.start(flows.add, 2, 2)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert rt.start(flows.add, 3, 3).result(timeout=10) == 6
        assert len(rt.list_runs()) == 2


def test_opening_a_locked_database_fails_clearly(db_path: str) -> None:
    actorflow.Runtime(db_path).shutdown()
    locker = sqlite3.connect(db_path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(actorflow.JournalError, match="locked"):
            actorflow.Runtime(db_path, busy_timeout=0.1)
    finally:
        locker.execute("ROLLBACK")
        locker.close()


@pytest.mark.skipif(not hasattr(os, "setuid"), reason="needs POSIX users")
def test_read_only_database_fails_clearly() -> None:
    folder = tempfile.mkdtemp(prefix="actorflow-ro-")  # reachable by the unprivileged child
    os.chmod(folder, 0o755)
    db_path = os.path.join(folder, "journal.db")
    with actorflow.Runtime(db_path) as rt:
        run_id = rt.start(flows.add, 1, 1).id
        rt.result(run_id, timeout=10)
    os.chmod(db_path, 0o444)
    code = f"""
        import os, actorflow
        if os.getuid() == 0:
            os.setgid(65534); os.setuid(65534)  # root ignores file modes: drop to nobody
        try:
            actorflow.Runtime({db_path!r})
        except actorflow.JournalError as exc:
            print("JournalError:", exc)
        print("files:", sorted(os.listdir({folder!r})))
        with actorflow.inspect({db_path!r}) as view:
            print("result:", view.result({run_id!r}))
    """
    out, err = run_child(code).communicate(timeout=30)
    assert "JournalError:" in out, err
    assert "read-only" in out, out
    assert "files: ['journal.db', 'journal.db.key']" in out, out  # no -wal or -shm left behind
    assert "result: Unverified(2)" in out, err  # the key file is the owner's only: not verified
    os.chmod(db_path + ".key", 0o444)  # a reader given the key verifies
    out, err = run_child(code).communicate(timeout=30)
    shutil.rmtree(folder)
    assert "result: 2" in out, err


def test_not_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(actorflow.JournalError, match="not an actorflow journal"):
        actorflow.Runtime(str(path))
    with pytest.raises(actorflow.JournalError):
        actorflow.inspect(str(tmp_path / "missing.db"))
    with pytest.raises(actorflow.JournalError, match="does not exist"):
        actorflow.Runtime(str(tmp_path / "no" / "such" / "dir.db"))


def test_tampered_rows_give_a_corrupt_record_error_naming_run_and_column(rt: actorflow.Runtime) -> None:
    a = rt.start(flows.add, 1, 1)
    b = rt.start(flows.add, 2, 2)
    c = rt.start(flows.add, 3, 3)
    for h in (a, b, c):
        h.result(timeout=10)
    with sqlite3.connect(rt.path) as conn:
        conn.execute("UPDATE runs SET result='{\"$nope\": 1' WHERE id=?", (a.id,))
        conn.execute("UPDATE runs SET state='exploded' WHERE id=?", (b.id,))
    with pytest.raises(actorflow.CorruptRecord) as info:
        rt.status(a.id)
    assert info.value.run_id == a.id and info.value.column == "result"
    with pytest.raises(actorflow.CorruptRecord) as info:
        rt.get_run(b.id).status()
    assert info.value.column == "state"
    assert rt.status(c.id).result == 6  # the other rows are unharmed
    assert isinstance(info.value, actorflow.JournalError)


class PickleSerializer:
    name = "pickle"

    def dumps(self, value: Any) -> bytes:
        try:
            return pickle.dumps(value)
        except Exception as exc:
            raise actorflow.SerializationError(str(exc)) from exc

    def loads(self, data: str | bytes) -> Any:
        assert isinstance(data, bytes)
        return pickle.loads(data)  # noqa: S301 - the test's own data


def test_pluggable_serializer_and_a_mismatch_is_reported(db_path: str) -> None:
    with actorflow.Runtime(db_path, serializer=PickleSerializer()) as rt:
        run = rt.start(flows.echo, (1, 2), {"a": {3}})
        assert run.result(timeout=10) == {"args": ((1, 2), {"a": {3}}), "kwargs": {}}
        unfinished = rt.start(flows.loop_until_cancelled, "other-codec")
        assert arrived("other-codec").wait(10)
        rt.shutdown(timeout=0.05)
    gate("other-codec").set()
    with actorflow.Runtime(db_path) as rt:  # the default serializer: JSON
        with pytest.raises(actorflow.SerializerMismatch, match="'pickle'") as info:
            rt.status(run.id)
        assert isinstance(info.value, actorflow.JournalError) and info.value.run_id == run.id
    with actorflow.inspect(db_path, serializer=PickleSerializer()) as view:
        # not resumed (and so not failed) by the runtime that could not read it
        assert view.status(unfinished.id).state is actorflow.State.RUNNING
    with actorflow.Runtime(db_path, serializer=PickleSerializer()) as rt:
        assert rt.result(unfinished.id, timeout=10) == "not cancelled"


def test_inspect_reads_a_journal_a_live_runtime_owns(rt: actorflow.Runtime) -> None:
    done = rt.start(flows.add, 20, 22)
    done.result(timeout=10)
    held = rt.start(flows.hold, "inspected")
    assert arrived("inspected").wait(10)
    with actorflow.inspect(rt.path) as view:
        assert view.result(done.id) == 42
        assert view.status(held.id).state is actorflow.State.RUNNING
        with pytest.raises(LookupError, match="not finished"):
            view.result(held.id)
        with pytest.raises(actorflow.RunNotFound):
            view.status("run_missing")
        assert view.counts() == {"completed": 1, "running": 1}
        assert "completed 1" in repr(view)
        # the view takes no write lock: the runtime keeps writing while it is open
        gate("inspected").set()
        assert held.result(timeout=10) is None
        assert rt.start(flows.add, 1, 1).result(timeout=10) == 2
        assert len(view.list_runs()) == 3


def test_a_repeated_run_id_never_executes_the_flow_twice(rt: actorflow.Runtime, tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    first = rt.supervisor.ask(StartRun(flows.record, args=(log, 1), run_id="run_fixed"))
    assert rt.result(first, timeout=10) == 1
    again = rt.supervisor.ask(StartRun(flows.record, args=(log, 2), run_id="run_fixed"))
    assert again == "run_fixed" and rt.result(again, timeout=10) == 1
    assert rt.start(flows.add, 0, 0).result(timeout=10) == 0  # whatever ran has ended
    assert Path(log).read_text().count("run_fixed") == 1


def test_an_admission_starts_its_run_once_whether_answered_before_or_after() -> None:
    # an admitted run's execution loop is started by this callback: exactly once, and also
    # when the insert failed (the execution then ends without running the flow)
    from actorflow._future import Admission

    calls: list[str] = []
    late = Admission()
    late.then(lambda: calls.append("late"))
    assert calls == []
    late.set(True)
    early = Admission()
    early.set(False)
    early.then(lambda: calls.append("early"))
    failed = Admission()
    failed.then(lambda: calls.append("failed"))
    failed.set_exception(exc_info=(actorflow.JournalError, actorflow.JournalError("locked"), None))
    assert calls == ["late", "early", "failed"]
    assert late.get() is True and early.get() is False
    with pytest.raises(actorflow.JournalError):
        failed.get()
    with pytest.raises(RuntimeError):
        late.set(True)  # answered once


def test_a_handle_never_answers_with_an_end_whose_commit_was_undone(db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # a write that fails inside a group is undone alone; what it had queued for after the
    # commit (here: the final row for the handle start() returned) must be dropped with it
    from actorflow.journal import Journal

    failed = threading.Event()
    finish = Journal._finish_run

    def refuse_the_end(self: Any, msg: Any) -> Any:
        outcome = finish(self, msg)  # queues the final row for the handle, then the write fails
        if msg.state == "completed":
            failed.set()
            raise sqlite3.IntegrityError("refused by the test")
        return outcome

    monkeypatch.setattr(Journal, "_finish_run", refuse_the_end)  # before the journal actor binds its handlers
    with actorflow.Runtime(db_path) as rt:
        run = rt.start(flows.add, 40, 2)
        assert failed.wait(10)
        assert rt.purge(older_than="1h") == 0  # a round trip through the journal: the group is done
        assert run._done is not None and not run._done.done
        assert run.status().state is actorflow.State.RUNNING  # the end was not committed
        with pytest.raises(TimeoutError):
            run.result(timeout=0)  # it says nothing of an end that never was
