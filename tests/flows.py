"""Flows used by the tests; importable by the subprocesses of the crash tests too."""

from __future__ import annotations

import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

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
    gate("never").wait(float(os.environ.get("ACTORFLOW_TEST_STEP_SECONDS", "0.005")))  # work, so kills land in runs
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


# ---------------------------------------------------------------------------- child runs


@actorflow.flow
def square(ctx: actorflow.Context, x: int) -> int:
    return double(x) * x // 2


@actorflow.flow
def fan_out(ctx: actorflow.Context, xs: list[int]) -> int:
    handles = [ctx.start(square, x) for x in xs]
    return sum(ctx.gather(*handles))


@actorflow.flow
def gather_when_told(ctx: actorflow.Context, xs: list[int], name: str) -> int:
    """Start children, then (once the test says so) gather them."""
    handles = [ctx.start(square, x) for x in xs]
    arrived(name).set()
    gate(name).wait(10)
    return sum(ctx.gather(*handles))


@actorflow.flow
def fail_if(ctx: actorflow.Context, x: int, bad: int) -> int:
    if x == bad:
        raise Boom(f"child {x} failed")
    return x


@actorflow.flow
def fan_out_with_failure(ctx: actorflow.Context, n: int, bad: int, settle: bool) -> Any:
    handles = [ctx.start(fail_if, x, bad) for x in range(n)]
    if settle:
        return [type(v).__name__ if isinstance(v, Exception) else v for v in ctx.gather(*handles, return_exceptions=True)]
    try:
        return ctx.gather(*handles)
    except actorflow.RunFailed as exc:
        return {"failed": exc.run_id, "cause": str(exc.__cause__), "ids": [h.id for h in handles]}


@actorflow.flow
def held_child(ctx: actorflow.Context, name: str, value: Any = None) -> Any:
    """Signal arrival, then wait for the gate of ``name``, checking for cancellation meanwhile."""
    arrived(name).set()
    while not gate(name).wait(0.005):
        ctx.check_cancelled()
    return value


@actorflow.flow
def first_of_two(ctx: actorflow.Context) -> list[Any]:
    slow = ctx.start(held_child, "slow-child", "slow")
    fast = ctx.start(add, 1, 2)
    handle, value = ctx.wait_first(slow, fast)
    gate("slow-child").set()
    return [handle.id == fast.id, value, slow.result()]


compute = actorflow.await_result(square)
failing = actorflow.await_result(fail_if)


@actorflow.flow
def one_by_one(ctx: actorflow.Context, xs: list[int]) -> list[int]:
    return [compute(x) for x in xs]


@actorflow.flow
def awaits_a_failure(ctx: actorflow.Context) -> str:
    try:
        failing(3, 3)
    except actorflow.RunFailed as exc:
        return f"caught {type(exc.__cause__).__name__}: {exc.__cause__}"
    return "no error"


@actorflow.flow
def inc_flow(ctx: actorflow.Context, x: int) -> int:
    return x + 1


@actorflow.flow
def times_ten(ctx: actorflow.Context, x: int) -> int:
    return x * 10


pipeline = actorflow.sequence(add, inc_flow, times_ten)


def _upload(ctx: actorflow.Context, path: str) -> tuple[Any, list[actorflow.Child]]:
    return {"path": path, "size": 100}, [
        actorflow.Child.of(add, 1, 2),
        actorflow.Child.of(fail_if, 7, 7),
        actorflow.Child.of(inc_flow, 41),
    ]


def _summarize(ctx: actorflow.Context, output: Any, outcomes: list[actorflow.ChildOutcome]) -> dict[str, Any]:
    return {**output, "children": [(o.ok, o.value if o.ok else type(o.error).__name__) for o in outcomes]}


upload = actorflow.parent_flow(_upload, _summarize, name="upload")


@actorflow.flow
def tree_node(ctx: actorflow.Context, depth: int, name: str) -> None:
    if depth > 0:
        handles = [ctx.start(tree_node, depth - 1, f"{name}.{i}") for i in range(2)]
        ctx.gather(*handles)
    else:
        arrived(name).set()
        while True:  # a leaf runs until it is cancelled
            ctx.check_cancelled()
            gate("never").wait(0.005)


@actorflow.flow
def parent_leaves_children(ctx: actorflow.Context) -> list[str]:
    attached = ctx.start(held_child, "attached")
    detached = ctx.start(held_child.options(detached=True), "detached", "survived")
    return [attached.id, detached.id]


@actorflow.flow
def parent_of_many(ctx: actorflow.Context, n: int) -> int:
    return sum(ctx.gather(*[ctx.start(add, i, 1) for i in range(n)]))


