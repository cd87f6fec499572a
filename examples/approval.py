"""Waiting without a thread: a run streams its progress, waits for a decision, sleeps durably.

Run it with ``python examples/approval.py [journal.db]``. The run waits for an event that
another thread sends; while it waits it holds no thread (its state is ``waiting``).
"""

from __future__ import annotations

import sys
import threading

import actorflow


@actorflow.flow
def approval(ctx: actorflow.Context, request_id: int) -> str:
    ctx.write({"status": "asked", "request": request_id})  # a chunk on the run's stream
    decision = ctx.wait_event("decision", timeout="1d")  # durable; survives restarts
    if decision is None:
        return "expired"
    ctx.write({"status": "approved, waiting a moment"})
    ctx.sleep("2s")  # a durable timer
    return decision["answer"]


def main(path: str) -> None:
    with actorflow.Runtime(path) as rt:
        run = rt.start(approval, 7)

        def reviewer() -> None:
            for chunk in run.stream():  # live; ends when the run ends
                print("stream:", chunk, "| state:", run.status().state)
                if chunk["status"] == "asked":
                    rt.send(run.id, "decision", {"answer": "yes"})

        reader = threading.Thread(target=reviewer)
        reader.start()
        print("result:", run.result(timeout=30))
        reader.join()
        print(run.steps())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "actorflow.db")
