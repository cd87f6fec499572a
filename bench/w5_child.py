"""W5's worker process: ``python -m bench.w5_child JOURNAL LOG start|recover``.

``start`` starts 100 runs of five 50 ms steps and waits (the benchmark kills it with
SIGKILL after about 1.5 s); ``recover`` opens the journal, which resumes the runs, and
prints the seconds from the open to the last result.
"""

from __future__ import annotations

import sys
import threading
import time

import actorflow
from bench import flows

CONCURRENCY = 8  # 100 runs x 250 ms of steps / 8 ≈ 3.1 s: the kill at 1.5 s lands mid-way


def main() -> None:
    journal, log, phase = sys.argv[1:4]
    t0 = time.perf_counter()
    rt = actorflow.Runtime(journal, concurrency=CONCURRENCY)
    if phase == "start":
        for i in range(100):
            rt.start(flows.five_slow_steps, log, i * 10)
        print("started", flush=True)
        threading.Event().wait()  # until killed
    ids = [s.id for s in rt.list_runs(limit=1000)]
    results = [rt.result(run_id, timeout=120) for run_id in ids]
    print(f"done {time.perf_counter() - t0:.3f} {len(results)} {sorted(results) == sorted(i * 10 + 5 for i in range(100))}", flush=True)
    rt.shutdown()


if __name__ == "__main__":
    main()
