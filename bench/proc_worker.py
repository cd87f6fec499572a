"""A worker process for the multi-process workloads: ``python -m bench.proc_worker JOURNAL MODE N [LEASE]``.

MODE ``w2``: wait for a line on stdin, start N three-step runs, await them, print the seconds.
MODE ``hold``: start N runs that sleep a minute durably, print ``started`` once all sleep, then wait to be killed.
MODE ``serve``: execute whatever it claims until stdin closes.
"""

from __future__ import annotations

import sys
import threading
import time

import actorflow
from bench import flows


def main() -> None:
    journal, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    lease = float(sys.argv[4]) if len(sys.argv) > 4 else 10.0
    rt = actorflow.Runtime(journal, lease=lease, poll_interval=0.05)
    print("ready", rt.id, flush=True)
    if mode == "w2":
        sys.stdin.readline()
        t0 = time.perf_counter()
        handles = [rt.start(flows.three_steps, i) for i in range(n)]
        assert all(h.result(timeout=300) == i + 3 for i, h in enumerate(handles))
        print(f"{time.perf_counter() - t0:.4f}", flush=True)
    elif mode == "hold":
        handles = [rt.start(flows.sleep_a_minute) for _ in range(n)]
        while any(h.status().state is not actorflow.State.WAITING for h in handles):
            time.sleep(0.01)
        print("started", flush=True)  # all sleeping: the process holds them but writes nothing
        threading.Event().wait()
    else:
        sys.stdin.read()
    rt.shutdown()


if __name__ == "__main__":
    main()
