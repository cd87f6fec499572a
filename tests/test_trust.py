"""A journal you can trust: signed payloads, private files, the key, and values planted by an attacker.

The tamper tests edit the SQLite file with the stdlib ``sqlite3`` module, as anyone who can
write the file could; a planted pickle would create a marker file if it were ever unpickled.
"""

from __future__ import annotations

import base64
import os
import pickle
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import actorflow
from actorflow.signing import Signer
from tests import flows
from tests.helpers import cut_off, run_child


class _Plant:
    """Unpickling this creates the marker file: the attack."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (Path.touch, (Path(self.path),))


def planted(marker: Path) -> str:
    """A tagged-JSON value whose unpickling would create ``marker``."""
    blob = base64.b64encode(pickle.dumps(_Plant(str(marker)))).decode()
    return '{"$pickle":"' + blob + '"}'


def planted_error(marker: Path) -> str:
    blob = base64.b64encode(pickle.dumps(_Plant(str(marker)))).decode()
    return '{"type":"ValueError","message":"forged","traceback":"","pickle":"' + blob + '"}'


def forge(stored: str, value: str) -> str:
    """Keep a stored value's signature and swap its content: what an attacker without the key can do."""
    return stored[: len(stored) - len(Signer.unchecked(stored))] + value


def sql(path: str, statement: str, *params: Any) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(statement, params)


def column(path: str, statement: str, *params: Any) -> Any:
    with sqlite3.connect(path) as conn:
        return conn.execute(statement, params).fetchone()[0]


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a planted pickle was unpickled"


# ------------------------------------------------------------------------- tampering


def fails_tampered(db_path: str, run_id: str) -> pytest.ExceptionInfo[actorflow.RunFailed]:
    """Reopen the journal and check that the run fails with TamperedRecord; return the failure."""
    with actorflow.Runtime(db_path) as rt:
        with pytest.raises(actorflow.RunFailed) as info:
            rt.result(run_id, timeout=10)
    assert info.value.error.type == "actorflow.errors.TamperedRecord"
    return info


def test_an_edited_result_raises_tampered_record_naming_run_and_field(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.add, 1, 1)
    assert run.result(timeout=10) == 2
    stored = column(rt.path, "SELECT result FROM runs WHERE id=?", run.id)
    sql(rt.path, "UPDATE runs SET result=? WHERE id=?", forge(stored, '"hello eve"'), run.id)
    with pytest.raises(actorflow.TamperedRecord) as info:
        rt.result(run.id, timeout=10)
    assert info.value.run_id == run.id and info.value.column == "result"
    assert isinstance(info.value, actorflow.CorruptRecord)
    with pytest.raises(actorflow.TamperedRecord):
        rt.status(run.id)
    sql(rt.path, "UPDATE runs SET result='\"hello eve\"' WHERE id=?", run.id)  # no signature at all
    with pytest.raises(actorflow.TamperedRecord):
        rt.status(run.id)


def test_a_value_copied_from_another_run_does_not_verify(rt: actorflow.Runtime) -> None:
    a, b = rt.start(flows.add, 1, 1), rt.start(flows.add, 2, 2)
    assert (a.result(timeout=10), b.result(timeout=10)) == (2, 4)
    sql(rt.path, "UPDATE runs SET result=(SELECT result FROM runs WHERE id=?) WHERE id=?", a.id, b.id)
    with pytest.raises(actorflow.TamperedRecord) as info:
        rt.status(b.id)
    assert info.value.run_id == b.id
    assert rt.status(a.id).result == 2


def test_one_tampered_row_spoils_only_its_own_run_in_listings(rt: actorflow.Runtime, marker: Path) -> None:
    runs = [rt.start(flows.add, i, i) for i in range(3)]
    for run in runs:
        run.result(timeout=10)
    sql(rt.path, "UPDATE runs SET result=? WHERE id=?", planted(marker), runs[1].id)
    listed = {s.id: s for s in rt.list_runs()}
    assert listed[runs[0].id].result == 0 and listed[runs[2].id].result == 4
    bad = listed[runs[1].id]
    assert bad.result is None and bad.error is not None and "TamperedRecord" in bad.error.type
    assert "TamperedRecord" in repr(rt.list_runs())  # the table shows it in the result column
    with actorflow.inspect(rt.path) as view:
        assert {s.id for s in view.list_runs()} == {r.id for r in runs}


