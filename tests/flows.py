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


# ---------------------------------------------------------------------------- steps

calls: dict[str, int] = {}  # step name → how many times its body ran (this process)
step_meta: list[actorflow.StepInfo] = []


def count(name: str) -> int:
    calls[name] = calls.get(name, 0) + 1
    return calls[name]


@actorflow.step
def double(x: int) -> int:
    count("double")
    return 2 * x


@actorflow.step
def plus_one(x: int) -> int:
    count("plus_one")
    return x + 1


@actorflow.flow
def two_steps(ctx: actorflow.Context, x: int, gate_name: str | None = None) -> int:
    a = double(x)
    if gate_name:
        arrived(gate_name).set()
        gate(gate_name).wait()
    b = plus_one(a)
    return b


@actorflow.step(retries=actorflow.Retry(max_attempts=4, initial=0.001, multiplier=2, jitter=0))
def flaky(key: str, failures: int) -> str:
    step_meta.append(actorflow.current_step())
    n = count(key)
    if n <= failures:
        raise ConnectionError(f"flaky failure {n}")
    return f"ok after {n}"


@actorflow.flow
def uses_flaky(ctx: actorflow.Context, key: str, failures: int) -> str:
    return flaky(key, failures)


@actorflow.step(retries=5)
def fatal_step(key: str) -> None:
    count(key)
    raise actorflow.FatalError("card declined")


@actorflow.flow
def uses_fatal(ctx: actorflow.Context, key: str) -> None:
    fatal_step(key)


@actorflow.step(retries=actorflow.Retry(max_attempts=2, initial=30))
def retry_after_step(key: str) -> str:
    if count(key) == 1:
        raise actorflow.RetryableError("rate limited", retry_after=0.01)
    return "second try"


@actorflow.flow
def uses_retry_after(ctx: actorflow.Context, key: str) -> str:
    return retry_after_step(key)


@actorflow.step(timeout=0.05, retries=actorflow.Retry(max_attempts=2, initial=0.001, jitter=0))
def slow_step(name: str) -> str:
    info = actorflow.current_step()
    if info.attempt == 1:
        gate(name).wait(10)  # held past its timeout; the test opens the gate afterwards
        arrived(name + "-saw-cancelled").set() if info.cancelled else None
        return "too late"
    return "fast enough"


@actorflow.flow
def uses_slow_step(ctx: actorflow.Context, name: str) -> str:
    return slow_step(name)


@actorflow.flow(timeout=0.2)
def flow_with_timeout(ctx: actorflow.Context, name: str) -> str:
    arrived(name).set()
    gate(name).wait(30)
    plus_one(1)  # a checkpoint after the timeout: refused
    return "finished"


@actorflow.flow(retries=actorflow.Retry(max_attempts=3, initial=0.001, jitter=0))
def retried_flow(ctx: actorflow.Context, key: str) -> str:
    a = double(21)  # completed once, replayed on the flow's retries
    if count(key) < 3:
        raise RuntimeError(f"flow attempt {ctx.attempt} failed")
    return f"{a} on attempt {ctx.attempt}"


@actorflow.flow
def catches_step_failure(ctx: actorflow.Context, key: str) -> str:
    try:
        fatal_step(key)
    except actorflow.FatalError as exc:
        return f"handled: {exc}"
    return "unreachable"


@actorflow.flow
def deterministic_values(ctx: actorflow.Context, gate_name: str) -> list[Any]:
    values = [ctx.now(), ctx.random(), ctx.uuid()]
    arrived(gate_name).set()
    gate(gate_name).wait()
    plus_one(1)
    return values


@actorflow.flow
def branches_on_attempt(ctx: actorflow.Context, gate_name: str) -> int:
    """Calls a different step on its second execution: not deterministic."""
    if ctx.attempt == 1:
        double(1)
        arrived(gate_name).set()
        gate(gate_name).wait()
    else:
        plus_one(1)
    return 0


@actorflow.flow
def untyped_steps(ctx: actorflow.Context) -> list[int]:
    return [ctx.step(len, "abc"), ctx.step(actorflow.step(sum, name="total", retries=0), [1, 2])]


@actorflow.step
def outer_step() -> int:
    return double(5) + 1  # a step called from a step is a plain call


@actorflow.flow
def nested_steps(ctx: actorflow.Context) -> int:
    return outer_step()


@actorflow.flow
def cancel_between_steps(ctx: actorflow.Context, name: str) -> int:
    double(1)
    arrived(name).set()
    gate(name).wait(30)
    plus_one(1)  # cancelled before this one starts
    return 0


# ---------------------------------------------------------------------------- crash tests


@actorflow.step(retries=0)
def logged_step(log: str, value: int) -> int:
    """Append this step's id and attempt to ``log`` (the side effect), print a tick, return ``value``."""
    info = actorflow.current_step()
    with open(log, "a") as f:
        f.write(f"{info.step_id} {info.attempt}\n")
    print("tick", flush=True)
    gate("never").wait(0.005)  # a little work, so that kills land inside runs
    return value


@actorflow.flow
def five_logged_steps(ctx: actorflow.Context, log: str, i: int) -> int:
    return sum(logged_step(log, i * 10 + k) for k in range(5))


@actorflow.step(retries=0)
def kill_my_process() -> None:
    os.kill(os.getpid(), 9)


@actorflow.flow
def crashes_its_process(ctx: actorflow.Context) -> str:
    kill_my_process()
    return "unreachable"
