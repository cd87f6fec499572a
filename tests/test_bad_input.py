"""Bad input gets a clear, named error, and nothing is written or lost; runtimes open and close cleanly."""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest

import actorflow
from tests import flows
from tests.helpers import run_child

# ------------------------------------------------------------------------- opening a runtime


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"concurrency": True}, TypeError, "concurrency must be an int"),
        ({"concurrency": -1}, ValueError, "concurrency must be >= 0"),
        ({"max_recoveries": -1}, ValueError, "max_recoveries must be >= 0"),
        ({"busy_timeout": -1}, ValueError, "busy_timeout"),
        ({"busy_timeout": "5"}, TypeError, "busy_timeout must be a number"),
        ({"lease": 0}, ValueError, "lease"),
        ({"passivate_after": float("nan")}, ValueError, "passivate_after"),
        ({"durability": "always"}, ValueError, "durability"),
        ({"clock": object()}, TypeError, "clock must have a time"),
        ({"serializer": object()}, TypeError, "serializer must have"),
        ({"queues": {"q": 0}}, ValueError, "queues"),
        ({"queues": ["q"]}, TypeError, "queues must be a dict"),
    ],
)
def test_bad_runtime_options_are_refused_at_open(db_path: str, options: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        actorflow.Runtime(db_path, **options)
    assert not os.path.exists(db_path)  # nothing created


@pytest.mark.parametrize(
    ("path", "error", "match"),
    [
        (123, TypeError, "a journal is a file path"),
        ("", actorflow.JournalError, "path is empty"),
        (":memory:", actorflow.JournalError, "must be a file"),
    ],
)
def test_a_journal_path_that_names_no_file_is_refused(path: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        actorflow.Runtime(path)


def test_a_folder_as_journal_is_refused(tmp_path: Path) -> None:
    with pytest.raises(actorflow.JournalError, match="is a folder"):
        actorflow.Runtime(tmp_path)
    with pytest.raises(actorflow.JournalError, match="is a folder"):
        actorflow.inspect(str(tmp_path))


def test_a_path_object_works(tmp_path: Path) -> None:
    with actorflow.Runtime(tmp_path / "journal.db") as rt:
        assert rt.start(flows.add, 1, 2).result(timeout=10) == 3


@pytest.mark.skipif(not hasattr(os, "setuid"), reason="needs POSIX users")
def test_a_new_journal_in_a_read_only_folder_fails_clearly() -> None:
    folder = tempfile.mkdtemp(prefix="actorflow-rofolder-")
    os.chmod(folder, 0o555)
    code = f"""
        import os, actorflow
        if os.getuid() == 0:
            os.setgid(65534); os.setuid(65534)  # root ignores file modes: drop to nobody
        try:
            actorflow.Runtime(os.path.join({folder!r}, "journal.db"))
        except actorflow.JournalError as exc:
            print("JournalError:", exc)
        print("files:", os.listdir({folder!r}))
    """
    out, err = run_child(code).communicate(timeout=30)
    shutil.rmtree(folder)
    assert "JournalError: cannot create the journal" in out, out + err
    assert "files: []" in out


# ------------------------------------------------------------------------- calls


def test_bad_listing_arguments_are_named(rt: actorflow.Runtime) -> None:
    with actorflow.inspect(rt.path) as view:
        for lister in (rt.list_runs, view.list_runs):
            with pytest.raises(TypeError, match="limit must be an int"):
                lister(limit="x")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="limit must be >= 0"):
                lister(limit=-1)
            with pytest.raises(ValueError, match="the states are: pending, running, waiting, completed"):
                lister(state="bogus")
            assert lister(limit=0) == []


def test_purge_takes_one_state_as_a_string(rt: actorflow.Runtime) -> None:
    rt.start(flows.add, 1, 1).result(timeout=10)
    rt.start(flows.fail, "x").wait(timeout=10)
    assert rt.purge(states="completed") == 1
    assert [s.state for s in rt.list_runs()] == [actorflow.State.FAILED]
    with pytest.raises(ValueError, match="only finished runs"):
        rt.purge(states="running")
    with pytest.raises(ValueError, match="not a run state"):
        rt.purge(states="done")


def test_a_closed_view_says_so(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.add, 1, 1)
    run.result(timeout=10)
    view = actorflow.inspect(rt.path)
    view.close()
    view.close()  # again: nothing
    with pytest.raises(actorflow.JournalError, match="was closed"):
        view.status(run.id)
    with pytest.raises(actorflow.JournalError, match="was closed"):
        view.list_runs()
    assert "closed" in repr(view)


def test_bad_timeouts_are_refused(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.add, 1, 1)
    assert run.result(timeout=10) == 2
    with pytest.raises(TypeError, match="timeout must be a number"):
        rt.wait(run.id, timeout="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        run.result(timeout=-1)  # finished already: still refused, as documented
    with pytest.raises(ValueError, match="timeout"):
        run.wait(timeout=float("nan"))


def test_sleeping_forever_is_refused_in_the_flow(rt: actorflow.Runtime) -> None:
    @actorflow.flow
    def sleeps(ctx: actorflow.Context) -> list[str]:
        out = []
        for value in (float("inf"), float("nan"), dt.timedelta(days=365 * 200)):
            try:
                ctx.sleep(value)
            except ValueError as exc:
                out.append(str(exc))
        return out

    messages = rt.start(sleeps).result(timeout=10)
    assert len(messages) == 3 and all("duration" in m for m in messages)


# ------------------------------------------------------------------------- opening and closing cleanly


def test_open_and_close_log_nothing_alarming(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="actorflow")
    for i in range(8):
        with actorflow.Runtime(str(tmp_path / f"j{i}.db")):
            pass
    rt = actorflow.Runtime(str(tmp_path / "idle.db"))
    rt.shutdown(timeout=0)
    alarming = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert alarming == [], [r.getMessage() for r in alarming]


def test_a_program_that_exits_without_shutdown_leaves_no_stale_runtime(db_path: str) -> None:
    code = f"""
        import actorflow
        from tests import flows
        rt = actorflow.Runtime({db_path!r})
        rt.start(flows.sleeper, 3600)
        rt.start(flows.add, 1, 2).result(timeout=10)
        print("started", flush=True)
    """  # and exits without rt.shutdown()
    out, err = run_child(code).communicate(timeout=60)
    assert "started" in out, err
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM runtimes").fetchone()[0] == 0
        owners = conn.execute("SELECT owner FROM runs WHERE state IN ('running', 'waiting', 'pending')").fetchall()
    assert owners == [(None,)]  # the sleeping run was released, for the next runtime to take at once