def test_a_planted_pickle_is_never_unpickled_anywhere(rt: actorflow.Runtime, marker: Path, tmp_path: Path) -> None:
    run = rt.start(flows.chunks_and_steps)
    assert run.result(timeout=10) == 42
    failing = rt.start(flows.fail, "x")
    failing.wait(timeout=10)
    path = rt.path
    sql(path, "UPDATE runs SET result=?, progress=?, metadata=? WHERE id=?", planted(marker), planted(marker), planted(marker), run.id)
    sql(path, "UPDATE runs SET error=? WHERE id=?", planted_error(marker), failing.id)
    sql(path, "UPDATE steps SET result=?, error=? WHERE run_id=?", planted(marker), planted_error(marker), run.id)
    sql(path, "UPDATE chunks SET data=? WHERE run_id=?", planted(marker), run.id)
    for call in (
        lambda: rt.status(run.id),
        lambda: rt.result(run.id),
        lambda: rt.steps(run.id),
        lambda: list(rt.stream(run.id)),
        lambda: rt.result(failing.id),
        lambda: rt.status(failing.id),
    ):
        with pytest.raises(actorflow.TamperedRecord):
            call()
    rt.list_runs()
    rt.tree(run.id)
    with actorflow.inspect(path) as view:  # with the key: checked, refused
        assert view.verified
        for call in (lambda: view.status(run.id), lambda: view.result(failing.id), lambda: view.steps(run.id)):
            with pytest.raises(actorflow.TamperedRecord):
                call()
        view.list_runs()
    os.rename(path + ".key", tmp_path / "key.aside")  # without the key: shown, never unpickled
    try:
        with actorflow.inspect(path) as view:
            assert not view.verified
            status = view.status(run.id)
            assert status.result == actorflow.Unverified(actorflow.Opaque("pickle", status.result.value.detail))
            assert isinstance(status.progress.value, actorflow.Opaque)
            failed = view.status(failing.id)
            assert failed.error is not None and not failed.error.verified and "(unverified)" in str(failed.error)
            with pytest.raises(actorflow.RunFailed) as info:
                view.result(failing.id)
            assert info.value.__cause__ is None  # the exception is never rebuilt without the key
            view.steps(run.id)
            view.list_runs()
            view.tree(run.id)
    finally:
        os.rename(tmp_path / "key.aside", path + ".key")


def test_a_view_without_the_key_shows_plain_values_as_unverified(rt: actorflow.Runtime, tmp_path: Path) -> None:
    run = rt.start(flows.echo, 1, when=flows.Order(1, ("a",)))
    run.result(timeout=10)
    os.rename(rt.path + ".key", tmp_path / "key.aside")
    try:
        with actorflow.inspect(rt.path) as view:
            result = view.status(run.id).result
        assert isinstance(result, actorflow.Unverified)
        assert result.value["args"] == (1,)  # plain values are shown
        assert result.value["kwargs"]["when"] == actorflow.Opaque("dataclass", "tests.flows:Order")  # never imported
    finally:
        os.rename(tmp_path / "key.aside", rt.path + ".key")


def test_tampered_arguments_fail_the_run_instead_of_executing_it(db_path: str, marker: Path) -> None:
    with actorflow.Runtime(db_path, concurrency=0) as client:  # started, not executed
        run_id = client.start(flows.shouts, "hi").id
    sql(db_path, "UPDATE runs SET args=? WHERE id=?", f"[{planted(marker)}]", run_id)
    info = fails_tampered(db_path, run_id)
    assert "'args'" in info.value.error.message
    assert flows.calls.get("shout") is None


def test_a_tampered_flow_stored_by_value_is_never_unpickled(db_path: str, marker: Path) -> None:
    def local_flow(ctx: actorflow.Context) -> str:
        return "ran"

    with actorflow.Runtime(db_path, concurrency=0) as client:
        run_id = client.start(local_flow).id
    blob = pickle.dumps((_Plant(str(marker)), {}, {}))
    stored = column(db_path, "SELECT flow_blob FROM runs WHERE id=?", run_id)
    sql(db_path, "UPDATE runs SET flow_blob=? WHERE id=?", stored[:36] + blob, run_id)  # old signature, new body
    fails_tampered(db_path, run_id)


