"""Flows used by the tests; importable by the subprocesses of the crash tests too."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import actorflow

# Events the tests use to hold flows at a known point (same process only).
gates: dict[str, threading.Event] = {}
reached: dict[str, threading.Event] = {}


def gate(name: str) -> threading.Event:
    return gates.setdefault(name, threading.Event())


def arrived(name: str) -> threading.Event:
    return reached.setdefault(name, threading.Event())


@dataclass(frozen=True)
class Order:
    id: int
    items: tuple[str, ...]


@actorflow.flow
def greet(ctx: actorflow.Context, name: str) -> str:
    ctx.progress({"stage": "greeting"})
    return f"hello {name}"


@actorflow.flow
def add(ctx: actorflow.Context, a: int, b: int) -> int:
    return a + b


@actorflow.flow
def echo(ctx: actorflow.Context, *args: Any, **kwargs: Any) -> Any:
    return {"args": args, "kwargs": kwargs}


class Boom(Exception):
    pass


@actorflow.flow
def fail(ctx: actorflow.Context, message: str) -> None:
    raise Boom(message)


@actorflow.flow
def hold(ctx: actorflow.Context, name: str, value: Any = None) -> Any:
    """Signal arrival at ``name``, then wait for the gate of ``name`` to open."""
    arrived(name).set()
    gate(name).wait()
    return value


@actorflow.flow
def loop_until_cancelled(ctx: actorflow.Context, name: str) -> str:
    arrived(name).set()
    while True:
        ctx.progress("working")
        if gate(name).wait(0.005):
            return "not cancelled"


@actorflow.flow
def with_metadata(ctx: actorflow.Context, metadata: str) -> dict[str, Any]:
    return {"arg": metadata, "ctx": ctx.metadata}


@actorflow.flow
def current(ctx: actorflow.Context) -> list[Any]:
    c = actorflow.current_run()
    return [c is ctx, c.run_id, c.flow, c.attempt]


@actorflow.flow
def stuck_in_doomed_process(ctx: actorflow.Context, value: Any) -> Any:
    """Never returns in a process that has ACTORFLOW_TEST_DOOMED set (the crash tests kill it)."""
    if os.environ.get("ACTORFLOW_TEST_DOOMED"):
        threading.Event().wait()
    return value


@actorflow.flow
def record(ctx: actorflow.Context, log: str, value: Any) -> Any:
    with Path(log).open("a") as f:
        f.write(f"{ctx.run_id} {ctx.attempt}\n")
    return value


@actorflow.flow
def watch_cancelled(ctx: actorflow.Context, name: str) -> None:
    """Loop without checkpoints until ``ctx.cancelled``; set ``arrived(name + '-seen')`` then."""
    arrived(name).set()
    while not ctx.cancelled:
        gate(name).wait(0.005)
    arrived(name + "-seen").set()