@actorflow.flow
def waits_with_timeout(ctx: actorflow.Context) -> str:
    child = ctx.start(held_child, "timeout-child", "late")
    try:
        ctx.gather(child, timeout=0.1)
    except TimeoutError:
        gate("timeout-child").set()
        return "timed out, then " + child.result()
    return "no timeout"


@actorflow.flow
def waits_for_held(ctx: actorflow.Context, name: str) -> Any:
    return ctx.start(held_child, name, "child done").result()


@actorflow.flow
def logged_child(ctx: actorflow.Context, log: str, i: int) -> int:
    return logged_step(log, i) + logged_step(log, 1000)


@actorflow.flow
def crash_fan_out(ctx: actorflow.Context, log: str, n: int) -> int:
    return sum(ctx.gather(*[ctx.start(logged_child, log, i) for i in range(n)]))


# ---------------------------------------------------------------------------- waiting


@actorflow.flow
def sleeper(ctx: actorflow.Context, duration: Any) -> str:
    ctx.sleep(duration)
    return "awake"


@actorflow.flow
def approval(ctx: actorflow.Context, request_id: int) -> Any:
    ctx.write({"status": "asked", "request": request_id})
    decision = ctx.wait_event("decision", timeout="1d")
    if decision is None:
        return "expired"
    ctx.sleep("10m")
    return decision["answer"]


@actorflow.flow
def collect_events(ctx: actorflow.Context, topic: str, n: int) -> list[Any]:
    return [ctx.wait_event(topic) for _ in range(n)]


@actorflow.flow
def collect_after_gate(ctx: actorflow.Context, name: str, n: int) -> list[Any]:
    arrived(name).set()
    while not gate(name).wait(0.005):
        ctx.check_cancelled()
    return [ctx.wait_event("news") for _ in range(n)]


@actorflow.flow
def hooked(ctx: actorflow.Context, token: str | None, n: int) -> Any:
    hook = ctx.hook(token)
    ctx.write(hook.token)
    return [hook.token, [hook.wait() for _ in range(n)]]


@actorflow.flow
def hook_conflict(ctx: actorflow.Context, token: str) -> str:
    try:
        ctx.hook(token)
    except actorflow.HookConflict as exc:
        return f"conflict with {exc.holder}"
    return "no conflict"


@actorflow.flow
def writer(ctx: actorflow.Context, name: str, n: int) -> int:
    for i in range(n):
        ctx.write({"i": i})
        if i == 1:
            arrived(name).set()
            while not gate(name).wait(0.005):
                ctx.check_cancelled()
    ctx.write("other", namespace="logs")
    return n


@actorflow.flow
def writes_then_closes(ctx: actorflow.Context) -> str:
    ctx.write(1)
    ctx.close_stream()
    ctx.write(2)  # after the close: readers have stopped
    return "done"


@actorflow.step(retries=actorflow.Retry(max_attempts=2, initial=3600, jitter=0))
def fails_once_an_hour(key: str) -> str:
    if count(key) == 1:
        raise ConnectionError("try again in an hour")
    return "second attempt"


@actorflow.flow
def slow_retry(ctx: actorflow.Context, key: str) -> str:
    return fails_once_an_hour(key)


@actorflow.flow(timeout=3600)
def hour_limit(ctx: actorflow.Context) -> str:
    ctx.sleep("2h")
    return "slept past the limit"


@actorflow.flow
def waits_for_event(ctx: actorflow.Context, i: int) -> int:
    return int(ctx.wait_event("go")) + i


@actorflow.flow
def clock_now(ctx: actorflow.Context) -> Any:
    return ctx.now()


@actorflow.flow
def notices_shutdown(ctx: actorflow.Context, name: str) -> str:
    arrived(name).set()
    while not ctx.shutting_down:
        gate(name).wait(0.005)
    return "wrapped up for shutdown"


@actorflow.step
def step_using_ctx() -> int:
    ctx = actorflow.current_run()
    ctx.now()  # plain inside a step: no checkpoint of its own
    return ctx.step(len, "abcd")


@actorflow.flow
def flow_calling_ctx_in_step(ctx: actorflow.Context) -> int:
    return step_using_ctx()


@actorflow.flow(timeout=60)
def short_deadline(ctx: actorflow.Context, name: str) -> str:
    arrived(name).set()
    while not gate(name).wait(0.005):
        ctx.check_cancelled()
    return "finished"


@actorflow.flow(retries=actorflow.Retry(max_attempts=3, initial=30, jitter=0))
def retries_slowly(ctx: actorflow.Context, name: str) -> None:
    arrived(name).set()
    raise ConnectionError("will retry in 30 s")