def test_a_tampered_step_result_fails_the_replay(db_path: str, marker: Path) -> None:
    run_id = cut_off(db_path, flows.two_steps, "between", 5, "between")
    flows.gate("between").set()
    sql(db_path, "UPDATE steps SET result=? WHERE run_id=? AND seq=1", planted(marker), run_id)
    info = fails_tampered(db_path, run_id)
    assert "'step 1'" in info.value.error.message


def test_a_tampered_event_is_never_handed_to_the_flow(db_path: str, marker: Path) -> None:
    with actorflow.Runtime(db_path, concurrency=0) as client:
        run_id = client.start(flows.collect_events, "news", 1).id
        client.send(run_id, "news", "the real news")
    sql(db_path, "UPDATE events SET payload=? WHERE run_id=?", planted(marker), run_id)
    fails_tampered(db_path, run_id)


def test_events_and_hooks_still_arrive_signed(rt: actorflow.Runtime) -> None:
    events = rt.start(flows.collect_events, "news", 2)
    events.send("news", {"a": 1})
    events.send("news", (1, 2))
    assert events.result(timeout=10) == [{"a": 1}, (1, 2)]
    hooked = rt.start(flows.hooked, "tok-1", 1)
    assert next(iter(hooked.stream(timeout=10))) == "tok-1"
    rt.resume_hook("tok-1", "approved")
    assert hooked.result(timeout=10) == ["tok-1", ["approved"]]


# ------------------------------------------------------------------------- the key


