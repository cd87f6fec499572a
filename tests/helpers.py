"""Helpers shared by the tests: subprocesses for the crash tests."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


_children: list[subprocess.Popen[str]] = []


def run_child(code: str, *, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[str]:
    """Start a Python subprocess running ``code`` with the repository importable.

    Children still alive when the test ends (it failed or timed out) are killed.
    """
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )  # fmt: skip
    _children.append(child)
    return child


def kill_children() -> None:
    """Kill the children of the test that are still alive (it failed or timed out)."""
    while _children:
        child = _children.pop()
        if child.poll() is None:
            child.kill()
            child.wait(10)


def committed_steps(journal: str) -> set[str]:
    """``run_id:seq`` of every step whose checkpoint is committed in ``journal``."""
    with sqlite3.connect(journal) as conn:
        return {f"{r}:{s}" for r, s in conn.execute("SELECT run_id, seq FROM steps WHERE state='completed'")}


def cut_off(db_path: str, flow: Any, name: str, *args: Any, **options: Any) -> str:
    """Start ``flow`` in a runtime on ``db_path`` (with ``options``), wait until it reaches
    ``arrived(name)``, and shut that runtime down without waiting for the run: the run is left
    unfinished in the journal, to resume at the next open. Returns its id.

    The test opens ``gate(name)`` when it wants the abandoned flow's thread to go on.
    """
    import actorflow
    from tests.flows import arrived

    with actorflow.Runtime(db_path, **options) as rt:
        run = rt.start(flow, *args)
        assert arrived(name).wait(30), f"the run never reached {name!r}"
        rt.shutdown(timeout=0.05)
    return run.id


def stored_text(value: Any) -> Any:
    """The serialized value inside a signed journal payload (its signature not checked)."""
    from actorflow.signing import Signer

    return Signer.unchecked(value)
