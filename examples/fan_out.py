"""Child runs: a parent fans out to children in parallel, gathers their results, survives a failure.

Run it with ``python examples/fan_out.py [journal.db]``.
"""

from __future__ import annotations

import sys

import actorflow


@actorflow.step
def measure(chunk: list[int]) -> int:
    return sum(x * x for x in chunk)


@actorflow.flow
def compute_chunk(ctx: actorflow.Context, chunk: list[int]) -> int:
    if not chunk:
        raise ValueError("empty chunk")
    return measure(chunk)


compute = actorflow.await_result(compute_chunk)  # a child run that is called like a function


@actorflow.flow
def process_data(ctx: actorflow.Context, chunks: list[list[int]]) -> dict[str, object]:
    handles = [ctx.start(compute_chunk, c) for c in chunks]  # start at once, run in parallel
    settled = ctx.gather(*handles, return_exceptions=True)  # all-settled: values and errors
    ok = [v for v in settled if not isinstance(v, actorflow.RunError)]
    failed = [h.id for h, v in zip(handles, settled) if isinstance(v, actorflow.RunError)]
    first = compute(chunks[0])  # one more child, awaited like a call
    return {"total": sum(ok), "failed": failed, "first_again": first}


def main(path: str) -> None:
    with actorflow.Runtime(path) as rt:
        run = rt.start(process_data, [[1, 2], [3, 4], [], [5]])
        print(run.result(timeout=30))
        print()
        print(run.tree())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "actorflow.db")
