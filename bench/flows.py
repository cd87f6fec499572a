"""Flows the benchmark runs (importable, so they are stored by reference like a service's)."""

from __future__ import annotations

import time

import actorflow


@actorflow.flow
def noop(ctx: actorflow.Context) -> None:
    return None


@actorflow.step(retries=0)
def inc(x: int) -> int:
    return x + 1


@actorflow.flow
def three_steps(ctx: actorflow.Context, x: int) -> int:
    return inc(inc(inc(x)))


@actorflow.step(retries=0)
def slow_logged(log: str, x: int) -> int:
    """50 ms of work, then one line in ``log`` (to count executions across a crash)."""
    time.sleep(0.05)
    with open(log, "a") as f:
        f.write(f"{actorflow.current_step().step_id}\n")
    return x + 1


@actorflow.flow
def five_slow_steps(ctx: actorflow.Context, log: str, x: int) -> int:
    for _ in range(5):
        x = slow_logged(log, x)
    return x


@actorflow.flow
def one_step_child(ctx: actorflow.Context, x: int) -> int:
    return inc(x)


@actorflow.flow
def fan_out_sum(ctx: actorflow.Context, n: int) -> int:
    return sum(ctx.gather(*[ctx.start(one_step_child, i) for i in range(n)]))


@actorflow.flow
def sleep_3s(ctx: actorflow.Context) -> str:
    ctx.sleep(3)
    return "awake"


@actorflow.flow
def sleep_a_minute(ctx: actorflow.Context) -> str:
    ctx.sleep(60)
    return "awake"
