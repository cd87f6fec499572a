"""actorflow quickstart: start runs, watch them, wait for them, cancel one.

Run it with ``python examples/quickstart.py [journal.db]``. The journal defaults to
``actorflow.db`` in the current folder; run the script twice and the first run's
results are still there (``rt.list_runs()`` shows them).
"""

from __future__ import annotations

import sys
import time

import actorflow


@actorflow.flow
def greet(ctx: actorflow.Context, name: str) -> str:
    ctx.progress({"stage": "greeting"})
    return f"hello {name}"


@actorflow.flow
def total(ctx: actorflow.Context, prices: list[float], tax: float) -> float:
    return round(sum(prices) * (1 + tax), 2)


@actorflow.flow
def charge(ctx: actorflow.Context, card: str) -> str:
    raise ValueError(f"card {card} was declined")


@actorflow.flow
def crunch(ctx: actorflow.Context, chunks: int) -> int:
    done = 0
    for _ in range(chunks):
        time.sleep(0.05)  # stands for real work
        done += 1
        ctx.progress({"chunks_done": done})  # a checkpoint: a cancelled run stops here
    return done


def main(path: str) -> None:
    with actorflow.Runtime(path) as rt:
        runs = [
            rt.start(greet, "ada"),
            rt.start(total.options(metadata={"customer": 7}), [9.5, 3.25], tax=0.2),
            rt.start(charge, "4242"),
            rt.start(crunch, 1000),
        ]
        print(f"started {len(runs)} runs; each start returned once the run was committed\n")

        slow = runs[-1]
        while (slow.status().progress or {}).get("chunks_done", 0) < 3:
            time.sleep(0.01)
        print("cancelling", slow.id, "->", slow.cancel(), "\n")

        for run in runs:
            run.wait(timeout=30)
        print(rt.list_runs(limit=len(runs)), "\n")

        for run in runs:
            try:
                print(f"{run.id}  result: {run.result()!r}")
            except actorflow.RunFailed as exc:
                print(f"{run.id}  failed: {exc.error}")
            except actorflow.RunCancelled:
                print(f"{run.id}  cancelled after {run.status().progress}")
        print()
        print(rt)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "actorflow.db")
