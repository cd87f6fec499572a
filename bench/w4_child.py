"""W4's worker process: ``python -m bench.w4_child JOURNAL N``: N runs each sleeping 3 s durably.

Prints ``wall_seconds peak_rss_mb peak_threads`` once every run has completed.
"""

from __future__ import annotations

import resource
import sys
import threading
import time

import actorflow
from bench import flows


def main() -> None:
    journal, n = sys.argv[1], int(sys.argv[2])
    peak = [threading.active_count()]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], threading.active_count())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with actorflow.Runtime(journal) as rt:
        t0 = time.perf_counter()
        handles = [rt.start(flows.sleep_3s) for _ in range(n)]
        ok = all(h.result(timeout=600) == "awake" for h in handles)
        wall = time.perf_counter() - t0
    done.set()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{wall:.3f} {rss_mb:.0f} {peak[0] - 1} {ok}")  # the watcher thread is not the runtime's


if __name__ == "__main__":
    main()