def test_the_key_file_is_created_once_private_and_shared(db_path: str) -> None:
    with actorflow.Runtime(db_path) as rt:
        assert rt.start(flows.add, 1, 2).result(timeout=10) == 3
    key_file = Path(db_path + ".key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text()
    assert len(bytes.fromhex(key.strip())) == 32
    with actorflow.Runtime(db_path) as rt:  # reads the same key: the old run verifies
        assert rt.list_runs()[0].result == 3
    assert key_file.read_text() == key


def test_a_secret_from_the_environment_or_the_call(db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTORFLOW_SECRET", "s" * 32)
    with actorflow.Runtime(db_path) as rt:
        run_id = rt.start(flows.add, 2, 2).id
        rt.result(run_id, timeout=10)
    assert not os.path.exists(db_path + ".key")
    monkeypatch.delenv("ACTORFLOW_SECRET")
    with pytest.raises(actorflow.JournalError, match="no key file"):
        actorflow.Runtime(db_path)
    with pytest.raises(actorflow.JournalError, match="another key"):
        actorflow.Runtime(db_path, secret="t" * 32)
    with actorflow.Runtime(db_path, secret="s" * 32) as rt:
        assert rt.result(run_id) == 4
    with actorflow.inspect(db_path, secret="s" * 32) as view:
        assert view.result(run_id) == 4
    with pytest.raises(actorflow.JournalError, match="another key"):
        actorflow.inspect(db_path, secret="t" * 32)
    with pytest.raises(ValueError, match="16 bytes"):
        actorflow.Runtime(db_path, secret="short")
    with pytest.raises(TypeError):
        actorflow.Runtime(db_path, secret=12345678901234567890)  # type: ignore[arg-type]


def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = str(tmp_path / "journal.db")
        with actorflow.Runtime(path) as rt:
            rt.start(flows.add, 1, 1).result(timeout=10)
            modes = {name: stat.S_IMODE(os.stat(tmp_path / name).st_mode) for name in os.listdir(tmp_path)}
        assert set(modes) == {"journal.db", "journal.db-wal", "journal.db-shm", "journal.db.key"}
        assert set(modes.values()) == {0o600}, modes
        shared = str(tmp_path / "shared.db")
        with actorflow.Runtime(shared, file_mode=0o660):
            assert stat.S_IMODE(os.stat(shared).st_mode) == 0o660
            assert stat.S_IMODE(os.stat(shared + "-wal").st_mode) == 0o660
        assert stat.S_IMODE(os.stat(shared + ".key").st_mode) == 0o660
    finally:
        os.umask(old)
    with pytest.raises(ValueError, match="file_mode"):
        actorflow.Runtime(str(tmp_path / "x.db"), file_mode=0o400)


# ------------------------------------------------------------------------- journals that are not ours


def test_another_applications_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = str(tmp_path / "app.db")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('ada')")
    before = Path(path).read_bytes()
    with pytest.raises(actorflow.JournalError, match="not an actorflow journal"):
        actorflow.Runtime(path)
    assert Path(path).read_bytes() == before  # no tables added, not switched to WAL
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_journal_of_the_unsigned_version_is_refused_with_what_to_do(db_path: str) -> None:
    with actorflow.Runtime(db_path):
        pass
    sql(db_path, "UPDATE meta SET value='1' WHERE key='schema_version'")
    with pytest.raises(actorflow.JournalError, match="actorflow 0.1.*not signed"):
        actorflow.Runtime(db_path)


# ------------------------------------------------------------------------- validation at start


def test_arguments_that_do_not_fit_the_signature_raise_at_the_call(rt: actorflow.Runtime) -> None:
    with pytest.raises(TypeError, match="add"):
        rt.start(flows.add, 1)
    with pytest.raises(TypeError, match="add"):
        rt.start(flows.add, 1, 2, 3)
    with pytest.raises(TypeError, match="c"):
        rt.start(flows.add, 1, 2, c=3)
    with pytest.raises(TypeError, match="is a step, not a flow"):
        rt.start(flows.double, 2)  # type: ignore[arg-type]
    assert rt.list_runs() == []  # nothing was written
    assert rt.start(flows.add, 1, b=2).result(timeout=10) == 3


def test_a_validator_refuses_a_start_before_anything_is_written(rt: actorflow.Runtime) -> None:
    with pytest.raises(actorflow.InvalidInput, match="must be >= 0") as info:
        rt.start(flows.add_positive, -1, 2)
    assert isinstance(info.value, ValueError) and info.value.flow == "add_positive"
    assert rt.list_runs() == []
    assert rt.start(flows.add_positive, 1, 2).result(timeout=10) == 3


def test_a_pydantic_model_validates_converts_and_is_stored_as_json(rt: actorflow.Runtime) -> None:
    with pytest.raises(actorflow.InvalidInput, match="age"):
        rt.start(flows.signup, "ada@example.org", -3)
    with pytest.raises(actorflow.InvalidInput):
        rt.start(flows.signup, "ada@example.org", "not-a-number")
    assert rt.list_runs() == []
    run = rt.start(flows.signup, "ada@example.org", "36")
    assert run.result(timeout=10) == flows.Signup(email="ada@example.org", age=36)
    args = Signer.unchecked(column(rt.path, "SELECT args FROM runs WHERE id=?", run.id))
    assert args == '["ada@example.org",36]'  # converted before it was stored
    result = Signer.unchecked(column(rt.path, "SELECT result FROM runs WHERE id=?", run.id))
    assert result == '{"$model":["tests.flows:Signup",{"email":"ada@example.org","age":36}]}'
    model = flows.Signup(email="b@example.org", age=1)
    assert rt.start(flows.echo_model, model).result(timeout=10) == model


def test_child_starts_are_checked_in_the_parent(rt: actorflow.Runtime) -> None:
    @actorflow.flow
    def parent(ctx: actorflow.Context) -> str:
        try:
            ctx.start(flows.add, 1)
        except TypeError as exc:
            return f"refused: {exc}"
        return "started"

    assert rt.start(parent).result(timeout=10).startswith("refused: add()")


# ------------------------------------------------------------------------- tracebacks


def test_a_flow_defined_in_a_script_keeps_its_file_and_line_in_every_process(tmp_path: Path) -> None:
    script = tmp_path / "my_script.py"
    journal = str(tmp_path / "journal.db")
    script.write_text(
        "import sys, actorflow\n"
        "\n"
        "@actorflow.flow\n"
        "def explode(ctx, n):\n"
        "    raise ValueError(f'exploded {n}')  # the line to find\n"
        "\n"
        "with actorflow.Runtime(sys.argv[1], concurrency=int(sys.argv[2])) as rt:\n"
        "    run = rt.start(explode, 1)\n"
        "    if rt._concurrency:\n"
        "        status = run.wait(timeout=30)\n"
        "        print(status.error.traceback)\n"
        "    else:\n"
        "        print(run.id)\n"
    )
    out, err = run_child(f"import runpy, sys; sys.argv = ['x', {journal!r}, '4']; runpy.run_path({str(script)!r}, run_name='__main__')").communicate(timeout=60)
    assert f'File "{script}", line 5, in explode' in out, out + err
    assert "the line to find" in out
    # a run started by a script whose file is gone, executed by another process
    out, err = run_child(f"import runpy, sys; sys.argv = ['x', {journal!r}, '0']; runpy.run_path({str(script)!r}, run_name='__main__')").communicate(timeout=60)
    run_id = out.strip()
    script.unlink()
    code = f"""
        import actorflow
        with actorflow.Runtime({journal!r}) as rt:
            print(rt.wait({run_id!r}, timeout=30).error.traceback)
    """
    out, err = run_child(code).communicate(timeout=60)
    assert f'File "{script}", line 5, in explode' in out, out + err
    assert "the line to find" in out


# ------------------------------------------------------------------------- threads and slots


def test_a_step_called_from_a_thread_the_flow_started_raises(rt: actorflow.Runtime) -> None:
    with pytest.raises(actorflow.RunFailed) as info:
        rt.start(flows.step_in_pool, "hi").result(timeout=10)
    assert "a thread that a flow started" in info.value.error.message and "ThreadPoolExecutor" in info.value.error.message
    assert flows.shout("outside any run") == "OUTSIDE ANY RUN"  # a plain call elsewhere


def test_a_copied_run_context_in_another_thread_raises(rt: actorflow.Runtime) -> None:
    @actorflow.flow
    def copies_context(ctx: actorflow.Context) -> str:
        import contextvars
        import threading

        outcome: list[str] = []
        context = contextvars.copy_context()

        def body() -> None:
            try:
                flows.shout("x")
                outcome.append("ran")
            except actorflow.ActorflowError as exc:
                outcome.append(str(exc))

        thread = threading.Thread(target=context.run, args=(body,))
        thread.start()
        thread.join()
        return outcome[0]

    assert "from another thread" in rt.start(copies_context).result(timeout=10)


def test_blocking_on_another_run_while_holding_the_only_slot_is_refused_at_once(db_path: str) -> None:
    with actorflow.Runtime(db_path, concurrency=1) as rt:
        flows.RUNTIMES[db_path] = rt
        try:
            with pytest.raises(actorflow.RunFailed) as info:
                rt.start(flows.blocks_on_other_run, db_path).result(timeout=20)
        finally:
            del flows.RUNTIMES[db_path]
    assert "would never execute" in info.value.error.message


def test_blocking_on_another_run_with_a_slot_free_works(rt: actorflow.Runtime) -> None:
    flows.RUNTIMES[rt.path] = rt
    try:
        assert rt.start(flows.blocks_on_other_run, rt.path).result(timeout=20) == 3
    finally:
        del flows.RUNTIMES[rt.path]


def test_the_fast_signature_check_agrees_with_inspect_bind() -> None:
    import inspect

    from actorflow.flows import _Shape

    def f1(ctx, a, b): ...  # type: ignore[no-untyped-def]
    def f2(ctx, a, b=2, c=3): ...  # type: ignore[no-untyped-def]
    def f3(ctx, a, *rest, k=1): ...  # type: ignore[no-untyped-def]
    def f4(ctx, a, /, b, **kw): ...  # type: ignore[no-untyped-def]

    calls = [((), {}), ((1,), {}), ((1, 2), {}), ((1, 2, 3), {}), ((1, 2, 3, 4), {}), ((1,), {"b": 2}),
             ((1,), {"a": 2}), ((), {"a": 1, "b": 2}), ((1,), {"c": 3}), ((1,), {"z": 0}), ((1, 2), {"b": 3}),
             ((), {"b": 2})]  # fmt: skip
    for fn in (f1, f2, f3, f4):
        sig = inspect.signature(fn)
        shape = _Shape(sig)
        for args, kwargs in calls:
            try:
                sig.bind(None, *args, **kwargs)
                fits = True
            except TypeError:
                fits = False
            if shape.fits(args, kwargs):
                assert fits, (fn.__name__, args, kwargs)
            if shape.simple:
                assert shape.fits(args, kwargs) == fits, (fn.__name__, args, kwargs)


# ------------------------------------------------------------------------- found in review: more ways to tamper


def test_a_changed_flow_reference_is_refused_before_anything_is_imported(
    db_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "evilmod.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\ndef x(ctx, name): return 'evil'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with actorflow.Runtime(db_path, concurrency=0) as client:
        run_id = client.start(flows.greet, "alice").id
    sql(db_path, "UPDATE runs SET flow_ref='evilmod:x' WHERE id=?", run_id)
    fails_tampered(db_path, run_id)
    assert not (tmp_path / "imported").exists()


def test_emptied_or_forged_rows_do_not_pass_for_none(db_path: str) -> None:
    run_id = cut_off(db_path, flows.two_steps, "between", 5, "between")
    flows.gate("between").set()
    sql(db_path, "UPDATE steps SET result=NULL WHERE run_id=? AND seq=1", run_id)  # a completed step, emptied
    with actorflow.Runtime(db_path) as rt:
        with pytest.raises(actorflow.RunFailed) as info:
            rt.result(run_id, timeout=10)
        assert info.value.error.type == "actorflow.errors.TamperedRecord"
        failed = rt.start(flows.fail, "x")
        failed.wait(timeout=10)
        sql(db_path, "UPDATE runs SET state='completed', error=NULL, result=NULL WHERE id=?", failed.id)
        with pytest.raises(actorflow.TamperedRecord):
            rt.result(failed.id)
        sql(db_path, "UPDATE runs SET state='failed', error=NULL WHERE id=?", failed.id)
        with pytest.raises(actorflow.TamperedRecord):
            rt.status(failed.id)


def test_forged_step_rows_cannot_skip_a_wait_or_a_step(db_path: str) -> None:
    with actorflow.Runtime(db_path, concurrency=0) as client:
        run_id = client.start(flows.collect_events, "go", 1).id
    with sqlite3.connect(db_path) as conn:  # a completed wait, inserted by hand
        conn.execute(
            "INSERT INTO steps (run_id, seq, name, state, result, attempts) VALUES (?, 1, 'actorflow.event:go', 'completed', NULL, 1)",
            (run_id,),
        )
    fails_tampered(db_path, run_id)


def test_a_copied_event_is_not_delivered_twice(db_path: str) -> None:
    with actorflow.Runtime(db_path, concurrency=0) as client:
        run_id = client.start(flows.collect_events, "approval", 2).id
        client.send(run_id, "approval", "alice")
    sql(db_path, "INSERT INTO events (run_id, topic, payload, sent_at) SELECT run_id, topic, payload, sent_at FROM events")
    fails_tampered(db_path, run_id)


def test_stream_chunks_cannot_be_moved_between_streams_or_reordered(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.writer, "w", 3)
    assert flows.arrived("w").wait(10)
    flows.gate("w").set()
    run.result(timeout=10)
    assert list(run.stream()) == [{"i": 0}, {"i": 1}, {"i": 2}]
    sql(rt.path, "UPDATE chunks SET namespace='', idx=3 WHERE namespace='logs'")  # the log chunk moved into the stream
    with pytest.raises(actorflow.TamperedRecord):
        list(run.stream())
    sql(rt.path, "DELETE FROM chunks WHERE idx=3")
    for old, new in ((0, 100), (1, 0), (100, 1)):  # two chunks swapped
        sql(rt.path, "UPDATE chunks SET idx=? WHERE namespace='' AND idx=?", new, old)
    with pytest.raises(actorflow.TamperedRecord, match="out of the order"):
        list(run.stream())


def test_a_start_is_not_answered_with_another_run_through_a_planted_key(rt: actorflow.Runtime) -> None:
    other = rt.start(flows.greet, "mallory")
    other.result(timeout=10)
    sql(rt.path, "UPDATE runs SET idempotency_key='order-42' WHERE id=?", other.id)
    with pytest.raises(actorflow.TamperedRecord):
        rt.start(flows.add.options(idempotency_key="order-42"), 1, 2)
    key_run = rt.start(flows.add.options(idempotency_key="order-43"), 1, 2)  # a real repeat still works
    assert rt.start(flows.add.options(idempotency_key="order-43"), 1, 2).id == key_run.id


def test_one_unreadable_row_of_any_kind_spoils_only_itself_in_listings(rt: actorflow.Runtime) -> None:
    runs = [rt.start(flows.add, i, i) for i in range(5)]
    for run in runs:
        run.result(timeout=10)
    for column, value, run in (("state", "bogus", runs[0]), ("created_at", "yesterday", runs[1]),
                               ("waiting_for", "{", runs[2]), ("attempt", "x", runs[3])):  # fmt: skip
        sql(rt.path, f"UPDATE runs SET {column}=? WHERE id=?", value, run.id)
    for lister in (rt.list_runs, actorflow.inspect(rt.path).list_runs):
        listed = {s.id: s for s in lister()}
        assert set(listed) == {r.id for r in runs}
        assert listed[runs[4].id].result == 8 and listed[runs[4].id].error is None
        assert all(listed[r.id].error is not None and "CorruptRecord" in listed[r.id].error.type for r in runs[:4])
    with pytest.raises(actorflow.CorruptRecord):
        rt.status(runs[0].id)


def test_a_key_file_that_anyone_could_have_made_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "j.db")
    Path(path + ".key").write_text("")
    with pytest.raises(actorflow.JournalError, match="damaged|at least 16"):
        actorflow.Runtime(path)
    Path(path + ".key").write_text("ab" * 32)
    os.chmod(path + ".key", 0o666)
    with pytest.raises(actorflow.JournalError, match="can be written by anyone"):
        actorflow.Runtime(path)


def test_a_pool_thread_reused_by_a_later_run_still_refuses_steps(rt: actorflow.Runtime) -> None:
    try:
        for text in ("a", "b", "c"):  # the first run makes the pool's thread; the others reuse it
            with pytest.raises(actorflow.RunFailed, match="a thread that a flow started"):
                rt.start(flows.uses_shared_pool, text).result(timeout=10)
    finally:
        for pool in flows._SHARED_POOL:
            pool.shutdown()
        flows._SHARED_POOL.clear()


def test_blocking_on_a_run_another_runtime_can_execute_is_allowed(db_path: str) -> None:
    with actorflow.Runtime(db_path, concurrency=1) as rt, actorflow.Runtime(db_path, concurrency=2):
        flows.RUNTIMES[db_path] = rt
        try:
            assert rt.start(flows.blocks_on_other_run, db_path).result(timeout=30) == 3
        finally:
            del flows.RUNTIMES[db_path]


def test_more_bad_inputs_are_named(rt: actorflow.Runtime) -> None:
    run = rt.start(flows.add, 1, 1)
    run.result(timeout=10)
    with pytest.raises(ValueError, match="limit"):
        rt.list_runs(limit=2**70)
    with pytest.raises(ValueError, match="start must be a chunk index"):
        list(rt.stream(run.id, start="x"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="start must be a chunk index"):
        list(rt.stream(run.id, start=-5))
    with pytest.raises(TypeError, match="states must be"):
        rt.purge(states=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="100 years"):
        rt.wait(run.id, timeout=2**2000)


def test_a_flow_stored_by_value_runs_as_the_original_function_in_its_process(rt: actorflow.Runtime) -> None:
    seen: list[str] = []  # a closure: stored by value; an unpickled copy would append to a copy of the list

    @actorflow.flow
    def remembers(ctx: actorflow.Context, word: str) -> int:
        seen.append(word)
        return len(seen)

    assert rt.start(remembers, "a").result(timeout=10) == 1
    assert rt.start(remembers, "b").result(timeout=10) == 2
    assert seen == ["a", "b"]