@actorflow.flow
def gather_done_child_with_zero_timeout(ctx: actorflow.Context) -> Any:
    child = ctx.start(add, 2, 3)
    child.result()  # surely done now
    return ctx.gather(child, timeout=0)


@actorflow.flow
def starts_child_late(ctx: actorflow.Context, name: str) -> Any:
    arrived(name).set()
    while not gate(name).wait(0.005):
        ctx.check_cancelled()
    return ctx.start(add, 20, 22).result()


@actorflow.flow(timeout=2)
def sleeps_past_its_timeout(ctx: actorflow.Context) -> str:
    ctx.sleep(30)
    return "woke"


# ---------------------------------------------------------------------------- several processes


@actorflow.flow
def two_logged_steps(ctx: actorflow.Context, log: str, i: int) -> int:
    return logged_step(log, i) + logged_step(log, 1000 + i)


@actorflow.flow
def queued_work(ctx: actorflow.Context, log: str, i: int) -> int:
    with open(log, "a") as f:
        f.write(f"start {i} {time.time()}\n")
    gate("never").wait(0.05)  # holds its slot a moment, so that overlaps would show
    with open(log, "a") as f:
        f.write(f"end {i} {time.time()}\n")
    return i


@actorflow.step
def sleeps_inside_a_step() -> None:
    actorflow.current_run().sleep("1s")


@actorflow.flow
def wait_in_step(ctx: actorflow.Context) -> None:
    sleeps_inside_a_step()


@actorflow.flow(retries=actorflow.Retry(max_attempts=2, initial=0.001, jitter=0))
def fails_after_a_wait(ctx: actorflow.Context, key: str) -> str:
    ctx.start(add, 1, 1).result()  # a wait: the run may passivate and resume
    if count(key) == 1:
        raise RuntimeError("first try fails")
    return "retried"


@actorflow.step
def logged_span(log: str, i: int, part: str) -> None:
    with open(log, "a") as f:
        f.write(f"start {i}{part} {time.time()}\n")
    gate("never").wait(0.02)
    with open(log, "a") as f:
        f.write(f"end {i}{part} {time.time()}\n")


@actorflow.flow
def step_sleep_step(ctx: actorflow.Context, log: str, i: int) -> int:
    logged_span(log, i, "a")
    ctx.sleep(0.2)  # gives up its slot (passivate_after is shorter in the test)
    logged_span(log, i, "b")
    return i


# -- trust: signed payloads, validation, threads ----------------------------------------


@actorflow.step
def shout(text: str) -> str:
    return text.upper()


@actorflow.flow
def shouts(ctx: actorflow.Context, text: str) -> str:
    return shout(text)


@actorflow.flow
def step_in_pool(ctx: actorflow.Context, text: str) -> str:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(shout, text).result()


@actorflow.flow
def blocks_on_other_run(ctx: actorflow.Context, path: str) -> Any:
    other = RUNTIMES[path].start(add, 1, 2)
    return other.result(timeout=30)


RUNTIMES: dict[str, actorflow.Runtime] = {}


def _positive(a: int, b: int) -> None:
    if a < 0 or b < 0:
        raise ValueError("both numbers must be >= 0")


@actorflow.flow(validate=_positive)
def add_positive(ctx: actorflow.Context, a: int, b: int) -> int:
    return a + b


@actorflow.flow
def chunks_and_steps(ctx: actorflow.Context) -> int:
    ctx.write("first")
    ctx.write("second")
    return double(21)


class Signup(pydantic.BaseModel):
    email: str
    age: int


class SignupArgs(pydantic.BaseModel):
    email: str
    age: int = pydantic.Field(ge=0)


@actorflow.flow(validate=SignupArgs)
def signup(ctx: actorflow.Context, email: str, age: int) -> Signup:
    assert isinstance(age, int)  # converted by the validator before it was stored
    return Signup(email=email, age=age)


@actorflow.flow
def echo_model(ctx: actorflow.Context, model: Signup) -> Signup:
    assert isinstance(model, Signup)
    return model


_SHARED_POOL: list[Any] = []  # a module-level pool, made by the first flow that needs it


@actorflow.flow
def uses_shared_pool(ctx: actorflow.Context, text: str) -> str:
    from concurrent.futures import ThreadPoolExecutor

    if not _SHARED_POOL:
        _SHARED_POOL.append(ThreadPoolExecutor(max_workers=1))
    return str(_SHARED_POOL[0].submit(shout, text).result())


@actorflow.flow
def old_cancellation_check(ctx: actorflow.Context) -> list[str]:
    """Call the deprecated ``ctx.checkpoint()``; return the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ctx.checkpoint()
    return [f"{w.category.__name__}: {w.message}" for w in caught]
